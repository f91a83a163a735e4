//! [`TurnEvent`]: what a running turn reports, in order, to its caller and to session subscribers.
//! Serialised (tagged by `type`) as the WebSocket's server → client messages.

use crewgate_core::Proposal;
use crewgate_store::Message;
use serde::{Deserialize, Serialize};

/// Tokens and model calls of one turn, summed over its steps (as the provider reported them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub llm_calls: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TurnEvent {
    /// The turn holds the session (earlier turns of the session are done).
    TurnStarted { session: String, turn: String },
    /// The person's message, as stored.
    UserMessage { session: String, turn: String, message: Message },
    /// More assistant text, as the model streams it.
    Delta { session: String, turn: String, text: String },
    /// The model called a tool; it runs now (read tools only).
    ToolCall { session: String, turn: String, call_id: String, name: String, arguments: String },
    /// A tool finished; `preview` is the start of what went back to the model.
    ToolResult { session: String, turn: String, call_id: String, name: String, ok: bool, preview: String },
    /// A proposal was made or changed state (pending, approved, executing, done, failed, …).
    /// `turn` is empty when the change happened outside a turn (REST decision, sweeper, restart).
    Proposal { session: String, turn: String, proposal: Box<Proposal> },
    /// The gateway posted a message into the session outside a turn (an expired proposal, an
    /// outcome after a restart or a dashboard decision); `turn` is empty.
    Notice { session: String, turn: String, message: Message },
    /// The final assistant message, as stored. Always the last event of a successful turn.
    Final { session: String, turn: String, message: Message, usage: TurnUsage },
    /// The turn failed; `message` is for the person. Always the last event of a failed turn; the
    /// session stays usable.
    Error { session: String, turn: String, code: String, message: String },
}

impl TurnEvent {
    pub fn session(&self) -> &str {
        match self {
            TurnEvent::TurnStarted { session, .. }
            | TurnEvent::UserMessage { session, .. }
            | TurnEvent::Delta { session, .. }
            | TurnEvent::ToolCall { session, .. }
            | TurnEvent::ToolResult { session, .. }
            | TurnEvent::Proposal { session, .. }
            | TurnEvent::Notice { session, .. }
            | TurnEvent::Final { session, .. }
            | TurnEvent::Error { session, .. } => session,
        }
    }

    pub fn turn(&self) -> &str {
        match self {
            TurnEvent::TurnStarted { turn, .. }
            | TurnEvent::UserMessage { turn, .. }
            | TurnEvent::Delta { turn, .. }
            | TurnEvent::ToolCall { turn, .. }
            | TurnEvent::ToolResult { turn, .. }
            | TurnEvent::Proposal { turn, .. }
            | TurnEvent::Notice { turn, .. }
            | TurnEvent::Final { turn, .. }
            | TurnEvent::Error { turn, .. } => turn,
        }
    }

    /// True for the last event of a turn.
    pub fn is_terminal(&self) -> bool {
        matches!(self, TurnEvent::Final { .. } | TurnEvent::Error { .. })
    }
}
