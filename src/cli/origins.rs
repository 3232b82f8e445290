//! `strongroom origin add|list|remove`: the web origins an account's hosted card form may be embedded
//! in (`frame-ancestors`) and its token sessions called from (CORS).

use clap::Subcommand;
use serde_json::json;
use uuid::Uuid;

use crate::config::Config;
use crate::domain::accounts::ADMIN_CLI;
use crate::domain::sessions;
use crate::server;
use crate::store::OriginRecord;

#[derive(Subcommand, Debug)]
pub enum OriginCommand {
    /// Allows the account's card form on pages of this origin.
    Add {
        #[arg(long)]
        account: Uuid,
        /// `https://host[:port]` (http:// only for a loopback host), without a path.
        #[arg(long)]
        origin: String,
        #[arg(long)]
        json: bool,
    },
    /// Lists the allowed origins, of one account or of all.
    List {
        #[arg(long)]
        account: Option<Uuid>,
        #[arg(long)]
        json: bool,
    },
    /// Removes an allowed origin.
    Remove {
        id: Uuid,
        #[arg(long)]
        json: bool,
    },
}

fn summary(o: &OriginRecord) -> serde_json::Value {
    json!({"id": o.id, "account_id": o.account_id, "origin": o.origin})
}

pub async fn run(cmd: OriginCommand, config: Config) -> anyhow::Result<()> {
    let store = server::open_store(&config).await?;
    let result = match cmd {
        OriginCommand::Add {
            account,
            origin,
            json,
        } => sessions::add_origin(&store, account, &origin, ADMIN_CLI)
            .await
            .map(|o| {
                if json {
                    println!("{}", summary(&o));
                } else {
                    println!(
                        "origin {} for account {} -> {}",
                        o.id, o.account_id, o.origin
                    );
                }
            })
            .map_err(anyhow::Error::from),
        OriginCommand::List { account, json } => store
            .list_origins(account)
            .await
            .map(|list| {
                if json {
                    let rows: Vec<_> = list
                        .iter()
                        .map(|o| {
                            let mut row = summary(o);
                            row["created_at"] = json!(o.created_at);
                            row
                        })
                        .collect();
                    println!("{}", serde_json::Value::Array(rows));
                } else {
                    for o in list {
                        println!("{}  {}  {}  {}", o.id, o.account_id, o.origin, o.created_at);
                    }
                }
            })
            .map_err(anyhow::Error::from),
        OriginCommand::Remove { id, json } => sessions::remove_origin(&store, id, ADMIN_CLI)
            .await
            .map(|o| {
                if json {
                    println!("{}", json!({"id": o.id, "removed": true}));
                } else {
                    println!("origin {} removed", o.id);
                }
            })
            .map_err(anyhow::Error::from),
    };
    store.close().await;
    result
}
