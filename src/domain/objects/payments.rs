//! The stored records of payments, refunds and transactions turned into the public objects of
//! `model::payment`, which the API answers and the webhooks carry. A spelling the model does not know
//! means a damaged row, and is an error rather than a guess.

use serde_json::value::RawValue;

use super::{at, stored};
use crate::model::payment::{Amounts, Payment, Refund, Transaction, TransactionStatus};
use crate::store::{PaymentListing, PaymentRecord, RefundRecord, StoreError, TransactionRecord};

fn positive(n: i64) -> Option<i64> {
    (n > 0).then_some(n)
}

/// Stored JSON, embedded as it is (it was written by this server from checked values).
fn raw(json: String) -> Option<Box<RawValue>> {
    RawValue::from_string(json).ok()
}

/// A stored source with `cardholder_name` present: sources written before it was always set left it
/// out when the token had none, and the spec's `PaymentSourceCard` requires it (`null` then). Every
/// source written now has the member, so it is looked for as text first: `"cardholder_name":` outside
/// a string can only be a key (a quote inside a string is escaped), and the sources this server
/// writes have no nested object with that key. Only a source without it is parsed.
fn with_cardholder_name(source: String) -> String {
    if source.contains("\"cardholder_name\":") {
        return source;
    }
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&source) {
        Ok(mut map) if !map.contains_key("cardholder_name") => {
            map.insert("cardholder_name".into(), serde_json::Value::Null);
            serde_json::Value::Object(map).to_string()
        }
        _ => source,
    }
}

impl TryFrom<PaymentListing> for Payment {
    type Error = StoreError;

    fn try_from(p: PaymentListing) -> Result<Self, StoreError> {
        let source = match raw(with_cardholder_name(p.source)) {
            Some(source) => source,
            None => RawValue::from_string("{}".to_owned())
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        };
        Ok(Self {
            id: p.id,
            amount: Amounts {
                requested: p.amount_requested,
                authorized: positive(p.amount_authorized),
                captured: positive(p.amount_captured),
                voided: positive(p.amount_voided),
                refunded: positive(p.amount_refunded),
            },
            created_at: at(p.created_at),
            currency_code: p.currency_code,
            flow_matrix_rule: p.flow_matrix_rule,
            reference: p.reference,
            status: stored(&p.status)?,
            use_case: stored(&p.use_case)?,
            source,
            metadata: p.metadata.and_then(raw),
            failure_details: p.failure_details.and_then(raw),
            initial_payment_id: p.initial_payment_id,
            recurring_frequency: p.recurring_frequency,
            recurring_expiry: p.recurring_expiry,
        })
    }
}

impl TryFrom<PaymentRecord> for Payment {
    type Error = StoreError;

    fn try_from(p: PaymentRecord) -> Result<Self, StoreError> {
        PaymentListing::from(p).try_into()
    }
}

impl TryFrom<RefundRecord> for Refund {
    type Error = StoreError;

    fn try_from(r: RefundRecord) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.id,
            payment_id: r.payment_id,
            amount: r.amount,
            currency_code: r.currency_code,
            status: stored(&r.status)?,
            reference: r.reference,
            created_at: at(r.created_at),
            failure_details: r
                .failure_details
                .and_then(|s| serde_json::from_str(&s).ok()),
        })
    }
}

impl TryFrom<TransactionRecord> for Transaction {
    type Error = StoreError;

    fn try_from(t: TransactionRecord) -> Result<Self, StoreError> {
        let status = stored(&t.status)?;
        let started_at = at(t.created_at);
        Ok(Self {
            id: t.id,
            kind: stored(&t.kind)?,
            status,
            amount: t.amount,
            processor: t.processor,
            started_at,
            // A transaction row is written once the processor has answered, except a pending one.
            finished_at: (status != TransactionStatus::Pending).then_some(started_at),
            created_at: started_at,
            processor_reference: t.processor_reference,
            message: t.message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::with_cardholder_name;

    #[test]
    fn a_source_gets_a_null_cardholder_name_only_when_it_has_no_such_member() {
        let named = r#"{"type":"card","cardholder_name":"Jo","expiry_month":4}"#;
        assert_eq!(with_cardholder_name(named.to_owned()), named);
        let null = r#"{"type":"card","cardholder_name":null}"#;
        assert_eq!(with_cardholder_name(null.to_owned()), null);
        for old in [
            r#"{"type":"card","expiry_month":4}"#,
            // The key's text inside a string value is escaped, so it is not taken for the member.
            r#"{"type":"card","note":"\"cardholder_name\":\"x\""}"#,
        ] {
            let fixed: serde_json::Value =
                serde_json::from_str(&with_cardholder_name(old.to_owned())).unwrap();
            assert_eq!(fixed["cardholder_name"], serde_json::Value::Null, "{old}");
            assert!(fixed.as_object().unwrap().contains_key("cardholder_name"));
            assert_eq!(fixed["type"], "card");
        }
        let not_json = "not json";
        assert_eq!(with_cardholder_name(not_json.to_owned()), not_json);
    }
}
