//! Authentication as extractors: a handler that takes [`Auth`] or [`AdminAuth`] can not run before
//! the bearer token was resolved to a [`Principal`] against the store. Nothing is cached, so a
//! revoked or rotated token is refused on the very next request.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::Method;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use crewgate_core::token::parse_presented;
use crewgate_core::{Principal, TokenKind, UserStatus, now_millis};
use secrecy::{ExposeSecret, SecretString};

/// Any authenticated caller (admin or user).
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

/// An authenticated admin; users get 403.
#[derive(Debug, Clone)]
pub struct AdminAuth(pub Principal);

const MISSING: &str =
    "missing bearer token: send `Authorization: Bearer <token>`, or sign in to the dashboard with your token";

/// Name of the dashboard session cookie (HttpOnly; its value is never readable by scripts).
pub const SESSION_COOKIE: &str = "crewgate_session";
/// Header a cookie-authenticated browser must send on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";
const INVALID: &str = "invalid, revoked or expired token: ask an admin for a new one";

/// The session cookie's value, if the request carries one.
pub(crate) fn session_cookie(headers: &axum::http::HeaderMap) -> Option<SecretString> {
    headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == SESSION_COOKIE && !v.is_empty()).then(|| SecretString::from(v.to_owned()))
    })
}

/// Resolves a dashboard session cookie. Safe methods need only the cookie; anything that changes
/// state also needs the session's CSRF token in `X-CSRF-Token`.
async fn from_cookie(parts: &Parts, state: &AppState, cookie: &SecretString) -> Result<Principal, ApiError> {
    let hash = crewgate_core::TokenHash::of(cookie.expose_secret());
    let session =
        state.store.resolve_web_session(&hash, now_millis()).await?.ok_or(ApiError::Unauthorized(
            "your dashboard session has ended; sign in again with your token",
        ))?;
    if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        let sent = parts.headers.get(CSRF_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
        if !bool::from(subtle::ConstantTimeEq::ct_eq(sent, session.csrf.as_bytes())) {
            return Err(ApiError::Forbidden(
                "missing or wrong X-CSRF-Token header for a cookie-authenticated request",
            ));
        }
    }
    principal_for(state, session.token).await
}

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
    principal_for(state, info).await
}

/// The principal a live token stands for (users must still be active).
async fn principal_for(state: &AppState, info: crewgate_core::TokenInfo) -> Result<Principal, ApiError> {
    match info.kind {
        TokenKind::Admin => Ok(Principal::Admin { token_id: info.id }),
        TokenKind::User => {
            let (Some(user_id), Some(agent_id)) = (info.user_id, info.agent_id) else {
                return Err(ApiError::Unauthorized(INVALID));
            };
            let user = state.store.get_user(&user_id).await?.ok_or(ApiError::Unauthorized(INVALID))?;
            if user.status == UserStatus::Suspended {
                return Err(ApiError::Forbidden("this account is suspended; ask an admin to reactivate it"));
            }
            Ok(Principal::User { user_id, agent_id, token_id: info.id })
        }
        TokenKind::Invite => Err(ApiError::Unauthorized(INVALID)),
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // An explicit bearer token wins; browsers without one fall back to the session cookie.
        if parts.headers.contains_key(AUTHORIZATION) {
            return Ok(Auth(resolve(state, &bearer(parts)?).await?));
        }
        match session_cookie(&parts.headers) {
            Some(cookie) => Ok(Auth(from_cookie(parts, state, &cookie).await?)),
            None => Err(ApiError::Unauthorized(MISSING)),
        }
    }
}

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Auth(p) = Auth::from_request_parts(parts, state).await?;
        if p.is_admin() { Ok(AdminAuth(p)) } else { Err(ApiError::Forbidden("this needs an admin token")) }
    }
}
