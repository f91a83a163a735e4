//! The on-bucket format: object names, the encrypted envelope, manifests, image fingerprints.
//!
//! ```text
//! <prefix><generation>/m/<sequence as 16 hex digits>   manifest (encrypted JSON)
//! <prefix><generation>/c/<32 random hex digits>         chunk (encrypted image slice)
//! ```
//! Envelope of every object: `b"CGB1"` ‖ 24-byte random nonce ‖ XChaCha20-Poly1305 ciphertext+tag.
//! Associated data binds what the object claims to be: kind, generation, sequence, chunk index.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use crewgate_core::{DerivedKey, Millis};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 4] = b"CGB1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
pub(crate) const FORMAT_VERSION: u32 = 1;
const AAD_DOMAIN: &[u8] = b"crewgate backup object v1";

/// A generation id: 16 random bytes, shown as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct GenId(pub [u8; 16]);

impl GenId {
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        rand::fill(&mut b);
        Self(b)
    }

    pub fn parse(s: &str) -> Option<Self> {
        let mut b = [0u8; 16];
        if s.len() != 32 || s.bytes().any(|c| c.is_ascii_uppercase()) {
            return None;
        }
        hex::decode_to_slice(s, &mut b).ok()?;
        Some(Self(b))
    }
}

impl std::fmt::Display for GenId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A random object name for a chunk (32 hex digits).
pub(crate) fn random_object_name() -> String {
    let mut b = [0u8; 16];
    rand::fill(&mut b);
    hex::encode(b)
}

pub(crate) fn manifest_name(seq: u64) -> String {
    format!("{seq:016x}")
}

pub(crate) fn parse_manifest_name(s: &str) -> Option<u64> {
    if s.len() != 16 || s.bytes().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

pub(crate) fn is_chunk_name(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// What an object claims to be; becomes the AEAD associated data.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Aad {
    Manifest { generation: GenId, sequence: u64 },
    Chunk { generation: GenId, sequence: u64, index: u64 },
}

impl Aad {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(AAD_DOMAIN.len() + 1 + 16 + 16);
        out.extend_from_slice(AAD_DOMAIN);
        match *self {
            Aad::Manifest { generation, sequence } => {
                out.push(b'm');
                out.extend_from_slice(&generation.0);
                out.extend_from_slice(&sequence.to_be_bytes());
            }
            Aad::Chunk { generation, sequence, index } => {
                out.push(b'c');
                out.extend_from_slice(&generation.0);
                out.extend_from_slice(&sequence.to_be_bytes());
                out.extend_from_slice(&index.to_be_bytes());
            }
        }
        out
    }
}

/// Why an envelope did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Too short or not our magic: not a crewgate backup object (or truncated).
    Format,
    /// Authentication failed: wrong key, tampered bytes, or an object that is not what its name says.
    Auth,
}

/// Encrypts and authenticates backup objects with the backup key derived from `MASTER_KEY`.
pub(crate) struct ObjectCipher {
    cipher: XChaCha20Poly1305,
}

impl ObjectCipher {
    pub fn new(key: &DerivedKey) -> Self {
        Self { cipher: XChaCha20Poly1305::new(key.expose().into()) }
    }

    pub fn seal(&self, aad: Aad, plaintext: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let ad = aad.bytes();
        let ct = self.cipher.encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: &ad }).ok()?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + ct.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Some(out)
    }

    pub fn open(&self, aad: Aad, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < MAGIC.len() + NONCE_LEN + TAG_LEN || &sealed[..MAGIC.len()] != MAGIC {
            return Err(OpenError::Format);
        }
        let (nonce, ct) = sealed[MAGIC.len()..].split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_len| OpenError::Format)?;
        let ad = aad.bytes();
        self.cipher
            .decrypt(&XNonce::from(nonce), Payload { msg: ct, aad: &ad })
            .map_err(|_opaque| OpenError::Auth)
    }
}

/// Where a generation continues from: the newest manifest of the previous generation when this
/// one started. Lets restore notice a previous generation whose newest manifests were deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ParentLink {
    pub generation: String,
    pub sequence: u64,
    /// SHA-256 (hex) of that manifest object's stored bytes.
    pub manifest_sha256: String,
}

/// One chunk (re)written by a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChunkEntry {
    /// Chunk index: bytes `index * chunk_size ..` of the image.
    #[serde(rename = "i")]
    pub index: u64,
    /// Object name under `<generation>/c/`.
    #[serde(rename = "o")]
    pub object: String,
    /// Plaintext length.
    #[serde(rename = "n")]
    pub len: u64,
    /// SHA-256 (hex) of the plaintext.
    #[serde(rename = "h")]
    pub sha256: String,
}

/// Manifest `sequence` of a generation: the chunks changed since manifest `sequence - 1` (for
/// sequence 0: all chunks), the image size and fingerprint, and the hash of the previous manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub format: u32,
    pub generation: String,
    pub sequence: u64,
    pub generation_started_at: Millis,
    /// When the snapshot was taken (unix ms): every change committed before it is in this state.
    pub taken_at: Millis,
    /// SHA-256 (hex) of the stored bytes of manifest `sequence - 1`; `None` only for sequence 0.
    pub prev_manifest_sha256: Option<String>,
    pub parent: Option<ParentLink>,
    pub chunk_size: u64,
    pub image_len: u64,
    /// [`fingerprint`] of the whole image (hex).
    pub image_fingerprint: String,
    pub chunks: Vec<ChunkEntry>,
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// SQLite header fields that change without any change of content (journal mode bytes 18-19,
/// change counter 24-27, version-valid-for 92-95); zeroed for fingerprints.
const VOLATILE_HEADER: [std::ops::Range<usize>; 3] = [18..20, 24..28, 92..96];

/// SHA-256 of chunk `index` with the volatile header fields zeroed (only chunk 0 has any).
pub(crate) fn normalized_chunk_hash(index: usize, chunk: &[u8], raw_hash: [u8; 32]) -> [u8; 32] {
    if index != 0 {
        return raw_hash;
    }
    let mut copy = chunk.to_vec();
    for r in VOLATILE_HEADER {
        if let Some(s) = copy.get_mut(r) {
            s.fill(0);
        }
    }
    sha256(&copy)
}

/// Identifies the logical content of a database image, independent of journal mode and change
/// counters: SHA-256 over the chunk size, the length and the (normalised) chunk hashes.
pub(crate) fn fingerprint(chunk_size: u64, image_len: u64, normalized_hashes: &[[u8; 32]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"crewgate image fingerprint v1");
    h.update(chunk_size.to_be_bytes());
    h.update(image_len.to_be_bytes());
    for c in normalized_hashes {
        h.update(c);
    }
    h.finalize().into()
}

/// Chunk hashes of an image: `(raw, normalized)` per chunk.
pub(crate) fn hash_chunks(image: &[u8], chunk_size: usize) -> Vec<([u8; 32], [u8; 32])> {
    image
        .chunks(chunk_size)
        .enumerate()
        .map(|(i, c)| {
            let raw = sha256(c);
            (raw, normalized_chunk_hash(i, c, raw))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crewgate_core::{MasterKey, Purpose};

    fn cipher() -> ObjectCipher {
        ObjectCipher::new(&MasterKey::generate().derive(Purpose::Backup).unwrap())
    }

    #[test]
    fn envelope_binds_kind_generation_sequence_and_index() {
        let c = cipher();
        let g = GenId::random();
        let aad = Aad::Chunk { generation: g, sequence: 3, index: 7 };
        let sealed = c.seal(aad, b"page bytes").unwrap();
        assert_eq!(c.open(aad, &sealed).unwrap(), b"page bytes");
        for other in [
            Aad::Chunk { generation: g, sequence: 4, index: 7 },
            Aad::Chunk { generation: g, sequence: 3, index: 8 },
            Aad::Chunk { generation: GenId::random(), sequence: 3, index: 7 },
            Aad::Manifest { generation: g, sequence: 3 },
        ] {
            assert_eq!(c.open(other, &sealed), Err(OpenError::Auth));
        }
        let mut flipped = sealed.clone();
        flipped[40] ^= 1;
        assert_eq!(c.open(aad, &flipped), Err(OpenError::Auth));
        assert_eq!(cipher().open(aad, &sealed), Err(OpenError::Auth));
        assert_eq!(c.open(aad, &sealed[..20]), Err(OpenError::Format));
    }

    #[test]
    fn names_round_trip() {
        let g = GenId::random();
        assert_eq!(GenId::parse(&g.to_string()), Some(g));
        assert_eq!(GenId::parse("xyz"), None);
        assert_eq!(parse_manifest_name(&manifest_name(42)), Some(42));
        assert_eq!(parse_manifest_name("2a"), None);
        assert!(is_chunk_name(&random_object_name()));
    }

    #[test]
    fn fingerprint_ignores_volatile_header_fields_only() {
        let mut image = vec![7u8; 3 * 4096];
        let fp = |img: &[u8]| {
            let h: Vec<_> = hash_chunks(img, 4096).into_iter().map(|(_, n)| n).collect();
            fingerprint(4096, img.len() as u64, &h)
        };
        let base = fp(&image);
        image[18] = 1;
        image[25] = 9;
        image[93] = 9;
        assert_eq!(fp(&image), base);
        image[30] = 0;
        assert_ne!(fp(&image), base);
    }
}
