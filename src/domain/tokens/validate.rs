//! Checking card data for a token: every fault of a `/cde-import` body (or a card forwarded by a
//! processor) is reported at once, each with its JSON path, and no message repeats a value.

use chrono::{DateTime, Datelike, Utc};
use serde_json::{Map, Value};

use crate::domain::{fault, present, text_field, FieldError};
use crate::model::card::{CardData, Pan, SecurityCode};

const KNOWN_FIELDS: [&str; 6] = [
    "account_number",
    "expiry_month",
    "expiry_year",
    "security_code",
    "cardholder_name",
    "expiration_time",
];
/// The longest life of an ephemeral token, in seconds (30 days, as the Commerce API's token sessions).
pub const MAX_EXPIRATION_SECONDS: u64 = 2_592_000;
const MAX_NAME_CHARS: usize = 200;
/// Expiry years further ahead than this are taken for typing errors.
const MAX_YEARS_AHEAD: i32 = 50;

/// Card data that passed every check.
#[derive(Debug)]
pub struct ValidCard {
    pub card: CardData,
    pub security_code: Option<SecurityCode>,
    /// `expiration_time`: an ephemeral token is deleted this long after it is made.
    pub expires_in: Option<std::time::Duration>,
}

/// How strictly to read numbers: `/cde-import` takes JSON integers only; card data forwarded by a
/// processor arrives with every value as a string (`"04"`, `"2030"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberForm {
    Strict,
    Forwarded,
}

/// Checks a `/cde-import` body, collecting every fault.
pub fn validate_card(
    body: &Value,
    now: DateTime<Utc>,
    form: NumberForm,
) -> Result<ValidCard, Vec<FieldError>> {
    let Some(object) = body.as_object() else {
        return Err(vec![FieldError::new("$", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    // Card data forwarded by an import makes a lasting token: no `expiration_time` there.
    let mut unknown: Vec<&String> = object
        .keys()
        .filter(|k| {
            !KNOWN_FIELDS.contains(&k.as_str())
                || (form == NumberForm::Forwarded && k.as_str() == "expiration_time")
        })
        .collect();
    unknown.sort();
    for key in unknown {
        errors.push(FieldError::new(format!("$.{key}"), "is not a known field"));
    }

    let pan = match present(object, "account_number") {
        None => fault(&mut errors, "$.account_number", "is required"),
        Some(Value::String(s)) if s.is_empty() => {
            fault(&mut errors, "$.account_number", "must not be empty")
        }
        Some(Value::String(s)) => Pan::parse(s)
            .map_err(|m| errors.push(field("account_number", m)))
            .ok(),
        Some(_) => fault(
            &mut errors,
            "$.account_number",
            "must be a string of digits",
        ),
    };
    let month = integer(object, "expiry_month", form, &mut errors).and_then(|m| {
        if (1..=12).contains(&m) {
            Some(m as u8)
        } else {
            fault(&mut errors, "$.expiry_month", "must be from 1 to 12")
        }
    });
    let year = integer(object, "expiry_year", form, &mut errors).and_then(|y| {
        if y < 2000 {
            fault(&mut errors, "$.expiry_year", "must be 2000 or later")
        } else if y > i64::from(now.year() + MAX_YEARS_AHEAD) {
            fault(
                &mut errors,
                "$.expiry_year",
                "must be no more than 50 years ahead",
            )
        } else {
            Some(y as u16)
        }
    });
    if let (Some(m), Some(y)) = (month, year) {
        if expired(m, y, now) {
            errors.push(field(
                "expiry_year",
                "the card has expired (the end of its expiry month has passed)",
            ));
        }
    }
    let scheme = pan.as_ref().map(Pan::scheme);
    let security_code = match present(object, "security_code") {
        None => None,
        Some(Value::String(s)) if s.is_empty() => {
            fault(&mut errors, "$.security_code", "must not be empty")
        }
        Some(Value::String(s)) => match scheme {
            Some(scheme) => SecurityCode::parse(s, scheme)
                .map_err(|m| errors.push(field("security_code", m)))
                .ok(),
            // The number is invalid, so only the scheme-independent checks can be made.
            None if s.bytes().all(|b| b.is_ascii_digit()) && (3..=4).contains(&s.len()) => None,
            None => fault(&mut errors, "$.security_code", "must be 3 or 4 digits"),
        },
        Some(_) => fault(&mut errors, "$.security_code", "must be a string of digits"),
    };
    let cardholder_name = present(object, "cardholder_name")
        .and_then(|v| text_field(&mut errors, "$.cardholder_name", v, MAX_NAME_CHARS));

    let expires_in = match (present(object, "expiration_time"), form) {
        (None, _) | (Some(_), NumberForm::Forwarded) => None,
        (Some(Value::Number(n)), NumberForm::Strict) => match n.as_u64() {
            Some(seconds) if (1..=MAX_EXPIRATION_SECONDS).contains(&seconds) => {
                Some(std::time::Duration::from_secs(seconds))
            }
            _ => fault(
                &mut errors,
                "$.expiration_time",
                "must be a whole number of seconds from 1 to 2592000",
            ),
        },
        (Some(_), NumberForm::Strict) => fault(
            &mut errors,
            "$.expiration_time",
            "must be a whole number of seconds from 1 to 2592000",
        ),
    };

    match (pan, month, year) {
        (Some(pan), Some(expiry_month), Some(expiry_year)) if errors.is_empty() => Ok(ValidCard {
            card: CardData {
                pan,
                expiry_month,
                expiry_year,
                cardholder_name,
            },
            security_code,
            expires_in,
        }),
        _ => Err(errors),
    }
}

fn field(name: &str, message: &str) -> FieldError {
    FieldError::new(format!("$.{name}"), message)
}

fn integer(
    object: &Map<String, Value>,
    name: &str,
    form: NumberForm,
    errors: &mut Vec<FieldError>,
) -> Option<i64> {
    match (present(object, name), form) {
        (None, _) => fault(errors, &format!("$.{name}"), "is required"),
        (Some(Value::Number(n)), _) => n
            .as_i64()
            .or_else(|| fault(errors, &format!("$.{name}"), "must be an integer")),
        (Some(Value::String(s)), NumberForm::Forwarded) if s.is_empty() => {
            fault(errors, &format!("$.{name}"), "is required")
        }
        (Some(Value::String(s)), NumberForm::Forwarded)
            if s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            s.parse().ok()
        }
        (Some(_), _) => fault(errors, &format!("$.{name}"), "must be an integer"),
    }
}

/// A card is good until the end of its expiry month, in UTC.
fn expired(month: u8, year: u16, now: DateTime<Utc>) -> bool {
    (i32::from(year), u32::from(month)) < (now.year(), now.month())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
    }

    fn paths(body: Value) -> Vec<(String, String)> {
        validate_card(&body, now(), NumberForm::Strict)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.path, e.message))
            .collect()
    }

    #[test]
    fn a_card_valid_to_the_end_of_this_month_is_accepted() {
        let body =
            json!({"account_number": "4111111111111111", "expiry_month": 11, "expiry_year": 2026});
        assert!(validate_card(&body, now(), NumberForm::Strict).is_ok());
        let body =
            json!({"account_number": "4111111111111111", "expiry_month": 10, "expiry_year": 2026});
        assert_eq!(paths(body)[0].0, "$.expiry_year");
    }

    #[test]
    fn every_fault_is_reported_at_once() {
        let body = json!({"account_number": "41111", "expiry_month": 13, "expiry_year": 1999, "security_code": "12", "cardholder_name": ""});
        let found: Vec<String> = paths(body).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            found,
            [
                "$.account_number",
                "$.expiry_month",
                "$.expiry_year",
                "$.security_code",
                "$.cardholder_name"
            ]
        );
    }

    #[test]
    fn forwarded_card_data_may_carry_numbers_as_strings() {
        let body = json!({"account_number": "4111111111111111", "expiry_month": "04", "expiry_year": "2031", "security_code": "123"});
        let valid = validate_card(&body, now(), NumberForm::Forwarded).unwrap();
        assert_eq!((valid.card.expiry_month, valid.card.expiry_year), (4, 2031));
        assert!(validate_card(&body, now(), NumberForm::Strict).is_err());
    }

    #[test]
    fn faults_never_repeat_the_card_number() {
        let body =
            json!({"account_number": "4111111111111112", "expiry_month": "x", "expiry_year": 2030});
        let text = format!("{:?}", paths(body));
        assert!(!text.contains("4111111111111112"), "{text}");
    }
}
