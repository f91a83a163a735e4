use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use crewgate_core::{Principal, UserId};
use crewgate_runtime::tools::external::{GoogleStatus, google_status};
use crewgate_store::{Store, StoreError};

/// Who am I: the principal's kind, and for users their own user record, agent and connections
/// (`connections.google`: `{"state": "not_connected" | "connected" | "needs_reconnect", …}`).
pub(crate) async fn me(
    State(state): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(match &p {
        Principal::Admin { token_id } => serde_json::json!({ "kind": "admin", "tokenId": token_id }),
        Principal::User { user_id, agent_id, token_id } => {
            let user = state.store.get_user(user_id).await?;
            let agent = state.store.get_agent(agent_id).await?;
            let google = google_connection(state.store.as_ref(), user_id).await?;
            serde_json::json!({
                "kind": "user",
                "tokenId": token_id,
                "user": user,
                "agent": agent,
                "connections": { "google": google },
            })
        }
    }))
}

/// The caller's own Google connection. One that cannot be read (corrupt, or sealed with another
/// key) is useless to the tools as well and is replaced by connecting again, so it shows as
/// "needs reconnect" instead of failing the whole page.
async fn google_connection(store: &dyn Store, user: &UserId) -> Result<GoogleStatus, StoreError> {
    match google_status(store, user).await {
        Err(e @ (StoreError::Corrupt(_) | StoreError::Seal(_))) => {
            tracing::warn!(user = %user, error = %e, "the stored Google connection cannot be read");
            Ok(GoogleStatus::NeedsReconnect {
                email: None,
                reason: "the stored connection cannot be read".into(),
            })
        }
        other => other,
    }
}
