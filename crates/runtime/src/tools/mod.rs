//! The minimal tool layer: a [`Tool`] trait, [`ToolManifest`]s and a [`ToolRegistry`].
//!
//! A manifest declares `effect: read | write`. Only read tools run from a model's call; a write
//! tool is refused here until the approval gate (proposals) exists, so a model can never cause a
//! write through this layer.

mod builtin;
mod schema;

pub use builtin::{CurrentTime, ListMySessions, StaticTool};
pub use schema::validate_arguments;

use async_trait::async_trait;
use crewgate_core::Agent;
use crewgate_llm::ToolDef;
use crewgate_store::Store;
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
}

impl std::fmt::Debug for ToolContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolContext")
            .field("agent", &self.agent.id)
            .field("session", &self.session_id)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Fed back to the model so it can correct its call.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    #[error("{0}")]
    Failed(String),
    #[error("tool name {0:?} is invalid: use 1-64 characters of a-z, 0-9 and _")]
    InvalidName(String),
    #[error("a tool named {0:?} is already registered")]
    Duplicate(String),
}

#[async_trait]
pub trait Tool: Send + Sync {
    fn manifest(&self) -> &ToolManifest;

    /// Runs the tool with arguments already validated against the manifest's schema. The result
    /// goes to the model as-is (a JSON string stays plain text, anything else is sent as JSON).
    async fn call(&self, ctx: &ToolContext, args: Value) -> Result<Value, ToolError>;
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
