//! `crewgate doctor`: checks a deployment before (or while) it runs and says what to fix.
//!
//! One line per finding, `ok|warn|FAIL  name: detail — what to do`; the exit code is 1 when any
//! check FAILs. Secret values are never printed, only whether they are set. The network checks
//! (LLM, S3) run concurrently with a short timeout; the clock check reuses their `Date` headers.
//! The store is opened only when it already exists (or PostgreSQL is used) and a key is at hand,
//! so the doctor never generates a master key file of its own.

use crate::StoreArgs;
use crate::context;
use anyhow::{Context, Result};
use clap::Args;
use crewgate_config::{Config, ConfigError, SkillId};
use crewgate_core::time::civil_from_days;
use crewgate_core::token::parse_presented;
use crewgate_core::{MasterKey, TokenKind};
use crewgate_store::StoreLocation;
use crewgate_store::master_key::KEY_FILE;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Clock skew above this is reported (OAuth, S3 signatures and token expiry depend on the clock).
const MAX_SKEW_SECS: f64 = 30.0;
/// Where dstack mounts its guest-agent socket (apis.md §5.4).
const DSTACK_SOCKET: &str = "/var/run/dstack.sock";
/// The S3 variables `crewgate-backup` reads; any of them set means "backup wanted".
const S3_VARS: [&str; 7] = [
    "S3_ENDPOINT",
    "S3_BUCKET",
    "S3_PREFIX",
    "S3_REGION",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
    "S3_PATH_STYLE",
];
const S3_REQUIRED: [&str; 3] = ["S3_BUCKET", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"];
const S3_DEFAULT_PREFIX: &str = "crewgate/";
const S3_DEFAULT_REGION: &str = "us-east-1";

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// JSONC config file to check (the gateway's --config).
    #[arg(long, env = "CREWGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Timeout of each network check, in seconds.
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    pub timeout: u64,
    /// Skip the network checks (LLM, S3, clock).
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub name: &'static str,
    pub detail: String,
    pub fix: Option<String>,
}

impl Finding {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self { level: Level::Ok, name, detail: detail.into(), fix: None }
    }
    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { level: Level::Warn, name, detail: detail.into(), fix: Some(fix.into()) }
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { level: Level::Fail, name, detail: detail.into(), fix: Some(fix.into()) }
    }
    fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<4}  {}: {}", self.level.label(), self.name, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, " — {fix}")?;
        }
        Ok(())
    }
}

/// Environment lookup; empty values count as unset (as in the entrypoint).
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub async fn run(args: DoctorArgs) -> Result<ExitCode> {
    let findings = diagnose(&args, &process_env).await;
    let mut fails = 0;
    let mut warns = 0;
    for f in &findings {
        match f.level {
            Level::Fail => fails += 1,
            Level::Warn => warns += 1,
            Level::Ok => {}
        }
        println!("{f}");
    }
    println!("doctor: {fails} FAIL, {warns} warn, {} ok", findings.len() - fails - warns);
    Ok(if fails > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Every check, in report order.
pub async fn diagnose(args: &DoctorArgs, env: Env<'_>) -> Vec<Finding> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let mut out = Vec::new();

    let (config_findings, config) = check_config(args.config.as_deref());
    out.extend(config_findings);

    let s3 = s3_target(config.as_ref(), env);
    out.extend(check_env(env, config.as_ref(), &args.store.data_dir, matches!(s3, Ok(Some(_)))));

    let client = http_client(timeout);
    let store = check_store(&args.store, env, timeout);
    let network = async {
        if args.offline {
            return None;
        }
        let client = match &client {
            Ok(c) => c,
            Err(e) => return Some(Err(format!("{e:#}"))),
        };
        let s3 = async {
            match &s3 {
                Ok(Some(target)) => Some(check_s3(client, target).await),
                _ => None,
            }
        };
        let llm = async {
            match &config {
                Some(cfg) => Some(check_llm(client, cfg).await),
                None => None,
            }
        };
        let (s3, llm) = tokio::join!(s3, llm);
        Some(Ok((s3, llm)))
    };
    let (store, network) = tokio::join!(store, network);
    out.push(store);

    let mut dates = Vec::new();
    match s3 {
        Ok(None) => out.push(Finding::warn(
            "s3",
            "backup not configured: the state lives only on this disk",
            "set S3_BUCKET, S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY (see deploy/phala/secrets/.env.example); a CVM disk can vanish",
        )),
        Err(problem) => out.push(Finding::fail(
            "s3",
            problem,
            "set the missing S3 settings, or unset every S3_* variable to run without backup",
        )),
        Ok(Some(_)) if args.offline => out.push(Finding::ok("s3", "configured; reachability not checked (--offline)")),
        Ok(Some(_)) => {}
    }
    match network {
        None => {
            if config.is_some() {
                out.push(Finding::ok("llm", "not checked (--offline)"));
            }
        }
        Some(Err(e)) => out.push(Finding::fail(
            "network",
            format!("cannot build an HTTP client: {e}"),
            "check the TLS/CA certificate setup of this machine",
        )),
        Some(Ok((s3_result, llm_result))) => {
            if let Some((finding, date)) = s3_result {
                out.push(finding);
                dates.extend(date.map(|d| ("the S3 endpoint", d)));
            }
            if let Some((findings, date)) = llm_result {
                out.extend(findings);
                // The LLM endpoint is the better reference: listed first.
                if let Some(d) = date {
                    dates.insert(0, ("the LLM endpoint", d));
                }
            }
        }
    }

    if config.is_none() {
        out.push(Finding::warn("llm", "not checked: the config did not load", "fix the config first"));
    }
    match &config {
        Some(cfg) => out.extend(check_google(cfg)),
        None => {
            out.push(Finding::warn("google", "not checked: the config did not load", "fix the config first"))
        }
    }
    if !args.offline {
        out.push(check_clock(&dates));
    }
    out.extend(check_dstack(env));
    out
}

// ---------------------------------------------------------------------------------------------
// config and environment

/// The config's findings, and the config itself when it loaded (`Config::default()` without a file).
fn check_config(path: Option<&Path>) -> (Vec<Finding>, Option<Config>) {
    let Some(path) = path else {
        return (
            vec![
                Finding::ok("config", "no config file given: built-in defaults")
                    .with_fix("pass --config or set CREWGATE_CONFIG to check the file the gateway uses"),
            ],
            Some(Config::default()),
        );
    };
    match Config::load(path) {
        Ok(cfg) => {
            let mut out = vec![Finding::ok(
                "config",
                format!("{} is valid ({} warning(s))", path.display(), cfg.warnings.len()),
            )];
            out.extend(cfg.warnings.iter().map(|w| Finding {
                level: Level::Warn,
                name: "config",
                detail: w.to_string(),
                fix: None,
            }));
            (out, Some(cfg))
        }
        Err(ConfigError::Invalid(diagnostics)) => {
            let out = diagnostics
                .iter()
                .map(|d| Finding { level: Level::Fail, name: "config", detail: d.to_string(), fix: None })
                .collect();
            (out, None)
        }
        Err(e) => (
            vec![Finding::fail(
                "config",
                format!("{:#}", anyhow::Error::from(e)),
                "check --config / CREWGATE_CONFIG and the file's permissions",
            )],
            None,
        ),
    }
}

fn check_env(env: Env<'_>, config: Option<&Config>, data_dir: &Path, s3_configured: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    let key_file = data_dir.join(KEY_FILE);
    match env("MASTER_KEY") {
        Some(v) => match MasterKey::from_hex(&SecretString::from(v)) {
            Ok(_) => out.push(Finding::ok("env", "MASTER_KEY set")),
            Err(e) => out.push(Finding::fail(
                "env",
                format!("MASTER_KEY is set but invalid: {e}"),
                "set it to 64 hex characters (openssl rand -hex 32); to keep existing data use the original key",
            )),
        },
        None if s3_configured => out.push(Finding::fail(
            "env",
            "MASTER_KEY missing while S3 backup is configured: backups would be sealed with a key that exists only on this disk",
            "set MASTER_KEY (openssl rand -hex 32, or the content of the existing master.key) and keep a copy outside the machine",
        )),
        None if key_file.exists() => out.push(Finding::warn(
            "env",
            format!("MASTER_KEY missing: the gateway uses the key file {}", key_file.display()),
            "set MASTER_KEY to the file's content so a new machine can read this store and its backups",
        )),
        None => out.push(Finding::warn(
            "env",
            format!("MASTER_KEY missing: the gateway will generate {} on first start", key_file.display()),
            "set MASTER_KEY (openssl rand -hex 32) and keep a copy outside the machine",
        )),
    }
    let Some(cfg) = config else { return out };
    if cfg.llm.api_key.as_ref().is_some_and(|k| !k.expose_secret().trim().is_empty()) {
        out.push(Finding::ok("env", "llm.apiKey set"));
    } else {
        out.push(Finding::warn(
            "env",
            "llm.apiKey missing: agent turns will be refused by the LLM provider",
            "set REDPILL_API_KEY (referenced as \"apiKey\": \"${REDPILL_API_KEY}\" in the config)",
        ));
    }
    match &cfg.gateway.auth.token {
        Some(token) => match parse_presented(token) {
            Ok((TokenKind::Admin, _)) => out.push(Finding::ok("env", "admin token (gateway.auth.token) set")),
            _ => out.push(Finding::fail(
                "env",
                "gateway.auth.token (ADMIN_TOKEN) is not a crewgate admin token (cga_ + 48 hex characters)",
                "generate one with `crewgate tokens generate admin`",
            )),
        },
        None if env("DSTACK_APP_ID").is_some() => out.push(Finding::warn(
            "env",
            "no admin token configured: a first start on an empty store prints one to the CVM log",
            "set ADMIN_TOKEN (crewgate tokens generate admin) as an encrypted secret; CVM logs are not end-to-end encrypted",
        )),
        None => out.push(Finding::ok(
            "env",
            "no admin token configured: a first start on an empty store prints one once",
        )),
    }
    out
}

// ---------------------------------------------------------------------------------------------
// store

async fn check_store(args: &StoreArgs, env: Env<'_>, timeout: Duration) -> Finding {
    let location = match context::location(args) {
        Ok(l) => l,
        Err(e) => return Finding::fail("store", format!("{e:#}"), "fix --database-url / DATABASE_URL"),
    };
    let have_key = env("MASTER_KEY").is_some() || args.data_dir.join(KEY_FILE).exists();
    let what = location.describe();
    match &location {
        StoreLocation::Sqlite { path } if !path.exists() => {
            let dir = &args.data_dir;
            if !dir.exists() {
                return Finding::ok(
                    "store",
                    format!(
                        "{what}: no store yet and {} does not exist; the gateway creates both",
                        dir.display()
                    ),
                );
            }
            match probe_writable(dir) {
                Ok(()) => Finding::ok(
                    "store",
                    format!("{what}: no store yet (first start, or restored from S3); data dir is writable"),
                ),
                Err(e) => Finding::fail(
                    "store",
                    format!("data dir {} is not writable: {e}", dir.display()),
                    "give the gateway's user write access (in the image: uid 65532) or pick another --data-dir",
                ),
            }
        }
        StoreLocation::Sqlite { .. } if !have_key => Finding::fail(
            "store",
            format!(
                "{what} exists but neither MASTER_KEY nor {} is present, so its secrets cannot be read",
                KEY_FILE
            ),
            "set MASTER_KEY to the key this store was created with",
        ),
        StoreLocation::Postgres { .. } if !have_key => Finding::fail(
            "store",
            "PostgreSQL store without MASTER_KEY: every replica must use the same key",
            "set MASTER_KEY (openssl rand -hex 32) on every replica",
        ),
        _ => match tokio::time::timeout(timeout.max(Duration::from_secs(10)), open_and_count(args)).await {
            Ok(Ok(agents)) => Finding::ok(
                "store",
                format!("{what}: opened, migrations applied, master key matches ({agents} agent(s))"),
            ),
            Ok(Err(e)) => {
                let wrong_key = e.chain().any(|c| {
                    matches!(
                        c.downcast_ref::<crewgate_store::StoreError>(),
                        Some(crewgate_store::StoreError::WrongMasterKey)
                    )
                });
                let fix = if wrong_key {
                    "start with the MASTER_KEY this store was created with"
                } else {
                    "check the data dir / DATABASE_URL and the error above"
                };
                Finding::fail("store", format!("{e:#}"), fix)
            }
            Err(_elapsed) => Finding::fail(
                "store",
                format!("{what}: opening timed out"),
                "check that the database is reachable and not locked by a stuck process",
            ),
        },
    }
}

async fn open_and_count(args: &StoreArgs) -> Result<usize> {
    let opened = context::open_store(args).await?;
    let agents = opened.list_agents().await.context("listing agents")?;
    Ok(agents.len())
}

fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".crewgate-doctor-{}", std::process::id()));
    std::fs::write(&probe, b"probe")?;
    std::fs::remove_file(&probe)
}

// ---------------------------------------------------------------------------------------------
// S3

/// Where the backup goes, read the way `crewgate-backup` reads it: `backup.s3` in the config if
/// present, otherwise the `S3_*` environment variables (all unset = no backup).
#[derive(Debug, Clone)]
struct S3Target {
    endpoint: Option<String>,
    bucket: String,
    prefix: String,
    region: String,
    path_style: bool,
    access_key_id: String,
    secret_access_key: SecretString,
}

fn s3_target(config: Option<&Config>, env: Env<'_>) -> Result<Option<S3Target>, String> {
    if let Some(s3) = config.and_then(|c| c.backup.s3.as_ref()) {
        let access_key_id =
            s3.access_key_id.clone().filter(|v| !v.trim().is_empty()).or_else(|| env("S3_ACCESS_KEY_ID"));
        let secret = s3
            .secret_access_key
            .clone()
            .filter(|v| !v.expose_secret().trim().is_empty())
            .or_else(|| env("S3_SECRET_ACCESS_KEY").map(SecretString::from));
        let (Some(access_key_id), Some(secret_access_key)) = (access_key_id, secret) else {
            return Err("backup.s3 is set but its credentials (accessKeyId / secretAccessKey, or S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY) are not".into());
        };
        return Ok(Some(S3Target {
            endpoint: s3.endpoint.as_ref().map(|e| e.as_str().to_owned()),
            bucket: s3.bucket.clone(),
            prefix: s3.prefix.clone(),
            region: s3.region.clone().filter(|r| !r.is_empty()).unwrap_or_else(|| S3_DEFAULT_REGION.into()),
            path_style: s3.path_style,
            access_key_id,
            secret_access_key,
        }));
    }
    if !S3_VARS.iter().any(|n| env(n).is_some()) {
        return Ok(None);
    }
    let missing: Vec<&str> = S3_REQUIRED.into_iter().filter(|n| env(n).is_none()).collect();
    let (Some(bucket), Some(access_key_id), Some(secret)) =
        (env("S3_BUCKET"), env("S3_ACCESS_KEY_ID"), env("S3_SECRET_ACCESS_KEY"))
    else {
        return Err(format!("S3 backup is partly configured: {} not set", missing.join(", ")));
    };
    let endpoint = env("S3_ENDPOINT").map(|e| e.trim().trim_end_matches('/').to_owned());
    if let Some(e) = &endpoint
        && !(e.starts_with("https://") || e.starts_with("http://"))
    {
        return Err("S3_ENDPOINT must start with https:// (or http:// for a local server)".into());
    }
    let path_style = match env("S3_PATH_STYLE") {
        None => endpoint.is_some(),
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => return Err("S3_PATH_STYLE must be true or false".into()),
        },
    };
    Ok(Some(S3Target {
        endpoint,
        bucket: bucket.trim().to_owned(),
        prefix: env("S3_PREFIX").unwrap_or_else(|| S3_DEFAULT_PREFIX.into()),
        region: env("S3_REGION").unwrap_or_else(|| S3_DEFAULT_REGION.into()),
        path_style,
        access_key_id: access_key_id.trim().to_owned(),
        secret_access_key: SecretString::from(secret.trim().to_owned()),
    }))
}

impl S3Target {
    /// A ListObjectsV2 request for at most one key under the prefix: proves reachability, the
    /// credentials, the bucket and the list permission that a restore needs.
    fn list_url(&self) -> Result<Url> {
        let base = match &self.endpoint {
            Some(e) => e.clone(),
            None => format!("https://s3.{}.amazonaws.com", self.region),
        };
        let mut url = Url::parse(&base).with_context(|| format!("S3 endpoint {base} is not a URL"))?;
        if self.path_style {
            let path = format!("{}/{}", url.path().trim_end_matches('/'), self.bucket);
            url.set_path(&path);
        } else {
            let host = url.host_str().context("S3 endpoint has no host")?.to_owned();
            url.set_host(Some(&format!("{}.{host}", self.bucket)))
                .with_context(|| format!("bucket {} does not make a valid host name", self.bucket))?;
            url.set_path("/");
        }
        let prefix = self.prefix.trim_start_matches('/');
        // Already in canonical order and encoding (SigV4 signs the query as sent).
        url.set_query(Some(&format!(
            "list-type=2&max-keys=1&prefix={}",
            crewgate_core::url::percent_encode(prefix)
        )));
        Ok(url)
    }

    fn describe(&self) -> String {
        let at = self.endpoint.as_deref().map(redact_url).unwrap_or_else(|| format!("AWS {}", self.region));
        format!("s3://{}/{} at {at}", self.bucket, self.prefix)
    }
}

async fn check_s3(client: &reqwest::Client, target: &S3Target) -> (Finding, Option<f64>) {
    let what = target.describe();
    let url = match target.list_url() {
        Ok(u) => u,
        Err(e) => {
            return (Finding::fail("s3", format!("{what}: {e:#}"), "fix S3_ENDPOINT / S3_BUCKET"), None);
        }
    };
    let headers = match sigv4_headers(
        &url,
        &target.region,
        &target.access_key_id,
        &target.secret_access_key,
        SystemTime::now(),
    ) {
        Ok(h) => h,
        Err(e) => {
            return (Finding::fail("s3", format!("cannot sign the request: {e:#}"), "report this bug"), None);
        }
    };
    let started = Instant::now();
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            return (
                Finding::fail(
                    "s3",
                    format!("{what}: unreachable: {:#}", anyhow::Error::from(e)),
                    "check S3_ENDPOINT and that the machine can reach it",
                ),
                None,
            );
        }
    };
    let ms = started.elapsed().as_millis();
    let date = clock_offset(&response, started);
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let code = xml_code(&body).unwrap_or_default();
    let code_note = if code.is_empty() { String::new() } else { format!(", {code}") };
    let finding = match status {
        s if s.is_success() => {
            Finding::ok("s3", format!("{what}: reachable, credentials accepted, listing allowed ({ms} ms)"))
        }
        _ if code == "RequestTimeTooSkewed" => Finding::fail(
            "s3",
            format!(
                "{what}: request refused because this machine's clock is off (HTTP {}{code_note})",
                status.as_u16()
            ),
            "sync the clock (NTP)",
        ),
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => Finding::fail(
            "s3",
            format!("{what}: credentials refused (HTTP {}{code_note})", status.as_u16()),
            "check S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY and that the key may list, read, write and delete under the prefix",
        ),
        StatusCode::NOT_FOUND => Finding::fail(
            "s3",
            format!("{what}: bucket not found (HTTP 404{code_note})"),
            "create the bucket or fix S3_BUCKET (and S3_PATH_STYLE for self-hosted servers)",
        ),
        s if s.is_redirection()
            || code.contains("Region")
            || code == "AuthorizationHeaderMalformed"
            || code == "PermanentRedirect" =>
        {
            Finding::fail(
                "s3",
                format!("{what}: wrong region or endpoint (HTTP {}{code_note})", status.as_u16()),
                "set S3_REGION to the bucket's region, or S3_ENDPOINT / S3_PATH_STYLE for other providers",
            )
        }
        s => Finding::fail(
            "s3",
            format!("{what}: unexpected answer (HTTP {}{code_note})", s.as_u16()),
            "check the S3 settings and the provider's status",
        ),
    };
    (finding, date)
}

/// `<Code>…</Code>` of an S3 XML error body.
fn xml_code(body: &str) -> Option<String> {
    let start = body.find("<Code>")? + "<Code>".len();
    let len = body[start..].find("</Code>")?;
    Some(body[start..start + len].trim().to_owned())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .map_err(|e| anyhow::anyhow!("HMAC key rejected: {e}"))?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().to_vec())
}

/// AWS Signature Version 4 headers for a body-less GET of `url` (whose query must already be in
/// canonical order and encoding). `Host` is signed as reqwest sends it.
fn sigv4_headers(
    url: &Url,
    region: &str,
    access_key_id: &str,
    secret: &SecretString,
    now: SystemTime,
) -> Result<Vec<(&'static str, String)>> {
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => anyhow::bail!("URL has no host"),
    };
    let amz_date = amz_date(now)?;
    let day = &amz_date[..8];
    let payload_hash = hex::encode(Sha256::digest(b""));
    let signed_headers = "host;x-amz-content-sha256;x-amz-date";
    let canonical_request = format!(
        "GET\n{}\n{}\nhost:{host}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{amz_date}\n\n{signed_headers}\n{payload_hash}",
        url.path(),
        url.query().unwrap_or(""),
    );
    let scope = format!("{day}/{region}/s3/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac_sha256(format!("AWS4{}", secret.expose_secret()).as_bytes(), day.as_bytes())?;
    for part in [region, "s3", "aws4_request"] {
        key = hmac_sha256(&key, part.as_bytes())?;
    }
    let signature = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes())?);
    Ok(vec![
        ("x-amz-date", amz_date.clone()),
        ("x-amz-content-sha256", payload_hash),
        (
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
            ),
        ),
    ])
}

/// `YYYYMMDDTHHMMSSZ` (UTC).
fn amz_date(t: SystemTime) -> Result<String> {
    let secs = t.duration_since(UNIX_EPOCH).context("the clock is before 1970")?.as_secs();
    let days = i64::try_from(secs / 86_400).context("date out of range")?;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    Ok(format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60))
}

// ---------------------------------------------------------------------------------------------
// LLM

async fn check_llm(client: &reqwest::Client, cfg: &Config) -> (Vec<Finding>, Option<f64>) {
    let base = redact_url(cfg.llm.base_url.as_str());
    let url = cfg.llm.base_url.join("models");
    let key = cfg.llm.api_key.as_ref().filter(|k| !k.expose_secret().trim().is_empty());
    let mut request = client.get(&url);
    if let Some(k) = key {
        request = request.bearer_auth(k.expose_secret());
    }
    let started = Instant::now();
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            return (
                vec![Finding::fail(
                    "llm",
                    format!("{base}: unreachable: {:#}", anyhow::Error::from(e)),
                    "check llm.baseUrl (LLM_BASE_URL) and that the machine can reach it",
                )],
                None,
            );
        }
    };
    let ms = started.elapsed().as_millis();
    let date = clock_offset(&response, started);
    let status = response.status();
    let key_fix = if key.is_some() {
        "check REDPILL_API_KEY (llm.apiKey) and the account's credits"
    } else {
        "set REDPILL_API_KEY (llm.apiKey)"
    };
    let finding = match status {
        s if s.is_success() => {
            let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
            return (models_findings(&base, ms, &body, cfg), date);
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Finding::fail(
            "llm",
            format!("{base}: GET /models refused the API key (HTTP {})", status.as_u16()),
            key_fix,
        ),
        StatusCode::NOT_FOUND => Finding::warn(
            "llm",
            format!("{base}: GET /models answered 404"),
            "check llm.baseUrl: OpenAI-compatible base URLs usually end in /v1",
        ),
        s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => Finding::warn(
            "llm",
            format!("{base}: GET /models answered HTTP {} (provider busy or down)", s.as_u16()),
            "retry later; consider a fallback model or endpoint",
        ),
        s => Finding::fail("llm", format!("{base}: GET /models answered HTTP {}", s.as_u16()), key_fix),
    };
    (vec![finding], date)
}

/// Checks the configured models against the catalog (`data[].id`, RedPill's `supported_parameters`).
fn models_findings(base: &str, ms: u128, body: &serde_json::Value, cfg: &Config) -> Vec<Finding> {
    let catalog: Vec<&serde_json::Value> =
        body.get("data").and_then(|d| d.as_array()).map(|a| a.iter().collect()).unwrap_or_default();
    let mut wanted: Vec<&str> = vec![cfg.llm.model.primary.as_str()];
    for a in &cfg.agents.list {
        if let Some(m) = &a.model
            && !wanted.contains(&m.primary.as_str())
        {
            wanted.push(m.primary.as_str());
        }
    }
    let mut out = vec![Finding::ok(
        "llm",
        format!("{base}: GET /models answered 200 in {ms} ms ({} model(s) listed)", catalog.len()),
    )];
    if catalog.is_empty() {
        return out;
    }
    let entry = |id: &str| catalog.iter().find(|m| m.get("id").and_then(|v| v.as_str()) == Some(id)).copied();
    let missing: Vec<&str> = wanted.iter().copied().filter(|m| entry(m).is_none()).collect();
    if !missing.is_empty() {
        out.push(Finding::warn(
            "llm",
            format!("model(s) not in the endpoint's catalog: {}", missing.join(", ")),
            "set llm.model (LLM_MODEL) or the agent's model to a listed id",
        ));
    }
    let no_tools: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|m| {
            entry(m)
                .and_then(|e| e.get("supported_parameters"))
                .and_then(|p| p.as_array())
                .is_some_and(|p| !p.iter().any(|v| v.as_str() == Some("tools")))
        })
        .collect();
    if !no_tools.is_empty() {
        out.push(Finding::warn(
            "llm",
            format!("model(s) without tool calling in the catalog: {}", no_tools.join(", ")),
            "agents need tool calls: pick a model whose supported_parameters list \"tools\"",
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Google, clock, dstack

fn check_google(cfg: &Config) -> Vec<Finding> {
    if !cfg.skill_enabled(SkillId::Gog) {
        return vec![Finding::ok("google", "gog skill not enabled: Google tools are off")];
    }
    let mut out = Vec::new();
    let gog = cfg.skills.installed.gog.as_ref().map(|g| &g.config);
    let id = gog.and_then(|c| c.client_id.as_deref()).map(str::trim).filter(|v| !v.is_empty());
    let secret_set =
        gog.and_then(|c| c.client_secret.as_ref()).is_some_and(|s| !s.expose_secret().trim().is_empty());
    let mut missing = Vec::new();
    if id.is_none() {
        missing.push("clientId (GOOGLE_CLIENT_ID)");
    }
    if !secret_set {
        missing.push("clientSecret (GOOGLE_CLIENT_SECRET)");
    }
    if !missing.is_empty() {
        out.push(Finding::fail(
            "google",
            format!(
                "the gog skill is enabled but {} not set: nobody can connect Google",
                missing.join(" and ")
            ),
            "create a Google OAuth client (deploy/phala/README.md) and set it, or set \"enabled\": false",
        ));
    } else if id.is_some_and(|i| !i.ends_with(".apps.googleusercontent.com")) {
        out.push(Finding::warn(
            "google",
            "clientId does not look like a Google OAuth client id (…apps.googleusercontent.com)",
            "copy the client id of a \"Web application\" OAuth client",
        ));
    }
    match &cfg.gateway.public_url {
        None => out.push(Finding::fail(
            "google",
            "gateway.publicUrl is not set, so there is no fixed OAuth redirect URI",
            "set PUBLIC_URL (on Phala: https://<app-id>-18789.<gateway-domain>)",
        )),
        Some(u) => {
            let redirect = u.join("oauth/google/callback");
            if !u.is_https() && !u.is_loopback() {
                out.push(Finding::fail(
                    "google",
                    format!("redirect URI {redirect} is not https"),
                    "Google accepts plain http only for localhost: use the https public URL",
                ));
            } else if missing.is_empty() {
                out.push(
                    Finding::ok("google", format!("client id and secret set; redirect URI {redirect}"))
                        .with_fix(
                            "register exactly this URI under the OAuth client's Authorized redirect URIs",
                        ),
                );
            }
        }
    }
    out
}

/// `offsets`: (source, local clock minus the source's clock in seconds), best source first.
fn check_clock(offsets: &[(&str, f64)]) -> Finding {
    let Some((source, offset)) = offsets.first() else {
        return Finding::warn(
            "clock",
            "not checked: no endpoint answered with a Date header",
            "make sure the host clock is synchronised (NTP)",
        );
    };
    let skew = offset.abs();
    if skew > MAX_SKEW_SECS {
        Finding::warn(
            "clock",
            format!(
                "this machine's clock is {skew:.0} s {} {source}",
                if *offset > 0.0 { "ahead of" } else { "behind" }
            ),
            "synchronise the clock (NTP): OAuth, S3 signatures and token expiry depend on it",
        )
    } else {
        Finding::ok("clock", format!("within {skew:.0} s of {source}"))
    }
}

fn check_dstack(env: Env<'_>) -> Option<Finding> {
    let socket = Path::new(DSTACK_SOCKET).exists();
    match (socket, env("DSTACK_APP_ID").is_some()) {
        (true, _) => Some(Finding::ok("dstack", format!("guest agent socket {DSTACK_SOCKET} is mounted"))),
        (false, true) => Some(Finding::warn(
            "dstack",
            format!("DSTACK_APP_ID is set but {DSTACK_SOCKET} is not mounted"),
            "mount /var/run/dstack.sock:/var/run/dstack.sock in docker-compose.yml",
        )),
        (false, false) => None,
    }
}

// ---------------------------------------------------------------------------------------------
// helpers

fn http_client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("crewgate-doctor/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

/// Local clock minus the server's `Date`, in seconds (positive: this machine is ahead), taken at
/// the middle of the request so latency does not count as skew. `Date` has one-second
/// resolution, so it is compared with the middle of its second.
fn clock_offset(response: &reqwest::Response, started: Instant) -> Option<f64> {
    let date = response.headers().get(reqwest::header::DATE)?.to_str().ok()?;
    let server = httpdate::parse_http_date(date).ok()? + Duration::from_millis(500);
    let local = SystemTime::now().checked_sub(started.elapsed() / 2)?;
    Some(match local.duration_since(server) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    })
}

/// A URL for messages: without user name and password.
fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            if !u.username().is_empty() || u.password().is_some() {
                let _ = u.set_username("");
                let _ = u.set_password(None);
            }
            u.as_str().trim_end_matches('/').to_owned()
        }
        Err(_) => "<invalid URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name: &str| map.get(name).cloned().filter(|v| !v.trim().is_empty())
    }

    fn config(text: &str) -> Config {
        Config::parse(text, "test.jsonc", &|_: &str| None).unwrap()
    }

    #[test]
    fn amz_dates() {
        assert_eq!(amz_date(UNIX_EPOCH).unwrap(), "19700101T000000Z");
        assert_eq!(amz_date(UNIX_EPOCH + Duration::from_secs(1_369_353_600)).unwrap(), "20130524T000000Z");
        assert_eq!(
            amz_date(UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661)).unwrap(),
            "20000229T010101Z"
        );
        assert_eq!(amz_date(UNIX_EPOCH + Duration::from_secs(4_107_542_399)).unwrap(), "21000228T235959Z");
    }

    /// The "GET Bucket (List Objects)" example of the AWS SigV4 documentation.
    #[test]
    fn sigv4_matches_the_aws_example() {
        let url = Url::parse("https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J").unwrap();
        let headers = sigv4_headers(
            &url,
            "us-east-1",
            "AKIAIOSFODNN7EXAMPLE",
            &SecretString::from("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            UNIX_EPOCH + Duration::from_secs(1_369_353_600),
        )
        .unwrap();
        let auth = &headers.iter().find(|(n, _)| *n == "authorization").unwrap().1;
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;x-amz-content-sha256;x-amz-date, \
             Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn s3_from_env_all_or_nothing() {
        assert!(s3_target(None, &env_of(&[])).unwrap().is_none());
        assert!(s3_target(None, &env_of(&[("S3_PREFIX", ""), ("S3_REGION", " ")])).unwrap().is_none());
        let err = s3_target(None, &env_of(&[("S3_REGION", "eu-west-1")])).unwrap_err();
        assert!(err.contains("S3_BUCKET, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY"), "{err}");
        let t = s3_target(
            None,
            &env_of(&[
                ("S3_ENDPOINT", "http://127.0.0.1:9000/"),
                ("S3_BUCKET", "b"),
                ("S3_ACCESS_KEY_ID", "id"),
                ("S3_SECRET_ACCESS_KEY", "secret"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert!(t.path_style);
        assert_eq!(t.prefix, "crewgate/");
        assert_eq!(
            t.list_url().unwrap().as_str(),
            "http://127.0.0.1:9000/b?list-type=2&max-keys=1&prefix=crewgate%2F"
        );
        let aws = S3Target { endpoint: None, path_style: false, region: "eu-west-1".into(), ..t };
        assert_eq!(
            aws.list_url().unwrap().as_str(),
            "https://b.s3.eu-west-1.amazonaws.com/?list-type=2&max-keys=1&prefix=crewgate%2F"
        );
        assert!(!aws.describe().contains("secret"));
    }

    #[test]
    fn google_redirect_uri_rules() {
        let with = |url: &str, id: &str| {
            config(&format!(
                r#"{{ "gateway": {{ "publicUrl": "{url}" }},
                     "skills": {{ "installed": {{ "gog": {{ "config": {{ "clientId": "{id}", "clientSecret": "s" }} }} }} }} }}"#
            ))
        };
        let ok = check_google(&with("https://app-18789.dstack.example", "1-x.apps.googleusercontent.com"));
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].level, Level::Ok);
        assert!(ok[0].detail.contains("https://app-18789.dstack.example/oauth/google/callback"), "{}", ok[0]);
        assert_eq!(
            check_google(&with("http://127.0.0.1:18789", "1-x.apps.googleusercontent.com"))[0].level,
            Level::Ok
        );
        let http = check_google(&with("http://crew.example.com", "1-x.apps.googleusercontent.com"));
        assert!(http.iter().any(|f| f.level == Level::Fail && f.detail.contains("not https")), "{http:?}");
        let odd = check_google(&with("https://a.example", "nope"));
        assert!(odd.iter().any(|f| f.level == Level::Warn), "{odd:?}");
        let missing = check_google(&config(r#"{ "skills": { "installed": { "gog": {} } } }"#));
        assert!(
            missing[0].detail.contains("GOOGLE_CLIENT_ID")
                && missing[0].detail.contains("GOOGLE_CLIENT_SECRET")
        );
        assert!(missing.iter().any(|f| f.detail.contains("publicUrl")));
        assert_eq!(check_google(&Config::default())[0].level, Level::Ok);
    }

    #[test]
    fn env_findings_never_contain_secret_values() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(
            r#"{ "llm": { "apiKey": "rp_supersecret" }, "gateway": { "auth": { "token": "cga_nothex" } } }"#,
        );
        let findings =
            check_env(&env_of(&[("MASTER_KEY", "zz-not-a-key-zz")]), Some(&cfg), dir.path(), false);
        let text: String = findings.iter().map(|f| format!("{f}\n")).collect();
        assert!(
            !text.contains("rp_supersecret") && !text.contains("cga_nothex") && !text.contains("zz-not"),
            "{text}"
        );
        assert_eq!(findings.iter().filter(|f| f.level == Level::Fail).count(), 2, "{text}");
        let no_key = check_env(&env_of(&[]), None, dir.path(), true);
        assert_eq!(no_key[0].level, Level::Fail, "S3 without MASTER_KEY must fail");
    }

    #[test]
    fn clock_skew_is_reported_beyond_30_seconds() {
        assert_eq!(check_clock(&[("x", 0.4), ("y", 500.0)]).level, Level::Ok);
        let f = check_clock(&[("x", -120.0)]);
        assert_eq!(f.level, Level::Warn);
        assert!(f.detail.contains("120 s behind x"), "{f}");
        assert!(check_clock(&[("x", 31.0)]).detail.contains("ahead of"));
        assert_eq!(check_clock(&[]).level, Level::Warn);
    }

    #[test]
    fn report_line_format() {
        let f = Finding::fail("llm", "refused", "set it");
        assert_eq!(f.to_string(), "FAIL  llm: refused — set it");
        assert_eq!(Finding::ok("store", "fine").to_string(), "ok    store: fine");
        assert_eq!(xml_code("<Error><Code>NoSuchBucket</Code></Error>").as_deref(), Some("NoSuchBucket"));
        assert_eq!(redact_url("https://u:p@h.example/v1/"), "https://h.example/v1");
    }
}
