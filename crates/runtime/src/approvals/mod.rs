//! The human approval gate (DESIGN §3 steps 4–7).
//!
//! - A write tool call from the model never runs from that call: its arguments are validated
//!   (invalid → an error for the model, nothing stored), then it becomes a durable proposal
//!   (canonical arguments, fingerprint, a summary rendered from the arguments) unless an autonomy
//!   grant set by the owner or an admin covers it.
//! - Decisions come only from the agent's owner (admins only with `admins_may_decide`, or for an
//!   agent without an owner): their own chat message, parsed here before it reaches the model
//!   ([`parse_decision`]), or the REST/WebSocket decide calls. Nothing a model writes, a tool
//!   returns or a document contains is ever parsed as a decision.
//! - Execution is exactly-once: `pending → approved` (bound to the fingerprint) → `executing` →
//!   `done | failed | unknown`, each one conditional update in the store; the tool gets the
//!   proposal's idempotency key. Executions run in their own task, so a caller that goes away
//!   cannot leave one half-done; a process that dies is recovered at start
//!   ([`crate::Runtime::recover_proposals`]) by asking the service, never by re-sending.
//! - Every tool call, proposal, decision and execution result is appended to the hash-chained
//!   audit log.

mod grants;
mod parse;

pub use grants::{Autonomy, DAY_MS, config_grant, glob, grant_covers};
pub use parse::{ChatDecision, parse_decision};

use crate::events::TurnEvent;
use crate::sync::{SessionBus, SessionLocks};
use crate::tools::{PriorExecution, Tool, ToolContext, ToolRegistry};
use crate::{Runtime, RuntimeError, TurnRequest, prompt};
use crewgate_core::{Agent, AgentId, Decision, Principal, Proposal, ProposalState, fingerprint, now_millis};
use crewgate_store::approvals::{Grant, NewGrant, NewProposal, Transition};
use crewgate_store::{MessageRole, NewAudit, NewMessage, Store, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a proposal waits for a decision by default.
pub const DEFAULT_PROPOSAL_TTL: Duration = Duration::from_secs(24 * 3600);

/// Settings of the approval gate (config: `approvals.*`, `agents.list[].autonomy`).
#[derive(Debug, Clone)]
pub struct ApprovalSettings {
    /// A pending proposal expires this long after it was made.
    pub proposal_ttl: Duration,
    /// Whether admins may decide on other people's agents' proposals (default: no).
    pub admins_may_decide: bool,
    /// How often expired proposals are swept.
    pub sweep_every: Duration,
    /// Autonomy of agents declared in the config file. Other agents use `settings.autonomy.level`
    /// of their stored record (default 1) and only grants from the grants API.
    pub autonomy: BTreeMap<AgentId, Autonomy>,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        Self {
            proposal_ttl: DEFAULT_PROPOSAL_TTL,
            admins_may_decide: false,
            sweep_every: Duration::from_secs(5),
            autonomy: BTreeMap::new(),
        }
    }
}

impl ApprovalSettings {
    /// The autonomy that applies to `agent` now.
    pub fn autonomy_of(&self, agent: &Agent) -> Autonomy {
        if let Some(a) = self.autonomy.get(&agent.id) {
            return a.clone();
        }
        let level = agent
            .settings
            .pointer("/autonomy/level")
            .and_then(Value::as_u64)
            .and_then(|l| u8::try_from(l).ok())
            .filter(|l| (1..=3).contains(l))
            .unwrap_or(1);
        Autonomy { level, grants: Vec::new() }
    }
}

/// Who sent a chat message, as the server authenticated it. Messages without a sender (other
/// agents, internal callers) can never decide anything.
#[derive(Debug, Clone)]
pub struct Sender {
    pub principal: Principal,
    /// How it arrived (`rest`, `ws`, `openai`, …), recorded with decisions.
    pub channel: String,
}

impl Sender {
    pub fn new(principal: Principal, channel: impl Into<String>) -> Self {
        Self { principal, channel: channel.into() }
    }
}

/// A decision made through the API (REST or WebSocket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionRequest {
    Approve,
    Reject,
    /// The agent revises the proposal with these instructions; the answer is the new proposal.
    Edit {
        instructions: String,
    },
}

/// Body of a new grant (the grants API).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// Tool name or action family (glob), e.g. `gmail.send`.
    pub action: String,
    /// Argument (or `to`/`recipients`/`targets`) → glob; all must match.
    #[serde(default, alias = "match")]
    pub match_args: serde_json::Map<String, Value>,
    /// Milliseconds since the epoch.
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub daily_cap: Option<i64>,
    /// Ignored here; the server reads it to pick the agent.
    #[serde(default)]
    pub agent: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApprovalError {
    /// Also for another person's proposal (no existence oracle).
    #[error("proposal not found")]
    NotFound,
    #[error("grant not found")]
    GrantNotFound,
    #[error("{0}")]
    Forbidden(String),
    #[error("proposal #{number} is {state}; nothing was done")]
    NotPending { number: i64, state: ProposalState },
    #[error("proposal #{number} expired without a decision; nothing was done — ask the agent again")]
    Expired { number: i64 },
    #[error("{0}")]
    Invalid(String),
    /// The write cannot run here (its tool is not available); it was not approved.
    #[error("{0}")]
    Unavailable(String),
    /// An edit did not produce a revised proposal.
    #[error("{0}")]
    NoRevision(String),
    #[error(transparent)]
    Runtime(Box<RuntimeError>),
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    /// The task that carried out the decision panicked or was cancelled.
    #[error("the decision could not be carried out: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl From<RuntimeError> for ApprovalError {
    fn from(e: RuntimeError) -> Self {
        ApprovalError::Runtime(Box::new(e))
    }
}

impl ApprovalError {
    /// Stable machine-readable code (API error bodies, WebSocket errors).
    pub fn code(&self) -> &'static str {
        match self {
            ApprovalError::NotFound | ApprovalError::GrantNotFound => "not_found",
            ApprovalError::Forbidden(_) => "forbidden",
            ApprovalError::NotPending { .. }
            | ApprovalError::Expired { .. }
            | ApprovalError::Unavailable(_)
            | ApprovalError::NoRevision(_) => "conflict",
            ApprovalError::Invalid(_) => "bad_request",
            ApprovalError::Runtime(e) => e.code(),
            ApprovalError::Store(StoreError::NotFound(_)) => "not_found",
            ApprovalError::Store(_) => "store_unavailable",
            ApprovalError::Task(_) => "internal",
        }
    }
}

/// What the start-up recovery did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// `executing` proposals the service confirmed: now `done`.
    pub confirmed: usize,
    /// `executing` proposals the service has no trace of: now `failed` (the person was told).
    pub not_done: usize,
    /// `executing` proposals nobody can tell about: now `unknown` (the person was told).
    pub unknown: usize,
    /// `approved` proposals that had not started: executed now.
    pub resumed: usize,
}

/// Result of a write call from the model.
pub(crate) enum Proposed {
    Pending(Proposal),
    /// A grant covered it; it ran (the proposal in its final state).
    Auto {
        grant_id: String,
        proposal: Proposal,
    },
}

/// What the gateway does with a chat message before the model sees it.
pub(crate) enum ChatGate {
    /// An ordinary message: the model answers.
    Pass,
    /// The gateway answers itself (a decision was made, or it needs a clearer one).
    Answer(String),
    /// The model revises `target` with the person's instructions.
    Revise { target: Box<Proposal>, instructions: String, by: String, via: String },
}

/// The part of the gate that outlives a request: executions and notices run in their own tasks.
pub(crate) struct Gate {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) tools: ToolRegistry,
    pub(crate) bus: Arc<SessionBus>,
    pub(crate) locks: Arc<SessionLocks>,
    pub(crate) settings: ApprovalSettings,
    pub(crate) tool_timeout: Duration,
    /// Serialises grant checks with their auto-approval, so a daily cap holds in this process.
    grant_lock: tokio::sync::Mutex<()>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// "Send email" from `📋 Proposed action: Send email`.
pub(crate) fn title(p: &Proposal) -> String {
    p.summary
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("📋 Proposed action:"))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| p.tool.clone())
}

fn result_text(p: &Proposal, key: &str) -> Option<String> {
    let v = p.result.as_ref()?.get(key)?;
    Some(match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// Longest tool-provided outcome text shown to the person.
const OUTCOME_TEXT_CHARS: usize = 8_000;

/// One line for the person about a proposal that reached its end (or could not be decided).
pub(crate) fn outcome_text(p: &Proposal) -> String {
    let what = format!("#{} {}", p.number, title(p));
    match p.state {
        ProposalState::Done => {
            // A tool may give the person a text of its own in `output.outcome` (e.g. another
            // agent's reply): shown in full, not as a cut JSON excerpt.
            if let Some(text) =
                p.result.as_ref().and_then(|r| r.pointer("/output/outcome")).and_then(Value::as_str)
            {
                return format!("✅ {what}: done.\n\n{}", prompt::excerpt(text, OUTCOME_TEXT_CHARS));
            }
            let output = result_text(p, "output").map(|o| format!(" ({})", prompt::excerpt(&o, 200)));
            format!("✅ {what}: done{}.", output.unwrap_or_default())
        }
        ProposalState::Failed => format!(
            "❌ {what} did not happen: {}. Nothing was changed; ask me again if it is still needed.",
            result_text(p, "error").unwrap_or_else(|| "it failed".into())
        ),
        ProposalState::Unknown => format!(
            "⚠️ {what}: it is not certain whether this happened ({}). Check manually before asking again.",
            result_text(p, "error").unwrap_or_else(|| "the service gave no clear answer".into())
        ),
        ProposalState::Rejected => format!("Cancelled {what}; nothing was done."),
        ProposalState::Expired => format!("⏰ {what} expired without a decision; nothing was done."),
        ProposalState::Superseded => format!("{what} was replaced by a revised proposal."),
        ProposalState::Pending => format!("{what} is waiting for approval."),
        ProposalState::Approved | ProposalState::Executing => format!("{what} is running."),
    }
}

/// Why a chat decision did nothing, as one sentence.
fn refusal(e: &ApprovalError) -> String {
    let text = e.to_string();
    if text.contains("nothing was done") {
        let mut chars = text.chars();
        let first: String = chars.next().map(|c| c.to_uppercase().collect()).unwrap_or_default();
        format!("{first}{}.", chars.as_str())
    } else {
        format!("Nothing was done: {text}.")
    }
}

/// The block the person sees under the agent's reply for a new pending proposal.
pub(crate) fn pending_block(p: &Proposal, verb: &str, several: bool) -> String {
    let n = if several { format!(" #{}", p.number) } else { String::new() };
    format!(
        "{}\n_Proposal #{}. Reply **approved{n}** to {verb}, **edit{n}: …** to change, or **no{n}** to cancel._",
        p.summary.trim_end(),
        p.number
    )
}

impl Gate {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        tools: ToolRegistry,
        bus: Arc<SessionBus>,
        locks: Arc<SessionLocks>,
        settings: ApprovalSettings,
        tool_timeout: Duration,
    ) -> Self {
        Self { store, tools, bus, locks, settings, tool_timeout, grant_lock: tokio::sync::Mutex::new(()) }
    }

    async fn audit(
        &self,
        actor: &str,
        owner: Option<&crewgate_core::UserId>,
        agent: &AgentId,
        action: &str,
        detail: Value,
    ) -> Result<(), StoreError> {
        self.store
            .append_audit(NewAudit {
                actor: actor.to_owned(),
                user_id: owner.cloned(),
                agent_id: Some(agent.clone()),
                action: action.to_owned(),
                detail,
            })
            .await
            .map(|_| ())
    }

    async fn audit_p(
        &self,
        actor: &str,
        p: &Proposal,
        action: &str,
        mut detail: Value,
    ) -> Result<(), StoreError> {
        if let Value::Object(o) = &mut detail {
            o.insert("proposal".into(), json!(p.id));
            o.insert("number".into(), json!(p.number));
            o.insert("tool".into(), json!(p.tool));
            if let Some(trace) = &p.trace_id {
                o.insert("trace".into(), json!(crate::agents::Trace::decode(trace).id));
            }
        }
        self.audit(actor, p.owner_id.as_ref(), &p.agent_id, action, detail).await
    }

    /// Records a tool call of the model (arguments are not copied into the log).
    pub(crate) async fn audit_tool_call(
        &self,
        ctx: &ToolContext,
        tool: &str,
        call_id: &str,
        effect: &str,
        ok: bool,
    ) {
        let agent = &ctx.agent;
        let detail = json!({"tool": tool, "call": call_id, "effect": effect, "ok": ok, "trace": ctx.trace.id, "hop": ctx.trace.hop});
        if let Err(e) = self
            .audit(&format!("agent:{}", agent.id), agent.owner.as_ref(), &agent.id, "tool.call", detail)
            .await
        {
            tracing::error!(agent = %agent.id, tool, error = %e, "could not audit a tool call");
        }
    }

    /// Sends an event about `p` to its session's subscribers (outside a turn).
    fn publish(&self, p: &Proposal) {
        if let Some(session) = &p.session_id {
            self.bus.publish(&TurnEvent::Proposal {
                session: session.clone(),
                turn: String::new(),
                proposal: Box::new(p.clone()),
            });
        }
    }

    /// Appends a gateway notice to a session (after any running turn) and tells subscribers.
    pub(crate) async fn post_notice(&self, agent: &AgentId, session: &str, text: &str) {
        let lock = self.locks.get(session);
        let _serialised = lock.lock().await;
        match self
            .store
            .append_messages(agent, session, &[NewMessage::text(MessageRole::Assistant, text)])
            .await
        {
            Ok(mut stored) => {
                if let Some(message) = stored.pop() {
                    self.bus.publish(&TurnEvent::Notice {
                        session: session.to_owned(),
                        turn: String::new(),
                        message,
                    });
                }
            }
            Err(e) => tracing::warn!(agent = %agent, session, error = %e, "could not post a notice"),
        }
    }

    fn spawn_notice(self: &Arc<Self>, p: &Proposal, text: String) {
        let Some(session) = p.session_id.clone() else { return };
        let gate = self.clone();
        let agent = p.agent_id.clone();
        tokio::spawn(async move { gate.post_notice(&agent, &session, &text).await });
    }

    /// Who decides: `Ok(actor)` for the agent's owner, or an admin when allowed.
    pub(crate) fn may_decide(&self, who: &Principal, agent: &Agent) -> Result<String, ApprovalError> {
        match who {
            Principal::User { user_id, .. } if agent.owner.as_ref() == Some(user_id) => Ok(who.actor()),
            Principal::User { .. } => Err(ApprovalError::NotFound),
            Principal::Admin { .. } if self.settings.admins_may_decide || agent.owner.is_none() => Ok(who.actor()),
            Principal::Admin { .. } => Err(ApprovalError::Forbidden(
                "only the agent's owner decides on its proposals (set approvals.adminsMayDecide to let admins decide)"
                    .into(),
            )),
        }
    }

    // --------------------------------------------------------------------------------------
    // Proposals from the model

    /// A grant that covers this write and has room under its daily cap.
    async fn covering_grant(
        &self,
        agent: &Agent,
        autonomy: &Autonomy,
        tool: &dyn Tool,
        args: &Value,
        targets: &[String],
    ) -> Result<Option<Grant>, StoreError> {
        let now = now_millis();
        let name = tool.manifest().name.as_str();
        let mut all = autonomy.grants.clone();
        all.extend(self.store.list_grants(&agent.id).await?);
        for g in all {
            if !grant_covers(&g, name, tool.action_family(), args, targets, now) {
                continue;
            }
            if let Some(cap) = g.daily_cap
                && self.store.grant_uses_since(&g.id, now - DAY_MS).await? >= cap
            {
                continue;
            }
            return Ok(Some(g));
        }
        Ok(None)
    }

    /// Stores the model's (validated) write call as a proposal; runs it at once if a grant
    /// covers it. Runs in its own task, so a turn that is cut short cannot leave an auto-approved
    /// proposal unexecuted or a step unaudited.
    pub(crate) async fn propose(
        self: &Arc<Self>,
        ctx: &ToolContext,
        tool: &Arc<dyn Tool>,
        args: Value,
        trace: &str,
    ) -> Result<Proposed, RuntimeError> {
        let (gate, ctx, tool, trace) = (self.clone(), ctx.clone(), tool.clone(), trace.to_owned());
        tokio::spawn(async move { gate.propose_now(&ctx, &tool, args, &trace).await }).await?
    }

    async fn propose_now(
        self: &Arc<Self>,
        ctx: &ToolContext,
        tool: &Arc<dyn Tool>,
        args: Value,
        trace: &str,
    ) -> Result<Proposed, RuntimeError> {
        let agent = &ctx.agent;
        let description = tool.describe_write(&args);
        let new = NewProposal {
            agent_id: agent.id.clone(),
            session_id: Some(ctx.session_id.clone()),
            owner_id: agent.owner.clone(),
            tool: tool.manifest().name.clone(),
            args: args.clone(),
            summary: description.markdown.clone(),
            trace_id: Some(trace.to_owned()),
            expires_at: now_millis().saturating_add(ms(self.settings.proposal_ttl)),
        };
        let actor = format!("agent:{}", agent.id);
        let autonomy = self.settings.autonomy_of(agent);
        if autonomy.grants_apply() {
            let serial = self.grant_lock.lock().await;
            if let Some(grant) =
                self.covering_grant(agent, &autonomy, tool.as_ref(), &args, &description.targets).await?
            {
                let p = self.store.create_proposal(new).await?;
                self.audit_p(&actor, &p, "proposal.create", json!({"fingerprint": p.fingerprint})).await?;
                let t = Transition {
                    fingerprint: Some(p.fingerprint.clone()),
                    decision: Some(Decision::Auto { grant_id: grant.id.clone() }),
                    ..Transition::new(ProposalState::Pending, ProposalState::Approved)
                };
                let approved =
                    self.store.transition_proposal(&p.agent_id, &p.id, t).await?.ok_or_else(|| {
                        RuntimeError::Store(StoreError::Conflict(
                            "a new proposal was moved by someone else".into(),
                        ))
                    })?;
                self.audit_p(
                    &format!("grant:{}", grant.id),
                    &approved,
                    "proposal.decide",
                    json!({"decision": format!("auto (grant {})", grant.id), "by": format!("grant:{}", grant.id), "via": "autonomy"}),
                )
                .await?;
                drop(serial);
                let done = self.execute_detached(approved, agent.clone()).await?;
                return Ok(Proposed::Auto { grant_id: grant.id, proposal: done });
            }
        }
        let p = self.store.create_proposal(new).await?;
        self.audit_p(&actor, &p, "proposal.create", json!({"fingerprint": p.fingerprint})).await?;
        Ok(Proposed::Pending(p))
    }

    // --------------------------------------------------------------------------------------
    // Decisions

    /// Approves a pending proposal and runs it; answers with its final state. The decision, its
    /// audit entry and the execution run in their own task: a caller that goes away cannot
    /// leave an approved proposal unexecuted.
    pub(crate) async fn approve(
        self: &Arc<Self>,
        by: &str,
        via: &str,
        agent: &Agent,
        p: Proposal,
    ) -> Result<Proposal, ApprovalError> {
        let (gate, by, via, agent) = (self.clone(), by.to_owned(), via.to_owned(), agent.clone());
        tokio::spawn(async move { gate.approve_now(&by, &via, &agent, p).await }).await?
    }

    async fn approve_now(
        self: &Arc<Self>,
        by: &str,
        via: &str,
        agent: &Agent,
        p: Proposal,
    ) -> Result<Proposal, ApprovalError> {
        let p = self.ensure_pending(p).await?;
        if self.tools.get(&p.tool).is_none() {
            return Err(ApprovalError::Unavailable(format!(
                "the tool {} is not available on this gateway (is its skill enabled and configured?); proposal #{} was not approved",
                p.tool, p.number
            )));
        }
        let t = Transition {
            // The approval is bound to exactly the arguments the person was shown.
            fingerprint: Some(p.fingerprint.clone()),
            decision: Some(Decision::Approved { by: by.to_owned(), via: via.to_owned() }),
            ..Transition::new(ProposalState::Pending, ProposalState::Approved)
        };
        let approved = self.transition_or_conflict(&p, t).await?;
        self.audit_p(by, &approved, "proposal.decide", json!({"decision": "approved", "by": by, "via": via}))
            .await?;
        self.publish(&approved);
        Ok(self.execute_detached(approved, agent.clone()).await?)
    }

    /// Rejects a pending proposal (in its own task, so the audit entry is never lost).
    pub(crate) async fn reject(
        self: &Arc<Self>,
        by: &str,
        via: &str,
        p: Proposal,
    ) -> Result<Proposal, ApprovalError> {
        let (gate, by, via) = (self.clone(), by.to_owned(), via.to_owned());
        tokio::spawn(async move { gate.reject_now(&by, &via, p).await }).await?
    }

    async fn reject_now(&self, by: &str, via: &str, p: Proposal) -> Result<Proposal, ApprovalError> {
        let p = self.ensure_pending(p).await?;
        let t = Transition {
            decision: Some(Decision::Rejected { by: by.to_owned(), via: via.to_owned() }),
            ..Transition::new(ProposalState::Pending, ProposalState::Rejected)
        };
        let rejected = self.transition_or_conflict(&p, t).await?;
        self.audit_p(by, &rejected, "proposal.decide", json!({"decision": "rejected", "by": by, "via": via}))
            .await?;
        self.publish(&rejected);
        Ok(rejected)
    }

    /// Replaces `old` (still pending) by its revision `new`. `false` when `old` was decided
    /// meanwhile (then `new` simply stays pending on its own). Runs in its own task.
    pub(crate) async fn supersede(
        self: &Arc<Self>,
        old: &Proposal,
        new: &Proposal,
        by: &str,
        via: &str,
        instructions: &str,
    ) -> Result<bool, ApprovalError> {
        let gate = self.clone();
        let (old, new, by, via, instructions) =
            (old.clone(), new.clone(), by.to_owned(), via.to_owned(), instructions.to_owned());
        Ok(tokio::spawn(async move { gate.supersede_now(&old, &new, &by, &via, &instructions).await })
            .await??)
    }

    async fn supersede_now(
        &self,
        old: &Proposal,
        new: &Proposal,
        by: &str,
        via: &str,
        instructions: &str,
    ) -> Result<bool, StoreError> {
        let t = Transition {
            superseded_by: Some(new.id.clone()),
            decision: Some(Decision::Edited {
                by: by.to_owned(),
                via: via.to_owned(),
                instructions: instructions.to_owned(),
            }),
            ..Transition::new(ProposalState::Pending, ProposalState::Superseded)
        };
        match self.store.transition_proposal(&old.agent_id, &old.id, t).await? {
            Some(moved) => {
                self.audit_p(
                    by,
                    &moved,
                    "proposal.decide",
                    json!({"decision": "edited", "by": by, "via": via, "superseded_by": new.id, "new_number": new.number}),
                )
                .await?;
                self.publish(&moved);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// `p` if it is still pending and not past its expiry (an overdue one is expired now).
    async fn ensure_pending(&self, p: Proposal) -> Result<Proposal, ApprovalError> {
        if p.state != ProposalState::Pending {
            return Err(ApprovalError::NotPending { number: p.number, state: p.state });
        }
        if p.expires_at <= now_millis() {
            let t = Transition::new(ProposalState::Pending, ProposalState::Expired);
            if let Some(expired) = self.store.transition_proposal(&p.agent_id, &p.id, t).await? {
                self.audit_p("system", &expired, "proposal.expire", json!({})).await?;
                self.publish(&expired);
            }
            return Err(ApprovalError::Expired { number: p.number });
        }
        Ok(p)
    }

    async fn transition_or_conflict(&self, p: &Proposal, t: Transition) -> Result<Proposal, ApprovalError> {
        match self.store.transition_proposal(&p.agent_id, &p.id, t).await? {
            Some(moved) => Ok(moved),
            // Someone else decided first: report what it is now.
            None => {
                let now =
                    self.store.get_proposal(&p.agent_id, &p.id).await?.ok_or(ApprovalError::NotFound)?;
                Err(ApprovalError::NotPending { number: now.number, state: now.state })
            }
        }
    }

    // --------------------------------------------------------------------------------------
    // Execution

    /// Runs an approved proposal in its own task (a caller that goes away cannot interrupt it).
    pub(crate) async fn execute_detached(
        self: &Arc<Self>,
        p: Proposal,
        agent: Agent,
    ) -> Result<Proposal, StoreError> {
        let gate = self.clone();
        let (agent_id, id) = (p.agent_id.clone(), p.id.clone());
        match tokio::spawn(async move { gate.execute(p, agent).await }).await {
            Ok(r) => r,
            Err(join) => {
                tracing::error!(proposal = %id, error = %join, "the execution task failed");
                self.store
                    .get_proposal(&agent_id, &id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound("proposal".into()))
            }
        }
    }

    /// `approved → executing → done | failed | unknown`. Only the caller that moves it to
    /// `executing` calls the tool; anyone else gets the proposal as it is.
    async fn execute(&self, p: Proposal, agent: Agent) -> Result<Proposal, StoreError> {
        let t = Transition {
            fingerprint: Some(p.fingerprint.clone()),
            ..Transition::new(ProposalState::Approved, ProposalState::Executing)
        };
        let Some(p) = self.store.transition_proposal(&p.agent_id, &p.id, t).await? else {
            return self
                .store
                .get_proposal(&p.agent_id, &p.id)
                .await?
                .ok_or_else(|| StoreError::NotFound("proposal".into()));
        };
        self.publish(&p);
        let (state, result) = match self.tools.get(&p.tool) {
            None => (
                ProposalState::Failed,
                json!({"ok": false, "error": format!("the tool {} is not available", p.tool)}),
            ),
            // The sealed arguments must still be the approved ones.
            Some(_) if fingerprint(&p.tool, &p.args) != p.fingerprint => (
                ProposalState::Failed,
                json!({"ok": false, "error": "the stored arguments do not match the approved fingerprint"}),
            ),
            Some(tool) => {
                let ctx = self.context(&p, agent);
                match tokio::time::timeout(self.tool_timeout, tool.call(&ctx, p.args.clone())).await {
                    Ok(Ok(output)) => (ProposalState::Done, json!({"ok": true, "output": output})),
                    Ok(Err(e)) if !e.maybe_done() => {
                        (ProposalState::Failed, json!({"ok": false, "error": e.to_string()}))
                    }
                    Ok(Err(e)) => self.settle_in_doubt(tool.as_ref(), &ctx, &p, e.to_string()).await,
                    Err(_elapsed) => {
                        let why = format!("no answer within {} s", self.tool_timeout.as_secs());
                        self.settle_in_doubt(tool.as_ref(), &ctx, &p, why).await
                    }
                }
            }
        };
        self.finish(p, state, result).await
    }

    fn context(&self, p: &Proposal, agent: Agent) -> ToolContext {
        ToolContext {
            agent,
            session_id: p.session_id.clone().unwrap_or_default(),
            store: self.store.clone(),
            idempotency_key: Some(p.idempotency_key.clone()),
            // The chain the write was proposed in continues where it was.
            trace: crate::agents::Trace::decode(p.trace_id.as_deref().unwrap_or(&p.id)),
        }
    }

    /// After an error that leaves a write in doubt: only the service's confirmation makes it
    /// `done`; otherwise a person must check (the request may still land, so "not found" right
    /// after the error does not prove it failed).
    async fn settle_in_doubt(
        &self,
        tool: &dyn Tool,
        ctx: &ToolContext,
        p: &Proposal,
        error: String,
    ) -> (ProposalState, Value) {
        match tokio::time::timeout(self.tool_timeout, tool.find_prior(ctx, &p.args)).await {
            Ok(Ok(PriorExecution::Found(output))) => {
                (ProposalState::Done, json!({"ok": true, "output": output, "confirmed_after": error}))
            }
            _ => (ProposalState::Unknown, json!({"ok": false, "error": error, "check_manually": true})),
        }
    }

    async fn finish(&self, p: Proposal, state: ProposalState, result: Value) -> Result<Proposal, StoreError> {
        let t = Transition { result: Some(result), ..Transition::new(ProposalState::Executing, state) };
        let done = match self.store.transition_proposal(&p.agent_id, &p.id, t).await? {
            Some(d) => d,
            None => {
                return self
                    .store
                    .get_proposal(&p.agent_id, &p.id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound("proposal".into()));
            }
        };
        let error = done.result.as_ref().and_then(|r| r.get("error")).cloned();
        self.audit_p("system", &done, "proposal.execute", json!({"state": done.state, "error": error}))
            .await?;
        self.publish(&done);
        Ok(done)
    }

    // --------------------------------------------------------------------------------------
    // Chat

    /// Pending proposals of a session, oldest first (overdue ones are left to the sweeper).
    async fn pending_in_session(&self, agent: &AgentId, session: &str) -> Result<Vec<Proposal>, StoreError> {
        let now = now_millis();
        let mut list: Vec<Proposal> = self
            .store
            .list_proposals(agent, Some(ProposalState::Pending), 500)
            .await?
            .into_iter()
            .filter(|p| p.session_id.as_deref() == Some(session) && p.expires_at > now)
            .collect();
        list.sort_by_key(|p| p.number);
        Ok(list)
    }

    /// Parses the person's own chat message for a decision before the model sees it.
    pub(crate) async fn chat_gate(
        self: &Arc<Self>,
        agent: &Agent,
        session: &str,
        sender: Option<&Sender>,
        content: &str,
    ) -> Result<ChatGate, RuntimeError> {
        let Some(decision) = parse_decision(content) else { return Ok(ChatGate::Pass) };
        // Only an authenticated person's own message can decide.
        let Some(sender) = sender else { return Ok(ChatGate::Pass) };
        let target = match decision.number() {
            Some(n) => match self.store.get_proposal_by_number(&agent.id, n).await? {
                Some(p) => p,
                None => return Ok(ChatGate::Answer(format!("There is no proposal #{n}; nothing was done."))),
            },
            None => {
                let mut pending = self.pending_in_session(&agent.id, session).await?;
                match pending.len() {
                    // "yes" with nothing to decide is just conversation.
                    0 => return Ok(ChatGate::Pass),
                    1 => pending.remove(0),
                    _ => {
                        let list: Vec<String> =
                            pending.iter().map(|p| format!("#{} {}", p.number, title(p))).collect();
                        return Ok(ChatGate::Answer(format!(
                            "Several proposals are waiting: {}. Nothing was done. Say which one, e.g. `approved #{}`, `no #{}` or `edit #{}: …`.",
                            list.join(", "),
                            pending[0].number,
                            pending[0].number,
                            pending[0].number
                        )));
                    }
                }
            }
        };
        let by = match self.may_decide(&sender.principal, agent) {
            Ok(by) => by,
            Err(e) => return Ok(ChatGate::Answer(refusal(&e))),
        };
        let via = format!("chat ({})", sender.channel);
        Ok(match decision {
            ChatDecision::Approve { .. } => match self.approve(&by, &via, agent, target).await {
                Ok(done) => ChatGate::Answer(outcome_text(&done)),
                Err(ApprovalError::Store(e)) => return Err(RuntimeError::Store(e)),
                Err(e) => ChatGate::Answer(refusal(&e)),
            },
            ChatDecision::Reject { .. } => match self.reject(&by, &via, target).await {
                Ok(rejected) => ChatGate::Answer(outcome_text(&rejected)),
                Err(ApprovalError::Store(e)) => return Err(RuntimeError::Store(e)),
                Err(e) => ChatGate::Answer(refusal(&e)),
            },
            ChatDecision::Edit { instructions, .. } => match self.ensure_pending(target).await {
                Ok(target) => ChatGate::Revise { target: Box::new(target), instructions, by, via },
                Err(ApprovalError::Store(e)) => return Err(RuntimeError::Store(e)),
                Err(e) => ChatGate::Answer(refusal(&e)),
            },
        })
    }

    // --------------------------------------------------------------------------------------
    // Expiry and recovery

    /// Expires overdue pending proposals and tells their sessions. Returns how many.
    pub(crate) async fn sweep_once(self: &Arc<Self>) -> Result<usize, StoreError> {
        let expired = self.store.expire_proposals(now_millis()).await?;
        for p in &expired {
            self.audit_p("system", p, "proposal.expire", json!({})).await?;
            self.publish(p);
            self.spawn_notice(p, outcome_text(p));
        }
        Ok(expired.len())
    }

    async fn live_agent(&self, p: &Proposal) -> Result<Option<Agent>, StoreError> {
        self.store.get_agent(&p.agent_id).await
    }

    /// Settles proposals a previous process left `executing` (asking the service, never
    /// re-sending) and runs those it left `approved`.
    pub(crate) async fn recover(self: &Arc<Self>) -> Result<RecoveryReport, StoreError> {
        let mut report = RecoveryReport::default();
        let started = now_millis();
        for p in self.store.proposals_in_state(ProposalState::Executing).await? {
            // Only what a previous process left behind; anything newer is running here.
            if p.updated_at > started {
                continue;
            }
            let agent = self.live_agent(&p).await?;
            let tool = self.tools.get(&p.tool).cloned();
            let (state, result) = match (agent, tool) {
                (Some(agent), Some(tool)) => {
                    let ctx = self.context(&p, agent);
                    match tokio::time::timeout(self.tool_timeout, tool.find_prior(&ctx, &p.args)).await {
                        Ok(Ok(PriorExecution::Found(output))) => {
                            (ProposalState::Done, json!({"ok": true, "output": output, "recovered": true}))
                        }
                        Ok(Ok(PriorExecution::NotFound)) => (
                            ProposalState::Failed,
                            json!({"ok": false, "recovered": true,
                                   "error": "the gateway stopped before the service received it, so it did not happen"}),
                        ),
                        Ok(Ok(PriorExecution::Unknown)) => (
                            ProposalState::Unknown,
                            json!({"ok": false, "recovered": true, "check_manually": true,
                                   "error": "the gateway stopped while it ran and the service cannot tell whether it happened"}),
                        ),
                        Ok(Err(e)) => (
                            ProposalState::Unknown,
                            json!({"ok": false, "recovered": true, "check_manually": true,
                                   "error": format!("the gateway stopped while it ran, and checking failed: {e}")}),
                        ),
                        Err(_elapsed) => (
                            ProposalState::Unknown,
                            json!({"ok": false, "recovered": true, "check_manually": true,
                                   "error": "the gateway stopped while it ran, and the service did not answer the check"}),
                        ),
                    }
                }
                _ => (
                    ProposalState::Unknown,
                    json!({"ok": false, "recovered": true, "check_manually": true,
                           "error": "the gateway stopped while it ran, and its tool or agent is gone"}),
                ),
            };
            match state {
                ProposalState::Done => report.confirmed += 1,
                ProposalState::Failed => report.not_done += 1,
                _ => report.unknown += 1,
            }
            let settled = self.finish(p, state, result).await?;
            let mut text = outcome_text(&settled);
            text.push_str(" (settled after a gateway restart)");
            self.spawn_notice(&settled, text);
        }
        for p in self.store.proposals_in_state(ProposalState::Approved).await? {
            let Some(agent) = self.live_agent(&p).await? else {
                // Its agent was deleted: it will never run; close it (nothing was sent).
                let t = Transition::new(ProposalState::Approved, ProposalState::Executing);
                if let Some(p) = self.store.transition_proposal(&p.agent_id, &p.id, t).await? {
                    let why = json!({"ok": false, "error": "its agent was deleted before it ran"});
                    self.finish(p, ProposalState::Failed, why).await?;
                    report.not_done += 1;
                }
                continue;
            };
            report.resumed += 1;
            let gate = self.clone();
            tokio::spawn(async move {
                match gate.execute(p, agent).await {
                    Ok(done) => {
                        let mut text = outcome_text(&done);
                        text.push_str(" (run after a gateway restart)");
                        gate.spawn_notice(&done, text);
                    }
                    Err(e) => tracing::error!(error = %e, "could not run an approved proposal after restart"),
                }
            });
        }
        Ok(report)
    }
}

// ------------------------------------------------------------------------------------------
// The runtime's approval API (used by the server's REST and WebSocket routes and the gateway)

impl Runtime {
    pub fn approval_settings(&self) -> &ApprovalSettings {
        &self.gate.settings
    }

    /// The autonomy that applies to `agent`.
    pub fn autonomy(&self, agent: &Agent) -> Autonomy {
        self.gate.settings.autonomy_of(agent)
    }

    /// A decision on proposal `id` of `agent` by `who` (already authenticated; a user principal
    /// may only name their own agent). Approve answers with the proposal after it ran; edit
    /// answers with the revised proposal.
    pub async fn decide(
        &self,
        who: &Principal,
        agent: &AgentId,
        id: &str,
        request: DecisionRequest,
        via: &str,
    ) -> Result<Proposal, ApprovalError> {
        let agent = self.store.get_agent(agent).await?.ok_or(ApprovalError::NotFound)?;
        if !who.can_see_agent(&agent.id) {
            return Err(ApprovalError::NotFound);
        }
        let p = self.store.get_proposal(&agent.id, id).await?.ok_or(ApprovalError::NotFound)?;
        let by = self.gate.may_decide(who, &agent)?;
        match request {
            DecisionRequest::Approve => {
                let done = self.gate.approve(&by, via, &agent, p).await?;
                self.gate.spawn_notice(&done, outcome_text(&done));
                Ok(done)
            }
            DecisionRequest::Reject => {
                let rejected = self.gate.reject(&by, via, p).await?;
                self.gate.spawn_notice(&rejected, outcome_text(&rejected));
                Ok(rejected)
            }
            DecisionRequest::Edit { instructions } => {
                let instructions = instructions.trim();
                if instructions.is_empty() {
                    return Err(ApprovalError::Invalid("instructions must not be empty".into()));
                }
                let p = self.gate.ensure_pending(p).await?;
                let Some(session) = p.session_id.clone() else {
                    return Err(ApprovalError::Invalid(
                        "this proposal has no chat session to revise it in".into(),
                    ));
                };
                // The same path as `edit #N: …` typed in the chat, so the transcript shows it.
                let mut req = TurnRequest::new(
                    agent.id.clone(),
                    session,
                    format!("edit #{}: {instructions}", p.number),
                );
                req.sender = Some(Sender::new(who.clone(), via));
                self.run_turn(req).await?;
                let old = self.store.get_proposal(&agent.id, &p.id).await?.ok_or(ApprovalError::NotFound)?;
                match (&old.state, &old.superseded_by) {
                    (ProposalState::Superseded, Some(new_id)) => {
                        self.store.get_proposal(&agent.id, new_id).await?.ok_or(ApprovalError::NotFound)
                    }
                    _ => Err(ApprovalError::NoRevision(format!(
                        "the agent did not produce a revised proposal; #{} is unchanged ({})",
                        old.number, old.state
                    ))),
                }
            }
        }
    }

    /// Grants of `agent`: the config file's (applied only at autonomy level ≥ 2) and the API's.
    pub async fn grants(&self, agent: &Agent) -> Result<Vec<Grant>, StoreError> {
        let mut all = self.autonomy(agent).grants;
        all.extend(self.store.list_grants(&agent.id).await?);
        Ok(all)
    }

    /// Adds a grant for `agent` on behalf of `who` (its owner or an admin; never a model).
    pub async fn add_grant(
        &self,
        who: &Principal,
        agent: &Agent,
        req: GrantRequest,
    ) -> Result<Grant, ApprovalError> {
        match who {
            Principal::Admin { .. } => {}
            Principal::User { user_id, .. } if agent.owner.as_ref() == Some(user_id) => {}
            Principal::User { .. } => return Err(ApprovalError::NotFound),
        }
        let action = req.action.trim().to_owned();
        let writes: Vec<(String, Option<String>)> = self
            .tools
            .manifests()
            .into_iter()
            .filter(|m| m.effect == crate::Effect::Write)
            .filter_map(|m| {
                let tool = self.tools.get(&m.name)?;
                Some((m.name.clone(), tool.action_family().map(str::to_owned)))
            })
            .collect();
        if action.is_empty()
            || !writes.iter().any(|(n, f)| glob(&action, n) || f.as_deref().is_some_and(|f| glob(&action, f)))
        {
            let mut known: Vec<String> =
                writes.iter().flat_map(|(n, f)| [Some(n.clone()), f.clone()]).flatten().collect();
            known.sort();
            known.dedup();
            return Err(ApprovalError::Invalid(format!(
                "action {action:?} names no write tool of this gateway; use a tool name or action family: {}",
                known.join(", ")
            )));
        }
        for (k, v) in &req.match_args {
            if k.trim().is_empty() || !v.is_string() {
                return Err(ApprovalError::Invalid(format!(
                    "match: {k:?} must map an argument name to a text pattern such as \"*@company.com\""
                )));
            }
        }
        if req.daily_cap.is_some_and(|c| c < 1) {
            return Err(ApprovalError::Invalid("daily_cap must be at least 1".into()));
        }
        if req.expires_at.is_some_and(|e| e <= now_millis()) {
            return Err(ApprovalError::Invalid("expires_at is in the past".into()));
        }
        let g = self
            .store
            .create_grant(NewGrant {
                agent_id: agent.id.clone(),
                action,
                match_args: req.match_args,
                expires_at: req.expires_at,
                daily_cap: req.daily_cap,
                created_by: who.actor(),
            })
            .await?;
        self.gate
            .audit(
                &who.actor(),
                agent.owner.as_ref(),
                &agent.id,
                "grant.create",
                json!({"grant": g.id, "action": g.action, "match": g.match_args, "expires_at": g.expires_at, "daily_cap": g.daily_cap}),
            )
            .await?;
        Ok(g)
    }

    /// Revokes an API grant (config grants change only in the config file).
    pub async fn revoke_grant(&self, who: &Principal, agent: &Agent, id: &str) -> Result<(), ApprovalError> {
        match who {
            Principal::Admin { .. } => {}
            Principal::User { user_id, .. } if agent.owner.as_ref() == Some(user_id) => {}
            Principal::User { .. } => return Err(ApprovalError::GrantNotFound),
        }
        if self.autonomy(agent).grants.iter().any(|g| g.id == id) {
            return Err(ApprovalError::Invalid(
                "this grant is defined in the config file; remove it there and restart the gateway".into(),
            ));
        }
        if !self.store.revoke_grant(&agent.id, id, now_millis()).await? {
            return Err(ApprovalError::GrantNotFound);
        }
        self.gate
            .audit(&who.actor(), agent.owner.as_ref(), &agent.id, "grant.revoke", json!({"grant": id}))
            .await?;
        Ok(())
    }

    /// Start-up recovery of proposals a previous process left `executing` or `approved`. Call
    /// once, before serving, on a gateway that is the only one running executions.
    pub async fn recover_proposals(&self) -> Result<RecoveryReport, RuntimeError> {
        Ok(self.gate.recover().await?)
    }

    /// Expires overdue proposals once (the sweeper's step); returns how many.
    pub async fn sweep_expired(&self) -> Result<usize, RuntimeError> {
        Ok(self.gate.sweep_once().await?)
    }

    /// Sweeps expired proposals every `approvals.sweep_every` until the task is aborted.
    pub fn spawn_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let gate = self.gate.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(gate.settings.sweep_every.max(Duration::from_millis(100)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = gate.sweep_once().await {
                    tracing::warn!(error = %e, "sweeping expired proposals failed; retrying");
                }
            }
        })
    }
}
