//! Seed data: realistic payments for demos and benchmarks (`strongroom seed`, the list tests), written
//! straight to the store, in every status with amounts that fit it.

use serde_json::json;
use uuid::Uuid;

use super::create::card_source;
use crate::model::payment::{CaptureMode, PaymentStatus, UseCase};
use crate::store::{PaymentRecord, TokenRecord, Ts};

/// Realistic payments for demos and benchmarks: spread over the `days` before `now`, in several
/// currencies and every status, on one token of the account.
pub fn synthetic_payments(
    rng: &mut impl rand::Rng,
    account_id: Uuid,
    token: &TokenRecord,
    now: Ts,
    days: u32,
    count: usize,
) -> Vec<PaymentRecord> {
    use PaymentStatus as P;
    const CURRENCIES: [(&str, u32); 5] = [
        ("EUR", 40),
        ("USD", 30),
        ("GBP", 15),
        ("CHF", 10),
        ("JPY", 5),
    ];
    const STATUSES: [(PaymentStatus, u32); 9] = [
        (P::Captured, 35),
        (P::Settled, 25),
        (P::Authorized, 14),
        (P::Failed, 10),
        (P::Voided, 8),
        (P::Settling, 3),
        (P::Processing, 2),
        (P::Capturing, 2),
        (P::Voiding, 1),
    ];
    const USE_CASES: [UseCase; 3] = [UseCase::OneOff, UseCase::Unscheduled, UseCase::Recurring];
    fn pick<T: Copy>(rng: &mut impl rand::Rng, weighted: &[(T, u32)]) -> T {
        let mut n = rng.gen_range(0..weighted.iter().map(|(_, w)| w).sum::<u32>());
        for (value, weight) in weighted {
            if n < *weight {
                return *value;
            }
            n -= weight;
        }
        weighted[0].0
    }
    let source = card_source(token);
    let span_micros = i64::from(days.max(1)) * 86_400_000_000;
    (0..count)
        .map(|_| {
            let created_at = Ts::from_micros(now.micros() - rng.gen_range(0..span_micros)).unwrap_or(now);
            let status = pick(rng, &STATUSES);
            let amount = rng.gen_range(100..200_000i64);
            let authorized = if [P::Failed, P::Processing].contains(&status) { 0 } else { amount };
            let captured = if [P::Captured, P::Settled, P::Settling].contains(&status) { amount } else { 0 };
            let refunded = if captured > 0 && rng.gen_ratio(1, 10) { captured / 2 } else { 0 };
            let capture_mode = if captured > 0 { CaptureMode::Automatic } else { CaptureMode::Manual };
            PaymentRecord {
                id: crate::new_id(),
                account_id,
                version: 1,
                created_at,
                updated_at: created_at,
                use_case: USE_CASES[rng.gen_range(0..3)].as_str().to_owned(),
                status: status.as_str().to_owned(),
                currency_code: pick(rng, &CURRENCIES).to_owned(),
                reference: format!("Order #{}", rng.gen_range(100_000..999_999)),
                capture_mode: capture_mode.as_str().to_owned(),
                amount_requested: amount,
                amount_authorized: authorized,
                amount_captured: captured,
                amount_voided: if status == P::Voided { amount } else { 0 },
                amount_refunded: refunded,
                amount_refund_reserved: 0,
                capture_requested: (status == P::Capturing).then_some(amount),
                token_id: token.id,
                source: source.clone(),
                flow_matrix_rule: "default: all payments to sandbox".to_owned(),
                processor: "sandbox".to_owned(),
                processor_reference: (authorized > 0).then(|| format!("sbx_seed_{}", rng.gen::<u64>())),
                failure_details: (status == P::Failed).then(|| {
                    json!([{"classifier": "DECLINED", "message": "The issuer declined the payment", "source": "processor"}])
                        .to_string()
                }),
                initial_payment_id: None,
                recurring_frequency: None,
                recurring_expiry: None,
                metadata: None,
            }
        })
        .collect()
}
