//! Every error says what happened and what to do next; causes are kept as `source`.

use crate::settings::SettingsError;
use std::path::PathBuf;

pub type Result<T, E = BackupError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Settings(#[from] SettingsError),

    #[error("could not derive the backup key from MASTER_KEY: {0}")]
    Key(#[from] crewgate_core::KeyError),

    #[error("the S3 settings are not usable ({source}); check S3_ENDPOINT, S3_REGION and S3_BUCKET")]
    S3Config {
        #[source]
        source: object_store::Error,
    },

    #[error(
        "S3 {op} of {key} failed: {source}; check that the endpoint is reachable, the bucket exists and the credentials are right (the replicator keeps retrying on its own)"
    )]
    S3 {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },

    #[error(
        "the SQLite store {path} does not exist; open the store (which creates it) before starting replication"
    )]
    DatabaseMissing { path: PathBuf },

    #[error(
        "cannot read the SQLite database {path}: {source}; check that it is a crewgate store and that the file is readable"
    )]
    Database {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },

    #[error("file system error on {path}: {source}; check permissions and free space")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("a background task failed: {source}; this is a bug, please report it with the log")]
    Task {
        #[source]
        source: tokio::task::JoinError,
    },

    #[error("could not encrypt a backup object; this is a bug, please report it")]
    Encrypt,

    #[error("could not encode a backup manifest: {source}; this is a bug, please report it")]
    Encode {
        #[source]
        source: serde_json::Error,
    },

    #[error(
        "backup objects do not decrypt with this MASTER_KEY; use the key the backup was made with (s3://{location})"
    )]
    WrongKey { location: String },

    #[error(
        "backup object {object} failed verification ({detail}): it was modified, truncated or replaced in the bucket. Nothing was restored; restore another point with --at, and check who can write to the bucket"
    )]
    Tampered { object: String, detail: String },

    #[error(
        "backup object {object} holds manifest {found} of its generation, not manifest {expected}: an old object was replayed or objects were reordered in the bucket. Nothing was restored; check who can write to the bucket"
    )]
    Replayed { object: String, expected: u64, found: u64 },

    #[error(
        "manifest {sequence} of backup generation {generation} is missing from the bucket (deleted, or the chain was cut). Nothing was restored; restore an earlier point with --at or another generation, and check who can delete objects"
    )]
    MissingManifest { generation: String, sequence: u64 },

    #[error(
        "chunk {index} ({object}) of backup generation {generation} is missing from the bucket. Nothing was restored; restore an earlier point with --at, and check who can delete objects"
    )]
    MissingChunk { generation: String, object: String, index: u64 },

    #[error(
        "the manifest chain of backup generation {generation} is broken at manifest {sequence}: {detail}. Nothing was restored; check who can write to the bucket"
    )]
    ChainBroken { generation: String, sequence: u64, detail: String },

    #[error(
        "backup generation {generation} ends at manifest {have} but a later generation continued from its manifest {expected}: the newest manifests were deleted (truncated chain). Nothing was restored; restore from the later generation"
    )]
    Truncated { generation: String, have: u64, expected: u64 },

    #[error(
        "backup object {object} uses an unsupported format ({detail}); upgrade crewgate to the version that wrote the backup"
    )]
    Format { object: String, detail: String },

    #[error("no backups found at s3://{location}; check S3_BUCKET and S3_PREFIX")]
    NoBackups { location: String },

    #[error(
        "no backup state at or before {at}; the oldest retained backup is from {oldest}. Pick a later --at time"
    )]
    NothingBefore { at: String, oldest: String },

    #[error(
        "refusing to overwrite {path}: {reason}. Restore never replaces local state that may be newer than the backup; stop the gateway and move the file (and its -wal/-shm files) away if you really want the backup"
    )]
    TargetNotOlder { path: PathBuf, reason: String },

    #[error(
        "the restored database failed SQLite's integrity check ({detail}); nothing was replaced. Restore another point with --at"
    )]
    Corrupt { detail: String },

    #[error(
        "the backup replicator is not running any more; see the earlier log lines for the cause and restart the gateway"
    )]
    Stopped,
}

impl BackupError {
    pub(crate) fn s3(op: &'static str, key: &object_store::path::Path, source: object_store::Error) -> Self {
        BackupError::S3 { op, key: key.to_string(), source }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BackupError::Io { path: path.into(), source }
    }

    pub(crate) fn db(path: impl Into<PathBuf>, source: sqlx::Error) -> Self {
        BackupError::Database { path: path.into(), source }
    }

    /// True for failures that a later retry can fix (S3 unreachable, a busy database); false for
    /// ones that need a person (wrong key, tampering, bad settings).
    pub fn is_transient(&self) -> bool {
        matches!(self, BackupError::S3 { .. } | BackupError::Database { .. } | BackupError::Io { .. })
    }
}

/// The error with its whole `source` chain on one line (for status and logs).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}
