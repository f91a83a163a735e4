//! The agent loop against the scriptable fake LLM over real HTTP, on a real SQLite store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crewgate_core::{AgentId, AgentKind, MasterKey};
use crewgate_llm::{LlmSettings, SecretString};
use crewgate_runtime::tools::StaticTool;
use crewgate_runtime::{
    Effect, Runtime, RuntimeError, RuntimeSettings, ToolManifest, ToolRegistry, TurnEvent, TurnRequest,
};
use crewgate_store::{NewAgent, NewUser, SqliteStore, Store};
use crewgate_testkit::fake_llm::{FakeLlm, ScriptedCall, Step};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

struct Env {
    llm: FakeLlm,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::from_hex(&SecretString::from("11".repeat(32))).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("db"), &key).await.unwrap());
    Env { llm: FakeLlm::builder().api_key("sk-fake").start().await, store, _dir: dir }
}

fn settings(llm: &FakeLlm) -> RuntimeSettings {
    let llm_settings = LlmSettings {
        max_retries: 2,
        retry_base_delay: Duration::from_millis(5),
        retry_max_delay: Duration::from_millis(50),
        stall_timeout: Duration::from_millis(400),
        timeout: Duration::from_secs(10),
        ..LlmSettings::new(llm.base_url(), Some(SecretString::from("sk-fake")))
    };
    RuntimeSettings::new(llm_settings, "fake/model")
}

async fn agent(store: &dyn Store, id: &str, settings: Value) -> AgentId {
    let owner = store
        .create_user(NewUser {
            email: format!("{id}@company.com"),
            name: Some(format!("Person {id}")),
            role: crewgate_core::Role::Member,
            status: crewgate_core::UserStatus::Active,
        })
        .await
        .unwrap();
    let a = store
        .create_agent(NewAgent {
            id: AgentId::parse(id).unwrap(),
            kind: AgentKind::Worker,
            owner: Some(owner.id),
            name: id.into(),
            settings,
        })
        .await
        .unwrap();
    a.id
}

fn calendar() -> Arc<StaticTool> {
    Arc::new(StaticTool::new(
        ToolManifest {
            name: "calendar_list_events".into(),
            description: "List upcoming calendar events.".into(),
            parameters: json!({"type":"object","properties":{"days":{"type":"integer","minimum":1}},"additionalProperties":false}),
            effect: Effect::Read,
        },
        json!({"events": [{"title": "Standup", "start": "09:00"}, {"title": "Board meeting", "start": "14:00"}]}),
    ))
}

fn registry_with(tools: &[Arc<StaticTool>]) -> ToolRegistry {
    let mut r = ToolRegistry::with_defaults();
    for t in tools {
        r.register(t.clone()).unwrap();
    }
    r
}

async fn drain(mut rx: mpsc::UnboundedReceiver<TurnEvent>) -> Vec<TurnEvent> {
    let mut out = Vec::new();
    while let Some(e) = rx.recv().await {
        out.push(e);
    }
    out
}

fn kinds(events: &[TurnEvent]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = events
        .iter()
        .map(|e| match e {
            TurnEvent::TurnStarted { .. } => "started",
            TurnEvent::UserMessage { .. } => "user",
            TurnEvent::Delta { .. } => "delta",
            TurnEvent::ToolCall { .. } => "tool_call",
            TurnEvent::ToolResult { .. } => "tool_result",
            TurnEvent::Proposal { .. } => "proposal",
            TurnEvent::Notice { .. } => "notice",
            TurnEvent::Final { .. } => "final",
            TurnEvent::Error { .. } => "error",
        })
        .collect();
    out.dedup();
    out
}

async fn turn(
    rt: &Runtime,
    agent: &AgentId,
    session: &str,
    text: &str,
) -> (Result<crewgate_runtime::TurnOutcome, RuntimeError>, Vec<TurnEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut req = TurnRequest::new(agent.clone(), session, text);
    req.events = Some(tx);
    let r = rt.run_turn(req).await;
    (r, drain(rx).await)
}

#[tokio::test]
async fn read_tool_result_is_fed_back_and_the_answer_streamed() {
    let e = env().await;
    let a = agent(
        e.store.as_ref(),
        "alice-company-com",
        json!({"identity": {"name": "Ada", "personality": "Warm and brief."}}),
    )
    .await;
    let cal = calendar();
    let rt = Runtime::new(e.store.clone(), settings(&e.llm), registry_with(std::slice::from_ref(&cal)));
    let s = rt.create_session(&a, None).await.unwrap();
    e.llm.push(Step::tool_call("calendar_list_events", json!({"days": 1})));
    e.llm.push(Step::text("You have Standup at 09:00 and a Board meeting at 14:00."));

    let (r, events) = turn(&rt, &a, &s.id, "what's on my calendar?").await;
    let out = r.unwrap();
    assert_eq!(out.reply.body, "You have Standup at 09:00 and a Board meeting at 14:00.");
    assert_eq!(kinds(&events), ["started", "user", "tool_call", "tool_result", "delta", "final"]);
    let streamed: String = events
        .iter()
        .filter_map(|e| if let TurnEvent::Delta { text, .. } = e { Some(text.as_str()) } else { None })
        .collect();
    assert_eq!(streamed, out.reply.body);
    assert!(events.iter().filter(|e| matches!(e, TurnEvent::Delta { .. })).count() > 3, "streamed in pieces");
    assert_eq!(cal.calls(), 1);

    let reqs = e.llm.chat_requests();
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs.iter()
            .all(|r| r.wants_stream() && r.model() == Some("fake/model") && r.user() == Some(s.id.as_str()))
    );
    let sys = reqs[0].system_prompt().unwrap();
    assert!(
        sys.contains("Your name is Ada.")
            && sys.contains("Warm and brief.")
            && sys.contains("alice-company-com@company.com"),
        "{sys}"
    );
    assert!(reqs[0].tool_names().contains(&"calendar_list_events".to_owned()));
    let results = reqs[1].tool_results();
    assert_eq!(results.len(), 1);
    assert!(results[0].content.contains("Board meeting"), "{results:?}");
    assert_eq!(results[0].tool_call_id, "call_0_0");

    // Everything is stored, sealed, in order; the next turn sends it back as history.
    let stored = e.store.list_messages(&a, &s.id).await.unwrap();
    assert_eq!(
        stored.iter().map(|m| m.role.as_str()).collect::<Vec<_>>(),
        ["user", "assistant", "tool", "assistant"]
    );
    assert_eq!(stored, out.stored);
    assert_eq!(e.store.get_session(&a, &s.id).await.unwrap().unwrap().title, "what's on my calendar?");
    e.llm.push(Step::text("ok"));
    turn(&rt, &a, &s.id, "thanks").await.0.unwrap();
    let third = &e.llm.chat_requests()[2];
    let roles: Vec<&str> = third.messages().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "assistant", "user"]);
    e.llm.assert_script_consumed();
}

#[tokio::test]
async fn provider_failures_retry_or_fail_clearly_and_the_session_stays_usable() {
    let e = env().await;
    let a = agent(e.store.as_ref(), "bob", json!({})).await;
    let rt = Runtime::new(e.store.clone(), settings(&e.llm), ToolRegistry::with_defaults());
    let s = rt.create_session(&a, Some("failures")).await.unwrap();

    // 429 then OK: retried invisibly.
    e.llm.push(Step::fail(429).retry_after(0));
    e.llm.push(Step::text("after the rate limit"));
    let (r, _) = turn(&rt, &a, &s.id, "one").await;
    assert_eq!(r.unwrap().reply.body, "after the rate limit");

    // 500 on every attempt: a readable error, stored for the person, never sent to the model.
    for _ in 0..3 {
        e.llm.push(Step::fail(500));
    }
    let (r, events) = turn(&rt, &a, &s.id, "two").await;
    let err = r.unwrap_err();
    assert!(matches!(err, RuntimeError::Llm(_)), "{err:?}");
    assert!(err.to_string().contains("HTTP 500 after 3 attempts"), "{err}");
    let Some(TurnEvent::Error { code, message, .. }) = events.last() else { panic!("{events:?}") };
    assert_eq!((code.as_str(), message.as_str()), ("llm_error", err.to_string().as_str()));

    // A stream that goes silent: the stall timeout ends it.
    e.llm.push(Step::stall(Duration::from_secs(3)));
    let err = turn(&rt, &a, &s.id, "three").await.0.unwrap_err();
    assert!(err.to_string().contains("stopped sending data"), "{err}");

    // A malformed stream.
    e.llm.push(Step::malformed_sse());
    let err = turn(&rt, &a, &s.id, "four").await.0.unwrap_err();
    assert!(err.to_string().contains("invalid stream"), "{err}");

    // An unusable key.
    e.llm.push(Step::fail(401));
    let err = turn(&rt, &a, &s.id, "five").await.0.unwrap_err();
    assert!(err.to_string().contains("check REDPILL_API_KEY"), "{err}");

    // Still usable; the failed turns are in the transcript for the person but not in the prompt.
    e.llm.push(Step::text("all good"));
    assert_eq!(turn(&rt, &a, &s.id, "six").await.0.unwrap().reply.body, "all good");
    let last = e.llm.chat_requests().pop().unwrap();
    let roles: Vec<&str> = last.messages().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user", "user", "user", "user", "user"]);
    let stored = e.store.list_messages(&a, &s.id).await.unwrap();
    assert_eq!(stored.iter().filter(|m| m.role == "error").count(), 4);
    e.llm.assert_script_consumed();
}

#[tokio::test]
async fn write_tools_never_run_and_bad_calls_are_explained_to_the_model() {
    let e = env().await;
    let a = agent(e.store.as_ref(), "carol", json!({})).await;
    let send = Arc::new(StaticTool::new(
        ToolManifest {
            name: "gmail_send".into(),
            description: "Send an e-mail.".into(),
            parameters: json!({"type":"object"}),
            effect: Effect::Write,
        },
        json!("sent"),
    ));
    let cal = calendar();
    let rt = Runtime::new(e.store.clone(), settings(&e.llm), registry_with(&[send.clone(), cal.clone()]));
    let s = rt.create_session(&a, None).await.unwrap();
    e.llm.push(Step::tool_calls([
        ScriptedCall::new("gmail_send", json!({"to": "x@evil.com"})),
        ScriptedCall::new("no_such_tool", json!({})),
        ScriptedCall::raw("calendar_list_events", "{not json"),
        ScriptedCall::new("calendar_list_events", json!({"days": "seven"})),
        ScriptedCall::new("calendar_list_events", json!({"days": 2})),
    ]));
    e.llm.push(Step::text("done"));
    let (r, events) = turn(&rt, &a, &s.id, "mail them").await;
    r.unwrap();
    assert_eq!(send.calls(), 0, "a write tool never runs from the model's call");
    assert_eq!(cal.calls(), 1, "only the valid call ran");
    let results = e.llm.chat_requests()[1].tool_results();
    assert_eq!(results.len(), 5);
    assert!(results[0].content.contains("is waiting for the person's approval"), "{}", results[0].content);
    assert!(results[1].content.contains("there is no tool \"no_such_tool\""), "{}", results[1].content);
    assert!(results[2].content.contains("not valid JSON"), "{}", results[2].content);
    assert!(
        results[3].content.contains("arguments.days must be an integer (got a string)"),
        "{}",
        results[3].content
    );
    assert!(results[4].content.contains("Standup"));
    let oks: Vec<bool> = events
        .iter()
        .filter_map(|e| if let TurnEvent::ToolResult { ok, .. } = e { Some(*ok) } else { None })
        .collect();
    assert_eq!(oks, [true, false, false, false, true], "the write became a proposal");
}

#[tokio::test]
async fn step_limit_and_turn_timeout_end_the_turn_cleanly() {
    let e = env().await;
    let a = agent(e.store.as_ref(), "dave", json!({})).await;
    let mut st = settings(&e.llm);
    st.max_steps = 3;
    let rt = Runtime::new(e.store.clone(), st, ToolRegistry::with_defaults());
    let s = rt.create_session(&a, None).await.unwrap();
    for _ in 0..3 {
        e.llm.push(Step::tool_call("current_time", json!({})));
    }
    let err = turn(&rt, &a, &s.id, "loop forever").await.0.unwrap_err();
    assert!(matches!(err, RuntimeError::StepLimit(3)), "{err:?}");
    let reqs = e.llm.chat_requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[2].body["tool_choice"], "none", "the last step asks for words");
    assert!(reqs[0].body.get("tool_choice").is_none());
    // The two completed tool rounds are stored as complete pairs.
    let roles: Vec<String> =
        e.store.list_messages(&a, &s.id).await.unwrap().into_iter().map(|m| m.role).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant", "tool", "error"]);

    let mut st = settings(&e.llm);
    st.turn_timeout = Duration::from_millis(300);
    let rt = Runtime::new(e.store.clone(), st, ToolRegistry::with_defaults());
    e.llm.push(Step::text("too late").delay(Duration::from_secs(2)));
    let started = std::time::Instant::now();
    let err = turn(&rt, &a, &s.id, "slow").await.0.unwrap_err();
    assert!(matches!(err, RuntimeError::TurnTimeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    e.llm.push(Step::text("fast"));
    assert_eq!(turn(&rt, &a, &s.id, "again").await.0.unwrap().reply.body, "fast");
}

#[tokio::test]
async fn turns_of_one_session_are_serialised() {
    let e = env().await;
    let a = agent(e.store.as_ref(), "erin", json!({})).await;
    let rt = Arc::new(Runtime::new(e.store.clone(), settings(&e.llm), ToolRegistry::new()));
    let s = rt.create_session(&a, None).await.unwrap();
    e.llm.push(Step::text("first answer").delay(Duration::from_millis(300)));
    e.llm.push(Step::text("second answer"));
    let (rt1, a1, s1) = (rt.clone(), a.clone(), s.id.clone());
    let first = tokio::spawn(async move { rt1.run_turn(TurnRequest::new(a1, s1, "first")).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = rt.run_turn(TurnRequest::new(a.clone(), s.id.clone(), "second")).await.unwrap();
    assert_eq!(first.await.unwrap().unwrap().reply.body, "first answer");
    assert_eq!(second.reply.body, "second answer");
    // The second turn started only after the first was stored: its prompt holds the first answer.
    let reqs = e.llm.chat_requests();
    assert_eq!(
        reqs[1].messages()[1..].iter().filter_map(|m| m["content"].as_str()).collect::<Vec<_>>(),
        ["first", "first answer", "second"]
    );
    assert!(reqs[1].body.get("tools").is_none(), "no tools → no tools field");
}

#[tokio::test]
async fn history_budget_drops_whole_old_exchanges() {
    let e = env().await;
    let a = agent(e.store.as_ref(), "fred", json!({})).await;
    let mut st = settings(&e.llm);
    st.history_budget_tokens = 300;
    let rt = Runtime::new(e.store.clone(), st, ToolRegistry::new());
    let s = rt.create_session(&a, None).await.unwrap();
    for i in 0..6 {
        e.llm.push(Step::text(format!("answer {i} {}", "z".repeat(400))));
        turn(&rt, &a, &s.id, &format!("question {i}")).await.0.unwrap();
    }
    let last = e.llm.chat_requests().pop().unwrap();
    let texts: Vec<String> =
        last.messages().iter().map(|m| m["content"].as_str().unwrap_or("").to_owned()).collect();
    // ~110 tokens per old exchange: two fit beside the current message, three are dropped.
    assert!(texts[1].contains("6 earlier messages"), "{texts:?}");
    assert!(texts[2] == "question 3" && texts.last().unwrap() == "question 5", "{texts:?}");
}

#[tokio::test]
async fn persona_soul_and_per_agent_model() {
    let e = env().await;
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("SOUL.md"), "Always sign off with a haiku.").unwrap();
    let a = agent(
        e.store.as_ref(),
        "gina",
        json!({"model": "special/model", "workspace": ws.path().to_str().unwrap(), "identity": {"name": "Gus"}}),
    )
    .await;
    let rt = Runtime::new(e.store.clone(), settings(&e.llm), ToolRegistry::with_defaults());
    let s = rt.create_session(&a, None).await.unwrap();
    turn(&rt, &a, &s.id, "hi").await.0.unwrap();
    let r = &e.llm.chat_requests()[0];
    assert_eq!(r.model(), Some("special/model"));
    let sys = r.system_prompt().unwrap();
    assert!(
        sys.contains("Your name is Gus.") && sys.contains("## Soul\nAlways sign off with a haiku."),
        "{sys}"
    );
    assert!(sys.contains("Text inside tool results"), "base instructions from prompts/base.md");
}

#[tokio::test]
async fn bad_input_and_missing_configuration_change_nothing() {
    let e = env().await;
    let a = agent(e.store.as_ref(), "hank", json!({})).await;
    let b = agent(e.store.as_ref(), "ivy", json!({})).await;
    let rt = Runtime::new(e.store.clone(), settings(&e.llm), ToolRegistry::with_defaults());
    let s = rt.create_session(&a, None).await.unwrap();
    let err = rt.run_turn(TurnRequest::new(a.clone(), &s.id, "   ")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidInput(_)));
    let err = rt.run_turn(TurnRequest::new(a.clone(), &s.id, "x".repeat(40_000))).await.unwrap_err();
    assert!(err.to_string().contains("longer than 32000"), "{err}");
    // Another agent's session looks like no session at all.
    let err = rt.run_turn(TurnRequest::new(b.clone(), &s.id, "hello")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::SessionNotFound));
    assert!(matches!(rt.subscribe(&b, &s.id).await, Err(RuntimeError::SessionNotFound)));

    // The default provider without a key fails up front, without storing or sending anything.
    let unconfigured = Runtime::with_defaults(e.store.clone());
    let err = unconfigured.run_turn(TurnRequest::new(a.clone(), &s.id, "hello")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::LlmNotConfigured), "{err:?}");
    assert!(err.to_string().contains("REDPILL_API_KEY"));
    assert!(e.store.list_messages(&a, &s.id).await.unwrap().is_empty());
    assert!(e.llm.chat_requests().is_empty());
}

#[tokio::test]
async fn subscribers_see_every_turn_of_their_session_only() {
    let e = env().await;
    let a = agent(e.store.as_ref(), "jack", json!({})).await;
    let rt = Runtime::new(e.store.clone(), settings(&e.llm), ToolRegistry::new());
    let s1 = rt.create_session(&a, None).await.unwrap();
    let s2 = rt.create_session(&a, None).await.unwrap();
    let mut rx = rt.subscribe(&a, &s1.id).await.unwrap();
    rt.run_turn(TurnRequest::new(a.clone(), &s2.id, "elsewhere")).await.unwrap();
    rt.run_turn(TurnRequest::new(a.clone(), &s1.id, "here")).await.unwrap();
    let mut got = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        got.push(ev);
    }
    assert!(got.iter().all(|ev| ev.session() == s1.id));
    let Some(TurnEvent::Final { message, .. }) = got.last() else { panic!("{got:?}") };
    assert_eq!(message.body, "echo: here");
}

/// Prints the prompt size for a two-word message with the default tool set (issue 4's
/// measurement; the benchmark prints the same figure) and keeps it well under the 2k target.
#[tokio::test]
async fn prompt_tokens_for_a_two_word_message() {
    let e = env().await;
    let a = agent(e.store.as_ref(), "kim", json!({"identity": {"name": "Kim's agent"}})).await;
    let rt = Runtime::new(e.store.clone(), settings(&e.llm), ToolRegistry::with_defaults());
    let p = rt.preview_prompt(&a, "hello there").await.unwrap();
    let s = rt.create_session(&a, None).await.unwrap();
    turn(&rt, &a, &s.id, "hello there").await.0.unwrap();
    let fake_count = e.llm.chat_requests()[0].body["messages"].as_array().unwrap().len();
    println!(
        "prompt tokens for a 2-word message with the default tools ({}): ~{} estimated (system {}, tools {}); {} messages",
        rt.tools().names().join(", "),
        p.estimated_tokens,
        p.system_tokens,
        p.tools_tokens,
        fake_count
    );
    assert!(p.estimated_tokens > 100 && p.estimated_tokens < 1000, "{}", p.estimated_tokens);
}

#[tokio::test]
async fn a_cancelled_turn_ends_for_subscribers_and_frees_the_session() {
    let e = env().await;
    let a = agent(e.store.as_ref(), "lena", json!({})).await;
    let rt = Arc::new(Runtime::new(e.store.clone(), settings(&e.llm), ToolRegistry::new()));
    let s = rt.create_session(&a, None).await.unwrap();
    let mut rx = rt.subscribe(&a, &s.id).await.unwrap();
    e.llm.push(Step::text("never delivered").delay(Duration::from_secs(5)));
    let (rt2, a2, s2) = (rt.clone(), a.clone(), s.id.clone());
    let task = tokio::spawn(async move { rt2.run_turn(TurnRequest::new(a2, s2, "slow one")).await });
    e.llm.wait_for_requests(1, Duration::from_secs(5)).await.unwrap();
    task.abort();
    let mut last = None;
    while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
        let end = ev.is_terminal();
        last = Some(ev);
        if end {
            break;
        }
    }
    let Some(TurnEvent::Error { code, .. }) = last else { panic!("{last:?}") };
    assert_eq!(code, "cancelled");
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        rt.run_turn(TurnRequest::new(a.clone(), &s.id, "again")),
    )
    .await
    .expect("the session lock was released")
    .unwrap();
    assert_eq!(out.reply.body, "echo: again");
}
