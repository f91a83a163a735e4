//! `fake-llm`: the scriptable fake OpenAI-compatible server as a process, for tests written in
//! other languages (the dashboard's browser tests in `e2e/`).
//!
//! ```text
//! fake-llm [--api-key KEY] [--chunk-delay-ms N] [--script FILE]
//! ```
//!
//! Prints one JSON line on stdout, `{"baseUrl": "http://127.0.0.1:P/v1", "controlUrl":
//! "http://127.0.0.1:Q"}`, then serves until stdin closes (the parent went away) or SIGTERM/SIGINT.
//! Unscripted requests are answered `"echo: <last user message>"`.
//!
//! Control API (loopback only, its own port):
//! - `POST /push` with one entry or an array of entries
//!   `{"match": {"contains": "…"} | {"user": "…"} | null, "step": STEP}`: queue scripted answers.
//!   A matched entry answers the next request whose last user message contains the text (or whose
//!   `user` field equals it), once; unmatched entries answer requests in order.
//! - `GET /requests`: `{"count": N, "lastUserMessages": ["…", …], "pendingSteps": M}`.
//!
//! `STEP` is one of `{"text": "…"}`, `{"echo": true}`,
//! `{"toolCalls": [{"name": "…", "arguments": {…}}], "text": "…"?}`, `{"fail": 503, "message": "…"?}`,
//! each optionally with `"delayMs"` and `"chunkDelayMs"`. `--script FILE` pushes a JSON array of
//! entries at start.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use crewgate_testkit::fake_llm::{FakeLlm, Matcher, ScriptedCall, Step};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

use crewgate_testkit::process::{BoxError, serve_control};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    #[serde(default, rename = "match")]
    matcher: Option<MatchSpec>,
    step: StepSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchSpec {
    contains: Option<String>,
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StepSpec {
    text: Option<String>,
    #[serde(default)]
    echo: bool,
    tool_calls: Option<Vec<CallSpec>>,
    fail: Option<u16>,
    message: Option<String>,
    delay_ms: Option<u64>,
    chunk_delay_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallSpec {
    name: String,
    #[serde(default)]
    arguments: Value,
    id: Option<String>,
}

impl StepSpec {
    fn into_step(self) -> Result<Step, String> {
        let mut step = match (self.tool_calls, self.fail, self.echo, self.text.clone()) {
            (Some(calls), None, false, _) => {
                let calls = calls.into_iter().map(|c| {
                    let args = if c.arguments.is_null() { json!({}) } else { c.arguments };
                    let call = ScriptedCall::new(c.name, args);
                    match c.id {
                        Some(id) => call.with_id(id),
                        None => call,
                    }
                });
                let step = Step::tool_calls(calls);
                match self.text {
                    Some(t) => step.with_text(t),
                    None => step,
                }
            }
            (None, Some(status), false, None) => {
                let step = Step::fail(status);
                match self.message {
                    Some(m) => step.message(m),
                    None => step,
                }
            }
            (None, None, true, None) => Step::echo(),
            (None, None, false, Some(t)) => Step::text(t),
            _ => {
                return Err(
                    "a step is exactly one of {text}, {echo: true}, {toolCalls, text?}, {fail, message?}"
                        .to_owned(),
                );
            }
        };
        if let Some(ms) = self.delay_ms {
            step = step.delay(Duration::from_millis(ms));
        }
        if let Some(ms) = self.chunk_delay_ms {
            step = step.chunk_delay(Duration::from_millis(ms));
        }
        Ok(step)
    }
}

fn push_entries(llm: &FakeLlm, body: Value) -> Result<usize, String> {
    let entries: Vec<Entry> = match body {
        Value::Array(_) => serde_json::from_value(body),
        other => serde_json::from_value(other).map(|e| vec![e]),
    }
    .map_err(|e| format!("invalid script entry: {e}"))?;
    // Validate everything before queueing anything.
    let mut steps = Vec::with_capacity(entries.len());
    for e in entries {
        let matcher = match e.matcher {
            None => None,
            Some(MatchSpec { contains: Some(c), user: None }) => Some(Matcher::contains(c)),
            Some(MatchSpec { contains: None, user: Some(u) }) => Some(Matcher::user(u)),
            Some(_) => return Err("match is {\"contains\": …} or {\"user\": …}".to_owned()),
        };
        steps.push((matcher, e.step.into_step()?));
    }
    let n = steps.len();
    for (matcher, step) in steps {
        match matcher {
            Some(m) => llm.push_for(m, step),
            None => llm.push(step),
        }
    }
    Ok(n)
}

async fn push(State(llm): State<Arc<FakeLlm>>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    match push_entries(&llm, body) {
        Ok(n) => (StatusCode::OK, Json(json!({"queued": n}))),
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({"error": e}))),
    }
}

async fn requests(State(llm): State<Arc<FakeLlm>>) -> Json<Value> {
    let chat = llm.chat_requests();
    let last: Vec<String> = chat.iter().filter_map(|r| r.last_user_message()).collect();
    Json(json!({"count": chat.len(), "lastUserMessages": last, "pendingSteps": llm.pending_steps()}))
}

struct Args {
    api_key: Option<String>,
    chunk_delay: Duration,
    script: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut args = Args { api_key: None, chunk_delay: Duration::from_millis(12), script: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--api-key" => args.api_key = Some(value()?),
            "--chunk-delay-ms" => {
                let v = value()?;
                let ms: u64 = v.parse().map_err(|e| format!("--chunk-delay-ms {v:?}: {e}"))?;
                args.chunk_delay = Duration::from_millis(ms);
            }
            "--script" => args.script = Some(value()?.into()),
            "-h" | "--help" => {
                println!("usage: fake-llm [--api-key KEY] [--chunk-delay-ms N] [--script FILE]");
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
    let mut builder = FakeLlm::builder().chunk_delay(args.chunk_delay);
    if let Some(key) = args.api_key {
        builder = builder.api_key(key);
    }
    let llm = Arc::new(builder.try_start().await?);
    if let Some(path) = &args.script {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let body: Value =
            serde_json::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))?;
        push_entries(&llm, body).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let app =
        Router::new().route("/push", post(push)).route("/requests", get(requests)).with_state(llm.clone());
    let announce = json!({"baseUrl": llm.base_url()});
    serve_control(app, announce.as_object().cloned().unwrap_or_default()).await
}
