//! `master-key init | rotate | retire vN`, `data-key rotate` and `job list`: key custody from the
//! command line. Each key change runs under the admin lock (see `vault::admin`).

use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use uuid::Uuid;

use crate::config::Config;
use crate::domain::accounts::ADMIN_CLI;
use crate::domain::data_keys::{rotation_progress, RotatePayload, KIND};
use crate::server;
use crate::store::JobStatus;
use crate::vault::admin;

#[derive(Subcommand, Debug)]
pub enum MasterKeyCommand {
    /// Creates the master key: the key file (mode 0600) or the HSM key, refused if one exists.
    Init {
        #[arg(long)]
        json: bool,
    },
    /// Adds a new master key version and re-wraps every data key under it, while servers keep running.
    Rotate {
        #[arg(long)]
        json: bool,
    },
    /// Destroys master key version N (written `vN`); refused while any data key is wrapped under it.
    Retire {
        version: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum DataKeyCommand {
    /// Gives accounts a new data key and re-seals everything of theirs under it in a durable job.
    Rotate {
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        account: Option<Uuid>,
        #[arg(long)]
        all: bool,
        /// Print the queued job as JSON and return at once.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Jobs not finished (queued or running), oldest first.
    List {
        #[arg(long)]
        json: bool,
    },
}

fn parse_version(text: &str) -> anyhow::Result<u32> {
    text.strip_prefix('v')
        .unwrap_or(text)
        .parse()
        .with_context(|| format!("`{text}` is not a master key version (write it `v2`)"))
}

pub async fn master_key(cmd: MasterKeyCommand, config: Config) -> anyhow::Result<()> {
    let store = server::open_store(&config).await?;
    let result = async {
        match cmd {
            MasterKeyCommand::Init { json } => {
                let provider = server::unopened_provider(&config)?;
                let report = admin::init(&store, &*provider, ADMIN_CLI).await?;
                if json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    println!(
                        "master key v{} created ({}: {})",
                        report.version, report.provider, report.location
                    );
                }
            }
            MasterKeyCommand::Rotate { json } => {
                let provider = server::open_provider(&config, &store).await?;
                let report = admin::rotate(&store, &*provider, ADMIN_CLI).await?;
                if json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    println!(
                        "master key version {} added ({}); {} account key sets re-wrapped",
                        report.new_version,
                        provider.describe(),
                        report.rewrapped_accounts
                    );
                }
            }
            MasterKeyCommand::Retire { version, json } => {
                let version = parse_version(&version)?;
                let provider = server::open_provider(&config, &store).await?;
                let report = admin::retire(&store, &*provider, version, ADMIN_CLI).await?;
                if json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    println!("master key v{version} destroyed");
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    store.close().await;
    result
}

pub async fn data_key(cmd: DataKeyCommand, config: Config) -> anyhow::Result<()> {
    let DataKeyCommand::Rotate { account, all, json } = cmd;
    let store = server::open_store(&config).await?;
    let provider = server::open_provider(&config, &store).await?;
    let vault = crate::vault::Vault::new(store.clone(), provider.clone());
    let ids: Vec<Uuid> = match (account, all) {
        (Some(id), _) => {
            if store.get_account(id).await?.is_none() {
                anyhow::bail!("no account with id {id}");
            }
            vec![id]
        }
        _ => store
            .list_accounts()
            .await?
            .into_iter()
            .map(|a| a.id)
            .collect(),
    };
    let mut rotated = Vec::new();
    for id in ids {
        // Makes the account's keys if it has none yet, so that it has a version to rotate from.
        vault.data_key_version(id).await?;
        match admin::begin_data_key_rotation(&store, &*provider, id, ADMIN_CLI).await? {
            Some(version) => rotated.push((id, version)),
            // Already mid-rotation (a job is running, or was lost): this job finishes that one; the
            // steps are idempotent, so two jobs on one account are harmless.
            None => {
                if let Some(record) = store.get_account_keys(id).await? {
                    eprintln!(
                        "account {id} is already rotating to data key v{}; the job finishes that rotation",
                        record.dek_version
                    );
                    rotated.push((id, record.dek_version));
                }
            }
        }
    }
    let payload = RotatePayload {
        accounts: rotated.clone(),
        actor: ADMIN_CLI.to_owned(),
    };
    let job = crate::jobs::enqueue(&store, KIND, &payload, 1000).await?;
    let accounts: Vec<_> = rotated
        .iter()
        .map(|(id, v)| json!({"account_id": id, "data_key_version": v}))
        .collect();
    if json {
        println!("{}", json!({"job_id": job, "accounts": accounts}));
        store.close().await;
        return Ok(());
    }
    println!(
        "data-key rotation job {job} queued for {} account(s); a running server's workers do it",
        rotated.len()
    );
    // In a terminal, follow the job until it ends: a bar of the values re-sealed so far.
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        follow_rotation(&store, job, &rotated).await?;
    }
    store.close().await;
    Ok(())
}

/// Draws the rotation's progress until its job ends. The counts are read from the sealed values
/// themselves (see `rotation_progress`), about once a second; the job's status four times a second.
async fn follow_rotation(
    store: &crate::store::DynStore,
    job: Uuid,
    accounts: &[(Uuid, i32)],
) -> anyhow::Result<()> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {elapsed} [{wide_bar}] {pos}/{len} re-sealed · job {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    for poll in 0u64.. {
        let status = store.get_job(job).await?.map(|j| j.status);
        let ended = matches!(status, Some(JobStatus::Done | JobStatus::Failed) | None);
        if ended || poll % 4 == 0 {
            let (done, total) = rotation_progress(store, accounts).await?;
            bar.set_length(total);
            bar.set_position(done);
        }
        bar.set_message(status.map(|s| s.as_str()).unwrap_or("gone"));
        bar.tick();
        if ended {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bar.finish();
    Ok(())
}

pub async fn job(cmd: JobCommand, config: Config) -> anyhow::Result<()> {
    let JobCommand::List { json } = cmd;
    let store = server::open_store(&config).await?;
    let jobs = store.list_unfinished_jobs(500).await?;
    store.close().await;
    if json {
        let rows: Vec<_> = jobs
            .iter()
            .map(|j| {
                json!({"id": j.id, "kind": j.kind, "status": j.status.as_str(), "attempts": j.attempts,
                       "created_at": j.created_at, "updated_at": j.updated_at, "last_error": j.last_error})
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        for j in jobs {
            println!(
                "{}  {}  {}  attempts {}  since {}",
                j.id,
                j.kind,
                j.status.as_str(),
                j.attempts,
                j.created_at
            );
        }
    }
    Ok(())
}
