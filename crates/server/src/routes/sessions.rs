//! Sessions REST: `GET/POST /api/v1/sessions`, `GET/PATCH/DELETE /api/v1/sessions/{id}`,
//! `GET/POST /api/v1/sessions/{id}/messages` (POST runs a turn and returns the reply).
//!
//! The agent is the caller's own for a user token, or named with `?agent=<id>` (required for an
//! admin token). Another user's agent or session answers 404, like one that does not exist.

use crate::AppState;
use crate::auth::Auth;
use crate::chat_error::ChatError;
use crate::error::ApiError;
use crate::ops::{self, Actor};
use crate::routes::agents::visible_agent_id;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use crewgate_core::{Agent, AgentId, Principal};
use crewgate_runtime::{Sender, TurnRequest, TurnUsage, clean_title};
use crewgate_store::{Message, Session};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AgentQuery {
    agent: Option<String>,
    limit: Option<i64>,
}

/// The agent a request acts on: `requested` if the principal may see it, else the caller's own.
pub(crate) fn target_agent(p: &Principal, requested: Option<&str>) -> Result<AgentId, ApiError> {
    match (p, requested.map(str::trim).filter(|s| !s.is_empty())) {
        (_, Some(raw)) => visible_agent_id(p, raw),
        (Principal::User { agent_id, .. }, None) => Ok(agent_id.clone()),
        (Principal::Admin { .. }, None) => {
            Err(ApiError::BadRequest("an admin token must name the agent: add ?agent=<agent-id>".into()))
        }
    }
}

/// The live agent (a deleted agent's sessions are gone with it).
pub(crate) async fn live_agent(state: &AppState, id: &AgentId) -> Result<Agent, ApiError> {
    state.store.get_agent(id).await?.ok_or_else(|| ApiError::not_found("agent"))
}

/// An optional JSON body: empty means all defaults.
fn optional_json<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

fn required_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

async fn audit(
    state: &AppState,
    p: &Principal,
    agent: &Agent,
    action: &str,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    ops::audit(
        state.store.as_ref(),
        &Actor::Principal(p.clone()),
        action,
        agent.owner.as_ref(),
        Some(&agent.id),
        detail,
    )
    .await
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<AgentQuery>,
) -> Result<Json<Vec<Session>>, ApiError> {
    let agent = target_agent(&p, q.agent.as_deref())?;
    live_agent(&state, &agent).await?;
    Ok(Json(state.store.list_sessions(&agent).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateSession {
    agent: Option<String>,
    title: Option<String>,
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<AgentQuery>,
    body: Bytes,
) -> Result<(StatusCode, Json<Session>), ChatError> {
    let req: CreateSession = optional_json(&body)?;
    let agent = target_agent(&p, req.agent.as_deref().or(q.agent.as_deref()))?;
    let agent = live_agent(&state, &agent).await?;
    let session = state.runtime.create_session(&agent.id, req.title.as_deref()).await?;
    audit(&state, &p, &agent, "session.create", serde_json::json!({"session": session.id})).await?;
    Ok((StatusCode::CREATED, Json(session)))
}

async fn visible_session(
    state: &AppState,
    p: &Principal,
    q: &AgentQuery,
    id: &str,
) -> Result<(Agent, Session), ApiError> {
    let agent = target_agent(p, q.agent.as_deref())?;
    let agent = live_agent(state, &agent).await?;
    let session =
        state.store.get_session(&agent.id, id).await?.ok_or_else(|| ApiError::not_found("session"))?;
    Ok((agent, session))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<AgentQuery>,
    Path(id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    Ok(Json(visible_session(&state, &p, &q, &id).await?.1))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rename {
    title: String,
}

pub(crate) async fn rename(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<AgentQuery>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Session>, ApiError> {
    let req: Rename = required_json(&body)?;
    let (agent, _) = visible_session(&state, &p, &q, &id).await?;
    let title = clean_title(&req.title);
    let session = state
        .store
        .rename_session(&agent.id, &id, &title)
        .await?
        .ok_or_else(|| ApiError::not_found("session"))?;
    audit(&state, &p, &agent, "session.rename", serde_json::json!({"session": id})).await?;
    Ok(Json(session))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<AgentQuery>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (agent, _) = visible_session(&state, &p, &q, &id).await?;
    if !state.store.delete_session(&agent.id, &id).await? {
        return Err(ApiError::not_found("session"));
    }
    audit(&state, &p, &agent, "session.delete", serde_json::json!({"session": id})).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn messages(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<AgentQuery>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Message>>, ApiError> {
    let (agent, session) = visible_session(&state, &p, &q, &id).await?;
    Ok(Json(match q.limit {
        Some(n) => state.store.recent_messages(&agent.id, &session.id, n.clamp(1, 10_000)).await?,
        None => state.store.list_messages(&agent.id, &session.id).await?,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Send {
    content: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Sent {
    turn: String,
    reply: Message,
    /// Everything the turn stored: the person's message, tool rounds, the reply.
    messages: Vec<Message>,
    usage: TurnUsage,
    /// Proposals the turn made (writes waiting for approval, or run under a grant).
    proposals: Vec<crewgate_core::Proposal>,
}

/// Sends a message and answers with the agent's reply. A provider failure is a 502/503/504 with a
/// readable message; the message stays stored and the session usable.
pub(crate) async fn send(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<AgentQuery>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Sent>, ChatError> {
    let req: Send = required_json(&body)?;
    let (agent, session) = visible_session(&state, &p, &q, &id).await?;
    let turn = TurnRequest::new(agent.id.clone(), session.id.clone(), req.content)
        .from_sender(Sender::new(p, "rest"))
        .with_loaded(agent, session);
    let out = state.runtime.run_turn(turn).await?;
    Ok(Json(Sent {
        turn: out.turn,
        reply: out.reply,
        messages: out.stored,
        usage: out.usage,
        proposals: out.proposals,
    }))
}
