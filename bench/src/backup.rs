//! Backup benchmarks against the release binary and an in-process S3 server (s3s-fs) on loopback:
//! replication lag under a steady write load, and how many changes made in the last 2 s before a
//! `kill -9` survive a restore on a fresh machine.

use crate::{Figure, MASTER_KEY_HEX, free_port, median, percentile};
use anyhow::{Context, Result, bail};
use crewgate_core::MasterKey;
use crewgate_testkit::fake_s3::FakeS3;
use secrecy::SecretString;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Gateway {
    child: Child,
    base: String,
    admin: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &Path, dir: &Path, s3: &FakeS3, prefix: &str) -> Result<Gateway> {
    let port = free_port()?;
    let mut child = Command::new(bin)
        .args(["gateway", "--bind", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .env("MASTER_KEY", MASTER_KEY_HEX)
        .envs(s3.env_vars())
        .env("S3_PREFIX", prefix)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning crewgate")?;
    let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let mut admin = String::new();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("listening on ") => break,
            Some(Ok(l)) => {
                if let Some(t) = l.strip_prefix("admin token: ") {
                    admin = t.to_owned();
                }
            }
            _ => bail!("gateway exited before listening"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok(Gateway { child, base: format!("http://127.0.0.1:{port}"), admin })
}

async fn create_agent(http: &reqwest::Client, gw: &Gateway, email: &str) -> Result<()> {
    let resp = http
        .post(format!("{}/api/v1/agents", gw.base))
        .bearer_auth(&gw.admin)
        .json(&serde_json::json!({ "ownerEmail": email }))
        .send()
        .await?;
    if resp.status() != 201 {
        bail!("creating an agent answered {}", resp.status());
    }
    Ok(())
}

pub async fn run(bin: &Path, durability_runs: usize, figures: &mut Vec<Figure>) -> Result<()> {
    let s3 = FakeS3::start().await?;
    let http = reqwest::Client::new();

    // Replication lag while writing 50 changes per second for 10 s.
    let dir = tempfile::tempdir()?;
    let gw = start(bin, dir.path(), &s3, "lag/")?;
    let mut lags = Vec::new();
    let t0 = Instant::now();
    let mut i = 0usize;
    while t0.elapsed() < Duration::from_secs(10) {
        create_agent(&http, &gw, &format!("w{i}@lag.example")).await?;
        i += 1;
        if i.is_multiple_of(5) {
            let v: serde_json::Value = http
                .get(format!("{}/api/v1/backup/status", gw.base))
                .bearer_auth(&gw.admin)
                .send()
                .await?
                .json()
                .await?;
            if let Some(ms) = v["status"]["lag_ms"].as_f64() {
                lags.push(ms);
            }
        }
        let next = t0 + Duration::from_millis(20 * i as u64);
        tokio::time::sleep_until(next.into()).await;
    }
    drop(gw);
    let p99 = percentile(&mut lags, 0.99);
    figures.push(Figure::new(
        "backup replication lag at 50 writes/s",
        median(&mut lags),
        "ms",
        Some("< 2000"),
        format!("p99 {p99:.0} ms; {} samples over {i} writes", lags.len()),
    ));

    // Changes in the last 2 s before kill -9, found again after restore on a fresh machine.
    let key = MasterKey::from_hex(&SecretString::from(MASTER_KEY_HEX))?;
    let mut survived = 0usize;
    let mut restore_ms = Vec::new();
    for run in 0..durability_runs {
        let prefix = format!("kill/{run}/");
        let dir = tempfile::tempdir()?;
        let gw = start(bin, dir.path(), &s3, &prefix)?;
        let email = format!("last{run}@kill.example");
        create_agent(&http, &gw, &email).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(gw); // SIGKILL, no graceful flush
        let fresh = tempfile::tempdir()?;
        let mut settings = crewgate_backup::BackupSettings::from_lookup(|name| {
            s3.env_vars().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
        })?;
        settings.prefix = prefix;
        let t = Instant::now();
        let db = fresh.path().join("crewgate.db");
        crewgate_backup::restore(&settings, &key, &db, None).await?;
        restore_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let store = crewgate_store::SqliteStore::open(&db, &key).await?;
        if crewgate_store::Store::find_user_by_email(&store, &email).await?.is_some() {
            survived += 1;
        }
    }
    if durability_runs > 0 {
        figures.push(Figure::new(
            "changes 2 s before kill -9 restored",
            100.0 * survived as f64 / durability_runs as f64,
            "%",
            Some(">= 95 %"),
            format!(
                "{survived}/{durability_runs} runs; restore of a small store p50 {:.0} ms",
                median(&mut restore_ms)
            ),
        ));
    }
    Ok(())
}
