//! Chat surfaces end to end over real HTTP/WebSocket: sessions REST, `/api/v1/ws`,
//! `/v1/chat/completions`, `/v1/models`, against the scriptable fake LLM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Gateway, calendar_tool, gateway, gateway_with, types};
use crewgate_runtime::ToolRegistry;
use crewgate_testkit::fake_llm::Step;
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

fn with_calendar() -> ToolRegistry {
    let mut r = ToolRegistry::with_defaults();
    r.register(calendar_tool()).unwrap();
    r
}

/// Issue 4's acceptance test: a user token asks over the WebSocket, the model calls a read tool,
/// the result goes back to the model, and the answer streams to the client.
#[tokio::test]
async fn ws_calendar_question_runs_the_read_tool_and_streams_the_answer() {
    let gw = gateway(with_calendar()).await;
    let alice = gw.person("alice@company.com").await;
    gw.llm.push(Step::tool_call("calendar_list_events", json!({"days": 1})));
    gw.llm
        .push(Step::text("Tomorrow you have Standup at 09:00 and the Quarterly review with Dana at 15:00."));

    let mut ws = gw.ws(&alice.token).await;
    ws.send(json!({"type": "send", "content": "what's on my calendar?", "request_id": 7})).await;
    let session = ws.next_json().await;
    assert_eq!((session["type"].as_str(), session["request_id"].as_i64()), (Some("session"), Some(7)));
    let accepted = ws.next_json().await;
    assert_eq!(accepted["type"], "accepted", "{accepted}");
    let events = ws.until_turn_end().await;
    assert_eq!(
        types(&events),
        ["turn_started", "user_message", "tool_call", "tool_result", "delta", "final"],
        "{events:#?}"
    );
    assert!(events.iter().all(|e| e["turn"] == accepted["turn"] && e["session"] == accepted["session"]));
    let tool_call = events.iter().find(|e| e["type"] == "tool_call").unwrap();
    assert_eq!(tool_call["name"], "calendar_list_events");
    let tool_result = events.iter().find(|e| e["type"] == "tool_result").unwrap();
    assert!(
        tool_result["ok"].as_bool().unwrap() && tool_result["preview"].as_str().unwrap().contains("Standup")
    );
    let deltas: Vec<&str> =
        events.iter().filter(|e| e["type"] == "delta").map(|e| e["text"].as_str().unwrap()).collect();
    assert!(deltas.len() > 3, "the answer is streamed in pieces: {deltas:?}");
    let final_body = events.last().unwrap()["message"]["body"].as_str().unwrap();
    assert_eq!(deltas.concat(), final_body);
    assert!(final_body.contains("Quarterly review"));

    // The recorded second LLM request carries the tool result.
    let reqs = gw.llm.chat_requests();
    assert_eq!(reqs.len(), 2);
    let results = reqs[1].tool_results();
    assert_eq!(results.len(), 1);
    assert!(results[0].content.contains("Quarterly review with Dana"), "{results:?}");
    assert_eq!(results[0].tool_call_id, tool_call["call_id"].as_str().unwrap());

    // The transcript is readable over REST afterwards (and sealed at rest by the store).
    let sid = accepted["session"].as_str().unwrap();
    let (s, msgs) = gw.call("GET", &format!("/api/v1/sessions/{sid}/messages"), &alice.token, None).await;
    assert_eq!(s, 200);
    let roles: Vec<&str> = msgs.as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
    assert_eq!(msgs[1]["tool_calls"][0]["name"], "calendar_list_events");
}

#[tokio::test]
async fn ws_accepts_subprotocol_and_first_message_auth_but_never_a_url_token() {
    let gw = gateway(ToolRegistry::with_defaults()).await;
    let alice = gw.person("alice@company.com").await;

    // Browser style: token as a subprotocol; the server selects `crewgate.v1`, never the token.
    let mut req = gw.ws_url.as_str().into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&format!("crewgate.v1, crewgate.bearer.{}", alice.token)).unwrap(),
    );
    let (mut stream, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.headers().get("sec-websocket-protocol").unwrap(), "crewgate.v1");
    let ready: Value = match stream.next().await.unwrap().unwrap() {
        tokio_tungstenite::tungstenite::Message::Text(t) => serde_json::from_str(&t).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (ready["type"].as_str(), ready["agent"].as_str()),
        (Some("ready"), Some(alice.agent_id.as_str()))
    );

    // First-message auth.
    let (stream, _) = tokio_tungstenite::connect_async(gw.ws_url.as_str()).await.unwrap();
    let mut ws = common::Ws { stream };
    ws.send(json!({"type": "auth", "token": alice.token})).await;
    assert_eq!(ws.next_json().await["type"], "ready");
    ws.send(json!({"type": "ping", "request_id": "p"})).await;
    assert_eq!(ws.next_json().await, json!({"type": "pong", "request_id": "p"}));

    // A token in the URL is ignored: the connection still waits for credentials and refuses.
    let (stream, _) =
        tokio_tungstenite::connect_async(format!("{}?token={}", gw.ws_url, alice.token)).await.unwrap();
    let mut ws = common::Ws { stream };
    ws.send(json!({"type": "send", "content": "hi"})).await;
    let err = ws.next_json().await;
    assert_eq!(err["code"], "unauthorized", "{err}");
    assert!(ws.next_json().await.is_null(), "closed");

    // Bad credentials in the handshake are refused before the upgrade.
    let mut req = gw.ws_url.as_str().into_client_request().unwrap();
    req.headers_mut().insert("authorization", HeaderValue::from_static("Bearer cgu_nope"));
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    assert!(gw.llm.chat_requests().is_empty());
}

#[tokio::test]
async fn ws_user_cannot_write_or_subscribe_to_another_users_session() {
    let gw = gateway(ToolRegistry::with_defaults()).await;
    let alice = gw.person("alice@company.com").await;
    let bob = gw.person("bob@company.com").await;
    let bobs = gw.new_session(&bob).await;

    let mut ws = gw.ws(&alice.token).await;
    for msg in [
        json!({"type": "subscribe", "session": bobs, "request_id": 1}),
        json!({"type": "subscribe", "session": bobs, "agent": bob.agent_id, "request_id": 2}),
        json!({"type": "send", "session": bobs, "content": "leak?", "request_id": 3}),
        json!({"type": "send", "agent": bob.agent_id, "content": "leak?", "request_id": 4}),
    ] {
        ws.send(msg).await;
        let err = ws.next_json().await;
        assert_eq!((err["type"].as_str(), err["code"].as_str()), (Some("error"), Some("not_found")), "{err}");
        assert!(!err.to_string().contains(&bob.email));
    }
    assert!(gw.llm.chat_requests().is_empty(), "nothing reached the model");
    let (_, msgs) = gw.call("GET", &format!("/api/v1/sessions/{bobs}/messages"), &bob.token, None).await;
    assert_eq!(msgs, json!([]), "nothing was written to Bob's session");

    // Bob's own subscriber sees his turns; Alice's socket never does.
    let mut bob_ws = gw.ws(&bob.token).await;
    bob_ws.send(json!({"type": "subscribe", "session": bobs})).await;
    assert_eq!(bob_ws.next_json().await["type"], "subscribed");
    let (s, _) = gw
        .call(
            "POST",
            &format!("/api/v1/sessions/{bobs}/messages"),
            &bob.token,
            Some(json!({"content": "private note"})),
        )
        .await;
    assert_eq!(s, 200);
    let events = bob_ws.until_turn_end().await;
    assert_eq!(events.last().unwrap()["message"]["body"], "echo: private note");
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.next_json().await["type"], "pong", "Alice's socket received nothing of Bob's turn");
}

#[tokio::test]
async fn ws_connection_ends_when_its_token_is_revoked() {
    let gw = gateway(ToolRegistry::with_defaults()).await;
    let alice = gw.person("alice@company.com").await;
    let mut ws = gw.ws(&alice.token).await;
    let (s, _) = gw.call("DELETE", &format!("/api/v1/tokens/{}", alice.token_id), &gw.admin, None).await;
    assert_eq!(s, 204);
    ws.send(json!({"type": "send", "content": "still there?"})).await;
    assert_eq!(ws.next_json().await["code"], "unauthorized");
    assert!(ws.next_json().await.is_null());
    assert!(gw.llm.chat_requests().is_empty());
}

#[tokio::test]
async fn sessions_rest_lifecycle() {
    let gw = gateway(ToolRegistry::with_defaults()).await;
    let alice = gw.person("alice@company.com").await;
    let (s, created) =
        gw.call("POST", "/api/v1/sessions", &alice.token, Some(json!({"title": "  Plans  "}))).await;
    assert_eq!(s, 201);
    assert_eq!(created["title"], "Plans");
    let id = created["id"].as_str().unwrap();
    let (s, sent) = gw
        .call(
            "POST",
            &format!("/api/v1/sessions/{id}/messages"),
            &alice.token,
            Some(json!({"content": "hello"})),
        )
        .await;
    assert_eq!(s, 200, "{sent}");
    assert_eq!(sent["reply"]["body"], "echo: hello");
    assert_eq!(sent["messages"].as_array().unwrap().len(), 2);
    let (s, renamed) = gw
        .call("PATCH", &format!("/api/v1/sessions/{id}"), &alice.token, Some(json!({"title": "Renamed"})))
        .await;
    assert_eq!((s, renamed["title"].as_str()), (200, Some("Renamed")));
    let (_, list) = gw.call("GET", "/api/v1/sessions", &alice.token, None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // An untitled session is named after its first message.
    let sid = gw.new_session(&alice).await;
    gw.call(
        "POST",
        &format!("/api/v1/sessions/{sid}/messages"),
        &alice.token,
        Some(json!({"content": "Trip to Lisbon\nand more"})),
    )
    .await;
    let (_, got) = gw.call("GET", &format!("/api/v1/sessions/{sid}"), &alice.token, None).await;
    assert_eq!(got["title"], "Trip to Lisbon");

    // Bad input gets a clear error and changes nothing.
    for (body, needle) in [
        (json!({}), "missing field `content`"),
        (json!({"content": "  "}), "message is empty"),
        (json!({"content": "x", "evil": 1}), "unknown field"),
    ] {
        let (s, v) =
            gw.call("POST", &format!("/api/v1/sessions/{id}/messages"), &alice.token, Some(body)).await;
        assert_eq!(s, 400, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(needle), "{v}");
    }
    let (_, msgs) = gw.call("GET", &format!("/api/v1/sessions/{id}/messages"), &alice.token, None).await;
    assert_eq!(msgs.as_array().unwrap().len(), 2);
    let (_, last) =
        gw.call("GET", &format!("/api/v1/sessions/{id}/messages?limit=1"), &alice.token, None).await;
    assert_eq!(last[0]["body"], "echo: hello");

    // Soft delete: gone from every surface.
    let (s, _) = gw.call("DELETE", &format!("/api/v1/sessions/{id}"), &alice.token, None).await;
    assert_eq!(s, 204);
    for (m, p) in [
        ("GET", format!("/api/v1/sessions/{id}")),
        ("GET", format!("/api/v1/sessions/{id}/messages")),
        ("DELETE", format!("/api/v1/sessions/{id}")),
    ] {
        assert_eq!(gw.call(m, &p, &alice.token, None).await.0, 404, "{m} {p}");
    }
    let (_, list) = gw.call("GET", "/api/v1/sessions", &alice.token, None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Admins name the agent.
    let (s, v) = gw.call("GET", "/api/v1/sessions", &gw.admin, None).await;
    assert_eq!(s, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("?agent="));
    let (s, v) = gw.call("GET", &format!("/api/v1/sessions?agent={}", alice.agent_id), &gw.admin, None).await;
    assert_eq!((s, v.as_array().unwrap().len()), (200, 1));
}

#[tokio::test]
async fn provider_failures_reach_every_surface_as_readable_errors_and_the_session_survives() {
    let gw = gateway(ToolRegistry::with_defaults()).await;
    let alice = gw.person("alice@company.com").await;
    let sid = gw.new_session(&alice).await;
    let path = format!("/api/v1/sessions/{sid}/messages");

    // 429 then OK: retried, the person notices nothing.
    gw.llm.push(Step::fail(429).retry_after(0));
    let (s, v) = gw.call("POST", &path, &alice.token, Some(json!({"content": "one"}))).await;
    assert_eq!((s, v["reply"]["body"].as_str()), (200, Some("echo: one")));

    // 500 on every attempt: 502 with the provider's story.
    for _ in 0..3 {
        gw.llm.push(Step::fail(500).message("upstream exploded"));
    }
    let (s, v) = gw.call("POST", &path, &alice.token, Some(json!({"content": "two"}))).await;
    assert_eq!(s, 502, "{v}");
    assert_eq!(v["error"]["code"], "llm_error");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("HTTP 500 after 3 attempts") && msg.contains("upstream exploded"), "{msg}");

    // A malformed stream over the WebSocket: an error event, then the socket keeps working.
    let mut ws = gw.ws(&alice.token).await;
    gw.llm.push(Step::malformed_sse());
    ws.send(json!({"type": "send", "session": sid, "content": "three"})).await;
    assert_eq!(ws.next_json().await["type"], "accepted");
    let events = ws.until_turn_end().await;
    let last = events.last().unwrap();
    assert_eq!((last["type"].as_str(), last["code"].as_str()), (Some("error"), Some("llm_error")), "{last}");
    assert!(last["message"].as_str().unwrap().contains("invalid stream"));

    // A stalled stream over /v1/chat/completions: the stream had started, so the error arrives
    // as an `error` chunk (OpenAI clients raise it).
    gw.llm.push(Step::stall(Duration::from_secs(5)));
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.base))
        .bearer_auth(&alice.token)
        .header("x-crewgate-session", "stall-test")
        .json(&json!({"messages": [{"role": "user", "content": "four"}], "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(body.contains("\"error\"") && body.contains("stopped sending data"), "{body}");

    ws.send(json!({"type": "send", "session": sid, "content": "five"})).await;
    assert_eq!(ws.next_json().await["type"], "accepted");
    assert_eq!(ws.until_turn_end().await.last().unwrap()["message"]["body"], "echo: five");
    let (_, msgs) = gw.call("GET", &path, &alice.token, None).await;
    let roles: Vec<&str> = msgs.as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "user", "error", "user", "error", "user", "assistant"]);
}

#[tokio::test]
async fn no_llm_key_is_a_clear_503_not_a_hang() {
    let gw = gateway_with(ToolRegistry::with_defaults(), |s| {
        s.llm = crewgate_llm::LlmSettings::default();
    })
    .await;
    let alice = gw.person("alice@company.com").await;
    let sid = gw.new_session(&alice).await;
    let (s, v) = gw
        .call(
            "POST",
            &format!("/api/v1/sessions/{sid}/messages"),
            &alice.token,
            Some(json!({"content": "hi"})),
        )
        .await;
    assert_eq!(s, 503, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("REDPILL_API_KEY"), "{v}");
    let (s, v) = gw
        .call(
            "POST",
            "/v1/chat/completions",
            &alice.token,
            Some(json!({"messages": [{"role": "user", "content": "hi"}], "stream": true})),
        )
        .await;
    assert_eq!(s, 503, "{v}");
}

async fn completion(
    gw: &Gateway,
    token: &str,
    body: Value,
    header: Option<&str>,
) -> (u16, Value, Option<String>) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.base))
        .bearer_auth(token)
        .json(&body);
    if let Some(h) = header {
        req = req.header("x-crewgate-session", h);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let session = resp.headers().get("x-crewgate-session-id").map(|v| v.to_str().unwrap().to_owned());
    (status, resp.json().await.unwrap_or_default(), session)
}

#[tokio::test]
async fn openai_compatible_completions_and_models() {
    let gw = gateway(ToolRegistry::with_defaults()).await;
    let alice = gw.person("alice@company.com").await;
    let bob = gw.person("bob@company.com").await;

    // Non-streaming, model omitted → the caller's agent; a fresh session seeded with history.
    let body = json!({"messages": [
        {"role": "system", "content": "ignored: the agent's own instructions apply"},
        {"role": "user", "content": "my name is Alice"},
        {"role": "assistant", "content": "Hi Alice"},
        {"role": "user", "content": [{"type": "text", "text": "what is my name?"}]}
    ]});
    let (s, v, sid) = completion(&gw, &alice.token, body, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], format!("crewgate/{}", alice.agent_id));
    assert_eq!(v["choices"][0]["message"]["content"], "echo: what is my name?");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let sid = sid.unwrap();
    let contents: Vec<String> = gw.llm.chat_requests()[0]
        .messages()
        .iter()
        .skip(1)
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(contents, ["my name is Alice", "Hi Alice", "what is my name?"]);
    assert!(!gw.llm.chat_requests()[0].system_prompt().unwrap().contains("ignored:"));

    // `user` picks a persistent session: the second call continues the first.
    let (_, _, s1) = completion(&gw, &alice.token, json!({"model": format!("crewgate/{}", alice.agent_id), "user": "cli-42", "messages": [{"role": "user", "content": "first"}]}), None).await;
    let (_, v, s2) = completion(
        &gw,
        &alice.token,
        json!({"user": "cli-42", "messages": [{"role": "user", "content": "second"}]}),
        None,
    )
    .await;
    assert_eq!(s1, s2);
    assert_ne!(s1.as_deref(), Some(sid.as_str()));
    assert_eq!(v["choices"][0]["message"]["content"], "echo: second");
    let last = gw.llm.chat_requests().pop().unwrap();
    assert_eq!(last.messages().len(), 4, "system, first, echo: first, second: {:?}", last.messages());
    // The key is stored only as a hash; the session is named after its first message.
    let (_, list) = gw.call("GET", "/api/v1/sessions", &alice.token, None).await;
    let keyed =
        list.as_array().unwrap().iter().find(|x| Some(x["id"].as_str().unwrap()) == s1.as_deref()).unwrap();
    assert_eq!(keyed["title"], "first");
    assert!(!list.to_string().contains("cli-42"));
    // The header does the same, and wins over `user`.
    let (_, _, s3) = completion(
        &gw,
        &alice.token,
        json!({"user": "cli-42", "messages": [{"role": "user", "content": "x"}]}),
        Some("other"),
    )
    .await;
    assert_ne!(s3, s1);

    // Streaming: SSE chunks, deltas add up to the answer, usage on request, [DONE] at the end.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.base))
        .bearer_auth(&alice.token)
        .json(&json!({"stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "stream this please"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let datas: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(*datas.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> =
        datas[..datas.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(streamed, "echo: stream this please");
    assert!(chunks.len() > 4);
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"));
    assert!(chunks.last().unwrap()["usage"]["total_tokens"].as_u64().unwrap() > 0);

    // Models: only one's own agent; the other's agent is "not found".
    let (s, models) = gw.call("GET", "/v1/models", &alice.token, None).await;
    assert_eq!(s, 200);
    assert_eq!(
        models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect::<Vec<_>>(),
        [format!("crewgate/{}", alice.agent_id)]
    );
    let n = gw.llm.chat_requests().len();
    let (s, v, _) = completion(&gw, &alice.token, json!({"model": format!("crewgate/{}", bob.agent_id), "messages": [{"role": "user", "content": "hi"}]}), None).await;
    assert_eq!(s, 404, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("not found"));
    let (s, _, _) = completion(
        &gw,
        &alice.token,
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
        None,
    )
    .await;
    assert_eq!(s, 404);
    for bad in [
        json!({"messages": []}),
        json!({"messages": [{"role": "system", "content": "x"}]}),
        json!({"model": 3}),
    ] {
        let (s, v, _) = completion(&gw, &alice.token, bad, None).await;
        assert_eq!(s, 400, "{v}");
    }
    assert_eq!(gw.llm.chat_requests().len(), n, "refused requests reach no model");
    // Admins name the agent.
    let (s, _, _) =
        completion(&gw, &gw.admin, json!({"messages": [{"role": "user", "content": "hi"}]}), None).await;
    assert_eq!(s, 400);
    let (s, v, _) = completion(&gw, &gw.admin, json!({"model": format!("crewgate/{}", bob.agent_id), "messages": [{"role": "user", "content": "hi"}]}), None).await;
    assert_eq!((s, v["choices"][0]["message"]["content"].as_str()), (200, Some("echo: hi")));
}

/// 100 concurrent sessions across 50 agents, over all three surfaces at once, with the fake's
/// Echo responder: every reply must carry its own session's unique text, and every transcript
/// must hold exactly its own exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_sessions_across_fifty_agents_without_cross_talk() {
    // Generous limits: this machine may be busy compiling; the assertion is about content.
    let gw = std::sync::Arc::new(
        gateway_with(ToolRegistry::with_defaults(), |s| s.llm.stall_timeout = Duration::from_secs(30)).await,
    );
    let started = std::time::Instant::now();
    gw.llm.set_default(crewgate_testkit::fake_llm::Responder::Echo);
    let mut people = Vec::new();
    for i in 0..50 {
        people.push(std::sync::Arc::new(gw.person(&format!("p{i}@company.com")).await));
    }
    let mut tasks = Vec::new();
    for n in 0..100usize {
        let gw = gw.clone();
        let p = people[n % 50].clone();
        tasks.push(tokio::spawn(async move {
            let text = format!("unique-{n}-for-{}", p.agent_id);
            let (sid, reply) = match n % 3 {
                0 => {
                    let mut ws = gw.ws(&p.token).await;
                    ws.send(json!({"type": "send", "content": text})).await;
                    let _session = ws.next_json().await;
                    let accepted = ws.next_json().await;
                    let events = ws.until_turn_end().await;
                    let streamed: String = events
                        .iter()
                        .filter(|e| e["type"] == "delta")
                        .map(|e| e["text"].as_str().unwrap())
                        .collect();
                    let last = events.last().unwrap();
                    assert_eq!(last["message"]["body"].as_str().unwrap(), streamed);
                    (accepted["session"].as_str().unwrap().to_owned(), streamed)
                }
                1 => {
                    let sid = gw.new_session(&p).await;
                    let (s, v) = gw
                        .call(
                            "POST",
                            &format!("/api/v1/sessions/{sid}/messages"),
                            &p.token,
                            Some(json!({"content": text})),
                        )
                        .await;
                    assert_eq!(s, 200, "{v}");
                    (sid, v["reply"]["body"].as_str().unwrap().to_owned())
                }
                _ => {
                    let (s, v, sid) = completion(
                        &gw,
                        &p.token,
                        json!({"user": format!("k{n}"), "messages": [{"role": "user", "content": text}]}),
                        None,
                    )
                    .await;
                    assert_eq!(s, 200, "{v}");
                    (sid.unwrap(), v["choices"][0]["message"]["content"].as_str().unwrap().to_owned())
                }
            };
            assert_eq!(reply, format!("echo: {text}"));
            let (_, msgs) = gw.call("GET", &format!("/api/v1/sessions/{sid}/messages"), &p.token, None).await;
            let bodies: Vec<&str> =
                msgs.as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap()).collect();
            assert_eq!(bodies, [text.clone(), format!("echo: {text}")]);
            sid
        }));
    }
    let mut sessions = std::collections::HashSet::new();
    for t in tasks {
        assert!(sessions.insert(t.await.unwrap()), "two turns landed in one session");
    }
    assert_eq!(sessions.len(), 100);
    assert_eq!(gw.llm.chat_requests().len(), 100);
    println!("100 sessions / 50 agents over WS, REST and /v1: {} ms", started.elapsed().as_millis());
}

#[tokio::test]
async fn ws_accepts_the_dashboard_cookie_only_from_its_own_origin() {
    let gw = gateway(ToolRegistry::with_defaults()).await;
    let alice = gw.person("alice@company.com").await;
    let cookie = "cgs_0123456789abcdef0123456789abcdef";
    gw.store
        .create_web_session(
            &crewgate_core::TokenHash::of(cookie),
            &alice.token_id,
            "csrf",
            crewgate_core::now_millis() + 60_000,
        )
        .await
        .unwrap();
    let host = gw.base.trim_start_matches("http://").to_owned();
    let handshake = |origin: &str| {
        let mut req = gw.ws_url.as_str().into_client_request().unwrap();
        req.headers_mut().insert(
            "cookie",
            HeaderValue::from_str(&format!("theme=dark; crewgate_session={cookie}")).unwrap(),
        );
        req.headers_mut().insert("origin", HeaderValue::from_str(origin).unwrap());
        req
    };
    let err = tokio_tungstenite::connect_async(handshake("https://evil.example")).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    let (stream, _) = tokio_tungstenite::connect_async(handshake(&format!("http://{host}"))).await.unwrap();
    let mut ws = common::Ws { stream };
    let ready = ws.next_json().await;
    assert_eq!(
        (ready["type"].as_str(), ready["agent"].as_str()),
        (Some("ready"), Some(alice.agent_id.as_str()))
    );
    ws.send(json!({"type": "send", "content": "via cookie"})).await;
    let _session = ws.next_json().await;
    assert_eq!(ws.next_json().await["type"], "accepted");
    assert_eq!(ws.until_turn_end().await.last().unwrap()["message"]["body"], "echo: via cookie");

    // The browser session dies with its token, and so does the socket.
    let (s, _) = gw.call("DELETE", &format!("/api/v1/tokens/{}", alice.token_id), &gw.admin, None).await;
    assert_eq!(s, 204);
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.next_json().await["code"], "unauthorized");
}

#[tokio::test]
async fn ws_limits_turns_in_flight_per_connection() {
    let gw = gateway(ToolRegistry::with_defaults()).await;
    let alice = gw.person("alice@company.com").await;
    for _ in 0..8 {
        gw.llm.push(Step::text("slow").delay(Duration::from_millis(800)));
    }
    let mut ws = gw.ws(&alice.token).await;
    for i in 0..9 {
        ws.send(json!({"type": "send", "content": format!("m{i}"), "request_id": i})).await;
    }
    let mut accepted = 0;
    let mut refused = Vec::new();
    let mut finals = 0;
    while finals < 8 {
        let v = ws.next_json().await;
        match v["type"].as_str().unwrap() {
            "accepted" => accepted += 1,
            "error" if v["code"] == "too_many_turns" => refused.push(v["request_id"].clone()),
            "final" => finals += 1,
            _ => {}
        }
    }
    assert_eq!((accepted, refused), (8, vec![json!(8)]));
    ws.send(json!({"type": "send", "content": "after"})).await;
    let _session = ws.next_json().await;
    assert_eq!(ws.next_json().await["type"], "accepted");
    assert_eq!(ws.until_turn_end().await.last().unwrap()["message"]["body"], "echo: after");
}
