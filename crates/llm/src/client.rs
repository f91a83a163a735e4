//! [`LlmClient`]: requests, retries, timeouts and the streaming state machine.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, Stream, StreamExt};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::time::Instant;

use crate::error::{LlmError, ProviderError};
use crate::events::{ChunkDecoder, StreamAccumulator, StreamEvent, events_of_response};
use crate::retry::{backoff_cap, is_retryable_status, parse_retry_after, retry_delay};
use crate::sse::SseDecoder;
use crate::types::{ChatRequest, ChatResponse, ModelInfo, StreamOptions};

/// RedPill's general OpenAI-compatible endpoint.
pub const DEFAULT_BASE_URL: &str = "https://api.redpill.ai/v1";

/// Connection, timeout and retry settings of an [`LlmClient`].
#[derive(Debug, Clone)]
pub struct LlmSettings {
    /// Base URL ending in the API version, e.g. `https://api.redpill.ai/v1`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …`; never logged.
    pub api_key: Option<SecretString>,
    /// Limit for one whole attempt: connect, response, and the complete body or stream.
    pub timeout: Duration,
    /// Limit for establishing a TCP/TLS connection.
    pub connect_timeout: Duration,
    /// Longest silence allowed between two pieces of a stream.
    pub stall_timeout: Duration,
    /// Retries after the first attempt (so at most `max_retries + 1` attempts).
    pub max_retries: u32,
    /// Backoff before the first retry (doubled each time, fully jittered).
    pub retry_base_delay: Duration,
    /// Upper bound of any wait, including a server's `Retry-After`.
    pub retry_max_delay: Duration,
}

impl Default for LlmSettings {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: None,
            timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(60),
            max_retries: 3,
            retry_base_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(30),
        }
    }
}

impl LlmSettings {
    /// Default timeouts and retries for this base URL and key.
    pub fn new(base_url: impl Into<String>, api_key: Option<SecretString>) -> Self {
        Self { base_url: base_url.into(), api_key, ..Self::default() }
    }
}

/// An OpenAI-compatible chat-completions client. Cheap to clone (shared connection pool).
#[derive(Clone)]
pub struct LlmClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: String,
    chat_url: Url,
    models_url: Url,
    settings: LlmSettings,
}

impl fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmClient")
            .field("base_url", &self.inner.base_url)
            .field("has_api_key", &self.inner.settings.api_key.is_some())
            .finish_non_exhaustive()
    }
}

/// One HTTP request, replayable for retries.
#[derive(Clone)]
struct Spec {
    method: Method,
    url: Url,
    body: Option<Bytes>,
    stream: bool,
}

/// Why one attempt failed.
enum Failure {
    Status {
        status: u16,
        provider: Option<ProviderError>,
        retry_after: Option<Duration>,
    },
    Connect(reqwest::Error),
    /// The connection broke before a response head arrived (reset, closed mid-request).
    Broken(reqwest::Error),
    Fatal(LlmError),
}

impl Failure {
    fn retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => is_retryable_status(*status),
            Self::Connect(_) | Self::Broken(_) => true,
            Self::Fatal(_) => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn into_error(self, attempts: u32, url: &Url, next_wait: Duration) -> LlmError {
        match self {
            Self::Status { status, provider, retry_after } => match status {
                401 => LlmError::Unauthorized { provider },
                403 => LlmError::Forbidden { provider },
                429 => LlmError::RateLimited {
                    attempts,
                    retry_after: retry_after.unwrap_or(next_wait),
                    provider,
                },
                500..=599 => LlmError::Server { status, attempts, provider },
                _ => LlmError::Rejected { status, provider },
            },
            Self::Connect(source) => LlmError::Connect { url: url.to_string(), attempts, source },
            Self::Broken(source) => LlmError::Transport { source },
            Self::Fatal(e) => e,
        }
    }
}

impl LlmClient {
    /// Builds a client. Fails on an unusable base URL or API key (the key is not echoed).
    pub fn new(settings: LlmSettings) -> Result<Self, LlmError> {
        let base_url = settings.base_url.trim().trim_end_matches('/').to_owned();
        let parsed = Url::parse(&base_url).map_err(|e| LlmError::Config {
            message: format!("base URL {base_url:?} is not a URL"),
            source: Some(Box::new(e)),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(LlmError::Config {
                message: format!("base URL {base_url:?} must start with https:// or http://"),
                source: None,
            });
        }
        let join = |path: &str| {
            Url::parse(&format!("{base_url}/{path}")).map_err(|e| LlmError::Config {
                message: format!("cannot append /{path} to base URL {base_url:?}"),
                source: Some(Box::new(e)),
            })
        };
        let chat_url = join("chat/completions")?;
        let models_url = join("models")?;
        if let Some(key) = &settings.api_key {
            bearer(key)?;
        }
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .user_agent(concat!("crewgate-llm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::Config {
                message: "the HTTP client could not be created".into(),
                source: Some(Box::new(e)),
            })?;
        Ok(Self { inner: Arc::new(Inner { http, base_url, chat_url, models_url, settings }) })
    }

    /// The base URL without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The settings this client was built with.
    pub fn settings(&self) -> &LlmSettings {
        &self.inner.settings
    }

    /// A non-streaming completion (`stream` is forced off).
    pub async fn complete(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let mut body = req.clone();
        body.stream = false;
        body.stream_options = None;
        let spec = Spec {
            method: Method::POST,
            url: self.inner.chat_url.clone(),
            body: Some(to_body(&body)?),
            stream: false,
        };
        tracing::debug!(model = %req.model, messages = req.messages.len(), tools = req.tools.len(), "LLM completion");
        let (resp, _attempts, _started) = self.send(&spec, 0).await?;
        let bytes = resp.bytes().await.map_err(|e| self.body_error(e))?;
        let out = parse_completion(&bytes)?;
        tracing::debug!(model = %req.model, usage = ?out.usage, finish_reason = ?out.finish_reason(), "LLM completion done");
        Ok(out)
    }

    /// A streaming completion (`stream` is forced on; `stream_options.include_usage` is requested
    /// unless the request sets `stream_options`). Connection failures and retryable statuses are
    /// retried before this returns; a broken connection is retried only while the stream has not
    /// yielded anything. Dropping the stream closes the connection.
    pub async fn stream(&self, req: &ChatRequest) -> Result<ChatStream, LlmError> {
        let mut body = req.clone();
        body.stream = true;
        if body.stream_options.is_none() {
            body.stream_options = Some(StreamOptions { include_usage: true });
        }
        let spec = Spec {
            method: Method::POST,
            url: self.inner.chat_url.clone(),
            body: Some(to_body(&body)?),
            stream: true,
        };
        tracing::debug!(model = %req.model, messages = req.messages.len(), tools = req.tools.len(), "LLM stream");
        let (resp, attempts, started) = self.send(&spec, 0).await?;
        let mut state = StreamState {
            client: self.clone(),
            spec,
            body: futures::stream::empty().boxed(),
            sse: SseDecoder::new(),
            decoder: ChunkDecoder::default(),
            pending: VecDeque::new(),
            failure: None,
            attempts,
            deadline: started + self.inner.settings.timeout,
            yielded: false,
            finished: false,
        };
        state.attach(resp).await;
        Ok(ChatStream { state: Some(Box::new(state)), in_flight: None })
    }

    /// Streams and accumulates the final assistant message, calling `on_delta` with each text
    /// delta as it arrives.
    pub async fn stream_collect(
        &self,
        req: &ChatRequest,
        mut on_delta: impl FnMut(&str),
    ) -> Result<ChatResponse, LlmError> {
        let mut stream = self.stream(req).await?;
        let mut acc = StreamAccumulator::new();
        while let Some(event) = stream.next().await {
            let event = event?;
            if let StreamEvent::TextDelta(t) = &event {
                on_delta(t);
            }
            acc.push(&event);
        }
        let id = stream.response_id().unwrap_or_default().to_owned();
        let model = stream.response_model().map_or_else(|| req.model.clone(), str::to_owned);
        let created = stream.created().unwrap_or_else(unix_now);
        Ok(acc.into_response(id, model, created))
    }

    /// `GET {base}/models`.
    pub async fn list_models(&self) -> Result<Vec<ModelInfo>, LlmError> {
        let spec =
            Spec { method: Method::GET, url: self.inner.models_url.clone(), body: None, stream: false };
        let (resp, _, _) = self.send(&spec, 0).await?;
        let bytes = resp.bytes().await.map_err(|e| self.body_error(e))?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| LlmError::InvalidResponse {
            detail: format!("the model list is not JSON: {}", excerpt_bytes(&bytes)),
            source: Some(Box::new(e)),
        })?;
        let list = match v {
            Value::Object(mut o) => o.remove("data").unwrap_or(Value::Null),
            other => other,
        };
        serde_json::from_value(list).map_err(|e| LlmError::InvalidResponse {
            detail: "the model list has no `data` array of models".into(),
            source: Some(Box::new(e)),
        })
    }

    fn body_error(&self, e: reqwest::Error) -> LlmError {
        if e.is_timeout() {
            LlmError::Timeout { after: self.inner.settings.timeout, source: Some(Box::new(e)) }
        } else {
            LlmError::Transport { source: e }
        }
    }

    /// Sends `spec` with retries. `prior_attempts` counts attempts already made (stream
    /// reconnects). Returns the response, the attempts made so far and when the last one began.
    async fn send(
        &self,
        spec: &Spec,
        prior_attempts: u32,
    ) -> Result<(reqwest::Response, u32, Instant), LlmError> {
        let s = &self.inner.settings;
        let mut attempts = prior_attempts;
        loop {
            attempts += 1;
            let started = Instant::now();
            let failure = match self.attempt(spec, started).await {
                Ok(resp) => return Ok((resp, attempts, started)),
                Err(f) => f,
            };
            let retry = attempts - 1;
            if !failure.retryable() || retry >= s.max_retries {
                let next_wait = backoff_cap(retry, s.retry_base_delay, s.retry_max_delay);
                return Err(failure.into_error(attempts, &spec.url, next_wait));
            }
            let delay = retry_delay(retry, failure.retry_after(), s.retry_base_delay, s.retry_max_delay);
            match &failure {
                Failure::Status { status, .. } => tracing::warn!(
                    url = %spec.url, attempt = attempts, status, delay_ms = delay.as_millis(),
                    "LLM request failed, retrying"
                ),
                Failure::Connect(e) | Failure::Broken(e) => tracing::warn!(
                    url = %spec.url, attempt = attempts, error = %e, delay_ms = delay.as_millis(),
                    "LLM connection failed, retrying"
                ),
                Failure::Fatal(_) => {}
            }
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&self, spec: &Spec, started: Instant) -> Result<reqwest::Response, Failure> {
        let s = &self.inner.settings;
        let mut rb = self
            .inner
            .http
            .request(spec.method.clone(), spec.url.clone())
            .header(ACCEPT, if spec.stream { "text/event-stream" } else { "application/json" });
        if let Some(key) = &s.api_key {
            rb = rb.header(AUTHORIZATION, bearer(key).map_err(Failure::Fatal)?);
        }
        if let Some(body) = &spec.body {
            rb = rb.header(CONTENT_TYPE, "application/json").body(body.clone());
        }
        let deadline = started + s.timeout;
        let sent = if spec.stream {
            // The body is a long-lived stream: bound only the wait for the response head here;
            // the stream enforces the rest of the deadline and the stall timeout.
            match tokio::time::timeout_at(deadline, rb.send()).await {
                Ok(r) => r,
                Err(elapsed) => {
                    return Err(Failure::Fatal(LlmError::Timeout {
                        after: s.timeout,
                        source: Some(Box::new(elapsed)),
                    }));
                }
            }
        } else {
            rb.timeout(s.timeout).send().await
        };
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Err(Failure::Connect(e)),
            Err(e) if e.is_timeout() => {
                return Err(Failure::Fatal(LlmError::Timeout {
                    after: s.timeout,
                    source: Some(Box::new(e)),
                }));
            }
            Err(e) if e.is_builder() => {
                return Err(Failure::Fatal(LlmError::Config {
                    message: "the HTTP request could not be built".into(),
                    source: Some(Box::new(e)),
                }));
            }
            Err(e) => return Err(Failure::Broken(e)),
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = parse_retry_after(resp.headers(), SystemTime::now());
        let body = match tokio::time::timeout_at(deadline, resp.bytes()).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, %status, "could not read the LLM error body");
                Bytes::new()
            }
            Err(elapsed) => {
                tracing::debug!(error = %elapsed, %status, "timed out reading the LLM error body");
                Bytes::new()
            }
        };
        Err(Failure::Status {
            status: status.as_u16(),
            provider: ProviderError::from_body(&body),
            retry_after,
        })
    }
}

fn bearer(key: &SecretString) -> Result<HeaderValue, LlmError> {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret().trim())).map_err(|e| {
        LlmError::Config {
            message: "the API key contains characters that cannot be sent in an HTTP header".into(),
            source: Some(Box::new(e)),
        }
    })?;
    v.set_sensitive(true);
    Ok(v)
}

fn to_body(req: &ChatRequest) -> Result<Bytes, LlmError> {
    serde_json::to_vec(req).map(Bytes::from).map_err(|e| LlmError::Config {
        message: "the request could not be serialized to JSON".into(),
        source: Some(Box::new(e)),
    })
}

fn excerpt_bytes(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let mut e: String = s.chars().take(200).collect();
    if s.chars().count() > 200 {
        e.push('…');
    }
    e
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Parses a `chat.completion` body (or an error object sent with status 200).
fn parse_completion(bytes: &[u8]) -> Result<ChatResponse, LlmError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| LlmError::InvalidResponse {
        detail: format!("the body is not JSON: {}", excerpt_bytes(bytes)),
        source: Some(Box::new(e)),
    })?;
    if v.get("error").is_some_and(|e| !e.is_null())
        && let Some(provider) = ProviderError::from_json(&v)
    {
        return Err(LlmError::Provider { provider });
    }
    let resp: ChatResponse = serde_json::from_value(v).map_err(|e| LlmError::InvalidResponse {
        detail: "the body does not have the chat.completion shape".into(),
        source: Some(Box::new(e)),
    })?;
    if resp.choices.is_empty() {
        return Err(LlmError::InvalidResponse {
            detail: "the completion has no choices".into(),
            source: None,
        });
    }
    Ok(resp)
}

/// The future computing the next item; it owns the state and hands it back.
type InFlight = BoxFuture<'static, (Option<Result<StreamEvent, LlmError>>, Box<StreamState>)>;

/// A streamed completion: yields [`StreamEvent`]s, ending with [`StreamEvent::Done`], or one error.
/// After the first error it yields nothing more. Dropping it closes the connection; nothing runs
/// in the background.
pub struct ChatStream {
    state: Option<Box<StreamState>>,
    in_flight: Option<InFlight>,
}

impl fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatStream").field("id", &self.response_id()).finish_non_exhaustive()
    }
}

impl ChatStream {
    /// The provider's completion id (`chatcmpl-…`), once a chunk carried it.
    pub fn response_id(&self) -> Option<&str> {
        self.state.as_ref().and_then(|s| s.decoder.id.as_deref())
    }

    /// The model the provider says answered, once a chunk carried it.
    pub fn response_model(&self) -> Option<&str> {
        self.state.as_ref().and_then(|s| s.decoder.model.as_deref())
    }

    /// `created` of the chunks, once seen.
    pub fn created(&self) -> Option<u64> {
        self.state.as_ref().and_then(|s| s.decoder.created)
    }
}

impl Stream for ChatStream {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.in_flight.is_none() {
            let Some(mut state) = this.state.take() else {
                return Poll::Ready(None);
            };
            this.in_flight = Some(
                async move {
                    let item = state.next_item().await;
                    (item, state)
                }
                .boxed(),
            );
        }
        let Some(fut) = this.in_flight.as_mut() else {
            return Poll::Ready(None);
        };
        match fut.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready((item, state)) => {
                this.in_flight = None;
                this.state = Some(state);
                Poll::Ready(item)
            }
        }
    }
}

/// The state of a [`ChatStream`] between two events.
struct StreamState {
    client: LlmClient,
    spec: Spec,
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    sse: SseDecoder,
    decoder: ChunkDecoder,
    pending: VecDeque<StreamEvent>,
    failure: Option<LlmError>,
    attempts: u32,
    deadline: Instant,
    yielded: bool,
    finished: bool,
}

impl StreamState {
    /// Starts reading `resp`: an SSE body, or a whole JSON completion from a server that ignored
    /// `stream: true`.
    async fn attach(&mut self, resp: reqwest::Response) {
        let is_json = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.trim_start().starts_with("application/json"));
        if !is_json {
            self.body = resp.bytes_stream().boxed();
            return;
        }
        tracing::debug!("streaming request answered with plain JSON; converting");
        self.finished = true;
        let bytes = match tokio::time::timeout_at(self.deadline, resp.bytes()).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                self.failure = Some(self.client.body_error(e));
                return;
            }
            Err(elapsed) => {
                self.failure = Some(LlmError::Timeout {
                    after: self.client.inner.settings.timeout,
                    source: Some(Box::new(elapsed)),
                });
                return;
            }
        };
        match parse_completion(&bytes) {
            Ok(r) => {
                self.decoder.id = Some(r.id.clone()).filter(|s| !s.is_empty());
                self.decoder.model = Some(r.model.clone()).filter(|s| !s.is_empty());
                self.decoder.created = Some(r.created).filter(|c| *c != 0);
                self.pending = events_of_response(&r);
            }
            Err(e) => self.failure = Some(e),
        }
    }

    async fn next_item(&mut self) -> Option<Result<StreamEvent, LlmError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.yielded = true;
                return Some(Ok(event));
            }
            if let Some(e) = self.failure.take() {
                self.close();
                return Some(Err(e));
            }
            if self.finished {
                return None;
            }
            let stall = self.client.inner.settings.stall_timeout;
            let timeout = self.client.inner.settings.timeout;
            let stall_at = Instant::now() + stall;
            let (wake, is_stall) =
                if stall_at < self.deadline { (stall_at, true) } else { (self.deadline, false) };
            match tokio::time::timeout_at(wake, self.body.next()).await {
                Err(elapsed) => {
                    let source = Some(Box::new(elapsed) as crate::error::BoxError);
                    self.failure = Some(if is_stall {
                        LlmError::Stalled { after: stall, source }
                    } else {
                        LlmError::Timeout { after: timeout, source }
                    });
                }
                Ok(Some(Ok(bytes))) => self.on_bytes(&bytes),
                Ok(Some(Err(e))) => self.on_body_error(e).await,
                Ok(None) => self.on_eof(),
            }
        }
    }

    /// Stops reading: drops the body, which closes the connection.
    fn close(&mut self) {
        self.finished = true;
        self.body = futures::stream::empty().boxed();
    }

    fn on_bytes(&mut self, bytes: &[u8]) {
        let mut events = Vec::new();
        let fed = self.sse.feed(bytes, &mut events);
        self.decode(&events);
        if let (None, Err(e)) = (&self.failure, fed) {
            self.failure = Some(LlmError::InvalidStream { detail: e.to_string(), source: Some(Box::new(e)) });
        }
        if self.decoder.is_done() {
            // The end of the chunked body usually arrives with `[DONE]`; reading it lets the
            // connection go back to the pool instead of being closed.
            match self.body.next().now_or_never() {
                Some(Some(Err(e))) => tracing::debug!(error = %e, "error after [DONE] ignored"),
                Some(Some(Ok(_))) => tracing::debug!("data after [DONE] ignored"),
                Some(None) | None => {}
            }
            self.close();
        }
    }

    fn decode(&mut self, events: &[crate::sse::SseEvent]) {
        for ev in events {
            if let Err(e) = self.decoder.on_event(ev, &mut self.pending) {
                self.failure = Some(e);
                return;
            }
        }
    }

    fn on_eof(&mut self) {
        let mut events = Vec::new();
        let fed = self.sse.finish(&mut events);
        self.decode(&events);
        if self.failure.is_none() {
            if let Err(e) = fed {
                self.failure =
                    Some(LlmError::InvalidStream { detail: e.to_string(), source: Some(Box::new(e)) });
            } else if let Err(e) = self.decoder.on_eof(&mut self.pending) {
                self.failure = Some(e);
            }
        }
        self.close();
    }

    async fn on_body_error(&mut self, e: reqwest::Error) {
        let s = self.client.inner.settings.clone();
        let untouched = !self.yielded && self.pending.is_empty();
        if !untouched || self.attempts > s.max_retries || e.is_timeout() {
            self.failure = Some(self.client.body_error(e));
            return;
        }
        // Nothing reached the caller yet, so asking again is invisible to them.
        let retry = self.attempts - 1;
        let delay = retry_delay(retry, None, s.retry_base_delay, s.retry_max_delay);
        tracing::warn!(
            url = %self.spec.url, attempt = self.attempts, error = %e, delay_ms = delay.as_millis(),
            "LLM stream broke before the first event, retrying"
        );
        tokio::time::sleep(delay).await;
        match self.client.send(&self.spec, self.attempts).await {
            Ok((resp, attempts, started)) => {
                self.attempts = attempts;
                self.deadline = started + s.timeout;
                self.sse = SseDecoder::new();
                self.decoder = ChunkDecoder::default();
                self.attach(resp).await;
            }
            Err(err) => self.failure = Some(err),
        }
    }
}
