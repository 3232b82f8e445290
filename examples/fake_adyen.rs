//! The fake Adyen of the test suite as a process, for benchmarks:
//!
//! ```text
//! cargo run --release --example fake_adyen -- [--port 0] [--key K] [--merchant-account M] [--hmac-key HEX] [--notify-url URL]
//! ```
//!
//! Prints `listening on http://127.0.0.1:PORT` on stdout and serves until SIGTERM or ctrl-c. With
//! `--notify-url`, each capture, cancel (also by merchant reference, `/v71/cancels`) and refund's
//! notification is posted there at once, HMAC-signed.

#[path = "../tests/support/fake_adyen/mod.rs"]
mod fake_adyen;

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Parser;

use fake_adyen::{FakeAdyen, FakeAdyenConfig};

#[derive(Parser, Debug)]
#[command(
    about = "A fake Adyen (Checkout API v71 payments, modifications, notifications) for benchmarks"
)]
struct Args {
    /// Port on 127.0.0.1 (0: one the system picks).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The X-API-Key accepted.
    #[arg(long)]
    key: Option<String>,
    /// The merchant account accepted.
    #[arg(long)]
    merchant_account: Option<String>,
    /// The HMAC key (hex) notifications are signed with.
    #[arg(long)]
    hmac_key: Option<String>,
    /// Where notifications are posted, as soon as they are made.
    #[arg(long)]
    notify_url: Option<String>,
    /// Milliseconds added to every response.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let defaults = FakeAdyenConfig::default();
    let config = FakeAdyenConfig {
        api_key: args.key.unwrap_or(defaults.api_key),
        merchant_account: args.merchant_account.unwrap_or(defaults.merchant_account),
        hmac_key: args.hmac_key.unwrap_or(defaults.hmac_key),
        auto_notify: args.notify_url.is_some(),
        notify_url: args.notify_url,
        latency: Duration::from_millis(args.latency_ms),
    };
    let fake =
        FakeAdyen::start_on(config, SocketAddr::from((Ipv4Addr::LOCALHOST, args.port))).await?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {}", fake.base_url())?;
        stdout.flush()?;
    }
    shutdown_signal().await?;
    eprintln!("{} requests", fake.requests());
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
