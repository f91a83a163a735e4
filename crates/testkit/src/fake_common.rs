//! Pieces shared by the fake Google, Notion and Attio servers: recorded requests, injected
//! faults, token-bucket rate limits, RFC 3339 time, and starting an axum server on 127.0.0.1:0.

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// One request a fake received, with the status it answered.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path as sent (percent-encoded).
    pub path: String,
    /// Decoded query pairs, in order (repeated keys repeat).
    pub query: Vec<(String, String)>,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub status: u16,
    /// The account (Google) the bearer token belonged to, if valid.
    pub account: Option<String>,
    pub at: Instant,
}

impl RecordedRequest {
    /// The first value of query parameter `name`.
    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of query parameter `name`.
    pub fn query_values(&self, name: &str) -> Vec<&str> {
        self.query.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` if empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The path with percent-escapes decoded.
    pub fn decoded_path(&self) -> String {
        percent_decode(&self.path)
    }

    /// `"GET /path"`.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

pub(crate) fn record(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> RecordedRequest {
    RecordedRequest {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: parse_query(uri.query().unwrap_or_default()),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned())
            })
            .collect(),
        body: body.to_vec(),
        status: 0,
        account: None,
        at: Instant::now(),
    }
}

/// `application/x-www-form-urlencoded` pairs (also query strings).
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(&k.replace('+', " ")), percent_decode(&v.replace('+', " ")))
        })
        .collect()
}

/// Decodes `%XX` escapes (invalid escapes are kept as they are).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b.get(i + 2).copied().unwrap_or(0)))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub use crewgate_core::url::percent_encode;

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A fake's answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    content_type: String,
}

impl Reply {
    pub(crate) fn json(status: u16, v: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: serde_json::to_vec(&v).unwrap_or_default(),
            content_type: "application/json; charset=UTF-8".into(),
        }
    }

    pub(crate) fn text(status: u16, content_type: &str, s: String) -> Self {
        Self { status, headers: Vec::new(), body: s.into_bytes(), content_type: content_type.into() }
    }

    #[must_use]
    pub(crate) fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut resp = Response::new(axum::body::Body::from(self.body));
        *resp.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.content_type) {
            h.insert(axum::http::header::CONTENT_TYPE, v);
        }
        for (k, v) in self.headers {
            if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
                h.append(k, v);
            }
        }
        resp
    }
}

/// A failure to inject: the next `times` requests matching `method`/`path_contains` get
/// `status` (in the API's own error shape) instead of being served.
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: Option<String>,
    pub path_contains: Option<String>,
    pub status: u16,
    /// `Retry-After` header value (seconds, or an HTTP date for Attio).
    pub retry_after: Option<String>,
    pub times: usize,
}

impl Fault {
    /// `status` for the next matching request.
    pub fn status(status: u16) -> Self {
        Self { method: None, path_contains: None, status, retry_after: None, times: 1 }
    }

    #[must_use]
    pub fn on(mut self, method: &str, path_contains: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self.path_contains = Some(path_contains.to_owned());
        self
    }

    #[must_use]
    pub fn path(mut self, path_contains: &str) -> Self {
        self.path_contains = Some(path_contains.to_owned());
        self
    }

    #[must_use]
    pub fn retry_after(mut self, value: impl Into<String>) -> Self {
        self.retry_after = Some(value.into());
        self
    }

    #[must_use]
    pub fn times(mut self, n: usize) -> Self {
        self.times = n;
        self
    }

    fn matches(&self, r: &RecordedRequest) -> bool {
        self.method.as_ref().is_none_or(|m| *m == r.method)
            && self
                .path_contains
                .as_ref()
                .is_none_or(|p| r.path.contains(p.as_str()) || r.decoded_path().contains(p.as_str()))
    }
}

/// Takes the first fault matching `r` (and counts it down).
pub(crate) fn take_fault(faults: &mut Vec<Fault>, r: &RecordedRequest) -> Option<Fault> {
    let i = faults.iter().position(|f| f.times > 0 && f.matches(r))?;
    let f = faults[i].clone();
    faults[i].times -= 1;
    if faults[i].times == 0 {
        faults.remove(i);
    }
    Some(f)
}

/// A token bucket: `capacity` requests at once, refilled at `rate` per second. This is how
/// "N requests per second on average, bursts allowed" limits behave.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, capacity: f64) -> Self {
        Self { capacity, rate, tokens: capacity, last: Instant::now() }
    }

    /// Takes a token, or says how long until one is available.
    pub fn take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running axum server; stops when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `app` on 127.0.0.1:0. Panics if the loopback port cannot be bound (a broken test host).
#[allow(clippy::expect_used)]
pub(crate) async fn serve(app: Router, name: &'static str) -> Server {
    let listener =
        tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("fake server: could not bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("fake server: no local address");
    let app = app.layer(DefaultBodyLimit::max(64 * 1024 * 1024));
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, server = name, "fake server stopped");
        }
    });
    Server { addr, task }
}

// ------------------------------------------------------------------------------------------
// Time
// ------------------------------------------------------------------------------------------

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

// Days since 1970-01-01 of a civil date (proleptic Gregorian), by counting 400-year eras.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `2026-03-01T09:00:00.000Z` for Unix seconds.
pub fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `2026-03-01` for Unix seconds.
pub fn date_of(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

fn num(s: &str) -> Option<i64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

/// Unix seconds of an RFC 3339 date-time with offset, or of a `YYYY-MM-DD` date (midnight UTC).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let date = s.get(0..10)?;
    let (y, m, d) = (num(date.get(0..4)?)?, num(date.get(5..7)?)?, num(date.get(8..10)?)?);
    if date.as_bytes()[4] != b'-'
        || date.as_bytes()[7] != b'-'
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
    {
        return None;
    }
    let day = days_from_civil(y, m, d) * 86_400;
    if s.len() == 10 {
        return Some(day);
    }
    let rest = s.get(10..)?;
    let rest = rest.strip_prefix('T').or_else(|| rest.strip_prefix('t'))?;
    let (h, mi, se) = (num(rest.get(0..2)?)?, num(rest.get(3..5)?)?, num(rest.get(6..8)?)?);
    if rest.as_bytes().get(2) != Some(&b':')
        || rest.as_bytes().get(5) != Some(&b':')
        || h > 23
        || mi > 59
        || se > 60
    {
        return None;
    }
    let mut zone = rest.get(8..)?;
    if let Some(frac) = zone.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        zone = &frac[n..];
    }
    let offset = match zone {
        "Z" | "z" => 0,
        z if z.len() == 6 && (z.starts_with('+') || z.starts_with('-')) && z.as_bytes()[3] == b':' => {
            let o = num(&z[1..3])? * 3600 + num(&z[4..6])? * 60;
            if z.starts_with('-') { -o } else { o }
        }
        _ => return None,
    };
    Some(day + h * 3600 + mi * 60 + se - offset)
}

/// A random-looking id from a counter and the clock (fakes need unique, not secret, ids).
pub(crate) fn hex_id(counter: u64, len: usize) -> String {
    let mut x = counter.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (unix_millis() as u64).rotate_left(17);
    let mut s = String::new();
    while s.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(&format!("{x:016x}"));
    }
    s.truncate(len);
    s
}

/// A UUID-formatted id.
pub(crate) fn uuid_like(counter: u64) -> String {
    let h = hex_id(counter, 32);
    format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn time_round_trips() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-03-01T10:00:00+01:00"), parse_rfc3339("2026-03-01T09:00:00Z"));
        let t = parse_rfc3339("2024-02-29T23:59:59.5Z").unwrap();
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59.000Z");
        assert_eq!(parse_rfc3339("2026-03-01T09:00:00"), None);
        assert_eq!(date_of(parse_rfc3339("2026-12-31").unwrap()), "2026-12-31");
    }

    #[test]
    fn decodes_percent() {
        assert_eq!(percent_decode("Sheet1%21A1%3AB2"), "Sheet1!A1:B2");
        assert_eq!(parse_query("q=a+b&x=%C3%A9"), vec![("q".into(), "a b".into()), ("x".into(), "é".into())]);
        assert_eq!(percent_encode("4/0A b&é~"), "4%2F0A%20b%26%C3%A9~");
        assert_eq!(percent_decode(&percent_encode("a/b c=d")), "a/b c=d");
    }
}
