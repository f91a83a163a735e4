//! The inter-agent tools the runtime registers itself (see the module above for the rules).

use super::{AllowAgents, Delivery, Hub, ReplyMode, RunInfo, Trace, audit, is_active};
use crate::tools::{Effect, Tool, ToolContext, ToolError, ToolManifest, ToolNeeds, WriteDescription};
use crate::{Runtime, prompt};
use async_trait::async_trait;
use crewgate_core::{Agent, AgentId, AgentKind};
use futures::StreamExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Names of the inter-agent tools.
pub const TOOL_NAMES: [&str; 6] =
    ["sessions_send", "broadcast", "sessions_spawn", "sessions_list", "session_status", "session_cancel"];

/// Most recipients a broadcast may list.
const MAX_RECIPIENTS: usize = 500;
/// Runs `sessions_list` shows (newest first).
const LIST_RUNS: usize = 30;
/// Margin kept under the gate's tool timeout when waiting for a reply.
const TIMEOUT_MARGIN: Duration = Duration::from_secs(2);

pub(crate) fn register(registry: &mut crate::ToolRegistry, hub: &Arc<Hub>) {
    let tools: [Arc<dyn Tool>; 6] = [
        Arc::new(SessionsSend::new(hub.clone())),
        Arc::new(Broadcast::new(hub.clone())),
        Arc::new(SessionsSpawn::new(hub.clone())),
        Arc::new(RunTool::new(RunToolKind::List, hub.clone())),
        Arc::new(RunTool::new(RunToolKind::Status, hub.clone())),
        Arc::new(RunTool::new(RunToolKind::Cancel, hub.clone())),
    ];
    for t in tools {
        if let Err(e) = registry.register(t) {
            tracing::warn!(error = %e, "an inter-agent tool was not registered");
        }
    }
}

fn manifest(name: &str, description: &str, parameters: Value, effect: Effect) -> ToolManifest {
    ToolManifest { name: name.into(), description: description.into(), parameters, effect }
}

fn text_arg<'a>(args: &'a Value, key: &str) -> &'a str {
    args.get(key).and_then(Value::as_str).map(str::trim).unwrap_or("")
}

fn runtime(hub: &Hub) -> Result<Arc<Runtime>, ToolError> {
    hub.runtime().map_err(|e| ToolError::Failed(e.to_string()))
}

/// Why the caller may not message `to` now (checked before a proposal and again before it
/// runs); audited as `agents.refuse`.
struct Refusal {
    reason: &'static str,
    message: String,
}

impl Refusal {
    fn new(reason: &'static str, message: String) -> Self {
        Self { reason, message }
    }

    async fn audit(self, ctx: &ToolContext, tool: &str, to: &str) -> String {
        audit(
            ctx.store.as_ref(),
            &ctx.agent,
            "agents.refuse",
            &ctx.trace,
            json!({"tool": tool, "to": to, "reason": self.reason, "message": self.message}),
        )
        .await;
        self.message
    }
}

fn hop_check(hub: &Hub, trace: &Trace) -> Result<(), Refusal> {
    let max = hub.settings().max_hops;
    if trace.hop >= max {
        return Err(Refusal::new(
            "hop_limit",
            format!(
                "refused: hop limit reached — this request has already passed through {} agent-to-agent messages (limit {max}). Nothing was sent; answer with what you have instead of forwarding it",
                trace.hop
            ),
        ));
    }
    Ok(())
}

/// The target of a message from `ctx.agent`, or why not.
async fn check_target(hub: &Hub, ctx: &ToolContext, to: &str, wait: bool) -> Result<Agent, Refusal> {
    let me = &ctx.agent.id;
    if to == me.as_str() {
        return Err(Refusal::new(
            "self",
            "refused: you cannot message yourself; use sessions_spawn to work on something in the background"
                .into(),
        ));
    }
    let allow = AllowAgents::of(&ctx.agent);
    let allowed = AgentId::parse(to).ok().filter(|id| allow.allows(me, id));
    let Some(id) = allowed else {
        return Err(Refusal::new(
            "not_allowed",
            format!(
                "refused: you may not message {to:?}; you may message: {}. Nothing was sent (the owner can change subagents.allowAgents)",
                allow.describe(me)
            ),
        ));
    };
    let target = match ctx.store.get_agent(&id).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            return Err(Refusal::new(
                "unknown_agent",
                format!("refused: there is no agent {to:?}; check the id. Nothing was sent"),
            ));
        }
        Err(e) => {
            return Err(Refusal::new("store", format!("error: the store failed ({e}); nothing was sent")));
        }
    };
    match is_active(ctx.store.as_ref(), &target).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(Refusal::new(
                "inactive",
                format!("refused: agent {to} is not active (its person is not active); nothing was sent"),
            ));
        }
        Err(e) => {
            return Err(Refusal::new("store", format!("error: the store failed ({e}); nothing was sent")));
        }
    }
    hop_check(hub, &ctx.trace)?;
    if wait && hub.is_busy(&(ctx.trace.id.clone(), me.clone(), target.id.clone())) {
        return Err(Refusal::new(
            "cycle",
            format!(
                "refused: cycle — {to} is still working on an earlier message from you in this same chain, so waiting for it would wait for yourself. Nothing was sent; answer with what you have"
            ),
        ));
    }
    Ok(target)
}

// ------------------------------------------------------------------------------------------
// sessions_send

struct SessionsSend {
    manifest: ToolManifest,
    hub: Arc<Hub>,
}

impl SessionsSend {
    fn new(hub: Arc<Hub>) -> Self {
        let manifest = manifest(
            "sessions_send",
            "Message another agent (needs approval); wait=true returns its reply, else it is posted here later.",
            json!({
                "type": "object",
                "properties": {
                    "to": {"type": "string", "maxLength": 64},
                    "message": {"type": "string"},
                    "wait": {"type": "boolean"}
                },
                "required": ["to", "message"],
                "additionalProperties": false
            }),
            Effect::Write,
        );
        Self { manifest, hub }
    }
}

fn non_empty(args: &Value, key: &str) -> Result<(), String> {
    if text_arg(args, key).is_empty() {
        return Err(format!("arguments.{key} must not be empty"));
    }
    Ok(())
}

fn quote(text: &str) -> String {
    text.trim().lines().map(|l| format!("> {l}\n")).collect()
}

#[async_trait]
impl Tool for SessionsSend {
    fn manifest(&self) -> &ToolManifest {
        &self.manifest
    }

    fn validate(&self, args: &Value) -> Result<(), String> {
        crate::tools::validate_arguments(&self.manifest.parameters, args)?;
        non_empty(args, "to")?;
        non_empty(args, "message")
    }

    fn action_family(&self) -> Option<&str> {
        Some("agents.message")
    }

    fn describe_write(&self, args: &Value) -> WriteDescription {
        let to = text_arg(args, "to");
        let wait = args.get("wait").and_then(Value::as_bool).unwrap_or(false);
        let markdown = format!(
            "📋 Proposed action: Message agent {to}\n**To:** {to}\n**Wait for the reply:** {}\n**Message:**\n{}",
            if wait { "yes" } else { "no" },
            quote(text_arg(args, "message"))
        );
        WriteDescription { markdown, verb: "send it".into(), targets: vec![to.to_lowercase()] }
    }

    fn offered_to(&self, agent: &Agent) -> bool {
        self.hub.enabled() && AllowAgents::of(agent).reaches_others(&agent.id)
    }

    async fn admit(&self, ctx: &ToolContext, args: &Value) -> Result<(), String> {
        let (to, wait) = (text_arg(args, "to"), args.get("wait").and_then(Value::as_bool).unwrap_or(false));
        match check_target(&self.hub, ctx, to, wait).await {
            Ok(_) => Ok(()),
            Err(r) => Err(r.audit(ctx, "sessions_send", to).await),
        }
    }

    async fn call(&self, ctx: &ToolContext, args: Value) -> Result<Value, ToolError> {
        let rt = runtime(&self.hub)?;
        let to = text_arg(&args, "to");
        let wait = args.get("wait").and_then(Value::as_bool).unwrap_or(false);
        // Checked again: the allow-list, the agent or the chain may have changed since the
        // proposal was made.
        let target = match check_target(&self.hub, ctx, to, wait).await {
            Ok(t) => t,
            Err(r) => return Err(ToolError::Failed(r.audit(ctx, "sessions_send", to).await)),
        };
        let mode = if wait {
            let limit =
                self.hub.settings().reply_wait.min(rt.settings().tool_timeout.saturating_sub(TIMEOUT_MARGIN));
            ReplyMode::Wait(limit.max(Duration::from_secs(1)))
        } else {
            ReplyMode::PostBack
        };
        let delivered = self
            .hub
            .deliver(&rt, &ctx.agent, &ctx.session_id, &target, text_arg(&args, "message"), &ctx.trace, mode)
            .await
            .map_err(|e| ToolError::Failed(format!("{to} could not take the message: {e}")))?;
        Ok(match delivered {
            Delivery::Replied { handle, reply: Ok(reply) } => json!({
                "status": "replied", "to": to, "handle": handle,
                "outcome": format!("📨 {to} replied:\n\n{reply}"),
            }),
            Delivery::Replied { handle, reply: Err(e) } => json!({
                "status": "failed", "to": to, "handle": handle,
                "outcome": format!("The message reached {to}, but it could not answer: {e}"),
            }),
            Delivery::Delivered { handle } if wait => json!({
                "status": "running", "to": to, "handle": handle,
                "outcome": format!("Delivered to {to}; no reply yet. Its reply will be posted in this chat (handle {handle})."),
            }),
            Delivery::Delivered { handle } => json!({
                "status": "delivered", "to": to, "handle": handle,
                "outcome": format!("Delivered to {to}; its reply will be posted in this chat (handle {handle})."),
            }),
            Delivery::Queued { handle } => json!({
                "status": "queued", "to": to, "handle": handle,
                "outcome": format!("{to} is busy; the message waits in its queue and the reply will be posted in this chat (handle {handle})."),
            }),
        })
    }
}

// ------------------------------------------------------------------------------------------
// broadcast

struct Broadcast {
    manifest: ToolManifest,
    hub: Arc<Hub>,
}

impl Broadcast {
    fn new(hub: Arc<Hub>) -> Self {
        let manifest = manifest(
            "broadcast",
            "Message all active workers, or only the agents in `to` (needs approval).",
            json!({
                "type": "object",
                "properties": {
                    "message": {"type": "string"},
                    "to": {"type": "array", "items": {"type": "string"}}
                },
                "required": ["message"],
                "additionalProperties": false
            }),
            Effect::Write,
        );
        Self { manifest, hub }
    }

    /// The recipients, or why the broadcast cannot go out.
    async fn recipients(&self, ctx: &ToolContext, args: &Value) -> Result<Vec<Agent>, Refusal> {
        if ctx.agent.kind != AgentKind::Orchestrator {
            return Err(Refusal::new("not_allowed", "refused: only the orchestrator may broadcast".into()));
        }
        hop_check(&self.hub, &ctx.trace)?;
        let store_err = |e: crewgate_store::StoreError| {
            Refusal::new("store", format!("error: the store failed ({e}); nothing was sent"))
        };
        let me = &ctx.agent.id;
        let allow = AllowAgents::of(&ctx.agent);
        let agents = ctx.store.list_agents().await.map_err(store_err)?;
        let listed: Option<Vec<&str>> = args.get("to").and_then(Value::as_array).map(|l| {
            let mut v: Vec<&str> = l.iter().filter_map(Value::as_str).map(str::trim).collect();
            v.sort_unstable();
            v.dedup();
            v
        });
        let mut out = Vec::new();
        match listed {
            Some(list) => {
                let mut refused = Vec::new();
                for id in list {
                    match agents
                        .iter()
                        .find(|a| a.id.as_str() == id && a.id != *me && allow.allows(me, &a.id))
                    {
                        Some(a) if is_active(ctx.store.as_ref(), a).await.map_err(store_err)? => {
                            out.push(a.clone())
                        }
                        _ => refused.push(id),
                    }
                }
                if !refused.is_empty() {
                    return Err(Refusal::new(
                        "unknown_agent",
                        format!(
                            "refused: not active agents you may message: {}; nothing was sent. Leave `to` out to reach every active worker",
                            refused.join(", ")
                        ),
                    ));
                }
            }
            None => {
                for a in agents {
                    if a.kind == AgentKind::Worker
                        && a.id != *me
                        && allow.allows(me, &a.id)
                        && is_active(ctx.store.as_ref(), &a).await.map_err(store_err)?
                    {
                        out.push(a);
                    }
                }
            }
        }
        if out.is_empty() {
            return Err(Refusal::new(
                "no_recipients",
                "refused: there are no active workers to message".into(),
            ));
        }
        Ok(out)
    }
}

#[async_trait]
impl Tool for Broadcast {
    fn manifest(&self) -> &ToolManifest {
        &self.manifest
    }

    fn validate(&self, args: &Value) -> Result<(), String> {
        crate::tools::validate_arguments(&self.manifest.parameters, args)?;
        non_empty(args, "message")?;
        if let Some(list) = args.get("to").and_then(Value::as_array) {
            if list.is_empty() || list.len() > MAX_RECIPIENTS {
                return Err(format!(
                    "arguments.to must list 1 to {MAX_RECIPIENTS} agent ids (or be left out)"
                ));
            }
            if list.iter().any(|v| v.as_str().is_none_or(|s| s.trim().is_empty())) {
                return Err("arguments.to must hold agent ids".into());
            }
        }
        Ok(())
    }

    fn action_family(&self) -> Option<&str> {
        Some("agents.broadcast")
    }

    fn describe_write(&self, args: &Value) -> WriteDescription {
        let listed: Vec<String> = args
            .get("to")
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(Value::as_str).map(|s| s.trim().to_lowercase()).collect())
            .unwrap_or_default();
        let (title, to) = if listed.is_empty() {
            ("Broadcast to all active workers".to_owned(), "all active workers".to_owned())
        } else {
            (format!("Broadcast to {} agents", listed.len()), listed.join(", "))
        };
        let markdown = format!(
            "📋 Proposed action: {title}\n**To:** {to}\n**Message:**\n{}",
            quote(text_arg(args, "message"))
        );
        let targets = if listed.is_empty() { vec!["*".to_owned()] } else { listed };
        WriteDescription { markdown, verb: "broadcast it".into(), targets }
    }

    fn needs(&self) -> ToolNeeds {
        ToolNeeds { orchestrator_only: true, ..ToolNeeds::default() }
    }

    fn offered_to(&self, _agent: &Agent) -> bool {
        self.hub.enabled()
    }

    async fn admit(&self, ctx: &ToolContext, args: &Value) -> Result<(), String> {
        match self.recipients(ctx, args).await {
            Ok(_) => Ok(()),
            Err(r) => Err(r.audit(ctx, "broadcast", "*").await),
        }
    }

    async fn call(&self, ctx: &ToolContext, args: Value) -> Result<Value, ToolError> {
        let rt = runtime(&self.hub)?;
        let recipients = match self.recipients(ctx, &args).await {
            Ok(r) => r,
            Err(r) => return Err(ToolError::Failed(r.audit(ctx, "broadcast", "*").await)),
        };
        let message = text_arg(&args, "message");
        let hub = &self.hub;
        let results: Vec<(AgentId, Result<Delivery, String>)> = futures::stream::iter(recipients)
            .map(|to| {
                let rt = rt.clone();
                async move {
                    let r = hub
                        .deliver(&rt, &ctx.agent, &ctx.session_id, &to, message, &ctx.trace, ReplyMode::Keep)
                        .await;
                    (to.id, r)
                }
            })
            .buffer_unordered(hub.settings().fan_out.max(1))
            .collect()
            .await;
        let mut rows: Vec<Value> = results
            .into_iter()
            .map(|(id, r)| match r {
                Ok(Delivery::Queued { handle }) => json!({"agent": id, "status": "queued", "handle": handle}),
                Ok(Delivery::Delivered { handle } | Delivery::Replied { handle, .. }) => {
                    json!({"agent": id, "status": "delivered", "handle": handle})
                }
                Err(e) => json!({"agent": id, "status": "failed", "error": e}),
            })
            .collect();
        rows.sort_by(|a, b| a["agent"].as_str().cmp(&b["agent"].as_str()));
        let count = |s: &str| rows.iter().filter(|r| r["status"] == s).count();
        let (delivered, queued, failed) = (count("delivered"), count("queued"), count("failed"));
        let mut text = format!("Delivered to {delivered} of {} agents", rows.len());
        if queued > 0 {
            text.push_str(&format!("; {queued} queued (busy)"));
        }
        if failed > 0 {
            let names: Vec<&str> =
                rows.iter().filter(|r| r["status"] == "failed").filter_map(|r| r["agent"].as_str()).collect();
            text.push_str(&format!("; failed: {}", names.join(", ")));
        }
        text.push('.');
        audit(
            ctx.store.as_ref(),
            &ctx.agent,
            "agents.broadcast",
            &ctx.trace,
            json!({"recipients": rows.len(), "delivered": delivered, "queued": queued, "failed": failed}),
        )
        .await;
        Ok(
            json!({"delivered": delivered, "queued": queued, "failed": failed, "recipients": rows, "outcome": text}),
        )
    }
}

// ------------------------------------------------------------------------------------------
// sessions_spawn, sessions_list, session_status, session_cancel

fn run_json(r: &RunInfo) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

struct SessionsSpawn {
    manifest: ToolManifest,
    hub: Arc<Hub>,
}

impl SessionsSpawn {
    fn new(hub: Arc<Hub>) -> Self {
        let manifest = manifest(
            "sessions_spawn",
            "Run a task in the background in a new session; returns a handle, the result is posted here.",
            json!({
                "type": "object",
                "properties": {
                    "task": {"type": "string"},
                    "agent": {"type": "string", "maxLength": 64}
                },
                "required": ["task"],
                "additionalProperties": false
            }),
            Effect::Read,
        );
        Self { manifest, hub }
    }

    fn check(&self, ctx: &ToolContext, args: &Value) -> Result<(), Refusal> {
        let agent = text_arg(args, "agent");
        if !agent.is_empty() && agent != ctx.agent.id.as_str() {
            return Err(Refusal::new(
                "other_agent",
                format!(
                    "refused: sessions_spawn runs only on yourself. To have {agent} work on it, use sessions_send(to, message, wait=false); it needs approval and its reply is posted here"
                ),
            ));
        }
        let max = self.hub.settings().max_spawn_depth;
        if ctx.trace.depth >= max {
            return Err(Refusal::new(
                "depth_limit",
                format!(
                    "refused: nesting limit — this is already a background task {} levels deep (limit {max}); do the work here instead",
                    ctx.trace.depth
                ),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Tool for SessionsSpawn {
    fn manifest(&self) -> &ToolManifest {
        &self.manifest
    }

    fn validate(&self, args: &Value) -> Result<(), String> {
        crate::tools::validate_arguments(&self.manifest.parameters, args)?;
        non_empty(args, "task")
    }

    fn offered_to(&self, _agent: &Agent) -> bool {
        self.hub.enabled()
    }

    async fn admit(&self, ctx: &ToolContext, args: &Value) -> Result<(), String> {
        match self.check(ctx, args) {
            Ok(()) => Ok(()),
            Err(r) => Err(r.audit(ctx, "sessions_spawn", text_arg(args, "agent")).await),
        }
    }

    async fn call(&self, ctx: &ToolContext, args: Value) -> Result<Value, ToolError> {
        let rt = runtime(&self.hub)?;
        if let Err(r) = self.check(ctx, &args) {
            return Err(ToolError::Failed(r.audit(ctx, "sessions_spawn", text_arg(&args, "agent")).await));
        }
        let run = self
            .hub
            .spawn(&rt, &ctx.agent, &ctx.session_id, text_arg(&args, "task"), &ctx.trace)
            .await
            .map_err(ToolError::Failed)?;
        Ok(json!({
            "handle": run.handle,
            "status": run.status,
            "session": run.session,
            "note": "started in the background; its result will be posted in this chat",
        }))
    }
}

/// The tools that look at or stop the calling agent's own background runs.
#[derive(Debug, Clone, Copy)]
enum RunToolKind {
    List,
    Status,
    Cancel,
}

struct RunTool {
    kind: RunToolKind,
    manifest: ToolManifest,
    hub: Arc<Hub>,
}

impl RunTool {
    fn new(kind: RunToolKind, hub: Arc<Hub>) -> Self {
        let manifest = match kind {
            RunToolKind::List => manifest(
                "sessions_list",
                "List your background runs (spawns, messages to agents).",
                json!({"type": "object", "properties": {}, "additionalProperties": false}),
                Effect::Read,
            ),
            RunToolKind::Status => manifest(
                "session_status",
                "Status and result of a background run.",
                handle_params(),
                Effect::Read,
            ),
            RunToolKind::Cancel => {
                manifest("session_cancel", "Cancel a background run.", handle_params(), Effect::Read)
            }
        };
        Self { kind, manifest, hub }
    }

    fn list(&self, ctx: &ToolContext) -> Value {
        let runs = self.hub.runs_of(&ctx.agent.id);
        let total = runs.len();
        let items: Vec<Value> = runs
            .iter()
            .take(LIST_RUNS)
            .map(|r| {
                let mut v = run_json(r);
                // The list shows where each run is; the result is for session_status.
                if let Value::Object(o) = &mut v {
                    o.remove("result");
                    if let Some(Value::String(task)) = o.get_mut("task") {
                        *task = prompt::excerpt(task, 100);
                    }
                }
                v
            })
            .collect();
        json!({"runs": items, "total": total})
    }
}

/// Parameters of the tools that name one background run.
fn handle_params() -> Value {
    json!({
        "type": "object",
        "properties": {"handle": {"type": "string", "maxLength": 64}},
        "required": ["handle"],
        "additionalProperties": false
    })
}

#[async_trait]
impl Tool for RunTool {
    fn manifest(&self) -> &ToolManifest {
        &self.manifest
    }

    fn offered_to(&self, _agent: &Agent) -> bool {
        self.hub.enabled()
    }

    async fn call(&self, ctx: &ToolContext, args: Value) -> Result<Value, ToolError> {
        let handle = text_arg(&args, "handle");
        match self.kind {
            RunToolKind::List => Ok(self.list(ctx)),
            RunToolKind::Status => match self.hub.run_of(&ctx.agent.id, handle) {
                Some(r) => Ok(run_json(&r)),
                None => {
                    Err(ToolError::Failed(super::InterAgentError::RunNotFound(handle.to_owned()).to_string()))
                }
            },
            RunToolKind::Cancel => {
                let run = self
                    .hub
                    .cancel(ctx.store.as_ref(), &ctx.agent, handle)
                    .await
                    .map_err(|e| ToolError::Failed(e.to_string()))?;
                Ok(json!({"handle": run.handle, "status": run.status}))
            }
        }
    }
}
