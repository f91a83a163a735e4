//! Listing backups and restoring them, verified end to end, into a temp file that is renamed
//! into place only when everything checked out.

use crate::chain::{self, Link};
use crate::error::{BackupError, Result};
use crate::format::{self, Aad, ChunkEntry, GenId, ObjectCipher};
use crate::remote::{PARALLEL, Remote};
use crate::settings::BackupSettings;
use crate::snapshot::DbReader;
use crate::time::format_millis;
use crewgate_core::{MasterKey, Millis, Purpose};
use futures::StreamExt;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// The store's file name inside the data dir.
pub const DB_FILE_NAME: &str = "crewgate.db";

/// One generation in the bucket.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GenerationInfo {
    pub id: String,
    /// When the generation's first snapshot was taken (unix ms); 0 when unreadable.
    pub started_at: Millis,
    /// Manifests (restorable points) listed in the bucket.
    pub manifests: u64,
    /// Time of the newest manifest (unix ms).
    pub newest_at: Millis,
    pub newest_sequence: u64,
    /// Bytes stored for this generation (encrypted).
    pub bytes: u64,
    /// The generation this one continued from, if known.
    pub parent: Option<String>,
    /// Set when the generation cannot be read with this key or is damaged.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RestoreReport {
    pub generation: String,
    pub sequence: u64,
    /// Time of the restored snapshot (unix ms).
    pub taken_at: Millis,
    /// Size of the restored database.
    pub bytes: u64,
    pub chunks: u64,
    pub manifests_verified: u64,
    pub target: PathBuf,
    /// True when an existing (older) database file was replaced.
    pub replaced_existing: bool,
    pub took_ms: u64,
}

/// The generations in the bucket, newest first.
pub async fn list_backups(settings: &BackupSettings, key: &MasterKey) -> Result<Vec<GenerationInfo>> {
    let remote = Remote::new(settings)?;
    let cipher = ObjectCipher::new(&key.derive(Purpose::Backup)?);
    let heads = match chain::load_heads(&remote, &cipher, false).await {
        Ok(h) => h,
        Err(BackupError::NoBackups { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for (generation, m0) in &heads.heads {
        let Some(objects) = heads.layout.generations.get(generation) else { continue };
        let (newest_sequence, newest_at, problem) = match objects.manifests.keys().next_back() {
            Some(&last) => match chain::read_manifest(&remote, &cipher, *generation, last).await? {
                chain::Read::Ok { manifest, .. } => (last, manifest.taken_at, None),
                _ => (last, m0.taken_at, Some(format!("newest manifest {last} does not verify"))),
            },
            None => (0, m0.taken_at, None),
        };
        out.push(GenerationInfo {
            id: generation.to_string(),
            started_at: m0.generation_started_at,
            manifests: objects.manifests.len() as u64,
            newest_at,
            newest_sequence,
            bytes: objects.bytes,
            parent: m0.parent.as_ref().map(|p| p.generation.clone()),
            problem,
        });
    }
    for (generation, err) in heads.unreadable {
        let objects = heads.layout.generations.get(&generation);
        out.push(GenerationInfo {
            id: generation.to_string(),
            started_at: 0,
            manifests: objects.map_or(0, |o| o.manifests.len() as u64),
            newest_at: objects.map_or(0, |o| o.newest_modified_ms),
            newest_sequence: objects.and_then(|o| o.manifests.keys().next_back().copied()).unwrap_or(0),
            bytes: objects.map_or(0, |o| o.bytes),
            parent: None,
            problem: Some(err.to_string()),
        });
    }
    out.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.newest_at.cmp(&a.newest_at)));
    Ok(out)
}

/// Restores the gateway's store on start: only when `<data_dir>/crewgate.db` does not exist and
/// the bucket holds a backup. `Ok(None)` means "start fresh". An `Err` (S3 unreachable, wrong key,
/// tampering) must stop the start: starting empty would begin a new, empty backup generation.
pub async fn restore_if_empty(
    data_dir: &Path,
    settings: &BackupSettings,
    key: &MasterKey,
) -> Result<Option<RestoreReport>> {
    let target = data_dir.join(DB_FILE_NAME);
    if std::fs::symlink_metadata(&target).is_ok() {
        tracing::debug!(db = %target.display(), "store exists; no restore");
        return Ok(None);
    }
    match restore(settings, key, &target, None).await {
        Ok(report) => Ok(Some(report)),
        Err(BackupError::NoBackups { location }) => {
            tracing::info!(location = %location, "no backup found; starting with an empty store");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Restores the newest backup state (or the newest at or before `at`, unix ms) into `target`.
///
/// Every manifest of the chosen generation and every chunk of the restored state is verified
/// (AEAD under its own name, chain of manifest hashes, content hashes, image fingerprint, SQLite
/// integrity check) before `target` is replaced atomically. `target` is only replaced when it does
/// not exist, is empty, or holds exactly a state recorded in the backup at or before the restore
/// point (so nothing local can be lost); otherwise [`BackupError::TargetNotOlder`].
/// Stop the gateway that uses `target` first.
pub async fn restore(
    settings: &BackupSettings,
    key: &MasterKey,
    target: &Path,
    at: Option<Millis>,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let remote = Remote::new(settings)?;
    let cipher = ObjectCipher::new(&key.derive(Purpose::Backup)?);
    let heads = chain::load_heads(&remote, &cipher, true).await?;

    let chosen = match at {
        None => heads.heads.last(),
        Some(t) => heads.heads.iter().rev().find(|(_, m0)| m0.generation_started_at <= t),
    };
    let Some((generation, _)) = chosen else {
        let oldest = heads.heads.first().map_or(0, |(_, m)| m.generation_started_at);
        return Err(BackupError::NothingBefore {
            at: at.map(format_millis).unwrap_or_default(),
            oldest: format_millis(oldest),
        });
    };
    let generation = *generation;
    let objects = heads
        .layout
        .generations
        .get(&generation)
        .ok_or_else(|| BackupError::MissingManifest { generation: generation.to_string(), sequence: 0 })?;
    let chain = chain::load_chain(&remote, &cipher, generation, objects).await?;
    check_not_truncated(generation, &chain, &heads.heads)?;

    let point = match at {
        None => chain.len().checked_sub(1),
        Some(t) => chain.iter().rposition(|l| l.manifest.taken_at <= t),
    };
    let Some(point) = point else {
        return Err(BackupError::NothingBefore {
            at: at.map(format_millis).unwrap_or_default(),
            oldest: chain.first().map_or_else(String::new, |l| format_millis(l.manifest.taken_at)),
        });
    };
    let head = &chain[point].manifest;
    let table = replay(generation, &chain[..=point])?;
    for (i, (entry, _)) in table.iter().enumerate() {
        if !objects.chunks.contains_key(&entry.object) {
            return Err(BackupError::MissingChunk {
                generation: generation.to_string(),
                object: remote.chunk_path(generation, &entry.object).to_string(),
                index: i as u64,
            });
        }
    }

    let target_state = inspect_target(target).await?;
    if let TargetState::Existing { ref fingerprints, .. } = target_state {
        let ok = target_is_older(
            &remote,
            &cipher,
            &heads,
            generation,
            &chain[..=point],
            fingerprints,
            head.taken_at,
        )
        .await?;
        if !ok {
            return Err(BackupError::TargetNotOlder {
                path: target.to_path_buf(),
                reason: format!(
                    "it holds state that the backup does not contain at or before {} (it may have newer changes)",
                    format_millis(head.taken_at)
                ),
            });
        }
    }

    tracing::info!(
        target = %target.display(),
        generation = %generation,
        sequence = head.sequence,
        taken_at = %format_millis(head.taken_at),
        bytes = head.image_len,
        chunks = table.len(),
        manifests_verified = chain.len(),
        "restoring the store from backup"
    );
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(parent).await.map_err(|e| BackupError::io(parent, e))?;
    let temp = TempFile::new(target);
    let download_started = Instant::now();
    download(&remote, &cipher, generation, head, &table, temp.path()).await?;
    let download_ms = download_started.elapsed().as_millis() as u64;
    let check_started = Instant::now();

    // SQLite's own check of the assembled file.
    let mut reader = DbReader::open(temp.path()).await?;
    let checked = reader.integrity_check().await;
    reader.close().await?;
    if let Err(detail) = checked? {
        return Err(BackupError::Corrupt { detail });
    }
    let check_ms = check_started.elapsed().as_millis() as u64;

    // Swap in, unless the target changed while we worked.
    let replaced_existing = matches!(target_state, TargetState::Existing { .. });
    if inspect_stamp(target) != target_state.stamp() {
        return Err(BackupError::TargetNotOlder {
            path: target.to_path_buf(),
            reason: "it changed while the restore ran".into(),
        });
    }
    for suffix in ["-wal", "-shm", "-journal"] {
        let side = sidecar(target, suffix);
        match tokio::fs::remove_file(&side).await {
            Ok(()) => {
                tracing::info!(file = %side.display(), "removed a stale SQLite side file before restoring")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BackupError::io(side, e)),
        }
    }
    temp.persist(target).await?;

    let report = RestoreReport {
        generation: generation.to_string(),
        sequence: head.sequence,
        taken_at: head.taken_at,
        bytes: head.image_len,
        chunks: table.len() as u64,
        manifests_verified: chain.len() as u64,
        target: target.to_path_buf(),
        replaced_existing,
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    tracing::info!(
        target = %target.display(),
        bytes = report.bytes,
        chunks = report.chunks,
        took_ms = report.took_ms,
        download_ms,
        check_ms,
        "restore complete"
    );
    Ok(report)
}

/// A later generation that continued from `generation` names the manifest it continued from;
/// if this generation now ends before it, its newest manifests were deleted.
fn check_not_truncated(generation: GenId, chain: &[Link], heads: &[(GenId, format::Manifest)]) -> Result<()> {
    let name = generation.to_string();
    for (_, m0) in heads {
        let Some(p) = m0.parent.as_ref().filter(|p| p.generation == name) else { continue };
        match chain.get(usize::try_from(p.sequence).unwrap_or(usize::MAX)) {
            None => {
                return Err(BackupError::Truncated {
                    generation: name,
                    have: chain.len().saturating_sub(1) as u64,
                    expected: p.sequence,
                });
            }
            Some(link) if hex::encode(link.object_sha256) != p.manifest_sha256 => {
                return Err(BackupError::ChainBroken {
                    generation: name,
                    sequence: p.sequence,
                    detail: format!(
                        "generation {} continued from a different manifest {}",
                        m0.generation, p.sequence
                    ),
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Applies manifests 0..=point: chunk index → (entry, sequence that wrote it).
fn replay(generation: GenId, chain: &[Link]) -> Result<Vec<(ChunkEntry, u64)>> {
    let mut table: Vec<Option<(ChunkEntry, u64)>> = Vec::new();
    let mut last = None;
    for link in chain {
        let m = &link.manifest;
        let count = usize::try_from(m.image_len.div_ceil(m.chunk_size)).unwrap_or(usize::MAX);
        table.resize(count, None);
        for e in &m.chunks {
            if let Some(slot) = usize::try_from(e.index).ok().and_then(|i| table.get_mut(i)) {
                *slot = Some((e.clone(), m.sequence));
            }
        }
        last = Some(m);
    }
    let Some(m) = last else {
        return Err(BackupError::MissingManifest { generation: generation.to_string(), sequence: 0 });
    };
    table
        .into_iter()
        .enumerate()
        .map(|(i, slot)| {
            let expected = m.image_len.saturating_sub(i as u64 * m.chunk_size).min(m.chunk_size);
            match slot {
                Some((e, seq)) if e.len == expected => Ok((e, seq)),
                _ => Err(BackupError::ChainBroken {
                    generation: generation.to_string(),
                    sequence: m.sequence,
                    detail: format!("chunk {i} is not described consistently by the manifests"),
                }),
            }
        })
        .collect()
}

async fn download(
    remote: &Remote,
    cipher: &ObjectCipher,
    generation: GenId,
    head: &format::Manifest,
    table: &[(ChunkEntry, u64)],
    path: &Path,
) -> Result<()> {
    let mut file = tokio::fs::File::create(path).await.map_err(|e| BackupError::io(path, e))?;
    let total = table.len();
    let mut normalized = Vec::with_capacity(total);
    let mut written = 0u64;
    let mut last_log = Instant::now();
    let mut fetches = futures::stream::iter(table.iter().enumerate())
        .map(|(i, (entry, seq))| async move {
            let object = remote.chunk_path(generation, &entry.object);
            let Some(sealed) = remote.get(&object).await? else {
                return Err(BackupError::MissingChunk {
                    generation: generation.to_string(),
                    object: object.to_string(),
                    index: i as u64,
                });
            };
            let aad = Aad::Chunk { generation, sequence: *seq, index: i as u64 };
            let plain = cipher.open(aad, &sealed).map_err(|why| BackupError::Tampered {
                object: object.to_string(),
                detail: match why {
                    format::OpenError::Format => "not a crewgate backup object, or truncated".into(),
                    format::OpenError::Auth => "authentication failed".into(),
                },
            })?;
            let raw = format::sha256(&plain);
            if plain.len() as u64 != entry.len || hex::encode(raw) != entry.sha256 {
                return Err(BackupError::Tampered {
                    object: object.to_string(),
                    detail: "its content does not match the manifest".into(),
                });
            }
            Ok((i, plain, raw))
        })
        .buffered(PARALLEL);
    while let Some(next) = fetches.next().await {
        let (i, plain, raw) = next?;
        normalized.push(format::normalized_chunk_hash(i, &plain, raw));
        file.write_all(&plain).await.map_err(|e| BackupError::io(path, e))?;
        written += plain.len() as u64;
        if last_log.elapsed().as_secs() >= 2 || i + 1 == total {
            last_log = Instant::now();
            tracing::info!(
                chunks = i + 1,
                of = total,
                bytes = written,
                total_bytes = head.image_len,
                "restore progress"
            );
        }
    }
    let fingerprint = format::fingerprint(head.chunk_size, written, &normalized);
    if written != head.image_len || hex::encode(fingerprint) != head.image_fingerprint {
        return Err(BackupError::ChainBroken {
            generation: generation.to_string(),
            sequence: head.sequence,
            detail: "the assembled database does not match the manifest's fingerprint".into(),
        });
    }
    // The snapshot is a WAL-mode image; mark it as a rollback-journal database so it opens on its
    // own (no -wal file belongs to it). The store switches it back to WAL when it opens it.
    if written >= 20 {
        file.seek(std::io::SeekFrom::Start(18)).await.map_err(|e| BackupError::io(path, e))?;
        file.write_all(&[1, 1]).await.map_err(|e| BackupError::io(path, e))?;
    }
    file.flush().await.map_err(|e| BackupError::io(path, e))?;
    file.sync_all().await.map_err(|e| BackupError::io(path, e))?;
    Ok(())
}

/// Size and modification time of a file, to notice a change between check and swap.
type Stamp = Option<(u64, Option<SystemTime>)>;

fn inspect_stamp(path: &Path) -> Stamp {
    std::fs::metadata(path).ok().map(|m| (m.len(), m.modified().ok()))
}

enum TargetState {
    Absent,
    Empty(Stamp),
    /// Fingerprints per chunk size in use by the backup (computed lazily from the image).
    Existing {
        stamp: Stamp,
        fingerprints: TargetImage,
    },
}

impl TargetState {
    fn stamp(&self) -> Stamp {
        match self {
            TargetState::Absent => None,
            TargetState::Empty(s) | TargetState::Existing { stamp: s, .. } => *s,
        }
    }
}

/// The target database's image, to compare with backup fingerprints.
struct TargetImage {
    image: Vec<u8>,
}

impl TargetImage {
    fn fingerprint(&self, chunk_size: u64) -> String {
        let size = usize::try_from(chunk_size).unwrap_or(usize::MAX).max(1);
        let normalized: Vec<[u8; 32]> =
            format::hash_chunks(&self.image, size).into_iter().map(|(_, n)| n).collect();
        hex::encode(format::fingerprint(chunk_size, self.image.len() as u64, &normalized))
    }
}

async fn inspect_target(target: &Path) -> Result<TargetState> {
    let meta = match tokio::fs::metadata(target).await {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TargetState::Absent),
        Err(e) => return Err(BackupError::io(target, e)),
    };
    let stamp = Some((meta.len(), meta.modified().ok()));
    if meta.len() == 0 {
        return Ok(TargetState::Empty(stamp));
    }
    let not_db = |e: BackupError| BackupError::TargetNotOlder {
        path: target.to_path_buf(),
        reason: format!("it exists and could not be read as a SQLite database ({e})"),
    };
    let mut reader = DbReader::open(target).await.map_err(not_db)?;
    let snap = reader.snapshot(crate::settings::DEFAULT_CHUNK_SIZE).await;
    reader.close().await?;
    let snap = snap.map_err(not_db)?;
    // Opening may have recovered a WAL; stamp after that.
    let stamp = inspect_stamp(target);
    Ok(TargetState::Existing { stamp, fingerprints: TargetImage { image: snap.image.to_vec() } })
}

/// True when the target's content equals a state the backup recorded at or before `point_at`.
async fn target_is_older(
    remote: &Remote,
    cipher: &ObjectCipher,
    heads: &chain::Heads,
    chosen: GenId,
    chosen_chain: &[Link],
    target: &TargetImage,
    point_at: Millis,
) -> Result<bool> {
    let matches = |links: &[Link]| {
        links.iter().any(|l| {
            l.manifest.taken_at <= point_at
                && target.fingerprint(l.manifest.chunk_size) == l.manifest.image_fingerprint
        })
    };
    if matches(chosen_chain) {
        return Ok(true);
    }
    for (generation, m0) in heads.heads.iter().rev() {
        if *generation == chosen || m0.generation_started_at > point_at {
            continue;
        }
        let Some(objects) = heads.layout.generations.get(generation) else { continue };
        let links = chain::load_chain(remote, cipher, *generation, objects).await?;
        if matches(&links) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn sidecar(target: &Path, suffix: &str) -> PathBuf {
    let mut name = target.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    target.with_file_name(name)
}

/// A temp file next to the target, removed on drop unless persisted.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    fn new(target: &Path) -> Self {
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let path = target.with_file_name(format!(".{name}.restore-{}.tmp", format::random_object_name()));
        Self { path, keep: false }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    async fn persist(mut self, target: &Path) -> Result<()> {
        tokio::fs::rename(&self.path, target).await.map_err(|e| BackupError::io(target, e))?;
        self.keep = true;
        if let Some(dir) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Make the rename durable.
            let dir = dir.to_path_buf();
            let synced =
                tokio::task::spawn_blocking(move || std::fs::File::open(&dir).and_then(|d| d.sync_all()))
                    .await;
            if let Ok(Err(e)) = synced {
                tracing::warn!(error = %e, "could not sync the data directory after restore");
            }
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let p = sidecar(&self.path, suffix);
                if let Err(e) = std::fs::remove_file(&p)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(file = %p.display(), error = %e, "could not remove a restore temp file");
                }
            }
        }
    }
}

/// Test and support hook: the S3 keys of the chunks that make up the newest state of the newest
/// generation (what a restore downloads).
#[doc(hidden)]
pub async fn live_chunk_keys(settings: &BackupSettings, key: &MasterKey) -> Result<Vec<String>> {
    let remote = Remote::new(settings)?;
    let cipher = ObjectCipher::new(&key.derive(Purpose::Backup)?);
    let heads = chain::load_heads(&remote, &cipher, true).await?;
    let Some((generation, _)) = heads.heads.last() else { return Ok(Vec::new()) };
    let Some(objects) = heads.layout.generations.get(generation) else { return Ok(Vec::new()) };
    let links = chain::load_chain(&remote, &cipher, *generation, objects).await?;
    let table = replay(*generation, &links)?;
    Ok(table.iter().map(|(e, _)| remote.chunk_path(*generation, &e.object).to_string()).collect())
}
