//! A gateway with the real Google, Notion and Attio tools pointed at their fakes, people with
//! their own fake Google accounts, and a fake LLM scripted per session. Shared by the approval
//! tests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

#[path = "../common/mod.rs"]
pub mod common;

pub use common::{Gateway, Person};

use crewgate_core::{AgentId, Proposal, ProposalState, UserId};
use crewgate_runtime::tools::external::{StoredGoogleToken, connect_google, register_external_tools};
use crewgate_runtime::{RuntimeSettings, Skill, ToolRegistry, ToolSettings, Toolbox};
use crewgate_testkit::fake_attio::FakeAttio;
use crewgate_testkit::fake_google::{self, FakeGoogle};
use crewgate_testkit::fake_llm::{Responder, ScriptedCall, Step};
use crewgate_testkit::fake_notion::FakeNotion;
use secrecy::SecretString;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub type Plans = Arc<Mutex<HashMap<String, VecDeque<Step>>>>;

pub struct World {
    pub gw: Gateway,
    pub google: FakeGoogle,
    pub notion: FakeNotion,
    pub attio: FakeAttio,
    pub notion_page: String,
    pub attio_person: String,
    plans: Plans,
    /// One client for all calls (building a TLS-capable client per request costs ~20 ms).
    http: reqwest::Client,
}

pub fn toolbox(google: &FakeGoogle, notion: &FakeNotion, attio: &FakeAttio) -> Toolbox {
    Toolbox::new(ToolSettings {
        google_api_base: Some(google.base_url()),
        google_token_url: google.token_url(),
        google_client_id: Some(fake_google::CLIENT_ID.into()),
        google_client_secret: Some(SecretString::from(fake_google::CLIENT_SECRET)),
        notion_api_base: notion.base_url(),
        notion_api_key: Some(SecretString::from(notion.token())),
        attio_api_base: attio.base_url(),
        attio_api_key: Some(SecretString::from(attio.api_key())),
        request_timeout: Duration::from_secs(10),
        ..ToolSettings::default()
    })
    .unwrap()
}

impl World {
    pub async fn start() -> World {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut RuntimeSettings)) -> World {
        let google = FakeGoogle::start().await;
        let notion = FakeNotion::start().await;
        let attio = FakeAttio::start().await;
        let notion_page = notion.add_page(None, "Team notes", vec![]);
        notion.share(&notion_page);
        let attio_person = attio.add_record(
            "people",
            json!({"email_addresses": ["ann@acme.com"], "name": [{"first_name": "Ann", "last_name": "Lee", "full_name": "Ann Lee"}]}),
        );
        let mut tools = ToolRegistry::with_defaults();
        register_external_tools(
            &mut tools,
            &toolbox(&google, &notion, &attio),
            &[Skill::Gog, Skill::Notion, Skill::AttioCrm],
        )
        .unwrap();
        let gw = common::gateway_with(tools, tweak).await;
        let plans: Plans = Arc::default();
        let p = plans.clone();
        gw.llm.set_default(Responder::from_fn(move |req| {
            let session = req.user().unwrap_or_default().to_owned();
            p.lock()
                .unwrap()
                .get_mut(&session)
                .and_then(VecDeque::pop_front)
                .unwrap_or_else(|| Step::text("ok"))
        }));
        World { gw, google, notion, attio, notion_page, attio_person, plans, http: reqwest::Client::new() }
    }

    /// `method path` as `token` with an optional JSON body; returns (status, body).
    pub async fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let mut req =
            self.http.request(method.parse().unwrap(), format!("{}{path}", self.gw.base)).bearer_auth(token);
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

    /// A person with an agent, a user token and a connected fake Google account.
    pub async fn person(&self, email: &str) -> Person {
        let p = self.gw.person(email).await;
        let account = self.google.add_account(email);
        connect_google(
            self.gw.store.as_ref(),
            &UserId::parse(&p.user_id).unwrap(),
            &StoredGoogleToken {
                access_token: Some(SecretString::from(account.access_token)),
                expires_at: None,
                refresh_token: Some(SecretString::from(account.refresh_token)),
                scopes: Some(account.scopes),
                email: Some(email.to_owned()),
            },
        )
        .await
        .unwrap();
        p
    }

    /// What the fake model answers in `session`, in order.
    pub fn plan(&self, session: &str, steps: impl IntoIterator<Item = Step>) {
        self.plans.lock().unwrap().entry(session.to_owned()).or_default().extend(steps);
    }

    pub fn plan_left(&self, session: &str) -> usize {
        self.plans.lock().unwrap().get(session).map_or(0, VecDeque::len)
    }

    /// Sends a chat message as `who`; returns (status, body).
    pub async fn say(&self, who: &Person, session: &str, text: &str) -> (u16, Value) {
        self.call(
            "POST",
            &format!("/api/v1/sessions/{session}/messages"),
            &who.token,
            Some(json!({"content": text})),
        )
        .await
    }

    /// The model calls `tool` with `args` in `session` (one turn); returns the proposal.
    pub async fn propose(&self, who: &Person, session: &str, tool: &str, args: Value) -> Proposal {
        self.plan(session, [Step::tool_call(tool, args), Step::text("I proposed it.")]);
        let (s, v) = self.say(who, session, "please do it").await;
        assert_eq!(s, 200, "{v}");
        let props = v["proposals"].as_array().unwrap();
        assert_eq!(props.len(), 1, "{v}");
        serde_json::from_value(props[0].clone()).unwrap()
    }

    pub async fn proposal(&self, agent: &str, id: &str) -> Proposal {
        self.gw.store.get_proposal(&AgentId::parse(agent).unwrap(), id).await.unwrap().unwrap()
    }

    pub async fn all_proposals(&self, agent: &str) -> Vec<Proposal> {
        self.gw.store.list_proposals(&AgentId::parse(agent).unwrap(), None, 100_000).await.unwrap()
    }

    pub async fn decide(&self, who_token: &str, p: &Proposal, what: &str, agent_q: bool) -> (u16, Value) {
        let q = if agent_q { format!("?agent={}", p.agent_id) } else { String::new() };
        let body = (what == "edit").then(|| json!({"instructions": "make it shorter"}));
        self.call("POST", &format!("/api/v1/proposals/{}/{what}{q}", p.id), who_token, body).await
    }

    /// Write requests (not GET) that reached any fake with this idempotency key and succeeded.
    pub fn writes_with_key(&self, key: &str) -> usize {
        let all =
            self.google.requests().into_iter().chain(self.notion.requests()).chain(self.attio.requests());
        all.filter(|r| r.method != "GET" && r.status < 300 && r.header("idempotency-key") == Some(key))
            .count()
    }

    /// Successful writes at all fakes.
    pub fn total_writes(&self, emails: &[&str]) -> usize {
        emails.iter().map(|e| self.google.writes(e)).sum::<usize>()
            + self.notion.writes()
            + self.attio.writes()
    }

    /// Valid arguments for a write tool (unique per `n`).
    pub fn args_for(&self, tool: &str, n: u64) -> Value {
        match tool {
            "gmail_send" | "gmail_draft_create" => {
                json!({"to": [format!("person{n}@ext.com")], "subject": format!("Hello {n}"), "body": format!("Body number {n}, rather long text.")})
            }
            "calendar_create_event" => {
                json!({"summary": format!("Meeting {n}"), "start": "2026-03-05T10:00:00+01:00", "end": "2026-03-05T11:00:00+01:00"})
            }
            "notion_append" => json!({"page_id": self.notion_page, "content": format!("Note {n}")}),
            "notion_create_page" => {
                json!({"parent_page_id": self.notion_page, "title": format!("Page {n}"), "content": "x"})
            }
            "attio_add_note" => {
                json!({"object": "people", "record_id": self.attio_person, "title": format!("Call {n}"), "content": "Wants a demo."})
            }
            "attio_create_task" => json!({"content": format!("Task {n}")}),
            other => panic!("no sample arguments for {other}"),
        }
    }
}

/// Asserts `p` is in `state`.
pub fn assert_state(p: &Proposal, state: ProposalState) {
    assert_eq!(p.state, state, "proposal #{} {}: {:?}", p.number, p.tool, p.result);
}

pub fn call(name: &str, args: Value) -> ScriptedCall {
    ScriptedCall::new(name, args)
}
