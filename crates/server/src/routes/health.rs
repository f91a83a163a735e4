use crate::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

pub(crate) async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

/// Ready once the store answers (it is migrated before the listener opens).
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(serde_json::json!({ "ready": true, "store": state.store.backend() })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: store unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "ready": false, "reason": "store unreachable" })),
            )
                .into_response()
        }
    }
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let agents = state.store.count_agents().await.ok();
    let mut body = state.metrics.render(state.started.elapsed().as_secs_f64(), agents, agents.is_some());
    if let Some(b) = &state.backup {
        body.push_str(&crate::metrics::render_backup(&b.status()));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

/// Backup health for admins: lag, last success, last error. PostgreSQL deployments are told
/// where their backups belong instead of being shown a status that does not exist.
pub(crate) async fn backup_status(
    State(state): State<AppState>,
    crate::auth::AdminAuth(_): crate::auth::AdminAuth,
) -> Json<serde_json::Value> {
    Json(match (&state.backup, state.store.backend()) {
        (Some(b), _) => serde_json::json!({ "configured": true, "status": b.status() }),
        (None, crewgate_store::Backend::Postgres) => serde_json::json!({
            "configured": false,
            "note": "state lives in PostgreSQL: back it up with pg_dump or continuous archiving (PITR)"
        }),
        (None, crewgate_store::Backend::Sqlite) => serde_json::json!({
            "configured": false,
            "note": "no S3 backup configured: set S3_BUCKET, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY (and S3_ENDPOINT)"
        }),
    })
}
