//! The forwarding client: one POST of a filled body to an allow-listed destination, through the webhook
//! sender's address guard (checked on the address connected to), with no proxy, no redirect followed,
//! a deadline, and the answer read with a size cap. What to send and what to keep is `domain::forward`'s.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, CONTENT_ENCODING};
use reqwest::{StatusCode, Url};
use zeroize::Zeroizing;

use super::describe;
use super::guard::{literal_ip, refusal, GuardedResolver};

/// The largest answer relayed, in bytes: processors answer in kilobytes, and the answer is held in
/// memory whole (it is searched for the card number before it is relayed).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The destination's answer as it came.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The address is one the guard refuses (link-local, cloud metadata); nothing was sent.
    #[error("the destination's address is {0}")]
    Refused(&'static str),
    /// No connection, or it broke before a whole answer came; the cause, without the URL.
    #[error("the destination could not be reached: {0}")]
    Unreachable(String),
    #[error("the destination did not answer in time")]
    TimedOut,
    #[error("the destination's answer is larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    /// A compressed answer could not be searched for the card number, so it is not relayed.
    #[error("the destination answered with a content encoding")]
    Encoded,
}

pub struct ForwardClient {
    client: reqwest::Client,
}

impl ForwardClient {
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the host itself, out of the guard's reach.
            .no_proxy()
            // Forwarding never reaches link-local or metadata addresses, whatever webhooks may do.
            .dns_resolver(Arc::new(GuardedResolver {
                allow_link_local: false,
            }))
            .build()?;
        Ok(Self { client })
    }

    /// POSTs `body` with `headers` to `url`. The body is wiped from memory once sent.
    pub async fn post(
        &self,
        url: Url,
        headers: HeaderMap,
        body: Zeroizing<Vec<u8>>,
    ) -> Result<Answer, SendError> {
        if let Some(why) = literal_ip(&url).and_then(refusal) {
            return Err(SendError::Refused(why));
        }
        let response = self
            .client
            .post(url)
            .headers(headers)
            .body(Bytes::from_owner(body))
            .send()
            .await
            .map_err(classify)?;
        let status = response.status();
        let headers = response.headers().clone();
        if headers
            .get(CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
        {
            return Err(SendError::Encoded);
        }
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(SendError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

fn classify(err: reqwest::Error) -> SendError {
    if err.is_timeout() {
        return SendError::TimedOut;
    }
    if let Some(why) = guard_refusal(&err) {
        return SendError::Refused(why);
    }
    SendError::Unreachable(describe(&err.without_url()))
}

/// Whether the resolver refused the host's address (its error is the cause of the connect error).
fn guard_refusal(err: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::PermissionDenied {
                return Some("refused by the address guard");
            }
        }
        source = cause.source();
    }
    None
}
