use crate::AppState;
use crate::auth::{AdminAuth, Auth};
use crate::error::{ApiError, ApiJson};
use crate::ops::{self, Actor, IssueToken};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use crewgate_core::{IssuedToken, Principal, TokenInfo};
use crewgate_store::TokenScope;
use secrecy::ExposeSecret;
use serde::Serialize;

/// A freshly issued token: the only response that ever carries a token secret.
#[derive(Debug, Serialize)]
pub(crate) struct Issued {
    token: String,
    info: TokenInfo,
}

impl Issued {
    fn new(issued: &IssuedToken, info: TokenInfo) -> Self {
        Self { token: issued.secret.expose_secret().to_owned(), info }
    }
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    let scope = match &p {
        Principal::Admin { .. } => TokenScope::All,
        Principal::User { user_id, .. } => TokenScope::User(user_id.clone()),
    };
    Ok(Json(state.store.list_tokens(scope).await?))
}

pub(crate) async fn issue(
    State(state): State<AppState>,
    AdminAuth(p): AdminAuth,
    ApiJson(req): ApiJson<IssueToken>,
) -> Result<(StatusCode, Json<Issued>), ApiError> {
    let (issued, info) = ops::issue_token(state.store.as_ref(), &Actor::Principal(p), req).await?;
    Ok((StatusCode::CREATED, Json(Issued::new(&issued, info))))
}

pub(crate) async fn rotate(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Issued>), ApiError> {
    let old = visible_token(&state, &p, &id).await?;
    let (issued, info) = ops::rotate_token(state.store.as_ref(), &Actor::Principal(p), &old).await?;
    Ok((StatusCode::CREATED, Json(Issued::new(&issued, info))))
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let token = visible_token(&state, &p, &id).await?;
    ops::revoke_token(state.store.as_ref(), &Actor::Principal(p), &token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Admins see every token; a user only their own. Anything else is a 404.
async fn visible_token(state: &AppState, p: &Principal, id: &str) -> Result<TokenInfo, ApiError> {
    let token = state.store.get_token(id).await?;
    match (token, p) {
        (Some(t), Principal::Admin { .. }) => Ok(t),
        (Some(t), Principal::User { user_id, .. }) if t.user_id.as_ref() == Some(user_id) => Ok(t),
        _ => Err(ApiError::not_found("token")),
    }
}
