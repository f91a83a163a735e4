//! A real gateway on 127.0.0.1 with a SQLite store and the fake LLM, for the chat-surface tests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use crewgate_core::{IssuedToken, MasterKey, TokenKind};
use crewgate_llm::{LlmSettings, SecretString};
use crewgate_runtime::tools::StaticTool;
use crewgate_runtime::{Effect, Runtime, RuntimeSettings, ToolManifest, ToolRegistry};
use crewgate_server::ops::{self, Actor, CreateAgent};
use crewgate_server::{AppState, router};
use crewgate_store::{SqliteStore, Store};
use crewgate_testkit::fake_llm::FakeLlm;
use futures::{SinkExt, StreamExt};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

pub const LLM_KEY: &str = "sk-fake-key";

pub struct Gateway {
    pub base: String,
    pub ws_url: String,
    pub store: Arc<dyn Store>,
    pub llm: FakeLlm,
    pub admin: String,
    pub runtime: Arc<Runtime>,
    _dir: tempfile::TempDir,
}

pub struct Person {
    pub token: String,
    pub token_id: String,
    pub agent_id: String,
    pub user_id: String,
    pub email: String,
}

pub fn runtime_settings(llm: &FakeLlm) -> RuntimeSettings {
    let s = LlmSettings {
        max_retries: 2,
        retry_base_delay: Duration::from_millis(5),
        retry_max_delay: Duration::from_millis(50),
        stall_timeout: Duration::from_millis(500),
        timeout: Duration::from_secs(20),
        ..LlmSettings::new(llm.base_url(), Some(SecretString::from(LLM_KEY)))
    };
    RuntimeSettings::new(s, "fake/model")
}

/// The test-only read tool of the calendar acceptance test: canned events, no Google needed.
pub fn calendar_tool() -> Arc<StaticTool> {
    Arc::new(StaticTool::new(
        ToolManifest {
            name: "calendar_list_events".into(),
            description: "List upcoming calendar events.".into(),
            parameters: json!({"type":"object","properties":{"days":{"type":"integer","minimum":1}},"additionalProperties":false}),
            effect: Effect::Read,
        },
        json!({"events": [
            {"title": "Standup", "start": "2025-11-26T09:00:00+01:00"},
            {"title": "Quarterly review with Dana", "start": "2025-11-26T15:00:00+01:00"}
        ]}),
    ))
}

pub async fn gateway(tools: ToolRegistry) -> Gateway {
    gateway_with(tools, |_| {}).await
}

pub async fn gateway_with(tools: ToolRegistry, tweak: impl FnOnce(&mut RuntimeSettings)) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::from_hex(&SecretString::from("07".repeat(32))).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("db"), &key).await.unwrap());
    let admin = IssuedToken::generate(TokenKind::Admin);
    ops::register_token(store.as_ref(), &Actor::System, &admin, None, None).await.unwrap();
    let llm = FakeLlm::builder().api_key(LLM_KEY).chunk_delay(Duration::ZERO).start().await;
    let mut settings = runtime_settings(&llm);
    tweak(&mut settings);
    let runtime = Arc::new(Runtime::new(store.clone(), settings, tools));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(AppState::with_runtime(store.clone(), runtime.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Gateway {
        base: format!("http://{addr}"),
        ws_url: format!("ws://{addr}/api/v1/ws"),
        store,
        llm,
        admin: admin.secret.expose_secret().to_owned(),
        runtime,
        _dir: dir,
    }
}

impl Gateway {
    pub async fn person(&self, email: &str) -> Person {
        let agent = ops::create_agent(
            self.store.as_ref(),
            &Actor::System,
            CreateAgent { owner_email: Some(email.into()), ..Default::default() },
        )
        .await
        .unwrap();
        let t = IssuedToken::generate(TokenKind::User);
        let info =
            ops::register_token(self.store.as_ref(), &Actor::System, &t, Some(agent.id.as_str()), None)
                .await
                .unwrap();
        Person {
            token: t.secret.expose_secret().to_owned(),
            token_id: info.id,
            agent_id: agent.id.to_string(),
            user_id: agent.owner.unwrap().to_string(),
            email: email.into(),
        }
    }

    pub async fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn new_session(&self, p: &Person) -> String {
        let (s, v) = self.call("POST", "/api/v1/sessions", &p.token, None).await;
        assert_eq!(s, 201, "{v}");
        v["id"].as_str().unwrap().to_owned()
    }

    /// A WebSocket authenticated with an `Authorization` header.
    pub async fn ws(&self, token: &str) -> Ws {
        ws_connect(&self.ws_url, token).await
    }
}

/// A WebSocket to `ws_url` authenticated with an `Authorization` header, past its `ready`.
pub async fn ws_connect(ws_url: &str, token: &str) -> Ws {
    let mut req = ws_url.into_client_request().unwrap();
    req.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    let (stream, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut ws = Ws { stream };
    let ready = ws.next_json().await;
    assert_eq!(ready["type"], "ready", "{ready}");
    ws
}

pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Ws {
    pub stream: WsStream,
}

impl Ws {
    pub async fn send(&mut self, v: Value) {
        self.stream.send(tokio_tungstenite::tungstenite::Message::Text(v.to_string().into())).await.unwrap();
    }

    /// The next JSON message; `Value::Null` when the server closed the connection.
    pub async fn next_json(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(20), self.stream.next())
                .await
                .expect("no WebSocket message within 20 s");
            match msg {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                    return serde_json::from_str(&t).unwrap();
                }
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) | None | Some(Err(_)) => {
                    return Value::Null;
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next message that is not an unsolicited proposal event (an inbox socket gets those for
    /// every proposal of its agent).
    pub async fn next_reply(&mut self) -> Value {
        loop {
            let v = self.next_json().await;
            if v["type"] != "proposal" {
                return v;
            }
        }
    }

    /// Messages up to and including the terminal event (`final` or `error`) of a turn.
    pub async fn until_turn_end(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let v = self.next_json().await;
            let done = v.is_null()
                || ((v["type"] == "final" || v["type"] == "error")
                    && v.get("turn").is_some_and(|t| !t.is_null()));
            out.push(v);
            if done {
                return out;
            }
        }
    }
}

pub fn types(events: &[Value]) -> Vec<String> {
    let mut t: Vec<String> = events.iter().map(|e| e["type"].as_str().unwrap_or("?").to_owned()).collect();
    t.dedup();
    t
}
