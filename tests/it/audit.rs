//! The audit trail as an API (`GET /audit-events`) and as a command (`strongroom audit list`): each
//! audited action is one event with its origin, an account sees only its own events, refused requests
//! are on the trail.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::fake_stripe::{FakeStripe, FakeStripeConfig};
use crate::support::{
    on_both_backends, send, spawn_app_for_stripe, visa_cards, Backend, STRIPE_KEY,
};

on_both_backends!(each_audited_action_is_one_event_with_its_origin_and_only_its_account_sees_it,);

/// The events of the calling account for `action`, through the API.
async fn events(api: &crate::support::ApiClient, action: &str) -> Vec<Value> {
    let answer = api
        .get(&format!("/audit-events?action={action}&limit=500"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["data"].as_array().unwrap().clone()
}

fn one(events: Vec<Value>, what: &str) -> Value {
    assert_eq!(events.len(), 1, "{what}: {events:?}");
    events.into_iter().next().unwrap()
}

async fn each_audited_action_is_one_event_with_its_origin_and_only_its_account_sees_it(
    backend: Backend,
) {
    let stripe = FakeStripe::start(FakeStripeConfig::default())
        .await
        .unwrap();
    stripe.add_customer(visa_cards(1, 2));
    let app = spawn_app_for_stripe(backend, &stripe).await;
    let key_id = app.api_key.split('_').nth(1).unwrap().to_owned();
    let key_uuid = format!("{}", uuid::Uuid::parse_str(&key_id).unwrap());
    let actor = format!("key:{key_uuid}");

    // Bootstrap of the default account and its key: by the server, no request.
    let bootstrap = one(events(&app, "api_key.create").await, "bootstrap key");
    assert_eq!(bootstrap["actor"], "server-bootstrap");
    assert_eq!(bootstrap["target"], key_uuid.as_str());
    assert_eq!(bootstrap["remote_addr"], Value::Null);
    assert!(bootstrap["node"].as_str().is_some_and(|n| !n.is_empty()));
    one(events(&app, "account.create").await, "bootstrap account");

    // A token made by a request: who, what, where from.
    let made = send(
        app.request(Method::POST, "/cde-import")
            .header("x-request-id", "audit-test-1")
            .json(&crate::support::card("4242424242424242")),
    )
    .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    let created = one(events(&app, "token.create").await, "token.create");
    assert_eq!(created["actor"], actor.as_str());
    assert_eq!(created["target"], made.body["id"]);
    assert_eq!(created["outcome"], "success");
    assert_eq!(created["request_id"], "audit-test-1");
    assert_eq!(created["remote_addr"], "127.0.0.1");
    assert!(created["node"].as_str().is_some_and(|n| !n.is_empty()));
    assert!(created["at"].as_str().unwrap().ends_with('Z'));

    // An import: its creation, the opening of its Stripe key by the job, and its end by the system.
    let import = app.start_stripe_import(STRIPE_KEY).await;
    let import_id = import["id"].as_str().unwrap().to_owned();
    let ended = app.wait_for_import_end(&import_id).await;
    assert_eq!(ended["status"], "finished");
    let created = one(events(&app, "import.create").await, "import.create");
    assert_eq!(created["target"], import_id.as_str());
    let opened = one(events(&app, "import.open_stripe_key").await, "stripe key");
    assert_eq!(
        (&opened["actor"], &opened["outcome"]),
        (&"system".into(), &"success".into())
    );
    assert_eq!(opened["target"], import_id.as_str());
    let end = one(events(&app, "import.end").await, "import.end");
    assert_eq!(
        (&end["actor"], &end["outcome"]),
        (&"system".into(), &"finished".into())
    );
    assert_eq!(end["target"], import_id.as_str());
    assert_eq!(events(&app, "token.create").await.len(), 3);

    // Another account, made by an operator, with a second key made by the command line.
    let (ok, out, err) = app.cli(&["account", "create", "--name", "other", "--json"]);
    assert!(ok, "{err}");
    let other: Value = serde_json::from_str(&out).unwrap();
    let other_id = other["id"].as_str().unwrap().to_owned();
    let (ok, out, err) = app.cli(&[
        "key",
        "create",
        "--account",
        &other_id,
        "--label",
        "second",
        "--json",
    ]);
    assert!(ok, "{err}");
    let second: Value = serde_json::from_str(&out).unwrap();
    let other_api = app.with_key(other["api_key"].as_str().unwrap());
    let keys = events(&other_api, "api_key.create").await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| k["actor"] == "admin-cli"));
    assert_eq!(keys[0]["target"], second["id"]);
    // Never the first account's events.
    assert!(events(&other_api, "token.create").await.is_empty());
    let all = other_api.get("/audit-events").await.ok_body();
    assert_eq!(all["pagination"]["total_items"], 3, "{all}");
    let mine = app.get("/audit-events?limit=2&page=1").await.ok_body();
    assert_eq!(mine["data"].as_array().unwrap().len(), 2);
    assert!(mine["pagination"]["total_items"].as_u64().unwrap() >= 8);

    // A refused request (403: the other account lacks `cde_import`) is on the account's trail.
    let refused = other_api
        .post_json("/cde-import", &crate::support::card("4111111111111111"))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let refusal = one(events(&other_api, "request.refuse").await, "403");
    assert_eq!(refusal["outcome"], "forbidden");
    assert_eq!(refusal["target"], "POST /cde-import");
    assert_eq!(refusal["remote_addr"], "127.0.0.1");

    // A 401 with a key id but a wrong secret: on the operators' trail, naming the presented key id.
    let forged = format!("sr_{key_id}_wrongsecret");
    let unauthorized = app.with_key(&forged).get("/tokens").await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
    assert!(events(&app, "request.refuse").await.is_empty());
    let (ok, out, err) = app.cli(&["audit", "list", "--json"]);
    assert!(ok, "{err}");
    let trail: Vec<Value> = serde_json::from_str(&out).unwrap();
    let refusals: Vec<&Value> = trail
        .iter()
        .filter(|e| e["action"] == "request.refuse" && e["outcome"] == "unauthorized")
        .collect();
    assert_eq!(refusals.len(), 1, "{trail:?}");
    assert_eq!(refusals[0]["actor"], actor.as_str());
    assert_eq!(refusals[0]["account_id"], Value::Null);
    assert!(!out.contains("wrongsecret"));
    // `--account` narrows the operators' view to one account.
    let (ok, out, _) = app.cli(&[
        "audit",
        "list",
        "--account",
        &other_id,
        "--since",
        "2000-01-01",
        "--json",
    ]);
    assert!(ok);
    let theirs: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(theirs.len(), 4, "{theirs:?}");

    // Filters are checked.
    let bad = app.get("/audit-events?action=nope").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let dated = app
        .get(&format!(
            "/audit-events?from={today}&to={today}&action=token.create"
        ))
        .await
        .ok_body();
    assert_eq!(dated["data"].as_array().unwrap().len(), 3);
    let past = app
        .get("/audit-events?from=2001-01-01&to=2001-01-02")
        .await
        .ok_body();
    assert_eq!(past["pagination"]["total_items"], 0);
}
