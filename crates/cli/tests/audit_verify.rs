//! `crewgate audit verify` on a real data dir: intact after a gateway run, and a row changed
//! directly in the database is found (exit 1, naming the entry).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sqlx::Connection;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_crewgate");

/// Runs the gateway on `data` until it is listening, then stops it (SIGTERM).
fn run_gateway_once(data: &Path) {
    let mut child = Command::new(BIN)
        .args(["gateway", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env_remove("MASTER_KEY")
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("listening on ") => break,
            Some(_) => {}
            None => panic!("gateway exited early"),
        }
    }
    // Bootstrap (and its audit entries) is committed before the listening line.
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    child.wait().unwrap();
}

fn verify(data: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(data)
        .env_remove("MASTER_KEY")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test]
async fn audit_verify_detects_a_row_edited_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run_gateway_once(&data);
    let (ok, out) = verify(&data);
    assert!(ok && out.contains("audit log intact"), "{out}");

    let url = format!("sqlite://{}", data.join("crewgate.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let entries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log").fetch_one(&mut db).await.unwrap();
    assert!(entries >= 2, "the first start writes audit entries");
    // An insider rewrites what an entry says (e.g. who approved); the hash chain no longer holds.
    sqlx::query("UPDATE audit_log SET actor = 'user:someone-else' WHERE id = 2")
        .execute(&mut db)
        .await
        .unwrap();
    db.close().await.unwrap();
    let (ok, out) = verify(&data);
    assert!(!ok, "tampering must fail the check: {out}");
    assert!(out.contains("audit log TAMPERED: entry 2 "), "{out}");
}
