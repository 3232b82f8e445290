//! `strongroom import watch ID`: follows an import in the database until it ends, with a live line of
//! attempts, successes, failures and rate (a plain line every few seconds when not on a terminal).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Context;
use uuid::Uuid;

use crate::config::Config;
use crate::domain::imports::status_of;
use crate::model::import::ImportStatus;
use crate::server;
use crate::store::ImportRecord;

pub async fn watch(config: Config, id: Uuid, interval: Duration) -> anyhow::Result<()> {
    let store = server::open_store(&config).await?;
    let terminal = std::io::stderr().is_terminal();
    let bar = if terminal {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let started = Instant::now();
    let mut first: Option<i64> = None;
    let mut last_line = Instant::now();
    let outcome = loop {
        let import = store
            .get_import(id)
            .await?
            .with_context(|| format!("no import with id {id}"))?;
        let base = *first.get_or_insert(import.attempts);
        let elapsed = started.elapsed().as_secs_f64().max(0.001);
        let rate = (import.attempts - base) as f64 / elapsed;
        let line = describe(&import, rate);
        bar.set_message(line.clone());
        bar.tick();
        if !terminal && last_line.elapsed() >= Duration::from_secs(5) {
            eprintln!("{line}");
            last_line = Instant::now();
        }
        let status = status_of(&import)?;
        if status.has_ended() {
            bar.finish_and_clear();
            println!("{line}");
            break status;
        }
        tokio::time::sleep(interval).await;
    };
    store.close().await;
    if outcome == ImportStatus::Aborted {
        anyhow::bail!("the import was aborted; `GET /tokens/imports/{id}/failures` says why");
    }
    Ok(())
}

fn describe(import: &ImportRecord, rate: f64) -> String {
    format!(
        "import {} {}: attempts {} · successes {} · failures {} · {:.0} cards/s",
        import.id, import.status, import.attempts, import.successes, import.failures, rate
    )
}
