//! Exactly-once under `kill -9`: the real `crewgate` binary, a fake Gmail on loopback (behind a
//! proxy that delays each connection a random few milliseconds, so kills land in every phase),
//! and the owner's approval followed by SIGKILL at a random moment. After each restart the
//! proposal must end `done`, `failed` or `unknown` — never stuck, never sent twice, never
//! reported failed although it was sent — and the person is told when it did not complete.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crewgate_core::{IssuedToken, MasterKey, TokenKind};
use crewgate_runtime::tools::external::{StoredGoogleToken, connect_google};
use crewgate_store::{SqliteStore, Store};
use crewgate_testkit::fake_google::{self, FakeGoogle};
use crewgate_testkit::fake_llm::{FakeLlm, Responder, Step};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_crewgate");
const MASTER: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
const ALICE: &str = "alice@company.com";
const AGENT: &str = "alice-company-com";

struct Gateway {
    child: Child,
    base: String,
}

impl Gateway {
    fn start(data_dir: &Path, config: &Path) -> Gateway {
        let mut child = Command::new(BIN)
            .arg("gateway")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--config")
            .arg(config)
            .args(["--bind", "127.0.0.1:0"])
            .env("MASTER_KEY", MASTER)
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        // From here on, Drop kills and reaps the child whatever happens.
        let mut gw = Gateway { child, base: String::new() };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("no listening line");
            if let Some(rest) = line.strip_prefix("listening on ") {
                gw.base = rest.split_whitespace().next().unwrap().to_owned();
                return gw;
            }
        }
    }

    /// SIGKILL: no shutdown code runs.
    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn stop(mut self) {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    for _ in 0..1000 {
        if let Ok(r) = http.get(format!("{base}/ready")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{base}/ready never answered 200");
}

async fn call(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method.parse().unwrap(), url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A TCP proxy that holds each new connection for a random 0–`max_ms` before relaying it.
async fn delaying_proxy(upstream: String, max_ms: u64) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counter = Arc::new(AtomicU64::new(0x1234_5678));
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else { break };
            let upstream = upstream.clone();
            let n = counter.fetch_add(0x9E37_79B9, Ordering::Relaxed);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis((n >> 3) % (max_ms + 1))).await;
                if let Ok(mut out) =
                    tokio::net::TcpStream::connect(upstream.trim_start_matches("http://")).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_approval_and_done_never_loses_or_duplicates_a_write() {
    let runs: u64 = std::env::var("CREWGATE_CRASH_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    let started = Instant::now();
    let google = FakeGoogle::start().await;
    let account = google.add_account(ALICE);
    let proxy = delaying_proxy(google.base_url(), 12).await;
    let llm = FakeLlm::builder().api_key("sk-fake").chunk_delay(Duration::ZERO).start().await;
    llm.set_default(Responder::from_fn(|req| {
        let last_is_tool = req.messages().last().is_some_and(|m| m["role"] == "tool");
        match req.last_user_message() {
            Some(text) if !last_is_tool && text.starts_with("send mail ") => Step::tool_call(
                "gmail_send",
                json!({"to": ["ann@ext.com"], "subject": text.clone(), "body": "See you."}),
            ),
            _ => Step::text("Proposed; waiting for you."),
        }
    }));

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let user_token = IssuedToken::generate(TokenKind::User);
    let token = user_token.secret.expose_secret().to_owned();
    let config = dir.path().join("crewgate.jsonc");
    std::fs::write(
        &config,
        json!({
            "llm": {"baseUrl": llm.base_url(), "apiKey": "sk-fake", "model": "fake/model"},
            "gateway": {"auth": {"userTokens": {token.clone(): AGENT}}},
            "agents": {"list": [{"id": AGENT, "owner": ALICE}]},
            "skills": {"installed": {"steipete/gog": {"enabled": true, "config": {"clientId": fake_google::CLIENT_ID, "clientSecret": fake_google::CLIENT_SECRET}}}},
            "integrations": {"google": {"apiBase": proxy, "tokenUrl": google.token_url()}},
        })
        .to_string(),
    )
    .unwrap();

    // First start creates Alice and her agent; then her Google connection is stored (as the
    // OAuth flow would) while the gateway is down.
    Gateway::start(&data, &config).stop();
    {
        let key = MasterKey::from_hex(&SecretString::from(MASTER)).unwrap();
        let store = SqliteStore::open(&data.join("crewgate.db"), &key).await.unwrap();
        let user = store.find_user_by_email(ALICE).await.unwrap().unwrap();
        let t = StoredGoogleToken {
            access_token: Some(SecretString::from(account.access_token.clone())),
            expires_at: None,
            refresh_token: Some(SecretString::from(account.refresh_token.clone())),
            scopes: Some(account.scopes.clone()),
            email: Some(ALICE.into()),
        };
        connect_google(&store, &user.id, &t).await.unwrap();
    }

    let http = reqwest::Client::new();
    let mut gw = Gateway::start(&data, &config);
    wait_ready(&http, &gw.base).await;
    let mut phases: HashMap<&'static str, usize> = HashMap::new();
    let mut done = 0usize;
    let mut rng = 0x00C0_FFEE_u64;
    for run in 0..runs {
        let base = gw.base.clone();
        let (st, s) = call(&http, "POST", &format!("{base}/api/v1/sessions"), &token, None).await;
        assert_eq!(st, 201, "{s}");
        let session = s["id"].as_str().unwrap().to_owned();
        let (st, v) = call(
            &http,
            "POST",
            &format!("{base}/api/v1/sessions/{session}/messages"),
            &token,
            Some(json!({"content": format!("send mail {run}")})),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        let id = v["proposals"][0]["id"].as_str().unwrap().to_owned();
        let number = v["proposals"][0]["number"].as_i64().unwrap();
        let key = v["proposals"][0]["idempotency_key"].as_str().unwrap().to_owned();

        // Approve, and SIGKILL the gateway a random 0–15 ms later (wherever it is).
        let approve = {
            let http = http.clone();
            let url = format!("{base}/api/v1/proposals/{id}/approve");
            let token = token.clone();
            tokio::spawn(async move {
                http.post(url).bearer_auth(token).send().await.map(|r| r.status().as_u16())
            })
        };
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        tokio::time::sleep(Duration::from_micros(rng % 15_000)).await;
        gw.kill9();
        let answered = matches!(approve.await.unwrap(), Ok(200));

        gw = Gateway::start(&data, &config);
        wait_ready(&http, &gw.base).await;
        let url = format!("{}/api/v1/proposals/{id}", gw.base);
        let mut p = Value::Null;
        for _ in 0..400 {
            p = call(&http, "GET", &url, &token, None).await.1;
            if !matches!(p["state"].as_str(), Some("approved" | "executing")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let after_restart = p["state"].as_str().unwrap().to_owned();
        let phase = match (after_restart.as_str(), p["result"]["recovered"].as_bool(), answered) {
            ("pending", _, _) => "killed before the approval was recorded",
            ("done", Some(true), _) => "killed after the send: confirmed at restart",
            ("failed", Some(true), _) => "killed before the send: reported not done",
            ("unknown", _, _) => "unknown: check manually",
            ("done", _, true) => "completed before the kill",
            ("done", _, false) => "completed (answer lost) or resumed at restart",
            (other, _, _) => panic!("run {run}: proposal left {other}: {p}"),
        };
        *phases.entry(phase).or_default() += 1;
        if after_restart == "pending" {
            // The approval never landed: the owner approves again.
            let (st, v) = call(&http, "POST", &format!("{url}/approve"), &token, None).await;
            assert_eq!((st, v["state"].as_str()), (200, Some("done")), "run {run}: {v}");
            p = v;
        }
        let state = p["state"].as_str().unwrap();
        let sent =
            google.sent(ALICE).iter().filter(|m| m.idempotency_key.as_deref() == Some(key.as_str())).count();
        assert!(sent <= 1, "run {run}: sent {sent} times");
        match state {
            "done" => assert_eq!(sent, 1, "run {run}: done but not received: {p}"),
            "failed" => assert_eq!(sent, 0, "run {run}: reported failed but it was sent: {p}"),
            "unknown" => {}
            other => panic!("run {run}: {other}"),
        }
        if state == "done" {
            done += 1;
        }
        if state != "done" {
            // The person is told in the chat.
            let murl = format!("{}/api/v1/sessions/{session}/messages", gw.base);
            let mut told = false;
            for _ in 0..200 {
                let (_, msgs) = call(&http, "GET", &murl, &token, None).await;
                told = msgs.as_array().unwrap().iter().any(|m| {
                    let b = m["body"].as_str().unwrap_or_default();
                    b.contains(&format!("#{number} ")) && b.contains("restart")
                });
                if told {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(told, "run {run}: the person was not told about #{number} ({state})");
        }
    }
    gw.stop();
    assert_eq!(google.sent(ALICE).len(), done, "every send belongs to exactly one done proposal");
    assert_eq!(google.writes(ALICE), done);
    eprintln!("kill -9 runs: {runs} in {:.1} s; phases: {phases:#?}", started.elapsed().as_secs_f64());
    assert!(started.elapsed() < Duration::from_secs(180), "bounded run time");
    assert!(phases.len() >= 3, "the kills should land in several phases: {phases:?}");
}
