//! [`LlmError`]: every failure of the client, with a message meant for the end user.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

/// Boxed error cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error object of an OpenAI-style error body `{"error":{"message","type","code","param"}}`
/// (or the closest thing a non-conforming server sent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderError {
    /// `error.message`, or a raw excerpt of the body.
    pub message: String,
    /// `error.type`, e.g. `authentication_error`.
    pub kind: Option<String>,
    /// `error.code` (stringified when numeric).
    pub code: Option<String>,
}

/// Longest provider message we keep (bodies can be whole HTML pages).
const MAX_PROVIDER_MESSAGE: usize = 500;

impl ProviderError {
    /// Extracts the provider's error from a response body. Understands the OpenAI shape and a few
    /// common variants (`{"error":"…"}`, `{"message":"…"}`, `{"detail":"…"}`); otherwise keeps an
    /// excerpt of the raw body. Returns `None` for an empty body.
    pub fn from_body(body: &[u8]) -> Option<Self> {
        if let Ok(v) = serde_json::from_slice::<Value>(body)
            && let Some(p) = Self::from_json(&v)
        {
            return Some(p);
        }
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        Some(Self { message: truncate(text), kind: None, code: None })
    }

    /// Extracts the provider's error from an already-parsed JSON value.
    pub fn from_json(v: &Value) -> Option<Self> {
        let stringify = |v: Option<&Value>| match v {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        match v.get("error") {
            Some(Value::Object(e)) => Some(Self {
                message: truncate(e.get("message").and_then(Value::as_str).unwrap_or("(no message)")),
                kind: stringify(e.get("type")),
                code: stringify(e.get("code")),
            }),
            Some(Value::String(s)) => Some(Self { message: truncate(s), kind: None, code: None }),
            _ => ["message", "detail"].iter().find_map(|k| v.get(*k).and_then(Value::as_str)).map(|m| Self {
                message: truncate(m),
                kind: None,
                code: None,
            }),
        }
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.message)?;
        match (&self.kind, &self.code) {
            (Some(k), Some(c)) => write!(f, " ({k}, {c})"),
            (Some(x), None) | (None, Some(x)) => write!(f, " ({x})"),
            (None, None) => Ok(()),
        }
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= MAX_PROVIDER_MESSAGE {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(MAX_PROVIDER_MESSAGE).collect();
    out.push('…');
    out
}

/// `: "provider message" (type, code)` or nothing.
struct Said<'a>(&'a Option<ProviderError>);

impl fmt::Display for Said<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(p) => write!(f, ": {p}"),
            None => Ok(()),
        }
    }
}

fn secs(d: &Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 { format!("{s:.0}") } else { format!("{s:.1}") }
}

/// Seconds to tell the user to wait, rounded up, at least 1.
fn wait_secs(d: &Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// A failure talking to the LLM provider. `Display` is a complete sentence for the end user
/// (what happened, what the provider said, what to do); `source()` keeps the underlying cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// The settings cannot work (bad base URL, HTTP client could not be built).
    #[error("invalid LLM settings: {message}; check llm.baseUrl / llm.apiKey")]
    Config {
        message: String,
        #[source]
        source: Option<BoxError>,
    },

    /// HTTP 401: the key is missing, wrong or revoked.
    #[error(
        "the LLM provider rejected the API key (HTTP 401){}; check REDPILL_API_KEY / llm.apiKey",
        Said(provider)
    )]
    Unauthorized { provider: Option<ProviderError> },

    /// HTTP 403: the key is valid but not allowed (model access, credits, region).
    #[error(
        "the LLM provider refused the request (HTTP 403){}; the API key may lack access to this model or the account may be out of credits",
        Said(provider)
    )]
    Forbidden { provider: Option<ProviderError> },

    /// HTTP 429 on every attempt.
    #[error(
        "provider rate limit (HTTP 429 after {attempts} attempts){}; try again in {} s",
        Said(provider),
        wait_secs(retry_after)
    )]
    RateLimited {
        attempts: u32,
        /// What the provider asked for (`Retry-After`), or our own next backoff.
        retry_after: Duration,
        provider: Option<ProviderError>,
    },

    /// HTTP 5xx on every attempt.
    #[error(
        "the LLM provider failed with HTTP {status} after {attempts} attempts{}; try again later or configure another llm.model / llm.baseUrl",
        Said(provider)
    )]
    Server { status: u16, attempts: u32, provider: Option<ProviderError> },

    /// Any other 4xx: the request itself is wrong (unknown model, invalid messages, …). Not retried.
    #[error(
        "the LLM provider rejected the request (HTTP {status}){}; check llm.model and llm.baseUrl",
        Said(provider)
    )]
    Rejected { status: u16, provider: Option<ProviderError> },

    /// A 200 response (or a stream) that carries an error object instead of a completion.
    #[error("the LLM provider reported an error{}", Said(&Some(provider.clone())))]
    Provider { provider: ProviderError },

    /// The connection could not be established (DNS, refused, TLS, connect timeout).
    #[error(
        "could not connect to the LLM provider at {url} after {attempts} attempts; check llm.baseUrl and the network"
    )]
    Connect {
        url: String,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },

    /// The whole request (or stream) took longer than `timeout`.
    #[error(
        "the model did not answer within {} s; try again, use a faster model, or raise the LLM timeout",
        secs(after)
    )]
    Timeout {
        after: Duration,
        #[source]
        source: Option<BoxError>,
    },

    /// A stream went silent for longer than `stall_timeout`.
    #[error("the model stopped sending data for {} s (stall timeout); try again", secs(after))]
    Stalled {
        after: Duration,
        #[source]
        source: Option<BoxError>,
    },

    /// The connection broke after it was established.
    #[error("the connection to the LLM provider broke; try again")]
    Transport {
        #[source]
        source: reqwest::Error,
    },

    /// The stream is not valid SSE / chunk JSON, or ended before finishing.
    #[error(
        "provider sent an invalid stream ({detail}); try again, and check llm.baseUrl points at an OpenAI-compatible API"
    )]
    InvalidStream {
        detail: String,
        #[source]
        source: Option<BoxError>,
    },

    /// A non-streaming response body that is not a chat completion.
    #[error(
        "provider sent an invalid response ({detail}); check llm.baseUrl points at an OpenAI-compatible API"
    )]
    InvalidResponse {
        detail: String,
        #[source]
        source: Option<BoxError>,
    },
}

impl LlmError {
    /// HTTP status behind this error, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { .. } => Some(401),
            Self::Forbidden { .. } => Some(403),
            Self::RateLimited { .. } => Some(429),
            Self::Server { status, .. } | Self::Rejected { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// What the provider said, if it said anything.
    pub fn provider_error(&self) -> Option<&ProviderError> {
        match self {
            Self::Unauthorized { provider }
            | Self::Forbidden { provider }
            | Self::RateLimited { provider, .. }
            | Self::Server { provider, .. }
            | Self::Rejected { provider, .. } => provider.as_ref(),
            Self::Provider { provider } => Some(provider),
            _ => None,
        }
    }

    /// Whether asking again later may succeed (for callers that want their own fallback model).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::Connect { .. }
                | Self::Timeout { .. }
                | Self::Stalled { .. }
                | Self::Transport { .. }
        )
    }

    /// The message followed by its chain of causes, `: `-separated (for logs and detailed UIs).
    pub fn report(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn provider_error_shapes() {
        let p = ProviderError::from_body(
            br#"{"error":{"message":"bad key","type":"authentication_error","code":"invalid_api_key"}}"#,
        )
        .unwrap();
        assert_eq!(p.message, "bad key");
        assert_eq!(p.to_string(), "\"bad key\" (authentication_error, invalid_api_key)");
        assert_eq!(ProviderError::from_body(br#"{"detail":"nope"}"#).unwrap().message, "nope");
        assert_eq!(ProviderError::from_body(br#"{"error":"plain"}"#).unwrap().message, "plain");
        assert_eq!(
            ProviderError::from_body(b"<html>Bad Gateway</html>").unwrap().message,
            "<html>Bad Gateway</html>"
        );
        assert_eq!(ProviderError::from_body(b"  "), None);
        let long = "x".repeat(2000);
        assert_eq!(
            ProviderError::from_body(long.as_bytes()).unwrap().message.chars().count(),
            MAX_PROVIDER_MESSAGE + 1
        );
    }

    #[test]
    fn messages_are_actionable() {
        let e = LlmError::Unauthorized {
            provider: Some(ProviderError { message: "Invalid key".into(), kind: None, code: None }),
        };
        assert_eq!(
            e.to_string(),
            "the LLM provider rejected the API key (HTTP 401): \"Invalid key\"; check REDPILL_API_KEY / llm.apiKey"
        );
        let e =
            LlmError::RateLimited { attempts: 4, retry_after: Duration::from_millis(2500), provider: None };
        assert_eq!(e.to_string(), "provider rate limit (HTTP 429 after 4 attempts); try again in 3 s");
        let e = LlmError::RateLimited { attempts: 1, retry_after: Duration::ZERO, provider: None };
        assert!(e.to_string().ends_with("try again in 1 s"), "{e}");
        let e = LlmError::Timeout { after: Duration::from_secs(30), source: None };
        assert!(e.to_string().starts_with("the model did not answer within 30 s"));
        let e = LlmError::Stalled { after: Duration::from_millis(1500), source: None };
        assert!(e.to_string().contains("for 1.5 s"), "{e}");
    }
}
