//! The two SQL backends. Their queries are written once in `shared.rs` (placeholders `$N`, which
//! both SQLite and PostgreSQL accept) and compiled once per backend with `include!`, so the two
//! implementations can not drift apart; only connecting and migrating differ.

pub mod postgres;
pub mod sqlite;

use crate::{NewMessage, Result, StoreError, StoredToolCall};
use crewgate_core::{AgentId, AgentKind, Role, TokenKind, UserId, UserStatus};
use serde::{Deserialize, Serialize};

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

/// Tool metadata of a message, sealed as one JSON value in `messages.meta`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct MessageMeta {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<StoredToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
}

impl MessageMeta {
    /// The JSON to seal, or `None` for a plain text message (stored as NULL).
    pub(crate) fn of(m: &NewMessage) -> Result<Option<Vec<u8>>> {
        if m.tool_calls.is_empty() && m.tool_call_id.is_none() && m.tool_name.is_none() {
            return Ok(None);
        }
        let meta = MessageMeta {
            tool_calls: m.tool_calls.clone(),
            tool_call_id: m.tool_call_id.clone(),
            tool_name: m.tool_name.clone(),
        };
        serde_json::to_vec(&meta)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("message metadata does not serialise: {e}")))
    }

    pub(crate) fn parse(bytes: &[u8], id: &str) -> Result<Self> {
        serde_json::from_slice(bytes)
            .map_err(|e| StoreError::Corrupt(format!("metadata of message {id} is invalid: {e}")))
    }
}
