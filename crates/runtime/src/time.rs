//! RFC 3339 formatting of Unix milliseconds without a date-time dependency.

use crewgate_core::Millis;
use crewgate_core::time::civil_from_days;

const WEEKDAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// `2025-11-25T14:03:07Z`, or with `+HH:MM` when `offset_minutes` is not 0 (the time shown is
/// then local to that offset).
pub fn rfc3339(ms: Millis, offset_minutes: i32) -> String {
    let local = ms + i64::from(offset_minutes) * 60_000;
    let secs = local.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let zone = if offset_minutes == 0 {
        "Z".to_owned()
    } else {
        let sign = if offset_minutes < 0 { '-' } else { '+' };
        let abs = offset_minutes.unsigned_abs();
        format!("{sign}{:02}:{:02}", abs / 60, abs % 60)
    };
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}{zone}")
}

/// `2025-11-25` (UTC).
pub fn date(ms: Millis) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// English weekday name of a (local) millisecond timestamp.
pub fn weekday(ms: Millis) -> &'static str {
    // 1970-01-01 was a Thursday.
    let idx = (ms.div_euclid(86_400_000) + 4).rem_euclid(7);
    WEEKDAYS[usize::try_from(idx).unwrap_or(0)]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(weekday(0), "Thursday");
        // 2000-02-29T12:34:56Z, a leap day in a year divisible by 400.
        assert_eq!(rfc3339(951_827_696_000, 0), "2000-02-29T12:34:56Z");
        assert_eq!(weekday(951_827_696_000), "Tuesday");
        assert_eq!(rfc3339(1_764_079_387_000, 0), "2025-11-25T14:03:07Z");
        assert_eq!(rfc3339(1_764_079_387_000, 120), "2025-11-25T16:03:07+02:00");
        assert_eq!(rfc3339(1_764_079_387_000, -330), "2025-11-25T08:33:07-05:30");
        assert_eq!(date(1_764_079_387_000), "2025-11-25");
        assert_eq!(rfc3339(-1, 0), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(4_107_542_400_000, 0), "2100-03-01T00:00:00Z");
    }
}
