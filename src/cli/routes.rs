//! `strongroom route set|show`: an account's routing rules, read as one JSON array on standard input and
//! replaced whole, or refused with a message naming the rule at fault.

use std::io::Read;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use uuid::Uuid;

use crate::config::Config;
use crate::domain::accounts::ADMIN_CLI;
use crate::domain::routing;
use crate::server;

#[derive(Subcommand, Debug)]
pub enum RouteCommand {
    /// Replaces the account's rules with the JSON array read from standard input; `[]` removes them
    /// all (and everything goes to `sandbox` again).
    Set {
        #[arg(long)]
        account: Uuid,
        #[arg(long)]
        json: bool,
    },
    /// Prints the account's rules.
    Show {
        #[arg(long)]
        account: Uuid,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: RouteCommand, config: Config) -> anyhow::Result<()> {
    let store = server::open_store(&config).await?;
    let (account, rules, json) = match cmd {
        RouteCommand::Set { account, json } => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the rules from standard input")?;
            let rules = routing::set_rules(&store, account, &text, ADMIN_CLI).await;
            (account, rules, json)
        }
        RouteCommand::Show { account, json } => {
            (account, routing::show_rules(&store, account).await, json)
        }
    };
    store.close().await;
    let rules = rules?;
    if json {
        println!("{}", json!({"account_id": account, "rules": rules}));
    } else if rules.is_empty() {
        println!("no rules: every payment of account {account} goes to sandbox");
    } else {
        for rule in rules {
            println!(
                "{}  when {}  ->  {}",
                rule.name,
                serde_json::to_string(&rule.when).unwrap_or_default(),
                rule.processors.join(", ")
            );
        }
    }
    Ok(())
}
