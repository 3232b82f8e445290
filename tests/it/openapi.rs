//! The generated OpenAPI document (`GET /openapi.json`) against the Commerce API's four seed documents
//! (`spec/seed/*.json`, extracted from the seed's Markdown by `extract.py` there): for each seed
//! operation, every parameter, request property and response property of the seed must be in ours, with
//! the same type, every enum value and every date `format`; and the document is as precise for the rest
//! (enums, optional `limit`/`page`, servers, tags, security scheme, error responses).

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{on_both_backends, send, spawn_app, Backend};

on_both_backends!(
    the_document_agrees_with_the_seed_documents_property_by_property,
    the_document_is_as_precise_for_the_rest,
);

const SEEDS: [(&str, &str); 4] = [
    (
        "post-cde-import",
        include_str!("../../spec/seed/post-cde-import.json"),
    ),
    (
        "get-payments",
        include_str!("../../spec/seed/get-payments.json"),
    ),
    (
        "get-token-import",
        include_str!("../../spec/seed/get-token-import.json"),
    ),
    (
        "get-token-import-failures",
        include_str!("../../spec/seed/get-token-import-failures.json"),
    ),
];

async fn generated(backend: Backend) -> Value {
    let app = spawn_app(backend).await;
    let answer = send(app.anonymous(Method::GET, "/openapi.json")).await;
    assert_eq!(answer.status, reqwest::StatusCode::OK);
    answer.body
}

/// `schema` with its `$ref` (into `doc`'s components) followed.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    let mut schema = schema;
    for _ in 0..10 {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference.trim_start_matches('#');
                schema = doc.pointer(pointer).unwrap_or(&Value::Null);
            }
            None => break,
        }
    }
    schema
}

/// The types a schema allows, `null` left out (ours says `["string", "null"]` where the seed says
/// `string` for a nullable field).
fn types(doc: &Value, schema: &Value) -> BTreeSet<String> {
    let schema = resolve(doc, schema);
    let mut out = BTreeSet::new();
    match schema.get("type") {
        Some(Value::String(t)) => {
            out.insert(t.clone());
        }
        Some(Value::Array(ts)) => {
            out.extend(ts.iter().filter_map(Value::as_str).map(str::to_owned))
        }
        _ => {}
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        for alternative in schema
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out.extend(types(doc, alternative));
        }
    }
    if schema.get("properties").is_some() {
        out.insert("object".into());
    }
    out.remove("null");
    out
}

/// A value of a schema: its properties (from every `oneOf`/`anyOf`/`allOf` alternative too), its enum
/// values, its `items`, its `format`.
fn properties(doc: &Value, schema: &Value) -> Vec<(String, Value)> {
    let schema = resolve(doc, schema);
    let mut out: Vec<(String, Value)> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    for key in ["oneOf", "anyOf", "allOf"] {
        for alternative in schema
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for (name, property) in properties(doc, alternative) {
                if !out.iter().any(|(n, _)| *n == name) {
                    out.push((name, property));
                }
            }
        }
    }
    out
}

fn enum_values(doc: &Value, schema: &Value) -> BTreeSet<String> {
    let schema = resolve(doc, schema);
    let mut out: BTreeSet<String> = schema
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    for key in ["oneOf", "anyOf", "allOf"] {
        for alternative in schema
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out.extend(enum_values(doc, alternative));
        }
    }
    out
}

fn format(doc: &Value, schema: &Value) -> Option<String> {
    let schema = resolve(doc, schema);
    if let Some(f) = schema.get("format").and_then(Value::as_str) {
        return Some(f.to_owned());
    }
    ["oneOf", "anyOf", "allOf"].iter().find_map(|key| {
        schema
            .get(*key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find_map(|alternative| format(doc, alternative))
    })
}

fn items<'a>(doc: &'a Value, schema: &'a Value) -> Option<&'a Value> {
    let schema = resolve(doc, schema);
    schema.get("items").or_else(|| {
        ["oneOf", "anyOf"].iter().find_map(|key| {
            schema
                .get(*key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find_map(|alternative| resolve(doc, alternative).get("items"))
        })
    })
}

/// Compares a seed schema with ours at `at`, adding each difference to `faults`.
fn compare(
    seed_doc: &Value,
    seed: &Value,
    ours_doc: &Value,
    ours: &Value,
    at: &str,
    faults: &mut Vec<String>,
    depth: usize,
) {
    if depth > 8 {
        return;
    }
    let (seed_types, our_types) = (types(seed_doc, seed), types(ours_doc, ours));
    if !seed_types.is_empty() && !seed_types.is_subset(&our_types) {
        faults.push(format!(
            "{at}: type {seed_types:?} in the seed, {our_types:?} in ours"
        ));
    }
    let missing: Vec<String> = enum_values(seed_doc, seed)
        .difference(&enum_values(ours_doc, ours))
        .cloned()
        .collect();
    if !missing.is_empty() {
        faults.push(format!("{at}: enum values {missing:?} missing"));
    }
    if let Some(f) = format(seed_doc, seed) {
        if matches!(f.as_str(), "date-time" | "date" | "uuid" | "uri")
            && format(ours_doc, ours).as_deref() != Some(f.as_str())
        {
            faults.push(format!("{at}: format {f} missing"));
        }
    }
    let our_properties = properties(ours_doc, ours);
    for (name, property) in properties(seed_doc, seed) {
        match our_properties.iter().find(|(n, _)| *n == name) {
            Some((_, mine)) => compare(
                seed_doc,
                &property,
                ours_doc,
                mine,
                &format!("{at}.{name}"),
                faults,
                depth + 1,
            ),
            None => faults.push(format!("{at}.{name}: missing")),
        }
    }
    if let (Some(seed_items), Some(our_items)) = (items(seed_doc, seed), items(ours_doc, ours)) {
        compare(
            seed_doc,
            seed_items,
            ours_doc,
            our_items,
            &format!("{at}[]"),
            faults,
            depth + 1,
        );
    }
}

fn parameter<'a>(doc: &'a Value, operation: &'a Value, name: &str) -> Option<&'a Value> {
    operation
        .get("parameters")
        .and_then(Value::as_array)?
        .iter()
        .map(|p| resolve(doc, p))
        .find(|p| p["name"] == name)
}

fn json_schema(holder: &Value) -> &Value {
    &holder["content"]["application/json"]["schema"]
}

fn seed_faults(name: &str, seed: &Value, ours: &Value) -> Vec<String> {
    let mut faults = Vec::new();
    for (path, methods) in seed["paths"].as_object().into_iter().flatten() {
        for (method, seed_op) in methods.as_object().into_iter().flatten() {
            let at = format!("{name}: {} {path}", method.to_uppercase());
            let our_op = &ours["paths"][path][method];
            if !our_op.is_object() {
                faults.push(format!("{at}: operation missing"));
                continue;
            }
            for seed_param in seed_op["parameters"].as_array().into_iter().flatten() {
                let seed_param = resolve(seed, seed_param);
                let param_name = seed_param["name"].as_str().unwrap_or("");
                match parameter(ours, our_op, param_name) {
                    None => faults.push(format!("{at}: parameter {param_name} missing")),
                    Some(mine) => {
                        if mine["in"] != seed_param["in"] {
                            faults.push(format!("{at}: parameter {param_name} in {}", mine["in"]));
                        }
                        if seed_param["required"] != json!(true) && mine["required"] == json!(true)
                        {
                            faults
                                .push(format!("{at}: parameter {param_name} is required in ours"));
                        }
                        compare(
                            seed,
                            &seed_param["schema"],
                            ours,
                            &mine["schema"],
                            &format!("{at}: parameter {param_name}"),
                            &mut faults,
                            0,
                        );
                    }
                }
            }
            let seed_body = resolve(seed, &seed_op["requestBody"]);
            if seed_body.is_object() {
                let our_body = resolve(ours, &our_op["requestBody"]);
                compare(
                    seed,
                    json_schema(seed_body),
                    ours,
                    json_schema(our_body),
                    &format!("{at}: request"),
                    &mut faults,
                    0,
                );
            }
            for (status, seed_response) in seed_op["responses"].as_object().into_iter().flatten() {
                let our_response = &our_op["responses"][status];
                if !our_response.is_object() {
                    faults.push(format!("{at}: response {status} missing"));
                    continue;
                }
                compare(
                    seed,
                    json_schema(resolve(seed, seed_response)),
                    ours,
                    json_schema(resolve(ours, our_response)),
                    &format!("{at}: {status}"),
                    &mut faults,
                    0,
                );
            }
        }
    }
    faults
}

async fn the_document_agrees_with_the_seed_documents_property_by_property(backend: Backend) {
    let ours = generated(backend).await;
    let mut faults = Vec::new();
    for (name, text) in SEEDS {
        let seed: Value = serde_json::from_str(text).unwrap();
        faults.extend(seed_faults(name, &seed, &ours));
    }
    assert!(
        faults.is_empty(),
        "{} differences:\n{}",
        faults.len(),
        faults.join("\n")
    );
}

/// The property `name` of the component schema `schema` in our document, `$ref` followed.
fn property<'a>(doc: &'a Value, schema: &str, name: &str) -> &'a Value {
    let object = resolve(doc, &doc["components"]["schemas"][schema]);
    resolve(doc, &object["properties"][name])
}

async fn the_document_is_as_precise_for_the_rest(backend: Backend) {
    let ours = generated(backend).await;
    let seed: Value = serde_json::from_str(SEEDS[1].1).unwrap();

    // Every list takes `limit` and `page`, neither required.
    for path in [
        "/payments",
        "/tokens",
        "/tokens/imports",
        "/tokens/imports/{id}/failures",
        "/payments/{id}/refunds",
        "/payments/{id}/transactions",
    ] {
        let operation = &ours["paths"][path]["get"];
        for name in ["limit", "page"] {
            let p = parameter(&ours, operation, name).unwrap_or_else(|| panic!("{path}: {name}"));
            assert_ne!(p["required"], json!(true), "{path}: {name} is required");
        }
    }

    // Every enum is an enum, with exactly the server's values.
    let enums = [
        ("HellgateToken", "status", vec!["active", "invalid"]),
        (
            "HellgateToken",
            "identity_and_verification",
            vec!["none", "checked", "skipped"],
        ),
        ("TokensImport", "provider", vec!["stripe"]),
        (
            "TokensImport",
            "status",
            vec!["preparing", "running", "finished", "aborted"],
        ),
        (
            "RefundResponse",
            "status",
            vec!["processing", "completed", "failed"],
        ),
        (
            "TransactionResponse",
            "status",
            vec!["succeeded", "failed", "pending"],
        ),
        (
            "TransactionResponse",
            "type",
            vec!["authorization", "capture", "void", "refund", "settlement"],
        ),
    ];
    for (schema, name, values) in enums {
        let have = enum_values(&ours, property(&ours, schema, name));
        let want: BTreeSet<String> = values.iter().map(|v| v.to_string()).collect();
        assert!(want.is_subset(&have), "{schema}.{name}: {have:?}");
    }
    for (schema, name) in [
        ("HellgateToken", "network_token_status"),
        ("HellgateToken", "scheme"),
        ("PaymentResponse", "status"),
        ("PaymentResponse", "use_case"),
    ] {
        assert!(
            !enum_values(&ours, property(&ours, schema, name)).is_empty(),
            "{schema}.{name} is not an enum"
        );
    }

    // Servers, the seed's tags, its security scheme and error responses.
    assert!(
        ours["servers"].as_array().is_some_and(|s| !s.is_empty()),
        "no servers"
    );
    let our_tags: BTreeSet<&str> = ours["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for tag in [
        "payments_ci",
        "payments_mi",
        "payments_modifications",
        "payments_data",
        "refunds_data",
        "tokens_create",
        "tokens_management",
    ] {
        assert!(our_tags.contains(tag), "tag {tag} missing: {our_tags:?}");
    }
    assert_eq!(
        ours["components"]["securitySchemes"]["APIKeyAuth"],
        seed["components"]["securitySchemes"]["APIKeyAuth"]
    );
    for response in [
        "401_UnauthorizedError",
        "403_ForbiddenError",
        "422_ValidationError",
    ] {
        let mine = &ours["components"]["responses"][response];
        assert!(mine.is_object(), "{response} missing");
        let mut faults = Vec::new();
        compare(
            &seed,
            json_schema(&seed["components"]["responses"][response]),
            &ours,
            json_schema(mine),
            response,
            &mut faults,
            0,
        );
        assert!(faults.is_empty(), "{faults:?}");
    }
    assert_eq!(
        ours["paths"]["/payments"]["get"]["responses"]["401"]["$ref"],
        "#/components/responses/401_UnauthorizedError"
    );

    // Discriminator mappings name their schema as a plain reference, as generators require.
    fn mappings(value: &Value, out: &mut Vec<Value>) {
        match value {
            Value::Object(map) => {
                if let Some(m) = map.get("discriminator").and_then(|d| d.get("mapping")) {
                    out.extend(m.as_object().into_iter().flatten().map(|(_, v)| v.clone()));
                }
                map.values().for_each(|v| mappings(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| mappings(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    mappings(&ours, &mut found);
    assert!(
        !found.is_empty() && found.iter().all(Value::is_string),
        "{found:?}"
    );

    // Each object the API answers has an example.
    for schema in [
        "HellgateToken",
        "PaymentResponse",
        "RefundResponse",
        "TransactionResponse",
        "TokensImport",
    ] {
        let object = resolve(&ours, &ours["components"]["schemas"][schema]);
        assert!(
            object.get("example").is_some() || object.get("examples").is_some(),
            "{schema} has no example"
        );
    }
}

/// The comparison itself finds what it should: a missing property, a changed type, a missing enum value
/// and a missing parameter.
#[test]
fn the_comparison_notices_a_missing_property_type_enum_value_or_parameter() {
    let seed: Value = serde_json::from_str(SEEDS[2].1).unwrap();
    assert_eq!(seed_faults("self", &seed, &seed), Vec::<String>::new());
    let mut spoilt = seed.clone();
    let schemas = &mut spoilt["components"]["schemas"]["TokensImport"]["properties"];
    schemas.as_object_mut().unwrap().remove("attemts");
    schemas["status"] = json!({"type": "string", "enum": ["preparing", "running", "finished"]});
    schemas["successes"] = json!({"type": "string"});
    let operation = &mut spoilt["paths"]["/tokens/imports/{id}"]["get"];
    operation["parameters"] = json!([]);
    let faults = seed_faults("spoilt", &seed, &spoilt);
    let text = faults.join("\n");
    for expected in [
        "attemts: missing",
        "enum values [\"aborted\"] missing",
        "successes: type",
        "parameter id missing",
    ] {
        assert!(text.contains(expected), "{expected} not in:\n{text}");
    }
}
