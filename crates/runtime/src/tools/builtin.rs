//! Built-in read tools that need no external service.

use super::{Effect, Tool, ToolContext, ToolError, ToolManifest};
use crate::time::{rfc3339, weekday};
use async_trait::async_trait;
use serde_json::{Value, json};

/// `current_time`: the gateway's clock, in UTC and optionally at a fixed UTC offset.
#[derive(Debug)]
pub struct CurrentTime {
    manifest: ToolManifest,
}

impl CurrentTime {
    pub fn new() -> Self {
        Self {
            manifest: ToolManifest {
                name: "current_time".into(),
                description: "Current date and time (UTC, or at a UTC offset in minutes).".into(),
                parameters: json!({
                    "type": "object",
                    "properties": {"utc_offset_minutes": {"type": "integer", "minimum": -840, "maximum": 840}},
                    "additionalProperties": false
                }),
                effect: Effect::Read,
            },
        }
    }
}

impl Default for CurrentTime {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Tool for CurrentTime {
    fn manifest(&self) -> &ToolManifest {
        &self.manifest
    }

    async fn call(&self, _ctx: &ToolContext, args: Value) -> Result<Value, ToolError> {
        let offset = args.get("utc_offset_minutes").and_then(Value::as_i64).unwrap_or(0);
        let offset = i32::try_from(offset).map_err(|e| ToolError::InvalidArguments(e.to_string()))?;
        let now = crewgate_core::now_millis();
        let local_ms = now + i64::from(offset) * 60_000;
        Ok(json!({
            "utc": rfc3339(now, 0),
            "local": rfc3339(now, offset),
            "weekday": weekday(local_ms),
            "unix_ms": now,
        }))
    }
}

/// `list_my_sessions`: the calling agent's own conversations (never another agent's).
#[derive(Debug)]
pub struct ListMySessions {
    manifest: ToolManifest,
}

impl ListMySessions {
    pub fn new() -> Self {
        Self {
            manifest: ToolManifest {
                name: "list_my_sessions".into(),
                description: "List your recent chat sessions (id, title, last activity).".into(),
                parameters: json!({
                    "type": "object",
                    "properties": {"limit": {"type": "integer", "minimum": 1, "maximum": 50}},
                    "additionalProperties": false
                }),
                effect: Effect::Read,
            },
        }
    }
}

impl Default for ListMySessions {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Tool for ListMySessions {
    fn manifest(&self) -> &ToolManifest {
        &self.manifest
    }

    async fn call(&self, ctx: &ToolContext, args: Value) -> Result<Value, ToolError> {
        let limit = args.get("limit").and_then(Value::as_u64).unwrap_or(10);
        let limit = usize::try_from(limit).unwrap_or(50).min(50);
        let sessions =
            ctx.store.list_sessions(&ctx.agent.id).await.map_err(|e| ToolError::Failed(e.to_string()))?;
        let total = sessions.len();
        let items: Vec<Value> = sessions
            .into_iter()
            .take(limit)
            .map(|s| {
                json!({
                    "id": s.id,
                    "title": s.title,
                    "last_activity": rfc3339(s.updated_at, 0),
                    "current": s.id == ctx.session_id,
                })
            })
            .collect();
        Ok(json!({"sessions": items, "total": total}))
    }
}

/// A tool that answers every call with a fixed value and counts its calls. For tests and demos
/// (e.g. canned calendar data); never registered by default.
#[derive(Debug)]
pub struct StaticTool {
    manifest: ToolManifest,
    answer: Value,
    calls: std::sync::atomic::AtomicUsize,
}

impl StaticTool {
    pub fn new(manifest: ToolManifest, answer: Value) -> Self {
        Self { manifest, answer, calls: std::sync::atomic::AtomicUsize::new(0) }
    }

    /// How many times the tool actually ran.
    pub fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait]
impl Tool for StaticTool {
    fn manifest(&self) -> &ToolManifest {
        &self.manifest
    }

    async fn call(&self, _ctx: &ToolContext, _args: Value) -> Result<Value, ToolError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(self.answer.clone())
    }
}
