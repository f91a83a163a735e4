//! Storage side of the approval gate: proposals with atomic, conditional state transitions, and
//! autonomy grants. The rules of *when* to transition live in the runtime; this module only makes
//! each transition happen at most once, whatever the concurrency.

use crate::Result;
use async_trait::async_trait;
use crewgate_core::{AgentId, Decision, Millis, Proposal, ProposalState, UserId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
pub struct NewProposal {
    pub agent_id: AgentId,
    pub session_id: Option<String>,
    pub owner_id: Option<UserId>,
    pub tool: String,
    pub args: serde_json::Value,
    pub summary: String,
    pub trace_id: Option<String>,
    pub expires_at: Millis,
}

/// One conditional state change: applied only if the proposal is currently in `from` (and, when
/// given, still has `fingerprint`).
#[derive(Debug, Clone)]
pub struct Transition {
    pub from: ProposalState,
    pub to: ProposalState,
    pub fingerprint: Option<String>,
    pub decision: Option<Decision>,
    pub superseded_by: Option<String>,
    pub result: Option<serde_json::Value>,
}

impl Transition {
    pub fn new(from: ProposalState, to: ProposalState) -> Self {
        Self { from, to, fingerprint: None, decision: None, superseded_by: None, result: None }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub agent_id: AgentId,
    /// Tool name or action family the grant covers (e.g. `gmail_send` or `gmail.send`).
    pub action: String,
    /// Argument name → glob pattern; all must match.
    pub match_args: serde_json::Map<String, serde_json::Value>,
    pub expires_at: Option<Millis>,
    pub daily_cap: Option<i64>,
    pub created_by: String,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
}

#[derive(Debug, Clone)]
pub struct NewGrant {
    pub agent_id: AgentId,
    pub action: String,
    pub match_args: serde_json::Map<String, serde_json::Value>,
    pub expires_at: Option<Millis>,
    pub daily_cap: Option<i64>,
    pub created_by: String,
}

/// Result of re-walking the audit hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub entries: i64,
    /// The first entry whose hash does not match its content or predecessor.
    pub first_bad: Option<i64>,
}

#[async_trait]
pub trait ApprovalStore: Send + Sync {
    /// Stores a pending proposal with the next per-agent number and a fresh idempotency key.
    async fn create_proposal(&self, p: NewProposal) -> Result<Proposal>;
    async fn get_proposal(&self, agent: &AgentId, id: &str) -> Result<Option<Proposal>>;
    async fn get_proposal_by_number(&self, agent: &AgentId, number: i64) -> Result<Option<Proposal>>;
    async fn list_proposals(
        &self,
        agent: &AgentId,
        state: Option<ProposalState>,
        limit: i64,
    ) -> Result<Vec<Proposal>>;
    /// Every proposal in `state`, across agents (start-up recovery of `executing`).
    async fn proposals_in_state(&self, state: ProposalState) -> Result<Vec<Proposal>>;
    /// Applies `t` atomically; `None` when the proposal was not in `t.from` (someone else moved it).
    async fn transition_proposal(&self, agent: &AgentId, id: &str, t: Transition)
    -> Result<Option<Proposal>>;
    /// Moves every pending proposal whose `expires_at <= now` to expired; returns them.
    async fn expire_proposals(&self, now: Millis) -> Result<Vec<Proposal>>;

    async fn create_grant(&self, g: NewGrant) -> Result<Grant>;
    async fn list_grants(&self, agent: &AgentId) -> Result<Vec<Grant>>;
    async fn revoke_grant(&self, agent: &AgentId, id: &str, now: Millis) -> Result<bool>;
    /// Proposals auto-approved by this grant since `since` (for daily caps).
    async fn grant_uses_since(&self, grant_id: &str, since: Millis) -> Result<i64>;

    /// Recomputes the audit hash chain from the first entry.
    async fn verify_audit_chain(&self) -> Result<ChainReport>;
}
