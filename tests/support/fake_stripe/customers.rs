//! `GET /v1/customers`: the customers in the order they were added, a page at a time
//! (`limit`, `starting_after`), each in Stripe's customer shape.

use axum::response::Response;
use serde_json::{json, Value};

use super::errors::{reply, resource_missing};
use super::http::{param, parse_limit};
use super::{Customer, Shared};

pub(super) fn list_customers(shared: &Shared, query: &[(String, String)]) -> Response {
    let limit = match parse_limit(query) {
        Ok(limit) => limit,
        Err((status, body)) => return reply(status, body),
    };
    let data = shared.data();
    let start = match param(query, "starting_after") {
        None => 0,
        Some(id) => match data.customer_index.get(id) {
            Some(index) => index + 1,
            None => {
                return reply(
                    400,
                    resource_missing("starting_after", &format!("No such customer: '{id}'")),
                )
            }
        },
    };
    let end = start.saturating_add(limit).min(data.customers.len());
    let page = data.customers.get(start..end).unwrap_or(&[]);
    reply(
        200,
        json!({
            "object": "list",
            "url": "/v1/customers",
            "has_more": end < data.customers.len(),
            "data": page.iter().map(customer_json).collect::<Vec<_>>(),
        }),
    )
}

fn customer_json(customer: &Customer) -> Value {
    let invoice_prefix: String = customer.id.chars().skip(4).take(8).collect();
    json!({
        "id": customer.id,
        "object": "customer",
        "address": null,
        "balance": 0,
        "created": customer.created,
        "currency": null,
        "default_source": null,
        "delinquent": false,
        "description": null,
        "discount": null,
        "email": null,
        "invoice_prefix": invoice_prefix.to_uppercase(),
        "invoice_settings": {"custom_fields": null, "default_payment_method": null, "footer": null, "rendering_options": null},
        "livemode": false,
        "metadata": {},
        "name": null,
        "phone": null,
        "preferred_locales": [],
        "shipping": null,
        "tax_exempt": "none",
        "test_clock": null,
    })
}
