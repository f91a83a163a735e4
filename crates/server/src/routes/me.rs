use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use crewgate_core::Principal;

/// Who am I: the principal's kind, and for users their own user record and agent.
pub(crate) async fn me(
    State(state): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(match &p {
        Principal::Admin { token_id } => serde_json::json!({ "kind": "admin", "tokenId": token_id }),
        Principal::User { user_id, agent_id, token_id } => {
            let user = state.store.get_user(user_id).await?;
            let agent = state.store.get_agent(agent_id).await?;
            serde_json::json!({ "kind": "user", "tokenId": token_id, "user": user, "agent": agent })
        }
    }))
}
