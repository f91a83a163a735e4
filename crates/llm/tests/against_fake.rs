//! `LlmClient` against the testkit fake LLM over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use crewgate_llm::{
    ChatRequest, LlmClient, LlmError, LlmSettings, Message, SecretString, StreamEvent, ToolCall, ToolDef,
};
use crewgate_testkit::fake_llm::{
    FakeLlm, Matcher, Responder, ScriptedCall, Step, StreamOutcome, ToolResult,
};
use futures::StreamExt;
use serde_json::json;

const KEY: &str = "sk-test";

fn settings(llm: &FakeLlm) -> LlmSettings {
    LlmSettings {
        max_retries: 2,
        retry_base_delay: Duration::from_millis(10),
        retry_max_delay: Duration::from_secs(5),
        ..LlmSettings::new(llm.base_url(), Some(SecretString::from(KEY)))
    }
}

fn client(llm: &FakeLlm) -> LlmClient {
    LlmClient::new(settings(llm)).unwrap()
}

async fn fake() -> FakeLlm {
    FakeLlm::builder().api_key(KEY).start().await
}

fn req(text: &str) -> ChatRequest {
    ChatRequest::new("test/model", vec![Message::system("be brief"), Message::user(text)])
}

fn calendar_tool() -> ToolDef {
    ToolDef::function(
        "calendar_list_events",
        "List upcoming events",
        json!({"type":"object","properties":{"days":{"type":"integer"}},"required":["days"]}),
    )
}

#[tokio::test]
async fn plain_text_completion() {
    let llm = fake().await;
    llm.push(Step::text("hello"));
    let resp = client(&llm).complete(&req("hi")).await.unwrap();
    assert_eq!(resp.message().unwrap().content.as_deref(), Some("hello"));
    assert_eq!(resp.finish_reason(), Some("stop"));
    assert_eq!(resp.id, "chatcmpl-fake-0");
    assert!(resp.usage.unwrap().total_tokens > 0);

    let r = &llm.requests()[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/v1/chat/completions"));
    assert_eq!(r.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.model(), Some("test/model"));
    assert_eq!(r.last_user_message().as_deref(), Some("hi"));
    assert!(!r.wants_stream());
    assert_eq!(r.body.get("tools"), None, "empty tools must not be sent");
}

#[tokio::test]
async fn tool_call_round_trip() {
    let llm = fake().await;
    llm.push(Step::tool_call("calendar_list_events", json!({"days": 7})));
    llm.push(Step::text("You have 3 meetings."));
    let c = client(&llm);

    let mut request = req("what's on my calendar?").with_tools(vec![calendar_tool()]);
    let first = c.complete(&request).await.unwrap();
    assert_eq!(first.finish_reason(), Some("tool_calls"));
    let msg = first.message().unwrap().clone();
    assert_eq!(msg.content, None);
    assert_eq!(msg.tool_calls.len(), 1);
    let call = &msg.tool_calls[0];
    assert_eq!(call.function.name, "calendar_list_events");
    assert_eq!(call.arguments_json().unwrap(), json!({"days": 7}));

    request.messages.push(msg.clone());
    request.messages.push(Message::tool(call.id.clone(), r#"{"events":3}"#));
    let second = c.complete(&request).await.unwrap();
    assert_eq!(second.message().unwrap().text(), "You have 3 meetings.");

    let recorded = llm.requests();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0].tool_names(), vec!["calendar_list_events"]);
    assert!(recorded[0].tool_results().is_empty());
    assert_eq!(
        recorded[1].tool_results(),
        vec![ToolResult { tool_call_id: call.id.clone(), content: r#"{"events":3}"#.into() }]
    );
    assert_eq!(
        recorded[1].messages()[2]["tool_calls"][0]["id"],
        json!(call.id),
        "the assistant tool call is sent back before its result"
    );
    assert_eq!(llm.pending_steps(), 0);
}

#[tokio::test]
async fn streaming_text_deltas_arrive_in_order() {
    let llm = fake().await;
    let text = "The quick brown fox jumps over the lazy dog, twice.";
    llm.push(Step::text(text));
    let mut stream = client(&llm).stream(&req("tell me")).await.unwrap();
    let mut deltas = Vec::new();
    let mut done = None;
    while let Some(ev) = stream.next().await {
        match ev.unwrap() {
            StreamEvent::TextDelta(t) => {
                assert!(done.is_none(), "no delta after Done");
                deltas.push(t);
            }
            StreamEvent::Done { finish_reason, usage } => done = Some((finish_reason, usage)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(deltas.len() >= 5, "text must arrive in several deltas: {deltas:?}");
    assert_eq!(deltas.concat(), text);
    let (finish_reason, usage) = done.expect("Done event");
    assert_eq!(finish_reason.as_deref(), Some("stop"));
    assert!(usage.expect("usage requested via stream_options").completion_tokens > 0);
    assert_eq!(stream.response_id(), Some("chatcmpl-fake-0"));

    let r = &llm.requests()[0];
    assert!(r.wants_stream());
    assert_eq!(r.body["stream_options"], json!({"include_usage": true}));
    assert_eq!(r.header("accept"), Some("text/event-stream"));
    assert_eq!(llm.wait_for_stream_end(0, Duration::from_secs(5)).await.unwrap(), StreamOutcome::Completed);
}

#[tokio::test]
async fn stream_collect_accumulates_parallel_tool_calls() {
    let llm = fake().await;
    llm.push(
        Step::tool_calls([
            ScriptedCall::new("calendar_list_events", json!({"days": 7})),
            ScriptedCall::new("gmail_search", json!({"query": "from:bob is:unread"})).with_id("call_b"),
        ])
        .with_text("Checking."),
    );
    let mut seen = String::new();
    let resp = client(&llm)
        .stream_collect(&req("agenda?").with_tools(vec![calendar_tool()]), |d| seen.push_str(d))
        .await
        .unwrap();
    let msg = resp.message().unwrap();
    assert_eq!(seen, "Checking.");
    assert_eq!(msg.content.as_deref(), Some("Checking."));
    assert_eq!(
        msg.tool_calls,
        vec![
            ToolCall::new("call_0_0", "calendar_list_events", r#"{"days":7}"#),
            ToolCall::new("call_b", "gmail_search", r#"{"query":"from:bob is:unread"}"#),
        ]
    );
    assert_eq!(resp.finish_reason(), Some("tool_calls"));
    assert_eq!(resp.id, "chatcmpl-fake-0");
    assert_eq!(resp.model, "test/model");
}

#[tokio::test]
async fn quirky_stream_accumulates_correctly() {
    let llm = FakeLlm::builder().api_key(KEY).quirky().start().await;
    let text = "Grüße aus Zürich 🎉 — ça va? 日本語のテキスト";
    llm.push(Step::text(text));
    llm.push(Step::tool_call("calendar_list_events", json!({"days": 7, "title": "Café ☕ 会議"})));
    let c = client(&llm);

    let mut seen = Vec::new();
    let resp = c.stream_collect(&req("hi"), |d| seen.push(d.to_owned())).await.unwrap();
    assert_eq!(resp.message().unwrap().text(), text);
    assert!(seen.len() > 3, "{seen:?}");
    assert_eq!(seen.concat(), text);
    assert_eq!(resp.usage.unwrap().total_tokens, {
        let u = resp.usage.unwrap();
        u.prompt_tokens + u.completion_tokens
    });

    // Every delta repeats id + name and carries a duplicate legacy `function_call`.
    let resp = c.stream_collect(&req("agenda"), |_| {}).await.unwrap();
    let msg = resp.message().unwrap();
    assert_eq!(msg.tool_calls.len(), 1, "{msg:?}");
    assert_eq!(msg.tool_calls[0].id, "call_1_0");
    assert_eq!(msg.tool_calls[0].function.name, "calendar_list_events");
    assert_eq!(msg.tool_calls[0].arguments_json().unwrap(), json!({"days": 7, "title": "Café ☕ 会議"}));
}

#[tokio::test]
async fn rate_limit_with_retry_after_is_retried() {
    let llm = fake().await;
    llm.push(Step::fail(429).retry_after(1));
    llm.push(Step::text("ok"));
    let started = Instant::now();
    let resp = client(&llm).complete(&req("hi")).await.unwrap();
    assert_eq!(resp.message().unwrap().text(), "ok");
    assert_eq!(llm.request_count(), 2, "one retry");
    let statuses: Vec<u16> = llm.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 200]);
    // Retry-After: 1 was honoured rather than the 10 ms base backoff (lower bound only).
    assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());
}

#[tokio::test]
async fn rate_limit_after_all_retries_tells_when_to_retry() {
    let llm = fake().await;
    for _ in 0..3 {
        llm.push(Step::fail(429).retry_after(0).message("Rate limit reached for deepseek"));
    }
    llm.push(Step::text("not reached"));
    let err = client(&llm).complete(&req("hi")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "provider rate limit (HTTP 429 after 3 attempts): \"Rate limit reached for deepseek\" (rate_limit_error); try again in 1 s"
    );
    assert_eq!(llm.request_count(), 3);
    assert_eq!(llm.pending_steps(), 1);
}

#[tokio::test]
async fn server_errors_exhaust_retries_with_clear_message() {
    let llm = fake().await;
    for _ in 0..3 {
        llm.push(Step::fail(500).message("boom"));
    }
    llm.push(Step::text("not reached"));
    let err = client(&llm).complete(&req("hi")).await.unwrap_err();
    assert!(matches!(err, LlmError::Server { status: 500, attempts: 3, .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the LLM provider failed with HTTP 500 after 3 attempts: \"boom\" (server_error); try again later or configure another llm.model / llm.baseUrl"
    );
    assert_eq!(llm.request_count(), 3, "max_retries = 2 → 3 attempts");
    assert_eq!(llm.pending_steps(), 1);
}

#[tokio::test]
async fn streaming_request_retries_503_before_streaming() {
    let llm = fake().await;
    llm.push(Step::fail(503));
    llm.push(Step::text("after retry"));
    let resp = client(&llm).stream_collect(&req("hi"), |_| {}).await.unwrap();
    assert_eq!(resp.message().unwrap().text(), "after retry");
    assert_eq!(llm.request_count(), 2);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let llm = fake().await;
    llm.push(Step::fail(404).message("The model `nope` does not exist"));
    llm.push(Step::text("not reached"));
    let err = client(&llm).complete(&req("hi")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the LLM provider rejected the request (HTTP 404): \"The model `nope` does not exist\" (not_found_error); check llm.model and llm.baseUrl"
    );
    assert_eq!(llm.request_count(), 1);
}

#[tokio::test]
async fn wrong_key_gives_401_message_about_the_key() {
    let llm = fake().await;
    let mut s = settings(&llm);
    s.api_key = Some(SecretString::from("sk-wrong"));
    let err = LlmClient::new(s).unwrap().complete(&req("hi")).await.unwrap_err();
    assert!(matches!(err, LlmError::Unauthorized { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the LLM provider rejected the API key (HTTP 401): \"Incorrect API key provided.\" (authentication_error, invalid_api_key); check REDPILL_API_KEY / llm.apiKey"
    );
    assert_eq!(llm.request_count(), 1, "401 is not retried");
    assert!(!format!("{err:?}").contains("sk-wrong"), "the key never appears in errors");
    let c = client(&llm);
    assert!(!format!("{c:?} {:?}", c.settings()).contains(KEY), "nor in Debug output");

    let mut s = settings(&llm);
    s.api_key = None;
    let err = LlmClient::new(s).unwrap().stream(&req("hi")).await.unwrap_err();
    assert!(err.to_string().contains("You didn't provide an API key"), "{err}");
    assert!(err.to_string().contains("check REDPILL_API_KEY / llm.apiKey"), "{err}");
}

#[tokio::test]
async fn stall_hits_the_stall_timeout() {
    let llm = fake().await;
    llm.push(Step::stall(Duration::from_secs(30)));
    let mut s = settings(&llm);
    s.stall_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let mut stream = LlmClient::new(s).unwrap().stream(&req("hi")).await.unwrap();
    let err = stream.next().await.unwrap().unwrap_err();
    assert!(matches!(err, LlmError::Stalled { .. }), "{err:?}");
    assert_eq!(err.to_string(), "the model stopped sending data for 0.3 s (stall timeout); try again");
    assert!(stream.next().await.is_none(), "the stream ends after an error");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(llm.request_count(), 1, "a stall is not retried");
    assert_eq!(
        llm.wait_for_stream_end(0, Duration::from_secs(5)).await.unwrap(),
        StreamOutcome::ClientDisconnected,
        "the client closed the stalled connection"
    );
}

#[tokio::test]
async fn slow_non_streaming_answer_hits_the_timeout() {
    let llm = fake().await;
    llm.push(Step::text("late").delay(Duration::from_secs(30)));
    let mut s = settings(&llm);
    s.timeout = Duration::from_millis(300);
    let err = LlmClient::new(s).unwrap().complete(&req("hi")).await.unwrap_err();
    assert!(matches!(err, LlmError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().starts_with("the model did not answer within 0.3 s"), "{err}");
    assert!(std::error::Error::source(&err).is_some(), "cause kept");
    assert_eq!(llm.request_count(), 1);
}

#[tokio::test]
async fn malformed_stream_and_body_give_clear_errors() {
    let llm = fake().await;
    llm.push(Step::malformed_sse());
    llm.push(Step::malformed_sse());
    let c = client(&llm);
    let err = c.stream_collect(&req("hi"), |_| {}).await.unwrap_err();
    assert!(matches!(err, LlmError::InvalidStream { .. }), "{err:?}");
    assert!(err.to_string().starts_with("provider sent an invalid stream (a chunk is not JSON"), "{err}");
    assert!(std::error::Error::source(&err).is_some(), "JSON error kept as cause");

    let err = c.complete(&req("hi")).await.unwrap_err();
    assert!(err.to_string().starts_with("provider sent an invalid response (the body is not JSON"), "{err}");
    assert_eq!(llm.request_count(), 2, "invalid answers are not retried");
}

#[tokio::test]
async fn dropping_a_stream_midway_closes_the_connection() {
    let llm = FakeLlm::builder().api_key(KEY).chunk_delay(Duration::from_millis(20)).start().await;
    llm.push(Step::text("word ".repeat(400)));
    let mut stream = client(&llm).stream(&req("long story")).await.unwrap();
    for _ in 0..2 {
        assert!(matches!(stream.next().await.unwrap().unwrap(), StreamEvent::TextDelta(_)));
    }
    drop(stream);
    let outcome = llm.wait_for_stream_end(0, Duration::from_secs(5)).await.unwrap();
    assert_eq!(outcome, StreamOutcome::ClientDisconnected);
}

#[tokio::test]
async fn broken_stream_is_retried_only_before_the_first_event() {
    let llm = fake().await;
    llm.push(Step::text("lost").disconnect_after(0));
    llm.push(Step::text("hello world"));
    let c = client(&llm);
    let resp = c.stream_collect(&req("hi"), |_| {}).await.unwrap();
    assert_eq!(resp.message().unwrap().text(), "hello world");
    assert_eq!(llm.request_count(), 2);

    llm.push(Step::text("one two three four").disconnect_after(2));
    llm.push(Step::text("not reached"));
    let mut seen = String::new();
    let err = c.stream_collect(&req("hi"), |d| seen.push_str(d)).await.unwrap_err();
    assert!(matches!(err, LlmError::Transport { .. }), "{err:?}");
    assert_eq!(err.to_string(), "the connection to the LLM provider broke; try again");
    assert_eq!(seen, "one two ", "two deltas arrived before the break");
    assert_eq!(llm.request_count(), 3);
    assert_eq!(llm.pending_steps(), 1);
}

#[tokio::test]
async fn unreachable_server_is_a_connect_error_after_retries() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = LlmClient::new(LlmSettings {
        max_retries: 2,
        retry_base_delay: Duration::from_millis(5),
        ..LlmSettings::new(format!("http://127.0.0.1:{port}/v1/"), None)
    })
    .unwrap();
    let err = c.complete(&req("hi")).await.unwrap_err();
    assert!(matches!(err, LlmError::Connect { attempts: 3, .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "could not connect to the LLM provider at http://127.0.0.1:{port}/v1/chat/completions after 3 attempts; check llm.baseUrl and the network"
        )
    );
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test]
async fn list_models() {
    let llm = FakeLlm::builder()
        .api_key(KEY)
        .models(["deepseek/deepseek-v3.2", "phala/gpt-oss-120b"])
        .start()
        .await;
    let models = client(&llm).list_models().await.unwrap();
    let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, vec!["deepseek/deepseek-v3.2", "phala/gpt-oss-120b"]);
    let r = &llm.requests()[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/v1/models"));
}

#[tokio::test]
async fn fake_rejects_invalid_conversations_like_a_real_api() {
    let llm = fake().await;
    let bad =
        ChatRequest::new("test/model", vec![Message::user("hi"), Message::tool("call_nowhere", "result")]);
    let err = client(&llm).complete(&bad).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(
        err.to_string().contains("must be a response to a preceeding message with 'tool_calls'"),
        "{err}"
    );
    assert_eq!(llm.requests()[0].status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_get_their_own_script() {
    let llm = fake().await;
    let n = 50;
    for i in 0..n {
        llm.push_for(Matcher::user(format!("s{i}")), Step::text(format!("scripted for s{i}")));
    }
    let c = client(&llm);
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                let first = c
                    .stream_collect(&req(&format!("hello from {i}")).with_user(format!("s{i}")), |_| {})
                    .await
                    .unwrap();
                let second =
                    c.complete(&req(&format!("again from {i}")).with_user(format!("s{i}"))).await.unwrap();
                (i, first.message().unwrap().text().to_owned(), second.message().unwrap().text().to_owned())
            })
        })
        .collect();
    for t in tasks {
        let (i, first, second) = t.await.unwrap();
        assert_eq!(first, format!("scripted for s{i}"));
        assert_eq!(second, format!("echo: again from {i}"), "default Echo responder");
    }
    assert_eq!(llm.wait_for_requests(2 * n, Duration::from_secs(5)).await.unwrap().len(), 2 * n);
    assert_eq!(llm.pending_steps(), 0);
}

#[tokio::test]
async fn fake_reports_delay_and_own_processing_time() {
    let llm = fake().await;
    llm.set_default(Responder::from_fn(|r| {
        Step::text(format!("{} messages", r.messages().len())).delay(Duration::from_millis(200))
    }));
    let resp = client(&llm).complete(&req("hi")).await.unwrap();
    assert_eq!(resp.message().unwrap().text(), "2 messages");
    let r = &llm.requests()[0];
    assert_eq!(r.simulated_delay, Duration::from_millis(200));
    assert!(r.processing_time < Duration::from_millis(200), "{:?}", r.processing_time);

    llm.set_default(Responder::text("ok"));
    let resp = client(&llm).complete(&req("hi")).await.unwrap();
    assert_eq!(resp.message().unwrap().text(), "ok");
}
