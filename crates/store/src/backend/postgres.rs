//! Scale-out backend: PostgreSQL, for several gateway replicas sharing one database.

use crate::{Backend, Result};
use crewgate_core::{MasterKey, Purpose, Sealer};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

type Db = sqlx::Postgres;
const BACKEND: Backend = Backend::Postgres;

/// PostgreSQL implementation of [`crate::Store`].
type Store_ = PostgresStore;

pub struct PostgresStore {
    pool: sqlx::Pool<Db>,
    sealer: Sealer,
}

impl PostgresStore {
    pub async fn open(url: &SecretString, key: &MasterKey) -> Result<Self> {
        let options = PgConnectOptions::from_str(url.expose_secret())?;
        Self::open_with(options, key).await
    }

    /// Opens with explicit options (tests use a private `search_path` schema per test).
    pub async fn open_with(options: PgConnectOptions, key: &MasterKey) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        let store = Self { pool, sealer: Sealer::new(&key.derive(Purpose::StoreSecrets)?) };
        store.check_key(&key.derive(Purpose::KeyCheck)?.check_value()).await?;
        Ok(store)
    }

    #[doc(hidden)]
    pub fn raw_pool(&self) -> &sqlx::Pool<Db> {
        &self.pool
    }
}

include!("shared.rs");
include!("approvals_shared.rs");
include!("web_shared.rs");
include!("onboarding_shared.rs");
