//! A TCP relay in front of a real service (PostgreSQL) that a test can cut: every relayed connection is
//! closed and new ones are closed on arrival (the service is down), or held without an answer (the
//! service or its network hangs), or every connection, open ones included, carries nothing (it
//! hangs with connections open), until it is restored.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const UP: u8 = 0;
const REFUSE: u8 = 1;
const HANG: u8 = 2;
const FREEZE: u8 = 3;

pub struct Relay {
    addr: std::net::SocketAddr,
    down: Arc<AtomicU8>,
    epoch: Arc<Mutex<CancellationToken>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays 127.0.0.1:<some port> to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicU8::new(UP));
        let epoch = Arc::new(Mutex::new(CancellationToken::new()));
        let (is_down, current) = (down.clone(), epoch.clone());
        let upstream = upstream.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let cut = current.lock().unwrap().clone();
                match is_down.load(Ordering::SeqCst) {
                    REFUSE => {
                        drop(client);
                        continue;
                    }
                    HANG | FREEZE => {
                        tokio::spawn(async move {
                            cut.cancelled().await;
                            drop(client);
                        });
                        continue;
                    }
                    _ => {}
                }
                let upstream = upstream.clone();
                let (is_down, current) = (is_down.clone(), current.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.cancelled() => {}
                    }
                    // Frozen: both ends stay open and carry nothing until the next change (`set`
                    // replaces the token under the lock it cancels the old one in).
                    if is_down.load(Ordering::SeqCst) == FREEZE {
                        let next = current.lock().unwrap().clone();
                        next.cancelled().await;
                    }
                });
            }
        });
        Self {
            addr,
            down,
            epoch,
            task,
        }
    }

    /// `host:port` to connect to instead of the upstream.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// The service is down: connections closed, new ones closed on arrival.
    pub fn cut(&self) {
        self.set(REFUSE);
    }

    /// The service hangs: connections closed, new ones accepted and never answered.
    pub fn hang(&self) {
        self.set(HANG);
    }

    /// The service hangs with its connections open: they stay open and carry nothing, new ones are
    /// accepted and never answered.
    pub fn freeze(&self) {
        self.set(FREEZE);
    }

    /// The service is back.
    pub fn restore(&self) {
        self.set(UP);
    }

    fn set(&self, state: u8) {
        self.down.store(state, Ordering::SeqCst);
        let mut epoch = self.epoch.lock().unwrap();
        epoch.cancel();
        *epoch = CancellationToken::new();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        self.epoch.lock().unwrap().cancel();
    }
}
