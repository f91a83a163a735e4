//! Chat-turn benchmarks against the release binary with the testkit fake LLM on loopback:
//! gateway overhead per turn (end-to-end latency minus the fake model's own time), first turn
//! after start, memory after 50 agents × 1 turn, prompt size, and WebSocket clients held.

use crate::{Figure, MASTER_KEY_HEX, free_port, median, percentile, rss_kib};
use anyhow::{Context, Result, bail};
use crewgate_core::{IssuedToken, MasterKey, TokenKind};
use crewgate_server::ops::{self, Actor, CreateAgent};
use crewgate_store::SqliteStore;
use crewgate_testkit::fake_llm::{FakeLlm, Responder};
use futures::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const AGENTS: usize = 50;

struct Gateway {
    child: Child,
    base: String,
    started: Instant,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn run(bin: &Path, ws_clients: usize, figures: &mut Vec<Figure>) -> Result<()> {
    let llm = FakeLlm::builder()
        .api_key("sk-bench")
        .chunk_delay(Duration::ZERO)
        .default_responder(Responder::Echo)
        .start()
        .await;
    let dir = tempfile::tempdir()?;
    let tokens = prepare(dir.path()).await?;
    let config = dir.path().join("crewgate.jsonc");
    std::fs::write(
        &config,
        format!(
            r#"{{ "llm": {{ "baseUrl": "{}", "apiKey": "sk-bench", "model": "bench-model" }} }}"#,
            llm.base_url()
        ),
    )?;
    let gw = start(bin, dir.path(), &config)?;
    let http = reqwest::Client::new();

    // First turn after start (includes creating the session).
    let t0 = Instant::now();
    let (session, _) = new_session(&http, &gw.base, &tokens[0]).await?;
    turn(&http, &gw.base, &tokens[0], &session, "hello there").await?;
    let first = t0.elapsed();
    let since_start = gw.started.elapsed();
    figures.push(Figure::new(
        "first turn after start",
        first.as_secs_f64() * 1000.0,
        "ms",
        Some("< 20 ms"),
        format!(
            "{:.0} ms after process spawn; includes session creation",
            since_start.as_secs_f64() * 1000.0
        ),
    ));

    let prompt_tokens = llm.chat_requests().last().map(estimate_prompt_tokens).unwrap_or(0);
    figures.push(Figure::new(
        "prompt tokens, 2-word message",
        prompt_tokens as f64,
        "tok",
        Some("< 2000"),
        "chars/4 of messages + tool definitions the gateway sent".into(),
    ));

    // Warm turns in one session.
    let same = overheads(&http, &gw.base, &llm, 200, |_| (tokens[0].clone(), session.clone())).await?;
    push_overhead(figures, "warm turn overhead, same session", same);

    // A new session per turn.
    let mut sessions = Vec::new();
    for _ in 0..100 {
        sessions.push(new_session(&http, &gw.base, &tokens[1]).await?.0);
    }
    let fresh = overheads(&http, &gw.base, &llm, 100, |i| (tokens[1].clone(), sessions[i].clone())).await?;
    push_overhead(figures, "warm turn overhead, new session", fresh);

    // Alternating between 50 agents.
    let mut per_agent = Vec::new();
    for t in &tokens {
        per_agent.push((t.clone(), new_session(&http, &gw.base, t).await?.0));
    }
    let alternating = overheads(&http, &gw.base, &llm, 200, |i| per_agent[i % AGENTS].clone()).await?;
    push_overhead(figures, "warm turn overhead, switching 50 agents", alternating);
    tokio::time::sleep(Duration::from_millis(300)).await;
    figures.push(Figure::new(
        "RSS after 50 agents × turns",
        rss_kib(gw.child.id())? as f64 / 1024.0,
        "MiB",
        Some("< 80 MiB"),
        "after every agent had at least one turn".into(),
    ));

    if ws_clients > 0 {
        websockets(&gw.base, &tokens, ws_clients, figures).await?;
    }
    Ok(())
}

async fn prepare(dir: &Path) -> Result<Vec<String>> {
    let key = MasterKey::from_hex(&SecretString::from(MASTER_KEY_HEX))?;
    let store = SqliteStore::open(&dir.join("crewgate.db"), &key).await?;
    let mut tokens = Vec::new();
    for i in 0..AGENTS {
        let agent = ops::create_agent(
            &store,
            &Actor::System,
            CreateAgent { owner_email: Some(format!("worker{i}@bench.example")), ..Default::default() },
        )
        .await?;
        let t = IssuedToken::generate(TokenKind::User);
        ops::register_token(&store, &Actor::System, &t, Some(agent.id.as_str()), None).await?;
        tokens.push(t.secret.expose_secret().to_owned());
    }
    let admin = IssuedToken::generate(TokenKind::Admin);
    ops::register_token(&store, &Actor::System, &admin, None, None).await?;
    Ok(tokens)
}

fn start(bin: &Path, dir: &Path, config: &Path) -> Result<Gateway> {
    let port = free_port()?;
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(["gateway", "--bind", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .arg("--config")
        .arg(config)
        .env("MASTER_KEY", MASTER_KEY_HEX)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning crewgate")?;
    let out = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(out).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("listening on ") => break,
            Some(Ok(_)) => {}
            _ => bail!("gateway exited before listening"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok(Gateway { child, base: format!("http://127.0.0.1:{port}"), started })
}

async fn new_session(http: &reqwest::Client, base: &str, token: &str) -> Result<(String, serde_json::Value)> {
    let resp = http.post(format!("{base}/api/v1/sessions")).bearer_auth(token).send().await?;
    if resp.status() != 201 {
        bail!("creating a session answered {}", resp.status());
    }
    let v: serde_json::Value = resp.json().await?;
    Ok((v["id"].as_str().context("session id")?.to_owned(), v))
}

async fn turn(http: &reqwest::Client, base: &str, token: &str, session: &str, text: &str) -> Result<()> {
    let resp = http
        .post(format!("{base}/api/v1/sessions/{session}/messages"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "content": text }))
        .send()
        .await?;
    if resp.status() != 200 {
        bail!("turn answered {}: {}", resp.status(), resp.text().await.unwrap_or_default());
    }
    let _ = resp.bytes().await?;
    Ok(())
}

/// Runs `n` turns; each figure is the end-to-end latency minus what the fake model spent.
async fn overheads(
    http: &reqwest::Client,
    base: &str,
    llm: &FakeLlm,
    n: usize,
    pick: impl Fn(usize) -> (String, String),
) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (token, session) = pick(i);
        // Only the new requests are copied: cloning every recorded request each turn is O(n²)
        // work in the process that hosts the fake model and would perturb the measurement.
        let before = llm.request_count();
        let t0 = Instant::now();
        turn(http, base, &token, &session, "ping two").await?;
        let total = t0.elapsed();
        let reqs = llm.requests_since(before);
        let model: Duration = reqs.iter().map(|r| r.processing_time + r.simulated_delay).sum();
        if std::env::var_os("CREWGATE_BENCH_TRACE").is_some()
            && let Some(first) = reqs.first()
        {
            eprintln!(
                "turn {i}: to model {:.2} ms, model {:.2} ms, total {:.2} ms",
                first.received_at.saturating_duration_since(t0).as_secs_f64() * 1000.0,
                model.as_secs_f64() * 1000.0,
                total.as_secs_f64() * 1000.0
            );
        }
        out.push(total.saturating_sub(model).as_secs_f64() * 1000.0);
    }
    Ok(out)
}

fn push_overhead(figures: &mut Vec<Figure>, name: &str, mut v: Vec<f64>) {
    let p99 = percentile(&mut v, 0.99);
    figures.push(Figure::new(
        name,
        median(&mut v),
        "ms",
        Some("p50 < 2 ms"),
        format!("p99 {p99:.2} ms over {} turns", v.len()),
    ));
}

fn estimate_prompt_tokens(r: &crewgate_testkit::fake_llm::RecordedRequest) -> usize {
    let messages = r.body.get("messages").map(|m| m.to_string().len()).unwrap_or(0);
    let tools = r.body.get("tools").map(|t| t.to_string().len()).unwrap_or(0);
    (messages + tools) / 4
}

/// Opens `n` authenticated WebSocket clients, holds them, then measures ping→pong latency over a
/// sample of them while all stay connected.
async fn websockets(base: &str, tokens: &[String], n: usize, figures: &mut Vec<Figure>) -> Result<()> {
    let url = base.replacen("http://", "ws://", 1) + "/api/v1/ws";
    let mut clients = Vec::with_capacity(n);
    let t0 = Instant::now();
    for i in 0..n {
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url.as_str())?;
        let bearer = format!("Bearer {}", tokens[i % tokens.len()]);
        req.headers_mut().insert("authorization", bearer.parse()?);
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => clients.push(ws),
            Err(e) => {
                eprintln!("bench: WebSocket client {i} failed: {e}; stopping at {} clients", clients.len());
                break;
            }
        }
        if t0.elapsed() > Duration::from_secs(120) {
            eprintln!("bench: stopping WebSocket ramp-up after 120 s at {} clients", clients.len());
            break;
        }
    }
    let held = clients.len();
    let mut lat = Vec::new();
    let step = (held / 500).max(1);
    for ws in clients.iter_mut().step_by(step) {
        let t = Instant::now();
        ws.send(tokio_tungstenite::tungstenite::Message::text(r#"{"type":"ping"}"#)).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) if t.contains("pong") => break,
                Ok(Some(Ok(_))) => continue,
                _ => bail!("no pong within 5 s"),
            }
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let p99 = percentile(&mut lat, 0.99);
    figures.push(Figure::new(
        "WebSocket clients held",
        held as f64,
        "conn",
        Some("10000"),
        format!(
            "ping→pong p50 {:.2} ms, p99 {p99:.2} ms over {} sampled clients",
            median(&mut lat),
            lat.len()
        ),
    ));
    Ok(())
}
