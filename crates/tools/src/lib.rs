//! Native Google (per user), Notion and Attio (per company) tools for crewgate agents.
//!
//! [`specs`] lists every tool's manifest (effect, credential, scopes, skill, action family).
//! [`Toolbox::call`] validates the model's arguments against the manifest schema, then talks to
//! the API. It does not decide *whether* a write may run: the approval gate calls it only after
//! the owner approved (DESIGN §3 steps 4–6), passing the proposal's idempotency key.
//!
//! Invariants:
//! - invalid arguments never cause a request ([`ToolError::nothing_sent`]);
//! - a Google call uses only the credential in its [`ToolContext`] (the calling user's);
//! - outbound requests go only to the configured base URLs; redirects are not followed;
//! - secrets live in `SecretString`s and are never logged or put in error messages;
//! - results are trimmed to [`ToolSettings::result_budget`] before they reach the model.

mod attio;
mod credentials;
mod error;
mod google;
mod http;
mod limit;
mod notion;
mod schema;
mod spec;
mod summary;
mod trim;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;

pub use credentials::{CredentialError, GoogleCredentials, GoogleToken, InMemoryGoogleCredentials};
pub use error::ToolError;
/// Checks model-supplied arguments against a manifest's JSON Schema (the subset manifests use).
pub use schema::validate as validate_arguments;
pub use spec::{Credential, Effect, Skill, ToolSpec, spec, specs};
pub use summary::{WriteSummary, summarize};

use limit::RateLimiter;

/// Pinned Notion API version (data sources; the version the OpenClaw notion skill pins).
pub const NOTION_VERSION: &str = "2025-09-03";
/// Notion: "an average of three requests per second" per integration.
pub const NOTION_REQUESTS_PER_SECOND: f64 = 3.0;
/// Attio: "100 requests per second for read requests, 25 requests per second for write requests".
pub const ATTIO_READS_PER_SECOND: f64 = 100.0;
pub const ATTIO_WRITES_PER_SECOND: f64 = 25.0;

/// Where the APIs are and the company credentials. `Default` points at the real services.
#[derive(Clone)]
pub struct ToolSettings {
    /// Replaces the origin of every Google API host (Gmail, Calendar, Drive, Docs, Sheets,
    /// People), keeping the real paths (`integrations.google.apiBase`). `None`: real hosts.
    pub google_api_base: Option<String>,
    pub google_token_url: String,
    /// OAuth client of the deployment (public, but kept with its secret).
    pub google_client_id: Option<String>,
    pub google_client_secret: Option<SecretString>,
    /// Up to and including `/v1`.
    pub notion_api_base: String,
    pub notion_api_key: Option<SecretString>,
    /// Up to and including `/v2`.
    pub attio_api_base: String,
    pub attio_api_key: Option<SecretString>,
    /// Maximum size (bytes of JSON) of a result handed to the model.
    pub result_budget: usize,
    /// Longest `Retry-After` we wait out inside one call before giving up.
    pub max_retry_wait: Duration,
    pub request_timeout: Duration,
}

impl Default for ToolSettings {
    fn default() -> Self {
        Self {
            google_api_base: None,
            google_token_url: "https://oauth2.googleapis.com/token".into(),
            google_client_id: None,
            google_client_secret: None,
            notion_api_base: "https://api.notion.com/v1".into(),
            notion_api_key: None,
            attio_api_base: "https://api.attio.com/v2".into(),
            attio_api_key: None,
            result_budget: 7_500,
            max_retry_wait: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for ToolSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |s: &Option<SecretString>| if s.is_some() { "[set]" } else { "[unset]" };
        f.debug_struct("ToolSettings")
            .field("google_api_base", &self.google_api_base)
            .field("google_token_url", &self.google_token_url)
            .field("google_client_id", &self.google_client_id)
            .field("google_client_secret", &set(&self.google_client_secret))
            .field("notion_api_base", &self.notion_api_base)
            .field("notion_api_key", &set(&self.notion_api_key))
            .field("attio_api_base", &self.attio_api_base)
            .field("attio_api_key", &set(&self.attio_api_key))
            .field("result_budget", &self.result_budget)
            .finish()
    }
}

/// Per-call context: whose Google account, and the write's idempotency key.
#[derive(Clone, Default)]
pub struct ToolContext {
    /// The calling user's Google credential; `None` if they have not connected Google.
    pub google: Option<Arc<dyn GoogleCredentials>>,
    /// Derived from the proposal by the approval gate. Forwarded as an `Idempotency-Key` header on
    /// every write request, and used where the API really deduplicates: a Calendar event's id
    /// and a Gmail message's `Message-ID`.
    pub idempotency_key: Option<String>,
}

impl fmt::Debug for ToolContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolContext")
            .field("google", &self.google.as_ref().map(|_| "[credential]"))
            .field("idempotency_key", &self.idempotency_key)
            .finish()
    }
}

impl ToolContext {
    pub fn new() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn with_google(mut self, creds: Arc<dyn GoogleCredentials>) -> Self {
        self.google = Some(creds);
        self
    }

    #[must_use]
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// A successful call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    /// What the model gets, already within the size budget.
    pub content: Value,
    /// Id of what a write created or changed (message, event, page, record, …), for the audit
    /// log and proposal record.
    pub external_id: Option<String>,
}

impl ToolOutput {
    pub(crate) fn new(content: Value) -> Self {
        Self { content, external_id: None }
    }

    pub(crate) fn with_id(content: Value, id: Option<String>) -> Self {
        Self { content, external_id: id }
    }
}

/// What a crash-recovery check learned about an earlier run of a write with the same
/// idempotency key (DESIGN §3 step 6: never re-send blindly).
#[derive(Debug, Clone, PartialEq)]
pub enum PriorExecution {
    /// The write happened; this is what it produced.
    Found(ToolOutput),
    /// The API has no trace of it: executing now will not duplicate it.
    NotFound,
    /// This tool's API cannot tell; ask the person ("unknown — check manually").
    Unknown,
}

struct Inner {
    http: reqwest::Client,
    settings: ToolSettings,
    notion_limiter: RateLimiter,
    attio_reads: RateLimiter,
    attio_writes: RateLimiter,
}

/// Runs tools. Cheap to clone; one per process so the rate limiters are shared.
#[derive(Clone)]
pub struct Toolbox {
    inner: Arc<Inner>,
}

impl fmt::Debug for Toolbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Toolbox").field("settings", &self.inner.settings).finish()
    }
}

/// The HTTP client could not be built (TLS backend).
#[derive(Debug, thiserror::Error)]
#[error("could not build the HTTP client for tools")]
pub struct BuildError(#[source] reqwest::Error);

impl Toolbox {
    pub fn new(settings: ToolSettings) -> Result<Self, BuildError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("crewgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(BuildError)?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                settings,
                notion_limiter: RateLimiter::per_second(NOTION_REQUESTS_PER_SECOND),
                attio_reads: RateLimiter::per_second(ATTIO_READS_PER_SECOND),
                attio_writes: RateLimiter::per_second(ATTIO_WRITES_PER_SECOND),
            }),
        })
    }

    /// Checks `args` against the tool's schema and the rules a schema cannot express (one of
    /// two ids, …). The approval gate should call this before creating a proposal.
    pub fn validate(&self, tool: &str, args: &Value) -> Result<&'static ToolSpec, ToolError> {
        validate(tool, args)
    }

    /// Runs `tool`. For write tools, call this only once the write is approved.
    pub async fn call(&self, tool: &str, args: &Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let spec = validate(tool, args)?;
        tracing::debug!(tool, effect = ?spec.effect, "tool call");
        let result = match spec.credential {
            Credential::GoogleUser => google::call(&self.inner, spec, args, ctx).await,
            Credential::NotionCompany => notion::call(&self.inner, spec, args, ctx).await,
            Credential::AttioCompany => attio::call(&self.inner, spec, args, ctx).await,
        };
        if let Err(e) = &result {
            tracing::info!(tool, error = %e, "tool call failed");
        }
        result
    }
}

impl Toolbox {
    /// Asks the API whether a write with `ctx.idempotency_key` already happened. Supported where
    /// the key becomes something searchable: `gmail_send` (our `Message-ID`, found with an
    /// `rfc822msgid:` search) and `calendar_create_event` (the event id). Everything else, and
    /// calls without a key, answer [`PriorExecution::Unknown`].
    pub async fn find_prior_execution(
        &self,
        tool: &str,
        args: &Value,
        ctx: &ToolContext,
    ) -> Result<PriorExecution, ToolError> {
        let spec = validate(tool, args)?;
        match (spec.credential, ctx.idempotency_key.as_deref()) {
            (Credential::GoogleUser, Some(key)) => google::prior(&self.inner, spec, args, ctx, key).await,
            _ => Ok(PriorExecution::Unknown),
        }
    }
}

fn validate(tool: &str, args: &Value) -> Result<&'static ToolSpec, ToolError> {
    let spec = spec::spec(tool).ok_or_else(|| ToolError::UnknownTool(tool.to_owned()))?;
    schema::validate(&spec.parameters, args).map_err(ToolError::InvalidArguments)?;
    // Ids go into URL paths; "." and ".." would be resolved by the URL parser into another path.
    if let Some((k, _)) = args
        .as_object()
        .and_then(|o| o.iter().find(|(_, v)| v.as_str().is_some_and(|s| matches!(s.trim(), "." | ".."))))
    {
        return Err(ToolError::InvalidArguments(format!("{k} is not a valid id")));
    }
    match spec.credential {
        Credential::GoogleUser => google::check_args(spec.name, args)?,
        Credential::NotionCompany => notion::check_args(spec.name, args)?,
        Credential::AttioCompany => attio::check_args(spec.name, args)?,
    }
    Ok(spec)
}

/// Small argument readers shared by the modules (arguments are schema-checked already).
pub(crate) mod args {
    use serde_json::Value;

    pub(crate) fn str<'a>(a: &'a Value, k: &str) -> Option<&'a str> {
        a.get(k).and_then(Value::as_str)
    }

    pub(crate) fn req<'a>(a: &'a Value, k: &str) -> &'a str {
        str(a, k).unwrap_or_default()
    }

    pub(crate) fn u64_or(a: &Value, k: &str, default: u64) -> u64 {
        a.get(k).and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64))).unwrap_or(default)
    }

    pub(crate) fn bool(a: &Value, k: &str) -> Option<bool> {
        a.get(k).and_then(Value::as_bool)
    }

    pub(crate) fn strings(a: &Value, k: &str) -> Vec<String> {
        a.get(k)
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    }

    pub(crate) fn has(a: &Value, k: &str) -> bool {
        a.get(k).is_some_and(|v| !v.is_null())
    }
}
