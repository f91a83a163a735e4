//! Google tools: one user's OAuth credential per call, refreshed when expired or on a 401.

mod calendar;
mod drive;
mod gmail;
pub(crate) mod mime;
mod people;
mod sheets;

use crewgate_core::{Millis, now_millis};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::credentials::{CredentialError, GoogleCredentials};
use crate::error::ToolError;
use crate::http::{Answer, backoff, is_transient, send, short};
use crate::spec::ToolSpec;
use crate::{Inner, PriorExecution, ToolContext, ToolOutput};

const SERVICE: &str = "Google";
/// Refresh this long before the recorded expiry, so a token does not die in flight.
const EXPIRY_MARGIN_MS: Millis = 60_000;

pub(crate) const RECONNECT: &str = "Google access for this user was revoked or has expired: reconnect Google on the dashboard (Account → Google → Reconnect Google), then try again";

/// Which Google API (and so which real host) a request goes to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Api {
    Gmail,
    Calendar,
    Drive,
    Sheets,
    People,
}

impl Api {
    fn origin(self) -> &'static str {
        match self {
            Self::Gmail => "https://gmail.googleapis.com",
            Self::Calendar | Self::Drive => "https://www.googleapis.com",
            Self::Sheets => "https://sheets.googleapis.com",
            Self::People => "https://people.googleapis.com",
        }
    }
}

pub(crate) fn check_args(tool: &str, a: &Value) -> Result<(), ToolError> {
    match tool {
        "gmail_read" => gmail::check_read(a),
        "gmail_send" | "gmail_draft_create" => gmail::check_compose(tool, a),
        "calendar_create_event" | "calendar_update_event" => calendar::check(tool, a),
        _ => Ok(()),
    }
}

pub(crate) async fn call(
    inner: &Inner,
    spec: &'static ToolSpec,
    args: &Value,
    ctx: &ToolContext,
) -> Result<ToolOutput, ToolError> {
    let creds = ctx.google.as_deref().ok_or(ToolError::NotConnected)?;
    let mut scopes = spec.scopes.to_vec();
    if crate::args::has(args, "reply_to_message_id") {
        // Replying reads the original's headers first.
        scopes.push("gmail.readonly");
    }
    let mut g = Session::open(inner, creds, &scopes, ctx.idempotency_key.as_deref()).await?;
    match spec.name {
        "gmail_search" => gmail::search(&mut g, args).await,
        "gmail_read" => gmail::read(&mut g, args).await,
        "gmail_draft_create" => gmail::compose(&mut g, args, false).await,
        "gmail_send" => gmail::compose(&mut g, args, true).await,
        "calendar_list_events" => calendar::list(&mut g, args).await,
        "calendar_freebusy" => calendar::freebusy(&mut g, args).await,
        "calendar_create_event" => calendar::create(&mut g, args).await,
        "calendar_update_event" => calendar::update(&mut g, args).await,
        "drive_search" => drive::search(&mut g, args).await,
        "docs_read" => drive::read_doc(&mut g, args).await,
        "sheets_read" => sheets::read(&mut g, args).await,
        "sheets_update" => sheets::write(&mut g, args, false).await,
        "sheets_append" => sheets::write(&mut g, args, true).await,
        "contacts_search" => people::search(&mut g, args).await,
        other => Err(ToolError::UnknownTool(other.to_owned())),
    }
}

pub(crate) async fn prior(
    inner: &Inner,
    spec: &'static ToolSpec,
    args: &Value,
    ctx: &ToolContext,
    key: &str,
) -> Result<PriorExecution, ToolError> {
    if !matches!(spec.name, "gmail_send" | "calendar_create_event") || crate::args::has(args, "draft_id") {
        return Ok(PriorExecution::Unknown);
    }
    let creds = ctx.google.as_deref().ok_or(ToolError::NotConnected)?;
    let mut scopes = spec.scopes.to_vec();
    if spec.name == "gmail_send" {
        scopes.push("gmail.readonly"); // the lookup is a search
    }
    let mut g = Session::open(inner, creds, &scopes, Some(key)).await?;
    match spec.name {
        "gmail_send" => gmail::prior(&mut g, key).await,
        _ => calendar::prior(&mut g, args, key).await,
    }
}

/// One tool call's view of one user's Google account.
pub(crate) struct Session<'a> {
    inner: &'a Inner,
    creds: &'a dyn GoogleCredentials,
    access: SecretString,
    refreshed: bool,
    pub(crate) email: Option<String>,
    pub(crate) idempotency_key: Option<&'a str>,
}

impl<'a> Session<'a> {
    async fn open(
        inner: &'a Inner,
        creds: &'a dyn GoogleCredentials,
        scopes: &[&str],
        idempotency_key: Option<&'a str>,
    ) -> Result<Self, ToolError> {
        let token = creds.load().await.map_err(cred_error)?;
        if let Some(granted) = &token.scopes {
            let missing: Vec<&str> = scopes.iter().copied().filter(|need| !covered(need, granted)).collect();
            if !missing.is_empty() {
                return Err(ToolError::MissingScopes { missing: missing.join(", ") });
            }
        }
        let fresh = token.expires_at.is_none_or(|at| at > now_millis() + EXPIRY_MARGIN_MS);
        let mut s = Self {
            inner,
            creds,
            access: token.access_token.clone().unwrap_or_else(|| SecretString::from(String::new())),
            refreshed: false,
            email: token.email.clone(),
            idempotency_key,
        };
        if token.access_token.is_none() || !fresh {
            s.refresh(token.refresh_token.as_ref()).await?;
        }
        Ok(s)
    }

    pub(crate) fn budget(&self) -> usize {
        self.inner.settings.result_budget
    }

    fn url(&self, api: Api, path: &str) -> String {
        let base = self.inner.settings.google_api_base.as_deref().unwrap_or(api.origin());
        format!("{}{path}", base.trim_end_matches('/'))
    }

    /// Exchanges the refresh token for a new access token and stores it.
    async fn refresh(&mut self, refresh_token: Option<&SecretString>) -> Result<(), ToolError> {
        let settings = &self.inner.settings;
        let (Some(id), Some(secret)) = (&settings.google_client_id, &settings.google_client_secret) else {
            return Err(ToolError::NotConfigured(
                "the Google OAuth client is not configured (skills.installed.steipete/gog.config clientId/clientSecret)"
                    .into(),
            ));
        };
        let refresh_token = match refresh_token {
            Some(t) => t.clone(),
            None => match self.creds.load().await.map_err(cred_error)?.refresh_token {
                Some(t) => t,
                None => return self.dead_grant("no refresh token stored").await,
            },
        };
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
            ("client_id", id.as_str()),
            ("client_secret", secret.expose_secret()),
        ];
        let answer = send(SERVICE, self.inner.http.post(&settings.google_token_url).form(&form)).await?;
        let body = answer.json_or_null();
        if answer.status.is_success() {
            let Some(access) = body.get("access_token").and_then(Value::as_str) else {
                return Err(ToolError::unexpected(SERVICE, "token response without access_token"));
            };
            let expires_in = body.get("expires_in").and_then(Value::as_i64).unwrap_or(3600);
            let access = SecretString::from(access.to_owned());
            self.creds
                .store_access_token(&access, now_millis() + expires_in.saturating_mul(1000))
                .await
                .map_err(ToolError::Credentials)?;
            self.access = access;
            self.refreshed = true;
            tracing::debug!("google access token refreshed");
            return Ok(());
        }
        let code = body.get("error").and_then(Value::as_str).unwrap_or_default();
        let description = body.get("error_description").and_then(Value::as_str).unwrap_or_default();
        match code {
            "invalid_grant" => self.dead_grant(description).await,
            "invalid_client" | "unauthorized_client" => Err(ToolError::NotConfigured(format!(
                "Google rejected the OAuth client ({code}): check the gog skill's clientId/clientSecret"
            ))),
            _ => Err(ToolError::Api {
                service: SERVICE,
                status: answer.status.as_u16(),
                message: format!("refreshing the access token failed ({}): try again later", short(code)),
            }),
        }
    }

    async fn dead_grant(&self, reason: &str) -> Result<(), ToolError> {
        let reason = if reason.is_empty() { "invalid_grant" } else { reason };
        self.creds.mark_needs_reconnect(reason).await.map_err(ToolError::Credentials)?;
        tracing::info!("google grant is dead; marked needs-reconnect");
        Err(ToolError::NeedsReconnect(RECONNECT.into()))
    }

    /// Sends one request; refreshes once on 401, waits out 429/rate-limit 403s, and retries
    /// transient 5xx only for reads (a write that hit a 5xx may have happened).
    pub(crate) async fn request(
        &mut self,
        method: Method,
        api: Api,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Answer, ToolError> {
        let write = !(method == Method::GET || is_read_post(path));
        let url = self.url(api, path);
        let mut attempt = 0u32;
        loop {
            let mut rb =
                self.inner.http.request(method.clone(), &url).bearer_auth(self.access.expose_secret());
            if !query.is_empty() {
                rb = rb.query(query);
            }
            if let Some(b) = body {
                rb = rb.json(b);
            }
            if write && let Some(k) = self.idempotency_key {
                rb = rb.header("Idempotency-Key", k);
            }
            let answer = send(SERVICE, rb).await?;
            let status = answer.status;
            if status.is_success() {
                return Ok(answer);
            }
            if status == StatusCode::UNAUTHORIZED && !self.refreshed {
                self.refresh(None).await?;
                continue;
            }
            let reason = error_reason(&answer);
            let rate_limited = status == StatusCode::TOO_MANY_REQUESTS
                || (status == StatusCode::FORBIDDEN
                    && matches!(reason.as_str(), "rateLimitExceeded" | "userRateLimitExceeded"));
            if rate_limited && attempt < 3 {
                let wait = answer.retry_after().unwrap_or_else(|| backoff(attempt + 1));
                if wait > self.inner.settings.max_retry_wait {
                    return Err(ToolError::RateLimited { service: SERVICE, retry_after: wait });
                }
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            if is_transient(status) && !write && attempt < 2 {
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
                continue;
            }
            return Err(api_error(&answer, &reason, self.refreshed));
        }
    }

    pub(crate) async fn json(
        &mut self,
        method: Method,
        api: Api,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, ToolError> {
        self.request(method, api, path, query, body).await?.json(SERVICE)
    }

    pub(crate) async fn get(
        &mut self,
        api: Api,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value, ToolError> {
        self.json(Method::GET, api, path, query, None).await
    }
}

/// POSTs that only read (free/busy), so they may be retried.
fn is_read_post(path: &str) -> bool {
    path.ends_with("/freeBusy")
}

fn cred_error(e: CredentialError) -> ToolError {
    match e {
        CredentialError::NotConnected => ToolError::NotConnected,
        CredentialError::NeedsReconnect => ToolError::NeedsReconnect(RECONNECT.into()),
        other => ToolError::Credentials(other),
    }
}

/// Whether `granted` includes `need` or a broader scope that implies it.
fn covered(need: &str, granted: &[String]) -> bool {
    let short =
        |s: &str| -> String { s.strip_prefix("https://www.googleapis.com/auth/").unwrap_or(s).to_owned() };
    let granted: Vec<String> = granted.iter().map(|g| short(g)).collect();
    let broader: &[&str] = match need {
        "gmail.readonly" => &["gmail.modify", "https://mail.google.com/"],
        "gmail.compose" => &["gmail.modify", "https://mail.google.com/"],
        "gmail.send" => &["gmail.compose", "gmail.modify", "https://mail.google.com/"],
        "calendar.readonly" => &["calendar", "calendar.events"],
        "calendar.events" => &["calendar"],
        "drive.readonly" => &["drive"],
        "spreadsheets.readonly" => &["spreadsheets", "drive", "drive.readonly"],
        "spreadsheets" => &["drive"],
        "contacts.readonly" => &["contacts"],
        _ => &[],
    };
    granted.iter().any(|g| g == need || broader.contains(&g.as_str()))
}

fn error_reason(answer: &Answer) -> String {
    let body = answer.json_or_null();
    let err = &body["error"];
    err["errors"][0]["reason"]
        .as_str()
        .or_else(|| err["details"][0]["reason"].as_str())
        .or_else(|| err["status"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Google's `{"error":{"code","message","status","errors":[{"reason"}]}}` as an actionable line.
fn api_error(answer: &Answer, reason: &str, refreshed: bool) -> ToolError {
    let body = answer.json_or_null();
    let message = body["error"]["message"].as_str().map(short).unwrap_or_else(|| short(&answer.text()));
    let status = answer.status.as_u16();
    let text = match status {
        401 if refreshed => format!(
            "Google rejected the user's credentials even after a refresh ({message}); reconnect Google from the dashboard"
        ),
        403 if matches!(reason, "insufficientPermissions" | "ACCESS_TOKEN_SCOPE_INSUFFICIENT") => {
            "the connected Google account did not grant the access this needs: reconnect Google from the dashboard and allow it".into()
        }
        403 => format!("access denied: {message}"),
        404 => format!("not found ({message}); check the id"),
        409 => format!("conflict: {message}"),
        429 => "rate limited by Google; try again in a minute".into(),
        s if s >= 500 => format!("Google had a server error ({s}); try again later"),
        _ => format!("request rejected: {message}"),
    };
    ToolError::Api { service: SERVICE, status, message: text }
}
