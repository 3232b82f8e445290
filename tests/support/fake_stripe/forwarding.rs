//! `POST /v1/forwarding/requests`: the Vault and Forward API. Fills the stored card into the request
//! body, posts it to the destination, and answers the forwarding object with the card data redacted.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::cards::{mask_number, random_id};
use super::errors::{no_such_payment_method, reply, upstream_connection_error};
use super::faults::injected_body;
use super::forward_form::ForwardForm;
use super::idempotency::{self, Claim};
use super::{FakeCard, Route, Shared};

pub(super) async fn forward(shared: &Arc<Shared>, headers: &HeaderMap, body: &Bytes) -> Response {
    if !shared.config.forwarding_enabled {
        return reply(
            400,
            json!({"error": {
                "code": "forwarding_api_inactive",
                "message": "Forwarding is not enabled for this account. Contact Stripe to enable the Vault and Forward API.",
                "type": "invalid_request_error",
            }}),
        );
    }

    let in_flight = match idempotency::claim(shared, headers) {
        Claim::Unkeyed => None,
        Claim::Claimed(in_flight) => Some(in_flight),
        Claim::Answer(answer) => return answer,
    };

    let form = match ForwardForm::parse(body) {
        Ok(form) => form,
        Err((status, body)) => return reply(status, body),
    };

    let card = {
        let mut data = shared.data();
        let Some(card) = data
            .payment_methods
            .get(&form.payment_method)
            .map(|pm| pm.card.clone())
        else {
            return reply(404, no_such_payment_method(&form.payment_method));
        };
        if let Some(status) = data.take_forward_failure(&form.payment_method) {
            data.count_injected(status);
            return reply(
                status,
                injected_body(Route::Forwarding, status, Some(&form.payment_method)),
            );
        }
        if data.deleted_at_forward.contains(&form.payment_method) {
            return reply(404, no_such_payment_method(&form.payment_method));
        }
        card
    };

    let (sent, redacted) = fill(form.body, &card, &form.replacements);
    let sent = Value::Object(sent).to_string();
    let redacted = Value::Object(redacted).to_string();

    let request = || {
        let mut request = shared.http.post(form.url.clone());
        let mut has_content_type = false;
        for (name, value) in &form.headers {
            has_content_type |= name.eq_ignore_ascii_case("content-type");
            request = request.header(name.as_str(), value.as_str());
        }
        if !has_content_type {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        request.body(sent.clone())
    };
    let started = Instant::now();
    let twice = {
        let mut data = shared.data();
        if let Some((_, key)) = form
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("x-api-key"))
        {
            data.last_forward_key = Some(key.clone());
        }
        data.posted_twice.contains(&form.payment_method)
    };
    let answer = if twice {
        // Both at once; the first one's answer is kept for the test, the second's is the object's.
        let (first, second) = tokio::join!(request().send(), request().send());
        // Counted as a single post is: answered, or failed after connecting.
        if first.as_ref().map_or_else(|e| !e.is_connect(), |_| true) {
            count_post(shared, &form.payment_method);
        }
        let first = match first {
            Ok(first) => first.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        shared
            .data()
            .double_post_answers
            .insert(form.payment_method.clone(), vec![first]);
        second
    } else {
        request().send().await
    };
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            if !error.is_connect() {
                count_post(shared, &form.payment_method);
            }
            return reply(502, upstream_connection_error());
        }
    };
    count_post(shared, &form.payment_method);
    let status = answer.status().as_u16();
    let ip = answer
        .remote_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let content_type = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Ok(answer_body) = answer.text().await else {
        return reply(502, upstream_connection_error());
    };
    if twice {
        if let Some(bodies) = shared
            .data()
            .double_post_answers
            .get_mut(&form.payment_method)
        {
            bodies.push(answer_body.clone());
        }
    }
    let duration = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);

    let request_headers: Vec<Value> = form
        .headers
        .iter()
        .map(|(name, value)| {
            let value = if name.eq_ignore_ascii_case("x-api-key") {
                "[REDACTED]"
            } else {
                value.as_str()
            };
            json!({"name": name, "value": value})
        })
        .collect();
    let response_headers: Vec<Value> = content_type
        .iter()
        .map(|v| json!({"name": "Content-Type", "value": v}))
        .collect();
    let object = json!({
        "id": format!("fwdreq_{}", random_id(&mut rand::thread_rng(), 24)),
        "object": "forwarding.request",
        "created": chrono::Utc::now().timestamp(),
        "livemode": false,
        "metadata": form.metadata,
        "payment_method": form.payment_method,
        "replacements": form.replacements,
        "request_context": {
            "destination_duration": duration,
            "destination_ip_address": ip,
        },
        "request_details": {
            "body": redacted,
            "headers": request_headers,
            "http_method": "POST",
        },
        "response_details": {
            "body": answer_body,
            "headers": response_headers,
            "status": status,
        },
        "url": form.url,
    });
    if let Some(in_flight) = &in_flight {
        in_flight.remember(&object);
    }
    reply(200, object)
}

fn count_post(shared: &Shared, pm: &str) {
    let mut data = shared.data();
    data.stats.destination_posts += 1;
    *data.destination_posts.entry(pm.to_owned()).or_insert(0) += 1;
}

/// Fills the replacements into `body`; returns what is sent and the same with the card data
/// redacted as Stripe shows it (number: first 6 + `******` + last 4, CVC `***`, name `[REDACTED]`).
fn fill(
    mut body: Map<String, Value>,
    card: &FakeCard,
    replacements: &[String],
) -> (Map<String, Value>, Map<String, Value>) {
    let mut redacted = body.clone();
    for replacement in replacements {
        match replacement.as_str() {
            "card_number" => {
                body.insert("account_number".into(), json!(card.number));
                redacted.insert("account_number".into(), json!(mask_number(&card.number)));
            }
            "card_expiry" => {
                for map in [&mut body, &mut redacted] {
                    map.insert(
                        "expiry_month".into(),
                        json!(format!("{:02}", card.exp_month)),
                    );
                    map.insert("expiry_year".into(), json!(format!("{:04}", card.exp_year)));
                }
            }
            "cardholder_name" => {
                if let Some(name) = &card.name {
                    body.insert("cardholder_name".into(), json!(name));
                    redacted.insert("cardholder_name".into(), json!("[REDACTED]"));
                }
            }
            "card_cvc" => {
                if let Some(cvc) = &card.cvc {
                    body.insert("security_code".into(), json!(cvc));
                    redacted.insert("security_code".into(), json!("***"));
                }
            }
            _ => {}
        }
    }
    (body, redacted)
}
