//! Embedded default: one SQLite file in the data dir, WAL mode.

use crate::{Backend, Result, StoreError};
use crewgate_core::{MasterKey, Purpose, Sealer};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::time::Duration;

type Db = sqlx::Sqlite;
const BACKEND: Backend = Backend::Sqlite;

/// SQLite implementation of [`crate::Store`].
type Store_ = SqliteStore;

pub struct SqliteStore {
    pool: sqlx::Pool<Db>,
    sealer: Sealer,
}

impl SqliteStore {
    pub async fn open(path: &Path, key: &MasterKey) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|source| StoreError::DataDir { path: parent.to_path_buf(), source })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        // A local file cannot drop a connection the way a network can: pinging it before every
        // query (sqlx's default) would double the thread hand-offs of each statement.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        let store = Self { pool, sealer: Sealer::new(&key.derive(Purpose::StoreSecrets)?) };
        store.check_key(&key.derive(Purpose::KeyCheck)?.check_value()).await?;
        Ok(store)
    }

    /// The underlying pool, for tests that must poke at raw rows (tamper tests).
    #[doc(hidden)]
    pub fn raw_pool(&self) -> &sqlx::Pool<Db> {
        &self.pool
    }
}

include!("shared.rs");
include!("approvals_shared.rs");
include!("web_shared.rs");
include!("onboarding_shared.rs");
