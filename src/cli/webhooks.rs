//! `strongroom webhook add|list|remove`: registering where an account's events go. The signing key is
//! printed once by `add` and stored only sealed under the account's data key.

use std::sync::Arc;

use clap::Subcommand;
use serde_json::json;
use uuid::Uuid;

use crate::config::Config;
use crate::domain::accounts::ADMIN_CLI;
use crate::domain::webhooks::{self, EventSet};
use crate::server;
use crate::store::WebhookRecord;
use crate::vault::Vault;

#[derive(Subcommand, Debug)]
pub enum WebhookCommand {
    /// Registers a webhook for an account and prints its signing key (shown once).
    Add {
        #[arg(long)]
        account: Uuid,
        /// Where events are posted: http:// or https://.
        #[arg(long)]
        url: String,
        /// Comma list of event types (`token.created,payment.captured`); `payment.*` names every event
        /// of payments, `*` every event.
        #[arg(long)]
        events: String,
        #[arg(long)]
        json: bool,
    },
    /// Lists the webhooks (never their keys), of one account or of all.
    List {
        #[arg(long)]
        account: Option<Uuid>,
        #[arg(long)]
        json: bool,
    },
    /// Removes a webhook: nothing more is sent to it, and its pending deliveries are cancelled.
    Remove {
        id: Uuid,
        #[arg(long)]
        json: bool,
    },
}

fn summary(w: &WebhookRecord) -> serde_json::Value {
    json!({
        "id": w.id,
        "account_id": w.account_id,
        "url": w.url,
        "events": EventSet::from_db(&w.events).iter().map(|e| e.as_str()).collect::<Vec<_>>(),
        "created_at": w.created_at,
    })
}

pub async fn run(cmd: WebhookCommand, config: Config) -> anyhow::Result<()> {
    let store = server::open_store(&config).await?;
    match cmd {
        WebhookCommand::Add {
            account,
            url,
            events,
            json,
        } => {
            let events =
                EventSet::parse_list(&events).map_err(|m| anyhow::anyhow!("--events: {m}"))?;
            let vault = Arc::new(Vault::new(
                store.clone(),
                server::open_provider(&config, &store).await?,
            ));
            let (webhook, key) =
                webhooks::add_webhook(&store, &vault, account, &url, events, ADMIN_CLI).await?;
            if json {
                let mut out = summary(&webhook);
                out["signing_key"] = json!(key.expose());
                println!("{out}");
            } else {
                println!(
                    "webhook {} for account {} -> {}\nevents: {}\nsigning key (shown once): {}\n\
                     Servers see it within webhook_cache_seconds ({} s).",
                    webhook.id,
                    webhook.account_id,
                    webhook.url,
                    webhook.events,
                    key.expose(),
                    config.webhooks.cache_ttl.as_secs()
                );
            }
        }
        WebhookCommand::List { account, json } => {
            let list = store.list_webhooks(account).await?;
            if json {
                let rows: Vec<_> = list.iter().map(summary).collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                for w in list {
                    println!(
                        "{}  {}  {}  [{}]  {}",
                        w.id, w.account_id, w.url, w.events, w.created_at
                    );
                }
            }
        }
        WebhookCommand::Remove { id, json } => {
            let webhook = webhooks::remove_webhook(&store, id, ADMIN_CLI).await?;
            if json {
                println!("{}", json!({"id": webhook.id, "removed": true}));
            } else {
                println!("webhook {} removed", webhook.id);
            }
        }
    }
    store.close().await;
    Ok(())
}
