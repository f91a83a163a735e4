//! [`RuntimeError`]: why a turn (or a session operation) failed, as a sentence for the person.

use crewgate_llm::LlmError;
use crewgate_store::StoreError;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// Also used for a session of another agent, so callers cannot probe for existence.
    #[error("session not found")]
    SessionNotFound,
    #[error("agent not found")]
    AgentNotFound,
    #[error("{0}")]
    InvalidInput(String),
    #[error(
        "no LLM API key is configured: set REDPILL_API_KEY (or llm.apiKey in the config file) and restart the gateway"
    )]
    LlmNotConfigured,
    #[error("the LLM client cannot be set up: {0}")]
    LlmSetup(String),
    /// The provider failed after the client's retries; its `Display` is already for the person.
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error("the turn took longer than {} s and was stopped; ask again, perhaps in smaller steps", .0.as_secs())]
    TurnTimeout(Duration),
    #[error(
        "the agent used all {0} model calls of this turn without a final answer; ask again or simplify the request"
    )]
    StepLimit(u32),
    #[error(
        "this chain of agent work used all {0} model calls it may make (across agents and background tasks) and was stopped; ask again, perhaps with a narrower request"
    )]
    TraceStepLimit(u32),
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    /// A task the turn waited for (a proposal being stored or run) panicked or was cancelled.
    #[error("an internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl RuntimeError {
    /// Stable machine-readable code for API error bodies and WebSocket error events.
    pub fn code(&self) -> &'static str {
        match self {
            RuntimeError::SessionNotFound | RuntimeError::AgentNotFound => "not_found",
            RuntimeError::InvalidInput(_) => "bad_request",
            RuntimeError::LlmNotConfigured | RuntimeError::LlmSetup(_) => "llm_not_configured",
            RuntimeError::Llm(_) => "llm_error",
            RuntimeError::TurnTimeout(_) => "turn_timeout",
            RuntimeError::StepLimit(_) => "step_limit",
            RuntimeError::TraceStepLimit(_) => "trace_step_limit",
            RuntimeError::Store(StoreError::NotFound(_)) => "not_found",
            RuntimeError::Store(_) => "store_unavailable",
            RuntimeError::Task(_) => "internal",
        }
    }
}
