//! Approval overhead against the release binary: the owner types "yes" under a pending
//! `gmail_send` proposal; measured is the time from sending that message to the fake Gmail
//! receiving the send request (HTTP in, decision parsing, the conditional state changes and audit
//! entries, credential load, HTTP out). Fake Google and the fake LLM run on loopback.

use crate::{Figure, MASTER_KEY_HEX, free_port, median, percentile};
use anyhow::{Context, Result, bail};
use crewgate_core::{IssuedToken, MasterKey, TokenKind};
use crewgate_runtime::tools::external::{StoredGoogleToken, connect_google};
use crewgate_server::ops::{self, Actor, CreateAgent};
use crewgate_store::SqliteStore;
use crewgate_testkit::fake_google::{self, FakeGoogle};
use crewgate_testkit::fake_llm::{FakeLlm, Responder, Step};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const OWNER: &str = "owner@bench.example";

pub async fn run(bin: &Path, n: usize, figures: &mut Vec<Figure>) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let google = FakeGoogle::start().await;
    let account = google.add_account(OWNER);
    let llm = FakeLlm::builder().api_key("sk-bench").chunk_delay(Duration::ZERO).start().await;
    llm.set_default(Responder::from_fn(|req| {
        let after_tool = req.messages().last().is_some_and(|m| m["role"] == "tool");
        match req.last_user_message() {
            Some(t) if !after_tool && t.starts_with("mail ") => Step::tool_call(
                "gmail_send",
                json!({"to": ["ann@ext.example"], "subject": t.clone(), "body": "Short note."}),
            ),
            _ => Step::text("Proposed."),
        }
    }));

    let dir = tempfile::tempdir()?;
    let key = MasterKey::from_hex(&SecretString::from(MASTER_KEY_HEX))?;
    let token = {
        let store = SqliteStore::open(&dir.path().join("crewgate.db"), &key).await?;
        let agent = ops::create_agent(
            &store,
            &Actor::System,
            CreateAgent { owner_email: Some(OWNER.into()), ..Default::default() },
        )
        .await?;
        let owner = agent.owner.context("the agent has an owner")?;
        let t = IssuedToken::generate(TokenKind::User);
        ops::register_token(&store, &Actor::System, &t, Some(agent.id.as_str()), None).await?;
        connect_google(
            &store,
            &owner,
            &StoredGoogleToken {
                access_token: Some(SecretString::from(account.access_token.clone())),
                expires_at: None,
                refresh_token: Some(SecretString::from(account.refresh_token.clone())),
                scopes: Some(account.scopes.clone()),
                email: Some(OWNER.into()),
            },
        )
        .await?;
        t.secret.expose_secret().to_owned()
    };
    let config = dir.path().join("crewgate.jsonc");
    std::fs::write(
        &config,
        json!({
            "llm": {"baseUrl": llm.base_url(), "apiKey": "sk-bench", "model": "bench-model"},
            "skills": {"installed": {"gog": {"config": {"clientId": fake_google::CLIENT_ID, "clientSecret": fake_google::CLIENT_SECRET}}}},
            "integrations": {"google": {"apiBase": google.base_url(), "tokenUrl": google.token_url()}},
        })
        .to_string(),
    )?;

    let port = free_port()?;
    let mut child = Command::new(bin)
        .args(["gateway", "--bind", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .env("MASTER_KEY", MASTER_KEY_HEX)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning crewgate")?;
    let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("listening on ") => break,
            Some(Ok(_)) => {}
            _ => bail!("gateway exited before listening"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let result = measure(&format!("http://127.0.0.1:{port}"), &token, &google, n).await;
    let _ = child.kill();
    let _ = child.wait();
    let mut v = result?;
    let p99 = percentile(&mut v, 0.99);
    figures.push(Figure::new(
        "owner's yes → fake API receives the write",
        median(&mut v),
        "ms",
        Some("p50 < 5 ms"),
        format!("p99 {p99:.2} ms over {} approvals (chat \"yes\", gmail_send)", v.len()),
    ));
    Ok(())
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value> {
    let resp = http.post(url).bearer_auth(token).json(&body).send().await?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await?;
    if !status.is_success() {
        bail!("{url} answered {status}: {v}");
    }
    Ok(v)
}

async fn measure(base: &str, token: &str, google: &FakeGoogle, n: usize) -> Result<Vec<f64>> {
    let http = reqwest::Client::new();
    let session = post(&http, &format!("{base}/api/v1/sessions"), token, json!({})).await?;
    let session = session["id"].as_str().context("session id")?.to_owned();
    let url = format!("{base}/api/v1/sessions/{session}/messages");
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let v = post(&http, &url, token, json!({"content": format!("mail {i}")})).await?;
        if v["proposals"][0]["state"] != "pending" {
            bail!("no pending proposal: {v}");
        }
        let before = google.api_requests().len();
        let t0 = Instant::now();
        let v = post(&http, &url, token, json!({"content": "yes"})).await?;
        let reqs = google.api_requests();
        let send = reqs[before..]
            .iter()
            .find(|r| r.method == "POST" && r.path.ends_with("/messages/send"))
            .with_context(|| format!("the fake Gmail received no send: {v}"))?;
        out.push(send.at.saturating_duration_since(t0).as_secs_f64() * 1000.0);
    }
    if google.sent(OWNER).len() != n {
        bail!("expected {n} sent messages, the fake has {}", google.sent(OWNER).len());
    }
    Ok(out)
}
