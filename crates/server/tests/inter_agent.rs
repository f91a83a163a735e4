//! Inter-agent messaging through the real server: a worker escalates to the orchestrator, its
//! owner approves over REST, and the orchestrator's reply shows up in the worker's chat. The
//! admin sees the message in the orchestrator's inter-agent session, marked as from the agent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::gateway;
use crewgate_core::AgentKind;
use crewgate_runtime::ToolRegistry;
use crewgate_server::ops::{self, Actor, CreateAgent};
use crewgate_testkit::fake_llm::Step;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_worker_escalates_to_the_orchestrator_after_its_owner_approves_over_rest() {
    let gw = gateway(ToolRegistry::with_defaults()).await;
    gw.runtime.enable_inter_agent();
    ops::create_agent(
        gw.store.as_ref(),
        &Actor::System,
        CreateAgent {
            id: Some("orchestrator".into()),
            kind: Some(AgentKind::Orchestrator),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let alice = gw.person("alice@company.com").await;
    let bob = gw.person("bob@company.com").await;
    let s = gw.new_session(&alice).await;

    gw.llm.push(Step::tool_call(
        "sessions_send",
        json!({"to": "orchestrator", "message": "Who approves travel expenses?", "wait": true}),
    ));
    gw.llm.push(Step::text("I asked the orchestrator."));
    let (st, v) = gw
        .call(
            "POST",
            &format!("/api/v1/sessions/{s}/messages"),
            &alice.token,
            Some(json!({"content": "ask the orchestrator who approves travel expenses"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let p = v["proposals"][0].clone();
    assert_eq!((p["tool"].as_str(), p["state"].as_str()), (Some("sessions_send"), Some("pending")), "{v}");
    let id = p["id"].as_str().unwrap();
    assert!(gw.llm.chat_requests()[0].tool_names().contains(&"sessions_send".to_owned()));

    // Another person cannot decide it; the orchestrator has not run.
    let (st, _) = gw.call("POST", &format!("/api/v1/proposals/{id}/approve"), &bob.token, None).await;
    assert_eq!(st, 404);
    assert_eq!(gw.llm.chat_requests().len(), 2);

    gw.llm.push(Step::text("Your team lead approves them in the expenses tool."));
    let (st, v) = gw.call("POST", &format!("/api/v1/proposals/{id}/approve"), &alice.token, None).await;
    assert_eq!((st, v["state"].as_str()), (200, Some("done")), "{v}");
    assert_eq!(v["result"]["output"]["status"], "replied");

    // The reply is posted into Alice's chat.
    let want = format!(
        "✅ #{} Message agent orchestrator: done.\n\n📨 orchestrator replied:\n\nYour team lead approves them in the expenses tool.",
        p["number"]
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, msgs) = gw.call("GET", &format!("/api/v1/sessions/{s}/messages"), &alice.token, None).await;
        let bodies: Vec<&str> = msgs.as_array().unwrap().iter().filter_map(|m| m["body"].as_str()).collect();
        if bodies.contains(&want.as_str()) {
            break;
        }
        assert!(Instant::now() < deadline, "no reply in the worker's chat: {bodies:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The orchestrator's side: one inter-agent session, the message marked as from the agent.
    let (st, sessions) = gw.call("GET", "/api/v1/sessions?agent=orchestrator", &gw.admin, None).await;
    assert_eq!(st, 200, "{sessions}");
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["title"], "From alice-company-com");
    let sid = sessions[0]["id"].as_str().unwrap();
    let (_, msgs) =
        gw.call("GET", &format!("/api/v1/sessions/{sid}/messages?agent=orchestrator"), &gw.admin, None).await;
    let msgs: &Vec<Value> = msgs.as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    let incoming = msgs[0]["body"].as_str().unwrap();
    assert!(incoming.starts_with("📨 Message from agent alice-company-com (another agent, not your owner)"));
    assert!(incoming.ends_with("\n\nWho approves travel expenses?"));
    assert_eq!(msgs[1]["body"], "Your team lead approves them in the expenses tool.");
    // Alice cannot see the orchestrator's sessions.
    let (st, _) = gw.call("GET", "/api/v1/sessions?agent=orchestrator", &alice.token, None).await;
    assert_ne!(st, 200);
    gw.llm.assert_script_consumed();
}
