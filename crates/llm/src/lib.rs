//! OpenAI-compatible chat-completions client for crewgate (RedPill by default).
//!
//! - Own wire types ([`ChatRequest`], [`Message`], [`ToolDef`], [`ToolCall`], [`ChatResponse`]).
//! - [`LlmClient::complete`] (one JSON response), [`LlmClient::stream`] ([`StreamEvent`]s over SSE),
//!   [`LlmClient::stream_collect`] (stream + rebuild the final message), [`LlmClient::list_models`].
//! - Retries with exponential backoff and full jitter on 429/500/502/503/504 and connect errors,
//!   honouring `Retry-After`; whole-request timeout, connect timeout and stream stall timeout.
//! - Every failure is an [`LlmError`] whose `Display` is a sentence for the end user.
//!
//! See `README.md` for the invariants.

mod client;
mod error;
mod events;
mod retry;
pub mod sse;
mod types;

pub use client::{ChatStream, DEFAULT_BASE_URL, LlmClient, LlmSettings};
pub use error::{BoxError, LlmError, ProviderError};
pub use events::{StreamAccumulator, StreamEvent};
pub use secrecy::SecretString;
pub use types::{
    ChatRequest, ChatResponse, Choice, FunctionCall, FunctionDef, Message, ModelInfo, Role, StreamOptions,
    ToolCall, ToolChoice, ToolDef, ToolKind, Usage,
};
