//! Prometheus text metrics without a metrics framework: a few atomics are all we need so far.

use crate::AppState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    /// Responses by status class: 1xx..5xx.
    responses: [AtomicU64; 5],
    unauthorized: AtomicU64,
}

impl Metrics {
    fn record(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
        if status == 401 {
            self.unauthorized.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn render(&self, uptime_secs: f64, agents: Option<i64>, store_up: bool) -> String {
        let mut out = String::with_capacity(1024);
        out.push_str("# HELP crewgate_build_info Build information.\n# TYPE crewgate_build_info gauge\n");
        out.push_str(&format!("crewgate_build_info{{version=\"{}\"}} 1\n", env!("CARGO_PKG_VERSION")));
        out.push_str("# HELP crewgate_uptime_seconds Seconds since the gateway started.\n# TYPE crewgate_uptime_seconds gauge\n");
        out.push_str(&format!("crewgate_uptime_seconds {uptime_secs:.3}\n"));
        out.push_str("# HELP crewgate_store_up Whether the store answered the last ping.\n# TYPE crewgate_store_up gauge\n");
        out.push_str(&format!("crewgate_store_up {}\n", u8::from(store_up)));
        if let Some(n) = agents {
            out.push_str("# HELP crewgate_agents Agents in the store.\n# TYPE crewgate_agents gauge\n");
            out.push_str(&format!("crewgate_agents {n}\n"));
        }
        out.push_str("# HELP crewgate_http_responses_total HTTP responses by status class.\n# TYPE crewgate_http_responses_total counter\n");
        for (i, c) in self.responses.iter().enumerate() {
            out.push_str(&format!(
                "crewgate_http_responses_total{{class=\"{}xx\"}} {}\n",
                i + 1,
                c.load(Ordering::Relaxed)
            ));
        }
        out.push_str("# HELP crewgate_http_unauthorized_total Requests refused with 401.\n# TYPE crewgate_http_unauthorized_total counter\n");
        out.push_str(&format!(
            "crewgate_http_unauthorized_total {}\n",
            self.unauthorized.load(Ordering::Relaxed)
        ));
        out
    }
}

pub(crate) async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    state.metrics.record(resp.status().as_u16());
    resp
}

/// Backup gauges: replication lag, time of the last upload, consecutive failures.
pub(crate) fn render_backup(s: &crewgate_backup::BackupStatus) -> String {
    let mut out = String::new();
    out.push_str("# HELP crewgate_backup_lag_seconds Age of the oldest change not yet in S3.\n# TYPE crewgate_backup_lag_seconds gauge\n");
    out.push_str(&format!("crewgate_backup_lag_seconds {:.3}\n", s.lag.as_secs_f64()));
    out.push_str("# HELP crewgate_backup_last_success_timestamp_seconds Unix time of the last successful upload.\n# TYPE crewgate_backup_last_success_timestamp_seconds gauge\n");
    out.push_str(&format!(
        "crewgate_backup_last_success_timestamp_seconds {:.3}\n",
        s.last_success_at.map(|ms| ms as f64 / 1000.0).unwrap_or(0.0)
    ));
    out.push_str("# HELP crewgate_backup_consecutive_failures Uploads that failed in a row.\n# TYPE crewgate_backup_consecutive_failures gauge\n");
    out.push_str(&format!("crewgate_backup_consecutive_failures {}\n", s.consecutive_failures));
    out
}
