//! The webhook sender: one signed POST to a receiver, through the address guard, with a deadline and no
//! redirects followed, sent from a thread of its own. Which row to send and what to record of the
//! outcome is `domain::webhooks`'s.

use std::future::Future;
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

/// Why an attempt failed (never the URL's secrets or the body), and whether it was a timeout: a
/// receiver that times out again and again is paused by the deliverer's circuit breaker.
#[derive(Debug)]
pub struct SendFailure {
    pub reason: String,
    pub timed_out: bool,
}

impl From<String> for SendFailure {
    fn from(reason: String) -> Self {
        Self {
            reason,
            timed_out: false,
        }
    }
}

/// `host:port` of `url` (the port its scheme implies when none is written): the destination whose
/// concurrency and timeouts the deliverer tracks.
pub fn destination(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    Some(format!("{host}:{port}"))
}

/// Posts webhook bodies; `timeout` bounds one attempt, connection included.
pub struct WebhookSender {
    client: reqwest::Client,
    allow_link_local: bool,
    thread: SendThread,
}

/// The thread webhooks are sent from, with a single-threaded runtime of its own. A send is a round
/// trip (the request written, a wait, the answer read, the next request): on the server's runtime each
/// of those steps could wake another of its worker threads, which cost more CPU than the send itself;
/// here they stay on one thread. And the thread's priority can be set below the API's
/// (`webhook_sender_nice`), so that deliveries take the CPU the API leaves.
struct SendThread {
    runtime: tokio::runtime::Handle,
    /// Dropped with the sender, which ends the thread and its runtime (and whatever it still runs).
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl SendThread {
    fn start(nice: i32) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("webhook-sender".to_owned())
            .spawn(move || {
                lower_priority(nice);
                let _ = runtime.block_on(stopped);
            })?;
        Ok(Self {
            runtime: handle,
            _stop: stop,
        })
    }
}

/// Raises the calling thread's nice value by `nice` (at most to 19), below the thread that started it
/// (whose value it inherited). On Linux the nice value is each thread's own, so the server's other
/// threads keep theirs.
#[cfg(target_os = "linux")]
fn lower_priority(nice: i32) {
    use rustix::process::{getpriority_process, setpriority_process};
    if nice > 0 {
        let lowered = getpriority_process(None)
            .and_then(|now| setpriority_process(None, now.saturating_add(nice).min(19)));
        if let Err(err) = lowered {
            tracing::warn!(error = %err, nice, "could not lower the webhook sender's priority");
        }
    }
}

/// Elsewhere the call would set the whole process's priority: the sender keeps the server's.
#[cfg(not(target_os = "linux"))]
fn lower_priority(nice: i32) {
    if nice > 0 {
        tracing::warn!(nice, "webhook_sender_nice is applied on Linux only");
    }
}

/// A task on the sending thread, stopped if whoever waits for it stops waiting.
struct OnSendThread<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for OnSendThread<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl WebhookSender {
    /// `nice`: how much the sending thread's nice value is above the caller's (`webhook_sender_nice`).
    pub fn new(timeout: Duration, allow_link_local: bool, nice: i32) -> anyhow::Result<Self> {
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
            thread: SendThread::start(nice)?,
        })
    }

    /// Runs `sends` (a delivery run's sends, which call `post`) on the sending thread and returns what
    /// they return; stops them if the caller stops waiting. An error only if the thread could not run
    /// them to their end (it panicked, or the server is stopping).
    pub async fn on_send_thread<F>(&self, sends: F) -> Result<F::Output, String>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let mut task = OnSendThread(self.thread.runtime.spawn(sends));
        // Not the panic's message: it is not known to be free of what a body holds.
        (&mut task.0).await.map_err(|e| {
            let how = if e.is_panic() { "panicked" } else { "stopped" };
            format!("the webhook sends {how} before their end")
        })
    }

    /// `url` parsed and checked by the address guard (a name it gives is checked when it resolves),
    /// or why it is refused (never its secrets); a deliverer checks a webhook's URL once per run.
    pub fn checked_url(&self, url: &str) -> Result<reqwest::Url, String> {
        let url = check_destination(url)?;
        if let Some(ip) = literal_ip(&url) {
            check_ip(ip, self.allow_link_local)?;
        }
        Ok(url)
    }

    /// One attempt to a URL from `checked_url`: `Ok` only for a 200; otherwise why not (never the
    /// URL's secrets or the body). Called from the sending thread (`on_send_thread`), where the
    /// client's connections then live.
    pub async fn post(
        &self,
        url: &reqwest::Url,
        key: &[u8],
        body: &str,
    ) -> Result<(), SendFailure> {
        let signature = sign(key, body.as_bytes());
        let response = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| SendFailure {
                timed_out: e.is_timeout(),
                reason: describe(&e.without_url()),
            })?;
        let status = response.status();
        drain(response).await;
        match status {
            reqwest::StatusCode::OK => Ok(()),
            status => Err(format!("the receiver answered {status}").into()),
        }
    }
}

/// The most of a receiver's answer body read (and thrown away) so that its connection can carry the
/// next delivery: a connection whose answer was not read to its end is closed rather than reused, and
/// every event would then pay a new connection (a TLS handshake on `https`). A longer body is left
/// unread and its connection closed.
const DRAINED_BODY: usize = 64 * 1024;

/// How long reading the answer's body may take: a receiver that sends its status and then dribbles
/// or withholds the body does not hold a send slot for the whole attempt timeout.
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// Reads the answer's body to its end, up to `DRAINED_BODY` and `DRAIN_TIME`. What it says does not
/// matter (only the status counts), nor whether reading it fails.
async fn drain(mut response: reqwest::Response) {
    let read_all = async {
        let mut read = 0;
        while let Ok(Some(chunk)) = response.chunk().await {
            read += chunk.len();
            if read > DRAINED_BODY {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, read_all).await;
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

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn sends_run_on_a_thread_of_their_own_at_its_nice_value() {
        let nice_here = || rustix::process::getpriority_process(None).unwrap();
        let before = nice_here();
        let sender = WebhookSender::new(Duration::from_secs(1), false, 7).unwrap();
        let (name, nice) = sender
            .on_send_thread(async move {
                let name = std::thread::current().name().map(str::to_owned);
                (name, nice_here())
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("webhook-sender"));
        assert_eq!(nice, (before + 7).min(19));
        // The nice value is the sending thread's alone.
        assert_eq!(nice_here(), before);
        // At 0 the thread keeps the priority it inherited.
        let sender = WebhookSender::new(Duration::from_secs(1), false, 0).unwrap();
        let nice = sender.on_send_thread(async move { nice_here() }).await;
        assert_eq!(nice.unwrap(), before);
    }

    #[tokio::test]
    async fn a_panic_on_the_sending_thread_is_an_error_without_its_message() {
        let sender = WebhookSender::new(Duration::from_secs(1), false, 0).unwrap();
        let err = sender
            .on_send_thread(async { panic!("what a body holds") })
            .await
            .unwrap_err();
        assert_eq!(err, "the webhook sends panicked before their end");
        // The thread goes on sending.
        assert_eq!(sender.on_send_thread(async { 2 + 2 }).await, Ok(4));
    }

    #[test]
    fn a_destination_is_its_host_and_port() {
        let of = |url: &str| destination(&reqwest::Url::parse(url).unwrap());
        assert_eq!(
            of("https://hooks.example.com/a?b=c").as_deref(),
            Some("hooks.example.com:443")
        );
        assert_eq!(
            of("http://127.0.0.1:8080/x").as_deref(),
            Some("127.0.0.1:8080")
        );
    }
}
