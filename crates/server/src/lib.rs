//! The HTTP face of crewgate: health/ready/metrics, the REST API under `/api/v1`, and (later) the
//! dashboard and WebSocket. Every API handler takes an auth extractor, so no handler runs for an
//! unauthenticated caller; scoping to the caller's own user and agent happens in the handler with
//! the typed [`crewgate_core::Principal`].

pub mod auth;
pub mod bootstrap;
mod chat_error;
pub mod error;
mod metrics;
pub mod onboarding;
pub mod ops;
mod routes;
pub mod ws;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use crewgate_runtime::Runtime;
use crewgate_store::Store;
use std::sync::Arc;
use std::time::Instant;

pub use error::ApiError;
pub use metrics::Metrics;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Everything handlers share. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub started: Instant,
    /// The agent runtime behind the chat surfaces.
    pub runtime: Arc<Runtime>,
    /// The S3 replicator, when backup is configured (SQLite only).
    pub backup: Option<crewgate_backup::ReplicatorHandle>,
    /// Invites, Google sign-in and worker creation.
    pub onboarding: Arc<onboarding::Onboarding>,
}

impl AppState {
    /// State with a runtime on default LLM settings (RedPill; chat fails with a clear message
    /// until an API key is configured). The gateway uses [`AppState::with_runtime`].
    pub fn new(store: Arc<dyn Store>) -> Self {
        let runtime = Arc::new(Runtime::with_defaults(store.clone()));
        Self::with_runtime(store, runtime)
    }

    pub fn with_runtime(store: Arc<dyn Store>, runtime: Arc<Runtime>) -> Self {
        Self {
            store,
            metrics: Arc::new(Metrics::default()),
            started: Instant::now(),
            runtime,
            backup: None,
            onboarding: Arc::new(onboarding::Onboarding::default()),
        }
    }

    /// Onboarding settings (public URL, Google client, domains, mailer).
    pub fn with_onboarding(mut self, onboarding: Arc<onboarding::Onboarding>) -> Self {
        self.onboarding = onboarding;
        self
    }

    /// Exposes the replicator's status at `/api/v1/backup/status` and in `/metrics`.
    pub fn with_backup(mut self, backup: Option<crewgate_backup::ReplicatorHandle>) -> Self {
        self.backup = backup;
        self
    }
}

/// The complete application router.
pub fn router(state: AppState) -> Router {
    routes::router()
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::count_requests))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer::new([
            axum::http::header::AUTHORIZATION,
            axum::http::header::COOKIE,
            // Browsers send the WebSocket token as a subprotocol (see `ws`).
            axum::http::header::SEC_WEBSOCKET_PROTOCOL,
        ]))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Chat streams (SSE, WebSocket) are many small writes: without TCP_NODELAY, Nagle's
    // algorithm and delayed ACKs hold each one back by up to ~40 ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
