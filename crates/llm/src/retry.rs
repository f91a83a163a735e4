//! Retry policy: which failures are retried and how long to wait.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// Statuses worth retrying: rate limit and transient gateway/server failures.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// The wait a server asked for: `retry-after-ms` (OpenAI/Azure), else `Retry-After` as seconds
/// (integer or decimal) or as an HTTP-date (relative to `now`; a date in the past means 0).
pub(crate) fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && (0.0..1e12).contains(&ms)
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = get("retry-after")?;
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        return (0.0..1e9).contains(&secs).then(|| Duration::from_secs_f64(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Upper bound of the backoff before retry number `retry` (0-based): `base · 2^retry`, capped.
pub(crate) fn backoff_cap(retry: u32, base: Duration, max: Duration) -> Duration {
    base.saturating_mul(2u32.saturating_pow(retry.min(31))).min(max)
}

/// Exponential backoff with full jitter: uniform in `[0, backoff_cap]`.
pub(crate) fn backoff(retry: u32, base: Duration, max: Duration) -> Duration {
    let cap = backoff_cap(retry, base, max);
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

/// Wait before retry number `retry`: the server's `Retry-After` (capped by `max`) when given,
/// else jittered exponential backoff.
pub(crate) fn retry_delay(
    retry: u32,
    retry_after: Option<Duration>,
    base: Duration,
    max: Duration,
) -> Duration {
    match retry_after {
        Some(d) => d.min(max),
        None => backoff(retry, base, max),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after(&headers(&[("retry-after", "7")]), now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", " 1.5 ")]), now),
            Some(Duration::from_millis(1500))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", &date)]), now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&headers(&[("retry-after", &past)]), now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", "7"), ("retry-after-ms", "250")]), now),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(parse_retry_after(&headers(&[("retry-after", "-3")]), now), None);
        assert_eq!(parse_retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        assert_eq!(backoff_cap(0, base, max), Duration::from_millis(100));
        assert_eq!(backoff_cap(2, base, max), Duration::from_millis(400));
        assert_eq!(backoff_cap(10, base, max), max);
        assert_eq!(backoff_cap(u32::MAX, base, max), max);
        for retry in 0..40 {
            assert!(backoff(retry, base, max) <= backoff_cap(retry, base, max));
        }
        assert_eq!(retry_delay(0, Some(Duration::from_secs(60)), base, max), max, "Retry-After is capped");
        assert_eq!(retry_delay(0, Some(Duration::from_millis(300)), base, max), Duration::from_millis(300));
    }
}
