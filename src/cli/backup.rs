//! `strongroom backup --to FILE` (a consistent copy of the SQLite database, taken while the server
//! serves) and `strongroom restore --from FILE [--force]` (puts one in place on a stopped server).
//! The master key is not in the copy: it is kept, and backed up, apart.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sqlx::Connection;

use crate::config::Config;
use crate::server;

/// The file `serve` writes its process id to in the data directory while it runs (SQLite only).
pub fn pid_file(config: &Config) -> PathBuf {
    config.data_dir.join("strongroom.pid")
}

pub async fn backup(config: Config, to: PathBuf) -> anyhow::Result<()> {
    if config.sqlite_file().is_none() {
        bail!("`backup` copies a SQLite database; back PostgreSQL up with pg_dump, or base backups with WAL archiving (see the README)");
    }
    if to.exists() {
        bail!("{} exists: `backup` never overwrites a file", to.display());
    }
    let store = server::open_store(&config).await?;
    let copied = store.backup_into(&to).await;
    store.close().await;
    copied.with_context(|| format!("cannot write the backup to {}", to.display()))?;
    eprintln!("backup written to {}", to.display());
    Ok(())
}

/// Whether the server that wrote `pid_file` still runs (a pid file left by a killed server is stale).
fn server_running(pid_file: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    (cmdline.contains("strongroom") && cmdline.contains("serve")).then_some(pid)
}

pub async fn restore(config: Config, from: PathBuf, force: bool) -> anyhow::Result<()> {
    let Some(target) = config.sqlite_file() else {
        bail!("`restore` puts a SQLite database in place; restore PostgreSQL with its own tools (see the README)");
    };
    if let Some(pid) = server_running(&pid_file(&config)) {
        bail!(
            "a server (pid {pid}) is running on {}: stop it before restoring",
            config.data_dir.display()
        );
    }
    if std::net::TcpListener::bind(config.listen).is_err() {
        bail!(
            "{} is in use (STRONGROOM_LISTEN): stop the server before restoring",
            config.listen
        );
    }
    if target.exists() && !force {
        bail!(
            "{} exists: pass --force to replace it with the backup",
            target.display()
        );
    }
    // The backup must be a sound SQLite database before anything is replaced.
    let url = format!("sqlite://{}?mode=ro", from.display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .with_context(|| format!("cannot open the backup {}", from.display()))?;
    let (check,): (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .with_context(|| format!("{} is not a SQLite database", from.display()))?;
    conn.close().await.ok();
    if check != "ok" {
        bail!(
            "the backup {} fails its integrity check: {check}",
            from.display()
        );
    }
    std::fs::create_dir_all(&config.data_dir)?;
    let staging = target.with_extension("db.restoring");
    std::fs::copy(&from, &staging)
        .with_context(|| format!("cannot copy {} into the data directory", from.display()))?;
    std::fs::File::open(&staging)?.sync_all()?;
    // The old database's write-ahead log must not be replayed onto the restored file.
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", target.display()));
        if side.exists() {
            std::fs::remove_file(&side)?;
        }
    }
    std::fs::rename(&staging, &target)?;
    if let Some(dir) = target.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    // Brings the schema up to this binary's migrations.
    server::open_store(&config).await?.close().await;
    eprintln!("restored {} from {}", target.display(), from.display());
    Ok(())
}
