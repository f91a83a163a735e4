//! Authentication as extractors: a handler that takes [`Auth`] or [`AdminAuth`] can not run before
//! the bearer token was resolved to a [`Principal`] against the store. Nothing is cached, so a
//! revoked or rotated token is refused on the very next request.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use crewgate_core::token::parse_presented;
use crewgate_core::{Principal, TokenKind, UserStatus, now_millis};
use secrecy::SecretString;

/// Any authenticated caller (admin or user).
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

/// An authenticated admin; users get 403.
#[derive(Debug, Clone)]
pub struct AdminAuth(pub Principal);

const MISSING: &str = "missing bearer token: send `Authorization: Bearer <token>`";
const INVALID: &str = "invalid, revoked or expired token: ask an admin for a new one";

fn bearer(parts: &Parts) -> Result<SecretString, ApiError> {
    let value = parts.headers.get(AUTHORIZATION).ok_or(ApiError::Unauthorized(MISSING))?;
    let text = value.to_str().map_err(|_not_ascii| ApiError::Unauthorized(INVALID))?;
    let (scheme, token) = text.split_once(' ').ok_or(ApiError::Unauthorized(MISSING))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthorized(MISSING));
    }
    Ok(SecretString::from(token.trim().to_owned()))
}

pub(crate) async fn resolve(state: &AppState, token: &SecretString) -> Result<Principal, ApiError> {
    // Shape check first: garbage never reaches the store. Lookup is by SHA-256, so there is no
    // byte-by-byte comparison of secrets to time.
    let (kind, hash) = parse_presented(token).map_err(|_malformed| ApiError::Unauthorized(INVALID))?;
    if kind == TokenKind::Invite {
        return Err(ApiError::Unauthorized("invite tokens only open the invite page, not the API"));
    }
    let info =
        state.store.resolve_token(&hash, now_millis()).await?.ok_or(ApiError::Unauthorized(INVALID))?;
    if info.kind != kind {
        return Err(ApiError::Unauthorized(INVALID));
    }
    match kind {
        TokenKind::Admin => Ok(Principal::Admin { token_id: info.id }),
        _ => {
            let (Some(user_id), Some(agent_id)) = (info.user_id, info.agent_id) else {
                return Err(ApiError::Unauthorized(INVALID));
            };
            let user = state.store.get_user(&user_id).await?.ok_or(ApiError::Unauthorized(INVALID))?;
            if user.status == UserStatus::Suspended {
                return Err(ApiError::Forbidden("this account is suspended; ask an admin to reactivate it"));
            }
            Ok(Principal::User { user_id, agent_id, token_id: info.id })
        }
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        Ok(Auth(resolve(state, &token).await?))
    }
}

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Auth(p) = Auth::from_request_parts(parts, state).await?;
        if p.is_admin() { Ok(AdminAuth(p)) } else { Err(ApiError::Forbidden("this needs an admin token")) }
    }
}
