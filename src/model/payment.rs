//! Payments as the API answers them and the webhooks carry them: `Payment`, `Refund`, `Transaction`, and
//! their typed values (statuses, use case, capture mode, transaction kind), each spelled in exactly one
//! string table. Which moves between statuses are allowed is the domain's business, not this file's.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// A stored or requested value that is none of an enum's spellings.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a known {what}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

/// Declares a fieldless enum with its one string table: `ALL`, `as_str`, `FromStr`, `Display` and
/// `Serialize` (as the string) all read the same table.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in the order of the string table.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(text: &str) -> Result<Self, UnknownValue> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == text)
                    .ok_or_else(|| UnknownValue { what: $what, value: text.to_owned() })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// The spec's `PaymentStatus`. `open` is the spec's and may be filtered on; no payment of this
    /// server is ever in it.
    PaymentStatus, "payment status" {
        Open => "open",
        Processing => "processing",
        Failed => "failed",
        Authorized => "authorized",
        Capturing => "capturing",
        Captured => "captured",
        Settling => "settling",
        Settled => "settled",
        Voiding => "voiding",
        Voided => "voided",
    }
);

string_enum!(
    /// Where a refund is: accepted, then answered by the processor.
    RefundStatus, "refund status" {
        Processing => "processing",
        Completed => "completed",
        Failed => "failed",
    }
);

string_enum!(
    /// What a processor transaction did.
    TransactionKind, "transaction kind" {
        Authorization => "authorization",
        Capture => "capture",
        Void => "void",
        Refund => "refund",
        Settlement => "settlement",
    }
);

string_enum!(
    /// How the processor answered a transaction.
    TransactionStatus, "transaction status" {
        Success => "success",
        Failure => "failure",
    }
);

string_enum!(
    /// Whether an approved authorization is captured at once or waits for `POST /payments/{id}/capture`.
    CaptureMode, "capture mode" {
        Automatic => "automatic",
        Manual => "manual",
    }
);

string_enum!(
    /// The spec's `UseCase`: who initiates the payment, and whether it starts or continues a series.
    UseCase, "use case" {
        OneOff => "ONE_OFF",
        Unscheduled => "UNSCHEDULED",
        SubsequentUnscheduled => "SUBSEQUENT_UNSCHEDULED",
        Recurring => "RECURRING",
        SubsequentRecurring => "SUBSEQUENT_RECURRING",
    }
);

impl UseCase {
    /// Whether the cardholder takes part (and so the security code may be used).
    pub fn customer_initiated(self) -> bool {
        matches!(
            self,
            UseCase::OneOff | UseCase::Unscheduled | UseCase::Recurring
        )
    }

    /// The use case of the initial payment a merchant-initiated one continues, if it is one.
    pub fn initial(self) -> Option<UseCase> {
        match self {
            UseCase::SubsequentUnscheduled => Some(UseCase::Unscheduled),
            UseCase::SubsequentRecurring => Some(UseCase::Recurring),
            _ => None,
        }
    }
}

/// RFC 3339 in UTC with a `Z`, as the wire contract asks (the store's timestamps are whole microseconds).
fn rfc3339<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

// The amounts of a payment; all but `requested` are left out while zero.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Amounts {
    pub requested: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorized: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub captured: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voided: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunded: Option<i64>,
}

/// A payment, as the spec's `PaymentResponse`.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(as = PaymentResponse)]
pub struct Payment {
    pub id: Uuid,
    pub amount: Amounts,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    pub currency_code: String,
    pub flow_matrix_rule: String,
    pub reference: String,
    /// One of the spec's `PaymentStatus` values.
    #[schema(value_type = String)]
    pub status: PaymentStatus,
    /// One of the spec's `UseCase` values.
    #[schema(value_type = String)]
    pub use_case: UseCase,
    /// `{type: "card", cardholder_name, expiry_month, expiry_year, masked_account_number, pan_type: "FPAN", issuer}`.
    #[schema(value_type = Object)]
    pub source: Box<RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub failure_details: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_payment_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurring_frequency: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurring_expiry: Option<String>,
}

// A refund of part or all of a captured payment (schema name: the spec's `RefundResponse`).
#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(as = RefundResponse)]
pub struct Refund {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub amount: i64,
    pub currency_code: String,
    /// `processing`, `completed` or `failed`.
    #[schema(value_type = String)]
    pub status: RefundStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub failure_details: Option<Value>,
}

// One call to the processor about a payment and its result (schema name: `TransactionResponse`).
#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(as = TransactionResponse)]
pub struct Transaction {
    pub id: Uuid,
    /// `authorization`, `capture`, `void`, `refund` or `settlement`.
    #[schema(value_type = String)]
    pub kind: TransactionKind,
    /// `success` or `failure`.
    #[schema(value_type = String)]
    pub status: TransactionStatus,
    pub amount: i64,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processor_reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_reads_back_from_its_spelling() {
        for s in PaymentStatus::ALL {
            assert_eq!(s.as_str().parse::<PaymentStatus>(), Ok(*s));
        }
        for s in UseCase::ALL {
            assert_eq!(s.as_str().parse::<UseCase>(), Ok(*s));
        }
        assert_eq!(
            "Captured".parse::<PaymentStatus>().unwrap_err().to_string(),
            "`Captured` is not a known payment status"
        );
        assert_eq!(
            serde_json::to_string(&[RefundStatus::Completed]).unwrap(),
            r#"["completed"]"#
        );
    }

    #[test]
    fn a_transaction_serialises_in_field_order_without_empty_fields() {
        let t = Transaction {
            id: Uuid::nil(),
            kind: TransactionKind::Capture,
            status: TransactionStatus::Success,
            amount: 5,
            created_at: DateTime::from_timestamp_micros(1_500_000).unwrap(),
            processor_reference: None,
            message: None,
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"id":"00000000-0000-0000-0000-000000000000","kind":"capture","status":"success","amount":5,"created_at":"1970-01-01T00:00:01.500Z"}"#
        );
    }
}
