//! Continuous replication: a tokio task that snapshots the store when it changed and uploads the
//! changed chunks plus a manifest.

use crate::chain::{self, Read};
use crate::error::{BackupError, Result, chain as error_chain};
use crate::format::{self, Aad, ChunkEntry, FORMAT_VERSION, GenId, Manifest, ObjectCipher, ParentLink};
use crate::remote::{PARALLEL, Remote};
use crate::settings::BackupSettings;
use crate::snapshot::{DbReader, Snapshot};
use crewgate_core::{MasterKey, Millis, Purpose, now_millis};
use futures::StreamExt;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// A generation is also compacted once its uploads exceed `4 × database size + this`.
const COMPACTION_SLACK_BYTES: u64 = 256 * 1024 * 1024;
/// Retry backoff after a failed cycle: doubles from the first value up to the second.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long [`ReplicatorHandle::shutdown`] keeps retrying the final flush.
pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);
/// Generations without any manifest older than this are leftovers of an interrupted start.
const ABANDONED_AFTER_MS: i64 = 60 * 60 * 1000;

/// What `/api/v1/backup/status`, `/metrics` and `crewgate backup status` show.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BackupStatus {
    /// False once the replicator stopped (shutdown, or every handle dropped).
    pub running: bool,
    /// When the newest manifest was uploaded (unix ms).
    pub last_success_at: Option<Millis>,
    /// The most recent failure (kept after recovery; see `consecutive_failures`).
    pub last_error: Option<String>,
    pub last_error_at: Option<Millis>,
    /// Failed attempts since the last success; 0 means healthy.
    pub consecutive_failures: u32,
    /// Time since the oldest change that is not in S3 yet (0 when nothing is pending).
    #[serde(rename = "lag_ms", serialize_with = "as_millis")]
    pub lag: Duration,
    /// True while some committed change is not in S3 yet.
    pub pending: bool,
    /// Current generation id (None until its first manifest is uploaded).
    pub generation: Option<String>,
    /// Sequence number of the newest uploaded manifest of the current generation.
    pub sequence: Option<u64>,
    /// Bytes uploaded (encrypted chunks and manifests) since start.
    pub bytes_uploaded: u64,
    pub objects_uploaded: u64,
    /// Size of the last snapshot (= database size).
    pub db_bytes: u64,
    /// Time the last snapshot took to serialise and hash.
    #[serde(rename = "last_snapshot_ms", serialize_with = "as_millis")]
    pub last_snapshot: Duration,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Debug, Default)]
struct StatusInner {
    running: bool,
    last_success_at: Option<Millis>,
    last_error: Option<String>,
    last_error_at: Option<Millis>,
    consecutive_failures: u32,
    dirty_since: Option<Millis>,
    generation: Option<String>,
    sequence: Option<u64>,
    bytes_uploaded: u64,
    objects_uploaded: u64,
    db_bytes: u64,
    last_snapshot: Duration,
}

#[derive(Debug, Default)]
struct Shared {
    inner: Mutex<StatusInner>,
}

impl Shared {
    fn with<R>(&self, f: impl FnOnce(&mut StatusInner) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    fn status(&self) -> BackupStatus {
        self.with(|s| {
            let lag = s
                .dirty_since
                .map(|t| Duration::from_millis(u64::try_from(now_millis().saturating_sub(t)).unwrap_or(0)))
                .unwrap_or_default();
            BackupStatus {
                running: s.running,
                last_success_at: s.last_success_at,
                last_error: s.last_error.clone(),
                last_error_at: s.last_error_at,
                consecutive_failures: s.consecutive_failures,
                lag,
                pending: s.dirty_since.is_some(),
                generation: s.generation.clone(),
                sequence: s.sequence,
                bytes_uploaded: s.bytes_uploaded,
                objects_uploaded: s.objects_uploaded,
                db_bytes: s.db_bytes,
                last_snapshot: s.last_snapshot,
            }
        })
    }
}

enum Command {
    Flush(oneshot::Sender<Result<BackupStatus>>),
    Shutdown { deadline: Duration, reply: oneshot::Sender<Result<BackupStatus>> },
}

/// Starts continuous replication. See [`Replicator::start`].
#[derive(Debug)]
pub struct Replicator;

impl Replicator {
    /// Starts replicating the SQLite database at `db_path` (it must exist: open the store first).
    ///
    /// Returns at once: nothing here waits for S3, so an unreachable bucket never delays the
    /// gateway; the first upload (a new generation) happens in the background and failures show
    /// in [`ReplicatorHandle::status`]. Fails only on bad settings or an unreadable database.
    pub async fn start(
        db_path: impl AsRef<Path>,
        settings: BackupSettings,
        key: &MasterKey,
    ) -> Result<ReplicatorHandle> {
        let settings = settings.validated()?;
        let remote = Remote::new(&settings)?;
        let cipher = ObjectCipher::new(&key.derive(Purpose::Backup)?);
        let db = DbReader::open(db_path.as_ref()).await?;
        let shared = Arc::new(Shared::default());
        shared.with(|s| {
            s.running = true;
            s.dirty_since = Some(now_millis()); // the current state is not in this generation yet
        });
        let (tx, rx) = mpsc::channel(16);
        let worker = Worker {
            db,
            remote,
            cipher,
            settings,
            shared: shared.clone(),
            generation: None,
            seen_version: None,
            next_attempt: Instant::now(),
            backoff: BACKOFF_MIN,
            retention_pending: false,
        };
        tracing::info!(
            db = %db_path.as_ref().display(),
            location = %worker.remote.location(),
            interval_ms = worker.settings.interval.as_millis() as u64,
            "backup replication started"
        );
        let task = tokio::spawn(worker.run(rx));
        Ok(ReplicatorHandle { shared, tx, task: Arc::new(tokio::sync::Mutex::new(Some(task))) })
    }
}

/// Controls a running replicator. Cheap to clone; the replicator stops (without a final flush)
/// when every clone is dropped, so call [`ReplicatorHandle::shutdown`] on graceful shutdown.
#[derive(Clone)]
pub struct ReplicatorHandle {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Command>,
    task: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for ReplicatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatorHandle").field("status", &self.status()).finish()
    }
}

impl ReplicatorHandle {
    /// Current replication state; never blocks on S3.
    pub fn status(&self) -> BackupStatus {
        self.shared.status()
    }

    /// Uploads the latest committed state now (one attempt, with object_store's short internal
    /// retries) and returns the status after it. Used by `crewgate backup now`.
    pub async fn flush(&self) -> Result<BackupStatus> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Flush(reply)).await.map_err(|_closed| BackupError::Stopped)?;
        rx.await.map_err(|_dropped| BackupError::Stopped)?
    }

    /// Flushes (retrying for up to [`DEFAULT_SHUTDOWN_DEADLINE`]) and stops the replicator.
    pub async fn shutdown(&self) -> Result<BackupStatus> {
        self.shutdown_within(DEFAULT_SHUTDOWN_DEADLINE).await
    }

    /// Like [`Self::shutdown`], retrying the final flush for up to `deadline`. The replicator stops
    /// even when the flush fails; the error says what was not uploaded.
    pub async fn shutdown_within(&self, deadline: Duration) -> Result<BackupStatus> {
        let (reply, rx) = oneshot::channel();
        let sent = self.tx.send(Command::Shutdown { deadline, reply }).await;
        let result = match sent {
            Ok(()) => rx.await.map_err(|_dropped| BackupError::Stopped).and_then(|r| r),
            Err(_closed) => Err(BackupError::Stopped),
        };
        if let Some(task) = self.task.lock().await.take()
            && let Err(source) = task.await
        {
            return Err(BackupError::Task { source });
        }
        result
    }
}

/// What S3 holds for one chunk index of the current generation.
#[derive(Debug, Clone)]
struct Stored {
    sha: [u8; 32],
    object: String,
    len: u64,
}

struct Generation {
    id: GenId,
    started_at: Millis,
    created: Instant,
    next_seq: u64,
    /// SHA-256 of the stored bytes of manifest `next_seq - 1`.
    prev_hash: Option<[u8; 32]>,
    /// Per chunk index, as of the newest uploaded manifest.
    table: Vec<Stored>,
    image_len: u64,
    bytes: u64,
    parent: Option<ParentLink>,
    parent_resolved: bool,
    /// Chunks uploaded for manifest `next_seq` whose manifest is not uploaded yet (reused when
    /// the next attempt finds the same content, e.g. after an outage).
    staged: HashMap<usize, Stored>,
}

struct Worker {
    db: DbReader,
    remote: Remote,
    cipher: ObjectCipher,
    settings: BackupSettings,
    shared: Arc<Shared>,
    generation: Option<Generation>,
    seen_version: Option<i64>,
    next_attempt: Instant,
    backoff: Duration,
    retention_pending: bool,
}

enum Cycle {
    Uploaded { sequence: u64, bytes: u64 },
    Unchanged,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let poll = (self.settings.interval / 4).clamp(Duration::from_millis(20), Duration::from_millis(250));
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => {
                        tracing::info!("every backup handle was dropped; replication stops without a final flush");
                        break;
                    }
                    Some(Command::Flush(reply)) => {
                        let r = self.attempt().await.map(|_| self.shared.status());
                        let _ignored = reply.send(r);
                    }
                    Some(Command::Shutdown { deadline, reply }) => {
                        let r = self.flush_until(deadline).await;
                        let _ignored = reply.send(r);
                        break;
                    }
                },
                () = tokio::time::sleep(poll) => {}
            }
            self.observe().await;
            if self.is_due() {
                let _logged = self.attempt().await;
            }
        }
        self.shared.with(|s| s.running = false);
        if let Err(e) = self.db.close().await {
            tracing::debug!(error = %error_chain(&e), "closing the backup reader connection failed");
        }
    }

    /// Notices commits by other connections (cheap: one pragma).
    async fn observe(&mut self) {
        match self.db.data_version().await {
            Ok(v) => {
                if self.seen_version != Some(v) {
                    self.seen_version = Some(v);
                    self.shared.with(|s| {
                        s.dirty_since.get_or_insert_with(now_millis);
                    });
                }
            }
            Err(e) => self.record_failure(&e),
        }
    }

    fn is_due(&self) -> bool {
        self.shared.with(|s| s.dirty_since.is_some()) && Instant::now() >= self.next_attempt
    }

    async fn flush_until(&mut self, deadline: Duration) -> Result<BackupStatus> {
        let until = Instant::now() + deadline;
        loop {
            match self.attempt().await {
                Ok(()) => return Ok(self.shared.status()),
                Err(e) if e.is_transient() && Instant::now() + self.backoff < until => {
                    tokio::time::sleep(self.backoff).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One snapshot-and-upload attempt, with status bookkeeping and backoff.
    async fn attempt(&mut self) -> Result<()> {
        let started = Instant::now();
        match self.cycle().await {
            Ok(outcome) => {
                let recovered = self.shared.with(|s| std::mem::take(&mut s.consecutive_failures));
                if recovered > 0 {
                    tracing::info!(failed_attempts = recovered, "backup replication recovered");
                }
                if let Cycle::Uploaded { sequence, bytes } = outcome {
                    tracing::debug!(
                        sequence,
                        bytes,
                        took_ms = started.elapsed().as_millis() as u64,
                        "backup uploaded"
                    );
                }
                self.backoff = BACKOFF_MIN;
                self.next_attempt = started + self.settings.interval;
                if self.retention_pending {
                    match self.enforce_retention().await {
                        Ok(()) => self.retention_pending = false,
                        Err(e) => {
                            tracing::warn!(error = %error_chain(&e), "backup retention failed; will retry")
                        }
                    }
                }
                Ok(())
            }
            Err(e) => {
                self.record_failure(&e);
                self.next_attempt = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                Err(e)
            }
        }
    }

    fn record_failure(&self, e: &BackupError) {
        let text = error_chain(e);
        let failures = self.shared.with(|s| {
            s.last_error = Some(text.clone());
            s.last_error_at = Some(now_millis());
            s.consecutive_failures = s.consecutive_failures.saturating_add(1);
            s.consecutive_failures
        });
        tracing::warn!(error = %text, failed_attempts = failures, "backup replication attempt failed; retrying");
    }

    fn rollover_reason(&self, snap: &Snapshot) -> Option<&'static str> {
        let g = match &self.generation {
            None => return Some("start"),
            Some(g) if g.next_seq == 0 => return None,
            Some(g) => g,
        };
        if g.next_seq >= self.settings.max_generation_manifests {
            Some("compaction: manifest limit")
        } else if g.bytes >= snap.len().saturating_mul(4).saturating_add(COMPACTION_SLACK_BYTES) {
            Some("compaction: upload volume")
        } else if g.created.elapsed() >= self.settings.max_generation_age {
            Some("compaction: age")
        } else {
            None
        }
    }

    async fn cycle(&mut self) -> Result<Cycle> {
        let version = self.db.data_version().await?;
        let taken_at = now_millis();
        let snap = self.db.snapshot(self.settings.chunk_size).await?;
        self.shared.with(|s| {
            s.db_bytes = snap.len();
            s.last_snapshot = snap.took;
        });

        if let Some(reason) = self.rollover_reason(&snap) {
            let parent = self.generation.as_ref().and_then(|g| {
                let seq = g.next_seq.checked_sub(1)?;
                Some(ParentLink {
                    generation: g.id.to_string(),
                    sequence: seq,
                    manifest_sha256: hex::encode(g.prev_hash?),
                })
            });
            let id = GenId::random();
            tracing::info!(generation = %id, reason, db_bytes = snap.len(), "starting a new backup generation");
            self.generation = Some(Generation {
                id,
                started_at: taken_at,
                created: Instant::now(),
                next_seq: 0,
                prev_hash: None,
                table: Vec::new(),
                image_len: 0,
                bytes: 0,
                parent_resolved: parent.is_some(),
                parent,
                staged: HashMap::new(),
            });
        }
        let Some(generation) = self.generation.as_ref() else {
            return Err(BackupError::Stopped);
        };
        if !generation.parent_resolved {
            let parent = self.discover_parent(generation.id).await?;
            if let Some(g) = self.generation.as_mut() {
                g.parent = parent;
                g.parent_resolved = true;
            }
        }
        let Some(g) = self.generation.as_mut() else {
            return Err(BackupError::Stopped);
        };
        let (gen_id, seq) = (g.id, g.next_seq);

        // Which chunks differ from what S3 has (hash comparison; unchanged chunks cost nothing more).
        let mut changed: Vec<usize> = Vec::new();
        let mut to_upload: Vec<usize> = Vec::new();
        for (i, (sha, _)) in snap.hashes.iter().enumerate() {
            let len = snap.chunk(i).len() as u64;
            if g.table.get(i).is_some_and(|s| s.sha == *sha && s.len == len) {
                continue;
            }
            changed.push(i);
            if !g.staged.get(&i).is_some_and(|s| s.sha == *sha && s.len == len) {
                to_upload.push(i);
            }
        }
        if changed.is_empty() && seq > 0 && snap.len() == g.image_len {
            self.mark_replicated(version).await;
            return Ok(Cycle::Unchanged);
        }

        // Upload changed chunks (in parallel); successful ones are staged even if others fail.
        let (remote, cipher, snap_ref) = (&self.remote, &self.cipher, &snap);
        let results: Vec<Result<(usize, Stored, u64)>> = futures::stream::iter(to_upload)
            .map(|i| async move {
                let data = snap_ref.chunk(i);
                let object = format::random_object_name();
                let aad = Aad::Chunk { generation: gen_id, sequence: seq, index: i as u64 };
                let sealed = cipher.seal(aad, data).ok_or(BackupError::Encrypt)?;
                let size = sealed.len() as u64;
                remote.put(&remote.chunk_path(gen_id, &object), sealed).await?;
                Ok((i, Stored { sha: snap_ref.hashes[i].0, object, len: data.len() as u64 }, size))
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        let mut uploaded = 0u64;
        let mut objects = 0u64;
        let mut first_err = None;
        for r in results {
            match r {
                Ok((i, stored, size)) => {
                    g.staged.insert(i, stored);
                    uploaded += size;
                    objects += 1;
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        g.bytes += uploaded;
        self.shared.with(|s| {
            s.bytes_uploaded += uploaded;
            s.objects_uploaded += objects;
        });
        if let Some(e) = first_err {
            return Err(e);
        }

        let mut chunks = Vec::with_capacity(changed.len());
        for &i in &changed {
            let s = g.staged.get(&i).ok_or(BackupError::Stopped)?;
            chunks.push(ChunkEntry {
                index: i as u64,
                object: s.object.clone(),
                len: s.len,
                sha256: hex::encode(s.sha),
            });
        }
        let manifest = Manifest {
            format: FORMAT_VERSION,
            generation: gen_id.to_string(),
            sequence: seq,
            generation_started_at: g.started_at,
            taken_at,
            prev_manifest_sha256: g.prev_hash.map(hex::encode),
            parent: if seq == 0 { g.parent.clone() } else { None },
            chunk_size: self.settings.chunk_size as u64,
            image_len: snap.len(),
            image_fingerprint: hex::encode(snap.fingerprint),
            chunks,
        };
        let plain = serde_json::to_vec(&manifest).map_err(|source| BackupError::Encode { source })?;
        let sealed = self
            .cipher
            .seal(Aad::Manifest { generation: gen_id, sequence: seq }, &plain)
            .ok_or(BackupError::Encrypt)?;
        let manifest_hash = format::sha256(&sealed);
        let manifest_size = sealed.len() as u64;
        self.remote.put(&self.remote.manifest_path(gen_id, seq), sealed).await?;

        // Committed: S3 now holds state `seq`.
        let chunk_count = snap.hashes.len();
        for i in changed {
            if let Some(s) = g.staged.remove(&i) {
                if i < g.table.len() {
                    g.table[i] = s;
                } else {
                    g.table.push(s);
                }
            }
        }
        g.table.truncate(chunk_count);
        g.staged.clear();
        g.prev_hash = Some(manifest_hash);
        g.next_seq = seq + 1;
        g.image_len = snap.len();
        g.bytes += manifest_size;
        if seq == 0 {
            self.retention_pending = true;
        }
        let gen_name = gen_id.to_string();
        self.shared.with(|s| {
            s.bytes_uploaded += manifest_size;
            s.objects_uploaded += 1;
            s.generation = Some(gen_name);
            s.sequence = Some(seq);
        });
        self.mark_replicated(version).await;
        Ok(Cycle::Uploaded { sequence: seq, bytes: uploaded + manifest_size })
    }

    /// The state read at `version` is in S3; anything committed since is still pending.
    async fn mark_replicated(&mut self, version: i64) {
        let now_version = self.db.data_version().await.ok();
        self.seen_version = now_version.or(Some(version));
        let still_dirty = now_version.is_some_and(|v| v != version);
        let now = now_millis();
        self.shared.with(|s| {
            s.last_success_at = Some(now);
            s.dirty_since = if still_dirty { Some(now) } else { None };
        });
    }

    /// The newest manifest of the newest readable generation already in the bucket: the state a
    /// new generation continues from.
    async fn discover_parent(&self, current: GenId) -> Result<Option<ParentLink>> {
        let layout = self.remote.list().await?;
        let mut newest: Option<(Millis, GenId, u64)> = None;
        for (&generation, objects) in &layout.generations {
            let Some(&last) = objects.manifests.keys().next_back() else { continue };
            if generation == current {
                continue;
            }
            match readable_manifest(&self.remote, &self.cipher, generation, 0).await? {
                Some((manifest, _)) => {
                    if newest.is_none_or(|(t, _, _)| manifest.generation_started_at > t) {
                        newest = Some((manifest.generation_started_at, generation, last));
                    }
                }
                None => {
                    tracing::warn!(generation = %generation, "an existing backup generation is not readable with this MASTER_KEY; leaving it alone");
                }
            }
        }
        let Some((_, generation, last)) = newest else { return Ok(None) };
        Ok(readable_manifest(&self.remote, &self.cipher, generation, last).await?.map(
            |(_, object_sha256)| ParentLink {
                generation: generation.to_string(),
                sequence: last,
                manifest_sha256: hex::encode(object_sha256),
            },
        ))
    }

    /// Keeps the newest `retain_generations` readable generations (the current one included) and
    /// deletes the rest. Generations this key cannot read are never deleted.
    async fn enforce_retention(&self) -> Result<()> {
        let Some(current) = self.generation.as_ref().filter(|g| g.next_seq > 0) else {
            return Ok(());
        };
        let layout = self.remote.list().await?;
        let now = now_millis();
        let mut readable: Vec<(Millis, GenId)> = Vec::new();
        for (&generation, objects) in &layout.generations {
            if generation == current.id {
                continue;
            }
            if objects.manifests.is_empty() {
                if objects.newest_modified_ms < now - ABANDONED_AFTER_MS {
                    let n = self.remote.delete_all(objects.all_paths().cloned().collect()).await?;
                    tracing::info!(generation = %generation, objects = n, "deleted an abandoned backup generation (no manifest)");
                }
                continue;
            }
            match readable_manifest(&self.remote, &self.cipher, generation, 0).await? {
                Some((manifest, _)) => readable.push((manifest.generation_started_at, generation)),
                None => {
                    tracing::warn!(generation = %generation, "backup generation not readable with this MASTER_KEY; not deleting it");
                }
            }
        }
        readable.sort_by(|a, b| b.cmp(a));
        let keep_others = self.settings.retain_generations.saturating_sub(1);
        for (_, generation) in readable.into_iter().skip(keep_others) {
            let Some(objects) = layout.generations.get(&generation) else { continue };
            // Manifest 0 last: an interrupted deletion leaves a generation that is still
            // recognised (and finished by the next pass).
            let first = self.remote.manifest_path(generation, 0);
            let rest: Vec<_> = objects.all_paths().filter(|p| **p != first).cloned().collect();
            let n = self.remote.delete_all(rest).await? + self.remote.delete_all(vec![first]).await?;
            tracing::info!(generation = %generation, objects = n, "deleted a backup generation beyond retention");
        }
        Ok(())
    }
}

/// A manifest that opens and parses, `None` when it is missing or unreadable (another key, damage,
/// a newer format): such generations are left alone instead of stopping replication. Only S3
/// failures are errors (retried).
async fn readable_manifest(
    remote: &Remote,
    cipher: &ObjectCipher,
    generation: GenId,
    seq: u64,
) -> Result<Option<(Manifest, [u8; 32])>> {
    match chain::read_manifest(remote, cipher, generation, seq).await {
        Ok(Read::Ok { manifest, object_sha256 }) => Ok(Some((*manifest, object_sha256))),
        Ok(Read::Missing | Read::Unreadable { .. }) => Ok(None),
        Err(e) if e.is_transient() => Err(e),
        Err(e) => {
            tracing::warn!(generation = %generation, error = %error_chain(&e), "skipping an unreadable backup manifest");
            Ok(None)
        }
    }
}
