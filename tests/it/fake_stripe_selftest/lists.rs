//! The fake's listings and authentication: customers and payment methods page by page in Stripe's
//! shapes (never the number), and keys refused as Stripe refuses them.

use serde_json::json;

use crate::support::fake_stripe::{luhn_valid, FakeCard};
use crate::support::stripe_client::{client, fake, get, send, KEY};

#[tokio::test]
async fn fake_stripe_lists_customers_page_by_page() {
    let fake = fake().await;
    let ids: Vec<String> = (0..5)
        .map(|i| fake.add_customer(vec![FakeCard::visa(i)]).0)
        .collect();

    let (status, page) = send(get(&fake, "/v1/customers?limit=2")).await;
    assert_eq!(status, 200);
    assert_eq!(page["object"], "list");
    assert_eq!(page["url"], "/v1/customers");
    assert_eq!(page["has_more"], true);
    let got: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[0].as_str(), ids[1].as_str()]);
    assert_eq!(page["data"][0]["object"], "customer");

    let (_, page) = send(get(
        &fake,
        &format!("/v1/customers?limit=2&starting_after={}", ids[1]),
    ))
    .await;
    assert_eq!(page["has_more"], true);
    assert_eq!(page["data"][0]["id"], ids[2].as_str());

    let (_, page) = send(get(
        &fake,
        &format!("/v1/customers?limit=2&starting_after={}", ids[3]),
    ))
    .await;
    assert_eq!(page["has_more"], false);
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["data"][0]["id"], ids[4].as_str());

    let (_, page) = send(get(&fake, "/v1/customers")).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 5);
    assert_eq!(page["has_more"], false);

    for bad in ["0", "101", "ten"] {
        let (status, body) = send(get(&fake, &format!("/v1/customers?limit={bad}"))).await;
        assert_eq!(status, 400, "limit={bad}");
        assert_eq!(body["error"]["code"], "parameter_invalid_integer");
        assert_eq!(body["error"]["param"], "limit");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
    let (status, body) = send(get(&fake, "/v1/customers?starting_after=cus_nope")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "resource_missing");

    assert_eq!(fake.stats().customer_lists, 8);
}

#[tokio::test]
async fn fake_stripe_lists_payment_methods_without_the_number() {
    let fake = fake().await;
    let cards: Vec<FakeCard> = (10..13).map(FakeCard::visa).collect();
    for card in &cards {
        assert!(luhn_valid(&card.number));
        assert_eq!(card.number.len(), 16);
        assert!(!format!("{card:?}").contains(&card.number));
    }
    let (customer, pms) = fake.add_customer(cards.clone());
    let path = format!("/v1/customers/{customer}/payment_methods?type=card&limit=2");

    let (status, page) = send(get(&fake, &path)).await;
    assert_eq!(status, 200);
    assert_eq!(page["has_more"], true);
    assert_eq!(
        page["url"],
        format!("/v1/customers/{customer}/payment_methods")
    );
    let first = &page["data"][0];
    assert_eq!(first["id"], pms[0].as_str());
    assert_eq!(first["object"], "payment_method");
    assert_eq!(first["type"], "card");
    assert_eq!(first["customer"], customer.as_str());
    assert_eq!(first["card"]["brand"], "visa");
    assert_eq!(first["card"]["last4"], cards[0].last4().as_str());
    assert_eq!(first["card"]["exp_month"], 12);
    assert_eq!(first["card"]["exp_year"], 2030);
    assert_eq!(first["billing_details"]["name"], "Test Holder");
    assert_eq!(page["data"][1]["id"], pms[1].as_str());
    for card in &cards {
        assert!(!page.to_string().contains(&card.number));
    }

    let (_, page) = send(get(&fake, &format!("{path}&starting_after={}", pms[1]))).await;
    assert_eq!(page["has_more"], false);
    assert_eq!(page["data"][0]["id"], pms[2].as_str());

    let (status, body) = send(get(&fake, "/v1/customers/cus_x/payment_methods?type=card")).await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"error": {"code": "resource_missing", "param": "customer", "message": "No such customer: 'cus_x'", "type": "invalid_request_error"}})
    );
    let (status, _) = send(get(
        &fake,
        &format!("/v1/customers/{customer}/payment_methods?type=sepa"),
    ))
    .await;
    assert_eq!(status, 400);

    let total = fake.add_customers(3, 4);
    assert_eq!(total, 12);
    let (_, page) = send(get(&fake, "/v1/customers?limit=100")).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn fake_stripe_checks_the_key() {
    let fake = fake().await;
    let url = format!("{}/v1/customers", fake.base_url());

    let (status, body) = send(client().get(&url)).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let (status, body) = send(client().get(&url).bearer_auth("sk_test_wrongabcd")).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"error": {"message": "Invalid API Key provided: sk_test_****abcd", "type": "invalid_request_error"}})
    );

    let (status, body) = send(client().get(&url).bearer_auth("rk_test_restricted")).await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({"error": {"message": "The provided key 'rk_test_****cted' does not have the required permissions for this endpoint on account 'acct_fake'.", "type": "invalid_request_error"}})
    );

    let (status, _) = send(client().get(&url).basic_auth(KEY, Some(""))).await;
    assert_eq!(status, 200);

    let (status, body) = send(get(&fake, "/v1/x")).await;
    assert_eq!(status, 404);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Unrecognized request URL (GET: /v1/x)."));
}
