//! Times for `--at` and for messages: RFC 3339 in UTC, or unix seconds/milliseconds.

use crewgate_core::Millis;
use crewgate_core::time::civil_from_days;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{input:?} is not a time: use RFC 3339 like 2026-05-01T12:30:00Z (or with an offset like +02:00), a date like 2026-05-01, or unix seconds"
)]
pub struct TimeParseError {
    pub input: String,
}

/// Parses `2026-05-01T12:30:00Z`, `2026-05-01T12:30:00.250+02:00`, `2026-05-01 12:30`,
/// `2026-05-01` (midnight UTC), unix seconds (`1767225600`) or unix milliseconds (13+ digits).
pub fn parse_time(input: &str) -> Result<Millis, TimeParseError> {
    let err = || TimeParseError { input: input.to_owned() };
    let s = input.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = s.parse().map_err(|_overflow| err())?;
        return Ok(if s.len() >= 13 { n } else { n.checked_mul(1000).ok_or_else(err)? });
    }
    parse_rfc3339(s).ok_or_else(err)
}

fn num(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_rfc3339(s: &str) -> Option<Millis> {
    let (date, rest) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut d = date.split('-');
    let (y, mo, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    if d.next().is_some()
        || date.len() != 10
        || !(1..=12).contains(&mo)
        || !(1..=days_in_month(y, mo)).contains(&day)
    {
        return None;
    }
    let mut ms = days_from_civil(y, mo, day) * 86_400_000;
    let Some(rest) = rest else { return Some(ms) };
    // Split off the zone: Z, or the last + / - (the time part has no '-').
    let (time, offset_min) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let sign = if rest.as_bytes()[i] == b'-' { -1 } else { 1 };
        let (oh, om) = rest[i + 1..].split_once(':')?;
        let (oh, om) = (num(oh)?, num(om)?);
        if oh > 23 || om > 59 {
            return None;
        }
        (&rest[..i], sign * (oh * 60 + om))
    } else {
        (rest, 0) // no zone: UTC
    };
    let mut t = time.split(':');
    let (h, mi) = (num(t.next()?)?, num(t.next()?)?);
    let (sec, frac_ms) = match t.next() {
        None => (0, 0),
        Some(sec) => {
            let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
            let frac_ms = if frac.is_empty() {
                0
            } else {
                let digits: String = frac.chars().chain("000".chars()).take(3).collect();
                num(frac)?;
                num(&digits)?
            };
            (num(whole)?, frac_ms)
        }
    };
    if t.next().is_some() || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    ms += ((h * 60 + mi - offset_min) * 60 + sec) * 1000 + frac_ms;
    Some(ms)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (eras of 400 years, March-based years).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400);
    let month_from_march = (m + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `2026-05-01T12:30:00.250Z`.
pub fn format_millis(ms: Millis) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_time("2000-03-01T00:00:00Z").unwrap(), 951_868_800_000);
        assert_eq!(parse_time("2024-02-29T12:30:15.5Z").unwrap(), 1_709_209_815_500);
        assert_eq!(parse_time("2024-02-29T14:30:15.500+02:00").unwrap(), 1_709_209_815_500);
        assert_eq!(parse_time("2024-02-29 12:30:15.5").unwrap(), 1_709_209_815_500);
        assert_eq!(parse_time("2024-02-29").unwrap(), 1_709_164_800_000);
        assert_eq!(parse_time("1709209815").unwrap(), 1_709_209_815_000);
        assert_eq!(parse_time("1709209815500").unwrap(), 1_709_209_815_500);
        for bad in [
            "",
            "yesterday",
            "2023-02-29",
            "2024-13-01",
            "2024-01-01T25:00Z",
            "2024-1-01",
            "2024-01-01T10:00+5",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        for ms in [0, 951_868_800_000, 1_709_209_815_500, 4_102_444_800_123, -86_400_000] {
            assert_eq!(parse_time(&format_millis(ms)).unwrap(), ms, "{}", format_millis(ms));
        }
        assert_eq!(format_millis(1_709_209_815_500), "2024-02-29T12:30:15.500Z");
    }
}
