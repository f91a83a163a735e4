//! Key material. One 32-byte master key (from `MASTER_KEY` or a key file) is never used directly:
//! HKDF-SHA256 derives one subkey per purpose, so a leak of one derived key exposes nothing else.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;
use zeroize::Zeroize;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
/// First byte of every sealed value, so the format can evolve.
const SEAL_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "MASTER_KEY is not valid: expected 64 hex characters (32 bytes); generate one with `openssl rand -hex 32`"
    )]
    InvalidMasterKey,
    #[error("could not load the master key: {0}")]
    Source(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error(
        "sealed value does not open: wrong MASTER_KEY, or the value was copied from another row or tampered with"
    )]
    Open,
    #[error("sealed value is truncated or has an unknown format version")]
    Format,
    #[error("encryption failed")]
    Seal,
}

/// What a derived key is for; each purpose gets an independent key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Sealing secrets and message bodies in the store.
    StoreSecrets,
    /// A check value stored beside the data, to detect a wrong MASTER_KEY at open.
    KeyCheck,
    /// Encrypting backup objects.
    Backup,
    /// Signing session cookies and OAuth `state`.
    Session,
}

impl Purpose {
    fn info(self) -> &'static [u8] {
        match self {
            Purpose::StoreSecrets => b"crewgate store-secrets v1",
            Purpose::KeyCheck => b"crewgate key-check v1",
            Purpose::Backup => b"crewgate backup v1",
            Purpose::Session => b"crewgate session v1",
        }
    }
}

/// The root secret. Debug never prints it.
pub struct MasterKey(SecretBox<[u8; KEY_LEN]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    /// Parses the hex form used by `MASTER_KEY` and the key file (surrounding whitespace ignored).
    pub fn from_hex(text: &SecretString) -> Result<Self, KeyError> {
        let trimmed = text.expose_secret().trim();
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(trimmed, &mut bytes).map_err(|_bad_hex| KeyError::InvalidMasterKey)?;
        let key = Self(SecretBox::new(Box::new(bytes)));
        bytes.zeroize();
        Ok(key)
    }

    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rand::fill(&mut bytes);
        let key = Self(SecretBox::new(Box::new(bytes)));
        bytes.zeroize();
        key
    }

    /// Hex form, for writing a freshly generated key file.
    pub fn to_hex(&self) -> SecretString {
        SecretString::from(hex::encode(self.0.expose_secret()))
    }

    pub fn derive(&self, purpose: Purpose) -> Result<DerivedKey, KeyError> {
        let hk = Hkdf::<Sha256>::new(None, self.0.expose_secret());
        let mut out = [0u8; KEY_LEN];
        hk.expand(purpose.info(), &mut out)
            .map_err(|e| KeyError::Source(format!("HKDF expand failed: {e}")))?;
        let key = DerivedKey(SecretBox::new(Box::new(out)));
        out.zeroize();
        Ok(key)
    }
}

/// A purpose-specific key derived from the master key.
pub struct DerivedKey(SecretBox<[u8; KEY_LEN]>);

impl std::fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DerivedKey(…)")
    }
}

impl DerivedKey {
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        self.0.expose_secret()
    }

    /// A public fingerprint of this key (SHA-256 of the key with a fixed label), used to detect a
    /// wrong master key without revealing anything about it.
    pub fn check_value(&self) -> String {
        use sha2::Digest;
        let mut h = Sha256::new();
        h.update(b"crewgate key check");
        h.update(self.expose());
        hex::encode(h.finalize())
    }
}

/// Where the master key comes from: the environment, a key file, or (later) a TEE key provider.
pub trait KeySource: Send + Sync {
    fn master_key(&self) -> Result<MasterKey, KeyError>;
}

/// A key already in memory (tests, and after the CLI resolved env/file).
pub struct StaticKeySource(SecretString);

impl StaticKeySource {
    pub fn new(hex: SecretString) -> Self {
        Self(hex)
    }
}

impl KeySource for StaticKeySource {
    fn master_key(&self) -> Result<MasterKey, KeyError> {
        MasterKey::from_hex(&self.0)
    }
}

/// Seals and opens values with XChaCha20-Poly1305. The associated data names the place a value
/// belongs to (table, row id, owner), so a ciphertext copied to another row does not open.
/// AEAD failures are deliberately opaque (`aead::Error` carries nothing), so the error kinds here
/// say what it means for the caller instead.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(…)")
    }
}

/// Where a sealed value lives; becomes the AEAD associated data.
#[derive(Debug, Clone, Copy)]
pub struct SealContext<'a> {
    pub table: &'a str,
    pub row_id: &'a str,
    pub owner: &'a str,
}

impl SealContext<'_> {
    fn aad(&self) -> Vec<u8> {
        // Length-prefixed so ("ab","c") and ("a","bc") differ.
        let mut out = Vec::with_capacity(self.table.len() + self.row_id.len() + self.owner.len() + 12);
        for part in [self.table, self.row_id, self.owner] {
            out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }
}

impl Sealer {
    pub fn new(key: &DerivedKey) -> Self {
        Self { cipher: XChaCha20Poly1305::new(key.expose().into()) }
    }

    pub fn seal(&self, ctx: SealContext<'_>, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let aad = ctx.aad();
        let ct = self
            .cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: &aad })
            .map_err(|_opaque| SealError::Seal)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn open(&self, ctx: SealContext<'_>, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != SEAL_VERSION {
            return Err(SealError::Format);
        }
        let (nonce, ct) = sealed[1..].split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_len| SealError::Format)?;
        let aad = ctx.aad();
        self.cipher
            .decrypt(&XNonce::from(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_opaque| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn ctx<'a>(row: &'a str) -> SealContext<'a> {
        SealContext { table: "secrets", row_id: row, owner: "alice" }
    }

    #[test]
    fn seal_round_trip_and_row_binding() {
        let mk = MasterKey::generate();
        let s = Sealer::new(&mk.derive(Purpose::StoreSecrets).unwrap());
        let sealed = s.seal(ctx("1"), b"refresh-token").unwrap();
        assert_eq!(s.open(ctx("1"), &sealed).unwrap(), b"refresh-token");
        assert_eq!(s.open(ctx("2"), &sealed), Err(SealError::Open));
        let other_owner = SealContext { owner: "bob", ..ctx("1") };
        assert_eq!(s.open(other_owner, &sealed), Err(SealError::Open));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(s.open(ctx("1"), &flipped), Err(SealError::Open));
        assert_eq!(s.open(ctx("1"), &sealed[..10]), Err(SealError::Format));
    }

    #[test]
    fn wrong_master_key_does_not_open() {
        let a = Sealer::new(&MasterKey::generate().derive(Purpose::StoreSecrets).unwrap());
        let b = Sealer::new(&MasterKey::generate().derive(Purpose::StoreSecrets).unwrap());
        let sealed = a.seal(ctx("1"), b"x").unwrap();
        assert_eq!(b.open(ctx("1"), &sealed), Err(SealError::Open));
    }

    #[test]
    fn purposes_derive_different_keys_deterministically() {
        let hex = SecretString::from("11".repeat(32));
        let mk = MasterKey::from_hex(&hex).unwrap();
        let mk2 = MasterKey::from_hex(&hex).unwrap();
        assert_eq!(
            mk.derive(Purpose::Backup).unwrap().expose(),
            mk2.derive(Purpose::Backup).unwrap().expose()
        );
        assert_ne!(
            mk.derive(Purpose::Backup).unwrap().expose(),
            mk.derive(Purpose::StoreSecrets).unwrap().expose()
        );
        assert!(!format!("{mk:?}").contains("1111"));
    }

    #[test]
    fn master_key_parse_errors() {
        for bad in ["", "abc", &"zz".repeat(32), &"11".repeat(31), &"11".repeat(33)] {
            assert!(MasterKey::from_hex(&SecretString::from(bad.to_string())).is_err(), "{bad}");
        }
        assert!(MasterKey::from_hex(&SecretString::from(format!(" {}\n", "ab".repeat(32)))).is_ok());
    }
}
