//! Typed identifiers. Every store method takes these, never bare strings, so a user id can not be
//! passed where an agent id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error(
        "invalid agent id {0:?}: use 1-64 characters of a-z, 0-9 and '-', starting with a letter or digit"
    )]
    InvalidAgentId(String),
    #[error("invalid user id {0:?}")]
    InvalidUserId(String),
    #[error("cannot derive an agent id from {0:?}: it has no letters or digits")]
    EmptyDerivation(String),
}

/// Agent id: `[a-z0-9][a-z0-9-]{0,63}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentId(String);

impl AgentId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-');
        if ok { Ok(Self(s.to_owned())) } else { Err(IdError::InvalidAgentId(s.to_owned())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id with a numeric collision suffix (`-2`, `-3`, …), kept within 64 characters.
    pub fn with_suffix(&self, n: u32) -> Self {
        let suffix = format!("-{n}");
        let keep = 64usize.saturating_sub(suffix.len()).min(self.0.len());
        let base = self.0[..keep].trim_end_matches('-');
        Self(format!("{base}{suffix}"))
    }
}

impl TryFrom<String> for AgentId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}
impl From<AgentId> for String {
    fn from(id: AgentId) -> String {
        id.0
    }
}
impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Derives a worker's agent id from its owner's e-mail: lowercase, every char outside `[a-z0-9]`
/// becomes `-`, runs of `-` collapse, leading/trailing `-` are trimmed.
pub fn agent_id_from_email(email: &str) -> Result<AgentId, IdError> {
    let mut out = String::with_capacity(email.len());
    for c in email.trim().chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' };
        if c == '-' && out.ends_with('-') {
            continue;
        }
        out.push(c);
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        return Err(IdError::EmptyDerivation(email.to_owned()));
    }
    let cut = &trimmed[..trimmed.len().min(64)];
    AgentId::parse(cut.trim_end_matches('-'))
}

/// User id: a UUIDv7 in its hyphenated text form (time-ordered, so lists sort by creation).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().hyphenated().to_string())
    }
    pub fn parse(s: &str) -> Result<Self, IdError> {
        uuid::Uuid::parse_str(s)
            .map(|u| Self(u.hyphenated().to_string()))
            .map_err(|_parse_error| IdError::InvalidUserId(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for UserId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}
impl From<UserId> for String {
    fn from(id: UserId) -> String {
        id.0
    }
}
impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn derives_agent_id_from_email() {
        assert_eq!(agent_id_from_email("alice@company.com").unwrap().as_str(), "alice-company-com");
        assert_eq!(agent_id_from_email("Bob.Smith+x@Co.io").unwrap().as_str(), "bob-smith-x-co-io");
        assert_eq!(agent_id_from_email("__a..b__").unwrap().as_str(), "a-b");
        assert!(agent_id_from_email("@@@").is_err());
    }

    #[test]
    fn suffix_keeps_length_limit() {
        let id = AgentId::parse(&"a".repeat(64)).unwrap();
        let s = id.with_suffix(12);
        assert_eq!(s.as_str().len(), 64);
        assert!(s.as_str().ends_with("-12"));
        assert_eq!(AgentId::parse("alice-co").unwrap().with_suffix(2).as_str(), "alice-co-2");
    }

    #[test]
    fn rejects_bad_agent_ids() {
        for bad in ["", "-a", "A", "a b", "a_b", &"a".repeat(65), "é"] {
            assert!(AgentId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(AgentId::parse("orchestrator").is_ok());
    }

    #[test]
    fn user_ids_round_trip_and_reject_garbage() {
        let id = UserId::generate();
        assert_eq!(UserId::parse(id.as_str()).unwrap(), id);
        assert!(UserId::parse("not-a-uuid").is_err());
    }
}
