mod agents;
mod audit;
mod dashboard;
mod health;
mod invites;
mod login;
mod me;
mod openai;
mod proposals;
pub(crate) mod sessions;
mod status;
mod tokens;
mod users;

use crate::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::routing::{delete, get, post};

pub(crate) fn router() -> Router<AppState> {
    let api = Router::new()
        .route("/auth/login", post(login::login))
        .route("/auth/session", get(login::session))
        .route("/auth/logout", post(login::logout))
        .route("/me", get(me::me))
        .route("/me/google/connect", post(invites::reconnect_google))
        .route("/invites", get(invites::list).post(invites::create))
        .route("/invites/{id}", delete(invites::revoke))
        .route("/invites/{id}/resend", post(invites::resend))
        .route("/agents", get(agents::list).post(agents::create))
        .route("/agents/{id}", get(agents::get).delete(agents::delete))
        .route("/users", get(users::list))
        .route("/users/{id}", get(users::get))
        .route("/tokens", get(tokens::list).post(tokens::issue))
        .route("/tokens/{id}", delete(tokens::revoke))
        .route("/tokens/{id}/rotate", post(tokens::rotate))
        .route("/audit", get(audit::list))
        .route("/backup/status", get(health::backup_status))
        .route("/status", get(status::status))
        .route("/sessions", get(sessions::list).post(sessions::create))
        .route("/sessions/{id}", get(sessions::get).patch(sessions::rename).delete(sessions::delete))
        .route("/sessions/{id}/messages", get(sessions::messages).post(sessions::send))
        .route("/proposals", get(proposals::list))
        .route("/proposals/{id}", get(proposals::get))
        .route("/proposals/{id}/approve", post(proposals::approve))
        .route("/proposals/{id}/reject", post(proposals::reject))
        .route("/proposals/{id}/edit", post(proposals::edit))
        .route("/grants", get(proposals::grants).post(proposals::add_grant))
        .route("/grants/{id}", delete(proposals::revoke_grant))
        .route("/ws", get(crate::ws::handler))
        .fallback(api_not_found);
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/", get(dashboard::index))
        .route("/assets/{name}", get(dashboard::asset))
        .route("/invite/connect", post(invites::invite_connect))
        .route("/invite/{token}", get(invites::invite_page))
        .route("/join", get(invites::join_page).post(invites::join_submit))
        .route(crate::onboarding::CALLBACK_PATH, get(invites::oauth_callback))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/models", get(openai::models))
        .nest("/api/v1", api)
}

async fn api_not_found() -> ApiError {
    ApiError::NotFound("no such API route; see /api/v1/openapi.json once available, or the README".into())
}
