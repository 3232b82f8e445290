//! Checking the body of a payment request, with every fault reported and its JSON path.

use chrono::{NaiveDate, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::domain::{fault, has_control, present, text_field, FieldError, CONTROL_CHARACTER};
use crate::model::payment::{AuthenticationPreference, CaptureMode};

/// Active ISO 4217 currency codes.
const CURRENCIES: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP \
    BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF \
    GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD \
    LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR \
    PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY \
    TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL";

/// Whether `code` is an active ISO 4217 currency code.
pub fn is_currency(code: &str) -> bool {
    code.len() == 3 && CURRENCIES.split_whitespace().any(|c| c == code)
}

/// Longest `reference` accepted, in characters.
const MAX_REFERENCE_CHARS: usize = 80;

/// Largest amount accepted, in minor units.
pub const MAX_AMOUNT: i64 = 100_000_000_000;

/// What a payment request can say; which fields are allowed depends on the use case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentInput {
    pub amount: i64,
    pub currency_code: Option<String>,
    pub reference: String,
    pub token_id: Option<Uuid>,
    pub manual_capture: bool,
    pub metadata: Option<Map<String, Value>>,
    pub recurring_frequency: Option<i32>,
    pub recurring_expiry: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// One-off or unscheduled: a source and a currency, no recurring terms.
    Initial,
    /// Recurring: also `recurring_frequency` and `recurring_expiry`.
    InitialRecurring,
    /// Merchant-initiated on an earlier payment: source and currency come from it.
    Subsequent,
}

pub fn validate_payment(body: &Value, kind: RequestKind) -> Result<PaymentInput, Vec<FieldError>> {
    let Some(object) = body.as_object() else {
        return Err(vec![FieldError::new("$", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    let mut known = vec![
        "amount",
        "currency_code",
        "reference",
        "capture",
        "metadata",
        "authentication_preference",
    ];
    match kind {
        RequestKind::Initial => known.push("source"),
        RequestKind::InitialRecurring => {
            known.extend(["source", "recurring_frequency", "recurring_expiry"])
        }
        RequestKind::Subsequent => {}
    }
    let mut unknown: Vec<&String> = object
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .collect();
    unknown.sort();
    for key in unknown {
        let message = match key.as_str() {
            "source" => "is taken from the initial payment",
            "recurring_frequency" | "recurring_expiry" => "is only for recurring payments",
            _ => "is not a known field",
        };
        errors.push(FieldError::new(format!("$.{key}"), message));
    }

    let amount = match present(object, "amount") {
        None => fault(&mut errors, "$.amount", "is required"),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(a) if (1..=MAX_AMOUNT).contains(&a) => Some(a),
            Some(_) => fault(
                &mut errors,
                "$.amount",
                "must be from 1 to 100000000000 (minor units)",
            ),
            None => fault(&mut errors, "$.amount", "must be an integer (minor units)"),
        },
        Some(_) => fault(&mut errors, "$.amount", "must be an integer (minor units)"),
    };
    let currency_code = match present(object, "currency_code") {
        None if kind == RequestKind::Subsequent => None,
        None => fault(&mut errors, "$.currency_code", "is required"),
        Some(Value::String(c)) if is_currency(c) => Some(c.clone()),
        Some(_) => fault(
            &mut errors,
            "$.currency_code",
            "must be an ISO 4217 currency code such as EUR",
        ),
    };
    let reference = match present(object, "reference") {
        None => fault(&mut errors, "$.reference", "is required"),
        Some(r) => text_field(&mut errors, "$.reference", r, MAX_REFERENCE_CHARS),
    };
    let token_id = if kind == RequestKind::Subsequent {
        None
    } else {
        source_token(object, &mut errors)
    };
    let capture = match present(object, "capture") {
        None => Some(CaptureMode::Automatic),
        Some(Value::String(c)) => c.parse::<CaptureMode>().ok(),
        Some(_) => None,
    };
    let manual_capture = match capture {
        Some(mode) => mode == CaptureMode::Manual,
        None => {
            errors.push(FieldError::new(
                "$.capture",
                "must be `automatic` or `manual`",
            ));
            false
        }
    };
    authentication_preference(object, &mut errors);
    let metadata = match present(object, "metadata") {
        None => None,
        Some(Value::Object(map)) => check_metadata(map, &mut errors).then(|| map.clone()),
        Some(_) => fault(&mut errors, "$.metadata", "must be an object of strings"),
    };
    let (recurring_frequency, recurring_expiry) = if kind == RequestKind::InitialRecurring {
        (
            recurring_frequency(object, &mut errors),
            recurring_expiry(object, &mut errors),
        )
    } else {
        (None, None)
    };

    match (amount, reference) {
        (Some(amount), Some(reference)) if errors.is_empty() => Ok(PaymentInput {
            amount,
            currency_code,
            reference,
            token_id,
            manual_capture,
            metadata,
            recurring_frequency,
            recurring_expiry,
        }),
        _ => Err(errors),
    }
}

/// `authentication_preference`: `NO_3RI` (the default) is honoured; 3-D Secure is not available yet.
fn authentication_preference(object: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    let path = "$.authentication_preference";
    let preference = match present(object, "authentication_preference") {
        None => return,
        Some(Value::String(p)) => p.parse::<AuthenticationPreference>().ok(),
        Some(_) => None,
    };
    match preference {
        Some(AuthenticationPreference::No3ri) => {}
        Some(_) => errors.push(FieldError::new(
            path,
            "3-D Secure is not available yet; send NO_3RI or leave the field out",
        )),
        None => errors.push(FieldError::new(
            path,
            "must be NO_3RI, TRY_3RI or REQUIRE_3RI",
        )),
    }
}

fn source_token(object: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<Uuid> {
    let source = match present(object, "source") {
        None => return fault(errors, "$.source", "is required"),
        Some(Value::Object(source)) => source,
        Some(_) => {
            return fault(
                errors,
                "$.source",
                "must be an object like {\"type\": \"token\", \"token_id\": …}",
            )
        }
    };
    match present(source, "type") {
        Some(Value::String(t)) if t == "token" => {}
        None => return fault(errors, "$.source.type", "is required"),
        Some(_) => return fault(errors, "$.source.type", "must be `token`"),
    }
    match present(source, "token_id") {
        None => fault(errors, "$.source.token_id", "is required"),
        Some(Value::String(id)) => Uuid::try_parse(id)
            .ok()
            .or_else(|| fault(errors, "$.source.token_id", "must be a UUID")),
        Some(_) => fault(errors, "$.source.token_id", "must be a UUID"),
    }
}

fn check_metadata(map: &Map<String, Value>, errors: &mut Vec<FieldError>) -> bool {
    let before = errors.len();
    if map.len() > 20 {
        errors.push(FieldError::new(
            "$.metadata",
            "must have at most 20 entries",
        ));
    }
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for key in keys {
        let path = format!("$.metadata.{key}");
        if key.is_empty() || key.chars().count() > 20 {
            errors.push(FieldError::new(
                "$.metadata",
                "keys must be 1 to 20 characters",
            ));
            continue;
        }
        // The key is not put in the path: it is the text at fault, and a path must stay printable.
        if has_control(key) {
            errors.push(FieldError::new(
                "$.metadata",
                "keys must not contain control characters",
            ));
            continue;
        }
        match &map[key] {
            Value::String(v) if v.is_empty() => {
                errors.push(FieldError::new(path, "must not be empty"))
            }
            Value::String(v) if v.chars().count() > 80 => {
                errors.push(FieldError::new(path, "must be at most 80 characters"))
            }
            Value::String(v) if has_control(v) => {
                errors.push(FieldError::new(path, CONTROL_CHARACTER))
            }
            Value::String(_) => {}
            _ => errors.push(FieldError::new(path, "must be a string")),
        }
    }
    errors.len() == before
}

fn recurring_frequency(object: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<i32> {
    match present(object, "recurring_frequency") {
        None => fault(
            errors,
            "$.recurring_frequency",
            "is required for recurring payments",
        ),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(days) if (1..=366).contains(&days) => Some(days as i32),
            _ => fault(
                errors,
                "$.recurring_frequency",
                "must be a whole number of days from 1 to 366",
            ),
        },
        Some(_) => fault(
            errors,
            "$.recurring_frequency",
            "must be a whole number of days from 1 to 366",
        ),
    }
}

fn recurring_expiry(object: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<String> {
    let message = "must be a future date written yyyyMMdd";
    match present(object, "recurring_expiry") {
        None => fault(
            errors,
            "$.recurring_expiry",
            "is required for recurring payments",
        ),
        Some(Value::String(s)) => match NaiveDate::parse_from_str(s, "%Y%m%d") {
            Ok(date) if s.len() == 8 && date > Utc::now().date_naive() => Some(s.clone()),
            _ => fault(errors, "$.recurring_expiry", message),
        },
        Some(_) => fault(errors, "$.recurring_expiry", message),
    }
}

/// What a refund request says; all optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefundInput {
    pub amount: Option<i64>,
    pub reference: Option<String>,
    /// Checked against the payment's currency by the domain.
    pub currency_code: Option<String>,
}

/// The optional body of a refund: `{"amount", "currency_code", "reference"}`, as the Commerce API's.
pub fn validate_refund(body: Option<&Value>) -> Result<RefundInput, Vec<FieldError>> {
    let Some(body) = body else {
        return Ok(RefundInput::default());
    };
    let Some(object) = body.as_object() else {
        return Err(vec![FieldError::new("$", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    let mut rest = object.clone();
    let currency_code = match rest.remove("currency_code") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) if is_currency(&c) => Some(c),
        Some(_) => fault(
            &mut errors,
            "$.currency_code",
            "must be an ISO 4217 currency code such as EUR",
        ),
    };
    let amount = match validate_amount_only(Some(&Value::Object(rest)), false) {
        Ok(amount) => amount,
        Err(faults) => {
            errors.extend(faults);
            None
        }
    };
    let reference = present(object, "reference")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if errors.is_empty() {
        Ok(RefundInput {
            amount,
            reference,
            currency_code,
        })
    } else {
        errors.sort_by(|a, b| a.path.cmp(&b.path));
        Err(errors)
    }
}

/// The optional body of a capture: `{"amount": …}`, at most what was authorized.
pub fn validate_amount_only(
    body: Option<&Value>,
    field_required: bool,
) -> Result<Option<i64>, Vec<FieldError>> {
    let Some(body) = body else {
        return if field_required {
            Err(vec![FieldError::new("$.amount", "is required")])
        } else {
            Ok(None)
        };
    };
    let Some(object) = body.as_object() else {
        return Err(vec![FieldError::new("$", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    for key in object
        .keys()
        .filter(|k| !["amount", "reference"].contains(&k.as_str()))
    {
        errors.push(FieldError::new(format!("$.{key}"), "is not a known field"));
    }
    let amount = match present(object, "amount") {
        None if field_required => fault(&mut errors, "$.amount", "is required"),
        None => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(a) if (1..=MAX_AMOUNT).contains(&a) => Some(a),
            _ => fault(
                &mut errors,
                "$.amount",
                "must be from 1 to 100000000000 (minor units)",
            ),
        },
        Some(_) => fault(&mut errors, "$.amount", "must be an integer (minor units)"),
    };
    if let Some(reference) = present(object, "reference") {
        match reference {
            Value::String(r) if has_control(r) => {
                errors.push(FieldError::new("$.reference", CONTROL_CHARACTER))
            }
            Value::String(r) if !r.trim().is_empty() && r.chars().count() <= 80 => {}
            _ => errors.push(FieldError::new(
                "$.reference",
                "must be a string of 1 to 80 characters",
            )),
        }
    }
    if errors.is_empty() {
        Ok(amount)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one_off() -> Value {
        json!({"amount": 1000, "currency_code": "EUR", "reference": "Order 1",
               "source": {"type": "token", "token_id": crate::new_id()}})
    }

    #[test]
    fn a_complete_request_is_accepted() {
        let input = validate_payment(&one_off(), RequestKind::Initial).unwrap();
        assert_eq!((input.amount, input.manual_capture), (1000, false));
    }

    #[test]
    fn every_fault_is_reported() {
        let body = json!({"amount": 0, "currency_code": "eur", "reference": "", "source": {"type": "card"},
                          "capture": "later", "metadata": {"k": 1}});
        let paths: Vec<String> = validate_payment(&body, RequestKind::Initial)
            .unwrap_err()
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            [
                "$.amount",
                "$.currency_code",
                "$.reference",
                "$.source.type",
                "$.capture",
                "$.metadata.k"
            ]
        );
    }

    #[test]
    fn recurring_terms_belong_to_recurring_payments() {
        let mut body = one_off();
        body["recurring_frequency"] = json!(30);
        let errors = validate_payment(&body, RequestKind::Initial).unwrap_err();
        assert_eq!(
            errors,
            vec![FieldError::new(
                "$.recurring_frequency",
                "is only for recurring payments"
            )]
        );
        let errors = validate_payment(&one_off(), RequestKind::InitialRecurring).unwrap_err();
        assert_eq!(errors.len(), 2);
    }

    #[test]
    fn currencies_are_iso_codes() {
        assert!(is_currency("EUR") && is_currency("JPY"));
        assert!(!is_currency("EURO") && !is_currency("XYZ") && !is_currency("eur"));
    }
}
