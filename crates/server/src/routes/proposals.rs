//! Proposals and grants REST (the approval gate's API):
//! - `GET /api/v1/proposals?state=pending[&agent=ID][&limit=N]` → `[Proposal]` (newest first);
//!   an admin without `agent` gets every agent's proposals in `state`;
//! - `GET /api/v1/proposals/{id}[?agent=ID]` → `Proposal`;
//! - `POST /api/v1/proposals/{id}/approve|reject[?agent=ID]` → the `Proposal` after it ran (or
//!   was rejected); `POST …/edit` with `{"instructions": "…"}` → `{"proposal": <the revision>}`;
//! - `GET /api/v1/grants[?agent=ID]` → `{agent, autonomy_level, grants_apply, grants}`;
//!   `POST /api/v1/grants` with `{action, match_args?, expires_at?, daily_cap?}` → 201 `Grant`;
//!   `DELETE /api/v1/grants/{id}[?agent=ID]` → 204.
//!
//! A user acts only on their own agent (another's answers 404, like a missing one); only the
//! agent's owner decides (admins only with `approvals.adminsMayDecide`, or for an agent without
//! an owner). `Proposal` is serialised as-is (snake_case fields).

use crate::AppState;
use crate::auth::Auth;
use crate::chat_error::ChatError;
use crate::error::ApiError;
use crate::routes::sessions::{live_agent, target_agent};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use crewgate_core::{Principal, Proposal, ProposalState};
use crewgate_runtime::{ApprovalError, DecisionRequest, GrantRequest};
use crewgate_store::approvals::Grant;
use serde::{Deserialize, Serialize};

const ADMIN_MAY_NOT_DECIDE: &str =
    "only the agent's owner decides on its proposals (set approvals.adminsMayDecide to let admins decide)";

impl From<ApprovalError> for ChatError {
    fn from(e: ApprovalError) -> Self {
        match e {
            ApprovalError::NotFound => ChatError::Api(ApiError::not_found("proposal")),
            ApprovalError::GrantNotFound => ChatError::Api(ApiError::not_found("grant")),
            ApprovalError::Forbidden(_) => ChatError::Api(ApiError::Forbidden(ADMIN_MAY_NOT_DECIDE)),
            ApprovalError::Invalid(m) => ChatError::Api(ApiError::BadRequest(m)),
            ApprovalError::Runtime(e) => ChatError::from(*e),
            ApprovalError::Store(e) => ChatError::Api(e.into()),
            other => ChatError::Api(ApiError::Conflict(other.to_string())),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ProposalQuery {
    agent: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
}

fn parse_state(s: Option<&str>) -> Result<Option<ProposalState>, ApiError> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => ProposalState::parse(s).map(Some).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown state {s:?}; use pending, approved, executing, done, failed, rejected, superseded, expired or unknown"
            ))
        }),
    }
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ProposalQuery>,
) -> Result<Json<Vec<Proposal>>, ApiError> {
    let wanted = parse_state(q.state.as_deref())?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let requested = q.agent.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if let (Principal::Admin { .. }, None) = (&p, requested) {
        // The admin's inbox across agents.
        let Some(s) = wanted else {
            return Err(ApiError::BadRequest(
                "an admin token must name the agent (?agent=<agent-id>) or a state (?state=pending)".into(),
            ));
        };
        let mut all = state.store.proposals_in_state(s).await?;
        all.reverse();
        all.truncate(usize::try_from(limit).unwrap_or(1000));
        return Ok(Json(all));
    }
    let agent = target_agent(&p, requested)?;
    live_agent(&state, &agent).await?;
    Ok(Json(state.store.list_proposals(&agent, wanted, limit).await?))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ProposalQuery>,
    Path(id): Path<String>,
) -> Result<Json<Proposal>, ApiError> {
    let agent = target_agent(&p, q.agent.as_deref())?;
    live_agent(&state, &agent).await?;
    let proposal =
        state.store.get_proposal(&agent, &id).await?.ok_or_else(|| ApiError::not_found("proposal"))?;
    Ok(Json(proposal))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecideBody {
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    agent: Option<String>,
}

fn body<T: serde::de::DeserializeOwned + Default>(bytes: &Bytes) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

async fn decide(
    state: &AppState,
    p: &Principal,
    q: &ProposalQuery,
    id: &str,
    raw: &Bytes,
    kind: &str,
) -> Result<Proposal, ChatError> {
    let b: DecideBody = body(raw)?;
    let agent = target_agent(p, b.agent.as_deref().or(q.agent.as_deref()))?;
    live_agent(state, &agent).await?;
    let request = match kind {
        "approve" => DecisionRequest::Approve,
        "reject" => DecisionRequest::Reject,
        _ => DecisionRequest::Edit {
            instructions: b.instructions.filter(|i| !i.trim().is_empty()).ok_or_else(|| {
                ApiError::BadRequest("an edit needs {\"instructions\": \"what to change\"}".into())
            })?,
        },
    };
    Ok(state.runtime.decide(p, &agent, id, request, "rest").await?)
}

pub(crate) async fn approve(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ProposalQuery>,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Json<Proposal>, ChatError> {
    Ok(Json(decide(&state, &p, &q, &id, &raw, "approve").await?))
}

pub(crate) async fn reject(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ProposalQuery>,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Json<Proposal>, ChatError> {
    Ok(Json(decide(&state, &p, &q, &id, &raw, "reject").await?))
}

#[derive(Debug, Serialize)]
pub(crate) struct Edited {
    proposal: Proposal,
}

pub(crate) async fn edit(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ProposalQuery>,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Json<Edited>, ChatError> {
    Ok(Json(Edited { proposal: decide(&state, &p, &q, &id, &raw, "edit").await? }))
}

#[derive(Debug, Serialize)]
pub(crate) struct Grants {
    agent: String,
    /// 1: always ask (grants are kept but not applied); 2 and 3: grants apply.
    autonomy_level: u8,
    grants_apply: bool,
    grants: Vec<Grant>,
}

pub(crate) async fn grants(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ProposalQuery>,
) -> Result<Json<Grants>, ApiError> {
    let agent = target_agent(&p, q.agent.as_deref())?;
    let agent = live_agent(&state, &agent).await?;
    let autonomy = state.runtime.autonomy(&agent);
    Ok(Json(Grants {
        agent: agent.id.to_string(),
        autonomy_level: autonomy.level,
        grants_apply: autonomy.grants_apply(),
        grants: state.runtime.grants(&agent).await?,
    }))
}

pub(crate) async fn add_grant(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ProposalQuery>,
    raw: Bytes,
) -> Result<(StatusCode, Json<Grant>), ChatError> {
    let req: GrantRequest =
        serde_json::from_slice(&raw).map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    let agent = target_agent(&p, req.agent.as_deref().or(q.agent.as_deref()))?;
    let agent = live_agent(&state, &agent).await?;
    let g = state.runtime.add_grant(&p, &agent, req).await?;
    Ok((StatusCode::CREATED, Json(g)))
}

pub(crate) async fn revoke_grant(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ProposalQuery>,
    Path(id): Path<String>,
) -> Result<StatusCode, ChatError> {
    let agent = target_agent(&p, q.agent.as_deref())?;
    let agent = live_agent(&state, &agent).await?;
    state.runtime.revoke_grant(&p, &agent, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
