//! OpenAI-compatible `POST /v1/chat/completions` (streaming and not) and `GET /v1/models`, so
//! stock OpenAI clients can talk to an agent with a crewgate token as their API key.
//!
//! - `model`: `crewgate/<agent-id>` (or the bare id); omitted or empty → the caller's own agent.
//! - Session: the `X-Crewgate-Session` header or the `user` field names a persistent session
//!   (the gateway keeps its history, so only the last user message is taken from the request).
//!   Without either, every request starts a fresh session seeded with the request's earlier
//!   user/assistant messages. The session id comes back in `X-Crewgate-Session-Id`.
//! - The client going away cancels the turn (what was stored so far stays).

use crate::AppState;
use crate::auth::Auth;
use crate::chat_error::{ChatError, error_body, status_of_code};
use crate::error::ApiError;
use crate::routes::sessions::{live_agent, target_agent};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use crewgate_core::{AgentId, Principal};
use crewgate_runtime::{TurnEvent, TurnRequest, TurnUsage};
use crewgate_store::{MessageRole, NewMessage, Session};
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub(crate) const MODEL_PREFIX: &str = "crewgate/";
const SESSION_HEADER: &str = "x-crewgate-session";
const SESSION_ID_HEADER: HeaderName = HeaderName::from_static("x-crewgate-session-id");
/// Most earlier messages imported from a request into a fresh session.
const MAX_IMPORTED: usize = 50;

fn invalid(message: impl Into<String>) -> ChatError {
    ChatError::Api(ApiError::BadRequest(message.into()))
}

/// Text of a message's `content`: a string, or the `text` parts of an array.
fn content_text(m: &Value) -> String {
    match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect()
        }
        _ => String::new(),
    }
}

fn model_agent(p: &Principal, model: Option<&str>) -> Result<AgentId, ChatError> {
    let model = model.map(str::trim).filter(|m| !m.is_empty());
    let requested = model.map(|m| m.strip_prefix(MODEL_PREFIX).unwrap_or(m));
    match target_agent(p, requested) {
        Ok(id) => Ok(id),
        // The requested name is not echoed: the answer is the same for any unknown model.
        Err(ApiError::NotFound(_)) => Err(ChatError::Api(ApiError::NotFound(
            "model not found: use \"crewgate/<agent-id>\" (see GET /v1/models) or omit it".into(),
        ))),
        Err(ApiError::BadRequest(_)) => {
            Err(invalid("an admin token must name the agent: set model to \"crewgate/<agent-id>\""))
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn chat_completions(
    State(state): State<AppState>,
    Auth(p): Auth,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ChatError> {
    let req: Value = serde_json::from_slice(&body).map_err(|e| invalid(format!("invalid JSON body: {e}")))?;
    let Some(messages) = req.get("messages").and_then(Value::as_array).filter(|m| !m.is_empty()) else {
        return Err(invalid("`messages` must be a non-empty array"));
    };
    let Some(last_user) =
        messages.iter().rposition(|m| m.get("role").and_then(Value::as_str) == Some("user"))
    else {
        return Err(invalid("`messages` has no user message to answer"));
    };
    let content = content_text(&messages[last_user]);
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage =
        req.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
    let agent = model_agent(&p, req.get("model").and_then(Value::as_str))?;
    let agent = live_agent(&state, &agent).await?;

    let key = headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.get("user").and_then(Value::as_str))
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let session = match key {
        Some(key) => state.runtime.session_for_client_key(&agent.id, key).await?,
        None => fresh_session(&state, &agent.id, &messages[..last_user], &content).await?,
    };
    let model = format!("{MODEL_PREFIX}{}", agent.id);
    let turn_req = TurnRequest::new(agent.id.clone(), session.id.clone(), content)
        .from_sender(crewgate_runtime::Sender::new(p.clone(), "openai"))
        .with_loaded(agent.clone(), session.clone());
    let mut resp = if stream {
        stream_response(&state, turn_req, model, include_usage).await
    } else {
        let out = state.runtime.run_turn(turn_req).await?;
        Json(completion(&out.turn, &model, &out.reply.body, out.usage)).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&session.id) {
        resp.headers_mut().insert(SESSION_ID_HEADER, v);
    }
    Ok(resp)
}

/// A new session holding the request's earlier user/assistant turns (system and tool messages
/// are not imported: the agent's own instructions and tools apply).
async fn fresh_session(
    state: &AppState,
    agent: &AgentId,
    earlier: &[Value],
    content: &str,
) -> Result<Session, ChatError> {
    let title = format!("API: {}", content.lines().next().unwrap_or_default());
    let session = state.runtime.create_session(agent, Some(&title)).await?;
    let imported: Vec<NewMessage> = earlier
        .iter()
        .filter_map(|m| {
            let role = match m.get("role").and_then(Value::as_str)? {
                "user" => MessageRole::User,
                "assistant" => MessageRole::Assistant,
                _ => return None,
            };
            let text = content_text(m);
            (!text.trim().is_empty()).then(|| NewMessage::text(role, text))
        })
        .collect();
    let skip = imported.len().saturating_sub(MAX_IMPORTED);
    if imported.len() > skip {
        state.store.append_messages(agent, &session.id, &imported[skip..]).await?;
    }
    Ok(session)
}

fn usage_json(u: TurnUsage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

fn unix_secs() -> i64 {
    crewgate_core::now_millis() / 1000
}

fn completion(turn: &str, model: &str, text: &str, usage: TurnUsage) -> Value {
    json!({
        "id": format!("chatcmpl-{turn}"),
        "object": "chat.completion",
        "created": unix_secs(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }],
        "usage": usage_json(usage),
    })
}

fn chunk(turn: &str, model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": format!("chatcmpl-{turn}"),
        "object": "chat.completion.chunk",
        "created": unix_secs(),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    })
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// Aborts the turn when the response body is dropped (the client went away).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the turn in a task and streams its events as chat-completion chunks. A turn refused
/// before it starts (bad input, no LLM configured) is an ordinary JSON error response.
async fn stream_response(
    state: &AppState,
    mut req: TurnRequest,
    model: String,
    include_usage: bool,
) -> Response {
    let (tx, mut rx) = mpsc::unbounded_channel();
    req.events = Some(tx);
    let runtime = state.runtime.clone();
    let task = tokio::spawn(async move {
        // The outcome also arrives as the terminal event.
        let _outcome = runtime.run_turn(req).await;
    });
    let guard = AbortOnDrop(task);
    let first = rx.recv().await;
    let turn = match &first {
        Some(TurnEvent::Error { code, message, .. }) => {
            return (status_of_code(code), Json(error_body(code, message))).into_response();
        }
        Some(ev) => ev.turn().to_owned(),
        None => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(error_body("internal", "the turn ended without a result")),
            )
                .into_response();
        }
    };
    let opening = sse(&chunk(&turn, &model, json!({"role": "assistant", "content": ""}), None));
    let body =
        futures::stream::unfold((Some(rx), guard, turn, model), move |(rx, guard, turn, model)| async move {
            let mut rx = rx?;
            loop {
                let event = rx.recv().await?;
                let out = match event {
                    TurnEvent::Delta { text, .. } => {
                        Some(sse(&chunk(&turn, &model, json!({"content": text}), None)))
                    }
                    TurnEvent::Final { usage, .. } => {
                        let mut tail = String::new();
                        tail.push_str(&format!(
                            "data: {}\n\n",
                            chunk(&turn, &model, json!({}), Some("stop"))
                        ));
                        if include_usage {
                            let mut u = chunk(&turn, &model, json!({}), None);
                            u["choices"] = json!([]);
                            u["usage"] = usage_json(usage);
                            tail.push_str(&format!("data: {u}\n\n"));
                        }
                        tail.push_str("data: [DONE]\n\n");
                        return Some((
                            Ok::<_, std::convert::Infallible>(Bytes::from(tail)),
                            (None, guard, turn, model),
                        ));
                    }
                    TurnEvent::Error { code, message, .. } => {
                        // OpenAI clients raise an error for a chunk carrying `error`.
                        let e = error_body(&code, &message);
                        return Some((Ok(sse(&e)), (None, guard, turn, model)));
                    }
                    _ => None,
                };
                if let Some(bytes) = out {
                    return Some((Ok(bytes), (Some(rx), guard, turn, model)));
                }
            }
        });
    let opening = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(opening) });
    let body = Body::from_stream(futures::StreamExt::chain(opening, body));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// The caller's agents as models: its own agent for a user token, every agent for an admin.
pub(crate) async fn models(State(state): State<AppState>, Auth(p): Auth) -> Result<Json<Value>, ApiError> {
    let agents = match &p {
        Principal::Admin { .. } => state.store.list_agents().await?,
        Principal::User { agent_id, .. } => state.store.get_agent(agent_id).await?.into_iter().collect(),
    };
    let data: Vec<Value> = agents
        .iter()
        .map(|a| {
            json!({
                "id": format!("{MODEL_PREFIX}{}", a.id),
                "object": "model",
                "created": a.created_at / 1000,
                "owned_by": "crewgate",
                "name": a.name,
            })
        })
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}
