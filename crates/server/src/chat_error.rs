//! Errors of the chat surfaces (sessions REST, WebSocket, `/v1/chat/completions`): every
//! [`ApiError`] plus the runtime's turn failures, in the same `{"error": {"code", "message"}}`
//! shape (with `type` = `code` too, which OpenAI client libraries read).

use crate::error::ApiError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crewgate_runtime::RuntimeError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ChatError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Runtime(RuntimeError),
}

impl From<RuntimeError> for ChatError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::SessionNotFound => ChatError::Api(ApiError::not_found("session")),
            RuntimeError::AgentNotFound => ChatError::Api(ApiError::not_found("agent")),
            RuntimeError::InvalidInput(m) => ChatError::Api(ApiError::BadRequest(m)),
            RuntimeError::Store(s) => ChatError::Api(ApiError::from(s)),
            other => ChatError::Runtime(other),
        }
    }
}

impl From<crewgate_store::StoreError> for ChatError {
    fn from(e: crewgate_store::StoreError) -> Self {
        ChatError::Api(e.into())
    }
}

/// HTTP status for a runtime failure code (also used by the streaming endpoint before it starts).
pub(crate) fn status_of_code(code: &str) -> StatusCode {
    match code {
        "not_found" => StatusCode::NOT_FOUND,
        "bad_request" => StatusCode::BAD_REQUEST,
        "llm_not_configured" | "store_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        "turn_timeout" => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// The shared error body.
pub(crate) fn error_body(code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ "error": { "code": code, "type": code, "message": message } })
}

impl IntoResponse for ChatError {
    fn into_response(self) -> Response {
        match self {
            ChatError::Api(e) => e.into_response(),
            ChatError::Runtime(e) => {
                let code = e.code();
                (status_of_code(code), Json(error_body(code, &e.to_string()))).into_response()
            }
        }
    }
}
