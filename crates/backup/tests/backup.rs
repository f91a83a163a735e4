//! End-to-end tests of replication and restore against a real S3-compatible server (s3s-fs,
//! in process, over HTTP, SigV4 checked) and a real crewgate SQLite store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crewgate_backup::{
    BackupError, BackupSettings, Replicator, ReplicatorHandle, list_backups, live_chunk_keys, restore,
    restore_if_empty,
};
use crewgate_core::{AgentId, AgentKind, IssuedToken, MasterKey, Role, TokenKind, UserStatus, now_millis};
use crewgate_store::{AuditScope, NewAgent, NewAudit, NewToken, NewUser, SqliteStore, Store, TokenScope};
use crewgate_testkit::fake_s3::FakeS3;
use secrecy::{ExposeSecret, SecretString};
use std::path::Path;
use std::time::{Duration, Instant};

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("crewgate_backup=info")),
        )
        .try_init();
}

fn key() -> MasterKey {
    MasterKey::from_hex(&SecretString::from("5a".repeat(32))).unwrap()
}

fn settings(s3: &FakeS3) -> BackupSettings {
    let mut s = BackupSettings::new(
        Some(s3.endpoint()),
        s3.bucket(),
        s3.access_key_id(),
        SecretString::from(s3.secret_access_key()),
    );
    s.interval = Duration::from_millis(200);
    s
}

struct Live {
    s3: FakeS3,
    dir: tempfile::TempDir,
    store: SqliteStore,
    repl: ReplicatorHandle,
    settings: BackupSettings,
}

impl Live {
    async fn stop(self) -> (FakeS3, tempfile::TempDir, BackupSettings) {
        self.repl.shutdown().await.unwrap();
        self.store.raw_pool().close().await;
        (self.s3, self.dir, self.settings)
    }

    async fn note(&self, text: &str) {
        let agent = AgentId::parse("notes").unwrap();
        if self.store.get_agent(&agent).await.unwrap().is_none() {
            self.store.create_agent(worker("notes", None)).await.unwrap();
            self.store.create_session(&agent, "notes").await.unwrap();
        }
        let session = self.store.list_sessions(&agent).await.unwrap().remove(0);
        self.store.append_message(&agent, &session.id, "user", text).await.unwrap();
    }

    fn manifest_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> =
            self.s3.object_keys().unwrap().into_iter().filter(|k| k.contains("/m/")).collect();
        keys.sort();
        keys
    }
}

async fn live_with(settings_fn: impl FnOnce(&mut BackupSettings)) -> Live {
    init_tracing();
    let s3 = FakeS3::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join("crewgate.db");
    let store = SqliteStore::open(&db, &key()).await.unwrap();
    let mut settings = settings(&s3);
    settings_fn(&mut settings);
    let repl = Replicator::start(&db, settings.clone(), &key()).await.unwrap();
    Live { s3, dir, store, repl, settings }
}

async fn live() -> Live {
    live_with(|_| {}).await
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn worker(id: &str, owner: Option<crewgate_core::UserId>) -> NewAgent {
    NewAgent {
        id: AgentId::parse(id).unwrap(),
        kind: AgentKind::Worker,
        owner,
        name: format!("{id} agent"),
        settings: serde_json::json!({"model": "m", "persona": id}),
    }
}

async fn messages_of(store: &SqliteStore) -> Vec<String> {
    let agent = AgentId::parse("notes").unwrap();
    let Some(session) = store.list_sessions(&agent).await.unwrap().into_iter().next() else {
        return Vec::new();
    };
    store.list_messages(&agent, &session.id).await.unwrap().into_iter().map(|m| m.body).collect()
}

async fn restored_notes(settings: &BackupSettings, at: Option<i64>) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("crewgate.db");
    restore(settings, &key(), &target, at).await.unwrap();
    let store = SqliteStore::open(&target, &key()).await.unwrap();
    let notes = messages_of(&store).await;
    store.raw_pool().close().await;
    notes
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

/// A backup with one generation and at least 4 manifests.
async fn history() -> (FakeS3, tempfile::TempDir, BackupSettings) {
    let l = live().await;
    for i in 0..4 {
        l.note(&format!("note {i}")).await;
        l.repl.flush().await.unwrap();
    }
    assert!(l.manifest_keys().len() >= 4, "{:?}", l.manifest_keys());
    l.stop().await
}

/// Restoring must fail with `check`, and leave the target directory exactly as it was.
async fn assert_refused(
    settings: &BackupSettings,
    key: &MasterKey,
    check: impl Fn(&BackupError) -> bool,
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("crewgate.db");
    let err = restore(settings, key, &target, None).await.unwrap_err();
    assert!(check(&err), "unexpected error: {err:?}");
    assert!(!target.exists(), "target must stay untouched");
    assert!(file_names(dir.path()).is_empty(), "no temp files left: {:?}", file_names(dir.path()));
    // An existing empty target stays empty too.
    std::fs::write(&target, b"").unwrap();
    let again = restore(settings, key, &target, None).await.unwrap_err();
    assert_eq!(again.to_string(), err.to_string());
    assert_eq!(std::fs::metadata(&target).unwrap().len(), 0);
    assert_eq!(file_names(dir.path()), ["crewgate.db"]);
    err.to_string()
}

#[tokio::test]
async fn every_row_is_back_after_losing_the_data_dir() {
    let l = live().await;
    let s = &l.store;
    let alice = s
        .create_user(NewUser {
            email: "alice@company.com".into(),
            name: Some("Alice".into()),
            role: Role::Admin,
            status: UserStatus::Active,
        })
        .await
        .unwrap();
    let bob = s
        .create_user(NewUser {
            email: "bob@company.com".into(),
            name: None,
            role: Role::Member,
            status: UserStatus::Invited,
        })
        .await
        .unwrap();
    let alice_agent = s.create_agent(worker("alice-company-com", Some(alice.id.clone()))).await.unwrap();
    let orchestrator = s
        .create_agent(NewAgent { kind: AgentKind::Orchestrator, ..worker("orchestrator", None) })
        .await
        .unwrap();
    let token = IssuedToken::generate(TokenKind::User);
    s.insert_token(NewToken {
        kind: TokenKind::User,
        hash: token.hash.clone(),
        display: token.display.clone(),
        label: Some("alice dashboard".into()),
        user_id: Some(alice.id.clone()),
        agent_id: Some(alice_agent.id.clone()),
        expires_at: None,
    })
    .await
    .unwrap();
    let admin = IssuedToken::generate(TokenKind::Admin);
    s.insert_token(NewToken {
        kind: TokenKind::Admin,
        hash: admin.hash.clone(),
        display: admin.display.clone(),
        label: None,
        user_id: None,
        agent_id: None,
        expires_at: None,
    })
    .await
    .unwrap();
    let session = s.create_session(&alice_agent.id, "planning").await.unwrap();
    s.append_message(&alice_agent.id, &session.id, "user", "book the offsite ✈").await.unwrap();
    s.append_message(&alice_agent.id, &session.id, "assistant", "proposal #1 pending approval")
        .await
        .unwrap();
    s.put_secret(&alice.id.to_string(), "google-refresh", &SecretString::from("1//refresh-token"))
        .await
        .unwrap();
    s.append_audit(NewAudit {
        actor: "admin".into(),
        user_id: Some(alice.id.clone()),
        agent_id: Some(alice_agent.id.clone()),
        action: "token.issue".into(),
        detail: serde_json::json!({"kind": "user"}),
    })
    .await
    .unwrap();

    let users = s.list_users().await.unwrap();
    let agents = s.list_agents().await.unwrap();
    let tokens = s.list_tokens(TokenScope::All).await.unwrap();
    let messages = s.list_messages(&alice_agent.id, &session.id).await.unwrap();
    let audit = s.list_audit(AuditScope::All, 100).await.unwrap();

    let status = l.repl.flush().await.unwrap();
    assert!(!status.pending && status.sequence.is_some() && status.bytes_uploaded > 0, "{status:?}");
    let (s3, dir, settings) = l.stop().await;

    // The machine is gone: wipe the data dir. A fresh one restores on start.
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let report = restore_if_empty(fresh.path(), &settings, &key()).await.unwrap().expect("restored");
    assert!(report.bytes > 0 && report.chunks > 0 && !report.replaced_existing, "{report:?}");
    let db = fresh.path().join("crewgate.db");
    let r = SqliteStore::open(&db, &key()).await.unwrap();
    assert_eq!(r.list_users().await.unwrap(), users);
    assert_eq!(r.get_user(&bob.id).await.unwrap().unwrap().status, UserStatus::Invited);
    assert_eq!(r.list_agents().await.unwrap(), agents);
    assert_eq!(r.get_agent(&orchestrator.id).await.unwrap().unwrap().kind, AgentKind::Orchestrator);
    assert_eq!(r.list_tokens(TokenScope::All).await.unwrap(), tokens);
    let resolved = r.resolve_token(&token.hash, now_millis()).await.unwrap().expect("token still works");
    assert_eq!(resolved.agent_id.as_ref(), Some(&alice_agent.id));
    assert!(r.resolve_token(&admin.hash, now_millis()).await.unwrap().is_some());
    assert_eq!(r.list_messages(&alice_agent.id, &session.id).await.unwrap(), messages);
    assert_eq!(
        r.get_secret(&alice.id.to_string(), "google-refresh").await.unwrap().unwrap().expose_secret(),
        "1//refresh-token"
    );
    assert_eq!(r.list_audit(AuditScope::All, 100).await.unwrap(), audit);
    // The restored store is a normal store: it takes writes.
    r.append_message(&alice_agent.id, &session.id, "user", "after restore").await.unwrap();
    r.raw_pool().close().await;

    // Existing store: restore_if_empty leaves it alone.
    assert!(restore_if_empty(fresh.path(), &settings, &key()).await.unwrap().is_none());
    // Empty bucket: nothing to restore, start fresh.
    let empty = FakeS3::start().await.unwrap();
    let none = tempfile::tempdir().unwrap();
    assert!(restore_if_empty(none.path(), &self::settings(&empty), &key()).await.unwrap().is_none());
    assert!(list_backups(&self::settings(&empty), &key()).await.unwrap().is_empty());
    drop(s3);
}

#[tokio::test]
async fn a_committed_write_reaches_s3_within_two_seconds() {
    // Default interval (1 s), as in production.
    let l = live_with(|s| s.interval = crewgate_backup::DEFAULT_INTERVAL).await;
    assert_eq!(l.settings.interval, Duration::from_secs(1));
    wait_until("the first generation upload", Duration::from_secs(20), || {
        let s = l.repl.status();
        s.sequence.is_some() && !s.pending
    })
    .await;
    let mut lags = Vec::new();
    for i in 0..5 {
        let before = l.repl.status().sequence.unwrap();
        let manifests_before = l.manifest_keys().len();
        l.note(&format!("write {i}")).await;
        let t = Instant::now();
        wait_until("the write to be replicated", Duration::from_secs(15), || {
            let s = l.repl.status();
            s.sequence.unwrap() > before && !s.pending
        })
        .await;
        lags.push(t.elapsed());
        assert!(l.manifest_keys().len() > manifests_before, "a new manifest is in the bucket");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!("replication lag per write: {lags:?}");
    let (_s3, _dir, settings) = l.stop().await;
    let notes = restored_notes(&settings, None).await;
    assert_eq!(notes, (0..5).map(|i| format!("write {i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn wrong_master_key_is_refused() {
    let (_s3, _dir, settings) = history().await;
    let other = MasterKey::from_hex(&SecretString::from("77".repeat(32))).unwrap();
    let text = assert_refused(&settings, &other, |e| matches!(e, BackupError::WrongKey { .. })).await;
    assert!(
        text.contains("do not decrypt with this MASTER_KEY; use the key the backup was made with"),
        "{text}"
    );
    assert!(matches!(list_backups(&settings, &other).await, Err(BackupError::WrongKey { .. })));
    // The right key still works.
    assert_eq!(restored_notes(&settings, None).await.len(), 4);
}

#[tokio::test]
async fn flipped_byte_in_a_chunk_is_detected() {
    let (s3, _dir, settings) = history().await;
    let chunks = live_chunk_keys(&settings, &key()).await.unwrap();
    assert!(!chunks.is_empty());
    let victim = chunks[chunks.len() / 2].clone();
    flip_byte(&s3.object_path(&victim));
    assert_refused(
        &settings,
        &key(),
        |e| matches!(e, BackupError::Tampered { object, .. } if *object == victim),
    )
    .await;
}

#[tokio::test]
async fn deleted_chunk_is_detected() {
    let (s3, _dir, settings) = history().await;
    let victim = live_chunk_keys(&settings, &key()).await.unwrap().remove(0);
    std::fs::remove_file(s3.object_path(&victim)).unwrap();
    assert_refused(
        &settings,
        &key(),
        |e| matches!(e, BackupError::MissingChunk { object, .. } if *object == victim),
    )
    .await;
}

#[tokio::test]
async fn flipped_byte_in_a_manifest_is_detected() {
    let (s3, _dir, settings) = history().await;
    let manifests: Vec<String> =
        s3.object_keys().unwrap().into_iter().filter(|k| k.contains("/m/")).collect();
    for victim in [&manifests[2], &manifests[0], manifests.last().unwrap()] {
        let path = s3.object_path(victim);
        let original = std::fs::read(&path).unwrap();
        flip_byte(&path);
        assert_refused(
            &settings,
            &key(),
            |e| matches!(e, BackupError::Tampered { object, .. } if object == victim),
        )
        .await;
        std::fs::write(&path, original).unwrap();
    }
    assert_eq!(restored_notes(&settings, None).await.len(), 4, "intact again after undoing the flips");
}

#[tokio::test]
async fn deleted_middle_manifest_is_detected() {
    let (s3, _dir, settings) = history().await;
    let manifests: Vec<String> =
        s3.object_keys().unwrap().into_iter().filter(|k| k.contains("/m/")).collect();
    std::fs::remove_file(s3.object_path(&manifests[2])).unwrap();
    let text =
        assert_refused(&settings, &key(), |e| matches!(e, BackupError::MissingManifest { sequence: 2, .. }))
            .await;
    assert!(text.contains("manifest 2"), "{text}");
}

#[tokio::test]
async fn replayed_old_manifest_is_detected() {
    let (s3, _dir, settings) = history().await;
    let manifests: Vec<String> =
        s3.object_keys().unwrap().into_iter().filter(|k| k.contains("/m/")).collect();
    let newest = manifests.len() as u64 - 1;
    // Copy manifest 1 over the newest one (an attacker rolling state back).
    std::fs::copy(s3.object_path(&manifests[1]), s3.object_path(manifests.last().unwrap())).unwrap();
    assert_refused(
        &settings,
        &key(),
        |e| matches!(e, BackupError::Replayed { expected, found: 1, .. } if *expected == newest),
    )
    .await;
}

#[tokio::test]
async fn s3_outage_during_writes_is_invisible_to_writers_and_catches_up() {
    let l = live().await;
    l.note("before outage").await;
    l.repl.flush().await.unwrap();

    l.s3.set_down(true);
    // The 30 s outage of the acceptance criteria, for real: writers must never notice.
    let outage = Duration::from_secs(30);
    let start = Instant::now();
    let mut i = 0;
    let mut lag_samples = Vec::new();
    while start.elapsed() < outage {
        let t = Instant::now();
        l.note(&format!("during outage {i}")).await;
        assert!(t.elapsed() < Duration::from_secs(1), "a write took {:?} during the outage", t.elapsed());
        i += 1;
        if i % 10 == 0 {
            lag_samples.push(l.repl.status());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let during = l.repl.status();
    assert!(during.pending, "{during:?}");
    assert!(during.lag >= Duration::from_secs(2), "lag grows: {during:?}");
    assert!(during.last_error.as_deref().is_some_and(|e| e.contains("S3")), "{during:?}");
    assert!(during.consecutive_failures > 0, "{during:?}");
    let lags: Vec<Duration> = lag_samples.iter().map(|s| s.lag).collect();
    assert!(lags.windows(2).all(|w| w[1] >= w[0]), "lag grows monotonically: {lags:?}");
    assert!(l.s3.refused_count() > 0);
    let (flush_tx, flush_rx) = tokio::sync::oneshot::channel();
    // A flush during the outage reports the failure rather than hanging.
    let repl = l.repl.clone();
    tokio::spawn(async move {
        let _ = flush_tx.send(repl.flush().await);
    });
    let flushed = tokio::time::timeout(Duration::from_secs(20), flush_rx).await.unwrap().unwrap();
    assert!(matches!(flushed, Err(BackupError::S3 { .. })), "{flushed:?}");

    l.s3.set_down(false);
    let up = Instant::now();
    wait_until("catch-up after the outage", Duration::from_secs(20), || !l.repl.status().pending).await;
    eprintln!("caught up {:?} after S3 came back; {i} writes during the outage", up.elapsed());
    let after = l.repl.status();
    assert_eq!(after.consecutive_failures, 0, "{after:?}");
    assert!(after.last_success_at.unwrap() > during.last_error_at.unwrap());
    assert_eq!(after.lag, Duration::ZERO);

    let local = messages_of(&l.store).await;
    let (_s3, _dir, settings) = l.stop().await;
    let restored = restored_notes(&settings, None).await;
    assert_eq!(restored, local);
    assert_eq!(restored.len(), i + 1);
}

#[tokio::test]
async fn point_in_time_restore_picks_the_older_state() {
    let l = live().await;
    l.note("A").await;
    l.repl.flush().await.unwrap();
    let t_a = now_millis();
    tokio::time::sleep(Duration::from_millis(30)).await;
    l.note("B").await;
    l.repl.flush().await.unwrap();
    let (_s3, _dir, settings) = l.stop().await;

    assert_eq!(restored_notes(&settings, Some(t_a)).await, ["A"]);
    assert_eq!(restored_notes(&settings, None).await, ["A", "B"]);
    let dir = tempfile::tempdir().unwrap();
    let err = restore(&settings, &key(), &dir.path().join("x.db"), Some(t_a - 3_600_000)).await.unwrap_err();
    assert!(matches!(err, BackupError::NothingBefore { .. }), "{err:?}");
}

async fn note_in(store: &SqliteStore, text: &str) {
    let agent = AgentId::parse("notes").unwrap();
    if store.get_agent(&agent).await.unwrap().is_none() {
        store.create_agent(worker("notes", None)).await.unwrap();
        store.create_session(&agent, "notes").await.unwrap();
    }
    let session = store.list_sessions(&agent).await.unwrap().remove(0);
    store.append_message(&agent, &session.id, "user", text).await.unwrap();
}

/// One gateway run: open the store, replicate (a new generation), write `notes`, flush, stop.
async fn gateway_run(db: &Path, settings: &BackupSettings, notes: &[String]) -> String {
    let store = SqliteStore::open(db, &key()).await.unwrap();
    let repl = Replicator::start(db, settings.clone(), &key()).await.unwrap();
    for n in notes {
        note_in(&store, n).await;
        repl.flush().await.unwrap();
    }
    let status = repl.shutdown().await.unwrap();
    store.raw_pool().close().await;
    status.generation.unwrap()
}

#[tokio::test]
async fn retention_keeps_the_newest_generations_and_pitr_crosses_them() {
    init_tracing();
    let s3 = FakeS3::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crewgate.db");
    let mut settings = settings(&s3);
    settings.retain_generations = 2;
    let mut generations = Vec::new();
    let mut times = Vec::new();
    for round in 0..3 {
        generations.push(gateway_run(&db, &settings, &[format!("round {round}")]).await);
        times.push(now_millis());
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let listed = list_backups(&settings, &key()).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids, [generations[2].as_str(), generations[1].as_str()], "newest first, oldest deleted");
    assert_eq!(listed[0].parent.as_deref(), Some(generations[1].as_str()));
    assert!(
        listed.iter().all(|g| g.manifests >= 1 && g.problem.is_none() && g.newest_at >= g.started_at),
        "{listed:?}"
    );
    let keys = s3.object_keys().unwrap();
    assert!(
        !keys.iter().any(|k| k.contains(&generations[0])),
        "every object of the oldest generation is gone"
    );
    assert!(keys.iter().any(|k| k.contains(&generations[1])));

    // Point in time across generations: the end of round 1 (generation 1).
    assert_eq!(restored_notes(&settings, Some(times[1])).await, ["round 0", "round 1"]);
    assert_eq!(restored_notes(&settings, None).await, ["round 0", "round 1", "round 2"]);
    // Round 0's time is before every retained generation.
    let target = dir.path().join("old.db");
    let err = restore(&settings, &key(), &target, Some(times[0])).await.unwrap_err();
    assert!(matches!(err, BackupError::NothingBefore { .. }), "{err:?}");
}

#[tokio::test]
async fn truncated_tail_of_an_older_generation_is_detected() {
    init_tracing();
    let s3 = FakeS3::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crewgate.db");
    let settings = settings(&s3);
    let first = gateway_run(&db, &settings, &["a".into(), "b".into(), "c".into()]).await;
    let t_first = now_millis();
    tokio::time::sleep(Duration::from_millis(30)).await;
    gateway_run(&db, &settings, &["d".into()]).await;
    // Cut the newest manifest of the first generation: its chain alone still looks complete,
    // but the second generation recorded where the first one ended.
    let mut first_manifests: Vec<String> =
        s3.object_keys().unwrap().into_iter().filter(|k| k.contains(&first) && k.contains("/m/")).collect();
    first_manifests.sort();
    std::fs::remove_file(s3.object_path(first_manifests.last().unwrap())).unwrap();
    let target = dir.path().join("restored.db");
    let err = restore(&settings, &key(), &target, Some(t_first)).await.unwrap_err();
    assert!(matches!(err, BackupError::Truncated { .. }), "{err:?}");
    assert!(!target.exists());
    // The newest generation is intact and restorable.
    assert_eq!(restored_notes(&settings, None).await, ["a", "b", "c", "d"]);
}

#[tokio::test]
async fn restore_never_overwrites_newer_local_state() {
    let l = live().await;
    l.note("A").await;
    l.repl.flush().await.unwrap();
    let t_a = now_millis();
    tokio::time::sleep(Duration::from_millis(30)).await;
    l.note("B").await;
    l.repl.flush().await.unwrap();
    let (_s3, _dir, settings) = l.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("crewgate.db");
    restore(&settings, &key(), &target, Some(t_a)).await.unwrap();
    // The target holds an older state of the backup (even after a gateway opened it without
    // writing): replacing it with the newest state loses nothing.
    let store = SqliteStore::open(&target, &key()).await.unwrap();
    assert_eq!(messages_of(&store).await, ["A"]);
    store.raw_pool().close().await;
    let report = restore(&settings, &key(), &target, None).await.unwrap();
    assert!(report.replaced_existing);
    // Going back to the older point would drop B, which the target has: refused.
    let err = restore(&settings, &key(), &target, Some(t_a)).await.unwrap_err();
    assert!(matches!(err, BackupError::TargetNotOlder { .. }), "{err:?}");

    // Local writes the backup never saw: refused, file untouched.
    let store = SqliteStore::open(&target, &key()).await.unwrap();
    note_in(&store, "local only").await;
    store.raw_pool().close().await;
    let before = std::fs::read(&target).unwrap();
    let err = restore(&settings, &key(), &target, None).await.unwrap_err();
    assert!(matches!(err, BackupError::TargetNotOlder { .. }), "{err:?}");
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), before);
    let store = SqliteStore::open(&target, &key()).await.unwrap();
    assert_eq!(messages_of(&store).await, ["A", "B", "local only"]);
    store.raw_pool().close().await;

    // Not a database at all: refused too.
    std::fs::write(&target, b"not sqlite").unwrap();
    assert!(matches!(
        restore(&settings, &key(), &target, None).await,
        Err(BackupError::TargetNotOlder { .. })
    ));
    assert_eq!(std::fs::read(&target).unwrap(), b"not sqlite");
}

#[tokio::test]
async fn replicator_start_never_waits_for_s3_and_reports_the_outage() {
    init_tracing();
    let s3 = FakeS3::start().await.unwrap();
    s3.set_down(true);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crewgate.db");
    let store = SqliteStore::open(&db, &key()).await.unwrap();
    let t = Instant::now();
    let repl = Replicator::start(&db, settings(&s3), &key()).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(1), "start does not wait for S3");
    wait_until("the first failure", Duration::from_secs(20), || repl.status().consecutive_failures > 0).await;
    let st = repl.status();
    assert!(st.pending && st.generation.is_none() && st.last_error.is_some(), "{st:?}");
    s3.set_down(false);
    wait_until("the first generation", Duration::from_secs(20), || !repl.status().pending).await;
    assert!(repl.status().generation.is_some());
    repl.shutdown().await.unwrap();
    assert!(!repl.status().running);
    assert!(matches!(repl.flush().await, Err(BackupError::Stopped)));
    store.raw_pool().close().await;
    // A missing database is a clear error at start.
    let err = Replicator::start(dir.path().join("nope.db"), settings(&s3), &key()).await.unwrap_err();
    assert!(matches!(err, BackupError::DatabaseMissing { .. }), "{err:?}");
}

/// Costs on a ~100 MB store (run: `cargo test --release -p crewgate-backup --test backup --
/// --ignored --nocapture measure`). Prints figures; asserts only correctness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; slow in debug builds"]
async fn measure_100mb_store() {
    init_tracing();
    let s3 = FakeS3::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crewgate.db");
    let store = SqliteStore::open(&db, &key()).await.unwrap();
    let pool = store.raw_pool().clone();
    sqlx::query("CREATE TABLE bulk (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    let t = Instant::now();
    for batch in 0..100 {
        let mut tx = pool.begin().await.unwrap();
        for i in 0..256 {
            let mut body = vec![0u8; 4000];
            for (j, b) in body.iter_mut().enumerate() {
                *b = ((batch * 7919 + i * 104_729 + j * 31) % 251) as u8;
            }
            sqlx::query("INSERT INTO bulk (body) VALUES ($1)").bind(body).execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await.unwrap();
    let size = std::fs::metadata(&db).unwrap().len();
    eprintln!("filled {} MB in {:?}", size / 1_000_000, t.elapsed());

    let settings = settings(&s3);
    let repl = Replicator::start(&db, settings.clone(), &key()).await.unwrap();
    let t = Instant::now();
    let st = repl.flush().await.unwrap();
    eprintln!(
        "initial generation: {:?} total, snapshot+hash {:?}, {} MB uploaded in {} objects",
        t.elapsed(),
        st.last_snapshot,
        st.bytes_uploaded / 1_000_000,
        st.objects_uploaded
    );
    let mut cycle = Vec::new();
    for i in 0..10 {
        let before = repl.status();
        note_in(&store, &format!("small write {i}")).await;
        let t = Instant::now();
        let after = repl.flush().await.unwrap();
        cycle.push((
            t.elapsed(),
            after.last_snapshot,
            after.bytes_uploaded - before.bytes_uploaded,
            after.objects_uploaded - before.objects_uploaded,
        ));
    }
    eprintln!("small write → flush (total, snapshot+hash, bytes, objects): {cycle:?}");
    // Idle cost: a flush with nothing changed still snapshots and hashes.
    let t = Instant::now();
    let idle = repl.flush().await.unwrap();
    eprintln!("unchanged flush: {:?} (snapshot+hash {:?})", t.elapsed(), idle.last_snapshot);
    repl.shutdown().await.unwrap();
    pool.close().await;

    let target = dir.path().join("restored.db");
    let t = Instant::now();
    let report = restore(&settings, &key(), &target, None).await.unwrap();
    eprintln!("restore of {} MB ({} chunks): {:?}", report.bytes / 1_000_000, report.chunks, t.elapsed());
    let restored = SqliteStore::open(&target, &key()).await.unwrap();
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM bulk").fetch_one(restored.raw_pool()).await.unwrap();
    assert_eq!(n, 25_600);
    assert_eq!(messages_of(&restored).await.len(), 10);
}
