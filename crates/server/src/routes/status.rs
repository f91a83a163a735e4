//! `GET /api/v1/status` (admin only): what the dashboard's system page shows — version, uptime,
//! store, counts and LLM provider reachability — as one small JSON document. Backup health has
//! its own route, `/api/v1/backup/status`.

use crate::AppState;
use crate::auth::AdminAuth;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Longest the status page waits for the LLM provider's model list.
const LLM_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// `scheme://host[:port]` of a URL, without any user info, path or query.
fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if scheme.is_empty() { host.to_owned() } else { format!("{scheme}://{host}") }
}

async fn llm_status(state: &AppState) -> Value {
    let settings = state.runtime.settings();
    let provider = origin(&settings.llm.base_url);
    let model = settings.default_model.clone();
    let client = match state.runtime.llm() {
        Ok(c) => c,
        Err(e) => {
            return json!({"provider": provider, "model": model, "configured": false, "reachable": false,
                          "error": e.to_string()});
        }
    };
    let started = Instant::now();
    let (reachable, error) = match tokio::time::timeout(LLM_PROBE_TIMEOUT, client.list_models()).await {
        Ok(Ok(_models)) => (true, None),
        Ok(Err(e)) => (false, Some(e.to_string())),
        Err(_elapsed) => (false, Some(format!("no answer within {} s", LLM_PROBE_TIMEOUT.as_secs()))),
    };
    let latency = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    json!({"provider": provider, "model": model, "configured": true, "reachable": reachable,
           "latencyMs": latency, "error": error})
}

pub(crate) async fn status(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
) -> Result<Json<Value>, ApiError> {
    let store = match state.store.ping().await {
        Ok(()) => json!({"backend": state.store.backend(), "ok": true}),
        Err(e) => {
            tracing::warn!(error = %e, "status page: store unreachable");
            json!({"backend": state.store.backend(), "ok": false, "error": "store unreachable"})
        }
    };
    let agents = state.store.count_agents().await.ok();
    let users = state.store.list_users().await.ok().map(|u| u.len());
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSecs": state.started.elapsed().as_secs(),
        "store": store,
        "counts": {"agents": agents, "users": users},
        "llm": llm_status(&state).await,
    })))
}

#[cfg(test)]
mod tests {
    use super::origin;

    #[test]
    fn origin_drops_credentials_and_path() {
        assert_eq!(origin("https://api.redpill.ai/v1"), "https://api.redpill.ai");
        assert_eq!(origin("http://user:pw@127.0.0.1:8080/v1?x=1"), "http://127.0.0.1:8080");
        assert_eq!(origin("localhost:1/v1"), "localhost:1");
    }
}
