//! The command line: `serve` and the admin commands, which use the same settings as `serve` and work
//! while it runs. With `--json`, an admin command prints exactly one JSON document on stdout.

mod audit;
mod backup;
mod destinations;
mod import_watch;
mod keys;
mod origins;
mod processors;
mod routes;
mod webhooks;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;
use uuid::Uuid;

use crate::config::{Config, Settings};
use crate::domain::accounts::{self, ADMIN_CLI};
use crate::store::{Feature, FeatureSet};
use crate::{server, telemetry};

#[derive(Parser, Debug)]
#[command(
    name = "strongroom",
    version,
    about = "Self-hosted card vault and payments API"
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Runs the API and its job workers until SIGTERM or Ctrl-C.
    Serve,
    /// Applies the database migrations and exits.
    Migrate,
    /// Accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Payments.
    #[command(subcommand)]
    Payments(PaymentsCommand),
    /// Token imports.
    #[command(subcommand)]
    Import(ImportCommand),
    /// The master key that wraps every account's data keys.
    #[command(subcommand, name = "master-key")]
    MasterKey(keys::MasterKeyCommand),
    /// Per-account data keys.
    #[command(subcommand, name = "data-key")]
    DataKey(keys::DataKeyCommand),
    /// The durable job queue.
    #[command(subcommand)]
    Job(keys::JobCommand),
    /// Webhooks: where an account's events are posted.
    #[command(subcommand)]
    Webhook(webhooks::WebhookCommand),
    /// Payment processors of an account (credentials read from standard input, never printed).
    #[command(subcommand)]
    Processor(processors::ProcessorCommand),
    /// Routing rules: which processors take which payments, with failover.
    #[command(subcommand)]
    Route(routes::RouteCommand),
    /// Forwarding destinations: where an account's `POST /forward` may send card data.
    #[command(subcommand)]
    Destination(destinations::DestinationCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Writes a consistent copy of the SQLite database to FILE while the server serves.
    Backup {
        #[arg(long)]
        to: std::path::PathBuf,
    },
    /// Puts a backup in place as the SQLite database of a stopped server.
    Restore {
        #[arg(long)]
        from: std::path::PathBuf,
        /// Replace an existing database.
        #[arg(long)]
        force: bool,
    },
    /// Web origins an account's hosted card form may be embedded in and its token sessions used from.
    #[command(subcommand)]
    Origin(origins::OriginCommand),
}

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Shows an import's progress (attempts, successes, failures, rate) until it ends; exits 1 if it
    /// was aborted.
    Watch {
        id: Uuid,
        /// How often to look, in milliseconds.
        #[arg(long, default_value_t = 500)]
        interval_ms: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum PaymentsCommand {
    /// Creates COUNT realistic payments (spread over DAYS days, several currencies and statuses) on one
    /// test-card token of the account, for demos and benchmarks.
    Seed {
        #[arg(long)]
        count: usize,
        /// The account; default: the one named `default`.
        #[arg(long)]
        account: Option<Uuid>,
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// No progress bar (for scripts).
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Creates an account and its first API key (shown once).
    Create {
        #[arg(long)]
        name: String,
        /// A gated feature to enable; repeat for several.
        #[arg(long = "feature", value_enum)]
        features: Vec<Feature>,
        #[arg(long)]
        json: bool,
    },
    /// Lists the accounts.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Creates an API key for an account (shown once).
    Create {
        #[arg(long)]
        account: Uuid,
        #[arg(long)]
        label: String,
        #[arg(long)]
        json: bool,
    },
    /// Lists an account's API keys (never their secrets).
    List {
        #[arg(long)]
        account: Uuid,
        #[arg(long)]
        json: bool,
    },
    /// Revokes an API key at once.
    Revoke {
        id: Uuid,
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command line and turns its outcome into an exit code, printing errors on stderr.
pub fn main(cli: Cli) -> ExitCode {
    let config = match Config::resolve(&cli.settings) {
        Ok(config) => config,
        Err(err) => {
            telemetry::print_err(&format!("error: {err}\n"));
            return ExitCode::from(2);
        }
    };
    let default_filter = match cli.command {
        Command::Serve => "info,sqlx=warn",
        _ => "warn",
    };
    telemetry::init(
        config.log_format,
        default_filter,
        matches!(cli.command, Command::Serve),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            telemetry::print_err(&format!("error: cannot start the async runtime: {err}\n"));
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli.command, config));
    // What the runtime's tasks log as they stop is written too.
    drop(runtime);
    telemetry::flush();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            telemetry::print_err(&format!("error: {err:#}\n"));
            ExitCode::FAILURE
        }
    }
}

pub async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            server::open_store(&config).await?.close().await;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Account(cmd) => account(cmd, config).await,
        Command::Key(cmd) => key(cmd, config).await,
        Command::Webhook(cmd) => webhooks::run(cmd, config).await,
        Command::Processor(cmd) => processors::run(cmd, config).await,
        Command::Route(cmd) => routes::run(cmd, config).await,
        Command::Destination(cmd) => destinations::run(cmd, config).await,
        Command::Audit(cmd) => audit::run(cmd, config).await,
        Command::Backup { to } => backup::backup(config, to).await,
        Command::Restore { from, force } => backup::restore(config, from, force).await,
        Command::Origin(cmd) => origins::run(cmd, config).await,
        Command::Payments(PaymentsCommand::Seed {
            count,
            account,
            days,
            quiet,
        }) => seed_payments(config, count, account, days, quiet).await,
        Command::Import(ImportCommand::Watch { id, interval_ms }) => {
            import_watch::watch(config, id, Duration::from_millis(interval_ms.max(50))).await
        }
        Command::MasterKey(cmd) => keys::master_key(cmd, config).await,
        Command::DataKey(cmd) => keys::data_key(cmd, config).await,
        Command::Job(cmd) => keys::job(cmd, config).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = server::listen(config.listen)
        .with_context(|| format!("cannot listen on {} (STRONGROOM_LISTEN)", config.listen))?;
    let pid_file = (config.sqlite_file().is_some()).then(|| backup::pid_file(&config));
    let server = server::start(config, listener).await?;
    if let Some(path) = &pid_file {
        // Lets `restore` refuse to replace the database under a running server.
        if let Err(err) = std::fs::write(path, std::process::id().to_string()) {
            tracing::warn!(error = %err, "could not write the pid file");
        }
    }
    if let Some(key) = &server.default_api_key {
        // Not `println!`: a stdout that cannot be written (a full disk) must not stop the server.
        telemetry::print_out(&format!(
            "Created the `default` account with every feature on this first start.\n\
             Its API key is shown only this once; keep it safe:\n\n    {}\n\n",
            key.expose()
        ));
    }
    let token = server.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing requests in flight");
        token.cancel();
    });
    let served = server.wait().await;
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
    served
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

async fn account(cmd: AccountCommand, config: Config) -> anyhow::Result<()> {
    let store = server::open_store(&config).await?;
    match cmd {
        AccountCommand::Create {
            name,
            features,
            json,
        } => {
            if name.trim().is_empty() {
                anyhow::bail!("--name must not be empty");
            }
            let features: FeatureSet = features.into_iter().collect();
            let (account, _, secret) =
                accounts::create_account(&store, &name, features, ADMIN_CLI).await?;
            if json {
                println!(
                    "{}",
                    json!({"id": account.id, "name": account.name, "api_key": secret.expose()})
                );
            } else {
                println!(
                    "account {} ({})\napi key (shown once): {}",
                    account.id,
                    account.name,
                    secret.expose()
                );
            }
        }
        AccountCommand::List { json } => {
            let list = store.list_accounts().await?;
            let rows: Vec<_> = list
                .iter()
                .map(|a| {
                    json!({"id": a.id, "name": a.name, "features": a.features.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
                           "created_at": a.created_at})
                })
                .collect();
            if json {
                println!("{}", serde_json::Value::Array(rows));
            } else {
                for a in list {
                    println!(
                        "{}  {}  [{}]  {}",
                        a.id,
                        a.name,
                        a.features.to_db(),
                        a.created_at
                    );
                }
            }
        }
    }
    store.close().await;
    Ok(())
}

async fn key(cmd: KeyCommand, config: Config) -> anyhow::Result<()> {
    let store = server::open_store(&config).await?;
    match cmd {
        KeyCommand::Create {
            account,
            label,
            json,
        } => {
            let (key, secret) = accounts::create_key(&store, account, &label, ADMIN_CLI).await?;
            if json {
                println!("{}", json!({"id": key.id, "api_key": secret.expose()}));
            } else {
                println!(
                    "key {} for account {}\napi key (shown once): {}",
                    key.id,
                    account,
                    secret.expose()
                );
            }
        }
        KeyCommand::List { account, json } => {
            let keys = store.list_api_keys(account).await?;
            if json {
                let rows: Vec<_> = keys
                    .iter()
                    .map(|k| json!({"id": k.id, "label": k.label, "created_at": k.created_at, "revoked_at": k.revoked_at}))
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                for k in keys {
                    let state = k
                        .revoked_at
                        .map(|t| format!("revoked {t}"))
                        .unwrap_or_else(|| "active".into());
                    println!("{}  {}  {}", k.id, k.label, state);
                }
            }
        }
        KeyCommand::Revoke { id, json } => {
            let key = accounts::revoke_key(&store, id, ADMIN_CLI).await?;
            if json {
                println!("{}", json!({"id": key.id, "revoked": true}));
            } else {
                println!("key {} revoked", key.id);
            }
        }
    }
    store.close().await;
    Ok(())
}

async fn seed_payments(
    config: Config,
    count: usize,
    account: Option<Uuid>,
    days: u32,
    quiet: bool,
) -> anyhow::Result<()> {
    use crate::domain::tokens::{validate_card, NumberForm, Origin};
    let state = server::build_state(config).await?;
    let account_id = match account {
        Some(id) => id,
        None => state
            .store
            .list_accounts()
            .await?
            .into_iter()
            .find(|a| a.name == "default")
            .map(|a| a.id)
            .context("no account named `default`; pass --account")?,
    };
    if state.store.get_account(account_id).await?.is_none() {
        anyhow::bail!("no account with id {account_id}");
    }
    let card = json!({"account_number": "4111111111111111", "expiry_month": 12, "expiry_year": 2034,
                      "cardholder_name": "Seed Holder"});
    let valid = validate_card(&card, chrono::Utc::now(), NumberForm::Strict)
        .map_err(|_| anyhow::anyhow!("the seed card did not validate"))?;
    let token = state
        .tokens
        .create(account_id, ADMIN_CLI, valid, Origin::default())
        .await?;
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(count as u64)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} payments  {per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut rng = rand::thread_rng();
    let now = crate::store::Ts::now();
    let started = std::time::Instant::now();
    // The seed is audited in the transaction of its last batch: the row says the whole run landed, and
    // a run cut short (a crash, a failed batch) leaves no audit row claiming it did. Earlier batches are
    // committed on their own, as before, so an interrupted run keeps what it wrote, unaudited as a
    // whole; a seed of nothing still writes its audit row, with its empty batch.
    let audit = crate::store::AuditEvent::new(
        Some(account_id),
        ADMIN_CLI,
        crate::store::Action::PaymentsSeed,
        Some(format!("{count} payments")),
        "success",
    );
    let mut left = count;
    loop {
        let n = left.min(5000);
        let rows =
            crate::domain::payments::synthetic_payments(&mut rng, account_id, &token, now, days, n);
        left -= n;
        let last = left == 0;
        state
            .store
            .insert_payments(&rows, last.then_some(&audit))
            .await?;
        bar.inc(n as u64);
        if last {
            break;
        }
    }
    bar.finish_and_clear();
    eprintln!(
        "seeded {count} payments for account {account_id} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    state.store.close().await;
    Ok(())
}
