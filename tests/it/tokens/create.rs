//! `POST /cde-import`: each card scheme with its IIN, mask and length; each bad field at its path; bodies
//! that are not JSON objects; accounts without the feature.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{
    card, error_body, on_both_backends, spawn_app, validation_body, with_check_digit, Backend,
};

on_both_backends!(
    each_scheme_is_recognised_with_its_iin_mask_and_length,
    each_bad_card_field_is_422_with_its_path,
    malformed_empty_and_non_object_bodies_are_422_at_the_root,
    an_account_without_the_cde_import_feature_gets_403,
);

async fn each_scheme_is_recognised_with_its_iin_mask_and_length(backend: Backend) {
    let app = spawn_app(backend).await;
    let unknown = with_check_digit("999999999999999");
    let cases = [
        (
            "4111111111111111",
            "123",
            "VISA",
            "41111111",
            "411111XXXXXX1111",
        ),
        (
            "5555555555554444",
            "123",
            "Mastercard",
            "55555555",
            "555555XXXXXX4444",
        ),
        (
            "2223003122003222",
            "123",
            "Mastercard",
            "22230031",
            "222300XXXXXX3222",
        ),
        (
            "378282246310005",
            "1234",
            "American Express",
            "37828",
            "37828XXXXXX0005",
        ),
        (
            "6011111111111117",
            "123",
            "Discover",
            "60111111",
            "601111XXXXXX1117",
        ),
        (
            "30569309025904",
            "123",
            "Diners Club",
            "3056",
            "3056XXXXXX5904",
        ),
        (
            "3530111333300000",
            "123",
            "JCB",
            "35301113",
            "353011XXXXXX0000",
        ),
        (
            "6200000000000005",
            "123",
            "UnionPay",
            "62000000",
            "620000XXXXXX0005",
        ),
        // Short numbers show fewer leading digits: every mask hides at least six.
        ("4222222222222", "123", "VISA", "422", "422XXXXXX2222"),
        (
            unknown.as_str(),
            "123",
            "Unknown",
            "99999999",
            "999999XXXXXX9999",
        ),
    ];
    for (pan, code, scheme, iin, masked) in cases {
        let mut body = card(pan);
        body["security_code"] = json!(code);
        let token = app.new_token(&body).await;
        let expected_last_four = &pan[pan.len() - 4..];
        let masked = if scheme == "Unknown" {
            format!("999999XXXXXX{expected_last_four}")
        } else {
            masked.to_owned()
        };
        assert_eq!(token["scheme"], json!(scheme), "{pan}");
        assert_eq!(token["issuer_identification_number"], json!(iin), "{pan}");
        assert_eq!(token["masked_account_number"], json!(masked), "{pan}");
        assert_eq!(
            token["account_number_last_four"],
            json!(expected_last_four),
            "{pan}"
        );
        assert_eq!(token["account_number_length"], json!(pan.len()), "{pan}");
        assert_eq!(token["status"], json!("active"));
        assert_eq!(token["network_token_status"], json!("not_available"));
        assert_eq!(token["identity_and_verification"], json!("none"));
        assert_eq!(
            (token["expiry_month"].clone(), token["expiry_year"].clone()),
            (json!(4), json!(2031))
        );
        assert_eq!(token["cardholder_name"], json!("Jane Holder"));
        let id = token["id"].as_str().unwrap();
        assert_eq!(
            token["card_art_url"],
            json!(format!("{}/tokens/card-art/{id}", app.base))
        );
        assert!(
            !token.to_string().contains(pan),
            "the response must not carry the number"
        );
        assert_eq!(app.get_token(id).await.body, token);
    }
}

async fn each_bad_card_field_is_422_with_its_path(backend: Backend) {
    let app = spawn_app(backend).await;
    let with = |field: &str, value: Value| {
        let mut body = card("4111111111111111");
        body[field] = value;
        body
    };
    let mut missing = card("4111111111111111");
    missing.as_object_mut().unwrap().remove("account_number");
    let cases: Vec<(Value, &str, &str)> = vec![
        (missing, "$.account_number", "is required"),
        (
            with("account_number", json!("4111-1111-1111-1111")),
            "$.account_number",
            "must contain digits only",
        ),
        (
            with("account_number", json!("41111111111")),
            "$.account_number",
            "must be 12 to 19 digits long",
        ),
        (
            with("account_number", json!("41111111111111111111")),
            "$.account_number",
            "must be 12 to 19 digits long",
        ),
        (
            with("account_number", json!("4111111111111112")),
            "$.account_number",
            "is not a valid card number (Luhn check failed)",
        ),
        (
            with("account_number", json!(4111111111111111u64)),
            "$.account_number",
            "must be a string of digits",
        ),
        (
            with("expiry_month", json!(0)),
            "$.expiry_month",
            "must be from 1 to 12",
        ),
        (
            with("expiry_month", json!(13)),
            "$.expiry_month",
            "must be from 1 to 12",
        ),
        (
            with("expiry_month", json!("4")),
            "$.expiry_month",
            "must be an integer",
        ),
        (
            with("expiry_year", json!(1999)),
            "$.expiry_year",
            "must be 2000 or later",
        ),
        (
            with("expiry_year", json!(2020)),
            "$.expiry_year",
            "the card has expired (the end of its expiry month has passed)",
        ),
        (
            with("security_code", json!("12")),
            "$.security_code",
            "must be 3 or 4 digits",
        ),
        (
            with("security_code", json!("12345")),
            "$.security_code",
            "must be 3 or 4 digits",
        ),
        (
            with("security_code", json!("1234")),
            "$.security_code",
            "must be 3 digits (4 only for American Express)",
        ),
        (
            with("cardholder_name", json!("")),
            "$.cardholder_name",
            "must not be empty",
        ),
        (
            with("cardholder_name", json!("x".repeat(201))),
            "$.cardholder_name",
            "must be at most 200 characters",
        ),
        (with("cvv", json!("123")), "$.cvv", "is not a known field"),
    ];
    for (body, path, message) in cases {
        let answer = app.tokenize(&body).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(answer.body, validation_body(&[(path, message)]), "{body}");
    }

    let mut amex = card("378282246310005");
    amex["security_code"] = json!("123");
    let answer = app.tokenize(&amex).await;
    assert_eq!(
        answer.body,
        validation_body(&[("$.security_code", "must be 4 digits for American Express")])
    );

    let everything_wrong = json!({"account_number": "123", "expiry_month": 13, "expiry_year": 1999, "cardholder_name": ""});
    let answer = app.tokenize(&everything_wrong).await;
    assert_eq!(
        answer.body,
        validation_body(&[
            ("$.account_number", "must be 12 to 19 digits long"),
            ("$.expiry_month", "must be from 1 to 12"),
            ("$.expiry_year", "must be 2000 or later"),
            ("$.cardholder_name", "must not be empty"),
        ])
    );
    let listed = app.list_tokens("").await;
    assert_eq!(
        listed.body["pagination"]["total_items"],
        json!(0),
        "no bad card became a token"
    );
}

async fn malformed_empty_and_non_object_bodies_are_422_at_the_root(backend: Backend) {
    let app = spawn_app(backend).await;
    let json = "application/json";
    let malformed = app.tokenize_raw(json, "{\"account_number\": ").await;
    assert_eq!(malformed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        malformed.body,
        validation_body(&[("$", "the JSON document ends too early")])
    );
    let broken = app.tokenize_raw(json, "{\"account_number\" 4}").await;
    assert_eq!(
        broken.body,
        validation_body(&[("$", "malformed JSON at line 1 column 19")])
    );
    let empty = app.tokenize_raw(json, "").await;
    assert_eq!(
        empty.body,
        validation_body(&[("$", "the request body is empty; a JSON object is expected")])
    );
    let array = app.tokenize_raw(json, "[1, 2]").await;
    assert_eq!(
        array.body,
        validation_body(&[("$", "must be a JSON object")])
    );

    let text = app.tokenize_raw("text/plain", "{}").await;
    assert_eq!(text.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        text.body,
        error_body(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "The request body must be sent with Content-Type: application/json"
        )
    );
}

async fn an_account_without_the_cde_import_feature_gets_403(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.create_account("plain", &[]).await;
    let answer = app.with_key(&key).tokenize(&card("4111111111111111")).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer.body,
        error_body(
            403,
            "FORBIDDEN",
            "Not allowed to access this resource or feature"
        )
    );
}
