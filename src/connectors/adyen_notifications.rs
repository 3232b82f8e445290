//! Adyen's standard notifications (`{"live", "notificationItems": [{"NotificationRequestItem": …}]}`): the
//! parsed items, and the check of each item's HMAC signature (`additionalData.hmacSignature`, HMAC-SHA256
//! under the hex-decoded key of Adyen's signing string, base64), compared in constant time.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;

#[derive(Deserialize)]
pub struct NotificationBatch {
    #[serde(rename = "notificationItems")]
    pub items: Vec<Wrapped>,
}

#[derive(Deserialize)]
pub struct Wrapped {
    #[serde(rename = "NotificationRequestItem")]
    pub item: NotificationItem,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct NotificationAmount {
    pub currency: String,
    pub value: i64,
}

/// One notification item, as Adyen sends it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationItem {
    pub psp_reference: String,
    #[serde(default)]
    pub original_reference: Option<String>,
    pub merchant_account_code: String,
    pub merchant_reference: String,
    pub amount: NotificationAmount,
    pub event_code: String,
    /// `"true"` or `"false"`.
    pub success: String,
    #[serde(default)]
    pub additional_data: Option<Map<String, Value>>,
}

impl NotificationItem {
    pub fn succeeded(&self) -> bool {
        self.success == "true"
    }

    /// Adyen's signing string: eight fields joined by `:`, an absent original reference empty.
    pub fn signing_string(&self) -> String {
        [
            self.psp_reference.as_str(),
            self.original_reference.as_deref().unwrap_or(""),
            self.merchant_account_code.as_str(),
            self.merchant_reference.as_str(),
            &self.amount.value.to_string(),
            self.amount.currency.as_str(),
            self.event_code.as_str(),
            self.success.as_str(),
        ]
        .join(":")
    }

    /// Whether the item carries a valid signature under `hex_key` (the key as Adyen shows it, hex).
    pub fn signed_with(&self, hex_key: &str) -> bool {
        let Some(given) = self
            .additional_data
            .as_ref()
            .and_then(|d| d.get("hmacSignature"))
            .and_then(Value::as_str)
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        else {
            return false;
        };
        let expected = sign(hex_key, &self.signing_string());
        match expected {
            Some(expected) if expected.len() == given.len() => expected.ct_eq(&given).into(),
            _ => false,
        }
    }
}

/// HMAC-SHA256 of `text` under the hex-decoded `hex_key`; `None` when the key is not hex.
pub fn sign(hex_key: &str, text: &str) -> Option<Vec<u8>> {
    let key = zeroize::Zeroizing::new(hex::decode(hex_key).ok()?);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(text.as_bytes());
    Some(mac.finalize().into_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(signature: &str) -> NotificationItem {
        serde_json::from_value(serde_json::json!({
            "pspReference": "7914073381342284", "originalReference": "8313547924770610",
            "merchantAccountCode": "TestMerchant", "merchantReference": "TestPayment-1407325143704",
            "amount": {"currency": "EUR", "value": 1130}, "eventCode": "CAPTURE", "success": "true",
            "additionalData": {"hmacSignature": signature}
        }))
        .unwrap()
    }

    #[test]
    fn the_signature_covers_adyens_signing_string_under_the_hex_key() {
        let key = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
        let unsigned = item("");
        assert_eq!(
            unsigned.signing_string(),
            "7914073381342284:8313547924770610:TestMerchant:TestPayment-1407325143704:1130:EUR:CAPTURE:true"
        );
        let good = base64::engine::general_purpose::STANDARD
            .encode(sign(key, &unsigned.signing_string()).unwrap());
        assert!(item(&good).signed_with(key));
        assert!(!item(&good).signed_with(&key.replace('4', "5")));
        assert!(!item("bm90IGEgc2lnbmF0dXJl").signed_with(key));
        assert!(!item("%%%").signed_with(key));
        assert!(!item(&good).signed_with("not hex"));
    }

    #[test]
    fn adyens_documented_example_verifies() {
        // The example of Adyen's HMAC documentation: no original reference, an AUTHORISATION.
        let example: NotificationItem = serde_json::from_value(serde_json::json!({
            "pspReference": "7914073381342284", "merchantAccountCode": "TestMerchant",
            "merchantReference": "TestPayment-1407325143704",
            "amount": {"currency": "EUR", "value": 1130}, "eventCode": "AUTHORISATION",
            "success": "true",
            "additionalData": {"hmacSignature": "coqCmt/IZ4E3CzPvMY8zTjQVL5hYJUiBRg8UU+iCWo0="}
        }))
        .unwrap();
        assert!(
            example.signed_with("44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056")
        );
    }
}
