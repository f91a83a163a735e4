use crate::AppState;
use crate::auth::{AdminAuth, Auth};
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Path, State};
use crewgate_core::{User, UserId};

pub(crate) async fn list(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
) -> Result<Json<Vec<User>>, ApiError> {
    Ok(Json(state.store.list_users().await?))
}

/// Users may read their own record; anyone else's is a 404.
pub(crate) async fn get(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<User>, ApiError> {
    let not_found = || ApiError::not_found("user");
    let uid = UserId::parse(&id).map_err(|_malformed| not_found())?;
    if !p.can_see_user(&uid) {
        return Err(not_found());
    }
    state.store.get_user(&uid).await?.map(Json).ok_or_else(not_found)
}
