//! One conformance suite, run against both backends: every test below exists once per backend.
//! The PostgreSQL half needs `TEST_DATABASE_URL` (the README test command starts a throwaway
//! cluster and sets it); without it those tests print a notice and pass, unless
//! `CREWGATE_REQUIRE_POSTGRES=1` (set by `cargo xtask test` and CI), where they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crewgate_core::{
    AgentId, AgentKind, IssuedToken, MasterKey, Role, TokenKind, UserStatus, now_millis, token::TokenHash,
};
use crewgate_store::{
    AuditScope, MessageRole, NewAgent, NewAudit, NewMessage, NewToken, NewUser, PostgresStore, SqliteStore,
    Store, StoreError, StoredToolCall, TokenScope,
};
use secrecy::{ExposeSecret, SecretString};
use std::str::FromStr;
use std::sync::Arc;

/// A store under test plus raw SQL access for tamper tests, and a way to reopen with another key.
struct Harness {
    store: Arc<dyn Store>,
    raw: Raw,
    _dir: Option<tempfile::TempDir>,
}

enum Raw {
    Sqlite(sqlx::SqlitePool, std::path::PathBuf),
    Postgres(sqlx::PgPool, Box<sqlx::postgres::PgConnectOptions>),
}

impl Raw {
    async fn exec(&self, sql: &'static str) {
        match self {
            Raw::Sqlite(p, _) => {
                sqlx::query(sql).execute(p).await.unwrap();
            }
            Raw::Postgres(p, _) => {
                sqlx::query(sql).execute(p).await.unwrap();
            }
        }
    }

    async fn bytes(&self, sql: &'static str) -> Vec<Vec<u8>> {
        match self {
            Raw::Sqlite(p, _) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
            Raw::Postgres(p, _) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
        }
    }

    async fn reopen(&self, key: &MasterKey) -> Result<Arc<dyn Store>, StoreError> {
        Ok(match self {
            Raw::Sqlite(_, path) => Arc::new(SqliteStore::open(path, key).await?),
            Raw::Postgres(_, opts) => Arc::new(PostgresStore::open_with((**opts).clone(), key).await?),
        })
    }
}

fn test_key() -> MasterKey {
    MasterKey::from_hex(&SecretString::from("42".repeat(32))).unwrap()
}

async fn sqlite() -> Option<Harness> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crewgate.db");
    let store = SqliteStore::open(&path, &test_key()).await.unwrap();
    let raw = Raw::Sqlite(store.raw_pool().clone(), path);
    Some(Harness { store: Arc::new(store), raw, _dir: Some(dir) })
}

async fn postgres() -> Option<Harness> {
    let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
        if std::env::var("CREWGATE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
            panic!("CREWGATE_REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set");
        }
        eprintln!("note: TEST_DATABASE_URL not set; skipping the PostgreSQL half (run `cargo xtask test`)");
        return None;
    };
    // Each test gets its own schema, so tests run in parallel without seeing each other.
    let schema = format!("t_{}", uuid_like());
    let base = sqlx::postgres::PgConnectOptions::from_str(&url).unwrap();
    let admin = sqlx::PgPool::connect_with(base.clone()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&admin).await.unwrap();
    admin.close().await;
    let opts = base.options([("search_path", schema.as_str())]);
    let store = PostgresStore::open_with(opts.clone(), &test_key()).await.unwrap();
    let raw = Raw::Postgres(store.raw_pool().clone(), Box::new(opts));
    Some(Harness { store: Arc::new(store), raw, _dir: None })
}

fn uuid_like() -> String {
    let t = IssuedToken::generate(TokenKind::Invite);
    t.hash.as_str()[..16].to_owned()
}

/// Declares each conformance test once per backend.
macro_rules! conformance {
    ($($name:ident),+ $(,)?) => {
        mod sqlite_backend {
            $( #[tokio::test] async fn $name() { if let Some(h) = super::sqlite().await { super::$name(h).await } } )+
        }
        mod postgres_backend {
            $( #[tokio::test] async fn $name() { if let Some(h) = super::postgres().await { super::$name(h).await } } )+
        }
    };
}

conformance!(
    users_round_trip_and_unique_email,
    agents_round_trip_conflicts_and_soft_delete,
    tokens_resolve_revoke_rotate_expire,
    sessions_and_messages_are_scoped_by_agent,
    sealed_message_copied_to_another_row_does_not_open,
    sealed_secret_copied_to_another_owner_does_not_open,
    wrong_master_key_is_refused,
    audit_entries_are_scoped,
    concurrent_writes_all_land,
    sessions_rename_and_soft_delete_are_scoped,
    tool_messages_round_trip_sealed,
    append_messages_is_all_or_nothing,
    session_for_key_is_stable_scoped_and_race_free,
    proposals_number_seal_and_scope,
    concurrent_approvals_move_a_proposal_once,
    proposal_transitions_are_guarded,
    expired_proposals_are_swept_once,
    grants_round_trip_and_count_uses,
    audit_chain_detects_a_modified_row,
    concurrent_audit_appends_keep_one_chain,
    web_sessions_die_with_their_token,
    invites_round_trip_find_and_list,
    invite_agent_id_is_reserved_forever,
    invite_is_used_exactly_once,
    concurrent_invite_uses_win_once,
    invites_revoke_and_reissue,
    released_invite_can_be_used_again,
    oauth_states_are_single_use_and_sealed,
    concurrent_oauth_state_takes_win_once,
);

fn member(email: &str) -> NewUser {
    NewUser { email: email.into(), name: None, role: Role::Member, status: UserStatus::Active }
}

fn worker(id: &str, owner: Option<crewgate_core::UserId>) -> NewAgent {
    NewAgent {
        id: AgentId::parse(id).unwrap(),
        kind: AgentKind::Worker,
        owner,
        name: id.into(),
        settings: serde_json::json!({"model": "m"}),
    }
}

fn user_token(user: &crewgate_core::UserId, agent: &AgentId) -> (IssuedToken, NewToken) {
    let t = IssuedToken::generate(TokenKind::User);
    let new = NewToken {
        kind: TokenKind::User,
        hash: t.hash.clone(),
        display: t.display.clone(),
        label: Some("test".into()),
        user_id: Some(user.clone()),
        agent_id: Some(agent.clone()),
        expires_at: None,
    };
    (t, new)
}

async fn users_round_trip_and_unique_email(h: Harness) {
    let s = &h.store;
    let alice = s.create_user(member(" Alice@Company.com ")).await.unwrap();
    assert_eq!(alice.email, "alice@company.com");
    assert_eq!(s.get_user(&alice.id).await.unwrap().unwrap(), alice);
    assert_eq!(s.find_user_by_email("ALICE@company.com").await.unwrap().unwrap().id, alice.id);
    let dup = s.create_user(member("alice@company.com")).await.unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");
    let bob = s.create_user(member("bob@company.com")).await.unwrap();
    s.set_user_status(&bob.id, UserStatus::Suspended).await.unwrap();
    let all = s.list_users().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all.iter().find(|u| u.id == bob.id).unwrap().status, UserStatus::Suspended);
    let ghost = crewgate_core::UserId::generate();
    assert!(s.get_user(&ghost).await.unwrap().is_none());
    assert!(matches!(s.set_user_status(&ghost, UserStatus::Active).await, Err(StoreError::NotFound(_))));
}

async fn agents_round_trip_conflicts_and_soft_delete(h: Harness) {
    let s = &h.store;
    let alice = s.create_user(member("alice@company.com")).await.unwrap();
    let a = s.create_agent(worker("alice-company-com", Some(alice.id.clone()))).await.unwrap();
    assert_eq!(s.get_agent(&a.id).await.unwrap().unwrap(), a);
    assert_eq!(a.settings["model"], "m");
    assert_eq!(s.worker_of_user(&alice.id).await.unwrap().unwrap().id, a.id);
    let dup = s.create_agent(worker("alice-company-com", None)).await.unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");
    s.create_agent(worker("shared", None)).await.unwrap();
    assert_eq!(s.count_agents().await.unwrap(), 2);

    let (t, new) = user_token(&alice.id, &a.id);
    s.insert_token(new).await.unwrap();
    assert!(s.delete_agent(&a.id).await.unwrap());
    assert!(!s.delete_agent(&a.id).await.unwrap(), "second delete reports nothing deleted");
    assert!(s.get_agent(&a.id).await.unwrap().is_none());
    assert!(s.agent_id_taken(&a.id).await.unwrap(), "deleted ids are never reused");
    assert_eq!(s.list_agents().await.unwrap().len(), 1);
    assert!(s.resolve_token(&t.hash, now_millis()).await.unwrap().is_none(), "delete revokes tokens");
}

async fn tokens_resolve_revoke_rotate_expire(h: Harness) {
    let s = &h.store;
    let alice = s.create_user(member("alice@company.com")).await.unwrap();
    let a = s.create_agent(worker("alice", Some(alice.id.clone()))).await.unwrap();
    let now = now_millis();

    let (t1, new1) = user_token(&alice.id, &a.id);
    let info1 = s.insert_token(new1.clone()).await.unwrap();
    let got = s.resolve_token(&t1.hash, now).await.unwrap().unwrap();
    assert_eq!(got.id, info1.id);
    assert_eq!(got.agent_id.as_ref(), Some(&a.id));
    assert!(matches!(s.insert_token(new1).await, Err(StoreError::Conflict(_))));
    assert!(s.resolve_token(&TokenHash::of("cgu_nope"), now).await.unwrap().is_none());

    let (t2, new2) = user_token(&alice.id, &a.id);
    let info2 = s.rotate_token(&info1.id, new2, now).await.unwrap();
    assert!(s.resolve_token(&t1.hash, now).await.unwrap().is_none(), "old token dies at rotation");
    assert_eq!(s.resolve_token(&t2.hash, now).await.unwrap().unwrap().id, info2.id);
    let (_, new3) = user_token(&alice.id, &a.id);
    assert!(matches!(s.rotate_token(&info1.id, new3, now).await, Err(StoreError::NotFound(_))));

    assert!(s.revoke_token(&info2.id, now).await.unwrap());
    assert!(!s.revoke_token(&info2.id, now).await.unwrap());
    assert!(s.resolve_token(&t2.hash, now).await.unwrap().is_none());
    assert!(s.get_token(&info2.id).await.unwrap().unwrap().revoked_at.is_some());

    let (t4, mut new4) = user_token(&alice.id, &a.id);
    new4.expires_at = Some(now + 1000);
    s.insert_token(new4).await.unwrap();
    assert!(s.resolve_token(&t4.hash, now).await.unwrap().is_some());
    assert!(s.resolve_token(&t4.hash, now + 1000).await.unwrap().is_none(), "expired token refused");

    let bob = s.create_user(member("bob@company.com")).await.unwrap();
    let b = s.create_agent(worker("bob", Some(bob.id.clone()))).await.unwrap();
    s.insert_token(user_token(&bob.id, &b.id).1).await.unwrap();
    let alices = s.list_tokens(TokenScope::User(alice.id.clone())).await.unwrap();
    assert_eq!(alices.len(), 3);
    assert!(alices.iter().all(|t| t.user_id.as_ref() == Some(&alice.id)));
    assert_eq!(s.list_tokens(TokenScope::All).await.unwrap().len(), 4);
    assert_eq!(s.count_live_tokens(TokenKind::User).await.unwrap(), 2);
    for t in s.list_tokens(TokenScope::All).await.unwrap() {
        let json = serde_json::to_string(&t).unwrap();
        assert!(!json.contains(t1.secret.expose_secret()) && !json.contains(t2.secret.expose_secret()));
    }
}

async fn sessions_and_messages_are_scoped_by_agent(h: Harness) {
    let s = &h.store;
    let a = s.create_agent(worker("alice", None)).await.unwrap();
    let b = s.create_agent(worker("bob", None)).await.unwrap();
    let sa = s.create_session(&a.id, "first").await.unwrap();
    s.append_message(&a.id, &sa.id, "user", "hello ünïcode").await.unwrap();
    s.append_message(&a.id, &sa.id, "assistant", "hi").await.unwrap();
    let msgs = s.list_messages(&a.id, &sa.id).await.unwrap();
    assert_eq!(msgs.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["hello ünïcode", "hi"]);
    assert_eq!(s.list_sessions(&a.id).await.unwrap().len(), 1);

    // Bob's agent can neither see nor write Alice's session.
    assert!(s.get_session(&b.id, &sa.id).await.unwrap().is_none());
    assert!(s.list_messages(&b.id, &sa.id).await.unwrap().is_empty());
    assert!(matches!(s.append_message(&b.id, &sa.id, "user", "x").await, Err(StoreError::NotFound(_))));
    assert!(s.list_sessions(&b.id).await.unwrap().is_empty());
    assert_eq!(s.list_messages(&a.id, &sa.id).await.unwrap().len(), 2);
}

async fn sealed_message_copied_to_another_row_does_not_open(h: Harness) {
    let s = &h.store;
    let a = s.create_agent(worker("alice", None)).await.unwrap();
    let sess = s.create_session(&a.id, "t").await.unwrap();
    s.append_message(&a.id, &sess.id, "user", "first secret").await.unwrap();
    s.append_message(&a.id, &sess.id, "user", "second").await.unwrap();
    // Bodies are not stored in clear.
    let raw = h.raw.bytes("SELECT body FROM messages").await;
    assert_eq!(raw.len(), 2);
    assert!(raw.iter().all(|b| !b.windows(6).any(|w| w == b"secret")));
    // Copy the first row's ciphertext over the second row.
    h.raw
        .exec("UPDATE messages SET body = (SELECT body FROM messages ORDER BY id LIMIT 1) WHERE id = (SELECT id FROM messages ORDER BY id DESC LIMIT 1)")
        .await;
    let err = s.list_messages(&a.id, &sess.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Seal(crewgate_core::SealError::Open)), "{err:?}");
}

async fn sealed_secret_copied_to_another_owner_does_not_open(h: Harness) {
    let s = &h.store;
    s.put_secret("alice", "google", &SecretString::from("refresh-a")).await.unwrap();
    s.put_secret("bob", "google", &SecretString::from("refresh-b")).await.unwrap();
    assert_eq!(s.get_secret("alice", "google").await.unwrap().unwrap().expose_secret(), "refresh-a");
    s.put_secret("alice", "google", &SecretString::from("refresh-a2")).await.unwrap();
    assert_eq!(s.get_secret("alice", "google").await.unwrap().unwrap().expose_secret(), "refresh-a2");
    assert!(s.get_secret("carol", "google").await.unwrap().is_none());
    h.raw
        .exec("UPDATE secrets SET value = (SELECT value FROM secrets WHERE owner = 'alice') WHERE owner = 'bob'")
        .await;
    let err = s.get_secret("bob", "google").await.unwrap_err();
    assert!(matches!(err, StoreError::Seal(crewgate_core::SealError::Open)), "{err:?}");
}

async fn wrong_master_key_is_refused(h: Harness) {
    h.store.put_secret("alice", "k", &SecretString::from("v")).await.unwrap();
    let other = MasterKey::from_hex(&SecretString::from("43".repeat(32))).unwrap();
    let err = h.raw.reopen(&other).await.unwrap_err();
    assert!(matches!(err, StoreError::WrongMasterKey), "{err:?}");
    assert!(err.to_string().contains("original MASTER_KEY"), "{err}");
    // The right key still opens it.
    let again = h.raw.reopen(&test_key()).await.unwrap();
    assert_eq!(again.get_secret("alice", "k").await.unwrap().unwrap().expose_secret(), "v");
}

async fn audit_entries_are_scoped(h: Harness) {
    let s = &h.store;
    let alice = s.create_user(member("alice@company.com")).await.unwrap();
    let bob = s.create_user(member("bob@company.com")).await.unwrap();
    for (u, action) in [(&alice, "a1"), (&bob, "b1"), (&alice, "a2")] {
        s.append_audit(NewAudit {
            actor: "admin:x".into(),
            user_id: Some(u.id.clone()),
            agent_id: None,
            action: action.into(),
            detail: serde_json::json!({"n": action}),
        })
        .await
        .unwrap();
    }
    let mine = s.list_audit(AuditScope::User(alice.id.clone()), 100).await.unwrap();
    assert_eq!(mine.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["a2", "a1"]);
    assert_eq!(s.list_audit(AuditScope::All, 100).await.unwrap().len(), 3);
    assert_eq!(s.list_audit(AuditScope::All, 1).await.unwrap().len(), 1);
    assert_eq!(mine[0].detail["n"], "a2");
}

async fn concurrent_writes_all_land(h: Harness) {
    let a = h.store.create_agent(worker("alice", None)).await.unwrap();
    let sess = h.store.create_session(&a.id, "t").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = h.store.clone();
        let (agent, session) = (a.id.clone(), sess.id.clone());
        tasks.push(tokio::spawn(async move {
            s.append_message(&agent, &session, "user", &format!("m{i}")).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let msgs = h.store.list_messages(&a.id, &sess.id).await.unwrap();
    let mut bodies: Vec<_> = msgs.iter().map(|m| m.body.clone()).collect();
    bodies.sort();
    let mut want: Vec<_> = (0..40).map(|i| format!("m{i}")).collect();
    want.sort();
    assert_eq!(bodies, want);
}

async fn sessions_rename_and_soft_delete_are_scoped(h: Harness) {
    let s = &h.store;
    let a = s.create_agent(worker("alice", None)).await.unwrap();
    let b = s.create_agent(worker("bob", None)).await.unwrap();
    let keep = s.create_session(&a.id, "keep").await.unwrap();
    let gone = s.create_session(&a.id, "gone").await.unwrap();
    s.append_message(&a.id, &gone.id, "user", "to be hidden").await.unwrap();

    assert!(s.rename_session(&b.id, &keep.id, "hijack").await.unwrap().is_none());
    let renamed = s.rename_session(&a.id, &keep.id, "Renamed ✓").await.unwrap().unwrap();
    assert_eq!(renamed.title, "Renamed ✓");
    assert_eq!(s.get_session(&a.id, &keep.id).await.unwrap().unwrap().title, "Renamed ✓");

    assert!(!s.delete_session(&b.id, &gone.id).await.unwrap(), "another agent cannot delete it");
    assert!(s.delete_session(&a.id, &gone.id).await.unwrap());
    assert!(!s.delete_session(&a.id, &gone.id).await.unwrap(), "deleting twice is a no-op");
    assert!(s.get_session(&a.id, &gone.id).await.unwrap().is_none());
    assert_eq!(
        s.list_sessions(&a.id).await.unwrap().iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
        [keep.id.as_str()]
    );
    assert!(s.list_messages(&a.id, &gone.id).await.unwrap().is_empty());
    assert!(s.recent_messages(&a.id, &gone.id, 10).await.unwrap().is_empty());
    assert!(matches!(s.append_message(&a.id, &gone.id, "user", "x").await, Err(StoreError::NotFound(_))));
    assert!(s.rename_session(&a.id, &gone.id, "back").await.unwrap().is_none());
    // Soft: the row is still there.
    let raw = h.raw.bytes("SELECT body FROM messages").await;
    assert_eq!(raw.len(), 1);
}

async fn tool_messages_round_trip_sealed(h: Harness) {
    let s = &h.store;
    let a = s.create_agent(worker("alice", None)).await.unwrap();
    let sess = s.create_session(&a.id, "t").await.unwrap();
    let call = StoredToolCall {
        id: "call_1".into(),
        name: "calendar_list".into(),
        arguments: r#"{"query":"confidential-arg"}"#.into(),
    };
    let written = s
        .append_messages(
            &a.id,
            &sess.id,
            &[
                NewMessage::text(MessageRole::User, "what's on my calendar?"),
                NewMessage {
                    role: MessageRole::Assistant,
                    body: String::new(),
                    tool_calls: vec![call.clone()],
                    tool_call_id: None,
                    tool_name: None,
                },
                NewMessage {
                    role: MessageRole::Tool,
                    body: "standup at 9".into(),
                    tool_calls: Vec::new(),
                    tool_call_id: Some("call_1".into()),
                    tool_name: Some("calendar_list".into()),
                },
                NewMessage::text(MessageRole::Assistant, "You have standup at 9."),
            ],
        )
        .await
        .unwrap();
    assert_eq!(written.len(), 4);
    let all = s.list_messages(&a.id, &sess.id).await.unwrap();
    assert_eq!(all, written, "what was returned on append is what is read back");
    assert_eq!(
        all.iter().map(|m| m.role.as_str()).collect::<Vec<_>>(),
        ["user", "assistant", "tool", "assistant"]
    );
    assert_eq!(all[1].tool_calls, vec![call]);
    assert_eq!(all[2].tool_call_id.as_deref(), Some("call_1"));
    assert_eq!(all[2].tool_name.as_deref(), Some("calendar_list"));
    assert!(all[0].tool_calls.is_empty() && all[0].tool_call_id.is_none());

    let recent = s.recent_messages(&a.id, &sess.id, 2).await.unwrap();
    assert_eq!(
        recent.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["standup at 9", "You have standup at 9."]
    );
    assert_eq!(s.recent_messages(&a.id, &sess.id, 100).await.unwrap().len(), 4);

    // Tool metadata is sealed, and bound to its row.
    let metas = h.raw.bytes("SELECT meta FROM messages WHERE meta IS NOT NULL").await;
    assert_eq!(metas.len(), 2);
    assert!(metas.iter().all(|m| !m.windows(12).any(|w| w == b"confidential")));
    h.raw
        .exec("UPDATE messages SET meta = (SELECT meta FROM messages WHERE role = 'assistant' AND meta IS NOT NULL) WHERE role = 'tool'")
        .await;
    let err = s.list_messages(&a.id, &sess.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Seal(crewgate_core::SealError::Open)), "{err:?}");
}

async fn append_messages_is_all_or_nothing(h: Harness) {
    let s = &h.store;
    let a = s.create_agent(worker("alice", None)).await.unwrap();
    let b = s.create_agent(worker("bob", None)).await.unwrap();
    let sess = s.create_session(&a.id, "t").await.unwrap();
    let batch = [NewMessage::text(MessageRole::User, "one"), NewMessage::text(MessageRole::Assistant, "two")];
    let err = s.append_messages(&b.id, &sess.id, &batch).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert!(matches!(
        s.append_messages(&a.id, "no-such-session", &batch).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(h.raw.bytes("SELECT body FROM messages").await.is_empty(), "nothing was written");
    assert_eq!(s.append_messages(&a.id, &sess.id, &batch).await.unwrap().len(), 2);
    assert!(s.append_messages(&a.id, &sess.id, &[]).await.unwrap().is_empty());
}

async fn session_for_key_is_stable_scoped_and_race_free(h: Harness) {
    let s = &h.store;
    let a = s.create_agent(worker("alice", None)).await.unwrap();
    let b = s.create_agent(worker("bob", None)).await.unwrap();
    let first = s.session_for_key(&a.id, "k1", "API chat").await.unwrap();
    assert_eq!(first.title, "API chat");
    assert_eq!(s.session_for_key(&a.id, "k1", "other title").await.unwrap(), first);
    let bobs = s.session_for_key(&b.id, "k1", "API chat").await.unwrap();
    assert_ne!(bobs.id, first.id, "keys are per agent");
    assert_ne!(s.session_for_key(&a.id, "k2", "x").await.unwrap().id, first.id);

    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (st, agent) = (h.store.clone(), a.id.clone());
        tasks.push(tokio::spawn(async move { st.session_for_key(&agent, "race", "r").await.unwrap().id }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "concurrent callers share one session: {ids:?}");

    // Deleting the session frees the key: the next call starts a fresh conversation.
    assert!(s.delete_session(&a.id, &first.id).await.unwrap());
    let fresh = s.session_for_key(&a.id, "k1", "API chat").await.unwrap();
    assert_ne!(fresh.id, first.id);
}

// ---------------------------------------------------------------------------------------------
// Approvals: proposals, grants, audit chain.

use crewgate_core::{Decision, ProposalState};
use crewgate_store::approvals::{NewGrant, NewProposal, Transition};

fn proposal(agent: &AgentId, to: &str) -> NewProposal {
    NewProposal {
        agent_id: agent.clone(),
        session_id: None,
        owner_id: None,
        tool: "gmail_send".into(),
        args: serde_json::json!({"to": to, "subject": "Quarterly numbers", "body": "confidential body"}),
        summary: format!("Send email to {to}"),
        trace_id: None,
        expires_at: now_millis() + 60_000,
    }
}

fn approve() -> Transition {
    Transition {
        decision: Some(Decision::Approved { by: "user:alice".into(), via: "rest".into() }),
        ..Transition::new(ProposalState::Pending, ProposalState::Approved)
    }
}

async fn proposals_number_seal_and_scope(h: Harness) {
    let s = &h.store;
    let a = s.create_agent(worker("alice", None)).await.unwrap();
    let b = s.create_agent(worker("bob", None)).await.unwrap();
    let p1 = s.create_proposal(proposal(&a.id, "x@y.com")).await.unwrap();
    let p2 = s.create_proposal(proposal(&a.id, "z@y.com")).await.unwrap();
    let q1 = s.create_proposal(proposal(&b.id, "x@y.com")).await.unwrap();
    assert_eq!((p1.number, p2.number, q1.number), (1, 2, 1), "numbers are per agent");
    assert_eq!(p1.fingerprint, crewgate_core::fingerprint("gmail_send", &p1.args));
    assert_ne!(p1.idempotency_key, p2.idempotency_key);
    let got = s.get_proposal(&a.id, &p1.id).await.unwrap().unwrap();
    assert_eq!(got, p1);
    assert_eq!(s.get_proposal_by_number(&a.id, 2).await.unwrap().unwrap().id, p2.id);
    assert!(s.get_proposal(&b.id, &p1.id).await.unwrap().is_none(), "another agent's proposal is invisible");
    assert!(s.transition_proposal(&b.id, &p1.id, approve()).await.unwrap().is_none(), "nor can it be moved");
    assert_eq!(s.list_proposals(&a.id, Some(ProposalState::Pending), 10).await.unwrap().len(), 2);
    let raw = h.raw.bytes("SELECT args FROM proposals").await;
    assert!(raw.iter().all(|b| !b.windows(12).any(|w| w == b"confidential")), "args sealed at rest");
    // Copying one proposal's sealed args into another row makes it unreadable, not swapped.
    h.raw.exec("UPDATE proposals SET args = (SELECT args FROM proposals WHERE number = 1 AND agent_id = 'alice') WHERE number = 2 AND agent_id = 'alice'").await;
    assert!(matches!(s.get_proposal(&a.id, &p2.id).await, Err(StoreError::Seal(_))));
}

async fn concurrent_approvals_move_a_proposal_once(h: Harness) {
    let a = h.store.create_agent(worker("alice", None)).await.unwrap();
    let p = h.store.create_proposal(proposal(&a.id, "x@y.com")).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (s, agent, id) = (h.store.clone(), a.id.clone(), p.id.clone());
        tasks.push(tokio::spawn(async move {
            s.transition_proposal(&agent, &id, approve()).await.unwrap().is_some()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1, "exactly one approval wins");
    let got = h.store.get_proposal(&a.id, &p.id).await.unwrap().unwrap();
    assert_eq!(got.state, ProposalState::Approved);
    assert!(matches!(got.decision, Some(Decision::Approved { .. })));
}

async fn proposal_transitions_are_guarded(h: Harness) {
    let s = &h.store;
    let a = s.create_agent(worker("alice", None)).await.unwrap();
    let p = s.create_proposal(proposal(&a.id, "x@y.com")).await.unwrap();
    // Skipping approval is refused outright.
    let skip = Transition::new(ProposalState::Pending, ProposalState::Executing);
    assert!(matches!(s.transition_proposal(&a.id, &p.id, skip).await, Err(StoreError::Conflict(_))));
    // A stale fingerprint does not approve.
    let stale = Transition { fingerprint: Some("00".repeat(32)), ..approve() };
    assert!(s.transition_proposal(&a.id, &p.id, stale).await.unwrap().is_none());
    let ok = Transition { fingerprint: Some(p.fingerprint.clone()), ..approve() };
    assert!(s.transition_proposal(&a.id, &p.id, ok).await.unwrap().is_some());
    let exec = Transition::new(ProposalState::Approved, ProposalState::Executing);
    assert!(s.transition_proposal(&a.id, &p.id, exec.clone()).await.unwrap().is_some());
    assert!(s.transition_proposal(&a.id, &p.id, exec).await.unwrap().is_none(), "never executes twice");
    let done = Transition {
        result: Some(serde_json::json!({"messageId": "m1"})),
        ..Transition::new(ProposalState::Executing, ProposalState::Done)
    };
    let fin = s.transition_proposal(&a.id, &p.id, done).await.unwrap().unwrap();
    assert_eq!(fin.state, ProposalState::Done);
    assert_eq!(fin.result.unwrap()["messageId"], "m1");
    assert!(matches!(fin.decision, Some(Decision::Approved { .. })), "decision kept");
    assert!(s.proposals_in_state(ProposalState::Executing).await.unwrap().is_empty());

    // Superseding an edited proposal links to its replacement; the old one can no longer be approved.
    let old = s.create_proposal(proposal(&a.id, "a@y.com")).await.unwrap();
    let new = s.create_proposal(proposal(&a.id, "b@y.com")).await.unwrap();
    let sup = Transition {
        superseded_by: Some(new.id.clone()),
        ..Transition::new(ProposalState::Pending, ProposalState::Superseded)
    };
    assert_eq!(
        s.transition_proposal(&a.id, &old.id, sup).await.unwrap().unwrap().superseded_by,
        Some(new.id)
    );
    assert!(s.transition_proposal(&a.id, &old.id, approve()).await.unwrap().is_none());
}

async fn expired_proposals_are_swept_once(h: Harness) {
    let s = &h.store;
    let a = s.create_agent(worker("alice", None)).await.unwrap();
    let mut short = proposal(&a.id, "x@y.com");
    short.expires_at = now_millis() - 1;
    let gone = s.create_proposal(short).await.unwrap();
    let kept = s.create_proposal(proposal(&a.id, "z@y.com")).await.unwrap();
    let swept = s.expire_proposals(now_millis()).await.unwrap();
    assert_eq!(swept.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), [gone.id.as_str()]);
    assert!(s.expire_proposals(now_millis()).await.unwrap().is_empty());
    assert_eq!(s.get_proposal(&a.id, &kept.id).await.unwrap().unwrap().state, ProposalState::Pending);
    assert!(s.transition_proposal(&a.id, &gone.id, approve()).await.unwrap().is_none());
}

async fn grants_round_trip_and_count_uses(h: Harness) {
    let s = &h.store;
    let a = s.create_agent(worker("alice", None)).await.unwrap();
    let b = s.create_agent(worker("bob", None)).await.unwrap();
    let mut m = serde_json::Map::new();
    m.insert("to".into(), serde_json::json!("*@company.com"));
    let g = s
        .create_grant(NewGrant {
            agent_id: a.id.clone(),
            action: "gmail.send".into(),
            match_args: m,
            expires_at: None,
            daily_cap: Some(5),
            created_by: "user:alice".into(),
        })
        .await
        .unwrap();
    assert_eq!(s.list_grants(&a.id).await.unwrap(), vec![g.clone()]);
    assert!(s.list_grants(&b.id).await.unwrap().is_empty());
    let p = s.create_proposal(proposal(&a.id, "x@company.com")).await.unwrap();
    let auto = Transition {
        decision: Some(Decision::Auto { grant_id: g.id.clone() }),
        ..Transition::new(ProposalState::Pending, ProposalState::Approved)
    };
    s.transition_proposal(&a.id, &p.id, auto).await.unwrap().unwrap();
    assert_eq!(s.grant_uses_since(&g.id, now_millis() - 86_400_000).await.unwrap(), 1);
    assert_eq!(s.grant_uses_since("other", 0).await.unwrap(), 0);
    assert!(!s.revoke_grant(&b.id, &g.id, now_millis()).await.unwrap(), "bob cannot revoke alice's grant");
    assert!(s.revoke_grant(&a.id, &g.id, now_millis()).await.unwrap());
    assert!(s.list_grants(&a.id).await.unwrap()[0].revoked_at.is_some());
}

async fn audit_chain_detects_a_modified_row(h: Harness) {
    for i in 0..5 {
        h.store
            .append_audit(NewAudit {
                actor: "admin:x".into(),
                user_id: None,
                agent_id: None,
                action: format!("a{i}"),
                detail: serde_json::json!({"i": i}),
            })
            .await
            .unwrap();
    }
    let ok = h.store.verify_audit_chain().await.unwrap();
    assert_eq!((ok.entries, ok.first_bad), (5, None));
    h.raw.exec("UPDATE audit_log SET detail = '{\"i\":99}' WHERE action = 'a2'").await;
    let bad = h.store.verify_audit_chain().await.unwrap();
    assert!(bad.first_bad.is_some(), "tampering not detected: {bad:?}");
    let all = h.store.list_audit(AuditScope::All, 100).await.unwrap();
    let a2 = all.iter().find(|e| e.action == "a2").unwrap();
    assert_eq!(bad.first_bad, Some(a2.id), "the first bad entry is the modified one");
}

async fn concurrent_audit_appends_keep_one_chain(h: Harness) {
    let mut tasks = Vec::new();
    for i in 0..30 {
        let s = h.store.clone();
        tasks.push(tokio::spawn(async move {
            s.append_audit(NewAudit {
                actor: "system".into(),
                user_id: None,
                agent_id: None,
                action: format!("c{i}"),
                detail: serde_json::json!({}),
            })
            .await
            .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let report = h.store.verify_audit_chain().await.unwrap();
    assert_eq!((report.entries, report.first_bad), (30, None));
}

async fn web_sessions_die_with_their_token(h: Harness) {
    let s = &h.store;
    let alice = s.create_user(member("alice@company.com")).await.unwrap();
    let a = s.create_agent(worker("alice", Some(alice.id.clone()))).await.unwrap();
    let (_, new) = user_token(&alice.id, &a.id);
    let token = s.insert_token(new).await.unwrap();
    let now = now_millis();
    let cookie = TokenHash::of("cgs_cookie-one");
    s.create_web_session(&cookie, &token.id, "csrf-1", now + 60_000).await.unwrap();
    let got = s.resolve_web_session(&cookie, now).await.unwrap().unwrap();
    assert_eq!((got.token.id.as_str(), got.csrf.as_str()), (token.id.as_str(), "csrf-1"));
    assert!(s.resolve_web_session(&TokenHash::of("cgs_other"), now).await.unwrap().is_none());
    assert!(s.resolve_web_session(&cookie, now + 60_000).await.unwrap().is_none(), "expired");
    let other = TokenHash::of("cgs_cookie-two");
    s.create_web_session(&other, &token.id, "csrf-2", now + 60_000).await.unwrap();
    assert!(s.revoke_web_session(&other, now).await.unwrap());
    assert!(s.resolve_web_session(&other, now).await.unwrap().is_none(), "logged out");
    s.revoke_token(&token.id, now).await.unwrap();
    assert!(s.resolve_web_session(&cookie, now).await.unwrap().is_none(), "token revoked ends the session");
}

// ---------------------------------------------------------------------------------------------
// Onboarding: invites and OAuth states.

use crewgate_store::onboarding::{InviteOrigin, NewInvite, NewOAuthState, OAuthPurpose};

fn invite(email: &str, agent: &str, expires_at: i64) -> (IssuedToken, NewInvite) {
    let t = IssuedToken::generate(TokenKind::Invite);
    let new = NewInvite {
        token_hash: t.hash.clone(),
        email: email.into(),
        name: Some("Alice".into()),
        agent_id: AgentId::parse(agent).unwrap(),
        origin: InviteOrigin::Admin,
        created_by: "admin:root".into(),
        expires_at,
    };
    (t, new)
}

fn oauth_state(purpose: OAuthPurpose, verifier: &str, expires_at: i64) -> (TokenHash, NewOAuthState) {
    let hash = TokenHash::of(&format!("state-{}", uuid_like()));
    let new = NewOAuthState {
        state_hash: hash.clone(),
        purpose,
        verifier: SecretString::from(verifier.to_owned()),
        expires_at,
    };
    (hash, new)
}

async fn invites_round_trip_find_and_list(h: Harness) {
    let s = &h.store;
    let now = now_millis();
    let (t1, new1) = invite(" Alice@Company.COM ", "alice", now + 60_000);
    let a = s.create_invite(new1).await.unwrap();
    assert_eq!(a.email, "alice@company.com", "stored lower-cased and trimmed");
    assert_eq!(a.name.as_deref(), Some("Alice"));
    assert_eq!(a.agent_id.as_str(), "alice");
    assert_eq!(a.origin, InviteOrigin::Admin);
    assert_eq!(a.created_by, "admin:root");
    assert_eq!((a.used_at, a.revoked_at, a.user_id.clone(), a.sent_count), (None, None, None, 1));
    assert_eq!(a.status(now), "pending");
    assert_eq!(a.status(now + 60_000), "expired");
    assert_eq!(s.get_invite(&a.id).await.unwrap().unwrap(), a);
    assert_eq!(s.find_invite_by_token(&t1.hash).await.unwrap().unwrap(), a);
    assert!(s.find_invite_by_token(&TokenHash::of("cgi_nope")).await.unwrap().is_none());
    assert!(s.get_invite("no-such-invite").await.unwrap().is_none());
    assert!(s.invite_reserves_agent(&a.agent_id).await.unwrap());
    assert!(!s.invite_reserves_agent(&AgentId::parse("bob").unwrap()).await.unwrap());

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (_, mut new2) = invite("bob@company.com", "bob", now + 60_000);
    new2.name = None;
    new2.origin = InviteOrigin::SelfService;
    let b = s.create_invite(new2).await.unwrap();
    // Ids are random (128 bits of hex), not guessable from one another.
    assert_ne!(a.id, b.id);
    assert!(a.id.len() >= 32, "{}", a.id);
    assert_eq!(s.get_invite(&b.id).await.unwrap().unwrap(), b);
    assert_eq!(b.origin, InviteOrigin::SelfService);
    assert!(b.name.is_none());
    let all = s.list_invites().await.unwrap();
    assert_eq!(
        all.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        [b.id.as_str(), a.id.as_str()],
        "newest first"
    );
    // Only the hash is stored, never the token.
    let json = serde_json::to_string(&all).unwrap();
    assert!(!json.contains(t1.secret.expose_secret()));
}

async fn invite_agent_id_is_reserved_forever(h: Harness) {
    let s = &h.store;
    let now = now_millis();
    let (_, pending) = invite("alice@company.com", "alice", now + 60_000);
    s.create_invite(pending).await.unwrap();
    let (_, again) = invite("other@company.com", "alice", now + 60_000);
    let err = s.create_invite(again).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("alice") && m.contains("reserved")),
        "{err:?}"
    );

    // A revoked invite keeps its agent id.
    let (_, revoked) = invite("bob@company.com", "bob", now + 60_000);
    let revoked = s.create_invite(revoked).await.unwrap();
    assert!(s.revoke_invite(&revoked.id, now).await.unwrap());
    let (_, again) = invite("bob@company.com", "bob", now + 60_000);
    assert!(matches!(s.create_invite(again).await, Err(StoreError::Conflict(_))));

    // So does an expired one.
    let (_, expired) = invite("carol@company.com", "carol", now - 1);
    s.create_invite(expired).await.unwrap();
    let (_, again) = invite("carol@company.com", "carol", now + 60_000);
    assert!(matches!(s.create_invite(again).await, Err(StoreError::Conflict(_))));
    assert!(s.invite_reserves_agent(&AgentId::parse("carol").unwrap()).await.unwrap());

    // A reused token hash is a conflict too, but not blamed on the agent id.
    let (t, dave) = invite("dave@company.com", "dave", now + 60_000);
    s.create_invite(dave).await.unwrap();
    let (_, mut dup) = invite("erin@company.com", "erin", now + 60_000);
    dup.token_hash = t.hash.clone();
    let err = s.create_invite(dup).await.unwrap_err();
    assert!(matches!(&err, StoreError::Conflict(m) if !m.contains("reserved")), "{err:?}");
    assert!(!s.invite_reserves_agent(&AgentId::parse("erin").unwrap()).await.unwrap());
    assert_eq!(s.list_invites().await.unwrap().len(), 4);
}

async fn invite_is_used_exactly_once(h: Harness) {
    let s = &h.store;
    let now = now_millis();
    let (_, new) = invite("alice@company.com", "alice", now + 60_000);
    let a = s.create_invite(new).await.unwrap();
    assert!(s.use_invite(&a.id, now).await.unwrap());
    assert!(!s.use_invite(&a.id, now).await.unwrap(), "second use refused");
    let got = s.get_invite(&a.id).await.unwrap().unwrap();
    assert_eq!(got.used_at, Some(now));
    assert_eq!(got.status(now), "used");
    assert!(!s.revoke_invite(&a.id, now).await.unwrap(), "a used invite cannot be revoked");
    assert!(!s.use_invite("no-such-invite", now).await.unwrap());

    // Expired: refused at the expiry instant and after.
    let (_, new) = invite("bob@company.com", "bob", now + 1000);
    let b = s.create_invite(new).await.unwrap();
    assert!(!s.use_invite(&b.id, now + 1000).await.unwrap());
    assert!(!s.use_invite(&b.id, now + 5000).await.unwrap());
    assert!(s.get_invite(&b.id).await.unwrap().unwrap().used_at.is_none());

    // Revoked: refused.
    let (_, new) = invite("carol@company.com", "carol", now + 60_000);
    let c = s.create_invite(new).await.unwrap();
    assert!(s.revoke_invite(&c.id, now).await.unwrap());
    assert!(!s.use_invite(&c.id, now).await.unwrap());
}

async fn concurrent_invite_uses_win_once(h: Harness) {
    let now = now_millis();
    let (_, new) = invite("alice@company.com", "alice", now + 60_000);
    let a = h.store.create_invite(new).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (s, id) = (h.store.clone(), a.id.clone());
        tasks.push(tokio::spawn(async move { s.use_invite(&id, now).await.unwrap() }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1, "exactly one accept wins");
    assert!(h.store.get_invite(&a.id).await.unwrap().unwrap().used_at.is_some());
}

async fn invites_revoke_and_reissue(h: Harness) {
    let s = &h.store;
    let now = now_millis();
    let (_, new) = invite("alice@company.com", "alice", now + 60_000);
    let a = s.create_invite(new).await.unwrap();
    assert!(s.revoke_invite(&a.id, now).await.unwrap());
    assert!(!s.revoke_invite(&a.id, now).await.unwrap(), "revoking twice is a no-op");
    let got = s.get_invite(&a.id).await.unwrap().unwrap();
    assert_eq!(got.revoked_at, Some(now));
    assert_eq!(got.status(now), "revoked");
    assert!(!s.revoke_invite("no-such-invite", now).await.unwrap());
    let fresh = IssuedToken::generate(TokenKind::Invite);
    assert!(s.reissue_invite(&a.id, fresh.hash.clone(), now + 120_000, now).await.unwrap().is_none());

    // Resending replaces the link, extends the expiry and counts the send.
    let (old, new) = invite("bob@company.com", "bob", now + 60_000);
    let b = s.create_invite(new).await.unwrap();
    let t2 = IssuedToken::generate(TokenKind::Invite);
    let re = s.reissue_invite(&b.id, t2.hash.clone(), now + 120_000, now).await.unwrap().unwrap();
    assert_eq!((re.id.as_str(), re.sent_count, re.expires_at), (b.id.as_str(), 2, now + 120_000));
    assert_eq!((re.email.as_str(), re.agent_id.as_str()), ("bob@company.com", "bob"));
    assert!(s.find_invite_by_token(&old.hash).await.unwrap().is_none(), "the old link stops working");
    assert_eq!(s.find_invite_by_token(&t2.hash).await.unwrap().unwrap(), re);
    assert_eq!(s.get_invite(&b.id).await.unwrap().unwrap(), re);
    let t3 = IssuedToken::generate(TokenKind::Invite);
    let re = s.reissue_invite(&b.id, t3.hash.clone(), now + 180_000, now).await.unwrap().unwrap();
    assert_eq!(re.sent_count, 3);
    assert!(s.find_invite_by_token(&t2.hash).await.unwrap().is_none());

    // A token hash already used by another invite is refused.
    let (c_token, new) = invite("carol@company.com", "carol", now + 60_000);
    s.create_invite(new).await.unwrap();
    let err = s.reissue_invite(&b.id, c_token.hash.clone(), now + 60_000, now).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(s.find_invite_by_token(&t3.hash).await.unwrap().is_some(), "failed reissue changed nothing");

    // Not once used, nor for an unknown id; an expired one comes back to life with a new expiry.
    assert!(s.use_invite(&b.id, now).await.unwrap());
    let t4 = IssuedToken::generate(TokenKind::Invite);
    assert!(s.reissue_invite(&b.id, t4.hash.clone(), now + 60_000, now).await.unwrap().is_none());
    assert!(s.find_invite_by_token(&t4.hash).await.unwrap().is_none());
    assert_eq!(s.get_invite(&b.id).await.unwrap().unwrap().sent_count, 3);
    let (_, new) = invite("dave@company.com", "dave", now + 1000);
    let d = s.create_invite(new).await.unwrap();
    let revived = s.reissue_invite(&d.id, t4.hash.clone(), now + 60_000, now + 1000).await.unwrap().unwrap();
    assert_eq!((revived.expires_at, revived.status(now + 2000)), (now + 60_000, "pending"));
    assert!(s.reissue_invite("no-such-invite", t4.hash.clone(), now + 60_000, now).await.unwrap().is_none());
}

async fn released_invite_can_be_used_again(h: Harness) {
    let s = &h.store;
    let now = now_millis();
    let (_, new) = invite("alice@company.com", "alice", now + 60_000);
    let a = s.create_invite(new).await.unwrap();
    assert!(s.use_invite(&a.id, now).await.unwrap());
    s.release_invite(&a.id).await.unwrap();
    let got = s.get_invite(&a.id).await.unwrap().unwrap();
    assert_eq!((got.used_at, got.status(now)), (None, "pending"));
    assert!(s.use_invite(&a.id, now).await.unwrap(), "released invites can be accepted again");
    assert!(!s.use_invite(&a.id, now).await.unwrap());

    let alice = s.create_user(member("alice@company.com")).await.unwrap();
    s.set_invite_user(&a.id, &alice.id).await.unwrap();
    assert_eq!(s.get_invite(&a.id).await.unwrap().unwrap().user_id, Some(alice.id.clone()));
    assert!(matches!(s.release_invite("no-such-invite").await, Err(StoreError::NotFound(_))));
    assert!(matches!(s.set_invite_user("no-such-invite", &alice.id).await, Err(StoreError::NotFound(_))));
}

async fn oauth_states_are_single_use_and_sealed(h: Harness) {
    let s = &h.store;
    let now = now_millis();
    let (_, new) = invite("alice@company.com", "alice", now + 60_000);
    let inv = s.create_invite(new).await.unwrap();
    let bob = s.create_user(member("bob@company.com")).await.unwrap();

    let (h1, st1) = oauth_state(
        OAuthPurpose::Invite { invite_id: inv.id.clone() },
        "verifier-plaintext-one",
        now + 600_000,
    );
    s.create_oauth_state(st1).await.unwrap();
    let (h2, st2) = oauth_state(
        OAuthPurpose::Reconnect { user_id: bob.id.clone() },
        "verifier-plaintext-two",
        now + 600_000,
    );
    s.create_oauth_state(st2).await.unwrap();

    // The verifier is sealed at rest.
    let raw = h.raw.bytes("SELECT verifier FROM oauth_states").await;
    assert_eq!(raw.len(), 2);
    assert!(
        raw.iter().all(|v| !v.windows(18).any(|w| w == b"verifier-plaintext")),
        "verifier stored in clear"
    );

    let got = s.take_oauth_state(&h1, now).await.unwrap().unwrap();
    assert_eq!(got.purpose, OAuthPurpose::Invite { invite_id: inv.id.clone() });
    assert_eq!(got.verifier.expose_secret(), "verifier-plaintext-one");
    assert!(s.take_oauth_state(&h1, now).await.unwrap().is_none(), "single use");

    let got = s.take_oauth_state(&h2, now).await.unwrap().unwrap();
    assert_eq!(got.purpose, OAuthPurpose::Reconnect { user_id: bob.id.clone() });
    assert_eq!(got.verifier.expose_secret(), "verifier-plaintext-two");
    assert!(s.take_oauth_state(&h2, now).await.unwrap().is_none());

    assert!(s.take_oauth_state(&TokenHash::of("unknown-state"), now).await.unwrap().is_none());

    // Expired: refused at the expiry instant, and stays unusable.
    let (h3, st3) = oauth_state(OAuthPurpose::Reconnect { user_id: bob.id.clone() }, "v3", now + 1000);
    s.create_oauth_state(st3).await.unwrap();
    assert!(s.take_oauth_state(&h3, now + 1000).await.unwrap().is_none());
    assert!(s.take_oauth_state(&h3, now + 5000).await.unwrap().is_none());

    // The same state twice is refused.
    let (h4, st4) = oauth_state(OAuthPurpose::Reconnect { user_id: bob.id.clone() }, "v4", now + 600_000);
    let dup = NewOAuthState { state_hash: h4.clone(), ..st4.clone() };
    s.create_oauth_state(st4).await.unwrap();
    assert!(matches!(s.create_oauth_state(dup).await, Err(StoreError::Conflict(_))));

    // A sealed verifier copied onto another state's row does not open there.
    let (h5, st5) = oauth_state(OAuthPurpose::Reconnect { user_id: bob.id.clone() }, "v5", now + 600_000);
    s.create_oauth_state(st5).await.unwrap();
    h.raw
        .exec("UPDATE oauth_states SET verifier = (SELECT verifier FROM oauth_states WHERE used_at IS NOT NULL AND purpose = 'invite')")
        .await;
    let err = s.take_oauth_state(&h5, now).await.unwrap_err();
    assert!(matches!(err, StoreError::Seal(crewgate_core::SealError::Open)), "{err:?}");
    assert!(s.take_oauth_state(&h4, now).await.is_err());
}

async fn concurrent_oauth_state_takes_win_once(h: Harness) {
    let now = now_millis();
    let user = h.store.create_user(member("alice@company.com")).await.unwrap();
    let (hash, st) =
        oauth_state(OAuthPurpose::Reconnect { user_id: user.id.clone() }, "race-verifier", now + 600_000);
    h.store.create_oauth_state(st).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (s, hash) = (h.store.clone(), hash.clone());
        tasks.push(tokio::spawn(async move { s.take_oauth_state(&hash, now).await.unwrap() }));
    }
    let mut got = Vec::new();
    for t in tasks {
        if let Some(state) = t.await.unwrap() {
            got.push(state);
        }
    }
    assert_eq!(got.len(), 1, "exactly one callback gets the state");
    assert_eq!(got[0].verifier.expose_secret(), "race-verifier");
}
