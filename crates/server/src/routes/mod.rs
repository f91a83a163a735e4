mod agents;
mod audit;
mod health;
mod me;
mod tokens;
mod users;

use crate::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::routing::{delete, get, post};

pub(crate) fn router() -> Router<AppState> {
    let api = Router::new()
        .route("/me", get(me::me))
        .route("/agents", get(agents::list).post(agents::create))
        .route("/agents/{id}", get(agents::get).delete(agents::delete))
        .route("/users", get(users::list))
        .route("/users/{id}", get(users::get))
        .route("/tokens", get(tokens::list).post(tokens::issue))
        .route("/tokens/{id}", delete(tokens::revoke))
        .route("/tokens/{id}/rotate", post(tokens::rotate))
        .route("/audit", get(audit::list))
        .fallback(api_not_found);
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/", get(health::index))
        .nest("/api/v1", api)
}

async fn api_not_found() -> ApiError {
    ApiError::NotFound("no such API route; see /api/v1/openapi.json once available, or the README".into())
}
