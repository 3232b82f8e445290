//! `strongroom processor add|list|remove`: an account's processors. Settings come as flags and the
//! secrets as one JSON document on standard input, so that nothing secret is ever on a command line;
//! no command prints a secret.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::config::Config;
use crate::domain::accounts::ADMIN_CLI;
use crate::domain::processors::{self, NewProcessor, ProcessorKind, SANDBOX};
use crate::domain::routing;
use crate::server;
use crate::store::ProcessorRecord;
use crate::vault::Vault;

#[derive(Subcommand, Debug)]
pub enum ProcessorCommand {
    /// Adds a processor to an account; its secrets are read as JSON from standard input
    /// (stripe: {"api_key"}; adyen: {"api_key", "merchant_account", "hmac_key"}).
    Add {
        #[arg(long)]
        account: Uuid,
        /// The name routing rules use; unique among the account's processors.
        #[arg(long)]
        name: String,
        /// `stripe` or `adyen`.
        #[arg(long)]
        kind: String,
        /// The processor's API base URL (default: its production or test endpoint).
        #[arg(long)]
        api_base: Option<String>,
        /// The deadline of each call to the processor, in milliseconds (default 30000).
        #[arg(long)]
        timeout_ms: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Lists processors (never their secrets), of one account or of all; `sandbox` is always there.
    List {
        #[arg(long)]
        account: Option<Uuid>,
        #[arg(long)]
        json: bool,
    },
    /// Removes a processor and wipes its secrets.
    Remove {
        id: Uuid,
        #[arg(long)]
        json: bool,
    },
}

fn summary(p: &ProcessorRecord) -> serde_json::Value {
    json!({
        "id": p.id,
        "account_id": p.account_id,
        "name": p.name,
        "kind": p.kind,
        "api_base": processors::settings(p).api_base,
        "created_at": p.created_at,
    })
}

pub async fn run(cmd: ProcessorCommand, config: Config) -> anyhow::Result<()> {
    let store = server::open_store(&config).await?;
    match cmd {
        ProcessorCommand::Add {
            account,
            name,
            kind,
            api_base,
            timeout_ms,
            json,
        } => {
            let kind: ProcessorKind = kind
                .parse()
                .map_err(|_| anyhow::anyhow!("--kind: must be stripe or adyen"))?;
            let mut secrets = Zeroizing::new(String::new());
            std::io::stdin()
                .read_to_string(&mut secrets)
                .context("cannot read the secrets from standard input")?;
            let vault = Arc::new(Vault::new(
                store.clone(),
                server::open_provider(&config, &store).await?,
            ));
            let new = NewProcessor {
                account_id: account,
                name: &name,
                kind,
                api_base: api_base.as_deref(),
                timeout: timeout_ms.map(Duration::from_millis),
            };
            let p = processors::add_processor(&store, &vault, &new, &secrets, ADMIN_CLI).await?;
            if json {
                println!("{}", json!({"id": p.id, "name": p.name, "kind": p.kind}));
            } else {
                println!(
                    "processor {} ({}) {} for account {}",
                    p.name, p.kind, p.id, p.account_id
                );
            }
        }
        ProcessorCommand::List { account, json } => {
            let list = store.list_processors(account).await?;
            if json {
                let mut rows =
                    vec![json!({"id": null, "name": SANDBOX, "kind": SANDBOX, "builtin": true})];
                rows.extend(list.iter().map(summary));
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!("(built-in)  {SANDBOX}  {SANDBOX}");
                for p in list {
                    println!(
                        "{}  {}  {}  {}  {}",
                        p.id, p.account_id, p.name, p.kind, p.created_at
                    );
                }
            }
        }
        ProcessorCommand::Remove { id, json } => {
            let p = processors::remove_processor(&store, id, ADMIN_CLI).await?;
            let rules = routing::show_rules(&store, p.account_id)
                .await
                .unwrap_or_default();
            for rule in rules.iter().filter(|r| r.processors.contains(&p.name)) {
                eprintln!(
                    "warning: rule {:?} still names {:?}; payments it routes there fail over to its next processor",
                    rule.name, p.name
                );
            }
            if json {
                println!("{}", json!({"id": p.id, "removed": true}));
            } else {
                println!(
                    "processor {} ({}) removed; its secrets are wiped",
                    p.name, p.id
                );
            }
        }
    }
    store.close().await;
    Ok(())
}
