//! The real binary, as a newcomer runs it: `crewgate gateway` on a fresh data dir prints the admin
//! token and dashboard URL once, becomes ready, serves the API, and stops cleanly on SIGTERM; the
//! offline CLI works beside it and a rotation bites on the very next request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_crewgate");

struct Gateway {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
    base: String,
}

impl Gateway {
    fn start(data_dir: &Path, extra: &[&str]) -> Gateway {
        let mut child = Command::new(BIN)
            .arg("gateway")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--bind", "127.0.0.1:0"])
            .args(extra)
            .env_remove("MASTER_KEY")
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                if tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        let mut gw = Gateway { child, lines: rx, stdout: Vec::new(), base: String::new() };
        let deadline = Instant::now() + Duration::from_secs(30);
        while gw.base.is_empty() {
            let line = gw
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("gateway printed no listening line");
            if let Some(rest) = line.strip_prefix("listening on ") {
                gw.base = rest.split_whitespace().next().unwrap().to_owned();
            }
            gw.stdout.push(line);
        }
        gw
    }

    fn line_with(&self, prefix: &str) -> Option<String> {
        self.stdout.iter().find_map(|l| l.strip_prefix(prefix).map(str::to_owned))
    }

    fn stop(mut self) -> std::process::ExitStatus {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "gateway did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn cli(data_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("MASTER_KEY")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn wait_ready(base: &str) {
    let client = reqwest::Client::new();
    for _ in 0..500 {
        if let Ok(r) = client.get(format!("{base}/ready")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{base}/ready never answered 200");
}

async fn status(base: &str, path: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn first_start_prints_admin_token_once_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    let token = gw.line_with("admin token: ").expect("admin token line");
    assert!(token.starts_with("cga_") && token.len() == 52, "{token}");
    let dashboard = gw.line_with("dashboard: ").unwrap();
    assert_eq!(dashboard, format!("{}/?token={token}", gw.base));
    wait_ready(&gw.base).await;
    assert_eq!(status(&gw.base, "/api/v1/me", &token).await, 200);
    assert_eq!(status(&gw.base, "/api/v1/me", "cga_wrong").await, 401);
    let agents: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/v1/agents", gw.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(agents[0]["id"], "orchestrator");
    let key = std::fs::metadata(dir.path().join("master.key")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
    }
    assert!(gw.stop().success(), "graceful shutdown exits 0");

    // Second start: the same token still works and no token is printed again.
    let gw2 = Gateway::start(dir.path(), &[]);
    assert!(gw2.line_with("admin token: ").is_none(), "token printed twice: {:?}", gw2.stdout);
    assert!(gw2.stdout.iter().all(|l| !l.contains(&token)));
    wait_ready(&gw2.base).await;
    assert_eq!(status(&gw2.base, "/api/v1/me", &token).await, 200);
    assert!(gw2.stop().success());
}

#[tokio::test]
async fn cli_rotation_bites_on_the_next_request_to_a_running_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), &[]);
    wait_ready(&gw.base).await;
    let (ok, out, err) = cli(dir.path(), &["agents", "add", "--owner", "alice@company.com"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("created agent alice-company-com"), "{out}");
    let (ok, out, err) = cli(dir.path(), &["tokens", "issue", "--agent", "alice-company-com"]);
    assert!(ok, "{out}{err}");
    let old = out.lines().find(|l| l.starts_with("cgu_")).unwrap().to_owned();
    assert_eq!(status(&gw.base, "/api/v1/agents/alice-company-com", &old).await, 200);
    assert_eq!(status(&gw.base, "/api/v1/agents/orchestrator", &old).await, 404);

    let (_, list, _) = cli(dir.path(), &["tokens", "list"]);
    assert!(!list.contains(&old), "list shows a secret");
    let id = list
        .lines()
        .find(|l| l.contains("alice-company-com") && l.contains("live"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let (ok, out, err) = cli(dir.path(), &["tokens", "rotate", &id]);
    assert!(ok, "{out}{err}");
    let new = out.lines().find(|l| l.starts_with("cgu_")).unwrap().to_owned();
    assert_eq!(status(&gw.base, "/api/v1/me", &old).await, 401, "old token must die at once");
    assert_eq!(status(&gw.base, "/api/v1/me", &new).await, 200);

    let (ok, out, _) = cli(dir.path(), &["users", "list"]);
    assert!(ok && out.contains("alice@company.com") && out.contains("member"), "{out}");
    let (ok, _, err) = cli(dir.path(), &["agents", "remove", "alice-company-com"]);
    assert!(ok, "{err}");
    assert_eq!(status(&gw.base, "/api/v1/me", &new).await, 401, "removing an agent revokes its tokens");
    gw.stop();
}

#[test]
fn wrong_master_key_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = cli(dir.path(), &["users", "list"]);
    assert!(ok, "{err}");
    let out = Command::new(BIN)
        .args(["users", "list", "--data-dir"])
        .arg(dir.path())
        .env("MASTER_KEY", "ab".repeat(32))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MASTER_KEY does not match"), "{err}");
}

#[test]
fn help_explains_each_command_with_an_example() {
    for cmd in [
        &["gateway"][..],
        &["init"],
        &["config", "check"],
        &["agents", "add"],
        &["tokens", "rotate"],
        &["users", "list"],
    ] {
        let out = Command::new(BIN).args(cmd).arg("--help").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd:?}");
        assert!(text.contains("Example"), "{cmd:?} --help has no example:\n{text}");
    }
}

#[test]
fn bad_database_url_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["users", "list", "--database-url", "mysql://x", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must start with postgres://"));
}

#[tokio::test]
async fn config_declared_agents_and_tokens_are_imported_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let gen_token = |kind: &str| {
        let out = Command::new(BIN).args(["tokens", "generate", kind]).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let admin = gen_token("admin");
    let alice = gen_token("user");
    let config = dir.path().join("crewgate.jsonc");
    std::fs::write(
        &config,
        r#"{
  // tokens come from the environment, as in production
  "gateway": { "auth": { "token": "${TEST_ADMIN_TOKEN}", "userTokens": { "${TEST_ALICE_TOKEN}": { "agentId": "alice-co" } } } },
  "agents": { "list": [
    { "id": "alice-co", "owner": "alice@co.com", "identity": { "name": "Alice's agent" } },
    { "id": "bob-co", "owner": "bob@co.com" },
  ] },
}"#,
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(BIN)
        .args(["gateway", "--bind", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .env("TEST_ADMIN_TOKEN", &admin)
        .env("TEST_ALICE_TOKEN", &alice)
        .env_remove("MASTER_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut base = String::new();
    let mut printed = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("listening on ") {
            base = rest.split_whitespace().next().unwrap().to_owned();
            break;
        }
        printed.push(line);
    }
    assert!(
        printed.iter().all(|l| !l.starts_with("admin token:")),
        "config admin token must not be replaced: {printed:?}"
    );
    wait_ready(&base).await;
    assert_eq!(status(&base, "/api/v1/agents/bob-co", &admin).await, 200);
    assert_eq!(status(&base, "/api/v1/agents/alice-co", &alice).await, 200);
    assert_eq!(status(&base, "/api/v1/agents/bob-co", &alice).await, 404);
    let _ = child.kill();
    let _ = child.wait();
    let db = std::fs::read(data.join("crewgate.db")).unwrap();
    let needle = admin.as_bytes();
    assert!(!db.windows(needle.len()).any(|w| w == needle), "plaintext token stored");
}

#[test]
fn config_check_reports_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonc");
    std::fs::write(&bad, "{\n  \"gateway\": {\n    \"prot\": 1\n  }\n}\n").unwrap();
    let out = Command::new(BIN).args(["config", "check"]).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.jsonc:3:5"), "{err}");
    assert!(err.contains("gateway.prot"), "{err}");

    let good = dir.path().join("good.jsonc");
    let out = Command::new(BIN).args(["init", "--config"]).arg(&good).output().unwrap();
    assert!(out.status.success());
    let out = Command::new(BIN).args(["config", "check"]).arg(&good).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(BIN).args(["init", "--config"]).arg(&good).output().unwrap();
    assert!(!out.status.success(), "init must not overwrite without --force");
}

#[tokio::test]
async fn tokens_never_reach_the_logs_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let mut child = Command::new(BIN)
        .args(["gateway", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "trace")
        .env_remove("MASTER_KEY")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut token = String::new();
    let mut base = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(t) = line.strip_prefix("admin token: ") {
            token = t.to_owned();
        }
        if let Some(rest) = line.strip_prefix("listening on ") {
            base = rest.split_whitespace().next().unwrap().to_owned();
            break;
        }
    }
    wait_ready(&base).await;
    assert_eq!(status(&base, "/api/v1/me", &token).await, 200);
    let body = r#"{"kind":"user","agentId":"x"}"#;
    let _ = reqwest::Client::new()
        .post(format!("{base}/api/v1/tokens"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(status(&base, "/api/v1/me", &format!("{token}x")).await, 401);
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.len() > 1000, "expected trace output, got {} bytes", log.len());
    assert!(!log.contains(&token[4..]), "the admin token appears in the logs");
}
