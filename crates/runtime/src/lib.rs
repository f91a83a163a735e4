//! The agent runtime of crewgate: one [`Runtime`] serves every agent and session of a gateway.
//!
//! A turn: load the agent and session → store the person's message → build the prompt (base
//! instructions from `prompts/*.md`, persona from the agent's `identity` settings and workspace
//! `SOUL.md`, the tool list, recent history under a token budget) → call the model (streaming) →
//! run the read tools it calls and feed the results back → repeat until it answers, within a
//! step limit and a wall-clock limit. Turns of one session run one at a time; sessions run
//! concurrently. See `README.md` for the invariants.

pub mod agents;
pub mod approvals;
mod error;
mod events;
mod prompt;
mod settings;
mod sync;
mod time;
pub mod tools;
mod turn;

pub use agents::{InterAgentError, InterAgentSettings, RunInfo, RunKind, RunStatus, Trace};
pub use approvals::{
    ApprovalError, ApprovalSettings, Autonomy, DecisionRequest, GrantRequest, RecoveryReport, Sender,
};
/// Re-exported so the binary can fill [`RuntimeSettings::llm`] without depending on the client crate.
pub use crewgate_llm::{LlmSettings, SecretString};
/// Re-exported so the binary can build the external tools without depending on the tools crate.
pub use crewgate_tools::{Skill, ToolSettings, Toolbox};
pub use error::RuntimeError;
pub use events::{TurnEvent, TurnUsage};
pub use prompt::{HistoryStats, estimate_request_tokens, estimate_tokens};
pub use settings::{DEFAULT_MODEL, RuntimeSettings};
pub use tools::{Effect, Tool, ToolContext, ToolError, ToolManifest, ToolRegistry};
pub use turn::{PromptPreview, TurnOutcome, TurnRequest};

use crewgate_core::AgentId;
use crewgate_llm::{DEFAULT_BASE_URL, LlmClient};
use crewgate_store::{Session, Store, StoreError};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use sync::{SessionBus, SessionLocks};
use tokio::sync::broadcast;

/// Title of a session nobody named yet; the first message renames it.
pub const DEFAULT_SESSION_TITLE: &str = "New chat";
/// Longest session title.
pub const MAX_TITLE_CHARS: usize = 200;

/// The agent runtime. Share it behind an `Arc`; every method takes `&self`.
pub struct Runtime {
    store: Arc<dyn Store>,
    settings: RuntimeSettings,
    /// A client that could not be built (bad base URL) fails each turn with a clear message
    /// instead of failing the whole gateway.
    llm: Result<LlmClient, String>,
    tools: ToolRegistry,
    locks: Arc<SessionLocks>,
    bus: Arc<SessionBus>,
    gate: Arc<approvals::Gate>,
    /// Inter-agent messaging and background runs (see `agents`).
    agents: Arc<agents::Hub>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("llm", &self.llm)
            .field("model", &self.settings.default_model)
            .field("tools", &self.tools)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Registers the inter-agent tools (`sessions_send`, `broadcast`, `sessions_spawn`, …) in
    /// `tools`; they are offered only once [`Runtime::enable_inter_agent`] ran (or use
    /// [`Runtime::shared`]).
    pub fn new(store: Arc<dyn Store>, settings: RuntimeSettings, mut tools: ToolRegistry) -> Self {
        let agents = Arc::new(agents::Hub::new(settings.inter_agent.clone()));
        agents::register_tools(&mut tools, &agents);
        let llm = LlmClient::new(settings.llm.clone()).map_err(|e| e.report());
        if let Err(e) = &llm {
            tracing::error!(error = %e, "the LLM client cannot be built; chat turns will fail");
        }
        let locks = Arc::new(SessionLocks::default());
        let bus = Arc::new(SessionBus::default());
        let gate = Arc::new(approvals::Gate::new(
            store.clone(),
            tools.clone(),
            bus.clone(),
            locks.clone(),
            settings.approvals.clone(),
            settings.tool_timeout,
        ));
        Self { store, settings, llm, tools, locks, bus, gate, agents }
    }

    /// Default settings (RedPill, no key) and the built-in tools.
    pub fn with_defaults(store: Arc<dyn Store>) -> Self {
        Self::new(store, RuntimeSettings::default(), ToolRegistry::with_defaults())
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn settings(&self) -> &RuntimeSettings {
        &self.settings
    }

    pub fn tools(&self) -> &ToolRegistry {
        &self.tools
    }

    /// The LLM client, or why turns cannot run. Without an API key the default provider would
    /// only answer 401, so that is reported up front without a network call.
    pub fn llm(&self) -> Result<&LlmClient, RuntimeError> {
        let client = self.llm.as_ref().map_err(|e| RuntimeError::LlmSetup(e.clone()))?;
        let default_provider =
            client.base_url().trim_end_matches('/') == DEFAULT_BASE_URL.trim_end_matches('/');
        if default_provider && self.settings.llm.api_key.is_none() {
            return Err(RuntimeError::LlmNotConfigured);
        }
        Ok(client)
    }

    /// A new session of `agent` (title trimmed and cut; empty means [`DEFAULT_SESSION_TITLE`]).
    pub async fn create_session(
        &self,
        agent: &AgentId,
        title: Option<&str>,
    ) -> Result<Session, RuntimeError> {
        self.ensure_agent(agent).await?;
        let title = clean_title(title.unwrap_or(""));
        Ok(self.store.create_session(agent, &title).await?)
    }

    /// The persistent session an API client names with a key (the OpenAI `user` field or the
    /// `X-Crewgate-Session` header). Keys are stored hashed and are scoped to the agent.
    pub async fn session_for_client_key(&self, agent: &AgentId, key: &str) -> Result<Session, RuntimeError> {
        self.ensure_agent(agent).await?;
        // Untitled, so the first message names it (the key itself may be personal data).
        Ok(self.store.session_for_key(agent, &client_key_hash(key), DEFAULT_SESSION_TITLE).await?)
    }

    /// Events of every future turn of a session of `agent`. Foreign or unknown sessions are
    /// [`RuntimeError::SessionNotFound`].
    pub async fn subscribe(
        &self,
        agent: &AgentId,
        session: &str,
    ) -> Result<broadcast::Receiver<TurnEvent>, RuntimeError> {
        self.store.get_session(agent, session).await?.ok_or(RuntimeError::SessionNotFound)?;
        Ok(self.bus.subscribe(session))
    }

    /// Proposal events (made, decided, executed, expired) of every session of `agent`, including
    /// sessions the subscriber never opened (inter-agent threads, background runs, other tabs).
    pub async fn subscribe_proposals(
        &self,
        agent: &AgentId,
    ) -> Result<broadcast::Receiver<TurnEvent>, RuntimeError> {
        self.ensure_agent(agent).await?;
        Ok(self.bus.subscribe_proposals(agent.as_str()))
    }

    async fn ensure_agent(&self, agent: &AgentId) -> Result<(), RuntimeError> {
        self.store.get_agent(agent).await?.map(|_| ()).ok_or(RuntimeError::AgentNotFound)
    }
}

/// Trims a title, cuts it to [`MAX_TITLE_CHARS`], and falls back to [`DEFAULT_SESSION_TITLE`].
pub fn clean_title(title: &str) -> String {
    let t = title.trim();
    if t.is_empty() { DEFAULT_SESSION_TITLE.to_owned() } else { prompt::excerpt(t, MAX_TITLE_CHARS) }
}

/// Client keys may be e-mail addresses or user ids of another system: only a hash is stored.
fn client_key_hash(key: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"crewgate client session key v1\0");
    h.update(key.as_bytes());
    hex::encode(h.finalize())
}

fn store_error(e: StoreError) -> RuntimeError {
    match e {
        StoreError::NotFound(_) => RuntimeError::SessionNotFound,
        other => RuntimeError::Store(other),
    }
}
