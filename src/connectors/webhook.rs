//! The webhook sender: one signed POST to a receiver, through the address guard, with a deadline and no
//! redirects followed. Which row to send and what to record of the outcome is `domain::webhooks`'s.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::describe;
use super::guard::{check_destination, check_ip, literal_ip, GuardedResolver};

pub const SIGNATURE_HEADER: &str = "x-hmac-signature";

/// Lowercase hex HMAC-SHA256 of `body` under `key`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail; an empty signature would only be refused.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// Posts webhook bodies; `timeout` bounds one attempt, connection included.
pub struct WebhookSender {
    client: reqwest::Client,
    allow_link_local: bool,
}

impl WebhookSender {
    pub fn new(timeout: Duration, allow_link_local: bool) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the host itself, out of the guard's reach.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { allow_link_local }))
            .user_agent(concat!("strongroom-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            allow_link_local,
        })
    }

    /// One attempt: `Ok` only for a 200; otherwise why not (never the URL's secrets or the body).
    pub async fn post(&self, url: &str, key: &[u8], body: &str) -> Result<(), String> {
        let url = check_destination(url)?;
        if let Some(ip) = literal_ip(&url) {
            check_ip(ip, self.allow_link_local)?;
        }
        let signature = sign(key, body.as_bytes());
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| describe(&e.without_url()))?;
        match response.status() {
            reqwest::StatusCode::OK => Ok(()),
            status => Err(format!("the receiver answered {status}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_lowercase_hex_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
