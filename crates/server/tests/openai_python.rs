//! The stock OpenAI Python client against a real gateway (issue 4): non-streaming, streaming,
//! persistent sessions via `user`, models, and provider errors as readable exceptions.
//!
//! Needs a venv with `openai` (made by `crates/server/tests/python/setup-venv.sh`, default
//! `target/openai-venv`, or `CREWGATE_OPENAI_VENV`). Without it the test prints a notice and
//! passes, unless `CREWGATE_REQUIRE_PYTHON=1`, where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::gateway;
use crewgate_runtime::ToolRegistry;
use crewgate_testkit::fake_llm::{Matcher, Step};
use serde_json::Value;
use std::path::PathBuf;

fn venv_python() -> Option<PathBuf> {
    let venv = std::env::var_os("CREWGATE_OPENAI_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/openai-venv"));
    let python = venv.join("bin/python");
    python.exists().then_some(python)
}

#[tokio::test]
async fn stock_openai_python_client_talks_to_an_agent() {
    let Some(python) = venv_python() else {
        if std::env::var("CREWGATE_REQUIRE_PYTHON").is_ok_and(|v| v == "1") {
            panic!(
                "CREWGATE_REQUIRE_PYTHON=1 but no OpenAI venv: run crates/server/tests/python/setup-venv.sh"
            );
        }
        eprintln!("note: no OpenAI Python venv; skipping (run crates/server/tests/python/setup-venv.sh)");
        return;
    };
    let gw = gateway(ToolRegistry::with_defaults()).await;
    let alice = gw.person("alice@company.com").await;
    for _ in 0..3 {
        gw.llm.push_for(Matcher::contains("trigger failure"), Step::fail(500).message("upstream on fire"));
        gw.llm.push_for(Matcher::contains("trigger stream failure"), Step::fail(503));
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/openai_client.py");
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(format!("{}/v1", gw.base))
        .arg(&alice.token)
        .arg(&alice.agent_id)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python failed: {stderr}");
    let out: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    println!("openai python client saw: {out}");

    assert_eq!(out["non_stream"], "echo: hello from python");
    assert_eq!(out["model"], format!("crewgate/{}", alice.agent_id));
    assert_eq!(out["finish_reason"], "stop");
    assert!(out["usage_total"].as_u64().unwrap() > 0);
    assert_eq!(out["stream"], "echo: stream from python");
    assert!(out["stream_pieces"].as_u64().unwrap() > 2, "streamed in pieces");
    assert!(out["session"].is_string());
    assert_eq!(out["session"], out["session_again"], "`user` keeps one session");
    assert_eq!(out["second"], "echo: second in py-session");
    assert_eq!(out["models"], serde_json::json!([format!("crewgate/{}", alice.agent_id)]));
    assert_eq!(out["error_status"], 502);
    let msg = out["error_message"].as_str().unwrap();
    assert!(msg.contains("HTTP 500") && msg.contains("upstream on fire"), "{msg}");
    assert!(out["stream_error"].as_str().unwrap().contains("HTTP 503"), "{}", out["stream_error"]);
    assert_eq!(out["foreign_status"], 404);

    // The persistent session really carried the history to the model.
    let second = gw
        .llm
        .chat_requests()
        .into_iter()
        .find(|r| r.last_user_message().as_deref() == Some("second in py-session"))
        .unwrap();
    let texts: Vec<&str> = second.messages().iter().filter_map(|m| m["content"].as_str()).collect();
    assert_eq!(texts[1..], ["first in py-session", "echo: first in py-session", "second in py-session"]);
}
