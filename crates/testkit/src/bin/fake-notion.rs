//! `fake-notion`: the fake Notion API (`crewgate_testkit::fake_notion`) as a process, for tests
//! written in other languages (the dashboard's browser tests in `e2e/`).
//!
//! ```text
//! fake-notion [--rate-limit PER_SECOND] [--page TITLE]…
//! ```
//!
//! Prints one JSON line on stdout, `{"baseUrl": "http://127.0.0.1:P/v1", "controlUrl":
//! "http://127.0.0.1:Q", "token": "ntn_…", "pages": {"TITLE": "id", …}}`, then serves until stdin
//! closes (the parent went away) or SIGTERM/SIGINT. `baseUrl` is what `integrations.notion.apiBase`
//! takes and `token` the integration key (`skills.installed.notion.config.apiKey`). Every
//! `--page TITLE` adds a top-level page shared with the integration (a parent for
//! `notion_create_page`). `--rate-limit` replaces Notion's 3 requests/s (burst = the rate).
//!
//! Control API (loopback only, its own port):
//! - `POST /pages` with `{"title": "…", "parent": "id"?, "share": true?}`: adds a page (shared
//!   unless `"share": false`); answers `{"id": "…"}`.
//! - `GET /state`: `{"writes": N, "rateLimited": N, "requests": [{"method", "path", "status"}],
//!   "created": [BODY, …], "appended": [{"path", "body"}, …]}` — `writes` counts successful page
//!   creates/updates and block appends; `created` and `appended` are the JSON bodies of the
//!   successful `POST /v1/pages` and `PATCH /v1/blocks/{id}/children` requests, in order.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use crewgate_testkit::fake_notion::FakeNotion;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;

use crewgate_testkit::process::{BoxError, serve_control};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPage {
    title: String,
    parent: Option<String>,
    share: Option<bool>,
}

async fn add_page(
    State(notion): State<Arc<FakeNotion>>,
    body: Result<Json<NewPage>, axum::extract::rejection::JsonRejection>,
) -> (StatusCode, Json<Value>) {
    let Json(p) = match body {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, Json(json!({"error": e.body_text()}))),
    };
    if let Some(parent) = &p.parent
        && notion.page(parent).is_none()
    {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": format!("no page {parent}")})));
    }
    let id = notion.add_page(p.parent.as_deref(), &p.title, Vec::new());
    if p.share.unwrap_or(true) {
        notion.share(&id);
    }
    (StatusCode::CREATED, Json(json!({"id": id})))
}

async fn state(State(notion): State<Arc<FakeNotion>>) -> Json<Value> {
    let requests = notion.requests();
    let body = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap_or(Value::Null);
    let ok = |s: u16| (200..300).contains(&s);
    let created: Vec<Value> = requests
        .iter()
        .filter(|r| r.method == "POST" && r.path.trim_end_matches('/').ends_with("/pages") && ok(r.status))
        .map(|r| body(&r.body))
        .collect();
    let appended: Vec<Value> = requests
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/blocks/") && ok(r.status))
        .map(|r| json!({"path": r.path, "body": body(&r.body)}))
        .collect();
    let list: Vec<Value> =
        requests.iter().map(|r| json!({"method": r.method, "path": r.path, "status": r.status})).collect();
    Json(json!({
        "writes": notion.writes(),
        "rateLimited": notion.rate_limited(),
        "requests": list,
        "created": created,
        "appended": appended,
    }))
}

struct Args {
    rate_limit: Option<f64>,
    pages: Vec<String>,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut args = Args { rate_limit: None, pages: Vec::new() };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--rate-limit" => {
                let v = value()?;
                let r: f64 = v.parse().map_err(|e| format!("--rate-limit {v:?}: {e}"))?;
                if !(r.is_finite() && r > 0.0) {
                    return Err(format!("--rate-limit {v:?}: must be a positive number").into());
                }
                args.rate_limit = Some(r);
            }
            "--page" => args.pages.push(value()?),
            "-h" | "--help" => {
                println!("usage: fake-notion [--rate-limit PER_SECOND] [--page TITLE]…");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (see --help)").into()),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let notion = Arc::new(FakeNotion::start().await);
    if let Some(r) = args.rate_limit {
        notion.set_rate_limit(r, r);
    }
    let mut pages = Map::new();
    for title in &args.pages {
        let id = notion.add_page(None, title, Vec::new());
        notion.share(&id);
        pages.insert(title.clone(), Value::String(id));
    }
    let app =
        Router::new().route("/pages", post(add_page)).route("/state", get(state)).with_state(notion.clone());
    let announce = json!({"baseUrl": notion.base_url(), "token": notion.token(), "pages": pages});
    serve_control(app, announce.as_object().cloned().unwrap_or_default()).await
}
