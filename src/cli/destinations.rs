//! `strongroom destination add|list|remove`: the allow-list of where an account's `POST /forward` may
//! send card data. Servers see a change within the auth cache window (`auth_cache_seconds`).

use clap::Subcommand;
use serde_json::json;
use uuid::Uuid;

use crate::config::Config;
use crate::domain::accounts::ADMIN_CLI;
use crate::domain::destinations;
use crate::server;
use crate::store::DestinationRecord;

#[derive(Subcommand, Debug)]
pub enum DestinationCommand {
    /// Allows an account to forward card data to URLs under this one (same scheme, host and port,
    /// path starting with its path).
    Add {
        #[arg(long)]
        account: Uuid,
        /// https:// (http:// only for a loopback host), with the path prefix allowed.
        #[arg(long)]
        url: String,
        #[arg(long)]
        json: bool,
    },
    /// Lists the entries, of one account or of all.
    List {
        #[arg(long)]
        account: Option<Uuid>,
        #[arg(long)]
        json: bool,
    },
    /// Removes an entry: forwards to it are refused within the auth cache window.
    Remove {
        id: Uuid,
        #[arg(long)]
        json: bool,
    },
}

fn summary(d: &DestinationRecord) -> serde_json::Value {
    json!({"id": d.id, "account_id": d.account_id, "url": d.url})
}

pub async fn run(cmd: DestinationCommand, config: Config) -> anyhow::Result<()> {
    let store = server::open_store(&config).await?;
    let result = match cmd {
        DestinationCommand::Add { account, url, json } => {
            destinations::add_destination(&store, account, &url, ADMIN_CLI)
                .await
                .map(|d| {
                    if json {
                        println!("{}", summary(&d));
                    } else {
                        println!(
                            "destination {} for account {} -> {}\nServers apply it within auth_cache_seconds ({} s).",
                            d.id,
                            d.account_id,
                            d.url,
                            config.auth_cache_ttl.as_secs()
                        );
                    }
                })
                .map_err(anyhow::Error::from)
        }
        DestinationCommand::List { account, json } => store
            .list_destinations(account)
            .await
            .map(|list| {
                if json {
                    let rows: Vec<_> = list
                        .iter()
                        .map(|d| {
                            let mut row = summary(d);
                            row["created_at"] = json!(d.created_at);
                            row
                        })
                        .collect();
                    println!("{}", serde_json::Value::Array(rows));
                } else {
                    for d in list {
                        println!("{}  {}  {}  {}", d.id, d.account_id, d.url, d.created_at);
                    }
                }
            })
            .map_err(anyhow::Error::from),
        DestinationCommand::Remove { id, json } => {
            destinations::remove_destination(&store, id, ADMIN_CLI)
                .await
                .map(|d| {
                    if json {
                        println!("{}", json!({"id": d.id, "removed": true}));
                    } else {
                        println!("destination {} removed", d.id);
                    }
                })
                .map_err(anyhow::Error::from)
        }
    };
    store.close().await;
    result
}
