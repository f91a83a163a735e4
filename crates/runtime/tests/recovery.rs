//! Exactly-once execution at the runtime level: start-up recovery of proposals a dead process
//! left `executing` or `approved`, and writes whose outcome is in doubt (5xx, timeouts).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crewgate_core::{AgentId, AgentKind, MasterKey, Principal, Proposal, ProposalState, UserId};
use crewgate_runtime::tools::external::{
    GoogleStatus, StoreGoogleCredentials, StoredGoogleToken, connect_google, google_status,
    register_external_tools,
};
use crewgate_runtime::{
    DecisionRequest, RecoveryReport, Runtime, RuntimeSettings, Skill, ToolRegistry, ToolSettings, Toolbox,
};
use crewgate_store::approvals::{NewProposal, Transition};
use crewgate_store::{NewAgent, NewUser, SqliteStore, Store};
use crewgate_testkit::fake_attio::FakeAttio;
use crewgate_testkit::fake_common::Fault;
use crewgate_testkit::fake_google::{self, FakeGoogle};
use secrecy::SecretString;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const ALICE: &str = "alice@company.com";

struct Env {
    store: Arc<dyn Store>,
    google: FakeGoogle,
    attio: FakeAttio,
    toolbox: Toolbox,
    agent: AgentId,
    owner: UserId,
    session: String,
    rt: Runtime,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::from_hex(&SecretString::from("22".repeat(32))).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("db"), &key).await.unwrap());
    let google = FakeGoogle::start().await;
    let account = google.add_account(ALICE);
    let attio = FakeAttio::start().await;
    let toolbox = Toolbox::new(ToolSettings {
        google_api_base: Some(google.base_url()),
        google_token_url: google.token_url(),
        google_client_id: Some(fake_google::CLIENT_ID.into()),
        google_client_secret: Some(SecretString::from(fake_google::CLIENT_SECRET)),
        attio_api_base: attio.base_url(),
        attio_api_key: Some(SecretString::from(attio.api_key())),
        ..ToolSettings::default()
    })
    .unwrap();
    let mut tools = ToolRegistry::with_defaults();
    register_external_tools(&mut tools, &toolbox, &[Skill::Gog, Skill::AttioCrm]).unwrap();
    let user = store
        .create_user(NewUser {
            email: ALICE.into(),
            name: None,
            role: crewgate_core::Role::Member,
            status: crewgate_core::UserStatus::Active,
        })
        .await
        .unwrap();
    let agent = store
        .create_agent(NewAgent {
            id: AgentId::parse("alice-company-com").unwrap(),
            kind: AgentKind::Worker,
            owner: Some(user.id.clone()),
            name: "alice".into(),
            settings: json!({}),
        })
        .await
        .unwrap();
    assert_eq!(google_status(store.as_ref(), &user.id).await.unwrap(), GoogleStatus::NotConnected);
    connect_google(
        store.as_ref(),
        &user.id,
        &StoredGoogleToken {
            access_token: Some(SecretString::from(account.access_token)),
            expires_at: None,
            refresh_token: Some(SecretString::from(account.refresh_token)),
            scopes: Some(account.scopes),
            email: Some(ALICE.into()),
        },
    )
    .await
    .unwrap();
    let session = store.create_session(&agent.id, "chat").await.unwrap().id;
    let settings = RuntimeSettings { tool_timeout: Duration::from_secs(5), ..RuntimeSettings::default() };
    let rt = Runtime::new(store.clone(), settings, tools);
    Env { store, google, attio, toolbox, agent: agent.id, owner: user.id, session, rt, _dir: dir }
}

impl Env {
    async fn proposal(&self, tool: &str, args: Value, to: &[ProposalState]) -> Proposal {
        let mut p = self
            .store
            .create_proposal(NewProposal {
                agent_id: self.agent.clone(),
                session_id: Some(self.session.clone()),
                owner_id: Some(self.owner.clone()),
                tool: tool.into(),
                args,
                summary: format!("📋 Proposed action: {tool}\n"),
                trace_id: None,
                expires_at: crewgate_core::now_millis() + 3_600_000,
            })
            .await
            .unwrap();
        for next in to {
            p = self
                .store
                .transition_proposal(&self.agent, &p.id, Transition::new(p.state, *next))
                .await
                .unwrap()
                .unwrap();
        }
        p
    }

    async fn get(&self, p: &Proposal) -> Proposal {
        self.store.get_proposal(&self.agent, &p.id).await.unwrap().unwrap()
    }

    /// What the tool itself would have done for `p` before the process died.
    async fn run_directly(&self, p: &Proposal) {
        let creds = Arc::new(StoreGoogleCredentials::new(self.store.clone(), self.owner.clone()));
        let ctx = crewgate_tools::ToolContext::new()
            .with_google(creds)
            .with_idempotency_key(p.idempotency_key.clone());
        self.toolbox.call(&p.tool, &p.args, &ctx).await.unwrap();
    }

    fn alice(&self) -> Principal {
        Principal::User { user_id: self.owner.clone(), agent_id: self.agent.clone(), token_id: "t".into() }
    }
}

fn mail(n: u32) -> Value {
    json!({"to": ["ann@ext.com"], "subject": format!("Mail {n}"), "body": "hi"})
}

#[tokio::test]
async fn restart_settles_interrupted_writes_by_asking_never_by_resending() {
    use ProposalState::{Approved, Executing};
    let e = env().await;
    let sent_before_crash = e.proposal("gmail_send", mail(1), &[Approved, Executing]).await;
    e.run_directly(&sent_before_crash).await;
    let never_sent = e.proposal("gmail_send", mail(2), &[Approved, Executing]).await;
    let attio_note = e
        .proposal(
            "attio_add_note",
            json!({"object": "people", "record_id": "r1", "title": "t", "content": "c"}),
            &[Approved, Executing],
        )
        .await;
    let gone_tool = e.proposal("teleport", json!({}), &[Approved, Executing]).await;
    let approved_not_started = e.proposal("gmail_send", mail(3), &[Approved]).await;
    let pending = e.proposal("gmail_send", mail(4), &[]).await;
    assert_eq!(e.google.sent(ALICE).len(), 1);

    let report = e.rt.recover_proposals().await.unwrap();
    assert_eq!(report, RecoveryReport { confirmed: 1, not_done: 1, unknown: 2, resumed: 1 });
    let p = e.get(&sent_before_crash).await;
    assert_eq!(p.state, ProposalState::Done, "{:?}", p.result);
    assert_eq!(p.result.as_ref().unwrap()["recovered"], true);
    assert_eq!(e.get(&never_sent).await.state, ProposalState::Failed);
    assert_eq!(e.get(&attio_note).await.state, ProposalState::Unknown, "Attio cannot tell: check manually");
    assert_eq!(e.get(&gone_tool).await.state, ProposalState::Unknown);
    assert_eq!(e.get(&pending).await.state, ProposalState::Pending);
    let mut resumed = e.get(&approved_not_started).await;
    for _ in 0..200 {
        if resumed.state == ProposalState::Done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        resumed = e.get(&approved_not_started).await;
    }
    assert_eq!(resumed.state, ProposalState::Done, "an approved write that never started runs once");
    // Nothing was re-sent: the mail sent before the crash exists once; the resumed one once.
    let keys: Vec<Option<String>> = e.google.sent(ALICE).into_iter().map(|m| m.idempotency_key).collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.contains(&Some(sent_before_crash.idempotency_key.clone())));
    assert!(keys.contains(&Some(approved_not_started.idempotency_key.clone())));
    assert_eq!(e.attio.writes(), 0);

    // The person is told, in the session, about each one.
    let mut bodies = Vec::new();
    for _ in 0..200 {
        bodies =
            e.store.list_messages(&e.agent, &e.session).await.unwrap().into_iter().map(|m| m.body).collect();
        if bodies.len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let told = |n: i64, what: &str| bodies.iter().any(|b| b.contains(&format!("#{n} ")) && b.contains(what));
    assert!(told(never_sent.number, "did not happen"), "{bodies:#?}");
    assert!(told(attio_note.number, "Check manually"), "{bodies:#?}");
    assert!(told(sent_before_crash.number, "done"), "{bodies:#?}");
    assert!(told(approved_not_started.number, "done"), "{bodies:#?}");
    // A second start finds nothing left to do.
    assert_eq!(e.rt.recover_proposals().await.unwrap(), RecoveryReport::default());
    assert_eq!(e.store.verify_audit_chain().await.unwrap().first_bad, None);
}

#[tokio::test]
async fn a_write_in_doubt_is_unknown_unless_the_service_confirms_it() {
    let e = env().await;
    // 500 on send: it may have happened; the service has no trace → unknown, never re-sent.
    e.google.inject(Fault::status(500).on("POST", "/messages/send"));
    let p = e.proposal("gmail_send", mail(1), &[]).await;
    let out = e.rt.decide(&e.alice(), &e.agent, &p.id, DecisionRequest::Approve, "test").await.unwrap();
    assert_eq!(out.state, ProposalState::Unknown, "{:?}", out.result);
    assert_eq!(out.result.as_ref().unwrap()["check_manually"], true);
    // A clear refusal (400) certainly did not happen → failed.
    e.google.inject(Fault::status(400).on("POST", "/messages/send"));
    let p = e.proposal("gmail_send", mail(2), &[]).await;
    let out = e.rt.decide(&e.alice(), &e.agent, &p.id, DecisionRequest::Approve, "test").await.unwrap();
    assert_eq!(out.state, ProposalState::Failed, "{:?}", out.result);
    assert_eq!(e.google.writes(ALICE), 0);
    // Revoked Google access: failed with the reconnect hint, and the connection is marked.
    e.google.revoke(ALICE);
    e.google.expire_access_tokens(ALICE);
    let p = e.proposal("gmail_send", mail(3), &[]).await;
    let out = e.rt.decide(&e.alice(), &e.agent, &p.id, DecisionRequest::Approve, "test").await.unwrap();
    assert_eq!(out.state, ProposalState::Failed, "{:?}", out.result);
    assert!(
        out.result.as_ref().unwrap()["error"].as_str().unwrap().contains("reconnect"),
        "{:?}",
        out.result
    );
    assert!(matches!(
        google_status(e.store.as_ref(), &e.owner).await.unwrap(),
        GoogleStatus::NeedsReconnect { .. }
    ));
}
