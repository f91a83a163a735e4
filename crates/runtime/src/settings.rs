//! [`RuntimeSettings`]: what the CLI fills from the config file (`llm.*`) plus the loop's limits.

use crate::agents::InterAgentSettings;
use crate::approvals::ApprovalSettings;
use crewgate_llm::LlmSettings;
use std::time::Duration;

/// Model used when neither the agent's settings nor the config name one.
pub const DEFAULT_MODEL: &str = "deepseek/deepseek-v3.2";

#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Provider base URL, API key, timeouts and retries (default: RedPill, no key).
    pub llm: LlmSettings,
    /// Model for agents whose settings do not name one (`llm.model`).
    pub default_model: String,
    /// Most model calls in one turn (each tool round trip costs one).
    pub max_steps: u32,
    /// Wall-clock limit of one turn, tool calls included.
    pub turn_timeout: Duration,
    /// Limit of one tool call.
    pub tool_timeout: Duration,
    /// Estimated tokens of conversation history sent with a turn (system prompt and tools excluded).
    pub history_budget_tokens: usize,
    /// Most stored messages read to build the history (before the token budget applies).
    pub history_max_messages: i64,
    /// Longest tool result kept (longer ones are cut, with a note to the model).
    pub max_tool_result_chars: usize,
    /// Longest accepted user message.
    pub max_message_chars: usize,
    /// The approval gate: proposal lifetime, who decides, autonomy of config agents.
    pub approvals: ApprovalSettings,
    /// Inter-agent limits: hops, spawn depth and concurrency, steps per trace, reply wait.
    pub inter_agent: InterAgentSettings,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            llm: LlmSettings::default(),
            default_model: DEFAULT_MODEL.to_owned(),
            max_steps: 8,
            turn_timeout: Duration::from_secs(300),
            tool_timeout: Duration::from_secs(30),
            history_budget_tokens: 6_000,
            history_max_messages: 200,
            max_tool_result_chars: 8_000,
            max_message_chars: 32_000,
            approvals: ApprovalSettings::default(),
            inter_agent: InterAgentSettings::default(),
        }
    }
}

impl RuntimeSettings {
    /// Defaults with this provider and model.
    pub fn new(llm: LlmSettings, default_model: impl Into<String>) -> Self {
        Self { llm, default_model: default_model.into(), ..Self::default() }
    }
}
