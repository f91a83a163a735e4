//! Dashboard sign-in: a token (pasted, or taken from a `/?token=` link by the page, which then
//! removes it from the address bar) is exchanged once for an HttpOnly, SameSite=Strict session
//! cookie. Logout revokes that browser session.

use crate::AppState;
use crate::auth::{self, Auth, SESSION_COOKIE};
use crate::error::{ApiError, ApiJson};
use axum::Json;
use axum::extract::State;
use axum::http::header::{HOST, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use crewgate_core::token::random_hex;
use crewgate_core::{Principal, TokenHash, now_millis};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Browser sessions last a week; the token behind them may die sooner.
const SESSION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    token: SecretString,
}

/// `Secure` everywhere except plain-HTTP loopback, where browsers would drop the cookie.
fn cookie_attributes(headers: &HeaderMap) -> &'static str {
    let https = headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let host = headers.get(HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let loopback =
        ["127.0.0.1", "localhost", "[::1]"].iter().any(|l| host == *l || host.starts_with(&format!("{l}:")));
    if https || !loopback {
        "; HttpOnly; SameSite=Strict; Path=/; Secure"
    } else {
        "; HttpOnly; SameSite=Strict; Path=/"
    }
}

pub(crate) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let principal = auth::resolve(&state, &req.token).await?;
    let cookie = format!("cgs_{}", random_hex(32));
    let csrf = random_hex(16);
    state
        .store
        .create_web_session(
            &TokenHash::of(&cookie),
            principal.token_id(),
            &csrf,
            now_millis() + SESSION_TTL_MS,
        )
        .await?;
    let set = format!(
        "{SESSION_COOKIE}={cookie}{}; Max-Age={}",
        cookie_attributes(&headers),
        SESSION_TTL_MS / 1000
    );
    let value = HeaderValue::from_str(&set).map_err(|e| ApiError::BadRequest(format!("cookie: {e}")))?;
    let kind = if principal.is_admin() { "admin" } else { "user" };
    let mut resp = Json(serde_json::json!({ "csrf": csrf, "kind": kind })).into_response();
    resp.headers_mut().insert(SET_COOKIE, value);
    Ok(resp)
}

/// The CSRF token of the current browser session (the page needs it again after a reload).
pub(crate) async fn session(
    State(state): State<AppState>,
    Auth(p): Auth,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let parts_cookie = auth::session_cookie(&headers)
        .ok_or(ApiError::BadRequest("this request has no session cookie".into()))?;
    let s = state
        .store
        .resolve_web_session(&TokenHash::of(parts_cookie.expose_secret()), now_millis())
        .await?
        .ok_or(ApiError::Unauthorized("your dashboard session has ended; sign in again with your token"))?;
    let kind = match p {
        Principal::Admin { .. } => "admin",
        Principal::User { .. } => "user",
    };
    Ok(Json(serde_json::json!({ "csrf": s.csrf, "kind": kind, "expiresAt": s.expires_at })))
}

pub(crate) async fn logout(
    State(state): State<AppState>,
    Auth(_): Auth,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(cookie) = auth::session_cookie(&headers) {
        state.store.revoke_web_session(&TokenHash::of(cookie.expose_secret()), now_millis()).await?;
    }
    let clear = format!("{SESSION_COOKIE}={}; Max-Age=0", cookie_attributes(&headers));
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let value = HeaderValue::from_str(&clear).map_err(|e| ApiError::BadRequest(format!("cookie: {e}")))?;
    resp.headers_mut().insert(SET_COOKIE, value);
    Ok(resp)
}
