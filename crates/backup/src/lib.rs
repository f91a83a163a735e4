//! Encrypted, continuous replication of the SQLite store to any S3-compatible bucket, and
//! verified restore. See the crate README for the design, the object layout and the threat model.
//!
//! - [`Replicator::start`] runs in a tokio task: it notices commits (`PRAGMA data_version`),
//!   snapshots the database consistently, and uploads only the chunks whose content changed plus
//!   a manifest chained to its predecessor. [`ReplicatorHandle::status`] reports lag and errors.
//! - [`restore`] / [`restore_if_empty`] verify every object and the chain before atomically
//!   replacing the target; [`list_backups`] shows the generations.
//!
//! Postgres deployments are not replicated here: back them up with Postgres tools
//! (`pg_dump`, base backups + WAL archiving / PITR).

mod chain;
mod error;
mod format;
mod remote;
mod replicator;
mod restore;
mod settings;
mod snapshot;
pub mod time;

pub use error::{BackupError, Result};
pub use replicator::{BackupStatus, DEFAULT_SHUTDOWN_DEADLINE, Replicator, ReplicatorHandle};
pub use restore::{
    DB_FILE_NAME, GenerationInfo, RestoreReport, list_backups, live_chunk_keys, restore, restore_if_empty,
};
pub use settings::{
    BackupSettings, DEFAULT_CHUNK_SIZE, DEFAULT_INTERVAL, DEFAULT_MAX_GENERATION_AGE,
    DEFAULT_MAX_GENERATION_MANIFESTS, DEFAULT_PREFIX, DEFAULT_REGION, DEFAULT_RETAIN_GENERATIONS, ENV_VARS,
    SettingsError,
};
pub use time::{TimeParseError, format_millis, parse_time};
