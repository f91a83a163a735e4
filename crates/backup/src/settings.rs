//! Where backups go and how often: S3 location, credentials, replication cadence, retention.

use secrecy::SecretString;
use std::time::Duration;

pub const DEFAULT_PREFIX: &str = "crewgate/";
pub const DEFAULT_REGION: &str = "us-east-1";
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_RETAIN_GENERATIONS: usize = 3;
/// Snapshot chunk size: the unit of change detection and upload (16 SQLite pages of 4 KiB).
pub const DEFAULT_CHUNK_SIZE: usize = 64 * 1024;
/// A generation is compacted (a new one started) after this many manifests.
pub const DEFAULT_MAX_GENERATION_MANIFESTS: u64 = 3600;
/// ... or when it is this old.
pub const DEFAULT_MAX_GENERATION_AGE: Duration = Duration::from_secs(24 * 3600);

/// The environment variables [`BackupSettings::from_env`] reads.
pub const ENV_VARS: [&str; 7] = [
    "S3_ENDPOINT",
    "S3_BUCKET",
    "S3_PREFIX",
    "S3_REGION",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
    "S3_PATH_STYLE",
];
const REQUIRED_ENV: [&str; 3] = ["S3_BUCKET", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"];

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "S3 backup is not fully configured: {} not set; set {} (or unset every S3_* variable to run without backup)",
        names.join(", "), if names.len() == 1 { "it" } else { "them" }
    )]
    Missing { names: Vec<&'static str> },
    #[error("{name}={value:?} is not valid: {reason}")]
    Invalid { name: &'static str, value: String, reason: String },
}

/// Settings of the S3 backup. `Debug` never shows the secret access key.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    /// S3 endpoint URL, e.g. `https://s3.eu-central-1.amazonaws.com` or `http://127.0.0.1:9000`;
    /// `None` means AWS S3 for `region`.
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Key prefix of every object; normalised to end with `/` (empty = bucket root).
    pub prefix: String,
    pub region: String,
    /// Path-style URLs (`endpoint/bucket/key`) instead of virtual-hosted ones (`bucket.endpoint/key`).
    /// Most self-hosted S3 servers need this.
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    /// Allow a plain `http://` endpoint (objects are encrypted anyway; requests are still signed).
    pub allow_http: bool,
    /// Minimum time between two snapshots (and so the replication cadence under steady writes).
    pub interval: Duration,
    /// Generations to keep; older ones are deleted after a new generation is safely uploaded.
    pub retain_generations: usize,
    pub chunk_size: usize,
    pub max_generation_manifests: u64,
    pub max_generation_age: Duration,
    /// Timeout of one S3 request.
    pub request_timeout: Duration,
}

impl BackupSettings {
    /// Settings with every optional field at its default. `allow_http` and `path_style` follow
    /// the endpoint: an explicit endpoint means path-style, an `http://` endpoint allows HTTP.
    pub fn new(
        endpoint: Option<String>,
        bucket: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: SecretString,
    ) -> Self {
        let endpoint = endpoint.map(|e| e.trim().trim_end_matches('/').to_owned()).filter(|e| !e.is_empty());
        Self {
            allow_http: endpoint.as_deref().is_some_and(|e| e.starts_with("http://")),
            path_style: endpoint.is_some(),
            endpoint,
            bucket: bucket.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            region: DEFAULT_REGION.to_owned(),
            access_key_id: access_key_id.into(),
            secret_access_key,
            interval: DEFAULT_INTERVAL,
            retain_generations: DEFAULT_RETAIN_GENERATIONS,
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_generation_manifests: DEFAULT_MAX_GENERATION_MANIFESTS,
            max_generation_age: DEFAULT_MAX_GENERATION_AGE,
            request_timeout: Duration::from_secs(10),
        }
    }

    /// Reads `S3_ENDPOINT`, `S3_BUCKET`, `S3_PREFIX`, `S3_REGION`, `S3_ACCESS_KEY_ID`,
    /// `S3_SECRET_ACCESS_KEY`, `S3_PATH_STYLE` from the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Self::from_env`], but `Ok(None)` when no `S3_*` variable is set at all (backup off).
    pub fn from_env_optional() -> Result<Option<Self>, SettingsError> {
        Self::from_lookup_optional(|name| std::env::var(name).ok())
    }

    pub fn from_lookup_optional(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, SettingsError> {
        let any = ENV_VARS.iter().any(|n| lookup(n).is_some_and(|v| !v.trim().is_empty()));
        if any { Self::from_lookup(lookup).map(Some) } else { Ok(None) }
    }

    /// [`Self::from_env`] over any variable source (tests, config files with `${ENV}` expanded).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let missing: Vec<&'static str> = REQUIRED_ENV.into_iter().filter(|n| get(n).is_none()).collect();
        if !missing.is_empty() {
            return Err(SettingsError::Missing { names: missing });
        }
        let (Some(bucket), Some(access), Some(secret)) =
            (get("S3_BUCKET"), get("S3_ACCESS_KEY_ID"), lookup("S3_SECRET_ACCESS_KEY"))
        else {
            return Err(SettingsError::Missing { names: REQUIRED_ENV.to_vec() });
        };
        let mut s =
            Self::new(get("S3_ENDPOINT"), bucket, access, SecretString::from(secret.trim().to_owned()));
        if let Some(prefix) = lookup("S3_PREFIX") {
            s.prefix = prefix.trim().to_owned();
        }
        if let Some(region) = get("S3_REGION") {
            s.region = region;
        }
        if let Some(v) = get("S3_PATH_STYLE") {
            s.path_style = parse_bool(&v).ok_or_else(|| SettingsError::Invalid {
                name: "S3_PATH_STYLE",
                value: v.clone(),
                reason: "expected true or false".into(),
            })?;
        }
        s.validated()
    }

    /// Checks and normalises the settings (prefix ends with `/`, sizes in range).
    pub fn validated(mut self) -> Result<Self, SettingsError> {
        if self.bucket.trim().is_empty() {
            return Err(SettingsError::Missing { names: vec!["S3_BUCKET"] });
        }
        if let Some(e) = &self.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(SettingsError::Invalid {
                name: "S3_ENDPOINT",
                value: e.clone(),
                reason: "expected a URL starting with https:// (or http:// for a local server)".into(),
            });
        }
        let prefix = self.prefix.trim().trim_matches('/');
        self.prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        if self.prefix.split('/').any(|p| p == "." || p == "..") {
            return Err(SettingsError::Invalid {
                name: "S3_PREFIX",
                value: self.prefix.clone(),
                reason: "must not contain `.` or `..` segments".into(),
            });
        }
        if !(4096..=16 * 1024 * 1024).contains(&self.chunk_size) {
            return Err(SettingsError::Invalid {
                name: "chunk_size",
                value: self.chunk_size.to_string(),
                reason: "expected 4 KiB to 16 MiB".into(),
            });
        }
        if self.retain_generations == 0 {
            return Err(SettingsError::Invalid {
                name: "retain_generations",
                value: "0".into(),
                reason: "keep at least 1 generation".into(),
            });
        }
        if self.interval.is_zero() || self.max_generation_manifests == 0 {
            return Err(SettingsError::Invalid {
                name: "interval",
                value: format!("{:?}", self.interval),
                reason: "interval and max_generation_manifests must be positive".into(),
            });
        }
        Ok(self)
    }

    /// `bucket/prefix`, for messages.
    pub fn location(&self) -> String {
        format!("{}/{}", self.bucket, self.prefix)
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn missing_variables_are_named() {
        let err = BackupSettings::from_lookup(lookup(&[("S3_BUCKET", "b")])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY"), "{text}");
        assert!(!text.contains("S3_BUCKET"), "{text}");
        assert!(BackupSettings::from_lookup_optional(lookup(&[])).unwrap().is_none());
        assert!(BackupSettings::from_lookup_optional(lookup(&[("S3_ENDPOINT", "http://x")])).is_err());
    }

    #[test]
    fn full_env_parses_with_defaults_and_hides_the_secret() {
        let s = BackupSettings::from_lookup(lookup(&[
            ("S3_ENDPOINT", "http://127.0.0.1:9000/"),
            ("S3_BUCKET", "b"),
            ("S3_ACCESS_KEY_ID", "AK"),
            ("S3_SECRET_ACCESS_KEY", "very-secret"),
            ("S3_PREFIX", "/team/x"),
        ]))
        .unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s.prefix, "team/x/");
        assert!(s.path_style && s.allow_http);
        assert_eq!(s.interval, Duration::from_secs(1));
        assert_eq!(s.retain_generations, 3);
        assert_eq!(s.secret_access_key.expose_secret(), "very-secret");
        assert!(!format!("{s:?}").contains("very-secret"));
        let bad = BackupSettings::from_lookup(lookup(&[
            ("S3_BUCKET", "b"),
            ("S3_ACCESS_KEY_ID", "AK"),
            ("S3_SECRET_ACCESS_KEY", "x"),
            ("S3_PATH_STYLE", "maybe"),
        ]))
        .unwrap_err();
        assert!(bad.to_string().contains("S3_PATH_STYLE"), "{bad}");
    }
}
