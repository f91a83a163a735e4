//! The two SQL backends. Their queries are written once in `shared.rs` (placeholders `$N`, which
//! both SQLite and PostgreSQL accept) and compiled once per backend with `include!`, so the two
//! implementations can not drift apart; only connecting and migrating differ.

pub mod postgres;
pub mod sqlite;

use crate::{Result, StoreError};
use crewgate_core::{AgentId, AgentKind, Role, TokenKind, UserId, UserStatus};

pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

pub(crate) fn parse_user_id(s: String) -> Result<UserId> {
    UserId::parse(&s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn parse_agent_id(s: String) -> Result<AgentId> {
    AgentId::parse(&s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn parse_role(s: &str) -> Result<Role> {
    Role::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown role {s:?}")))
}

pub(crate) fn parse_status(s: &str) -> Result<UserStatus> {
    UserStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown user status {s:?}")))
}

pub(crate) fn parse_kind(s: &str) -> Result<AgentKind> {
    AgentKind::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown agent kind {s:?}")))
}

pub(crate) fn parse_token_kind(s: &str) -> Result<TokenKind> {
    TokenKind::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown token kind {s:?}")))
}

pub(crate) fn parse_json(s: &str) -> Result<serde_json::Value> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("invalid JSON column: {e}")))
}

/// Maps a unique-constraint violation to a readable conflict; other errors pass through.
pub(crate) fn conflict_or(e: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what()),
        _ => StoreError::Db(e),
    }
}
