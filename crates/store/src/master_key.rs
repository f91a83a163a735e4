//! Resolves the master key: `MASTER_KEY` from the environment wins; otherwise `master.key` in the
//! data dir, generated with mode 0600 on first start.

use crate::{Result, StoreError};
use crewgate_core::MasterKey;
use secrecy::{ExposeSecret, SecretString};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const KEY_FILE: &str = "master.key";

/// Where the key came from, so the caller can tell the person what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    Env,
    ExistingFile(PathBuf),
    GeneratedFile(PathBuf),
}

/// Loads the master key from `env_value` (if set) or the data dir's key file, creating the file on
/// first use.
pub fn load_or_create(data_dir: &Path, env_value: Option<SecretString>) -> Result<(MasterKey, KeyOrigin)> {
    if let Some(v) = env_value.filter(|v| !v.expose_secret().trim().is_empty()) {
        return Ok((MasterKey::from_hex(&v)?, KeyOrigin::Env));
    }
    let path = data_dir.join(KEY_FILE);
    let io = |source| StoreError::DataDir { path: path.clone(), source };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((MasterKey::from_hex(&SecretString::from(text))?, KeyOrigin::ExistingFile(path))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(io)?;
            let key = MasterKey::generate();
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&path).map_err(io)?;
            f.write_all(key.to_hex().expose_secret().as_bytes()).map_err(io)?;
            f.write_all(b"\n").map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok((key, KeyOrigin::GeneratedFile(path)))
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn generates_once_with_private_mode_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, o1) = load_or_create(dir.path(), None).unwrap();
        assert!(matches!(o1, KeyOrigin::GeneratedFile(_)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (k2, o2) = load_or_create(dir.path(), None).unwrap();
        assert!(matches!(o2, KeyOrigin::ExistingFile(_)));
        assert_eq!(k1.to_hex().expose_secret(), k2.to_hex().expose_secret());
    }

    #[test]
    fn env_wins_and_bad_env_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let (_, o) = load_or_create(dir.path(), Some(SecretString::from("ab".repeat(32)))).unwrap();
        assert_eq!(o, KeyOrigin::Env);
        assert!(!dir.path().join(KEY_FILE).exists());
        let err = load_or_create(dir.path(), Some(SecretString::from("nope"))).unwrap_err();
        assert!(err.to_string().contains("64 hex characters"), "{err}");
    }
}
