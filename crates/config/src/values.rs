//! Validated leaf values. Each validates inside `Deserialize`, so a bad value is reported at its
//! own position. Messages use `"message — hint"`, which the tree deserializer splits back apart.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use crewgate_core::{AgentId, IdError, Millis};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

fn msg<E: de::Error>(message: impl fmt::Display, hint: impl fmt::Display) -> E {
    E::custom(format!("{message} — {hint}"))
}

// ---------------------------------------------------------------------------------------------
// Numbers and plain strings

pub(crate) fn de_port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    struct PortVisitor;
    impl Visitor<'_> for PortVisitor {
        type Value = u16;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a port number (1-65535)")
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<u16, E> {
            u16::try_from(n)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| msg(format!("port {n} is out of range"), "use 1-65535"))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<u16, E> {
            match u64::try_from(n) {
                Ok(n) => self.visit_u64(n),
                Err(_) => Err(msg(format!("port {n} is out of range"), "use 1-65535")),
            }
        }
    }
    d.deserialize_any(PortVisitor)
}

pub(crate) fn de_nonzero_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = u64::deserialize(d)?;
    if n == 0 { Err(de::Error::custom("must be at least 1")) } else { Ok(n) }
}

pub(crate) fn de_nonzero_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if n == 0 { Err(de::Error::custom("must be at least 1")) } else { Ok(n) }
}

pub(crate) fn de_nonempty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() { Err(de::Error::custom("must not be empty")) } else { Ok(s) }
}

/// `"loopback"` and `"lan"` are OpenClaw's names for the two common binds.
pub(crate) fn de_bind<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    struct BindVisitor;
    impl Visitor<'_> for BindVisitor {
        type Value = IpAddr;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an IP address such as 127.0.0.1")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<IpAddr, E> {
            match s {
                "loopback" | "localhost" => Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                "lan" => Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                _ => s.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| {
                    msg(
                        format!("invalid bind address {s:?}"),
                        "use an IP address such as 127.0.0.1, 0.0.0.0 or ::, or \"loopback\" / \"lan\"",
                    )
                }),
            }
        }
    }
    d.deserialize_any(BindVisitor)
}

// ---------------------------------------------------------------------------------------------
// Agent ids

const AGENT_ID_RULE: &str = "use 1-64 characters of a-z, 0-9 and '-', starting with a letter or digit";

pub(crate) fn agent_id<E: de::Error>(s: &str) -> Result<AgentId, E> {
    AgentId::parse(s).map_err(|e| match e {
        // A swapped `"agent": "token"` pair must not put the token into logs.
        IdError::InvalidAgentId(id) if looks_like_token(&id) => msg(
            "invalid agent id (the value looks like a token)",
            "in userTokens the key is the token and the value the agent id",
        ),
        IdError::InvalidAgentId(id) => msg(format!("invalid agent id {id:?}"), AGENT_ID_RULE),
        other => E::custom(other),
    })
}

fn looks_like_token(s: &str) -> bool {
    ["cga_", "cgu_", "cgi_"].iter().any(|prefix| s.starts_with(prefix))
}

pub(crate) fn de_agent_id<'de, D: Deserializer<'de>>(d: D) -> Result<AgentId, D::Error> {
    struct IdVisitor;
    impl Visitor<'_> for IdVisitor {
        type Value = AgentId;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an agent id")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<AgentId, E> {
            agent_id(s)
        }
    }
    d.deserialize_any(IdVisitor)
}

/// One entry of `subagents.allowAgents`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AgentSelector {
    /// `"*"`: any agent.
    Any,
    Agent(AgentId),
}

impl AgentSelector {
    pub fn matches(&self, id: &AgentId) -> bool {
        match self {
            AgentSelector::Any => true,
            AgentSelector::Agent(agent) => agent == id,
        }
    }
}

impl<'de> Deserialize<'de> for AgentSelector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SelectorVisitor;
        impl Visitor<'_> for SelectorVisitor {
            type Value = AgentSelector;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an agent id or \"*\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<AgentSelector, E> {
                if s == "*" { Ok(AgentSelector::Any) } else { agent_id(s).map(AgentSelector::Agent) }
            }
        }
        d.deserialize_any(SelectorVisitor)
    }
}

impl Serialize for AgentSelector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AgentSelector::Any => s.serialize_str("*"),
            AgentSelector::Agent(id) => s.serialize_str(id.as_str()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// URLs and e-mail

/// An absolute `http(s)` URL, kept without a trailing `/` so `base.join("x")` is always `base/x`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpUrl(String);

#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("invalid URL: {0}")]
    Invalid(#[from] url::ParseError),
    #[error("unsupported URL scheme {0:?}")]
    Scheme(String),
    #[error("URL has no host")]
    NoHost,
}

impl HttpUrl {
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let url = url::Url::parse(s.trim())?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlError::Scheme(url.scheme().to_owned()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(UrlError::NoHost);
        }
        let text = url.as_str();
        let text =
            if url.query().is_none() && url.fragment().is_none() { text.trim_end_matches('/') } else { text };
        Ok(Self(text.to_owned()))
    }

    /// For the built-in defaults, which are covered by a test.
    pub(crate) fn known(s: &'static str) -> Self {
        Self(s.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `base/path`, with exactly one `/` between them.
    pub fn join(&self, path: &str) -> String {
        format!("{}/{}", self.0, path.trim_start_matches('/'))
    }

    pub fn is_https(&self) -> bool {
        self.0.starts_with("https:")
    }

    /// The host is `localhost` or a loopback IP.
    pub fn is_loopback(&self) -> bool {
        match url::Url::parse(&self.0).ok().and_then(|u| u.host().map(|h| h.to_owned())) {
            Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for HttpUrl {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, UrlError> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct UrlVisitor;
        impl Visitor<'_> for UrlVisitor {
            type Value = HttpUrl;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an http:// or https:// URL")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HttpUrl, E> {
                HttpUrl::parse(s).map_err(|e| msg(e, "use an absolute http:// or https:// URL"))
            }
        }
        d.deserialize_any(UrlVisitor)
    }
}

impl Serialize for HttpUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// An e-mail address, lower-cased (agent ids and domain checks are case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (local, domain) = s.split_once('@')?;
        let valid = !local.is_empty()
            && is_domain(domain)
            && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            && !domain.contains('@');
        valid.then(|| Self(s.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EmailVisitor;
        impl Visitor<'_> for EmailVisitor {
            type Value = Email;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an e-mail address")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Email, E> {
                Email::parse(s).ok_or_else(|| {
                    msg(format!("invalid e-mail address {s:?}"), "write it as name@company.com")
                })
            }
        }
        d.deserialize_any(EmailVisitor)
    }
}

impl Serialize for Email {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// `company.com`: dot-separated labels of ASCII letters, digits and `-`.
pub(crate) fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

// ---------------------------------------------------------------------------------------------
// Skills

/// The skills crewgate implements natively. Config accepts both the ClawHub slug and the short
/// name; the short name is canonical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkillId {
    Gog,
    Notion,
    AttioCrm,
}

impl SkillId {
    pub const ALL: [SkillId; 3] = [SkillId::Gog, SkillId::Notion, SkillId::AttioCrm];

    pub const fn name(self) -> &'static str {
        match self {
            SkillId::Gog => "gog",
            SkillId::Notion => "notion",
            SkillId::AttioCrm => "attio-crm",
        }
    }

    pub const fn slug(self) -> &'static str {
        match self {
            SkillId::Gog => "steipete/gog",
            SkillId::Notion => "steipete/notion",
            SkillId::AttioCrm => "kesslerio/attio-crm",
        }
    }

    pub fn accepted_names() -> String {
        Self::ALL.iter().map(|s| format!("{}, {}", s.slug(), s.name())).collect::<Vec<_>>().join(", ")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown skill id {0:?}")]
pub struct UnknownSkill(pub String);

impl FromStr for SkillId {
    type Err = UnknownSkill;
    fn from_str(s: &str) -> Result<Self, UnknownSkill> {
        Self::ALL
            .into_iter()
            .find(|id| id.name() == s || id.slug() == s)
            .ok_or_else(|| UnknownSkill(s.to_owned()))
    }
}

impl fmt::Display for SkillId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl<'de> Deserialize<'de> for SkillId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SkillVisitor;
        impl Visitor<'_> for SkillVisitor {
            type Value = SkillId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a skill id")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<SkillId, E> {
                s.parse().map_err(|e| msg(e, format!("expected one of: {}", SkillId::accepted_names())))
            }
        }
        d.deserialize_any(SkillVisitor)
    }
}

impl Serialize for SkillId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

// ---------------------------------------------------------------------------------------------
// Models

/// `"model": "vendor/model"` or `{ "primary": "…", "fallbacks": ["…"] }` (OpenClaw's shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub primary: String,
    pub fallbacks: Vec<String>,
}

impl ModelRef {
    pub fn new(primary: impl Into<String>) -> Self {
        Self { primary: primary.into(), fallbacks: Vec::new() }
    }

    /// The primary model, then the fallbacks, in order.
    pub fn candidates(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.primary.as_str()).chain(self.fallbacks.iter().map(String::as_str))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ModelObject {
    #[serde(deserialize_with = "de_nonempty")]
    primary: String,
    #[serde(default)]
    fallbacks: Vec<String>,
}

impl<'de> Deserialize<'de> for ModelRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ModelVisitor;
        impl<'de> Visitor<'de> for ModelVisitor {
            type Value = ModelRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a model name or an object with primary and fallbacks")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ModelRef, E> {
                if s.trim().is_empty() {
                    return Err(E::custom("must not be empty"));
                }
                Ok(ModelRef::new(s))
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<ModelRef, M::Error> {
                let o = ModelObject::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ModelRef { primary: o.primary, fallbacks: o.fallbacks })
            }
        }
        d.deserialize_any(ModelVisitor)
    }
}

impl Serialize for ModelRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        if self.fallbacks.is_empty() {
            return s.serialize_str(&self.primary);
        }
        let mut st = s.serialize_struct("ModelRef", 2)?;
        st.serialize_field("primary", &self.primary)?;
        st.serialize_field("fallbacks", &self.fallbacks)?;
        st.end()
    }
}

// ---------------------------------------------------------------------------------------------
// Autonomy

/// Graduated autonomy: 1 asks for every write, higher levels let grants apply. Always 1-3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AutonomyLevel(u8);

impl AutonomyLevel {
    pub const MIN: AutonomyLevel = AutonomyLevel(1);
    pub const MAX: AutonomyLevel = AutonomyLevel(3);

    pub fn new(level: u8) -> Option<Self> {
        (Self::MIN.0..=Self::MAX.0).contains(&level).then_some(Self(level))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl Default for AutonomyLevel {
    fn default() -> Self {
        Self::MIN
    }
}

impl<'de> Deserialize<'de> for AutonomyLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LevelVisitor;
        impl Visitor<'_> for LevelVisitor {
            type Value = AutonomyLevel;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an autonomy level (1, 2 or 3)")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<AutonomyLevel, E> {
                u8::try_from(n)
                    .ok()
                    .and_then(AutonomyLevel::new)
                    .ok_or_else(|| msg(format!("autonomy level {n} is out of range"), "use 1, 2 or 3"))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<AutonomyLevel, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(msg(format!("autonomy level {n} is out of range"), "use 1, 2 or 3")),
                }
            }
        }
        d.deserialize_any(LevelVisitor)
    }
}

impl Serialize for AutonomyLevel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.0)
    }
}

/// An RFC 3339 instant (`2026-12-31T23:59:59Z`), kept as written for round trips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timestamp {
    pub millis: Millis,
    text: String,
}

impl Timestamp {
    pub fn parse(s: &str) -> Option<Self> {
        parse_rfc3339(s).map(|millis| Self { millis, text: s.to_owned() })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TsVisitor;
        impl Visitor<'_> for TsVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Timestamp, E> {
                Timestamp::parse(s).ok_or_else(|| {
                    msg(format!("invalid timestamp {s:?}"), "use RFC 3339, e.g. 2026-12-31T23:59:59Z")
                })
            }
        }
        d.deserialize_any(TsVisitor)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fff…](Z|±HH:MM)` → milliseconds since the Unix epoch.
fn parse_rfc3339(s: &str) -> Option<Millis> {
    fn digits(s: &str, range: std::ops::Range<usize>) -> Option<i64> {
        let part = s.get(range)?;
        if part.bytes().all(|b| b.is_ascii_digit()) { part.parse().ok() } else { None }
    }
    let b = s.as_bytes();
    let sep = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (digits(s, 0..4)?, digits(s, 5..7)?, digits(s, 8..10)?);
    let (hour, minute, second) = (digits(s, 11..13)?, digits(s, 14..16)?, digits(s, 17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let len = frac.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return None;
        }
        let first3 = format!("{:0<3}", &frac[..len.min(3)]);
        millis = first3.parse::<i64>().ok()?;
        rest = &frac[len..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes().get(3) != Some(&b':') {
                return None;
            }
            let (h, m) = (digits(rest, 1..3)?, digits(rest, 4..6)?);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    // A leap second is folded into the next second's start.
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(secs * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (eras of 400 years = 146 097 days).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12; // March = 0, so the leap day ends the year
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-01-01T00:00:00Z"), Some(1_767_225_600_000));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(11_017 * 86_400_000));
        assert_eq!(parse_rfc3339("2024-02-29T12:00:00.5Z"), Some(1_709_208_000_500));
        assert_eq!(parse_rfc3339("2026-01-01T02:00:00+02:00"), Some(1_767_225_600_000));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1000));
        for bad in ["2026-02-29T00:00:00Z", "2026-01-01", "2026-13-01T00:00:00Z", "2026-01-01T00:00:00", "x"]
        {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            HttpUrl::parse("https://api.redpill.ai/v1/").unwrap().as_str(),
            "https://api.redpill.ai/v1"
        );
        assert_eq!(HttpUrl::parse("http://127.0.0.1:9000").unwrap().join("/x"), "http://127.0.0.1:9000/x");
        assert_eq!(HttpUrl::parse("ftp://x").unwrap_err().to_string(), "unsupported URL scheme \"ftp\"");
        assert_eq!(
            HttpUrl::parse("example.com").unwrap_err().to_string(),
            "invalid URL: relative URL without a base"
        );
        assert!(HttpUrl::parse("http://localhost:1").unwrap().is_loopback());
        assert!(!HttpUrl::parse("http://example.com").unwrap().is_loopback());
    }

    #[test]
    fn built_in_urls_are_valid_and_normalised() {
        for url in crate::model::BUILT_IN_URLS {
            assert_eq!(HttpUrl::parse(url).unwrap().as_str(), url);
        }
    }

    #[test]
    fn skill_ids_and_emails() {
        assert_eq!("steipete/gog".parse::<SkillId>().unwrap(), SkillId::Gog);
        assert_eq!("attio-crm".parse::<SkillId>().unwrap(), SkillId::AttioCrm);
        assert!("attio".parse::<SkillId>().is_err());
        assert_eq!(Email::parse(" Alice@Company.com ").unwrap().as_str(), "alice@company.com");
        assert_eq!(Email::parse("alice@company.com").unwrap().domain(), "company.com");
        for bad in ["alice", "@company.com", "a b@c.com", "a@b@c.com", "a@-c.com", "a@"] {
            assert!(Email::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn model_refs_serialize_back_to_their_short_form() {
        assert_eq!(serde_json::to_string(&ModelRef::new("a/b")).unwrap(), "\"a/b\"");
        let m = ModelRef { primary: "a".into(), fallbacks: vec!["b".into()] };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"primary":"a","fallbacks":["b"]}"#);
        assert_eq!(serde_json::from_str::<ModelRef>(&json).unwrap(), m);
        assert_eq!(m.candidates().collect::<Vec<_>>(), ["a", "b"]);
    }
}
