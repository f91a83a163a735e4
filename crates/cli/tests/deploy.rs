//! The Phala/container deployment files in `deploy/phala`, checked without a container engine:
//! `entrypoint.sh` runs directly (with `/bin/sh`, PATH holding only the crewgate binary, as in the
//! image) against the testkit's fake LLM and fake S3; the Dockerfile, compose file, example env
//! and production config are checked structurally; `shellcheck` runs when installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crewgate_testkit::fake_llm::FakeLlm;
use crewgate_testkit::fake_s3::FakeS3;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_crewgate");
const LLM_KEY: &str = "rp_test_key_not_secret";
const MASTER_KEY: &str = "5f1e4c3b2a19080706050403020100ffeeddccbbaa99887766554433221100aa";
const ADMIN_TOKEN: &str = "cga_0123456789abcdef0123456789abcdef0123456789abcdef";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/phala")
}

fn read(rel: &str) -> String {
    let path = deploy_dir().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `NAME=value` lines of `.env.example` (uncommented ones: the example env).
fn example_env() -> Vec<(String, String)> {
    read("secrets/.env.example")
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Every variable `.env.example` documents, commented out or not.
fn documented_vars() -> BTreeSet<String> {
    read("secrets/.env.example")
        .lines()
        .filter_map(|l| {
            let l = l.trim().trim_start_matches('#').trim();
            let (name, _) = l.split_once('=')?;
            is_var_name(name).then(|| name.to_owned())
        })
        .collect()
}

fn is_var_name(s: &str) -> bool {
    !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The text without full-line `#` and `//` comments.
fn code(text: &str) -> String {
    text.lines()
        .filter(|l| !(l.trim_start().starts_with('#') || l.trim_start().starts_with("//")))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Upper-case variable names referenced as `${NAME…}` (and, unless `braced_only`, `$NAME`),
/// outside full-line comments.
fn referenced_vars(text: &str, braced_only: bool) -> BTreeSet<String> {
    let text = &code(text);
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    for (i, _) in text.match_indices('$') {
        let (start, braced) = match bytes.get(i + 1) {
            Some(b'{') => (i + 2, true),
            _ => (i + 1, false),
        };
        if braced_only && !braced {
            continue;
        }
        let name: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if is_var_name(&name) {
            out.insert(name);
        }
    }
    out
}

/// The words of `NAME="a b c"` in entrypoint.sh.
fn entrypoint_list(name: &str) -> Vec<String> {
    let text = read("entrypoint.sh");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=\"")))
        .unwrap_or_else(|| panic!("entrypoint.sh has no {name}=\"…\" line"));
    line.trim_end_matches('"').split_whitespace().map(str::to_owned).collect()
}

fn bin_dir() -> PathBuf {
    Path::new(BIN).parent().unwrap().to_path_buf()
}

/// `/bin/sh entrypoint.sh ARGS` with exactly `env` (plus PATH = the crewgate binary's directory
/// only: the image has no coreutils either).
fn entrypoint(env: &[(String, String)], args: &[&str]) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg(deploy_dir().join("entrypoint.sh"))
        .args(args)
        .env_clear()
        .env("PATH", bin_dir())
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd
}

fn output_text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn set(env: &mut Vec<(String, String)>, name: &str, value: &str) {
    env.retain(|(k, _)| k != name);
    env.push((name.to_owned(), value.to_owned()));
}

fn base_env(data_dir: &Path) -> Vec<(String, String)> {
    let mut env = example_env();
    set(&mut env, "CREWGATE_DATA_DIR", data_dir.to_str().unwrap());
    set(&mut env, "CREWGATE_CONFIG", deploy_dir().join("crewgate.jsonc").to_str().unwrap());
    set(&mut env, "CREWGATE_ORCHESTRATOR_DIR", deploy_dir().join("orchestrator").to_str().unwrap());
    set(&mut env, "CREWGATE_BIND", "127.0.0.1:0");
    env
}

// ---------------------------------------------------------------------------------------------
// entrypoint.sh

#[test]
fn entrypoint_lists_every_missing_variable_and_does_not_start() {
    let data = tempfile::tempdir().unwrap();
    let required = entrypoint_list("REQUIRED_VARS");
    for name in ["MASTER_KEY", "REDPILL_API_KEY", "PUBLIC_URL", "GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET"] {
        assert!(required.iter().any(|r| r == name), "{name} should be required: {required:?}");
    }

    // The example as shipped: its empty secrets are all reported, in one message.
    let env = base_env(data.path());
    let out = entrypoint(&env, &[]).output().unwrap();
    let msg = output_text(&out);
    assert!(!out.status.success(), "{msg}");
    assert!(msg.contains("missing or invalid"), "{msg}");
    let empty_in_example: Vec<&String> =
        required.iter().filter(|r| env.iter().any(|(k, v)| k == *r && v.is_empty())).collect();
    assert!(empty_in_example.len() >= 5, "{empty_in_example:?}");
    for name in &empty_in_example {
        assert!(msg.contains(&format!("  {name}: missing")), "{name} not listed:\n{msg}");
    }

    // Nothing set at all: every required variable is listed.
    let bare = vec![("CREWGATE_DATA_DIR".to_owned(), data.path().to_str().unwrap().to_owned())];
    let out = entrypoint(&bare, &[]).output().unwrap();
    let msg = output_text(&out);
    assert!(!out.status.success());
    for name in &required {
        assert!(msg.contains(&format!("  {name}: missing")), "{name} not listed:\n{msg}");
    }

    // Malformed values and half an S3 configuration are reported too; no secret is echoed.
    let mut env = complete_env(data.path(), "http://127.0.0.1:9/v1");
    set(&mut env, "MASTER_KEY", "not-hex-at-all");
    set(&mut env, "ADMIN_TOKEN", "cga_short");
    set(&mut env, "S3_BUCKET", "only-the-bucket");
    let out = entrypoint(&env, &[]).output().unwrap();
    let msg = output_text(&out);
    assert!(!out.status.success(), "{msg}");
    for expected in [
        "MASTER_KEY: invalid",
        "ADMIN_TOKEN: invalid",
        "S3_ACCESS_KEY_ID: missing",
        "S3_SECRET_ACCESS_KEY: missing",
    ] {
        assert!(msg.contains(expected), "{expected:?} not in:\n{msg}");
    }
    assert!(!msg.contains("not-hex-at-all") && !msg.contains("cga_short") && !msg.contains(LLM_KEY), "{msg}");
    assert!(!data.path().join("crewgate.db").exists(), "the gateway must not have started");
}

#[test]
fn entrypoint_runs_other_commands_as_is() {
    let out = entrypoint(&[], &["help"]).output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("gateway"));
}

/// Everything the production config and entrypoint need, pointing at local fakes.
fn complete_env(data_dir: &Path, llm_base: &str) -> Vec<(String, String)> {
    let mut env = base_env(data_dir);
    for (k, v) in [
        ("MASTER_KEY", MASTER_KEY),
        ("REDPILL_API_KEY", LLM_KEY),
        ("LLM_BASE_URL", llm_base),
        ("LLM_MODEL", "fake-model"),
        ("PUBLIC_URL", "http://127.0.0.1:18789"),
        ("GOOGLE_CLIENT_ID", "1234-test.apps.googleusercontent.com"),
        ("GOOGLE_CLIENT_SECRET", "test-google-secret"),
        ("COMPANY_DOMAIN", "company.com"),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
    ] {
        set(&mut env, k, v);
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entrypoint_checks_then_execs_a_gateway_that_becomes_ready_and_stops_on_sigterm() {
    let llm = FakeLlm::builder().api_key(LLM_KEY).models(["fake-model"]).start().await;
    let s3 = FakeS3::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut env = complete_env(data.path(), &llm.base_url());
    for (k, v) in s3.env_vars() {
        set(&mut env, &k, &v);
    }
    // Any doctor FAIL stops the start, so reaching /ready means every check passed.
    set(&mut env, "CREWGATE_DOCTOR", "strict");

    let mut child = entrypoint(&env, &[]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);

    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let base = loop {
        let line = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => l,
            Err(e) => {
                let _ = child.kill();
                panic!("no listening line ({e}); output so far:\n{}", log.join("\n"));
            }
        };
        log.push(line.clone());
        if let Some(rest) = line.strip_prefix("listening on ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let all = log.join("\n");
    for expected in [
        "ok    config:",
        "ok    env: MASTER_KEY set",
        "ok    store:",
        "ok    s3:",
        "ok    llm:",
        "ok    google:",
        "ok    clock:",
        "doctor: 0 FAIL",
    ] {
        assert!(all.contains(expected), "{expected:?} missing from the doctor output:\n{all}");
    }
    for secret in [MASTER_KEY, LLM_KEY, ADMIN_TOKEN, "test-google-secret", s3.secret_access_key()] {
        assert!(!all.contains(secret), "a secret was printed:\n{all}");
    }
    let models: Vec<_> = llm.requests().into_iter().filter(|r| r.path.ends_with("/models")).collect();
    assert_eq!(models.len(), 1, "the doctor lists the models once");
    assert_eq!(models[0].header("authorization"), Some(format!("Bearer {LLM_KEY}").as_str()));

    // Ready, and `crewgate healthcheck` agrees.
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..500 {
        if let Ok(r) = client.get(format!("{base}/ready")).send().await
            && r.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ready, "{base}/ready never answered 200");
    let bind = base.trim_start_matches("http://");
    let hc = Command::new(BIN).arg("healthcheck").env("CREWGATE_BIND", bind).output().unwrap();
    assert!(hc.status.success(), "{}", output_text(&hc));

    // exec: the process started as the entrypoint is now the gateway itself.
    if let Ok(comm) = std::fs::read_to_string(format!("/proc/{}/comm", child.id())) {
        assert_eq!(comm.trim(), "crewgate", "the entrypoint must exec the gateway");
    }
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the gateway did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "SIGTERM should end the gateway cleanly: {status:?}");
    let hc = Command::new(BIN).arg("healthcheck").env("CREWGATE_BIND", bind).output().unwrap();
    assert_eq!(hc.status.code(), Some(1), "healthcheck must fail once the gateway is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_on_refused_credentials_without_printing_them() {
    let llm = FakeLlm::builder().api_key(LLM_KEY).models(["fake-model"]).start().await;
    let s3 = FakeS3::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut env = complete_env(data.path(), &llm.base_url());
    for (k, v) in s3.env_vars() {
        set(&mut env, &k, &v);
    }
    set(&mut env, "REDPILL_API_KEY", "rp_wrong_key_value");
    set(&mut env, "S3_SECRET_ACCESS_KEY", "wrong-s3-secret-value");
    let out = Command::new(BIN)
        .args(["doctor", "--timeout", "5"])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let msg = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains("FAIL  llm:") && msg.contains("refused the API key"), "{msg}");
    assert!(msg.contains("FAIL  s3:") && msg.contains("credentials refused"), "{msg}");
    assert!(!msg.contains("rp_wrong_key_value") && !msg.contains("wrong-s3-secret-value"), "{msg}");
    for line in String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.starts_with("doctor: ")) {
        let level = line.split_whitespace().next().unwrap_or_default();
        assert!(["ok", "warn", "FAIL"].contains(&level), "unexpected line format: {line:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// structure

#[test]
fn dockerfile_is_pinned_minimal_and_non_root() {
    let text = read("Dockerfile");
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.starts_with('#')).collect();
    let froms: Vec<&str> =
        lines.iter().copied().filter(|l| l.to_ascii_uppercase().starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "expected a multi-stage build: {froms:?}");
    for from in &froms {
        let image = from.split_whitespace().nth(1).unwrap();
        let (_, digest) =
            image.split_once("@sha256:").unwrap_or_else(|| panic!("not pinned by digest: {from}"));
        assert!(digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()), "bad digest: {from}");
    }
    let user = lines.iter().rev().find_map(|l| l.strip_prefix("USER ")).expect("no USER line");
    let uid = user.split(':').next().unwrap().trim();
    assert!(!["root", "0"].contains(&uid), "runtime user must not be root: {user}");
    let healthcheck = lines.iter().position(|l| l.starts_with("HEALTHCHECK")).expect("no HEALTHCHECK");
    assert!(
        lines[healthcheck..=healthcheck + 1].join(" ").contains("healthcheck"),
        "HEALTHCHECK must probe /ready"
    );
    assert!(lines.contains(&"EXPOSE 18789"));
    assert!(text.contains("CREWGATE_BIND=0.0.0.0:18789"));
    assert!(text.contains("VOLUME [\"/data\"]"));
    assert!(text.contains("cargo build --release --locked -p crewgate"));
    assert!(text.contains("SOUL.md") && text.contains("ENTRYPOINT"));
    assert!(!code(&text).contains("secrets/"), "secrets must never be copied into the image");
}

#[test]
fn compose_mounts_dstack_and_the_data_volume() {
    let text = read("docker-compose.yml");
    for expected in [
        "- /var/run/dstack.sock:/var/run/dstack.sock",
        "- crewgate-data:/data",
        "\n  crewgate-data:",
        "restart: unless-stopped",
        "\"18789:18789\"",
        "healthcheck:",
        "\"/usr/local/bin/crewgate\", \"healthcheck\"",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from docker-compose.yml");
    }
    assert!(
        text.lines().any(|l| l.trim().starts_with("image:") && l.contains("@sha256:")),
        "image by digest"
    );
    let documented = documented_vars();
    let missing: Vec<String> =
        referenced_vars(&text, true).into_iter().filter(|v| !documented.contains(v)).collect();
    assert!(missing.is_empty(), "compose uses variables .env.example does not document: {missing:?}");
    for name in entrypoint_list("REQUIRED_VARS").iter().chain(&entrypoint_list("S3_VARS")) {
        assert!(
            text.contains(&format!("{name}: ${{{name}")),
            "compose does not pass {name} to the container"
        );
    }
    // Schema check when a compose implementation is installed (Debian: `docker-compose`).
    let compose = Command::new("docker-compose")
        .arg("--env-file")
        .arg(deploy_dir().join("secrets/.env.example"))
        .arg("-f")
        .arg(deploy_dir().join("docker-compose.yml"))
        .args(["config", "-q"])
        .output();
    match compose {
        Ok(out) => assert!(out.status.success(), "docker-compose config:\n{}", output_text(&out)),
        Err(e) => eprintln!("NOTICE: docker-compose not available ({e}); compose schema check skipped"),
    }
}

#[test]
fn env_example_documents_every_variable_of_config_and_entrypoint() {
    let documented = documented_vars();
    let config = referenced_vars(&read("crewgate.jsonc"), true);
    assert!(config.contains("REDPILL_API_KEY") && config.contains("GOOGLE_CLIENT_ID"), "{config:?}");
    let script = read("entrypoint.sh");
    let script_constants = ["REQUIRED_VARS", "S3_VARS", "S3_REQUIRED_VARS"];
    let mut used: BTreeSet<String> = referenced_vars(&script, false)
        .into_iter()
        .filter(|v| !script_constants.contains(&v.as_str()))
        .collect();
    for list in script_constants {
        used.extend(entrypoint_list(list));
    }
    used.extend(config);
    let missing: Vec<&String> = used.iter().filter(|v| !documented.contains(*v)).collect();
    assert!(missing.is_empty(), "not documented in secrets/.env.example: {missing:?}");
    for name in [
        "REDPILL_API_KEY",
        "MASTER_KEY",
        "GOOGLE_CLIENT_ID",
        "GOOGLE_CLIENT_SECRET",
        "NOTION_API_KEY",
        "ATTIO_API_KEY",
        "S3_ENDPOINT",
        "S3_BUCKET",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
        "S3_REGION",
        "S3_PREFIX",
        "S3_PATH_STYLE",
        "ADMIN_TOKEN",
        "PUBLIC_URL",
        "CREWGATE_CONFIG",
    ] {
        assert!(documented.contains(name), "{name} is not documented");
    }
    // The example holds no secret values.
    for (k, v) in example_env() {
        if ["MASTER_KEY", "REDPILL_API_KEY", "GOOGLE_CLIENT_SECRET", "ADMIN_TOKEN", "S3_SECRET_ACCESS_KEY"]
            .contains(&k.as_str())
        {
            assert!(v.is_empty(), "{k} must be empty in the example");
        }
    }
}

#[test]
fn production_config_passes_config_check_with_the_example_env() {
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(deploy_dir().join("crewgate.jsonc"))
        .env_clear()
        .envs(example_env())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok"));
}

#[test]
fn entrypoint_is_shellcheck_clean() {
    let script = deploy_dir().join("entrypoint.sh");
    assert!(read("entrypoint.sh").starts_with("#!/bin/sh\n"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&script).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "entrypoint.sh must be executable");
    }
    match Command::new("shellcheck").args(["--shell=sh", "--severity=style"]).arg(&script).output() {
        Ok(out) => assert!(out.status.success(), "shellcheck:\n{}", output_text(&out)),
        Err(e) => eprintln!("NOTICE: shellcheck not available ({e}); skipped (apt-get install shellcheck)"),
    }
}
