//! Payments as the API answers them and the webhooks carry them: `Payment`, `Refund`, `Transaction`, and
//! their typed values (statuses, use case, capture mode, transaction kind), each spelled in exactly one
//! string table. Which moves between statuses are allowed is the domain's business, not this file's.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{string_enum, Timestamp};

string_enum! {
    /// The spec's `PaymentStatus`. `open` is the spec's and may be filtered on; no payment of this
    /// server is ever in it.
    pub enum PaymentStatus {
        Open = "open",
        Processing = "processing",
        Failed = "failed",
        Authorized = "authorized",
        Capturing = "capturing",
        Captured = "captured",
        Settling = "settling",
        Settled = "settled",
        Voiding = "voiding",
        Voided = "voided",
    }
}

string_enum! {
    /// Where a refund is: accepted, then answered by the processor.
    pub enum RefundStatus {
        Processing = "processing",
        Completed = "completed",
        Failed = "failed",
    }
}

string_enum! {
    /// What a processor transaction did.
    pub enum TransactionKind {
        Authorization = "authorization",
        Capture = "capture",
        Void = "void",
        Refund = "refund",
        Settlement = "settlement",
    }
}

string_enum! {
    /// How the processor answered a transaction.
    pub enum TransactionStatus {
        Succeeded = "succeeded",
        Failed = "failed",
        /// The processor accepted the request and answers later (an Adyen modification awaiting its
        /// notification).
        Pending = "pending",
    }
}

string_enum! {
    /// The spec's `AuthenticationPreference`: whether to run 3-D Secure (3RI) before authorizing.
    /// Only `NO_3RI` (the default) is available; the others are refused until 3-D Secure is.
    pub enum AuthenticationPreference {
        No3ri = "NO_3RI",
        Try3ri = "TRY_3RI",
        Require3ri = "REQUIRE_3RI",
    }
}

string_enum! {
    /// Whether an approved authorization is captured at once or waits for `POST /payments/{id}/capture`.
    pub enum CaptureMode {
        Automatic = "automatic",
        Manual = "manual",
    }
}

string_enum! {
    /// The spec's `UseCase`: who initiates the payment, and whether it starts or continues a series.
    pub enum UseCase {
        OneOff = "ONE_OFF",
        Unscheduled = "UNSCHEDULED",
        SubsequentUnscheduled = "SUBSEQUENT_UNSCHEDULED",
        Recurring = "RECURRING",
        SubsequentRecurring = "SUBSEQUENT_RECURRING",
    }
}

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
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    pub currency_code: String,
    pub flow_matrix_rule: String,
    pub reference: String,
    /// One of the spec's `PaymentStatus` values.
    pub status: PaymentStatus,
    /// One of the spec's `UseCase` values.
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
    pub status: RefundStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub failure_details: Option<Value>,
}

/// One call to the processor about a payment and its result (schema name: `TransactionResponse`).
#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(as = TransactionResponse)]
pub struct Transaction {
    pub id: Uuid,
    /// What the call did.
    #[serde(rename = "type")]
    pub kind: TransactionKind,
    /// `succeeded`, `failed`, or `pending` (accepted by the processor, answered later by its
    /// notification, which is recorded as a transaction of its own).
    pub status: TransactionStatus,
    pub amount: i64,
    /// The processor the call went to (after a failover, each attempt names its own).
    #[schema(required = true)]
    pub processor: Option<String>,
    /// When the call was made.
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    /// When the processor's answer was recorded; `null` while it is `pending`.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub finished_at: Option<Timestamp>,
    /// The same instant as `started_at`, kept for clients of earlier versions.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
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
            "not a known PaymentStatus"
        );
        assert_eq!(
            serde_json::to_string(&[RefundStatus::Completed]).unwrap(),
            r#"["completed"]"#
        );
    }

    #[test]
    fn a_transaction_serialises_in_field_order_without_empty_fields() {
        let at = Timestamp(chrono::DateTime::from_timestamp_micros(1_500_000).unwrap());
        let t = Transaction {
            id: Uuid::nil(),
            kind: TransactionKind::Capture,
            status: TransactionStatus::Succeeded,
            amount: 5,
            processor: Some("sandbox".into()),
            started_at: at,
            finished_at: Some(at),
            created_at: at,
            processor_reference: None,
            message: None,
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"id":"00000000-0000-0000-0000-000000000000","type":"capture","status":"succeeded","amount":5,"processor":"sandbox","started_at":"1970-01-01T00:00:01.500Z","finished_at":"1970-01-01T00:00:01.500Z","created_at":"1970-01-01T00:00:01.500Z"}"#
        );
    }
}
