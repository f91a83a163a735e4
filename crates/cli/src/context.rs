//! Opening the store the way every command does: location from flags/env, master key from
//! `MASTER_KEY` or the data dir's key file.

use crate::StoreArgs;
use anyhow::{Context, Result, bail};
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

pub struct Opened {
    pub store: Arc<dyn Store>,
    pub key_origin: KeyOrigin,
}

pub async fn open_store(args: &StoreArgs) -> Result<Opened> {
    let env_key = std::env::var("MASTER_KEY").ok().map(SecretString::from);
    let (key, key_origin) = master_key::load_or_create(&args.data_dir, env_key)
        .with_context(|| format!("loading the master key for data dir {}", args.data_dir.display()))?;
    let loc = location(args)?;
    let store = crewgate_store::open(&loc, &key)
        .await
        .with_context(|| format!("opening the store ({})", loc.describe()))?;
    Ok(Opened { store, key_origin })
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
