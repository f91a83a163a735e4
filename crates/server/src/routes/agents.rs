use crate::AppState;
use crate::auth::{AdminAuth, Auth};
use crate::error::{ApiError, ApiJson};
use crate::ops::{self, Actor, CreateAgent};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use crewgate_core::{Agent, AgentId, Principal};

/// Admins see every agent; a user sees a list holding only their own agent.
pub(crate) async fn list(State(state): State<AppState>, Auth(p): Auth) -> Result<Json<Vec<Agent>>, ApiError> {
    Ok(Json(match &p {
        Principal::Admin { .. } => state.store.list_agents().await?,
        Principal::User { agent_id, .. } => state.store.get_agent(agent_id).await?.into_iter().collect(),
    }))
}

/// Another user's agent is a 404, exactly like an agent that does not exist (no existence oracle).
pub(crate) async fn get(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<Agent>, ApiError> {
    let id = visible_agent_id(&p, &id)?;
    state.store.get_agent(&id).await?.map(Json).ok_or_else(|| ApiError::not_found("agent"))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    AdminAuth(p): AdminAuth,
    ApiJson(req): ApiJson<CreateAgent>,
) -> Result<(StatusCode, Json<Agent>), ApiError> {
    let agent = ops::create_agent(state.store.as_ref(), &Actor::Principal(p), req).await?;
    Ok((StatusCode::CREATED, Json(agent)))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    AdminAuth(p): AdminAuth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = visible_agent_id(&p, &id)?;
    if ops::delete_agent(state.store.as_ref(), &Actor::Principal(p), &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("agent"))
    }
}

/// Parses a path id and applies visibility: malformed and foreign ids both look "not found".
pub(crate) fn visible_agent_id(p: &Principal, raw: &str) -> Result<AgentId, ApiError> {
    match AgentId::parse(raw) {
        Ok(id) if p.can_see_agent(&id) => Ok(id),
        _ => Err(ApiError::not_found("agent")),
    }
}
