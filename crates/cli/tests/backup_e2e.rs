//! Issue 10 end to end with the real binary and a real S3-compatible server (s3s-fs, SigV4
//! checked): write state, let it replicate, kill -9 the gateway, wipe the data dir, start on a
//! fresh dir with the same MASTER_KEY: everything is back and the old tokens still work.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crewgate_testkit::fake_s3::FakeS3;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_crewgate");
const KEY: &str = "3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c";

struct Started {
    child: Child,
    base: String,
    admin_token: Option<String>,
}

fn start(data: &Path, s3: &FakeS3) -> Started {
    let mut child = Command::new(BIN)
        .args(["gateway", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("MASTER_KEY", KEY)
        .envs(s3.env_vars())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut admin_token = None;
    let mut base = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(t) = line.strip_prefix("admin token: ") {
            admin_token = Some(t.to_owned());
        }
        if let Some(rest) = line.strip_prefix("listening on ") {
            base = rest.split_whitespace().next().unwrap().to_owned();
            break;
        }
    }
    assert!(!base.is_empty(), "gateway did not start");
    Started { child, base, admin_token }
}

async fn call(
    base: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req =
        reqwest::Client::new().request(method.parse().unwrap(), format!("{base}{path}")).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

// Multi-threaded: the in-process S3 server must keep serving while the test blocks on the child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_wipe_and_restore_on_a_fresh_machine() {
    let s3 = FakeS3::start().await.unwrap();
    let first = tempfile::tempdir().unwrap();
    let mut gw = start(first.path(), &s3);
    let admin = gw.admin_token.clone().expect("first start prints the admin token");
    let (s, agent) = call(
        &gw.base,
        "POST",
        "/api/v1/agents",
        &admin,
        Some(serde_json::json!({"ownerEmail": "alice@company.com"})),
    )
    .await;
    assert_eq!(s, 201, "{agent}");
    let (s, issued) = call(
        &gw.base,
        "POST",
        "/api/v1/tokens",
        &admin,
        Some(serde_json::json!({"kind": "user", "agentId": "alice-company-com"})),
    )
    .await;
    assert_eq!(s, 201, "{issued}");
    let alice = issued["token"].as_str().unwrap().to_owned();
    let written_at = crewgate_core::now_millis();

    // Wait until S3 holds a backup taken after the writes (the target is < 2 s).
    let settings = crewgate_backup::BackupSettings::from_lookup(|name| {
        s3.env_vars().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    })
    .unwrap();
    let key = crewgate_core::MasterKey::from_hex(&secrecy::SecretString::from(KEY)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let gens = crewgate_backup::list_backups(&settings, &key).await.unwrap();
        if gens.iter().any(|g| g.newest_at >= written_at) {
            break;
        }
        assert!(Instant::now() < deadline, "no backup newer than the writes after 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (s, status) = call(&gw.base, "GET", "/api/v1/backup/status", &admin, None).await;
    assert_eq!((s, status["configured"].as_bool()), (200, Some(true)), "{status}");
    assert!(status["status"]["last_success_at"].is_i64(), "{status}");
    let metrics = reqwest::get(format!("{}/metrics", gw.base)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("crewgate_backup_lag_seconds "), "{metrics}");

    gw.child.kill().unwrap(); // SIGKILL: no graceful flush
    gw.child.wait().unwrap();
    drop(first); // the machine's disk is gone

    let second = tempfile::tempdir().unwrap();
    let mut gw2 = start(second.path(), &s3);
    assert!(gw2.admin_token.is_none(), "restored state already has an admin token");
    let (s, me) = call(&gw2.base, "GET", "/api/v1/me", &alice, None).await;
    assert_eq!(s, 200, "Alice's token works after restore: {me}");
    assert_eq!(me["agent"]["id"], "alice-company-com");
    let (s, users) = call(&gw2.base, "GET", "/api/v1/users", &admin, None).await;
    assert_eq!(s, 200);
    assert!(users.as_array().unwrap().iter().any(|u| u["email"] == "alice@company.com"));
    gw2.child.kill().unwrap();
    gw2.child.wait().unwrap();

    // The wrong key is refused, and the empty data dir stays empty.
    let third = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["gateway", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(third.path())
        .env("MASTER_KEY", "11".repeat(32))
        .envs(s3.env_vars())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MASTER_KEY"), "{err}");
    assert!(!third.path().join("crewgate.db").exists());
}
