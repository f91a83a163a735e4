//! Opening the store the way every command does: location from flags/env, master key from
//! `MASTER_KEY` or the data dir's key file.

use crate::StoreArgs;
use anyhow::{Context, Result, bail};
use crewgate_core::MasterKey;
use crewgate_store::master_key::{self, KeyOrigin};
use crewgate_store::{Store, StoreLocation};
use secrecy::SecretString;
use std::sync::Arc;

pub const DB_FILE: &str = "crewgate.db";

pub fn location(args: &StoreArgs) -> Result<StoreLocation> {
    match args.database_url.as_deref().filter(|u| !u.is_empty()) {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(StoreLocation::Postgres { url: SecretString::from(url.to_owned()) })
        }
        Some(_) => {
            bail!("--database-url / DATABASE_URL must start with postgres:// (leave it unset for SQLite)")
        }
        None => Ok(StoreLocation::Sqlite { path: args.data_dir.join(DB_FILE) }),
    }
}

/// The master key: `MASTER_KEY`, else the data dir's key file (generated on first use).
pub fn load_key(args: &StoreArgs) -> Result<(MasterKey, KeyOrigin)> {
    let env_key = std::env::var("MASTER_KEY").ok().map(SecretString::from);
    master_key::load_or_create(&args.data_dir, env_key)
        .with_context(|| format!("loading the master key for data dir {}", args.data_dir.display()))
}

/// Opens the store for an offline command (telling the person if a key file was just generated).
pub async fn open_store(args: &StoreArgs) -> Result<Arc<dyn Store>> {
    let (key, key_origin) = load_key(args)?;
    if let Some(note) = key_note(&key_origin) {
        eprintln!("{note}");
    }
    open_store_with(args, &key).await
}

pub async fn open_store_with(args: &StoreArgs, key: &MasterKey) -> Result<Arc<dyn Store>> {
    let loc = location(args)?;
    let store = crewgate_store::open(&loc, key)
        .await
        .with_context(|| format!("opening the store ({})", loc.describe()))?;
    Ok(store)
}

/// The note printed when a key file was generated: losing it makes sealed data unreadable.
pub fn key_note(origin: &KeyOrigin) -> Option<String> {
    match origin {
        KeyOrigin::GeneratedFile(path) => Some(format!(
            "NOTE: no MASTER_KEY was set, so a new master key was generated at {} (mode 0600).\n      \
             Back it up: without it the encrypted secrets and backups cannot be read. \
             In production set MASTER_KEY instead.",
            path.display()
        )),
        _ => None,
    }
}
