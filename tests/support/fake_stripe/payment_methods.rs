//! `GET /v1/customers/{id}/payment_methods`: a customer's card payment methods a page at a time, in
//! Stripe's shape, which shows the last four digits and never the number.

use axum::response::Response;
use serde_json::{json, Value};

use super::cards::brand;
use super::errors::{reply, resource_missing};
use super::http::{param, parse_limit};
use super::{Shared, StoredPaymentMethod};

pub(super) fn list_payment_methods(
    shared: &Shared,
    customer: &str,
    query: &[(String, String)],
) -> Response {
    match param(query, "type") {
        None | Some("card") => {}
        Some(other) => {
            return reply(
                400,
                json!({"error": {
                    "param": "type",
                    "message": format!("Invalid type: '{other}'. This fake Stripe only has payment methods of type 'card'."),
                    "type": "invalid_request_error",
                }}),
            )
        }
    }
    let limit = match parse_limit(query) {
        Ok(limit) => limit,
        Err((status, body)) => return reply(status, body),
    };
    let data = shared.data();
    let Some(owner) = data
        .customer_index
        .get(customer)
        .and_then(|&i| data.customers.get(i))
    else {
        return reply(
            404,
            resource_missing("customer", &format!("No such customer: '{customer}'")),
        );
    };
    let pms = &owner.payment_methods;
    let start = match param(query, "starting_after") {
        None => 0,
        Some(pm) => match pms.iter().position(|p| p == pm) {
            Some(index) => index + 1,
            None => {
                return reply(
                    400,
                    resource_missing("starting_after", &format!("No such PaymentMethod: '{pm}'")),
                )
            }
        },
    };
    let end = start.saturating_add(limit).min(pms.len());
    let page: Vec<Value> = pms
        .get(start..end)
        .unwrap_or(&[])
        .iter()
        .filter_map(|id| {
            data.payment_methods
                .get(id)
                .map(|pm| payment_method_json(id, pm))
        })
        .collect();
    reply(
        200,
        json!({
            "object": "list",
            "url": format!("/v1/customers/{customer}/payment_methods"),
            "has_more": end < pms.len(),
            "data": page,
        }),
    )
}

fn payment_method_json(id: &str, pm: &StoredPaymentMethod) -> Value {
    let brand = brand(&pm.card.number);
    let cvc_check = if pm.card.cvc.is_some() {
        "pass"
    } else {
        "unchecked"
    };
    json!({
        "id": id,
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": {
            "address": {"city": null, "country": null, "line1": null, "line2": null, "postal_code": null, "state": null},
            "email": null,
            "name": pm.card.name,
            "phone": null,
        },
        "card": {
            "brand": brand,
            "checks": {"address_line1_check": null, "address_postal_code_check": null, "cvc_check": cvc_check},
            "country": "US",
            "display_brand": brand,
            "exp_month": pm.card.exp_month,
            "exp_year": pm.card.exp_year,
            "fingerprint": pm.fingerprint,
            "funding": "credit",
            "generated_from": null,
            "last4": pm.card.last4(),
            "networks": {"available": [brand], "preferred": null},
            "three_d_secure_usage": {"supported": true},
            "wallet": null,
        },
        "created": pm.created,
        "customer": pm.customer,
        "livemode": false,
        "metadata": {},
        "type": "card",
    })
}
