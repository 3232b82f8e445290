//! `processor add|list|remove` and `route set|show` as an operator runs them: the output shapes, the
//! refusals (naming the field or the rule at fault, never echoing a secret), removal wiping secrets, and
//! a rule change reaching a running server within the auth cache window.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{
    on_both_backends, payment, spawn_app, spawn_app_with, Backend, STRIPE_SECRET,
};

on_both_backends!(
    processors_are_added_listed_and_removed_without_showing_secrets,
    route_set_refuses_unknown_processors_and_malformed_rules_naming_the_rule,
    a_server_reads_an_accounts_rules_once_per_cache_window,
);

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

async fn processors_are_added_listed_and_removed_without_showing_secrets(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.account_id().await.to_string();
    let added = app
        .add_processor(
            None,
            "stripe-eu",
            "stripe",
            "https://api.stripe.com",
            &json!({"api_key": STRIPE_SECRET}),
            &[],
        )
        .await;
    assert_eq!(keys(&added), ["id", "kind", "name"]);
    assert_eq!(
        (added["name"].clone(), added["kind"].clone()),
        (json!("stripe-eu"), json!("stripe"))
    );
    let id = added["id"].as_str().unwrap().to_owned();

    let (ok, stdout, stderr) = app.cli(&["processor", "list", "--account", &account, "--json"]);
    assert!(ok, "{stderr}");
    assert!(!stdout.contains(STRIPE_SECRET));
    let list: Value = serde_json::from_str(stdout.trim()).unwrap();
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, [json!("sandbox"), json!("stripe-eu")]);
    assert_eq!(list[1]["id"], json!(id));
    assert_eq!(list[1]["kind"], "stripe");

    // Refusals: a taken name, a secret missing or unknown, secrets that are not JSON, a bad kind.
    let add = |name: &str, kind: &str, secrets: &str| {
        app.cli_with_input(
            &[
                "processor",
                "add",
                "--account",
                &account,
                "--name",
                name,
                "--kind",
                kind,
                "--json",
            ],
            secrets,
        )
    };
    let (ok, _, stderr) = add(
        "stripe-eu",
        "stripe",
        &json!({"api_key": "sk_test_other"}).to_string(),
    );
    assert!(
        !ok && stderr.contains("already has a processor named \"stripe-eu\""),
        "{stderr}"
    );
    let (ok, _, stderr) = add(
        "adyen",
        "adyen",
        r#"{"api_key": "AQE_secret_value", "merchant_account": "M"}"#,
    );
    assert!(
        !ok && stderr.contains("\"hmac_key\" is required for adyen"),
        "{stderr}"
    );
    assert!(!stderr.contains("AQE_secret_value"));
    let (ok, _, stderr) = add(
        "typo",
        "stripe",
        r#"{"api_key": "sk_test_x", "apikey": "sk_test_y"}"#,
    );
    assert!(
        !ok && stderr.contains("\"apikey\" is not a stripe secret"),
        "{stderr}"
    );
    let (ok, _, stderr) = add("raw", "stripe", "sk_live_pasted_by_mistake");
    assert!(
        !ok && !stderr.contains("sk_live_pasted_by_mistake"),
        "{stderr}"
    );
    let (ok, _, stderr) = add("other", "paypal", "{}");
    assert!(!ok && stderr.contains("--kind"), "{stderr}");
    let (ok, _, stderr) = add(
        "sandbox",
        "stripe",
        &json!({"api_key": "sk_test_x"}).to_string(),
    );
    assert!(!ok && stderr.contains("--name"), "{stderr}");

    // Removal wipes the sealed secrets and takes the processor off the list; a rule naming it is
    // pointed out.
    let (ok, _, stderr) = app
        .set_routes(&json!([{"name": "eu", "processors": ["stripe-eu", "sandbox"]}]))
        .await;
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = app.cli(&["processor", "remove", &id, "--json"]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("warning: rule \"eu\" still names \"stripe-eu\""),
        "{stderr}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(stdout.trim()).unwrap(),
        json!({"id": id, "removed": true})
    );
    let stored = app
        .store()
        .get_processor(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(stored.sealed_secrets.is_none() && stored.removed_at.is_some());
    let (ok, stdout, _) = app.cli(&["processor", "list", "--account", &account, "--json"]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(stdout.trim())
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (ok, _, stderr) = app.cli(&["processor", "remove", &id]);
    assert!(!ok && stderr.contains("no processor with id"), "{stderr}");
}

async fn route_set_refuses_unknown_processors_and_malformed_rules_naming_the_rule(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let account = app.account_id().await.to_string();
    let good = json!([{"name": "eur", "when": {"currency_code": ["EUR"], "amount_max": 10000}, "processors": ["sandbox"]}]);
    let (ok, stdout, stderr) = app.set_routes(&good).await;
    assert!(ok, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(stdout.trim()).unwrap()["rules"],
        good
    );

    for (rules, message) in [
        (
            json!([{"name": "r1", "processors": ["ghost"]}]),
            "rule \"r1\": unknown processor \"ghost\"",
        ),
        (
            json!([{"name": "r2", "processors": []}]),
            "rule \"r2\": `processors` must name at least one processor",
        ),
        (
            json!([{"name": "r3", "when": {"colour": ["red"]}, "processors": ["sandbox"]}]),
            "rule \"r3\": unknown field `colour`",
        ),
        (
            json!([{"name": "r4", "when": {"use_case": ["SOMETIMES"]}, "processors": ["sandbox"]}]),
            "rule \"r4\":",
        ),
        (
            json!([{"name": "r5", "when": {"amount_min": 10, "amount_max": 5}, "processors": ["sandbox"]}]),
            "rule \"r5\": `when.amount_min` is above `when.amount_max`",
        ),
        (
            json!([{"processors": ["sandbox"]}]),
            "rule #1: missing field `name`",
        ),
        (
            json!([{"name": "a", "processors": ["sandbox"]}, {"name": "a", "processors": ["sandbox"]}]),
            "rule \"a\": another rule has this name",
        ),
        (
            json!({"name": "not-a-list"}),
            "the rules must be a JSON array",
        ),
    ] {
        let (ok, _, stderr) = app.set_routes(&rules).await;
        assert!(!ok, "{rules} was accepted");
        assert!(stderr.contains(message), "{rules}: {stderr}");
    }
    // Refused documents left the rules as they were.
    let (ok, stdout, stderr) = app.cli(&["route", "show", "--account", &account, "--json"]);
    assert!(ok, "{stderr}");
    let shown: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(shown, json!({"account_id": account, "rules": good}));
}

async fn a_server_reads_an_accounts_rules_once_per_cache_window(backend: Backend) {
    let window = Duration::from_secs(3);
    let app = spawn_app_with(backend, |config| config.auth_cache_ttl = window).await;
    let account = app.account_id().await.to_string();
    let token = app.token_for("4242424242424242").await;
    let first = app
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    assert_eq!(
        first["flow_matrix_rule"],
        "default: all payments to sandbox"
    );
    let read_at = Instant::now();

    let rules = json!([{"name": "everything", "processors": ["sandbox"]}]).to_string();
    let (ok, _, stderr) =
        app.cli_with_input(&["route", "set", "--account", &account, "--json"], &rules);
    assert!(ok, "{stderr}");
    let cached = app
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    if read_at.elapsed() < window {
        assert_eq!(
            cached["flow_matrix_rule"], "default: all payments to sandbox",
            "within the window the rules read for the first payment still apply"
        );
    }
    tokio::time::sleep(window.saturating_sub(read_at.elapsed())).await;
    let fresh = app
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    assert_eq!(fresh["flow_matrix_rule"], "everything");
}
