//! Benchmark harness for crewgate. Runs the real release binary on prepared data dirs and measures
//! what a user feels: how fast it starts, how much memory it holds. Loopback only; every loop is
//! bounded in count and time.

use anyhow::{Context, Result, bail};
use clap::Parser;
use crewgate_core::{IssuedToken, MasterKey, TokenKind};
use crewgate_server::ops::{self, Actor, CreateAgent};
use crewgate_store::SqliteStore;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod approvals;
mod backup;
mod turns;

pub(crate) const MASTER_KEY_HEX: &str = "5151515151515151515151515151515151515151515151515151515151515151";

#[derive(Debug, Parser)]
#[command(about = "crewgate benchmarks (run through `cargo xtask bench`)")]
struct Args {
    /// Path of the crewgate binary to measure.
    #[arg(long, default_value = "target/release/crewgate")]
    crewgate: PathBuf,
    /// Runs per start-time figure.
    #[arg(long, default_value_t = 15)]
    runs: usize,
    /// WebSocket clients to open and hold (0 skips that benchmark).
    #[arg(long, default_value_t = 10_000)]
    ws_clients: usize,
    /// Kill -9 runs for the backup durability figure (0 skips it).
    #[arg(long, default_value_t = 100)]
    durability_runs: usize,
    /// Approvals for the "owner's yes → write" overhead figure (0 skips it).
    #[arg(long, default_value_t = 200)]
    approvals: usize,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench/results/latest.json")]
    out: PathBuf,
}

#[derive(Debug, Serialize)]
pub(crate) struct Figure {
    name: String,
    value: f64,
    unit: &'static str,
    target: Option<String>,
    detail: String,
}

impl Figure {
    pub(crate) fn new(
        name: &str,
        value: f64,
        unit: &'static str,
        target: Option<&str>,
        detail: String,
    ) -> Self {
        Self { name: name.into(), value, unit, target: target.map(str::to_owned), detail }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.crewgate.exists() {
        bail!("{} not found; build it with `cargo build --release -p crewgate`", args.crewgate.display());
    }
    let rt = tokio::runtime::Runtime::new()?;
    let mut figures = Vec::new();
    for (agents, start_target, rss_target) in [(1usize, "< 50 ms", "< 30 MiB"), (1000, "< 80 ms", "< 60 MiB")]
    {
        eprintln!("bench: preparing a data dir with {agents} agent(s)…");
        let dir = tempfile::tempdir()?;
        let token = rt.block_on(prepare(dir.path(), agents))?;
        eprintln!("bench: cold start × {} with {agents} agent(s)…", args.runs);
        let mut starts = Vec::new();
        let mut rss = Vec::new();
        for _ in 0..args.runs {
            let (ms, kib) = start_once(&args.crewgate, dir.path(), &token)?;
            starts.push(ms);
            rss.push(kib as f64 / 1024.0);
        }
        figures.push(Figure {
            name: format!("cold start to /ready, {agents} agent(s)"),
            value: median(&mut starts.clone()),
            unit: "ms",
            target: Some(start_target.into()),
            detail: format!(
                "p90 {:.1} ms, min {:.1} ms over {} runs",
                percentile(&mut starts.clone(), 0.9),
                min(&starts),
                starts.len()
            ),
        });
        figures.push(Figure {
            name: format!("idle RSS, {agents} agent(s)"),
            value: median(&mut rss.clone()),
            unit: "MiB",
            target: Some(rss_target.into()),
            detail: format!("max {:.1} MiB", rss.iter().cloned().fold(0.0, f64::max)),
        });
    }
    eprintln!("bench: chat turns, memory, prompt size and WebSocket clients…");
    rt.block_on(turns::run(&args.crewgate, args.ws_clients, &mut figures))?;
    eprintln!("bench: approval overhead ({} approvals)…", args.approvals);
    rt.block_on(approvals::run(&args.crewgate, args.approvals, &mut figures))?;
    eprintln!("bench: backup lag and kill -9 durability ({} runs)…", args.durability_runs);
    rt.block_on(backup::run(&args.crewgate, args.durability_runs, &mut figures))?;
    let size = std::fs::metadata(&args.crewgate)?.len() as f64 / (1024.0 * 1024.0);
    figures.push(Figure {
        name: "release binary size".into(),
        value: size,
        unit: "MiB",
        target: None,
        detail: args.crewgate.display().to_string(),
    });

    println!("\n{:<42} {:>10} {:<5} {:<10} detail", "benchmark", "value", "unit", "target");
    for f in &figures {
        println!(
            "{:<42} {:>10.1} {:<5} {:<10} {}",
            f.name,
            f.value,
            f.unit,
            f.target.as_deref().unwrap_or("-"),
            f.detail
        );
    }
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let json = serde_json::json!({
        "machine": { "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "figures": figures,
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&json)?)?;
    eprintln!("bench: wrote {}", args.out.display());
    Ok(())
}

/// Creates the store with `agents` worker agents and one admin token; returns the token.
async fn prepare(dir: &Path, agents: usize) -> Result<String> {
    let key = MasterKey::from_hex(&SecretString::from(MASTER_KEY_HEX))?;
    let store = SqliteStore::open(&dir.join("crewgate.db"), &key).await?;
    let admin = IssuedToken::generate(TokenKind::Admin);
    ops::register_token(&store, &Actor::System, &admin, None, None).await?;
    for i in 0..agents {
        ops::create_agent(
            &store,
            &Actor::System,
            CreateAgent { owner_email: Some(format!("person{i}@bench.example")), ..Default::default() },
        )
        .await?;
    }
    Ok(admin.secret.expose_secret().to_owned())
}

/// One cold start: returns (ms to first 200 from /ready, RSS in KiB when idle).
fn start_once(bin: &Path, dir: &Path, token: &str) -> Result<(f64, u64)> {
    let port = free_port()?;
    let t0 = Instant::now();
    let mut child = Command::new(bin)
        .args(["gateway", "--bind", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .env("MASTER_KEY", MASTER_KEY_HEX)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning crewgate")?;
    let result = measure(&mut child, port, token, t0);
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn measure(child: &mut Child, port: u16, token: &str, t0: Instant) -> Result<(f64, u64)> {
    let deadline = t0 + Duration::from_secs(10);
    let ms = loop {
        if Instant::now() > deadline {
            bail!("gateway did not become ready within 10 s");
        }
        if let Ok(200) = http_get(port, "/ready", None) {
            break t0.elapsed().as_secs_f64() * 1000.0;
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    // Drain stdout so the child never blocks on a full pipe.
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || for _ in BufReader::new(out).lines() {});
    }
    let status = http_get(port, "/api/v1/agents", Some(token))?;
    if status != 200 {
        bail!("authenticated call answered {status}");
    }
    std::thread::sleep(Duration::from_millis(500));
    Ok((ms, rss_kib(child.id())?))
}

fn http_get(port: u16, path: &str, token: Option<&str>) -> Result<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let head = String::from_utf8_lossy(&buf[..buf.len().min(32)]).into_owned();
    head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).context("no HTTP status line")
}

pub(crate) fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .context("no VmRSS in /proc/<pid>/status")
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    percentile(v, 0.5)
}

pub(crate) fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let idx = ((v.len() - 1) as f64 * p).round() as usize;
    v[idx.min(v.len() - 1)]
}

fn min(v: &[f64]) -> f64 {
    v.iter().cloned().fold(f64::INFINITY, f64::min)
}
