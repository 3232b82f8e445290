//! The fake Stripe of the test suite as a process, for benchmarks:
//!
//! ```text
//! cargo run --release --example fake_stripe -- --customers 1000 --cards-each 100 [--rate-limit 100] [--port 0] [--key sk_test_fake]
//! cargo run --release --example fake_stripe -- --payment-intents [--key sk_test_fake]
//! ```
//!
//! Adds the customers and their cards, prints `listening on http://127.0.0.1:PORT` on stdout, and
//! serves until SIGTERM or ctrl-c. `GET /_fake/stats` (no key) answers the counters as JSON. With
//! `--payment-intents` it serves the fake payments Stripe instead (PaymentIntents, refunds), on a port
//! the system picks.

#[path = "../tests/support/fake_stripe/mod.rs"]
mod fake_stripe;

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Parser;

use fake_stripe::{FakeStripe, FakeStripeConfig};

#[derive(Parser, Debug)]
#[command(
    about = "A fake Stripe (customers, payment methods, Vault and Forward API) for benchmarks"
)]
struct Args {
    /// Customers to create.
    #[arg(long, default_value_t = 0)]
    customers: usize,
    /// Cards of each customer.
    #[arg(long, default_value_t = 0)]
    cards_each: usize,
    /// Requests a second over all endpoints (token bucket of that capacity); over it, 429.
    #[arg(long)]
    rate_limit: Option<u32>,
    /// Port on 127.0.0.1 (0: one the system picks).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The secret key accepted.
    #[arg(long, default_value = "sk_test_fake")]
    key: String,
    /// Milliseconds added to every response.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Refuse every forwarding request (forwarding_api_inactive).
    #[arg(long)]
    no_forwarding: bool,
    /// Serve PaymentIntents and refunds (the processor connector's Stripe) instead of the import's.
    #[arg(long)]
    payment_intents: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.payment_intents {
        let fake = fake_stripe::payment_intents::FakePaymentIntents::start(&args.key).await?;
        announce(&fake.base_url())?;
        shutdown_signal().await?;
        eprintln!("{} requests", fake.requests());
        return Ok(());
    }
    let config = FakeStripeConfig {
        api_key: args.key,
        rate_limit_per_sec: args.rate_limit,
        latency: Duration::from_millis(args.latency_ms),
        forwarding_enabled: !args.no_forwarding,
        ..FakeStripeConfig::default()
    };
    let fake =
        FakeStripe::start_on(config, SocketAddr::from((Ipv4Addr::LOCALHOST, args.port))).await?;
    let cards = fake.add_customers(args.customers, args.cards_each);
    eprintln!("{} customers, {cards} cards", args.customers);
    announce(&fake.base_url())?;
    shutdown_signal().await?;
    eprintln!("{:?}", fake.stats());
    Ok(())
}

fn announce(base: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {base}")?;
    stdout.flush()?;
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
