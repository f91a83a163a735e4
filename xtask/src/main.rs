//! `cargo xtask test`: starts the real services the test suite needs (a throwaway PostgreSQL
//! cluster), runs the whole suite with nextest, and stops everything again, even on failure.
//! `cargo xtask bench`: builds the release binary and runs the benchmark harness in `bench/`.

use anyhow::{Context, Result, bail};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

const HELP: &str = "\
cargo xtask — developer tasks for crewgate

USAGE:
    cargo xtask test [-- NEXTEST_ARGS…]   start a throwaway PostgreSQL cluster, run the whole test suite
                                          (Rust tests on SQLite and PostgreSQL, then the browser tests),
                                          stop the cluster
    cargo xtask bench [-- ARGS…]          build the release binary and run the benchmarks (bench/)

ENVIRONMENT:
    CREWGATE_SKIP_BROWSER=1   skip the headless-Chromium dashboard tests
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest: Vec<String> = args.iter().skip_while(|a| *a != "--").skip(1).cloned().collect();
    match args.first().map(String::as_str) {
        Some("test") => test(&rest),
        Some("bench") => bench(&rest),
        Some("-h" | "--help" | "help") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => bail!("unknown task {other:?}\n\n{HELP}"),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn test(extra: &[String]) -> Result<()> {
    let root = workspace_root();
    let pg = Postgres::start().context("starting the throwaway PostgreSQL cluster")?;
    eprintln!("xtask: PostgreSQL ready at {}", pg.url);
    let result = run_suites(&root, &pg, extra);
    drop(pg); // stops the cluster
    result
}

fn run_suites(root: &Path, pg: &Postgres, extra: &[String]) -> Result<()> {
    // The stock OpenAI Python client, for the OpenAI-compatibility test (a venv under target/).
    eprintln!("xtask: preparing the Python venv with the openai client…");
    check(
        Command::new("bash")
            .arg(root.join("crates/server/tests/python/setup-venv.sh"))
            .current_dir(root)
            .status()?,
        "setting up the Python venv (needs python3 with venv and access to PyPI)",
    )?;
    let nextest = Command::new("cargo").args(["nextest", "--version"]).stdout(Stdio::null()).status();
    let mut cmd = Command::new("cargo");
    if nextest.is_ok_and(|s| s.success()) {
        cmd.args(["nextest", "run", "--no-fail-fast"]);
    } else {
        eprintln!(
            "xtask: cargo-nextest not found, falling back to cargo test (install: cargo install cargo-nextest)"
        );
        cmd.args(["test", "--no-fail-fast"]);
    }
    // `-p NAME` narrows the run to some packages; otherwise the whole workspace runs.
    if !extra.iter().any(|a| a == "-p" || a == "--package" || a.starts_with("--package=")) {
        cmd.arg("--workspace");
    }
    cmd.args(extra)
        .current_dir(root)
        .env("TEST_DATABASE_URL", &pg.url)
        .env("CREWGATE_REQUIRE_POSTGRES", "1")
        .env("CREWGATE_REQUIRE_PYTHON", "1");
    let rust = check(cmd.status().context("running cargo")?, "Rust test suite");
    // A run narrowed to some packages (`-p …`) is about those crates, not the dashboard.
    let narrowed = extra.iter().any(|a| a == "-p" || a == "--package" || a.starts_with("--package="));
    let browser = if narrowed { Ok(()) } else { browser_suite(root) };
    rust.and(browser)
}

/// The dashboard's browser tests (`e2e/`): the real gateway binary and the scripted fake LLM,
/// driven by playwright-core in Debian's headless Chromium (never a downloaded browser).
fn browser_suite(root: &Path) -> Result<()> {
    if std::env::var_os("CREWGATE_SKIP_BROWSER").is_some_and(|v| v == "1") {
        eprintln!("xtask: CREWGATE_SKIP_BROWSER=1: skipping the browser tests");
        return Ok(());
    }
    let started = std::time::Instant::now();
    let chromium =
        std::env::var_os("CHROMIUM_PATH").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !chromium.exists() && is_root() {
        eprintln!("xtask: installing Chromium from Debian packages…");
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    if !chromium.exists() {
        bail!(
            "{} not found: install Debian's `chromium` package, set CHROMIUM_PATH, or skip with CREWGATE_SKIP_BROWSER=1",
            chromium.display()
        );
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    check(
        Command::new("cargo")
            .args(["build", "-p", "crewgate", "-p", "crewgate-testkit", "--bins"])
            .current_dir(root)
            .status()?,
        "building the gateway and fake-llm for the browser tests",
    )?;
    let e2e = root.join("e2e");
    check(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefer-offline"])
            .current_dir(&e2e)
            .status()
            .context("running npm (Node 20+ with npm is needed for the browser tests)")?,
        "npm ci in e2e/",
    )?;
    let status = Command::new("node")
        .args(["--test", "--test-concurrency=1", "--test-timeout=120000"])
        .current_dir(&e2e)
        .env("CREWGATE_BIN", target.join("debug/crewgate"))
        .env("FAKE_LLM_BIN", target.join("debug/fake-llm"))
        .env("FAKE_NOTION_BIN", target.join("debug/fake-notion"))
        .env("FAKE_GOOGLE_BIN", target.join("debug/fake-google"))
        .env("CHROMIUM_PATH", &chromium)
        .status()
        .context("running node")?;
    eprintln!(
        "xtask: browser tests took {:.0?}; screenshots in {}",
        started.elapsed(),
        e2e.join("screenshots").display()
    );
    check(status, "browser tests (e2e/)")
}

fn bench(extra: &[String]) -> Result<()> {
    let root = workspace_root();
    check(
        Command::new("cargo")
            .args(["build", "--release", "-p", "crewgate", "-p", "crewgate-bench"])
            .current_dir(&root)
            .status()?,
        "release build",
    )?;
    let bin = root.join("target/release/crewgate-bench");
    let crewgate = root.join("target/release/crewgate");
    // 10k WebSocket clients need more file descriptors than the usual soft limit of 1024; raise it
    // (up to the hard limit) for the harness and the gateway it starts.
    let script = r#"ulimit -n "$(ulimit -Hn)" 2>/dev/null || true; exec "$@""#;
    check(
        Command::new("bash")
            .args(["-c", script, "bench"])
            .arg(bin)
            .arg("--crewgate")
            .arg(crewgate)
            .args(extra)
            .current_dir(&root)
            .status()?,
        "benchmarks",
    )
}

fn check(status: ExitStatus, what: &str) -> Result<()> {
    if status.success() { Ok(()) } else { bail!("{what} failed ({status})") }
}

/// A PostgreSQL cluster in a temp dir, on a free loopback port, trust auth. Stopped on drop.
struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    url: String,
    as_postgres_user: bool,
}

impl Postgres {
    fn start() -> Result<Self> {
        let bin = find_pg_bin().or_else(|| {
            install_postgres();
            find_pg_bin()
        });
        let Some(bin) = bin else {
            bail!("PostgreSQL server binaries not found; install them with `apt-get install postgresql`");
        };
        // PostgreSQL refuses to run as root; as root we run it as the `postgres` system user.
        let as_postgres_user = is_root();
        let dir = std::env::temp_dir().join(format!("crewgate-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        if as_postgres_user {
            check(Command::new("chown").arg("postgres").arg(&dir).status()?, "chown of the cluster dir")?;
        }
        let port = free_port()?;
        let pg = Self {
            bin,
            dir,
            url: format!("postgres://postgres@127.0.0.1:{port}/crewgate_test"),
            as_postgres_user,
        };
        let data = pg.dir.join("data");
        pg.run(
            "initdb",
            &["-D", &data.to_string_lossy(), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
        )?;
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
            pg.dir.display()
        );
        pg.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-l",
                &pg.dir.join("log").to_string_lossy(),
                "-w",
                "start",
                "-o",
                &opts,
            ],
        )?;
        check(
            Command::new(pg.bin.join("createdb"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "crewgate_test"])
                .status()?,
            "createdb",
        )?;
        Ok(pg)
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<()> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).stdin(Stdio::null()).output().with_context(|| format!("running {tool}"))?;
        if !out.status.success() {
            bail!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        if let Err(e) = self.run("pg_ctl", &["-D", &data.to_string_lossy(), "-m", "immediate", "-w", "stop"])
        {
            eprintln!("xtask: stopping PostgreSQL failed: {e:#}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn find_pg_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn install_postgres() {
    if !is_root() {
        return;
    }
    eprintln!("xtask: installing PostgreSQL from Debian packages…");
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", "postgresql"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
