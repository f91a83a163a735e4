//! Consistent snapshots of a live SQLite database.
//!
//! `sqlite3_serialize` (through sqlx) copies every page through SQLite's pager inside one read
//! transaction, so the image is exactly the committed state at one instant (WAL frames included),
//! while writers carry on (WAL readers never block writers). Page numbers stay put between
//! snapshots, unlike `VACUUM INTO`, which renumbers pages and so would make every later chunk
//! look changed.

use crate::error::{BackupError, Result};
use crate::format;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An image of the database plus per-chunk hashes.
pub(crate) struct Snapshot {
    pub image: sqlx::sqlite::SqliteOwnedBuf,
    pub chunk_size: usize,
    /// `(raw, normalized)` SHA-256 per chunk.
    pub hashes: Vec<([u8; 32], [u8; 32])>,
    pub fingerprint: [u8; 32],
    /// Time spent serialising and hashing (for logs and status).
    pub took: Duration,
}

impl Snapshot {
    pub fn len(&self) -> u64 {
        self.image.len() as u64
    }

    pub fn chunk(&self, index: usize) -> &[u8] {
        let start = index.saturating_mul(self.chunk_size).min(self.image.len());
        let end = start.saturating_add(self.chunk_size).min(self.image.len());
        &self.image[start..end]
    }
}

/// A connection used only to read `path` (never writes; never creates the file).
pub(crate) struct DbReader {
    path: PathBuf,
    conn: SqliteConnection,
}

impl DbReader {
    pub async fn open(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(BackupError::DatabaseMissing { path: path.to_path_buf() });
        }
        // No journal_mode pragma: the reader follows whatever the file uses and changes nothing.
        let conn = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(false)
            .connect()
            .await
            .map_err(|e| BackupError::db(path, e))?;
        Ok(Self { path: path.to_path_buf(), conn })
    }

    /// SQLite's `PRAGMA data_version`: changes whenever another connection commits. Cheap.
    pub async fn data_version(&mut self) -> Result<i64> {
        sqlx::query_scalar::<_, i64>("PRAGMA data_version")
            .fetch_one(&mut self.conn)
            .await
            .map_err(|e| BackupError::db(&self.path, e))
    }

    pub async fn snapshot(&mut self, chunk_size: usize) -> Result<Snapshot> {
        let started = std::time::Instant::now();
        let image = self.conn.serialize(None).await.map_err(|e| BackupError::db(&self.path, e))?;
        // Hashing 100 MB takes tens of milliseconds: keep it off the async worker threads.
        let (image, hashes) = tokio::task::spawn_blocking(move || {
            let hashes = format::hash_chunks(&image, chunk_size);
            (image, hashes)
        })
        .await
        .map_err(|source| BackupError::Task { source })?;
        let normalized: Vec<[u8; 32]> = hashes.iter().map(|(_, n)| *n).collect();
        let fingerprint = format::fingerprint(chunk_size as u64, image.len() as u64, &normalized);
        Ok(Snapshot { image, chunk_size, hashes, fingerprint, took: started.elapsed() })
    }

    /// `PRAGMA integrity_check`: `Ok(())` or the first problems SQLite reports.
    pub async fn integrity_check(&mut self) -> Result<Result<(), String>> {
        let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check(20)")
            .fetch_all(&mut self.conn)
            .await
            .map_err(|e| BackupError::db(&self.path, e))?;
        if rows.len() == 1 && rows[0] == "ok" { Ok(Ok(())) } else { Ok(Err(rows.join("; "))) }
    }

    pub async fn close(self) -> Result<()> {
        self.conn.close().await.map_err(|e| BackupError::db(&self.path, e))
    }
}
