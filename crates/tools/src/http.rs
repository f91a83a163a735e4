//! Plumbing shared by the three API clients: sending with the transport error kept as cause,
//! reading `Retry-After` (seconds or HTTP date), and shortening API messages.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

use crate::error::ToolError;

/// A response read to the end.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub(crate) fn json(&self, service: &'static str) -> Result<Value, ToolError> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| ToolError::unexpected(service, format!("invalid JSON ({e})")))
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON if it is JSON (error bodies), else `Null`.
    pub(crate) fn json_or_null(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// `Retry-After` as a duration from now: integer seconds (Notion, Google) or an HTTP date
    /// (Attio). `None` when absent or unreadable.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        let v = self.headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
        if let Ok(secs) = v.parse::<f64>() {
            return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
        }
        let at = httpdate::parse_http_date(v).ok()?;
        // A date in the past means "now"; HTTP dates have whole seconds, so the next second is
        // what the server meant.
        Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
    }
}

pub(crate) async fn send(service: &'static str, rb: RequestBuilder) -> Result<Answer, ToolError> {
    let resp = rb.send().await.map_err(|source| ToolError::Transport { service, source })?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map_err(|source| ToolError::Transport { service, source })?.to_vec();
    Ok(Answer { status, headers, body })
}

/// An API's message, cut to one short line for the model.
pub(crate) fn short(msg: &str) -> String {
    let one_line = msg.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::trim::cut(&one_line, 300)
}

/// Exponential backoff for retried reads: 0.5 s, 1 s, 2 s …
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1u64 << attempt.min(6)))
}

pub(crate) fn is_transient(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504 | 529)
}

/// Percent-encodes one path segment (ids, A1 ranges like `Sheet1!A1:B2`).
pub(crate) fn seg(s: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    utf8_percent_encode(s, SEGMENT).to_string()
}
