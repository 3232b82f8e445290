//! The OpenAPI document in the Commerce API's shape. utoipa generates it from the handlers and the
//! model; this file then gives it what the seed documents (`spec/seed/`, embedded) have and the
//! generator cannot know: servers, the seed's tags, its `X-API-Key` scheme and 401/403/422 responses,
//! the seed's schemas for the properties of a token or payment that Strongroom emits in the seed's shape
//! or never emits (documented as absent), and an example of each object.

use serde_json::{json, Map, Value};
use utoipa::openapi::OpenApi;

/// The seed documents, as `spec/seed/extract.py` turned them into JSON.
const SEEDS: [&str; 4] = [
    include_str!("../../spec/seed/post-cde-import.json"),
    include_str!("../../spec/seed/get-payments.json"),
    include_str!("../../spec/seed/get-token-import.json"),
    include_str!("../../spec/seed/get-token-import-failures.json"),
];

const ABSENT: &str = "Strongroom does not provide this yet: the field is always absent.";

/// Our tags beside the seed's (which come first, in the seed's order).
const OWN_TAGS: [(&str, &str); 8] = [
    (
        "sessions",
        "The browser side of token sessions: called by the hosted card form with the session id alone.",
    ),
    ("account", "The account of the API key."),
    ("audit", "The account's audit trail."),
    ("operations", "Health and readiness, without an API key."),
    (
        "processor_backup",
        "Token imports from a processor (Stripe), and their progress and failures.",
    ),
    (
        "compliance",
        "Forwarding card data to an allowed third party (the Commerce API's compliance service).",
    ),
    (
        "processors",
        "Notifications that processors (Adyen) post back, authenticated by their signatures.",
    ),
    ("tokens_data", "Listing tokens."),
];

/// The generated document, reshaped as the module comment says. `public_url` is the server's own
/// address, given as its one server. A seed that cannot be read leaves the document as generated.
/// (The result stays JSON: the seed's schemas hold what utoipa's types do not model.)
pub fn commerce_shape(document: &OpenApi, public_url: &str) -> Value {
    let Ok(mut doc) = serde_json::to_value(document) else {
        return Value::Null;
    };
    let seeds: Vec<Value> = SEEDS
        .iter()
        .filter_map(|text| serde_json::from_str(text).ok())
        .collect();
    if seeds.len() != SEEDS.len() {
        tracing::warn!(
            "an embedded seed document is unreadable; the OpenAPI document is left as generated"
        );
        return doc;
    }
    let server = if public_url.is_empty() {
        "/"
    } else {
        public_url
    };
    if let Some(root) = doc.as_object_mut() {
        root.insert(
            "servers".into(),
            json!([{"url": server, "description": "This Strongroom server"}]),
        );
    }
    tags(&mut doc, &seeds[0]);
    security_and_responses(&mut doc, &seeds[1]);
    objects(&mut doc, &seeds);
    absent_is_not_null(&mut doc);
    examples(&mut doc);
    discriminator_mappings(&mut doc);
    for (from, property, name) in HOISTED {
        hoist(&mut doc, from, property, name);
    }
    doc
}

/// Inline objects of the seed's card source given names of their own, in order: a generator that meets
/// `PaymentSourceCard` both through the `oneOf` and through the discriminator's mapping would otherwise
/// make two models of the same inline object.
const HOISTED: [(&str, &str, &str); 2] = [
    ("PaymentSourceCard", "issuer", "PaymentSourceCardIssuer"),
    (
        "PaymentSourceCardIssuer",
        "account",
        "PaymentSourceCardIssuerAccount",
    ),
];

/// Moves the inline schema of `from`'s `property` to the component `name` and refers to it there.
fn hoist(doc: &mut Value, from: &str, property: &str, name: &str) {
    let Some(slot) = doc.pointer_mut(&format!("/components/schemas/{from}/properties/{property}"))
    else {
        return;
    };
    if slot.get("$ref").is_some() {
        return;
    }
    let inline = std::mem::replace(
        slot,
        json!({ "$ref": format!("#/components/schemas/{name}") }),
    );
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.insert(name.to_owned(), inline);
    }
}

/// The seed writes a discriminator's mapping as `{"card": {"$ref": …}}`; OpenAPI (and every client
/// generator) wants the reference itself as the string.
fn discriminator_mappings(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(mapping) = map
                .get_mut("discriminator")
                .and_then(|d| d.get_mut("mapping"))
                .and_then(Value::as_object_mut)
            {
                for target in mapping.values_mut() {
                    if let Some(reference) = target.get("$ref").cloned() {
                        *target = reference;
                    }
                }
            }
            map.values_mut().for_each(discriminator_mappings);
        }
        Value::Array(items) => items.iter_mut().for_each(discriminator_mappings),
        _ => {}
    }
}

fn tags(doc: &mut Value, seed: &Value) {
    let mut tags: Vec<Value> = seed["tags"].as_array().cloned().unwrap_or_default();
    for (name, description) in OWN_TAGS {
        tags.push(json!({"name": name, "description": description}));
    }
    if let Some(root) = doc.as_object_mut() {
        root.insert("tags".into(), Value::Array(tags));
    }
}

/// The seed's security scheme, and its 401/403/422 responses used by every operation that takes a key.
fn security_and_responses(doc: &mut Value, seed: &Value) {
    let responses = seed["components"]["responses"].clone();
    copy_referenced(doc, seed, &responses);
    if let Some(components) = doc.get_mut("components").and_then(Value::as_object_mut) {
        components.insert(
            "securitySchemes".into(),
            seed["components"]["securitySchemes"].clone(),
        );
        components.insert("responses".into(), responses);
    }
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for operation in paths.values_mut().filter_map(Value::as_object_mut) {
        for op in operation.values_mut() {
            let secured = op.get("security").is_some();
            let Some(answers) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            for (status, component) in [
                ("401", "401_UnauthorizedError"),
                ("403", "403_ForbiddenError"),
                ("422", "422_ValidationError"),
            ] {
                if secured || answers.contains_key(status) {
                    let reference = format!("#/components/responses/{component}");
                    answers.insert(status.to_owned(), json!({ "$ref": reference }));
                }
            }
        }
    }
}

/// Our schema name, the seed document holding its counterpart, and the seed's name for it.
const COUNTERPARTS: [(&str, usize, &str); 4] = [
    ("HellgateToken", 0, "HellgateToken"),
    ("PaymentResponse", 1, "PaymentResponse"),
    ("TokensImport", 2, "TokensImport"),
    ("TokensImportFailure", 3, "TokensImportFailure"),
];

/// Properties we emit as loose JSON but in exactly the seed's shape: the seed's schema replaces ours.
const SEED_SHAPED: [(&str, &str); 3] = [
    ("PaymentResponse", "source"),
    ("PaymentResponse", "failure_details"),
    ("PaymentResponse", "metadata"),
];

/// Each seed property missing from ours is added as absent; the seed-shaped ones take the seed's schema.
fn objects(doc: &mut Value, seeds: &[Value]) {
    for (ours, seed_at, name) in COUNTERPARTS {
        let seed = &seeds[seed_at];
        let Some(seed_properties) = seed["components"]["schemas"][name]["properties"].as_object()
        else {
            continue;
        };
        for (property, schema) in seed_properties {
            let present = doc["components"]["schemas"][ours]["properties"]
                .get(property)
                .is_some();
            let shaped = SEED_SHAPED.contains(&(ours, property.as_str()));
            if present && !shaped {
                continue;
            }
            copy_referenced(doc, seed, schema);
            let schema = if shaped {
                schema.clone()
            } else {
                json!({"allOf": [schema], "description": ABSENT})
            };
            if let Some(properties) = doc
                .pointer_mut(&format!("/components/schemas/{ours}/properties"))
                .and_then(Value::as_object_mut)
            {
                properties.insert(property.clone(), schema);
            }
        }
    }
    // Strongroom's source names the cardholder as `null` when the token has none.
    if let Some(name) = doc
        .pointer_mut("/components/schemas/PaymentSourceCard/properties/cardholder_name")
        .and_then(Value::as_object_mut)
    {
        name.insert("type".into(), json!(["string", "null"]));
        name.insert(
            "description".into(),
            json!("The name on the card; `null` when the token has none."),
        );
    }
}

/// Copies into `doc`'s components every seed schema that `value` refers to, directly or not, unless
/// `doc` has a schema of that name already.
fn copy_referenced(doc: &mut Value, seed: &Value, value: &Value) {
    let mut pending = Vec::new();
    references(value, &mut pending);
    let mut seen = 0;
    while let Some(reference) = pending.pop() {
        seen += 1;
        if seen > 500 {
            break;
        }
        let Some(name) = reference.strip_prefix("#/components/schemas/") else {
            continue;
        };
        let Some(schemas) = doc
            .pointer_mut("/components/schemas")
            .and_then(Value::as_object_mut)
        else {
            return;
        };
        if schemas.contains_key(name) {
            continue;
        }
        let schema = seed["components"]["schemas"][name].clone();
        references(&schema, &mut pending);
        schemas.insert(name.to_owned(), schema);
    }
}

fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                out.push(reference.clone());
            }
            map.values().for_each(|v| references(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

/// The objects the server answers with leave out an optional field rather than send `null`: their
/// optional properties are documented as not nullable. (Request schemas keep `null`, which unsets.)
/// A field that is sent as `null` is marked required and keeps its `null`.
const RESPONSES: [&str; 7] = [
    "Amounts",
    "ErrorBody",
    "HellgateToken",
    "PaymentResponse",
    "RefundResponse",
    "TokensImport",
    "TransactionResponse",
];

fn absent_is_not_null(doc: &mut Value) {
    for name in RESPONSES {
        let Some(schema) = doc.pointer_mut(&format!("/components/schemas/{name}")) else {
            continue;
        };
        let required: Vec<Value> = schema["required"].as_array().cloned().unwrap_or_default();
        let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
            continue;
        };
        for (property, value) in properties.iter_mut() {
            if required.contains(&json!(property)) {
                continue;
            }
            not_null(value);
        }
    }
}

fn not_null(schema: &mut Value) {
    let Some(map) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(types)) = map.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            map.insert("type".into(), only);
        }
    }
    if let Some(Value::Array(alternatives)) = map.remove("oneOf") {
        let kept: Vec<Value> = alternatives
            .into_iter()
            .filter(|a| a.get("type") != Some(&json!("null")))
            .collect();
        match <[Value; 1]>::try_from(kept) {
            Ok([only]) => {
                let description = map.remove("description");
                let mut merged: Map<String, Value> = only.as_object().cloned().unwrap_or_default();
                if let Some(description) = description {
                    merged.insert("description".into(), description);
                }
                *map = merged;
            }
            Err(kept) => {
                map.insert("oneOf".into(), Value::Array(kept));
            }
        }
    }
}

/// An example of each object, as this server answers it.
fn examples(doc: &mut Value) {
    let examples = [
        (
            "HellgateToken",
            json!({
                "id": "5d6b2c9a-9b0b-4b0c-8c7d-9e9d5d7e9d5d", "created_at": "2026-10-01T00:00:00Z",
                "expiry_month": 4, "expiry_year": 2033, "cardholder_name": "John Doe",
                "issuer_identification_number": "42424242", "masked_account_number": "424242XXXXXX4242",
                "account_number_last_four": "4242", "account_number_length": 16, "scheme": "VISA",
                "status": "active", "network_token_status": "not_available",
                "card_art_url": "https://vault.example.com/tokens/card-art/5d6b2c9a-9b0b-4b0c-8c7d-9e9d5d7e9d5d",
                "identity_and_verification": "none"
            }),
        ),
        (
            "PaymentResponse",
            json!({
                "id": "54ba1fdb-7e4e-402b-aebb-66f9d5345cf8",
                "amount": {"requested": 1000, "authorized": 1000, "captured": 1000},
                "created_at": "2026-10-10T00:00:00Z", "currency_code": "EUR",
                "flow_matrix_rule": "default", "reference": "Order #12345", "status": "captured",
                "use_case": "ONE_OFF",
                "source": {"type": "card", "cardholder_name": "Bob Holder", "expiry_month": 12,
                           "expiry_year": 2030, "masked_account_number": "424242XXXXXX4242",
                           "pan_type": "FPAN",
                           "issuer": {"identification_number": "42424242", "scheme": "VISA"}}
            }),
        ),
        (
            "RefundResponse",
            json!({
                "id": "0b8f2c8e-4f7e-4d55-9a53-4f1f0f3f8b6a", "payment_id": "54ba1fdb-7e4e-402b-aebb-66f9d5345cf8",
                "amount": 250, "currency_code": "EUR", "status": "completed", "reference": "Return #7",
                "created_at": "2026-10-11T09:30:00Z"
            }),
        ),
        (
            "TransactionResponse",
            json!({
                "id": "7a1c3e5f-2b4d-4c6e-8f01-23456789abcd", "type": "authorization",
                "status": "succeeded", "amount": 1000, "processor": "sandbox",
                "started_at": "2026-10-10T00:00:00Z", "finished_at": "2026-10-10T00:00:00Z",
                "created_at": "2026-10-10T00:00:00Z", "processor_reference": "sandbox_54ba1fdb"
            }),
        ),
        (
            "TokensImport",
            json!({
                "id": "f3b1a2c4-5d6e-4f70-8a9b-0c1d2e3f4a5b", "created_at": "2026-10-01T00:00:00Z",
                "provider": "stripe", "status": "running", "stripe": {"api_key": "[REDACTED]"},
                "attemts": 120, "attempts": 120, "successes": 118, "failures": 2
            }),
        ),
    ];
    for (name, example) in examples {
        if let Some(schema) = doc
            .pointer_mut(&format!("/components/schemas/{name}"))
            .and_then(Value::as_object_mut)
        {
            schema.insert("example".into(), example);
        }
    }
}
