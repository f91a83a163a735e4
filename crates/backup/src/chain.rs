//! Reading and verifying manifests and manifest chains.

use crate::error::{BackupError, Result};
use crate::format::{Aad, FORMAT_VERSION, GenId, Manifest, ObjectCipher, OpenError, sha256};
use crate::remote::{GenObjects, Layout, PARALLEL, Remote};
use futures::{StreamExt, TryStreamExt};

/// Outcome of reading one manifest.
pub(crate) enum Read {
    Ok {
        manifest: Box<Manifest>,
        object_sha256: [u8; 32],
    },
    Missing,
    /// The object exists but does not authenticate as this manifest.
    Unreadable {
        bytes: bytes::Bytes,
        why: OpenError,
    },
}

pub(crate) async fn read_manifest(
    remote: &Remote,
    cipher: &ObjectCipher,
    generation: GenId,
    seq: u64,
) -> Result<Read> {
    let path = remote.manifest_path(generation, seq);
    let Some(bytes) = remote.get(&path).await? else {
        return Ok(Read::Missing);
    };
    let plain = match cipher.open(Aad::Manifest { generation, sequence: seq }, &bytes) {
        Ok(p) => p,
        Err(why) => return Ok(Read::Unreadable { bytes, why }),
    };
    let manifest: Manifest = serde_json::from_slice(&plain).map_err(|e| BackupError::Format {
        object: path.to_string(),
        detail: format!("manifest is not valid: {e}"),
    })?;
    if manifest.format != FORMAT_VERSION {
        return Err(BackupError::Format {
            object: path.to_string(),
            detail: format!("manifest format {} (this build reads {FORMAT_VERSION})", manifest.format),
        });
    }
    if manifest.generation != generation.to_string() || manifest.sequence != seq {
        return Err(BackupError::ChainBroken {
            generation: generation.to_string(),
            sequence: seq,
            detail: format!(
                "the manifest names generation {} sequence {}",
                manifest.generation, manifest.sequence
            ),
        });
    }
    Ok(Read::Ok { manifest: Box::new(manifest), object_sha256: sha256(&bytes) })
}

/// Explains why `bytes` (stored as manifest `seq`) did not open: a copy of another manifest of the
/// generation (replay/reorder), or tampered.
pub(crate) fn classify_unreadable(
    remote: &Remote,
    cipher: &ObjectCipher,
    generation: GenId,
    seq: u64,
    bytes: &[u8],
    why: OpenError,
    candidates: impl Iterator<Item = u64>,
) -> BackupError {
    let object = remote.manifest_path(generation, seq).to_string();
    if why == OpenError::Format {
        return BackupError::Tampered { object, detail: "not a crewgate backup object, or truncated".into() };
    }
    for other in candidates.filter(|s| *s != seq) {
        if cipher.open(Aad::Manifest { generation, sequence: other }, bytes).is_ok() {
            return BackupError::Replayed { object, expected: seq, found: other };
        }
    }
    BackupError::Tampered { object, detail: "authentication failed".into() }
}

/// Whether `generation` has any manifest that opens with this key (besides `except`): tells a
/// wrong MASTER_KEY (nothing opens) from one tampered object.
pub(crate) async fn any_manifest_opens(
    remote: &Remote,
    cipher: &ObjectCipher,
    generation: GenId,
    objects: &GenObjects,
    except: u64,
) -> Result<bool> {
    let mut seqs: Vec<u64> = objects.manifests.keys().copied().filter(|s| *s != except).collect();
    // The first and the newest few are enough to tell.
    if seqs.len() > 3 {
        let last = seqs.split_off(seqs.len() - 2);
        seqs.truncate(1);
        seqs.extend(last);
    }
    for seq in seqs {
        if let Read::Ok { .. } = read_manifest(remote, cipher, generation, seq).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A verified manifest with the hash of its stored object.
pub(crate) struct Link {
    pub manifest: Manifest,
    pub object_sha256: [u8; 32],
}

/// Reads every manifest of `generation` listed in the bucket, and verifies the whole chain:
/// no gaps, each manifest opens under its own name (generation + sequence), each names the hash
/// of its predecessor, times never go back, sizes are consistent.
pub(crate) async fn load_chain(
    remote: &Remote,
    cipher: &ObjectCipher,
    generation: GenId,
    objects: &GenObjects,
) -> Result<Vec<Link>> {
    let gen_name = generation.to_string();
    let Some(&last) = objects.manifests.keys().next_back() else {
        return Err(BackupError::MissingManifest { generation: gen_name, sequence: 0 });
    };
    if let Some(gap) = (0..=last).find(|s| !objects.manifests.contains_key(s)) {
        return Err(BackupError::MissingManifest { generation: gen_name, sequence: gap });
    }
    let reads: Vec<(u64, Read)> = futures::stream::iter(0..=last)
        .map(|seq| async move { read_manifest(remote, cipher, generation, seq).await.map(|r| (seq, r)) })
        .buffered(PARALLEL)
        .try_collect()
        .await?;
    let mut chain: Vec<Link> = Vec::with_capacity(reads.len());
    for (seq, read) in reads {
        let (manifest, object_sha256) = match read {
            Read::Ok { manifest, object_sha256, .. } => (*manifest, object_sha256),
            // Listed a moment ago, gone now: deleted under our feet.
            Read::Missing => {
                return Err(BackupError::MissingManifest { generation: gen_name, sequence: seq });
            }
            Read::Unreadable { bytes, why } => {
                return Err(classify_unreadable(
                    remote,
                    cipher,
                    generation,
                    seq,
                    &bytes,
                    why,
                    objects.manifests.keys().copied(),
                ));
            }
        };
        let broken =
            |detail: String| BackupError::ChainBroken { generation: gen_name.clone(), sequence: seq, detail };
        match chain.last() {
            None => {
                if manifest.prev_manifest_sha256.is_some() {
                    return Err(broken("the first manifest claims a predecessor".into()));
                }
            }
            Some(prev) => {
                if manifest.prev_manifest_sha256.as_deref() != Some(hex::encode(prev.object_sha256).as_str())
                {
                    return Err(broken(format!("it does not follow manifest {}", seq.saturating_sub(1))));
                }
                if manifest.taken_at < prev.manifest.taken_at {
                    return Err(broken("its time is earlier than its predecessor's".into()));
                }
                if manifest.chunk_size != prev.manifest.chunk_size
                    || manifest.generation_started_at != prev.manifest.generation_started_at
                {
                    return Err(broken("chunk size or generation start differ from its predecessor".into()));
                }
            }
        }
        check_entries(&manifest).map_err(broken)?;
        chain.push(Link { manifest, object_sha256 });
    }
    Ok(chain)
}

fn check_entries(m: &Manifest) -> std::result::Result<(), String> {
    if m.chunk_size == 0 {
        return Err("chunk size is 0".into());
    }
    let count = m.image_len.div_ceil(m.chunk_size);
    for e in &m.chunks {
        if e.index >= count || e.len == 0 || e.len > m.chunk_size || !crate::format::is_chunk_name(&e.object)
        {
            return Err(format!("chunk entry {} is out of range", e.index));
        }
    }
    Ok(())
}

/// Manifest 0 of every generation that has manifests, plus the listing.
pub(crate) struct Heads {
    pub layout: Layout,
    pub heads: Vec<(GenId, Manifest)>,
    /// Generations whose manifest 0 does not open with this key.
    pub unreadable: Vec<(GenId, BackupError)>,
}

/// Lists the bucket and reads the first manifest of each generation. With `strict`, a generation
/// that cannot be read is an error (restore: an unreadable generation could be the newest one);
/// otherwise it is reported in `unreadable`. A key that opens nothing is always
/// [`BackupError::WrongKey`].
pub(crate) async fn load_heads(remote: &Remote, cipher: &ObjectCipher, strict: bool) -> Result<Heads> {
    let layout = remote.list().await?;
    let mut heads = Vec::new();
    let mut failed: Vec<(GenId, BackupError, bool)> = Vec::new(); // (gen, error, key-related)
    for (&generation, objects) in &layout.generations {
        if objects.manifests.is_empty() {
            continue; // chunks without a manifest: an interrupted start; not a backup
        }
        match read_manifest(remote, cipher, generation, 0).await? {
            Read::Ok { manifest, .. } => heads.push((generation, *manifest)),
            Read::Missing => failed.push((
                generation,
                BackupError::MissingManifest { generation: generation.to_string(), sequence: 0 },
                false,
            )),
            Read::Unreadable { bytes, why } => {
                let others_open = any_manifest_opens(remote, cipher, generation, objects, 0).await?;
                let err = classify_unreadable(
                    remote,
                    cipher,
                    generation,
                    0,
                    &bytes,
                    why,
                    objects.manifests.keys().copied(),
                );
                failed.push((generation, err, !others_open && why == OpenError::Auth));
            }
        }
    }
    if heads.is_empty() && !failed.is_empty() && failed.iter().all(|(_, _, key)| *key) {
        return Err(BackupError::WrongKey { location: remote.location().to_owned() });
    }
    if heads.is_empty() && failed.is_empty() {
        return Err(BackupError::NoBackups { location: remote.location().to_owned() });
    }
    let mut unreadable = Vec::new();
    for (generation, err, key_related) in failed {
        let err = if key_related {
            BackupError::Tampered {
                object: remote.manifest_path(generation, 0).to_string(),
                detail: "this generation does not decrypt with this MASTER_KEY while others do (written with another key, or replaced)".into(),
            }
        } else {
            err
        };
        if strict {
            return Err(err);
        }
        unreadable.push((generation, err));
    }
    heads.sort_by_key(|(_, m)| m.generation_started_at);
    Ok(Heads { layout, heads, unreadable })
}
