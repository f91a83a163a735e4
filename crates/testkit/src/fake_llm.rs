//! A scriptable fake OpenAI-compatible LLM server for tests and benchmarks.
//!
//! A real HTTP server (axum on `127.0.0.1:0`) serving `POST /v1/chat/completions` (JSON and SSE
//! streaming) and `GET /v1/models`. It checks requests the way a real provider does (bearer key,
//! content type, model, messages and roles, tool-call pairing) and answers from a script:
//!
//! ```no_run
//! # async fn demo() {
//! use crewgate_testkit::fake_llm::{FakeLlm, Matcher, Step};
//! use serde_json::json;
//! let llm = FakeLlm::builder().api_key("sk-test").start().await;
//! llm.push(Step::tool_call("calendar_list_events", json!({"days": 7})));
//! llm.push(Step::text("You have 3 meetings."));
//! llm.push_for(Matcher::user("session-42"), Step::text("only for session 42"));
//! // … point the code under test at llm.base_url() …
//! let requests = llm.wait_for_requests(2, std::time::Duration::from_secs(5)).await;
//! # }
//! ```
//!
//! Which step answers a request: the first `push_for` step whose matcher matches, else the next
//! `push` step, else the default [`Responder`] (`Echo`: `"echo: <last user message>"`).
//! Requests that fail validation are recorded but consume no step.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// Errors of the fake's helpers.
#[derive(Debug, thiserror::Error)]
pub enum FakeLlmError {
    #[error("could not start the fake LLM server")]
    Start(#[source] std::io::Error),
    #[error("waited {timeout:?} for {wanted} requests to the fake LLM, got {got}")]
    WaitRequests { wanted: usize, got: usize, timeout: Duration },
    #[error("waited {timeout:?} for the stream of request #{index} to end")]
    WaitStream { index: usize, timeout: Duration },
}

// ---------------------------------------------------------------------------------------------
// Script
// ---------------------------------------------------------------------------------------------

/// A tool call the fake model makes.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptedCall {
    /// Call id; generated (`call_<request>_<n>`) when `None`.
    pub id: Option<String>,
    pub name: String,
    /// Arguments exactly as sent (normally JSON; may be deliberately invalid).
    pub arguments: String,
}

impl ScriptedCall {
    /// A call with JSON arguments.
    pub fn new(name: impl Into<String>, arguments: Value) -> Self {
        Self { id: None, name: name.into(), arguments: arguments.to_string() }
    }

    /// A call whose arguments string is sent verbatim (e.g. invalid JSON).
    pub fn raw(name: impl Into<String>, arguments: impl Into<String>) -> Self {
        Self { id: None, name: name.into(), arguments: arguments.into() }
    }

    /// Fixes the call id.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}

impl From<(&str, Value)> for ScriptedCall {
    fn from((name, args): (&str, Value)) -> Self {
        Self::new(name, args)
    }
}

impl From<(String, Value)> for ScriptedCall {
    fn from((name, args): (String, Value)) -> Self {
        Self::new(name, args)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Text(String),
    Echo,
    ToolCalls { text: Option<String>, calls: Vec<ScriptedCall> },
    Fail { status: u16 },
    Stall(Duration),
    Malformed,
}

/// `Retry-After` of a failure step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RetryAfter {
    Seconds(u64),
    Date(SystemTime),
}

/// How the fake answers one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    reply: Reply,
    delay: Duration,
    quirky: bool,
    chunk_delay: Option<Duration>,
    retry_after: Option<RetryAfter>,
    message: Option<String>,
    disconnect_after: Option<usize>,
}

impl Step {
    fn new(reply: Reply) -> Self {
        Self {
            reply,
            delay: Duration::ZERO,
            quirky: false,
            chunk_delay: None,
            retry_after: None,
            message: None,
            disconnect_after: None,
        }
    }

    /// Answer with this text (`finish_reason: "stop"`).
    pub fn text(text: impl Into<String>) -> Self {
        Self::new(Reply::Text(text.into()))
    }

    /// Answer `"echo: <last user message>"`.
    pub fn echo() -> Self {
        Self::new(Reply::Echo)
    }

    /// Call one tool with JSON arguments (`finish_reason: "tool_calls"`).
    pub fn tool_call(name: impl Into<String>, arguments: Value) -> Self {
        Self::tool_calls([ScriptedCall::new(name, arguments)])
    }

    /// Call several tools in one turn (parallel tool calls).
    pub fn tool_calls<I, C>(calls: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: Into<ScriptedCall>,
    {
        Self::new(Reply::ToolCalls { text: None, calls: calls.into_iter().map(Into::into).collect() })
    }

    /// Answer with an HTTP error and an OpenAI error body.
    pub fn fail(status: u16) -> Self {
        Self::new(Reply::Fail { status })
    }

    /// Streams: send the head and the first (role) chunk, then stay silent for `silence`, then
    /// finish normally. Non-streaming: wait `silence` before answering.
    pub fn stall(silence: Duration) -> Self {
        Self::new(Reply::Stall(silence))
    }

    /// Streams: a chunk that is not JSON. Non-streaming: a truncated JSON body. Status 200.
    pub fn malformed_sse() -> Self {
        Self::new(Reply::Malformed)
    }

    /// Text sent beside the tool calls of a tool-call step (or replaces the text of a text step).
    #[must_use]
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        match &mut self.reply {
            Reply::ToolCalls { text: t, .. } => *t = Some(text.into()),
            _ => self.reply = Reply::Text(text.into()),
        }
        self
    }

    /// `Retry-After: <secs>` on a failure step.
    #[must_use]
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(RetryAfter::Seconds(secs));
        self
    }

    /// `Retry-After: <HTTP-date>` on a failure step.
    #[must_use]
    pub fn retry_after_date(mut self, when: SystemTime) -> Self {
        self.retry_after = Some(RetryAfter::Date(when));
        self
    }

    /// The `error.message` of a failure step.
    #[must_use]
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Simulated model time before the response starts.
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Stream like llama-cpp-python: repeat `id`/`name` in every tool-call delta, add a legacy
    /// `function_call` beside `tool_calls`, CRLF line ends, keep-alive comments, and every event
    /// written in two TCP writes split mid-line (possibly mid-UTF-8 character).
    #[must_use]
    pub fn quirky(mut self) -> Self {
        self.quirky = true;
        self
    }

    /// Pause between streamed chunks for this step (default: the server's `chunk_delay`).
    #[must_use]
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = Some(delay);
        self
    }

    /// Streams: abort the connection after `deltas` content/tool deltas (0 = right after the
    /// role chunk), without `[DONE]`.
    #[must_use]
    pub fn disconnect_after(mut self, deltas: usize) -> Self {
        self.disconnect_after = Some(deltas);
        self
    }
}

/// Which requests a [`FakeLlm::push_for`] step may answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// The request's `user` field equals this.
    User(String),
    /// The last user message contains this.
    LastUserContains(String),
}

impl Matcher {
    /// Match on the `user` field.
    pub fn user(user: impl Into<String>) -> Self {
        Self::User(user.into())
    }

    /// Match on a substring of the last user message.
    pub fn contains(needle: impl Into<String>) -> Self {
        Self::LastUserContains(needle.into())
    }

    /// Whether `req` matches.
    pub fn matches(&self, req: &RecordedRequest) -> bool {
        match self {
            Self::User(u) => req.user() == Some(u.as_str()),
            Self::LastUserContains(n) => req.last_user_message().is_some_and(|m| m.contains(n.as_str())),
        }
    }
}

/// Answers requests when no scripted step applies.
#[derive(Clone)]
pub enum Responder {
    /// `"echo: <last user message>"`.
    Echo,
    /// Always this text.
    Text(String),
    /// Computed from the request.
    Fn(Arc<dyn Fn(&RecordedRequest) -> Step + Send + Sync>),
}

impl Responder {
    /// A [`Responder::Text`].
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }

    /// A [`Responder::Fn`] from a closure.
    pub fn from_fn(f: impl Fn(&RecordedRequest) -> Step + Send + Sync + 'static) -> Self {
        Self::Fn(Arc::new(f))
    }

    fn step(&self, req: &RecordedRequest) -> Step {
        match self {
            Self::Echo => Step::echo(),
            Self::Text(t) => Step::text(t.clone()),
            Self::Fn(f) => f(req),
        }
    }
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Echo => f.write_str("Echo"),
            Self::Text(t) => f.debug_tuple("Text").field(t).finish(),
            Self::Fn(_) => f.write_str("Fn(..)"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/// How a streamed response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOutcome {
    /// Everything up to `[DONE]` was handed to the connection.
    Completed,
    /// The client went away (or the server shut down) before the end.
    ClientDisconnected,
    /// A `disconnect_after` step aborted it.
    Aborted,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// 0-based arrival order.
    pub index: usize,
    pub method: String,
    pub path: String,
    /// Header names lower-case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The parsed JSON body (`Null` when absent or not JSON).
    pub body: Value,
    /// Status the fake answered with.
    pub status: u16,
    /// Whether the answer was an SSE stream.
    pub stream: bool,
    pub received_at: Instant,
    /// Time the fake itself spent (parsing, validating, rendering), excluding scripted delays
    /// and stream pacing, so benchmarks can subtract it. Filled in once the answer is built.
    pub processing_time: Duration,
    /// Scripted delay/stall before the answer started.
    pub simulated_delay: Duration,
    /// Set when a streamed answer ends.
    pub stream_outcome: Option<StreamOutcome>,
}

/// A tool result message of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResult {
    pub tool_call_id: String,
    pub content: String,
}

impl RecordedRequest {
    /// A header value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// `model` of the body.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// `user` of the body.
    pub fn user(&self) -> Option<&str> {
        self.body.get("user").and_then(Value::as_str)
    }

    /// `messages` of the body.
    pub fn messages(&self) -> &[Value] {
        self.body.get("messages").and_then(Value::as_array).map_or(&[], Vec::as_slice)
    }

    /// Text of the last `user` message.
    pub fn last_user_message(&self) -> Option<String> {
        self.messages()
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .map(content_text)
    }

    /// `system` messages' text.
    pub fn system_prompt(&self) -> Option<String> {
        self.messages()
            .iter()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("system"))
            .map(content_text)
    }

    /// All `tool` messages, in order.
    pub fn tool_results(&self) -> Vec<ToolResult> {
        self.messages()
            .iter()
            .filter(|m| m.get("role").and_then(Value::as_str) == Some("tool"))
            .map(|m| ToolResult {
                tool_call_id: m.get("tool_call_id").and_then(Value::as_str).unwrap_or_default().to_owned(),
                content: content_text(m),
            })
            .collect()
    }

    /// Names of the offered tools.
    pub fn tool_names(&self) -> Vec<String> {
        self.body
            .get("tools")
            .and_then(Value::as_array)
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the request asked for streaming.
    pub fn wants_stream(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool) == Some(true)
    }
}

/// Text of a message's `content` (string, or concatenated `text` parts).
fn content_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect()
        }
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

struct Config {
    api_key: Option<String>,
    models: Vec<String>,
    chunk_delay: Duration,
    quirky: bool,
}

struct Script {
    queue: VecDeque<Step>,
    matched: Vec<(Matcher, Step)>,
    default: Responder,
    requests: Vec<RecordedRequest>,
}

struct Shared {
    config: Config,
    state: Mutex<Script>,
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Script> {
        // A panic elsewhere cannot leave `State` half-updated in a way that matters for a fake.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, index: usize, f: impl FnOnce(&mut RecordedRequest)) {
        if let Some(r) = self.lock().requests.get_mut(index) {
            f(r);
        }
        self.changed.notify_waiters();
    }
}

/// Settings of a [`FakeLlm`].
#[derive(Debug, Clone)]
pub struct FakeLlmBuilder {
    api_key: Option<String>,
    models: Vec<String>,
    chunk_delay: Duration,
    quirky: bool,
    default: Responder,
}

impl Default for FakeLlmBuilder {
    fn default() -> Self {
        Self {
            api_key: None,
            models: vec!["fake-model".to_owned()],
            chunk_delay: Duration::from_millis(2),
            quirky: false,
            default: Responder::Echo,
        }
    }
}

impl FakeLlmBuilder {
    /// Require `Authorization: Bearer <key>` (401 otherwise). Without a key any caller is accepted.
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Models listed by `GET /v1/models` (default `["fake-model"]`; requests may name any model).
    #[must_use]
    pub fn models<I: IntoIterator<Item = S>, S: Into<String>>(mut self, models: I) -> Self {
        self.models = models.into_iter().map(Into::into).collect();
        self
    }

    /// Pause between streamed chunks (default 2 ms; zero only yields to the scheduler).
    #[must_use]
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    /// Make every streamed answer quirky (see [`Step::quirky`]).
    #[must_use]
    pub fn quirky(mut self) -> Self {
        self.quirky = true;
        self
    }

    /// The responder used when the script is empty (default [`Responder::Echo`]).
    #[must_use]
    pub fn default_responder(mut self, responder: Responder) -> Self {
        self.default = responder;
        self
    }

    /// Starts the server.
    pub async fn try_start(self) -> Result<FakeLlm, FakeLlmError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(FakeLlmError::Start)?;
        let addr = listener.local_addr().map_err(FakeLlmError::Start)?;
        let shared = Arc::new(Shared {
            config: Config {
                api_key: self.api_key,
                models: self.models,
                chunk_delay: self.chunk_delay,
                quirky: self.quirky,
            },
            state: Mutex::new(Script {
                queue: VecDeque::new(),
                matched: Vec::new(),
                default: self.default,
                requests: Vec::new(),
            }),
            changed: Notify::new(),
        });
        let app = Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            // Streams are many small writes: without TCP_NODELAY, Nagle + delayed ACKs add ~40 ms.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "fake LLM: cannot set TCP_NODELAY");
                }
            });
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "fake LLM server stopped");
            }
        });
        Ok(FakeLlm { addr, shared, server })
    }

    /// Starts the server; panics if the loopback port cannot be bound.
    #[allow(clippy::expect_used)] // test helper: failing to bind 127.0.0.1:0 means the test host is broken
    pub async fn start(self) -> FakeLlm {
        self.try_start().await.expect("fake LLM: could not bind 127.0.0.1:0")
    }
}

/// The running fake. Stops accepting connections when dropped.
pub struct FakeLlm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for FakeLlm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeLlm").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeLlm {
    /// Settings builder.
    pub fn builder() -> FakeLlmBuilder {
        FakeLlmBuilder::default()
    }

    /// Starts a fake without a key, answering with [`Responder::Echo`] when unscripted.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The key the fake requires, if any.
    pub fn api_key(&self) -> Option<&str> {
        self.shared.config.api_key.as_deref()
    }

    /// Queue a step for the next request that no `push_for` step matches.
    pub fn push(&self, step: Step) {
        self.shared.lock().queue.push_back(step);
    }

    /// Queue a step for the next request that `matcher` matches (independent conversations).
    pub fn push_for(&self, matcher: Matcher, step: Step) {
        self.shared.lock().matched.push((matcher, step));
    }

    /// Responder for requests when no step applies.
    pub fn set_default(&self, responder: Responder) {
        self.shared.lock().default = responder;
    }

    /// Scripted steps not yet used.
    pub fn pending_steps(&self) -> usize {
        let s = self.shared.lock();
        s.queue.len() + s.matched.len()
    }

    /// Every request received so far (including rejected ones and `GET /v1/models`).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Only `POST /v1/chat/completions` requests.
    pub fn chat_requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.iter().filter(|r| r.path == "/v1/chat/completions").cloned().collect()
    }

    /// The requests received after the first `n` (cheap when a long run only needs the latest).
    pub fn requests_since(&self, n: usize) -> Vec<RecordedRequest> {
        self.shared.lock().requests.get(n..).map(<[RecordedRequest]>::to_vec).unwrap_or_default()
    }

    /// Number of requests received so far.
    pub fn request_count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// Forgets recorded requests (the script stays).
    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// Waits until at least `n` requests arrived; returns all recorded requests.
    pub async fn wait_for_requests(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<RecordedRequest>, FakeLlmError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            let got = {
                let s = self.shared.lock();
                if s.requests.len() >= n {
                    return Ok(s.requests.clone());
                }
                s.requests.len()
            };
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(FakeLlmError::WaitRequests { wanted: n, got, timeout });
            }
        }
    }

    /// Waits until the streamed answer to request `index` ended; returns how.
    pub async fn wait_for_stream_end(
        &self,
        index: usize,
        timeout: Duration,
    ) -> Result<StreamOutcome, FakeLlmError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            if let Some(outcome) = self.shared.lock().requests.get(index).and_then(|r| r.stream_outcome) {
                return Ok(outcome);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(FakeLlmError::WaitStream { index, timeout });
            }
        }
    }

    /// Panics listing the unused steps, if any.
    #[allow(clippy::panic)] // test assertion helper: a clear panic is the intended failure report
    pub fn assert_script_consumed(&self) {
        let s = self.shared.lock();
        if !s.queue.is_empty() || !s.matched.is_empty() {
            panic!(
                "fake LLM: {} scripted steps were never used: {:?} {:?}",
                s.queue.len() + s.matched.len(),
                s.queue,
                s.matched
            );
        }
    }
}

fn error_json(status: StatusCode, kind: &str, code: Option<&str>, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": {"message": message, "type": kind, "param": null, "code": code}}).to_string(),
    )
        .into_response()
}

fn invalid(message: impl AsRef<str>) -> Response {
    error_json(StatusCode::BAD_REQUEST, "invalid_request_error", None, message.as_ref())
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Crude token count: a token per 4 characters, rounded up.
fn tokens(text: &str) -> u32 {
    u32::try_from(text.chars().count().div_ceil(4)).unwrap_or(u32::MAX)
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let path = uri.path().to_owned();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut record = RecordedRequest {
        index: 0,
        method: method.to_string(),
        path: path.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: parsed,
        status: 0,
        stream: false,
        received_at: started,
        processing_time: Duration::ZERO,
        simulated_delay: Duration::ZERO,
        stream_outcome: None,
    };

    let decision = decide(&shared, &method, &path, &headers, &body, &record);
    let (response_or_step, status) = match decision {
        Decision::Respond(resp) => {
            let status = resp.status().as_u16();
            (Ok(resp), status)
        }
        Decision::Models => {
            let data: Vec<Value> = shared
                .config
                .models
                .iter()
                .map(|m| json!({"id": m, "object": "model", "created": 0, "owned_by": "crewgate-testkit"}))
                .collect();
            (Ok(axum::Json(json!({"object": "list", "data": data})).into_response()), 200)
        }
        Decision::Chat => {
            let step = {
                let mut s = shared.lock();
                let pos = s.matched.iter().position(|(m, _)| m.matches(&record));
                match pos {
                    Some(p) => Some(s.matched.remove(p).1),
                    None => s.queue.pop_front(),
                }
                .unwrap_or_else(|| s.default.step(&record))
            };
            let status = match step.reply {
                Reply::Fail { status } => status,
                _ => 200,
            };
            (Err(step), status)
        }
    };

    record.status = status;
    let index = {
        let mut s = shared.lock();
        record.index = s.requests.len();
        let i = record.index;
        s.requests.push(record.clone());
        i
    };
    shared.changed.notify_waiters();

    let step = match response_or_step {
        Ok(resp) => {
            let elapsed = started.elapsed();
            shared.update(index, |r| r.processing_time = elapsed);
            return resp;
        }
        Err(step) => step,
    };

    let wait = match step.reply {
        Reply::Stall(d) if !record.wants_stream() => step.delay + d,
        _ => step.delay,
    };
    let slept = if wait.is_zero() {
        Duration::ZERO
    } else {
        let t = Instant::now();
        tokio::time::sleep(wait).await;
        t.elapsed()
    };

    let resp = respond(&shared, &record, index, step);
    let processing = started.elapsed().saturating_sub(slept);
    shared.update(index, |r| {
        r.processing_time = processing;
        r.simulated_delay = wait;
    });
    resp
}

enum Decision {
    Respond(Response),
    Models,
    Chat,
}

fn decide(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    record: &RecordedRequest,
) -> Decision {
    let endpoint = match path {
        "/v1/chat/completions" => Method::POST,
        "/v1/models" => Method::GET,
        _ => {
            return Decision::Respond(error_json(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("unknown_url"),
                &format!("Unknown request URL: {method} {path}"),
            ));
        }
    };
    if let Some(key) = &shared.config.api_key {
        let expected = format!("Bearer {key}");
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            let message = if given.is_none() {
                "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            } else {
                "Incorrect API key provided."
            };
            return Decision::Respond(error_json(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                Some("invalid_api_key"),
                message,
            ));
        }
    }
    if *method != endpoint {
        return Decision::Respond(error_json(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            Some("method_not_supported"),
            &format!("Not allowed to {method} on {path}. (HINT: use {endpoint})"),
        ));
    }
    if endpoint == Method::GET {
        return Decision::Models;
    }
    let json_ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("application/json"));
    if !json_ct {
        return Decision::Respond(invalid("Invalid Content-Type header, expected application/json"));
    }
    if serde_json::from_slice::<Value>(body).is_err() {
        return Decision::Respond(invalid("We could not parse the JSON body of your request."));
    }
    match validate_chat(&record.body) {
        Ok(()) => Decision::Chat,
        Err(message) => Decision::Respond(invalid(message)),
    }
}

const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// The checks a real provider makes on a chat request.
fn validate_chat(body: &Value) -> Result<(), String> {
    let Some(obj) = body.as_object() else {
        return Err("The request body must be a JSON object.".into());
    };
    match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => {}
        _ => return Err("you must provide a model parameter".into()),
    }
    if let Some(s) = obj.get("stream")
        && !s.is_boolean()
        && !s.is_null()
    {
        return Err(format!("Invalid type for 'stream': expected a boolean, got {s}"));
    }
    if let Some(tools) = obj.get("tools") {
        let Some(tools) = tools.as_array() else {
            return Err("Invalid type for 'tools': expected an array.".into());
        };
        if tools.is_empty() {
            return Err("[] is too short - 'tools'".into());
        }
        for (i, t) in tools.iter().enumerate() {
            if t.get("type").and_then(Value::as_str) != Some("function") {
                return Err(format!("Invalid value for 'tools[{i}].type': expected 'function'."));
            }
            let name = t.pointer("/function/name").and_then(Value::as_str).unwrap_or("");
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !name_ok {
                return Err(format!(
                    "Invalid 'tools[{i}].function.name': string does not match pattern '^[a-zA-Z0-9_-]{{1,64}}$'."
                ));
            }
            if let Some(p) = t.pointer("/function/parameters")
                && !p.is_object()
            {
                return Err(format!(
                    "Invalid schema for function '{name}': parameters must be a JSON Schema object."
                ));
            }
        }
    }
    let messages = match obj.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => return Err("[] is too short - 'messages'".into()),
        _ => return Err("Missing required parameter: 'messages'.".into()),
    };
    let mut known_calls: HashSet<&str> = HashSet::new();
    let mut unanswered: Vec<&str> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if !ROLES.contains(&role) {
            return Err(format!(
                "Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'tool', and 'developer'. (messages[{i}].role)"
            ));
        }
        if role != "tool" && !unanswered.is_empty() {
            return Err(format!(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                unanswered.join(", ")
            ));
        }
        let content = m.get("content");
        let content_ok = matches!(content, Some(Value::String(_) | Value::Array(_)));
        match role {
            "assistant" => {
                let calls = m.get("tool_calls");
                if !content_ok && !matches!(content, None | Some(Value::Null)) {
                    return Err(format!("Invalid type for 'messages[{i}].content'."));
                }
                match calls {
                    None | Some(Value::Null) => {
                        if !content_ok {
                            return Err(format!(
                                "Invalid value for 'messages[{i}].content': an assistant message needs content or tool_calls."
                            ));
                        }
                    }
                    Some(Value::Array(calls)) if !calls.is_empty() => {
                        for (j, c) in calls.iter().enumerate() {
                            let id = c.get("id").and_then(Value::as_str).unwrap_or("");
                            if id.is_empty() {
                                return Err(format!(
                                    "Missing required parameter: 'messages[{i}].tool_calls[{j}].id'."
                                ));
                            }
                            if c.get("type").and_then(Value::as_str) != Some("function") {
                                return Err(format!(
                                    "Missing required parameter: 'messages[{i}].tool_calls[{j}].type'."
                                ));
                            }
                            if c.pointer("/function/name").and_then(Value::as_str).is_none() {
                                return Err(format!(
                                    "Missing required parameter: 'messages[{i}].tool_calls[{j}].function.name'."
                                ));
                            }
                            if !c.pointer("/function/arguments").is_some_and(Value::is_string) {
                                return Err(format!(
                                    "Invalid type for 'messages[{i}].tool_calls[{j}].function.arguments': expected a string."
                                ));
                            }
                            known_calls.insert(id);
                            unanswered.push(id);
                        }
                    }
                    Some(Value::Array(_)) => {
                        return Err(format!("[] is too short - 'messages[{i}].tool_calls'"));
                    }
                    Some(_) => {
                        return Err(format!(
                            "Invalid type for 'messages[{i}].tool_calls': expected an array."
                        ));
                    }
                }
            }
            "tool" => {
                let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
                if id.is_empty() {
                    return Err(format!("Missing required parameter: 'messages[{i}].tool_call_id'."));
                }
                if !known_calls.contains(id) {
                    return Err(format!(
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'. (messages[{i}].tool_call_id = {id})"
                    ));
                }
                if !content_ok {
                    return Err(format!("Invalid type for 'messages[{i}].content': expected a string."));
                }
                unanswered.retain(|u| *u != id);
            }
            _ => {
                if !content_ok {
                    return Err(format!(
                        "Invalid type for 'messages[{i}].content': expected a string or an array of parts."
                    ));
                }
            }
        }
    }
    if !unanswered.is_empty() {
        return Err(format!(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
            unanswered.join(", ")
        ));
    }
    Ok(())
}

/// The resolved content of an answer.
struct Answer {
    text: Option<String>,
    calls: Vec<(String, String, String)>,
}

fn answer(record: &RecordedRequest, step: &Step) -> Answer {
    let index = record.index;
    match &step.reply {
        Reply::Text(t) => Answer { text: Some(t.clone()), calls: Vec::new() },
        Reply::Echo => Answer {
            text: Some(format!("echo: {}", record.last_user_message().unwrap_or_default())),
            calls: Vec::new(),
        },
        Reply::Stall(_) => Answer { text: Some("sorry for the wait".into()), calls: Vec::new() },
        Reply::ToolCalls { text, calls } => Answer {
            text: text.clone(),
            calls: calls
                .iter()
                .enumerate()
                .map(|(n, c)| {
                    (
                        c.id.clone().unwrap_or_else(|| format!("call_{index}_{n}")),
                        c.name.clone(),
                        c.arguments.clone(),
                    )
                })
                .collect(),
        },
        Reply::Fail { .. } | Reply::Malformed => Answer { text: None, calls: Vec::new() },
    }
}

fn usage_of(record: &RecordedRequest, a: &Answer) -> Value {
    let prompt: u32 = record.messages().iter().map(|m| tokens(&content_text(m)) + 4).sum();
    let completion = a.text.as_deref().map_or(0, tokens)
        + a.calls.iter().map(|(_, name, args)| tokens(name) + tokens(args)).sum::<u32>();
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

fn respond(shared: &Arc<Shared>, record: &RecordedRequest, index: usize, step: Step) -> Response {
    if let Reply::Fail { status } = step.reply {
        return fail_response(status, &step);
    }
    let id = format!("chatcmpl-fake-{index}");
    let model = record.model().unwrap_or("fake-model").to_owned();
    let created = unix_now();
    if !record.wants_stream() {
        if step.reply == Reply::Malformed {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                format!(r#"{{"id":"{id}","object":"chat.completion","choices":[{{"index":0,"message":{{"role":"assistant","content":"trunc"#),
            )
                .into_response();
        }
        let a = answer(record, &step);
        let mut message = json!({"role": "assistant", "content": a.text, "refusal": null});
        if !a.calls.is_empty() {
            message["tool_calls"] = a
                .calls
                .iter()
                .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
                .collect();
        }
        let finish = if a.calls.is_empty() { "stop" } else { "tool_calls" };
        return axum::Json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
            "usage": usage_of(record, &a),
        }))
        .into_response();
    }
    shared.update(index, |r| r.stream = true);
    let quirky = step.quirky || shared.config.quirky;
    let pieces = sse_pieces(record, &step, &id, &model, created, quirky);
    let pacing = step.chunk_delay.unwrap_or(shared.config.chunk_delay);
    let guard = OutcomeGuard { shared: shared.clone(), index, done: false };
    let body = futures::stream::unfold(
        (VecDeque::from(pieces), guard, true),
        move |(mut pieces, mut guard, first)| async move {
            loop {
                match pieces.pop_front() {
                    None => {
                        guard.finish(StreamOutcome::Completed);
                        return None;
                    }
                    Some(Piece::Pause(d)) => tokio::time::sleep(d).await,
                    Some(Piece::Abort) => {
                        // Let what was sent so far reach the client first.
                        pace(pacing).await;
                        guard.finish(StreamOutcome::Aborted);
                        pieces.clear();
                        let err = std::io::Error::other("fake LLM: scripted disconnect");
                        return Some((Err(err), (pieces, guard, false)));
                    }
                    Some(Piece::Data(bytes)) => {
                        if !first {
                            pace(pacing).await;
                        }
                        return Some((Ok::<_, std::io::Error>(bytes), (pieces, guard, false)));
                    }
                }
            }
        },
    );
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

fn fail_response(status: u16, step: &Step) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (kind, default_message) = match status {
        400 => ("invalid_request_error", "Invalid request."),
        401 => ("authentication_error", "Incorrect API key provided."),
        403 => ("permission_error", "You are not allowed to use this model."),
        404 => ("not_found_error", "The model does not exist."),
        429 => ("rate_limit_error", "Rate limit reached for requests."),
        503 => ("server_error", "The engine is currently overloaded, please try again later."),
        500..=599 => ("server_error", "The server had an error while processing your request."),
        _ => ("invalid_request_error", "The request failed."),
    };
    let message = step.message.as_deref().unwrap_or(default_message);
    let mut resp = error_json(code, kind, None, message);
    let retry_after = match step.retry_after {
        Some(RetryAfter::Seconds(s)) => Some(s.to_string()),
        Some(RetryAfter::Date(t)) => Some(httpdate::fmt_http_date(t)),
        None => None,
    };
    if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

async fn pace(delay: Duration) {
    if delay.is_zero() {
        tokio::task::yield_now().await;
    } else {
        tokio::time::sleep(delay).await;
    }
}

enum Piece {
    Data(Bytes),
    Pause(Duration),
    Abort,
}

/// Records how a stream ended; "client disconnected" when dropped before the end.
struct OutcomeGuard {
    shared: Arc<Shared>,
    index: usize,
    done: bool,
}

impl OutcomeGuard {
    fn finish(&mut self, outcome: StreamOutcome) {
        if !self.done {
            self.done = true;
            self.shared.update(self.index, |r| r.stream_outcome = Some(outcome));
        }
    }
}

impl Drop for OutcomeGuard {
    fn drop(&mut self) {
        self.finish(StreamOutcome::ClientDisconnected);
    }
}

/// Splits text into several deltas (word by word, at most ~16 bytes each).
fn split_text(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        cur.push(c);
        if (c == ' ' && !cur.trim().is_empty()) || cur.len() >= 16 {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Splits tool arguments into three fragments (at char boundaries).
fn split_args(args: &str) -> Vec<String> {
    let chars: Vec<char> = args.chars().collect();
    if chars.len() < 3 {
        return vec![args.to_owned()];
    }
    let third = chars.len() / 3;
    vec![
        chars[..third].iter().collect(),
        chars[third..2 * third].iter().collect(),
        chars[2 * third..].iter().collect(),
    ]
}

fn sse_pieces(
    record: &RecordedRequest,
    step: &Step,
    id: &str,
    model: &str,
    created: u64,
    quirky: bool,
) -> Vec<Piece> {
    let eol = if quirky { "\r\n" } else { "\n" };
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
               "system_fingerprint": "fp_fake",
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
    };
    let mut events: Vec<EventOut> =
        vec![EventOut::Json(chunk(json!({"role": "assistant", "content": ""}), None))];
    if quirky {
        events.push(EventOut::Raw(format!(": keep-alive{eol}{eol}")));
    }
    match &step.reply {
        Reply::Malformed => {
            events.push(EventOut::Raw(format!(
                "data: {{\"id\":\"{id}\",\"choices\":[{{\"delta\":{{\"content\":\"oops{eol}{eol}"
            )));
            events.push(EventOut::Raw(format!("data: [DONE]{eol}{eol}")));
            return render(events, eol, quirky);
        }
        Reply::Stall(d) => events.push(EventOut::Pause(*d)),
        _ => {}
    }
    let a = answer(record, step);
    let mut deltas = 0usize;
    let mut push_delta = |events: &mut Vec<EventOut>, v: Value| {
        if step.disconnect_after == Some(deltas) {
            events.push(EventOut::Abort);
        }
        deltas += 1;
        events.push(EventOut::Json(chunk(v, None)));
    };
    if let Some(text) = &a.text {
        for piece in split_text(text) {
            push_delta(&mut events, json!({"content": piece}));
        }
    }
    for (n, (call_id, name, args)) in a.calls.iter().enumerate() {
        if quirky {
            for frag in split_args(args) {
                push_delta(
                    &mut events,
                    json!({
                        "tool_calls": [{"index": n, "id": call_id, "type": "function",
                                        "function": {"name": name, "arguments": frag}}],
                        "function_call": {"name": name, "arguments": frag},
                    }),
                );
            }
        } else {
            push_delta(
                &mut events,
                json!({"tool_calls": [{"index": n, "id": call_id, "type": "function",
                                       "function": {"name": name, "arguments": ""}}]}),
            );
            for frag in split_args(args) {
                push_delta(
                    &mut events,
                    json!({"tool_calls": [{"index": n, "function": {"arguments": frag}}]}),
                );
            }
        }
    }
    if step.disconnect_after.is_some_and(|n| n >= deltas) {
        events.push(EventOut::Abort);
    }
    let finish = if a.calls.is_empty() { "stop" } else { "tool_calls" };
    let usage = usage_of(record, &a);
    let include_usage =
        record.body.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true);
    let mut last = chunk(json!({}), Some(finish));
    if quirky {
        last["usage"] = usage.clone();
    }
    events.push(EventOut::Json(last));
    if include_usage && !quirky {
        events.push(EventOut::Json(json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": usage,
        })));
    }
    events.push(EventOut::Raw(format!("data: [DONE]{eol}{eol}")));
    render(events, eol, quirky)
}

enum EventOut {
    Json(Value),
    Raw(String),
    Pause(Duration),
    Abort,
}

fn render(events: Vec<EventOut>, eol: &str, split_writes: bool) -> Vec<Piece> {
    let mut out = Vec::new();
    for ev in events {
        let text = match ev {
            EventOut::Json(v) => format!("data: {v}{eol}{eol}"),
            EventOut::Raw(s) => s,
            EventOut::Pause(d) => {
                out.push(Piece::Pause(d));
                continue;
            }
            EventOut::Abort => {
                out.push(Piece::Abort);
                break;
            }
        };
        let bytes = Bytes::from(text);
        if split_writes && bytes.len() > 1 {
            // Split at a byte offset chosen to land inside a multi-byte character when there is
            // one, else in the middle: the client must reassemble lines and UTF-8 itself.
            let mid = bytes.iter().position(|b| *b >= 0x80).map_or(bytes.len() / 2, |p| p + 1);
            out.push(Piece::Data(bytes.slice(..mid)));
            out.push(Piece::Data(bytes.slice(mid..)));
        } else {
            out.push(Piece::Data(bytes));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn text_is_split_into_several_deltas() {
        let parts = split_text("hello there, how are you today?");
        assert!(parts.len() >= 5, "{parts:?}");
        assert_eq!(parts.concat(), "hello there, how are you today?");
        let parts = split_args(r#"{"days":7}"#);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.concat(), r#"{"days":7}"#);
    }

    #[test]
    fn validation_catches_what_providers_reject() {
        let ok = json!({"model":"m","messages":[
            {"role":"user","content":"hi"},
            {"role":"assistant","content":null,"tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"a","content":"r"}]});
        assert_eq!(validate_chat(&ok), Ok(()));
        let cases = [
            (json!({"messages":[{"role":"user","content":"x"}]}), "model"),
            (json!({"model":"m","messages":[]}), "too short"),
            (json!({"model":"m","messages":[{"role":"robot","content":"x"}]}), "robot"),
            (
                json!({"model":"m","messages":[{"role":"tool","tool_call_id":"zz","content":"x"}]}),
                "preceeding",
            ),
            (
                json!({"model":"m","messages":[{"role":"user","content":"x"},
                {"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}}]},
                {"role":"user","content":"y"}]}),
                "did not have response",
            ),
            (
                json!({"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":{}}}]}]}),
                "arguments",
            ),
            (json!({"model":"m","tools":[],"messages":[{"role":"user","content":"x"}]}), "'tools'"),
            (
                json!({"model":"m","tools":[{"type":"function","function":{"name":"bad name"}}],"messages":[{"role":"user","content":"x"}]}),
                "pattern",
            ),
        ];
        for (body, needle) in cases {
            let err = validate_chat(&body).unwrap_err();
            assert!(err.contains(needle), "{body}: {err}");
        }
    }
}
