//! Persistent state of crewgate behind one [`Store`] trait, with an embedded SQLite implementation
//! (the default) and a PostgreSQL one (for several replicas). Both run the same conformance suite
//! (`tests/conformance.rs`).
//!
//! Invariants:
//! - every method takes the typed scoping id it acts on; nothing is looked up by a bare string;
//! - secrets and message bodies are sealed before they reach SQL, with the table, row id and owner
//!   bound as associated data;
//! - nothing is cached in the process: a revoked token is refused on the very next lookup, by every
//!   replica.

pub mod approvals;
mod backend;
pub mod master_key;
pub mod onboarding;
pub mod web_sessions;

use async_trait::async_trait;
use crewgate_core::{
    Agent, AgentId, AgentKind, AuditEntry, Millis, Role, SealError, TokenHash, TokenInfo, TokenKind, User,
    UserId, UserStatus,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

pub use backend::{postgres::PostgresStore, sqlite::SqliteStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Key(#[from] crewgate_core::KeyError),
    #[error(
        "MASTER_KEY does not match the key this store was created with: start with the original MASTER_KEY (or the original master.key file in the data dir); a different key cannot read the sealed secrets"
    )]
    WrongMasterKey,
    #[error("cannot open the data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database a store talks to.
#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// A SQLite file (created if missing).
    Sqlite { path: PathBuf },
    /// A PostgreSQL URL, e.g. `postgres://user:pass@host/db`.
    Postgres { url: SecretString },
}

impl StoreLocation {
    pub fn describe(&self) -> String {
        match self {
            StoreLocation::Sqlite { path } => format!("sqlite:{}", path.display()),
            StoreLocation::Postgres { .. } => "postgres".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    pub status: UserStatus,
}

#[derive(Debug, Clone)]
pub struct NewAgent {
    pub id: AgentId,
    pub kind: AgentKind,
    pub owner: Option<UserId>,
    pub name: String,
    pub settings: serde_json::Value,
}

/// A token to store: only its hash and display form, never the secret.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub kind: TokenKind,
    pub hash: TokenHash,
    pub display: String,
    pub label: Option<String>,
    pub user_id: Option<UserId>,
    pub agent_id: Option<AgentId>,
    pub expires_at: Option<Millis>,
}

/// Which tokens a listing covers.
#[derive(Debug, Clone)]
pub enum TokenScope {
    All,
    User(UserId),
}

/// Which audit entries a listing covers.
#[derive(Debug, Clone)]
pub enum AuditScope {
    All,
    User(UserId),
}

#[derive(Debug, Clone)]
pub struct NewAudit {
    pub actor: String,
    pub user_id: Option<UserId>,
    pub agent_id: Option<AgentId>,
    pub action: String,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub agent_id: AgentId,
    pub title: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// One stored chat message. `role` is one of [`MessageRole`]'s texts for messages written through
/// [`Store::append_messages`]; tool metadata is sealed like the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub session_id: String,
    pub role: String,
    pub body: String,
    pub created_at: Millis,
    /// Tool calls of an assistant message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<StoredToolCall>,
    /// For a `tool` message: the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For a `tool` message: the tool that answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
}

/// A tool call as the model made it (arguments exactly as sent, normally JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// Who wrote a message. `Error` records a failed turn for the person; it is never sent to a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    User,
    Assistant,
    Tool,
    Error,
}

impl MessageRole {
    pub const fn as_str(self) -> &'static str {
        match self {
            MessageRole::User => "user",
            MessageRole::Assistant => "assistant",
            MessageRole::Tool => "tool",
            MessageRole::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(MessageRole::User),
            "assistant" => Some(MessageRole::Assistant),
            "tool" => Some(MessageRole::Tool),
            "error" => Some(MessageRole::Error),
            _ => None,
        }
    }
}

/// A message to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub role: MessageRole,
    pub body: String,
    pub tool_calls: Vec<StoredToolCall>,
    pub tool_call_id: Option<String>,
    pub tool_name: Option<String>,
}

impl NewMessage {
    /// A plain text message.
    pub fn text(role: MessageRole, body: impl Into<String>) -> Self {
        Self { role, body: body.into(), tool_calls: Vec::new(), tool_call_id: None, tool_name: None }
    }
}

#[async_trait]
pub trait Store:
    approvals::ApprovalStore
    + web_sessions::WebSessionStore
    + onboarding::OnboardingStore
    + Send
    + Sync
    + std::fmt::Debug
{
    fn backend(&self) -> Backend;
    /// Cheap round trip to the database; `/ready` uses it.
    async fn ping(&self) -> Result<()>;

    async fn create_user(&self, user: NewUser) -> Result<User>;
    async fn get_user(&self, id: &UserId) -> Result<Option<User>>;
    async fn find_user_by_email(&self, email: &str) -> Result<Option<User>>;
    async fn list_users(&self) -> Result<Vec<User>>;
    async fn set_user_status(&self, id: &UserId, status: UserStatus) -> Result<()>;

    /// Fails with [`StoreError::Conflict`] when the id is taken (deleted agents keep their id).
    async fn create_agent(&self, agent: NewAgent) -> Result<Agent>;
    async fn get_agent(&self, id: &AgentId) -> Result<Option<Agent>>;
    async fn list_agents(&self) -> Result<Vec<Agent>>;
    async fn count_agents(&self) -> Result<i64>;
    /// True when an agent with this id exists or ever existed (ids are never reused).
    async fn agent_id_taken(&self, id: &AgentId) -> Result<bool>;
    /// Soft-deletes the agent and revokes every token bound to it, in one transaction.
    async fn delete_agent(&self, id: &AgentId) -> Result<bool>;
    async fn worker_of_user(&self, user: &UserId) -> Result<Option<Agent>>;

    async fn insert_token(&self, token: NewToken) -> Result<TokenInfo>;
    /// The live (not revoked, not expired) token with this hash, if any.
    async fn resolve_token(&self, hash: &TokenHash, now: Millis) -> Result<Option<TokenInfo>>;
    async fn get_token(&self, id: &str) -> Result<Option<TokenInfo>>;
    async fn list_tokens(&self, scope: TokenScope) -> Result<Vec<TokenInfo>>;
    async fn revoke_token(&self, id: &str, now: Millis) -> Result<bool>;
    /// Revokes `old_id` and inserts `replacement` atomically; fails if `old_id` is not live.
    async fn rotate_token(&self, old_id: &str, replacement: NewToken, now: Millis) -> Result<TokenInfo>;
    async fn count_live_tokens(&self, kind: TokenKind) -> Result<i64>;

    async fn create_session(&self, agent: &AgentId, title: &str) -> Result<Session>;
    async fn list_sessions(&self, agent: &AgentId) -> Result<Vec<Session>>;
    async fn get_session(&self, agent: &AgentId, id: &str) -> Result<Option<Session>>;
    async fn append_message(&self, agent: &AgentId, session: &str, role: &str, body: &str)
    -> Result<Message>;
    /// Every message of a live session, oldest first (empty for a deleted or foreign session).
    async fn list_messages(&self, agent: &AgentId, session: &str) -> Result<Vec<Message>>;
    /// The newest `limit` messages of a live session, oldest first.
    async fn recent_messages(&self, agent: &AgentId, session: &str, limit: i64) -> Result<Vec<Message>>;
    /// Appends several messages atomically (all or none), in order; fails with
    /// [`StoreError::NotFound`] when the session is not a live session of `agent`.
    async fn append_messages(
        &self,
        agent: &AgentId,
        session: &str,
        messages: &[NewMessage],
    ) -> Result<Vec<Message>>;
    /// Renames a live session; `None` when it is not a live session of `agent`.
    async fn rename_session(&self, agent: &AgentId, id: &str, title: &str) -> Result<Option<Session>>;
    /// Soft-deletes a session: it and its messages disappear from every listing; rows stay.
    async fn delete_session(&self, agent: &AgentId, id: &str) -> Result<bool>;
    /// The live session of `agent` bound to an API client's key, created (with `title`) when there
    /// is none. Concurrent calls with one key get the same session.
    async fn session_for_key(&self, agent: &AgentId, key: &str, title: &str) -> Result<Session>;

    /// Stores a secret sealed to `(owner, name)`.
    async fn put_secret(&self, owner: &str, name: &str, value: &SecretString) -> Result<()>;
    async fn get_secret(&self, owner: &str, name: &str) -> Result<Option<SecretString>>;

    async fn append_audit(&self, entry: NewAudit) -> Result<i64>;
    async fn list_audit(&self, scope: AuditScope, limit: i64) -> Result<Vec<AuditEntry>>;
}

/// Opens (creating if needed) and migrates the store, and checks that `key` is the key the store
/// was created with.
pub async fn open(location: &StoreLocation, key: &crewgate_core::MasterKey) -> Result<Arc<dyn Store>> {
    Ok(match location {
        StoreLocation::Sqlite { path } => Arc::new(SqliteStore::open(path, key).await?),
        StoreLocation::Postgres { url } => Arc::new(PostgresStore::open(url, key).await?),
    })
}
