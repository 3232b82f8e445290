//! The form parameters of `POST /v1/forwarding/requests` (payment method, destination, replacements,
//! headers, body, metadata), checked as Stripe checks them, with its error for each mistake.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::errors::{invalid_parameter, missing_parameter, unknown_parameter, Refusal};
use super::http::parse_pairs;

/// The replacements the Forward API accepts.
pub const REPLACEMENTS: [&str; 4] = ["card_cvc", "card_expiry", "card_number", "cardholder_name"];

/// The parameters of `POST /v1/forwarding/requests`.
pub(super) struct ForwardForm {
    pub(super) payment_method: String,
    pub(super) url: String,
    pub(super) replacements: Vec<String>,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Map<String, Value>,
    pub(super) metadata: Map<String, Value>,
}

impl ForwardForm {
    pub(super) fn parse(body: &[u8]) -> Result<ForwardForm, Refusal> {
        let text = String::from_utf8_lossy(body);
        let mut payment_method = None;
        let mut url = None;
        let mut replacements: Vec<(usize, String, String)> = Vec::new();
        let mut headers: BTreeMap<usize, (Option<String>, Option<String>)> = BTreeMap::new();
        let mut request_body = None;
        let mut metadata = Map::new();
        for (key, value) in parse_pairs(&text) {
            if key == "payment_method" {
                payment_method = Some(value);
            } else if key == "url" {
                url = Some(value);
            } else if key == "request[body]" {
                request_body = Some(value);
            } else if let Some(index) = key
                .strip_prefix("replacements[")
                .and_then(|r| r.strip_suffix(']'))
            {
                let position = if index.is_empty() {
                    replacements.len()
                } else {
                    match index.parse::<usize>() {
                        Ok(i) => i,
                        Err(_) => return Err((400, unknown_parameter(&key))),
                    }
                };
                replacements.push((position, key.clone(), value));
            } else if let Some(rest) = key.strip_prefix("request[headers][") {
                let parsed = rest.split_once("][").and_then(|(index, field)| {
                    Some((index.parse::<usize>().ok()?, field.strip_suffix(']')?))
                });
                match parsed {
                    Some((index, "name")) => headers.entry(index).or_default().0 = Some(value),
                    Some((index, "value")) => headers.entry(index).or_default().1 = Some(value),
                    _ => return Err((400, unknown_parameter(&key))),
                }
            } else if let Some(name) = key
                .strip_prefix("metadata[")
                .and_then(|r| r.strip_suffix(']'))
            {
                metadata.insert(name.to_owned(), Value::String(value));
            } else if key.starts_with("expand[") {
                // Accepted and ignored: nothing here is expandable.
            } else {
                return Err((400, unknown_parameter(&key)));
            }
        }

        let payment_method = payment_method
            .filter(|v| !v.is_empty())
            .ok_or_else(|| (400, missing_parameter("payment_method")))?;
        let url = url
            .filter(|v| !v.is_empty())
            .ok_or_else(|| (400, missing_parameter("url")))?;
        match reqwest::Url::parse(&url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
            _ => {
                return Err((
                    400,
                    invalid_parameter("url", &format!("Invalid URL: {url}")),
                ))
            }
        }

        replacements.sort_by_key(|(position, _, _)| *position);
        let mut checked = Vec::with_capacity(replacements.len());
        for (_, key, value) in replacements {
            if !REPLACEMENTS.contains(&value.as_str()) {
                let message = format!(
                    "Invalid {key}: must be one of card_cvc, card_expiry, card_number, or cardholder_name"
                );
                return Err((400, invalid_parameter(&key, &message)));
            }
            checked.push(value);
        }

        let mut pairs = Vec::with_capacity(headers.len());
        for (index, (name, value)) in headers {
            let name = name.ok_or_else(|| {
                (
                    400,
                    missing_parameter(&format!("request[headers][{index}][name]")),
                )
            })?;
            let value = value.ok_or_else(|| {
                (
                    400,
                    missing_parameter(&format!("request[headers][{index}][value]")),
                )
            })?;
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(&value).is_err()
            {
                return Err((
                    400,
                    invalid_parameter(
                        &format!("request[headers][{index}]"),
                        "Invalid header name or value.",
                    ),
                ));
            }
            pairs.push((name, value));
        }

        let body = match request_body.as_deref().map(serde_json::from_str::<Value>) {
            None => Map::new(),
            Some(Ok(Value::Object(map))) => map,
            Some(_) => {
                let message = "Invalid request[body]: this fake fills JSON object bodies only.";
                return Err((400, invalid_parameter("request[body]", message)));
            }
        };

        Ok(ForwardForm {
            payment_method,
            url,
            replacements: checked,
            headers: pairs,
            body,
            metadata,
        })
    }
}
