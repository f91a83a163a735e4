//! WebSocket `/api/v1/ws`: the dashboard's chat channel.
//!
//! Authentication (never in the URL): an `Authorization: Bearer` header; the dashboard's session
//! cookie (same-origin handshakes only); or, for browsers without a cookie, which cannot set
//! headers on a WebSocket, the subprotocols `["crewgate.v1", "crewgate.bearer.<token>"]` (the
//! server selects `crewgate.v1`, so the token is never echoed); or a first message
//! `{"type":"auth","token":"…"}` within 10 s. The credential is checked again before every client
//! message and every 15 s, so a revoked token or ended session closes the connection.
//!
//! Client → server (JSON text frames, each may carry a `request_id` that the answer echoes):
//! - `{"type":"send","content":"…","session":"<id>"?,"agent":"<id>"?}` → `accepted` (and
//!   `session` when a new one was created), then the turn's events: `turn_started`,
//!   `user_message`, `delta`…, `tool_call`/`tool_result`…, and `final` or `error`;
//! - `{"type":"subscribe","session":"<id>","agent":"<id>"?}` → `subscribed`, then the events of
//!   that session's turns started elsewhere (REST, another tab); `unsubscribe` undoes it;
//! - `{"type":"decide","proposal":"<id>","decision":"approve"|"reject"|"edit","instructions":"…"?,
//!   "agent":"<id>"?}` → `decided` with the proposal (after it ran; for an edit, the revision), or
//!   `error`; the same rules as `POST /api/v1/proposals/{id}/approve|reject|edit`;
//! - `{"type":"ping"}` → `pong`.
//!
//! Proposal changes arrive as `{"type":"proposal","proposal":{…}}` — without subscribing, those of
//! every session of the inbox agent (a member's own agent; the orchestrator for an admin), and
//! those of other subscribed sessions — and
//! gateway notices (an expired proposal, an outcome after a restart) as `notice`.
//!
//! The agent is the caller's own for a user token (`agent` must be omitted or equal); an admin
//! names it. Another user's session is "session not found", exactly like a missing one.

use crate::AppState;
use crate::auth::{self, Auth};
use crate::error::ApiError;
use crate::routes::sessions::{live_agent, target_agent};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN, SEC_WEBSOCKET_PROTOCOL};
use axum::http::{HeaderMap, Request};
use axum::response::{IntoResponse, Response};
use crewgate_core::Principal;
use crewgate_runtime::{DecisionRequest, RuntimeError, TurnEvent, TurnRequest};
use futures::{SinkExt, StreamExt};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// The subprotocol the server speaks (and selects).
pub const PROTOCOL: &str = "crewgate.v1";
/// Prefix of the subprotocol entry that carries a token.
pub const TOKEN_PROTOCOL_PREFIX: &str = "crewgate.bearer.";
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
const RECHECK_EVERY: Duration = Duration::from_secs(15);
const MAX_TURNS_IN_FLIGHT: usize = 8;
/// Own turn ids remembered per connection (long finished before they are forgotten).
const OWN_TURNS_KEPT: usize = 1024;
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Close code for a refused or revoked token (4000–4999 are for applications).
const CLOSE_UNAUTHORIZED: u16 = 4401;

/// What the writer task sends.
enum Out {
    Json(Value),
    /// Keeps idle connections open through proxies.
    Ping,
    Close(u16, &'static str),
}

/// Queues a frame for the writer. The writer stops only when the socket is gone, and then there
/// is nobody left to tell, so a closed queue is not an error.
fn post(out: &mpsc::UnboundedSender<Out>, msg: Out) {
    let _socket_gone = out.send(msg);
}

/// A `crewgate.bearer.<token>` subprotocol entry, if the handshake offers one.
fn protocol_token(headers: &HeaderMap) -> Option<SecretString> {
    headers.get_all(SEC_WEBSOCKET_PROTOCOL).iter().filter_map(|v| v.to_str().ok()).find_map(|text| {
        text.split(',')
            .map(str::trim)
            .find_map(|p| p.strip_prefix(TOKEN_PROTOCOL_PREFIX))
            .map(|t| SecretString::from(t.to_owned()))
    })
}

/// A browser handshake must come from the gateway's own origin before its cookie is trusted
/// (cross-site WebSocket hijacking); clients that send no `Origin` are not browsers.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest).trim_end_matches('/');
    headers.get(HOST).and_then(|v| v.to_str().ok()).is_some_and(|host| host.eq_ignore_ascii_case(authority))
}

/// How a connection authenticated, kept to re-check it while the connection lives. Never logged.
enum Credential {
    /// `Authorization` and/or `Cookie` of the handshake, re-checked by the [`Auth`] extractor.
    Headers(HeaderMap),
    /// A token from the subprotocol or the first message.
    Token(SecretString),
}

impl Credential {
    async fn check(&self, state: &AppState) -> Result<Principal, ApiError> {
        match self {
            Credential::Token(t) => auth::resolve(state, t).await,
            Credential::Headers(h) => {
                let mut req = Request::get("/api/v1/ws");
                for (k, v) in h {
                    req = req.header(k, v);
                }
                let (mut parts, ()) = req
                    .body(())
                    .map_err(|e| ApiError::BadRequest(format!("invalid handshake headers: {e}")))?
                    .into_parts();
                Ok(Auth::from_request_parts(&mut parts, state).await?.0)
            }
        }
    }
}

pub(crate) async fn handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // Credentials first: a bad token is a 401 before any upgrade.
    let cookie = auth::session_cookie(&headers).is_some();
    let credential = if headers.contains_key(AUTHORIZATION) || cookie {
        if cookie && !headers.contains_key(AUTHORIZATION) && !same_origin(&headers) {
            return ApiError::Forbidden(
                "the dashboard session cookie is only accepted from the gateway's own origin",
            )
            .into_response();
        }
        let mut kept = HeaderMap::new();
        for name in [AUTHORIZATION, COOKIE] {
            for v in headers.get_all(&name) {
                kept.append(name.clone(), v.clone());
            }
        }
        Some(Credential::Headers(kept))
    } else {
        protocol_token(&headers).map(Credential::Token)
    };
    let auth = match credential {
        Some(c) => match c.check(&state).await {
            Ok(p) => Some((p, c)),
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => {
            return ApiError::BadRequest(format!(
                "/api/v1/ws is a WebSocket endpoint; connect with a WebSocket client ({rejection})"
            ))
            .into_response();
        }
    };
    upgrade
        .protocols([PROTOCOL])
        .max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| connection(state, socket, auth))
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMsg {
    Auth {
        token: SecretString,
    },
    Send {
        content: String,
        #[serde(default)]
        session: Option<String>,
        #[serde(default)]
        agent: Option<String>,
        #[serde(default)]
        request_id: Option<Value>,
    },
    Subscribe {
        session: String,
        #[serde(default)]
        agent: Option<String>,
        #[serde(default)]
        request_id: Option<Value>,
    },
    Unsubscribe {
        session: String,
        #[serde(default)]
        request_id: Option<Value>,
    },
    Ping {
        #[serde(default)]
        request_id: Option<Value>,
    },
    Decide {
        proposal: String,
        decision: String,
        #[serde(default)]
        instructions: Option<String>,
        #[serde(default)]
        agent: Option<String>,
        #[serde(default)]
        request_id: Option<Value>,
    },
}

fn error_msg(code: &str, message: &str, request_id: Option<&Value>) -> Value {
    json!({"type": "error", "code": code, "message": message, "request_id": request_id})
}

fn runtime_error_msg(e: &RuntimeError, request_id: Option<&Value>) -> Value {
    error_msg(e.code(), &e.to_string(), request_id)
}

fn api_error_msg(e: &ApiError, request_id: Option<&Value>) -> Value {
    let code = match e {
        ApiError::NotFound(_) => "not_found",
        ApiError::BadRequest(_) => "bad_request",
        ApiError::Unauthorized(_) => "unauthorized",
        ApiError::Forbidden(_) => "forbidden",
        _ => "error",
    };
    error_msg(code, &e.to_string(), request_id)
}

/// Waits for `{"type":"auth","token":…}`.
async fn first_message_auth(
    state: &AppState,
    stream: &mut futures::stream::SplitStream<WebSocket>,
) -> Result<(Principal, Credential), String> {
    let first = tokio::time::timeout(AUTH_TIMEOUT, stream.next()).await.map_err(|_elapsed| {
        "no credentials within 10 s: send {\"type\":\"auth\",\"token\":\"…\"} first".to_owned()
    })?;
    let Some(Ok(Message::Text(text))) = first else {
        return Err("expected {\"type\":\"auth\",\"token\":\"…\"} as the first message".into());
    };
    match serde_json::from_str::<ClientMsg>(&text) {
        Ok(ClientMsg::Auth { token }) => {
            let credential = Credential::Token(token);
            match credential.check(state).await {
                Ok(p) => Ok((p, credential)),
                Err(e) => Err(e.to_string()),
            }
        }
        _ => Err("expected {\"type\":\"auth\",\"token\":\"…\"} as the first message".into()),
    }
}

async fn connection(state: AppState, socket: WebSocket, auth: Option<(Principal, Credential)>) {
    let (mut sink, mut stream) = socket.split();
    let (out, mut out_rx) = mpsc::unbounded_channel::<Out>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            let frame = match msg {
                Out::Json(v) => Message::Text(v.to_string().into()),
                Out::Ping => Message::Ping(axum::body::Bytes::new()),
                Out::Close(code, reason) => {
                    let frame = Message::Close(Some(CloseFrame { code, reason: reason.into() }));
                    if let Err(e) = sink.send(frame).await {
                        tracing::debug!(error = %e, "WebSocket closed before the close frame");
                    }
                    break;
                }
            };
            if sink.send(frame).await.is_err() {
                break;
            }
        }
    });

    let auth = match auth {
        Some(a) => Ok(a),
        None => first_message_auth(&state, &mut stream).await,
    };
    let (principal, credential) = match auth {
        Ok(a) => a,
        Err(why) => {
            post(&out, Out::Json(error_msg("unauthorized", &why, None)));
            post(&out, Out::Close(CLOSE_UNAUTHORIZED, "unauthorized"));
            drop(out);
            finish(writer).await;
            return;
        }
    };
    let ready = match &principal {
        Principal::Admin { .. } => json!({"type": "ready", "kind": "admin", "protocol": PROTOCOL}),
        Principal::User { agent_id, .. } => {
            json!({"type": "ready", "kind": "user", "agent": agent_id, "protocol": PROTOCOL})
        }
    };
    post(&out, Out::Json(ready));

    let mut conn = Conn {
        state,
        credential,
        principal,
        out: out.clone(),
        subscriptions: HashMap::new(),
        own_turns: Arc::new(Mutex::new(RecentSet::default())),
        in_flight: Arc::new(AtomicUsize::new(0)),
    };
    // An inbox hears about every proposal it decides, whichever session it is in: a member's of
    // their own agent, an admin's of the orchestrator (which has no owner).
    let inbox_agent = match &conn.principal {
        Principal::User { agent_id, .. } => Some(agent_id.clone()),
        Principal::Admin { .. } => crewgate_core::AgentId::parse(crate::bootstrap::ORCHESTRATOR_ID).ok(),
    };
    if let Some(agent) = inbox_agent {
        match conn.state.runtime.subscribe_proposals(&agent).await {
            Ok(rx) => {
                let task = forward(rx, out.clone(), conn.own_turns.clone(), false, "*".into());
                conn.subscriptions.insert(AGENT_PROPOSALS.into(), task);
            }
            Err(e) => {
                tracing::debug!(agent = %agent, error = %e, "no proposal stream for a WebSocket client")
            }
        }
    }
    let mut recheck = tokio::time::interval(RECHECK_EVERY);
    recheck.tick().await;
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    if !conn.authorized().await {
                        break;
                    }
                    conn.handle(&text).await;
                }
                Some(Ok(Message::Binary(_))) => {
                    post(&out, Out::Json(error_msg("bad_request", "send JSON text frames", None)));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            },
            _ = recheck.tick() => {
                if !conn.authorized().await {
                    break;
                }
                post(&out, Out::Ping);
            }
        }
    }
    for (_, task) in conn.subscriptions.drain() {
        task.abort();
    }
    // Turns already running finish and are stored; their events go nowhere.
    drop(conn);
    drop(out);
    finish(writer).await;
}

fn event_json(ev: &TurnEvent) -> Option<Value> {
    serde_json::to_value(ev).map_err(|e| tracing::error!(error = %e, "a turn event does not serialise")).ok()
}

async fn finish(writer: tokio::task::JoinHandle<()>) {
    if let Err(e) = writer.await {
        tracing::warn!(error = %e, "WebSocket writer task failed");
    }
}

struct Conn {
    state: AppState,
    credential: Credential,
    principal: Principal,
    out: mpsc::UnboundedSender<Out>,
    subscriptions: HashMap<String, tokio::task::JoinHandle<()>>,
    /// Turns started on this connection: their events arrive through the turn's own channel, so
    /// the session subscription skips them.
    own_turns: Arc<Mutex<RecentSet>>,
    in_flight: Arc<AtomicUsize>,
}

impl Conn {
    fn send(&self, v: Value) {
        post(&self.out, Out::Json(v));
    }

    /// Re-checks the credential (revocation is immediate); closes the connection when it fails.
    async fn authorized(&mut self) -> bool {
        match self.credential.check(&self.state).await {
            Ok(p) => {
                self.principal = p;
                true
            }
            Err(e) => {
                self.send(error_msg("unauthorized", &e.to_string(), None));
                post(&self.out, Out::Close(CLOSE_UNAUTHORIZED, "unauthorized"));
                false
            }
        }
    }

    async fn handle(&mut self, text: &str) {
        let msg = match serde_json::from_str::<ClientMsg>(text) {
            Ok(m) => m,
            Err(e) => {
                let rid = serde_json::from_str::<Value>(text).ok().and_then(|v| v.get("request_id").cloned());
                self.send(error_msg(
                    "bad_request",
                    &format!("invalid message ({e}); expected {{\"type\": \"send\" | \"subscribe\" | \"unsubscribe\" | \"decide\" | \"ping\", …}}"),
                    rid.as_ref(),
                ));
                return;
            }
        };
        match msg {
            ClientMsg::Auth { .. } => self.send(error_msg("bad_request", "already authenticated", None)),
            ClientMsg::Ping { request_id } => self.send(json!({"type": "pong", "request_id": request_id})),
            ClientMsg::Send { content, session, agent, request_id } => {
                if let Err(e) = self.start_turn(content, session, agent, request_id.as_ref()).await {
                    self.send(e.with_request_id(request_id.as_ref()));
                }
            }
            ClientMsg::Subscribe { session, agent, request_id } => {
                match self.subscribe(&session, agent.as_deref()).await {
                    Ok(()) => {
                        self.send(json!({"type": "subscribed", "session": session, "request_id": request_id}))
                    }
                    Err(e) => self.send(e.with_request_id(request_id.as_ref())),
                }
            }
            ClientMsg::Decide { proposal, decision, instructions, agent, request_id } => {
                self.decide(proposal, &decision, instructions, agent.as_deref(), request_id);
            }
            ClientMsg::Unsubscribe { session, request_id } => {
                if let Some(task) = self.subscriptions.remove(&session) {
                    task.abort();
                }
                self.send(json!({"type": "unsubscribed", "session": session, "request_id": request_id}));
            }
        }
    }

    async fn start_turn(
        &mut self,
        content: String,
        session: Option<String>,
        agent: Option<String>,
        request_id: Option<&Value>,
    ) -> Result<(), WsError> {
        if self.in_flight.load(Ordering::SeqCst) >= MAX_TURNS_IN_FLIGHT {
            return Err(WsError::Other(error_msg(
                "too_many_turns",
                &format!(
                    "{MAX_TURNS_IN_FLIGHT} turns are already running on this connection; wait for one to finish"
                ),
                None,
            )));
        }
        let agent = target_agent(&self.principal, agent.as_deref())?;
        let agent = live_agent(&self.state, &agent).await?;
        let session = match session {
            Some(id) => self
                .state
                .store
                .get_session(&agent.id, &id)
                .await
                .map_err(ApiError::from)?
                .ok_or_else(|| ApiError::not_found("session"))?,
            None => {
                let s = self.state.runtime.create_session(&agent.id, None).await?;
                self.send(json!({"type": "session", "session": s, "request_id": request_id}));
                s
            }
        };
        let turn = uuid::Uuid::now_v7().simple().to_string();
        self.own_turns.lock().unwrap_or_else(PoisonError::into_inner).insert(turn.clone());
        self.send(json!({"type": "accepted", "session": session.id, "turn": turn, "request_id": request_id}));
        let (tx, mut rx) = mpsc::unbounded_channel::<TurnEvent>();
        let mut req = TurnRequest::new(agent.id.clone(), session.id.clone(), content)
            .from_sender(crewgate_runtime::Sender::new(self.principal.clone(), "ws"))
            .with_loaded(agent, session);
        req.turn_id = Some(turn);
        req.events = Some(tx);
        let runtime = self.state.runtime.clone();
        let out = self.out.clone();
        let in_flight = self.in_flight.clone();
        in_flight.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let forward = async {
                while let Some(ev) = rx.recv().await {
                    if let Some(v) = event_json(&ev) {
                        post(&out, Out::Json(v));
                    }
                }
            };
            // The outcome also arrives as the terminal event.
            let (_outcome, ()) = tokio::join!(runtime.run_turn(req), forward);
            in_flight.fetch_sub(1, Ordering::SeqCst);
        });
        Ok(())
    }

    /// A decision on a proposal; answered from its own task (an approval waits for the write,
    /// an edit for the agent's revision) so the connection keeps serving.
    fn decide(
        &self,
        proposal: String,
        decision: &str,
        instructions: Option<String>,
        agent: Option<&str>,
        request_id: Option<Value>,
    ) {
        let agent = match target_agent(&self.principal, agent) {
            Ok(a) => a,
            Err(e) => return self.send(api_error_msg(&e, request_id.as_ref())),
        };
        let request = match (decision, instructions.filter(|i| !i.trim().is_empty())) {
            ("approve", _) => DecisionRequest::Approve,
            ("reject", _) => DecisionRequest::Reject,
            ("edit", Some(instructions)) => DecisionRequest::Edit { instructions },
            ("edit", None) => {
                return self.send(error_msg(
                    "bad_request",
                    "an edit needs \"instructions\": what to change",
                    request_id.as_ref(),
                ));
            }
            _ => {
                return self.send(error_msg(
                    "bad_request",
                    "decision must be \"approve\", \"reject\" or \"edit\"",
                    request_id.as_ref(),
                ));
            }
        };
        let runtime = self.state.runtime.clone();
        let principal = self.principal.clone();
        let out = self.out.clone();
        tokio::spawn(async move {
            let msg = match runtime.decide(&principal, &agent, &proposal, request, "ws").await {
                Ok(p) => json!({"type": "decided", "proposal": p, "request_id": request_id}),
                Err(e) => error_msg(e.code(), &e.to_string(), request_id.as_ref()),
            };
            post(&out, Out::Json(msg));
        });
    }

    async fn subscribe(&mut self, session: &str, agent: Option<&str>) -> Result<(), WsError> {
        let agent = target_agent(&self.principal, agent)?;
        let rx = self.state.runtime.subscribe(&agent, session).await?;
        if self.subscriptions.get(session).is_some_and(|t| !t.is_finished()) {
            return Ok(());
        }
        // Proposals of the inbox agent come from the agent-wide stream; not twice.
        let skip_proposals = match &self.principal {
            Principal::User { .. } => true,
            Principal::Admin { .. } => agent.as_str() == crate::bootstrap::ORCHESTRATOR_ID,
        };
        let task = forward(rx, self.out.clone(), self.own_turns.clone(), skip_proposals, session.to_owned());
        self.subscriptions.insert(session.to_owned(), task);
        Ok(())
    }
}

/// Key of the agent-wide proposal stream in [`Conn::subscriptions`] (not a session id).
const AGENT_PROPOSALS: &str = "*proposals";

/// Forwards bus events to the client, leaving out the events of its own turns (their stream
/// already carried them) and, when asked, proposal events.
fn forward(
    mut rx: broadcast::Receiver<TurnEvent>,
    out: mpsc::UnboundedSender<Out>,
    own: Arc<Mutex<RecentSet>>,
    skip_proposals: bool,
    session_id: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    if skip_proposals && matches!(ev, TurnEvent::Proposal { .. }) {
                        continue;
                    }
                    if own.lock().unwrap_or_else(PoisonError::into_inner).contains(ev.turn()) {
                        continue;
                    }
                    if let Some(v) = event_json(&ev) {
                        post(&out, Out::Json(v));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    post(
                        &out,
                        Out::Json(json!({"type": "lagged", "session": session_id, "skipped": skipped})),
                    );
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    })
}

/// A set that forgets its oldest entries beyond [`OWN_TURNS_KEPT`].
#[derive(Default)]
struct RecentSet {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl RecentSet {
    fn insert(&mut self, id: String) {
        if self.set.insert(id.clone()) {
            self.order.push_back(id);
        }
        while self.order.len() > OWN_TURNS_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }
}

/// An error answered on the socket (the connection stays open).
enum WsError {
    Api(ApiError),
    Runtime(RuntimeError),
    Other(Value),
}

impl From<ApiError> for WsError {
    fn from(e: ApiError) -> Self {
        WsError::Api(e)
    }
}

impl From<RuntimeError> for WsError {
    fn from(e: RuntimeError) -> Self {
        WsError::Runtime(e)
    }
}

impl WsError {
    fn with_request_id(self, request_id: Option<&Value>) -> Value {
        match self {
            WsError::Api(e) => api_error_msg(&e, request_id),
            WsError::Runtime(e) => runtime_error_msg(&e, request_id),
            WsError::Other(mut v) => {
                v["request_id"] = request_id.cloned().unwrap_or(Value::Null);
                v
            }
        }
    }
}
