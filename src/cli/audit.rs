//! `strongroom audit list`: the audit trail for operators, across accounts or of one, newest first.

use clap::Subcommand;
use uuid::Uuid;

use crate::config::Config;
use crate::server;
use crate::store::{AuditFilter, Ts};

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Lists audit events, newest first: of every account (and of none, such as refused requests)
    /// unless `--account` is given.
    List {
        #[arg(long)]
        account: Option<Uuid>,
        /// Only events on or after this UTC date (YYYY-MM-DD) or instant (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Most events shown.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
}

fn parse_since(raw: &str) -> anyhow::Result<Ts> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(Ts::from_datetime(at.with_timezone(&chrono::Utc)));
    }
    let day = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| {
        anyhow::anyhow!("--since: `{raw}` is not a date (YYYY-MM-DD) or an RFC 3339 instant")
    })?;
    let midnight = day
        .and_hms_opt(0, 0, 0)
        .ok_or_else(|| anyhow::anyhow!("--since: `{raw}` is out of range"))?;
    Ok(Ts::from_datetime(midnight.and_utc()))
}

pub async fn run(cmd: AuditCommand, config: Config) -> anyhow::Result<()> {
    let AuditCommand::List {
        account,
        since,
        limit,
        json,
    } = cmd;
    let from = since.as_deref().map(parse_since).transpose()?;
    let store = server::open_store(&config).await?;
    let filter = AuditFilter {
        account_id: account,
        from,
        ..Default::default()
    };
    let listed = store
        .list_audit_events_page(&filter, i64::from(limit.max(1)), 0)
        .await;
    store.close().await;
    let (events, _) = listed?;
    if json {
        println!("{}", serde_json::to_string(&events)?);
    } else {
        for e in events {
            println!(
                "{}  {}  {}  {}  {}  {}  {}  from={} request={} node={}",
                e.at,
                e.account_id
                    .map_or_else(|| "-".to_owned(), |id| id.to_string()),
                e.actor,
                e.action.as_str(),
                e.target.as_deref().unwrap_or("-"),
                e.outcome,
                e.id,
                e.remote_addr.as_deref().unwrap_or("-"),
                e.request_id.as_deref().unwrap_or("-"),
                e.node.as_deref().unwrap_or("-"),
            );
        }
    }
    Ok(())
}
