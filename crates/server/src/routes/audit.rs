use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Query, State};
use crewgate_core::{AuditEntry, Principal};
use crewgate_store::AuditScope;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub(crate) struct AuditQuery {
    limit: Option<i64>,
}

/// Admins read the whole log; users read the entries about themselves.
pub(crate) async fn list(
    State(state): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let scope = match &p {
        Principal::Admin { .. } => AuditScope::All,
        Principal::User { user_id, .. } => AuditScope::User(user_id.clone()),
    };
    Ok(Json(state.store.list_audit(scope, limit).await?))
}
