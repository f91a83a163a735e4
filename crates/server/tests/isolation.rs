//! The isolation matrix: every API route × {no token, malformed, revoked, user A, user B, admin}.
//! Each cell runs against a fresh store (so mutating routes do not disturb each other) through a
//! real HTTP listener, checks the status, and checks that no body carries the other user's data
//! or any pre-existing token secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crewgate_core::{AgentId, IssuedToken, MasterKey, TokenKind};
use crewgate_llm::{LlmSettings, SecretString as LlmKey};
use crewgate_runtime::{Runtime, RuntimeSettings, ToolRegistry};
use crewgate_server::ops::{self, Actor, CreateAgent};
use crewgate_server::{AppState, router};
use crewgate_store::{SqliteStore, Store};
use crewgate_testkit::fake_llm::FakeLlm;
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;

struct Fixture {
    base: String,
    admin: String,
    a: Person,
    b: Person,
    revoked: String,
    spare_agent: String,
    a_session: String,
    a_proposal: String,
    a_grant: String,
    an_invite: String,
    _llm: FakeLlm,
    _dir: tempfile::TempDir,
}

struct Person {
    token: String,
    token_id: String,
    user_id: String,
    agent_id: String,
    email: String,
}

async fn person(store: &dyn Store, email: &str) -> Person {
    let agent = ops::create_agent(
        store,
        &Actor::System,
        CreateAgent { owner_email: Some(email.into()), ..Default::default() },
    )
    .await
    .unwrap();
    let t = IssuedToken::generate(TokenKind::User);
    let info = ops::register_token(store, &Actor::System, &t, Some(agent.id.as_str()), None).await.unwrap();
    Person {
        token: t.secret.expose_secret().to_owned(),
        token_id: info.id,
        user_id: agent.owner.unwrap().to_string(),
        agent_id: agent.id.to_string(),
        email: email.into(),
    }
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::from_hex(&SecretString::from("07".repeat(32))).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("db"), &key).await.unwrap());
    let admin = IssuedToken::generate(TokenKind::Admin);
    ops::register_token(store.as_ref(), &Actor::System, &admin, None, None).await.unwrap();
    let a = person(store.as_ref(), "alice@company.com").await;
    let b = person(store.as_ref(), "bob@company.com").await;
    // A third token of Alice's, revoked.
    let r = IssuedToken::generate(TokenKind::User);
    let rinfo =
        ops::register_token(store.as_ref(), &Actor::System, &r, Some(&a.agent_id), None).await.unwrap();
    store.revoke_token(&rinfo.id, crewgate_core::now_millis()).await.unwrap();
    let spare = ops::create_agent(
        store.as_ref(),
        &Actor::System,
        CreateAgent { owner_email: Some("carol@company.com".into()), ..Default::default() },
    )
    .await
    .unwrap();

    let an_invite = crewgate_server::onboarding::Onboarding::default()
        .create_invite(
            store.as_ref(),
            &Actor::System,
            "dave@company.com",
            None,
            crewgate_store::onboarding::InviteOrigin::Admin,
        )
        .await
        .unwrap()
        .invite
        .id;
    let a_session =
        store.create_session(&AgentId::parse(&a.agent_id).unwrap(), "alice's chat").await.unwrap().id;

    // Chat routes answer through the fake LLM (Echo), never a real provider.
    let llm = FakeLlm::start().await;
    let settings =
        RuntimeSettings::new(LlmSettings::new(llm.base_url(), Some(LlmKey::from("k"))), "fake/model");
    // A pending proposal and a grant of Alice's, for the approval routes.
    let a_agent = AgentId::parse(&a.agent_id).unwrap();
    let a_proposal = store
        .create_proposal(crewgate_store::approvals::NewProposal {
            agent_id: a_agent.clone(),
            session_id: Some(a_session.clone()),
            owner_id: Some(crewgate_core::UserId::parse(&a.user_id).unwrap()),
            tool: "gmail_send".into(),
            args: serde_json::json!({"to": ["x@y.com"]}),
            summary: "📋 Proposed action: Send email".into(),
            trace_id: None,
            expires_at: crewgate_core::now_millis() + 3_600_000,
        })
        .await
        .unwrap()
        .id;
    let a_grant = store
        .create_grant(crewgate_store::approvals::NewGrant {
            agent_id: a_agent,
            action: "gmail.send".into(),
            match_args: serde_json::Map::new(),
            expires_at: None,
            daily_cap: None,
            created_by: "test".into(),
        })
        .await
        .unwrap()
        .id;
    let mut tools = ToolRegistry::with_defaults();
    tools
        .register(Arc::new(crewgate_runtime::tools::StaticTool::new(
            crewgate_runtime::ToolManifest {
                name: "gmail_send".into(),
                description: "Send an e-mail.".into(),
                parameters: serde_json::json!({"type": "object"}),
                effect: crewgate_runtime::Effect::Write,
            },
            serde_json::json!({"id": "m1"}),
        )))
        .unwrap();
    let runtime = Arc::new(Runtime::new(store.clone(), settings, tools));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(AppState::with_runtime(store, runtime));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Fixture {
        base,
        admin: admin.secret.expose_secret().to_owned(),
        a,
        b,
        revoked: r.secret.expose_secret().to_owned(),
        spare_agent: spare.id.to_string(),
        a_session,
        a_proposal,
        a_grant,
        an_invite,
        _llm: llm,
        _dir: dir,
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Nobody,
    Malformed,
    Revoked,
    A,
    B,
    Admin,
}
const WHO: [Who; 6] = [Who::Nobody, Who::Malformed, Who::Revoked, Who::A, Who::B, Who::Admin];

struct Row {
    method: &'static str,
    /// `{a_agent}`, `{b_agent}`, `{a_user}`, `{a_token}`, `{a_session}`, `{spare_agent}`,
    /// `{a_proposal}`, `{a_grant}` are
    /// filled from the fixture.
    path: &'static str,
    body: Option<&'static str>,
    /// Expected status for [Nobody, Malformed, Revoked, A, B, Admin].
    expect: [u16; 6],
}

const fn row(method: &'static str, path: &'static str, body: Option<&'static str>, expect: [u16; 6]) -> Row {
    Row { method, path, body, expect }
}

const ROWS: &[Row] = &[
    row("GET", "/health", None, [200, 200, 200, 200, 200, 200]),
    row("GET", "/ready", None, [200, 200, 200, 200, 200, 200]),
    row("GET", "/metrics", None, [200, 200, 200, 200, 200, 200]),
    row("GET", "/api/v1/me", None, [401, 401, 401, 200, 200, 200]),
    row("GET", "/api/v1/agents", None, [401, 401, 401, 200, 200, 200]),
    row(
        "POST",
        "/api/v1/agents",
        Some(r#"{"ownerEmail":"dave@company.com"}"#),
        [401, 401, 401, 403, 403, 201],
    ),
    row("GET", "/api/v1/agents/{a_agent}", None, [401, 401, 401, 200, 404, 200]),
    row("GET", "/api/v1/agents/no-such-agent", None, [401, 401, 401, 404, 404, 404]),
    row("DELETE", "/api/v1/agents/{a_agent}", None, [401, 401, 401, 403, 403, 204]),
    row("GET", "/api/v1/users", None, [401, 401, 401, 403, 403, 200]),
    row("GET", "/api/v1/users/{a_user}", None, [401, 401, 401, 200, 404, 200]),
    row("GET", "/api/v1/tokens", None, [401, 401, 401, 200, 200, 200]),
    row(
        "POST",
        "/api/v1/tokens",
        Some(r#"{"kind":"user","agentId":"{spare_agent}"}"#),
        [401, 401, 401, 403, 403, 201],
    ),
    row("POST", "/api/v1/tokens", Some(r#"{"kind":"admin"}"#), [401, 401, 401, 403, 403, 201]),
    row("POST", "/api/v1/tokens/{a_token}/rotate", None, [401, 401, 401, 201, 404, 201]),
    row("DELETE", "/api/v1/tokens/{a_token}", None, [401, 401, 401, 204, 404, 204]),
    row("GET", "/api/v1/audit", None, [401, 401, 401, 200, 200, 200]),
    row("GET", "/api/v1/backup/status", None, [401, 401, 401, 403, 403, 200]),
    row("POST", "/api/v1/auth/logout", None, [401, 401, 401, 204, 204, 204]),
    row("GET", "/api/v1/auth/session", None, [401, 401, 401, 400, 400, 400]),
    row("GET", "/api/v1/status", None, [401, 401, 401, 403, 403, 200]),
    // The dashboard's static files are public (they hold no data; the page signs in via the API).
    row("GET", "/", None, [200, 200, 200, 200, 200, 200]),
    row("GET", "/assets/app.js", None, [200, 200, 200, 200, 200, 200]),
    row("GET", "/assets/no-such-file.js", None, [404, 404, 404, 404, 404, 404]),
    row("GET", "/api/v1/no-such-route", None, [404, 404, 404, 404, 404, 404]),
    // Sessions: a user's own agent by default; an admin names it; another user's is a 404.
    row("GET", "/api/v1/sessions", None, [401, 401, 401, 200, 200, 400]),
    row("GET", "/api/v1/sessions?agent={a_agent}", None, [401, 401, 401, 200, 404, 200]),
    row("POST", "/api/v1/sessions", None, [401, 401, 401, 201, 201, 400]),
    row("POST", "/api/v1/sessions?agent={a_agent}", None, [401, 401, 401, 201, 404, 201]),
    row(
        "POST",
        "/api/v1/sessions",
        Some(r#"{"agent":"{a_agent}","title":"t"}"#),
        [401, 401, 401, 201, 404, 201],
    ),
    row("GET", "/api/v1/sessions/{a_session}", None, [401, 401, 401, 200, 404, 400]),
    row("GET", "/api/v1/sessions/{a_session}?agent={a_agent}", None, [401, 401, 401, 200, 404, 200]),
    row("GET", "/api/v1/sessions/{a_session}?agent={b_agent}", None, [401, 401, 401, 404, 404, 404]),
    row(
        "PATCH",
        "/api/v1/sessions/{a_session}?agent={a_agent}",
        Some(r#"{"title":"x"}"#),
        [401, 401, 401, 200, 404, 200],
    ),
    row("PATCH", "/api/v1/sessions/{a_session}", Some(r#"{"title":"x"}"#), [401, 401, 401, 200, 404, 400]),
    row("DELETE", "/api/v1/sessions/{a_session}?agent={a_agent}", None, [401, 401, 401, 204, 404, 204]),
    row("DELETE", "/api/v1/sessions/{a_session}", None, [401, 401, 401, 204, 404, 400]),
    row("GET", "/api/v1/sessions/{a_session}/messages?agent={a_agent}", None, [401, 401, 401, 200, 404, 200]),
    row("GET", "/api/v1/sessions/{a_session}/messages", None, [401, 401, 401, 200, 404, 400]),
    row(
        "POST",
        "/api/v1/sessions/{a_session}/messages?agent={a_agent}",
        Some(r#"{"content":"hi"}"#),
        [401, 401, 401, 200, 404, 200],
    ),
    row(
        "POST",
        "/api/v1/sessions/{a_session}/messages",
        Some(r#"{"content":"hi"}"#),
        [401, 401, 401, 200, 404, 400],
    ),
    // The WebSocket refuses bad credentials before the upgrade (isolation inside the socket is
    // tested in tests/chat.rs); a plain GET is not an upgrade.
    row("GET", "/api/v1/ws", None, [400, 401, 401, 400, 400, 400]),
    // OpenAI-compatible surface.
    row(
        "POST",
        "/v1/chat/completions",
        Some(r#"{"messages":[{"role":"user","content":"hi"}]}"#),
        [401, 401, 401, 200, 200, 400],
    ),
    row(
        "POST",
        "/v1/chat/completions",
        Some(r#"{"model":"crewgate/{a_agent}","messages":[{"role":"user","content":"hi"}]}"#),
        [401, 401, 401, 200, 404, 200],
    ),
    row(
        "POST",
        "/v1/chat/completions",
        Some(r#"{"model":"crewgate/{a_agent}","stream":true,"messages":[{"role":"user","content":"hi"}]}"#),
        [401, 401, 401, 200, 404, 200],
    ),
    row("GET", "/v1/models", None, [401, 401, 401, 200, 200, 200]),
    // Approvals: only the owner decides (admins may look, and decide only with
    // approvals.adminsMayDecide); another user's proposal or grant is a 404.
    row("GET", "/api/v1/proposals", None, [401, 401, 401, 200, 200, 400]),
    row("GET", "/api/v1/proposals?state=pending", None, [401, 401, 401, 200, 200, 200]),
    row("GET", "/api/v1/proposals?state=bogus", None, [401, 401, 401, 400, 400, 400]),
    row("GET", "/api/v1/proposals?agent={a_agent}", None, [401, 401, 401, 200, 404, 200]),
    row("GET", "/api/v1/proposals/{a_proposal}", None, [401, 401, 401, 200, 404, 400]),
    row("GET", "/api/v1/proposals/{a_proposal}?agent={a_agent}", None, [401, 401, 401, 200, 404, 200]),
    row("GET", "/api/v1/proposals/{a_proposal}?agent={b_agent}", None, [401, 401, 401, 404, 404, 404]),
    row("POST", "/api/v1/proposals/{a_proposal}/approve", None, [401, 401, 401, 200, 404, 400]),
    row(
        "POST",
        "/api/v1/proposals/{a_proposal}/approve?agent={a_agent}",
        None,
        [401, 401, 401, 200, 404, 403],
    ),
    row(
        "POST",
        "/api/v1/proposals/{a_proposal}/reject?agent={a_agent}",
        None,
        [401, 401, 401, 200, 404, 403],
    ),
    row(
        "POST",
        "/api/v1/proposals/{a_proposal}/edit?agent={a_agent}",
        Some(r#"{"instructions":"shorter"}"#),
        [401, 401, 401, 409, 404, 403],
    ),
    row("POST", "/api/v1/proposals/{a_proposal}/edit?agent={a_agent}", None, [401, 401, 401, 400, 404, 400]),
    row("GET", "/api/v1/grants", None, [401, 401, 401, 200, 200, 400]),
    row("GET", "/api/v1/grants?agent={a_agent}", None, [401, 401, 401, 200, 404, 200]),
    row("POST", "/api/v1/grants", Some(r#"{"action":"gmail_send"}"#), [401, 401, 401, 201, 201, 400]),
    row(
        "POST",
        "/api/v1/grants?agent={a_agent}",
        Some(r#"{"action":"gmail_send","match_args":{"to":"*@company.com"}}"#),
        [401, 401, 401, 201, 404, 201],
    ),
    row("DELETE", "/api/v1/grants/{a_grant}?agent={a_agent}", None, [401, 401, 401, 204, 404, 204]),
    row("DELETE", "/api/v1/grants/{a_grant}", None, [401, 401, 401, 204, 404, 400]),
    row("GET", "/api/v1/invites", None, [401, 401, 401, 403, 403, 200]),
    row("POST", "/api/v1/invites", Some(r#"{"email":"erin@company.com"}"#), [401, 401, 401, 403, 403, 201]),
    row("POST", "/api/v1/invites", Some(r#"{"email":"dave@company.com"}"#), [401, 401, 401, 403, 403, 409]),
    row("POST", "/api/v1/invites", Some(r#"{"email":"not-an-address"}"#), [401, 401, 401, 403, 403, 400]),
    row("POST", "/api/v1/invites/{an_invite}/resend", None, [401, 401, 401, 403, 403, 200]),
    row("POST", "/api/v1/invites/no-such-invite/resend", None, [401, 401, 401, 403, 403, 404]),
    row("DELETE", "/api/v1/invites/{an_invite}", None, [401, 401, 401, 403, 403, 204]),
    // Google sign-in is not configured in this fixture: a clear 400 for members, and admins
    // have no Google account of their own to connect.
    row("POST", "/api/v1/me/google/connect", None, [401, 401, 401, 400, 400, 400]),
];

fn fill(template: &str, f: &Fixture) -> String {
    template
        .replace("{a_agent}", &f.a.agent_id)
        .replace("{b_agent}", &f.b.agent_id)
        .replace("{a_session}", &f.a_session)
        .replace("{a_user}", &f.a.user_id)
        .replace("{a_token}", &f.a.token_id)
        .replace("{spare_agent}", &f.spare_agent)
        .replace("{a_proposal}", &f.a_proposal)
        .replace("{a_grant}", &f.a_grant)
        .replace("{an_invite}", &f.an_invite)
}

#[tokio::test]
async fn every_route_for_every_principal() {
    let client = reqwest::Client::new();
    let mut failures = Vec::new();
    for r in ROWS {
        for (i, who) in WHO.iter().enumerate() {
            let f = fixture().await;
            let url = format!("{}{}", f.base, fill(r.path, &f));
            let mut req = client.request(r.method.parse().unwrap(), &url);
            let token = match who {
                Who::Nobody => None,
                Who::Malformed => Some("cga_not-a-real-token".to_owned()),
                Who::Revoked => Some(f.revoked.clone()),
                Who::A => Some(f.a.token.clone()),
                Who::B => Some(f.b.token.clone()),
                Who::Admin => Some(f.admin.clone()),
            };
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            if let Some(body) = r.body {
                req = req.header("content-type", "application/json").body(fill(body, &f));
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            let cell = format!("{} {} as {who:?}", r.method, r.path);
            if status != r.expect[i] {
                failures.push(format!("{cell}: got {status}, want {} — {body}", r.expect[i]));
            }
            // Data of the other person never appears.
            let foreign: &[&Person] = match who {
                Who::A => &[&f.b],
                Who::B => &[&f.a],
                Who::Admin => &[],
                _ => &[&f.a, &f.b],
            };
            for p in foreign {
                for needle in [&p.user_id, &p.agent_id, &p.email, &p.token_id] {
                    if body.contains(needle.as_str()) {
                        failures.push(format!("{cell}: body leaks {needle}: {body}"));
                    }
                }
            }
            // No existing secret is ever echoed back.
            for secret in [&f.admin, &f.a.token, &f.b.token, &f.revoked] {
                if body.contains(secret.as_str()) {
                    failures.push(format!("{cell}: body contains a token secret"));
                }
            }
            if status >= 400 && status != 404 || (status == 404 && r.path.starts_with("/api")) {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                if v["error"]["code"].as_str().is_none() || v["error"]["message"].as_str().is_none() {
                    failures.push(format!("{cell}: error body is not {{error:{{code,message}}}}: {body}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failing cells:\n{}", failures.len(), failures.join("\n"));
}

async fn send(f: &Fixture, method: &str, path: &str, token: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("{}{path}", f.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

#[tokio::test]
async fn rotated_token_is_refused_on_the_very_next_request() {
    let f = fixture().await;
    let (s, v) = send(&f, "POST", &format!("/api/v1/tokens/{}/rotate", f.a.token_id), &f.a.token).await;
    assert_eq!(s, 201, "{v}");
    let new = v["token"].as_str().unwrap().to_owned();
    assert!(new.starts_with("cgu_"));
    assert_eq!(send(&f, "GET", "/api/v1/me", &f.a.token).await.0, 401);
    let (s, me) = send(&f, "GET", "/api/v1/me", &new).await;
    assert_eq!(s, 200);
    assert_eq!(me["agent"]["id"], f.a.agent_id.as_str());
}

#[tokio::test]
async fn user_sees_only_own_agent_tokens_and_audit() {
    let f = fixture().await;
    let (_, agents) = send(&f, "GET", "/api/v1/agents", &f.a.token).await;
    let ids: Vec<_> = agents.as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [f.a.agent_id.as_str()]);
    let (_, all) = send(&f, "GET", "/api/v1/agents", &f.admin).await;
    assert_eq!(all.as_array().unwrap().len(), 3);
    let (_, tokens) = send(&f, "GET", "/api/v1/tokens", &f.b.token).await;
    assert!(tokens.as_array().unwrap().iter().all(|t| t["user_id"] == f.b.user_id.as_str()));
    assert_eq!(tokens.as_array().unwrap().len(), 1);
    let (_, audit) = send(&f, "GET", "/api/v1/audit", &f.b.token).await;
    assert!(!audit.as_array().unwrap().is_empty());
    assert!(audit.as_array().unwrap().iter().all(|e| e["user_id"] == f.b.user_id.as_str()));
}

#[tokio::test]
async fn issuing_a_new_user_token_revokes_the_old_one() {
    let f = fixture().await;
    let body = format!(r#"{{"kind":"user","agentId":"{}"}}"#, f.a.agent_id);
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/tokens", f.base))
        .bearer_auth(&f.admin)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(send(&f, "GET", "/api/v1/me", &f.a.token).await.0, 401);
    assert_eq!(send(&f, "GET", "/api/v1/me", &f.b.token).await.0, 200, "other users keep their token");
}

#[tokio::test]
async fn last_admin_token_cannot_be_revoked() {
    let f = fixture().await;
    let (_, me) = send(&f, "GET", "/api/v1/me", &f.admin).await;
    let id = me["tokenId"].as_str().unwrap();
    let (s, v) = send(&f, "DELETE", &format!("/api/v1/tokens/{id}"), &f.admin).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("last admin token"));
    assert_eq!(send(&f, "GET", "/api/v1/me", &f.admin).await.0, 200);
}

#[tokio::test]
async fn bad_bodies_get_clear_errors_and_change_nothing() {
    let f = fixture().await;
    let client = reqwest::Client::new();
    let post = |body: Vec<u8>, ct: &'static str| {
        client
            .post(format!("{}/api/v1/agents", f.base))
            .bearer_auth(&f.admin)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let big = format!(r#"{{"ownerEmail":"x@y.com","name":"{}"}}"#, "x".repeat(2 * 1024 * 1024));
    let cases: Vec<(Vec<u8>, &str, u16, &str)> = vec![
        (big.into_bytes(), "application/json", 413, "byte limit"),
        (b"{not json".to_vec(), "application/json", 400, "invalid JSON"),
        (br#"{"ownerEmail":"x@y.com"}"#.to_vec(), "text/plain", 415, "application/json"),
        (br#"{"ownerEmail":"x@y.com","evil":1}"#.to_vec(), "application/json", 422, "unknown field"),
        (br#"{"ownerEmail":"not-an-email"}"#.to_vec(), "application/json", 400, "not an e-mail"),
        (br#"{"id":"Bad Id"}"#.to_vec(), "application/json", 400, "invalid agent id"),
        (br#"{"id":"x","settings":[1]}"#.to_vec(), "application/json", 400, "JSON object"),
    ];
    for (body, ct, want, needle) in cases {
        let resp = post(body, ct).await.unwrap();
        let status = resp.status().as_u16();
        let v: serde_json::Value = resp.json().await.unwrap();
        let msg = v["error"]["message"].as_str().unwrap_or_default().to_owned();
        assert!(status == want || (want == 422 && status == 400), "want {want}, got {status}: {v}");
        assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}");
    }
    let (_, agents) = send(&f, "GET", "/api/v1/agents", &f.admin).await;
    assert_eq!(agents.as_array().unwrap().len(), 3, "nothing was created");
}

#[tokio::test]
async fn agent_ids_derive_from_email_with_collision_suffix() {
    let f = fixture().await;
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for body in [
        r#"{"ownerEmail":"dana@company.com"}"#,
        r#"{"ownerEmail":"Dana@company.com"}"#,
        r#"{"id":"dana-company-com"}"#,
    ] {
        let resp = client
            .post(format!("{}/api/v1/agents", f.base))
            .bearer_auth(&f.admin)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        ids.push((resp.status().as_u16(), resp.json::<serde_json::Value>().await.unwrap()));
    }
    assert_eq!(ids[0].0, 201);
    assert_eq!(ids[0].1["id"], "dana-company-com");
    assert_eq!(ids[1].0, 201);
    assert_eq!(ids[1].1["id"], "dana-company-com-2");
    assert_eq!(ids[1].1["owner"], ids[0].1["owner"], "same person, same user record");
    assert_eq!(ids[2].0, 409, "an explicit id that is taken is a conflict: {}", ids[2].1);
}
