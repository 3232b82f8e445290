//! The API listener: hyper's HTTP/1 connections under a connection cap, with a header-read timeout
//! (which also closes idle keep-alive connections), a deadline on each request body, accept errors
//! logged with backoff, and a graceful shutdown that lets requests in flight finish. With a TLS
//! configuration each connection is served over TLS (rustls); the handshake counts against the header
//! timeout and holds a connection slot like any other connection.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{header, HeaderValue, Request};
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
pub use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::Service;

use crate::api::extract::BodyTimedOut;
use crate::config::{HttpSettings, TlsFiles};

const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `stop` is cancelled, then waits for the open connections to finish
/// the requests they are serving.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpSettings,
    stop: CancellationToken,
    tls: Option<TlsAcceptor>,
) -> io::Result<()> {
    // Over the cap a connection is not accepted: it waits in the kernel's listen backlog (which
    // refuses connections once full) until a served one closes.
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let slot = tokio::select! {
            _ = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                (stream, peer)
            }
            // The client gave up before we took its connection: nothing is wrong with the listener.
            Err(err) if is_connection_error(&err) => continue,
            // Out of descriptors or memory: wait before trying again, so that the loop does not spin
            // and the log gets one line per wait.
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "could not accept a connection");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = ConnectionService {
            app: app.clone(),
            body_timeout: limits.body_timeout,
            peer,
        };
        let Some(acceptor) = tls.clone() else {
            let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(error = %err, "connection closed with an error");
                }
                drop(slot);
            });
            continue;
        };
        let watcher = graceful.watcher();
        let http = http.clone();
        let handshake_deadline = limits.header_timeout;
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(handshake_deadline, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        tracing::debug!(error = %err, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        return;
                    }
                };
            let connection = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection closed with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Hands each request of a connection to the router, its body under the body deadline. A request
/// whose body missed its deadline is answered with `Connection: close`.
#[derive(Clone)]
struct ConnectionService {
    app: Router,
    body_timeout: Duration,
    /// The client's address, for the audit trail (`ConnectInfo` in the request's extensions).
    peer: std::net::SocketAddr,
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let mut app = self.app.clone();
        let timed_out = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + self.body_timeout;
        let flag = timed_out.clone();
        let mut request = request;
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        let request = request.map(|inner| {
            Body::new(DeadlineBody {
                inner,
                deadline,
                sleep: None,
                timed_out: flag,
            })
        });
        Box::pin(async move {
            let mut response = app.call(request).await?;
            if timed_out.load(Ordering::Relaxed) {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response)
        })
    }
}

/// A request body that fails with [`BodyTimedOut`] once its deadline has passed.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    /// Set the first time the body has to be waited for, so that bodies read at once cost no timer.
    sleep: Option<Pin<Box<Sleep>>>,
    timed_out: Arc<AtomicBool>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            this.timed_out.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The TLS acceptor for the certificate chain and key in `files` (PEM), HTTP/1.1 only.
pub fn tls_acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    use anyhow::Context;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_file)
        .with_context(|| {
            format!(
                "STRONGROOM_TLS_CERT_FILE: cannot read {}",
                files.cert_file.display()
            )
        })?
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!(
                "STRONGROOM_TLS_CERT_FILE: {} is not a PEM certificate chain",
                files.cert_file.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!(
            "STRONGROOM_TLS_CERT_FILE: {} holds no certificate",
            files.cert_file.display()
        );
    }
    // The key's own text never reaches an error message.
    let key = PrivateKeyDer::from_pem_file(&files.key_file).map_err(|_| {
        anyhow::anyhow!(
            "STRONGROOM_TLS_KEY_FILE: {} holds no readable PEM private key",
            files.key_file.display()
        )
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("STRONGROOM_TLS_KEY_FILE: the key does not fit the certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
