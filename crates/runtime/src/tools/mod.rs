//! The tool layer: a [`Tool`] trait, [`ToolManifest`]s and a [`ToolRegistry`].
//!
//! A manifest declares `effect: read | write`. Only read tools run from a model's call; a write
//! tool call becomes a proposal (see `crate::approvals`) and its [`Tool::call`] runs only after
//! the owner approved it (or a grant they set matched), with the proposal's idempotency key.

mod builtin;
pub mod external;

pub use builtin::{CurrentTime, ListMySessions, StaticTool};
pub use crewgate_tools::validate_arguments;

use async_trait::async_trait;
use crewgate_core::Agent;
use crewgate_llm::ToolDef;
use crewgate_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Whether a tool only reads or changes something outside the chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Read,
    Write,
}

/// What the model is told about a tool, and what the gateway enforces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolManifest {
    /// `^[a-z0-9_]{1,64}$` (providers accept `[a-zA-Z0-9_-]`; we keep one style).
    pub name: String,
    /// One short sentence: every tool's description is sent with every turn.
    pub description: String,
    /// JSON Schema (an object schema) of the arguments.
    pub parameters: Value,
    pub effect: Effect,
}

/// What a tool call may see: the calling agent (for scoping) and the store.
#[derive(Clone)]
pub struct ToolContext {
    pub agent: Agent,
    pub session_id: String,
    pub store: Arc<dyn Store>,
    /// Set for an approved write: derived from its proposal, the same on every attempt, so the
    /// service can deduplicate and crash recovery can look the write up.
    pub idempotency_key: Option<String>,
    /// The chain of agent work this call belongs to (inter-agent loop protection).
    pub trace: crate::agents::Trace,
}

impl std::fmt::Debug for ToolContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolContext")
            .field("agent", &self.agent.id)
            .field("session", &self.session_id)
            .field("idempotency_key", &self.idempotency_key)
            .field("trace", &self.trace)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Fed back to the model so it can correct its call.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The tool did not do its work (a write certainly did not happen).
    #[error("{0}")]
    Failed(String),
    /// An external service failed. `maybe_done`: a write may have happened anyway (the request
    /// left the process and no clear answer came back), so it must not be retried blindly.
    #[error("{message}")]
    Service {
        message: String,
        maybe_done: bool,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    #[error("tool name {0:?} is invalid: use 1-64 characters of a-z, 0-9 and _")]
    InvalidName(String),
    #[error("a tool named {0:?} is already registered")]
    Duplicate(String),
}

impl ToolError {
    /// True when a write may have happened despite the error (never retry it blindly).
    pub fn maybe_done(&self) -> bool {
        matches!(self, ToolError::Service { maybe_done: true, .. })
    }
}

/// How a pending write is shown to the person asked to approve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteDescription {
    /// `📋 Proposed action: …` with the labelled values (rendered from the arguments, never from
    /// the model's prose).
    pub markdown: String,
    /// Short verb phrase for the reply hint ("send", "create the event", …).
    pub verb: String,
    /// What a grant may be narrowed to (recipients, page ids, object slugs), lower-case.
    pub targets: Vec<String>,
}

/// What a crash-recovery check learned about an earlier run of a write.
#[derive(Debug, Clone, PartialEq)]
pub enum PriorExecution {
    /// It happened; this is what it produced.
    Found(Value),
    /// The service has no trace of it.
    NotFound,
    /// The service cannot tell: a person must check.
    Unknown,
}

/// What an agent needs before it is offered a tool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ToolNeeds {
    /// The skill (`gog`, `notion`, `attio-crm`) the agent's `skills` allowlist must permit.
    pub skill: Option<&'static str>,
    /// A secret of the agent's owner that must be stored (e.g. their Google connection).
    pub owner_secret: Option<&'static str>,
    /// Offered only to the orchestrator (admin tools: onboarding, user management, broadcast).
    pub orchestrator_only: bool,
}

#[async_trait]
pub trait Tool: Send + Sync {
    fn manifest(&self) -> &ToolManifest;

    /// Runs the tool with arguments already validated with [`Tool::validate`]. The result goes
    /// to the model as-is (a JSON string stays plain text, anything else is sent as JSON). A
    /// write tool's `call` runs only for an approved proposal, with `ctx.idempotency_key` set.
    async fn call(&self, ctx: &ToolContext, args: Value) -> Result<Value, ToolError>;

    /// Checks the model's arguments; the error says what to fix. Default: the manifest's schema.
    fn validate(&self, args: &Value) -> Result<(), String> {
        validate_arguments(&self.manifest().parameters, args)
    }

    /// The action family autonomy grants may name (e.g. `gmail.send`).
    fn action_family(&self) -> Option<&str> {
        None
    }

    /// How a pending write of this tool is shown to its approver.
    fn describe_write(&self, args: &Value) -> WriteDescription {
        let m = self.manifest();
        let pretty = serde_json::to_string_pretty(args).unwrap_or_else(|_| args.to_string());
        let mut markdown = format!("📋 Proposed action: {}\n", m.description.trim_end_matches('.'));
        markdown.push_str(&format!("**Tool:** {}\n**Arguments:**\n", m.name));
        for line in pretty.lines() {
            markdown.push_str(&format!("> {line}\n"));
        }
        WriteDescription { markdown, verb: "go ahead".into(), targets: Vec::new() }
    }

    /// Whether an earlier run of this write (same `ctx.idempotency_key`) happened. Default:
    /// nobody can tell.
    async fn find_prior(&self, _ctx: &ToolContext, _args: &Value) -> Result<PriorExecution, ToolError> {
        Ok(PriorExecution::Unknown)
    }

    /// Skill and credential the agent needs to be offered this tool. Default: nothing.
    fn needs(&self) -> ToolNeeds {
        ToolNeeds::default()
    }

    /// Whether `agent` is offered this tool at all (e.g. `broadcast`: the orchestrator only).
    /// Default: yes.
    fn offered_to(&self, _agent: &Agent) -> bool {
        true
    }

    /// Checked after [`Tool::validate`] and before the call runs or becomes a proposal; `Err`
    /// is the message for the model and nothing is stored or run (e.g. a message to an agent
    /// the caller may not reach). Default: admitted.
    async fn admit(&self, _ctx: &ToolContext, _args: &Value) -> Result<(), String> {
        Ok(())
    }
}

/// The tools an agent may call, by name.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.tools.keys()).finish()
    }
}

/// `gog` is allowed by `gog` and by its ClawHub slug `steipete/gog`.
fn skill_matches(entry: &str, skill: &str) -> bool {
    entry == skill || entry.rsplit_once('/').is_some_and(|(_, short)| short == skill)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl ToolRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in read tools that need no external service.
    pub fn with_defaults() -> Self {
        let mut r = Self::new();
        // Both names are valid constants, so registering cannot fail.
        let _ = r.register(Arc::new(CurrentTime::new()));
        let _ = r.register(Arc::new(ListMySessions::new()));
        r
    }

    pub fn register(&mut self, tool: Arc<dyn Tool>) -> Result<(), ToolError> {
        let name = tool.manifest().name.clone();
        if !valid_name(&name) {
            return Err(ToolError::InvalidName(name));
        }
        if self.tools.contains_key(&name) {
            return Err(ToolError::Duplicate(name));
        }
        self.tools.insert(name, tool);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    pub fn names(&self) -> Vec<&str> {
        self.tools.keys().map(String::as_str).collect()
    }

    pub fn manifests(&self) -> Vec<&ToolManifest> {
        self.tools.values().map(|t| t.manifest()).collect()
    }

    /// The tools `agent` is offered: those that offer themselves to it ([`Tool::offered_to`]),
    /// whose skill its `skills` setting allows (absent: every registered skill) and whose owner
    /// secret (e.g. the Google connection) is stored.
    pub async fn available_to(&self, agent: &Agent, store: &dyn Store) -> Result<ToolRegistry, StoreError> {
        let allowed: Option<Vec<&str>> = agent
            .settings
            .get("skills")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(Value::as_str).collect());
        let mut secrets: BTreeMap<&'static str, bool> = BTreeMap::new();
        let mut out = ToolRegistry::new();
        for (name, tool) in &self.tools {
            if !tool.offered_to(agent) {
                continue;
            }
            let needs = tool.needs();
            if needs.orchestrator_only && agent.kind != crewgate_core::AgentKind::Orchestrator {
                continue;
            }
            if let (Some(skill), Some(list)) = (needs.skill, &allowed)
                && !list.iter().any(|s| skill_matches(s, skill))
            {
                continue;
            }
            if let Some(secret) = needs.owner_secret {
                let present = match secrets.get(secret) {
                    Some(p) => *p,
                    None => {
                        let p = match &agent.owner {
                            Some(owner) => store.get_secret(owner.as_str(), secret).await?.is_some(),
                            None => false,
                        };
                        secrets.insert(secret, p);
                        p
                    }
                };
                if !present {
                    continue;
                }
            }
            out.tools.insert(name.clone(), tool.clone());
        }
        Ok(out)
    }

    /// The `tools` array of a chat request, in name order (stable, so provider prompt caches hit).
    pub fn definitions(&self) -> Vec<ToolDef> {
        self.tools
            .values()
            .map(|t| {
                let m = t.manifest();
                ToolDef::function(&m.name, &m.description, m.parameters.clone())
            })
            .collect()
    }
}
