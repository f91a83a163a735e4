//! `crewgate backup status|now|list` and `crewgate restore`: continuous encrypted S3 backup of the
//! SQLite store (crates/backup). PostgreSQL deployments back up with PostgreSQL's own tools, and
//! these commands say so instead of pretending.

use crate::StoreArgs;
use crate::context::{DB_FILE, load_key, location};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use crewgate_backup::{BackupSettings, format_millis, list_backups, parse_time, restore};
use crewgate_store::StoreLocation;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Config file with a `backup.s3` section (the S3_* environment variables win).
    #[arg(long, env = "CREWGATE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Show the newest backup in S3 and how old it is.
    #[command(
        after_help = "Example:\n  S3_BUCKET=backups S3_ENDPOINT=http://127.0.0.1:9000 crewgate backup status"
    )]
    Status(BackupArgs),
    /// Upload the current state now (starts a new backup generation).
    #[command(after_help = "Example:\n  crewgate backup now --data-dir /data")]
    Now(BackupArgs),
    /// List backup generations in S3.
    #[command(after_help = "Example:\n  crewgate backup list")]
    List(BackupArgs),
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  crewgate restore --to /data\n  crewgate restore --at 2026-11-25T09:00:00Z --to /tmp/restored"
)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub backup: BackupArgs,
    /// Restore the state as of this time (RFC 3339, a date, or unix seconds/milliseconds).
    #[arg(long)]
    pub at: Option<String>,
    /// Directory to restore into (default: the data dir). Never overwrites newer local state.
    #[arg(long)]
    pub to: Option<PathBuf>,
}

/// Backup settings from `S3_*` variables, else the config's `backup.s3`; `None` when neither.
pub fn settings(config: Option<&crewgate_config::Config>) -> Result<Option<BackupSettings>> {
    if let Some(s) = BackupSettings::from_env_optional().context("reading the S3_* variables")? {
        return Ok(Some(with_config_timing(s, config)));
    }
    let Some(cfg) = config else { return Ok(None) };
    let Some(s3) = &cfg.backup.s3 else { return Ok(None) };
    let key_id = s3.access_key_id.clone().unwrap_or_default();
    let Some(secret) = s3.secret_access_key.clone() else {
        bail!("backup.s3 needs secretAccessKey (e.g. \"${{S3_SECRET_ACCESS_KEY}}\")");
    };
    let mut s = BackupSettings::new(
        s3.endpoint.as_ref().map(|u| u.as_str().to_owned()),
        s3.bucket.clone(),
        key_id,
        secret,
    );
    s.prefix = s3.prefix.clone();
    if let Some(r) = &s3.region {
        s.region = r.clone();
    }
    s.path_style = s3.path_style || s.path_style;
    Ok(Some(with_config_timing(s.validated().context("checking backup.s3")?, config)))
}

fn with_config_timing(mut s: BackupSettings, config: Option<&crewgate_config::Config>) -> BackupSettings {
    if let Some(cfg) = config {
        s.interval = cfg.backup.interval();
        s.retain_generations = usize::try_from(cfg.backup.retain_generations).unwrap_or(s.retain_generations);
    }
    s
}

fn load_config(path: Option<&PathBuf>) -> Result<Option<crewgate_config::Config>> {
    path.map(|p| crewgate_config::Config::load(p).map_err(|e| anyhow::anyhow!("{e}"))).transpose()
}

fn require(args: &BackupArgs) -> Result<BackupSettings> {
    if matches!(location(&args.store)?, StoreLocation::Postgres { .. }) {
        bail!(
            "this gateway stores its state in PostgreSQL: back it up with PostgreSQL's own tools (pg_dump, or continuous archiving/PITR); crewgate's S3 backup covers the embedded SQLite store"
        );
    }
    let cfg = load_config(args.config.as_ref())?;
    settings(cfg.as_ref())?.context("no backup configured: set S3_BUCKET, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY (and S3_ENDPOINT for non-AWS), or backup.s3 in the config")
}

pub async fn backup(cmd: BackupCommand) -> Result<()> {
    match cmd {
        BackupCommand::Status(args) => {
            let s = require(&args)?;
            let (key, _) = load_key(&args.store)?;
            let gens = list_backups(&s, &key).await?;
            match gens.iter().map(|g| g.newest_at).max() {
                Some(newest) => {
                    let age_s = (crewgate_core::now_millis() - newest) / 1000;
                    println!(
                        "newest backup: {} ({age_s} s ago), {} generation(s) in s3://{}/{}",
                        format_millis(newest),
                        gens.len(),
                        s.bucket,
                        s.prefix
                    );
                }
                None => println!("no backups found in s3://{}/{}", s.bucket, s.prefix),
            }
        }
        BackupCommand::List(args) => {
            let s = require(&args)?;
            let (key, _) = load_key(&args.store)?;
            let gens = list_backups(&s, &key).await?;
            if gens.is_empty() {
                println!("no backups found in s3://{}/{}", s.bucket, s.prefix);
            }
            println!("{:<34} {:<26} {:>9} {:<26} NOTE", "GENERATION", "STARTED", "SNAPSHOTS", "NEWEST");
            for g in gens {
                println!(
                    "{:<34} {:<26} {:>9} {:<26} {}",
                    g.id,
                    format_millis(g.started_at),
                    g.manifests,
                    format_millis(g.newest_at),
                    g.problem.unwrap_or_default()
                );
            }
        }
        BackupCommand::Now(args) => {
            let s = require(&args)?;
            let (key, _) = load_key(&args.store)?;
            let db = args.store.data_dir.join(DB_FILE);
            if !db.exists() {
                bail!("no database at {}; nothing to back up", db.display());
            }
            eprintln!("backing up {} …", db.display());
            let handle = crewgate_backup::Replicator::start(&db, s, &key).await?;
            let status = handle.flush().await?;
            handle.shutdown().await.context("stopping the backup after the upload")?;
            println!(
                "backed up: generation {} snapshot {} ({} bytes uploaded)",
                status.generation.unwrap_or_default(),
                status.sequence.unwrap_or_default(),
                status.bytes_uploaded
            );
        }
    }
    Ok(())
}

pub async fn restore_cmd(args: RestoreArgs) -> Result<()> {
    let s = require(&args.backup)?;
    let (key, _) = load_key(&args.backup.store)?;
    let dir = args.to.clone().unwrap_or_else(|| args.backup.store.data_dir.clone());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let at = args.at.as_deref().map(parse_time).transpose().context("reading --at")?;
    eprintln!("restoring into {} …", dir.display());
    let report = restore(&s, &key, &dir.join(DB_FILE), at).await?;
    println!(
        "restored generation {} snapshot {} taken {} ({} bytes, {} ms)",
        report.generation,
        report.sequence,
        format_millis(report.taken_at),
        report.bytes,
        report.took_ms
    );
    Ok(())
}
