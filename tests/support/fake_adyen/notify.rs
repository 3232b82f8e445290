//! Adyen's standard notifications, as the fake makes and sends them: one item per batch, signed with
//! HMAC-SHA256 (hex key) over Adyen's signing string, posted to the notification URL until it answers
//! `[accepted]`. Faults spoil the next notification made: a bad signature, a duplicate, a failure.

use std::sync::Arc;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::{Data, FakePayment, Shared};

/// What to do to the next notification made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyFault {
    /// Signed with another key.
    BadSignature,
    /// Queued twice, identical.
    Duplicate,
    /// Reports `success: "false"` (the capture, cancel or refund failed at Adyen).
    Fail,
}

/// Adyen's signing string of an item, and its HMAC-SHA256 under the hex `key`, base64.
pub fn signature(hex_key: &str, item: &Value) -> String {
    let text = |field: &str| item[field].as_str().unwrap_or_default().to_owned();
    let signing = [
        text("pspReference"),
        text("originalReference"),
        text("merchantAccountCode"),
        text("merchantReference"),
        item["amount"]["value"].as_i64().unwrap_or(0).to_string(),
        item["amount"]["currency"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        text("eventCode"),
        text("success"),
    ]
    .join(":");
    let key = hex::decode(hex_key).unwrap_or_default();
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
        return String::new();
    };
    mac.update(signing.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Makes the notification of a modification and queues it (twice for a duplicate).
pub(crate) fn queue(
    shared: &Shared,
    data: &mut Data,
    event: &str,
    ok: bool,
    reference: &str,
    payment: &FakePayment,
    value: i64,
) {
    let fault = (!data.notify_faults.is_empty()).then(|| data.notify_faults.remove(0));
    let success = ok && fault != Some(NotifyFault::Fail);
    let mut item = json!({
        "amount": {"currency": payment.currency, "value": value},
        "eventCode": event,
        "eventDate": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        "merchantAccountCode": shared.config.merchant_account,
        "merchantReference": payment.merchant_reference,
        "originalReference": payment.psp_reference,
        "paymentMethod": "visa",
        "pspReference": reference,
        "reason": if success { "" } else { "Modification refused" },
        "success": if success { "true" } else { "false" },
    });
    let key = match fault {
        Some(NotifyFault::BadSignature) => "00".repeat(32),
        _ => shared.config.hmac_key.clone(),
    };
    item["additionalData"] = json!({"hmacSignature": signature(&key, &item)});
    let batch = json!({"live": "false", "notificationItems": [{"NotificationRequestItem": item}]});
    if fault == Some(NotifyFault::Duplicate) {
        data.outbox.push(batch.clone());
    }
    data.outbox.push(batch);
}

/// Posts every queued notification once, in order; keeps those not answered `[accepted]`.
pub(crate) async fn deliver_all(shared: &Arc<Shared>) -> Vec<u16> {
    let (url, batches) = {
        let mut data = shared.data();
        let Some(url) = data.notify_url.clone() else {
            return Vec::new();
        };
        (url, std::mem::take(&mut data.outbox))
    };
    let mut statuses = Vec::new();
    for batch in batches {
        let answer = shared.http.post(&url).json(&batch).send().await;
        let (status, body) = match answer {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
            Err(_) => (0, String::new()),
        };
        statuses.push(status);
        let mut data = shared.data();
        data.deliveries.push((status, body.clone()));
        if body != "[accepted]" && status != 401 {
            // Adyen sends it again later; a refused signature would never pass, so it is dropped.
            data.outbox.push(batch);
        }
    }
    statuses
}
