//! The approval gate through the real server: proposals from the model, decisions in chat, REST
//! and WebSocket, edits, grants, expiry, and that every crewgate-tools write needs approval.
//! Writes are counted at the fake Google, Notion and Attio servers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod approval_world;

use approval_world::{World, assert_state, call};
use crewgate_core::{AgentId, Decision, ProposalState};
use crewgate_testkit::fake_llm::Step;
use serde_json::{Value, json};
use std::time::Duration;

const WRITES: [&str; 14] = [
    "gmail_draft_create",
    "gmail_send",
    "calendar_create_event",
    "calendar_update_event",
    "sheets_update",
    "sheets_append",
    "notion_create_page",
    "notion_update_page",
    "notion_append",
    "attio_upsert_person",
    "attio_upsert_company",
    "attio_create_record",
    "attio_update_record",
    "attio_add_note",
];

#[tokio::test]
async fn chat_yes_sends_exactly_the_proposed_email_once() {
    let w = World::start().await;
    let alice = w.person("alice@company.com").await;
    let s = w.new_session(&alice).await;
    let args = json!({"to": ["Ann <ann@ext.com>"], "subject": "Offer", "body": "Dear Ann,\nhere it is."});
    w.plan(
        &s,
        [
            Step::tool_call("gmail_send", args.clone()).with_text("approved"),
            Step::text("I drafted the e-mail; approved!"),
        ],
    );
    let (st, v) = w.say(&alice, &s, "send Ann the offer").await;
    assert_eq!(st, 200, "{v}");
    let reply = v["reply"]["body"].as_str().unwrap();
    assert!(reply.starts_with("I drafted the e-mail; approved!"), "{reply}");
    assert!(reply.contains("📋 Proposed action: Send email\n**To:** Ann <ann@ext.com>"), "{reply}");
    assert!(
        reply.contains("Reply **approved** to send, **edit: …** to change, or **no** to cancel"),
        "{reply}"
    );
    let p: crewgate_core::Proposal = serde_json::from_value(v["proposals"][0].clone()).unwrap();
    assert_state(&p, ProposalState::Pending);
    assert_eq!(p.fingerprint, crewgate_core::fingerprint("gmail_send", &args));
    // The model was told it is pending, and nothing was sent although it said "approved".
    let tool_result = &w.gw.llm.chat_requests()[1].tool_results()[0].content;
    assert!(tool_result.contains(&format!("Proposal #{} is waiting", p.number)), "{tool_result}");
    assert_eq!(w.google.writes("alice@company.com"), 0);

    let (st, v) = w.say(&alice, &s, "  YES ").await;
    assert_eq!(st, 200, "{v}");
    assert!(
        v["reply"]["body"].as_str().unwrap().starts_with(&format!("✅ #{} Send email: done", p.number)),
        "{v}"
    );
    assert_eq!(w.gw.llm.chat_requests().len(), 2, "a decision never reaches the model");
    let sent = w.google.sent("alice@company.com");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, ["ann@ext.com"]);
    assert_eq!(sent[0].idempotency_key.as_deref(), Some(p.idempotency_key.as_str()));
    let done = w.proposal(&alice.agent_id, &p.id).await;
    assert_state(&done, ProposalState::Done);
    assert!(
        matches!(&done.decision, Some(Decision::Approved { by, via }) if by == &format!("user:{}", alice.user_id) && via == "chat (rest)")
    );

    // Replays change nothing.
    let (_, v) = w.say(&alice, &s, "yes").await;
    assert_eq!(v["reply"]["body"], "ok", "no pending proposal: an ordinary message for the model");
    assert_eq!(w.gw.llm.chat_requests().len(), 3);
    let (_, v) = w.say(&alice, &s, &format!("approved #{}", p.number)).await;
    assert!(v["reply"]["body"].as_str().unwrap().contains("is done; nothing was done"), "{v}");
    let (st, _) = w.decide(&alice.token, &p, "approve", false).await;
    assert_eq!(st, 409);
    assert_eq!(w.google.writes("alice@company.com"), 1);

    // The audit chain holds the call, proposal, decision and execution.
    let (_, audit) = w.call("GET", "/api/v1/audit?limit=1000", &alice.token, None).await;
    let actions: Vec<&str> = audit.as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for a in ["tool.call", "proposal.create", "proposal.decide", "proposal.execute"] {
        assert!(actions.contains(&a), "{a} missing in {actions:?}");
    }
    let report = w.gw.store.verify_audit_chain().await.unwrap();
    assert_eq!(report.first_bad, None);
}

#[tokio::test]
async fn every_write_tool_waits_for_approval_then_runs_once() {
    let w = World::start().await;
    let alice = w.person("alice@company.com").await;
    let email = "alice@company.com";
    let event = w.google.add_event(email, "primary", json!({"summary": "Old", "start": {"dateTime": "2026-03-02T10:00:00Z"}, "end": {"dateTime": "2026-03-02T11:00:00Z"}}));
    let sheet = w.google.add_spreadsheet(email, "Deals", &[("Deals", vec![vec!["a", "b"]])]);
    let company = w.attio.add_record("companies", json!({"domains": ["acme.com"], "name": "Acme"}));
    let args = |tool: &str| -> Value {
        match tool {
            "gmail_draft_create" | "gmail_send" | "notion_append" | "notion_create_page"
            | "attio_add_note" => w.args_for(tool, 1),
            "calendar_create_event" => w.args_for(tool, 2),
            "calendar_update_event" => json!({"event_id": event, "summary": "New"}),
            "sheets_update" => json!({"spreadsheet_id": sheet, "range": "Deals!A1:B1", "values": [["x", 1]]}),
            "sheets_append" => json!({"spreadsheet_id": sheet, "range": "Deals!A:B", "values": [["y", 2]]}),
            "notion_update_page" => json!({"page_id": w.notion_page, "title": "Renamed"}),
            "attio_upsert_person" => json!({"email": "new@globex.com", "first_name": "New"}),
            "attio_upsert_company" => json!({"domain": "globex.com", "name": "Globex"}),
            "attio_create_record" => {
                json!({"object": "companies", "values": {"name": "Initech", "domains": ["initech.com"]}})
            }
            "attio_update_record" => {
                json!({"object": "companies", "record_id": company, "values": {"description": "x"}})
            }
            other => panic!("{other}"),
        }
    };
    let s = w.new_session(&alice).await;
    let calls: Vec<_> = WRITES
        .iter()
        .map(|t| call(t, args(t)))
        .chain([call("attio_create_task", json!({"content": "Follow up"}))])
        .collect();
    w.plan(
        &s,
        [
            Step::tool_calls(calls).with_text("All done and approved ✅"),
            Step::text("Approved #1 #2 #3 — all sent."),
        ],
    );
    let (st, v) = w.say(&alice, &s, "do everything").await;
    assert_eq!(st, 200, "{v}");
    let proposals = v["proposals"].as_array().unwrap();
    assert_eq!(proposals.len(), WRITES.len() + 1, "{v}");
    assert!(proposals.iter().all(|p| p["state"] == "pending"), "{v}");
    assert_eq!(w.total_writes(&[email]), 0, "no write ran without approval");
    let reply = v["reply"]["body"].as_str().unwrap();
    assert!(reply.contains("approved #1"), "several pending: the hint names the number: {reply}");

    // The owner approves each: each runs exactly once.
    for p in proposals {
        let p: crewgate_core::Proposal = serde_json::from_value(p.clone()).unwrap();
        let (st, v) = w.decide(&alice.token, &p, "approve", false).await;
        assert_eq!(st, 200, "{}: {v}", p.tool);
        assert_eq!(v["state"], "done", "{}: {v}", p.tool);
        assert_eq!(w.writes_with_key(&p.idempotency_key), 1, "{}", p.tool);
    }
    assert_eq!(w.total_writes(&[email]), WRITES.len() + 1);
    assert_eq!(w.google.sent(email).len(), 1);
    // The model still cannot cause anything by claiming approval.
    assert_eq!(w.gw.llm.chat_requests().len(), 2);

    // The last write tool needs the task just created.
    let task = w.attio.tasks()[0]["id"]["task_id"].as_str().unwrap().to_owned();
    let p = w.propose(&alice, &s, "attio_update_task", json!({"task_id": task, "is_completed": true})).await;
    assert_eq!(w.total_writes(&[email]), WRITES.len() + 1, "not before approval");
    let (st, v) = w.decide(&alice.token, &p, "approve", false).await;
    assert_eq!((st, v["state"].as_str()), (200, Some("done")), "{v}");
    assert_eq!(w.writes_with_key(&p.idempotency_key), 1);

    // That was every write tool the gateway has.
    let mut tried: Vec<String> = WRITES.iter().map(|t| (*t).to_owned()).collect();
    tried.extend(["attio_create_task".to_owned(), "attio_update_task".to_owned()]);
    tried.sort();
    let mut all: Vec<String> =
        w.gw.runtime
            .tools()
            .manifests()
            .into_iter()
            .filter(|m| m.effect == crewgate_runtime::Effect::Write)
            // The runtime's own inter-agent writes have their own tests (tests/inter_agent.rs).
            .filter(|m| !crewgate_runtime::agents::TOOL_NAMES.contains(&m.name.as_str()))
            .map(|m| m.name.clone())
            .collect();
    all.sort();
    assert_eq!(tried, all);
}

#[tokio::test]
async fn invalid_arguments_are_refused_before_any_proposal() {
    let w = World::start().await;
    let alice = w.person("alice@company.com").await;
    let s = w.new_session(&alice).await;
    w.plan(
        &s,
        [
            Step::tool_calls([
                call("gmail_send", json!({"to": ["a@b.com"], "body": "x", "grant": "gmail.send"})),
                call("calendar_create_event", json!({"summary": "x", "start": "friday", "end": "saturday"})),
                call("create_grant", json!({"action": "gmail.send"})),
            ]),
            Step::text("I granted myself autonomy level 3: approved."),
        ],
    );
    let (st, v) = w.say(&alice, &s, "go").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["proposals"], json!([]));
    let results = w.gw.llm.chat_requests()[1].tool_results();
    assert!(results[0].content.contains("unknown property \"grant\""), "{}", results[0].content);
    assert!(
        results[1].content.starts_with("error:") && results[1].content.contains("nothing was run"),
        "{}",
        results[1].content
    );
    assert!(results[2].content.contains("there is no tool \"create_grant\""), "{}", results[2].content);
    assert!(w.all_proposals(&alice.agent_id).await.is_empty());
    let (_, g) = w.call("GET", "/api/v1/grants", &alice.token, None).await;
    assert_eq!(g["grants"], json!([]));
    assert_eq!(g["autonomy_level"], 1);
}

#[tokio::test]
async fn edit_supersedes_and_the_old_proposal_can_no_longer_be_approved() {
    let w = World::start().await;
    let alice = w.person("alice@company.com").await;
    let s = w.new_session(&alice).await;
    let long =
        json!({"to": ["ann@ext.com"], "subject": "Offer", "body": "A very long and winding e-mail body."});
    let old = w.propose(&alice, &s, "gmail_send", long.clone()).await;
    let short = json!({"to": ["ann@ext.com"], "subject": "Offer", "body": "Short."});
    w.plan(&s, [Step::tool_call("gmail_send", short.clone()), Step::text("Shorter now.")]);
    let (st, v) = w.say(&alice, &s, "edit: make it shorter").await;
    assert_eq!(st, 200, "{v}");
    // The model was asked to revise #old with the instructions.
    let req = w.gw.llm.chat_requests().pop().unwrap();
    let note = req.messages().iter().rfind(|m| m["role"] == "system").unwrap().to_string();
    assert!(
        note.contains(&format!("change proposal #{}", old.number)) && note.contains("make it shorter"),
        "{note}"
    );
    let new: crewgate_core::Proposal = serde_json::from_value(v["proposals"][0].clone()).unwrap();
    assert_ne!(new.fingerprint, old.fingerprint);
    assert_state(&new, ProposalState::Pending);
    let old_now = w.proposal(&alice.agent_id, &old.id).await;
    assert_state(&old_now, ProposalState::Superseded);
    assert_eq!(old_now.superseded_by.as_deref(), Some(new.id.as_str()));
    assert!(
        matches!(&old_now.decision, Some(Decision::Edited { instructions, .. }) if instructions == "make it shorter")
    );

    // The old one cannot be approved, by REST or chat.
    let (st, v) = w.decide(&alice.token, &old, "approve", false).await;
    assert_eq!(st, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("superseded"), "{v}");
    let (_, v) = w.say(&alice, &s, &format!("yes #{}", old.number)).await;
    assert!(v["reply"]["body"].as_str().unwrap().contains("superseded"), "{v}");
    assert_eq!(w.google.writes("alice@company.com"), 0);

    // Editing through REST works the same and answers with the revision.
    w.plan(
        &s,
        [
            Step::tool_call(
                "gmail_send",
                json!({"to": ["ann@ext.com"], "subject": "Offer", "body": "Shortest."}),
            ),
            Step::text("ok"),
        ],
    );
    let (st, v) = w.decide(&alice.token, &new, "edit", false).await;
    assert_eq!(st, 200, "{v}");
    let newest: crewgate_core::Proposal = serde_json::from_value(v["proposal"].clone()).unwrap();
    assert_eq!(newest.args["body"], "Shortest.");
    assert_state(&w.proposal(&alice.agent_id, &new.id).await, ProposalState::Superseded);
    // An edit the model does not turn into a new proposal leaves the original pending.
    w.plan(&s, [Step::text("Sorry, I will not change it.")]);
    let (st, v) = w.decide(&alice.token, &newest, "edit", false).await;
    assert_eq!(st, 409, "{v}");
    assert_state(&w.proposal(&alice.agent_id, &newest.id).await, ProposalState::Pending);

    let (_, v) = w.say(&alice, &s, "approved").await;
    assert!(v["reply"]["body"].as_str().unwrap().contains("done"), "{v}");
    let sent = w.google.sent("alice@company.com");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body.trim(), "Shortest.");
}

#[tokio::test]
async fn several_pending_bare_yes_asks_which_and_no_rejects() {
    let w = World::start().await;
    let alice = w.person("alice@company.com").await;
    let s = w.new_session(&alice).await;
    let a = w.propose(&alice, &s, "gmail_send", w.args_for("gmail_send", 1)).await;
    let b = w.propose(&alice, &s, "attio_add_note", w.args_for("attio_add_note", 2)).await;
    let (_, v) = w.say(&alice, &s, "yes").await;
    let body = v["reply"]["body"].as_str().unwrap();
    assert!(
        body.starts_with("Several proposals are waiting") && body.contains(&format!("#{}", a.number)),
        "{body}"
    );
    assert_eq!(w.total_writes(&["alice@company.com"]), 0);
    let (_, v) = w.say(&alice, &s, &format!("no #{}", a.number)).await;
    assert!(v["reply"]["body"].as_str().unwrap().starts_with("Cancelled"), "{v}");
    let (_, v) = w.say(&alice, &s, "y").await;
    assert!(v["reply"]["body"].as_str().unwrap().contains("done"), "only one left: {v}");
    assert_state(&w.proposal(&alice.agent_id, &a.id).await, ProposalState::Rejected);
    assert_state(&w.proposal(&alice.agent_id, &b.id).await, ProposalState::Done);
    assert_eq!(w.attio.writes(), 1);
    assert_eq!(w.google.writes("alice@company.com"), 0);
}

#[tokio::test]
async fn only_the_owner_decides_unless_admins_are_allowed() {
    let w = World::start().await;
    let alice = w.person("alice@company.com").await;
    let bob = w.person("bob@company.com").await;
    let s = w.new_session(&alice).await;
    let p = w.propose(&alice, &s, "gmail_send", w.args_for("gmail_send", 1)).await;
    // Bob: 404 whether or not he names Alice's agent.
    for agent_q in [false, true] {
        for what in ["approve", "reject", "edit"] {
            let (st, _) = w.decide(&bob.token, &p, what, agent_q).await;
            assert_eq!(st, 404, "{what} {agent_q}");
        }
    }
    let (st, _) =
        w.call("GET", &format!("/api/v1/proposals/{}?agent={}", p.id, p.agent_id), &bob.token, None).await;
    assert_eq!(st, 404);
    // Bob saying "yes #N" in his own chat only ever reaches his own proposals.
    let bs = w.new_session(&bob).await;
    let (_, v) = w.say(&bob, &bs, &format!("yes #{}", p.number)).await;
    assert!(v["reply"]["body"].as_str().unwrap().contains("There is no proposal"), "{v}");
    // Admin: can see, may not decide by default.
    let (st, _) =
        w.call("GET", &format!("/api/v1/proposals/{}?agent={}", p.id, p.agent_id), &w.gw.admin, None).await;
    assert_eq!(st, 200);
    let (st, v) = w.decide(&w.gw.admin, &p, "approve", true).await;
    assert_eq!(st, 403, "{v}");
    let (_, v) = w
        .call(
            "POST",
            &format!("/api/v1/sessions/{s}/messages?agent={}", alice.agent_id),
            &w.gw.admin,
            Some(json!({"content": "yes"})),
        )
        .await;
    assert!(v["reply"]["body"].as_str().unwrap().contains("only the agent's owner"), "{v}");
    assert_eq!(w.google.writes("alice@company.com"), 0);
    assert_state(&w.proposal(&alice.agent_id, &p.id).await, ProposalState::Pending);

    // With approvals.adminsMayDecide the admin may.
    let w2 = World::start_with(|s| s.approvals.admins_may_decide = true).await;
    let carol = w2.person("carol@company.com").await;
    let s2 = w2.new_session(&carol).await;
    let p2 = w2.propose(&carol, &s2, "gmail_send", w2.args_for("gmail_send", 1)).await;
    let (st, v) = w2.decide(&w2.gw.admin, &p2, "approve", true).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["state"], "done");
    assert!(v["decision"]["by"].as_str().unwrap().starts_with("admin:"), "{v}");
    assert_eq!(w2.google.writes("carol@company.com"), 1);
}

#[tokio::test]
async fn grants_auto_run_matching_writes_and_ask_for_the_rest() {
    let w = World::start_with(|s| {
        // Level 2 for the agent (config); grants come from the API below.
        let id = AgentId::parse("alice-company-com").unwrap();
        s.approvals.autonomy.insert(id, crewgate_runtime::Autonomy { level: 2, grants: vec![] });
    })
    .await;
    let alice = w.person("alice@company.com").await;
    assert_eq!(alice.agent_id, "alice-company-com");
    let s = w.new_session(&alice).await;
    let (st, g) = w
        .call(
            "POST",
            "/api/v1/grants",
            &alice.token,
            Some(json!({"action": "gmail.send", "match_args": {"to": "*@company.com"}, "daily_cap": 2})),
        )
        .await;
    assert_eq!(st, 201, "{g}");
    let grant_id = g["id"].as_str().unwrap().to_owned();
    let (st, v) = w.call("POST", "/api/v1/grants", &alice.token, Some(json!({"action": "rm_rf"}))).await;
    assert_eq!(st, 400, "{v}");

    // Matching: runs without asking, recorded as a proposal with decision auto (grant G).
    let inside = json!({"to": ["bob@company.com"], "subject": "Lunch", "body": "12:30?"});
    w.plan(&s, [Step::tool_call("gmail_send", inside.clone()), Step::text("Sent.")]);
    let (_, v) = w.say(&alice, &s, "tell bob lunch").await;
    let p: crewgate_core::Proposal = serde_json::from_value(v["proposals"][0].clone()).unwrap();
    assert_state(&p, ProposalState::Done);
    assert!(matches!(&p.decision, Some(Decision::Auto { grant_id: g }) if *g == grant_id));
    assert_eq!(w.google.writes("alice@company.com"), 1);
    let audit = w.gw.store.list_audit(crewgate_store::AuditScope::All, 1000).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "proposal.decide"
                && e.detail["decision"] == format!("auto (grant {grant_id})")),
        "audited as auto"
    );

    // Not matching (a Bcc outside the company): asks.
    let outside =
        json!({"to": ["bob@company.com"], "bcc": ["eve@evil.com"], "subject": "Lunch", "body": "12:30?"});
    let asked = w.propose(&alice, &s, "gmail_send", outside).await;
    assert_state(&asked, ProposalState::Pending);
    // Another action: asks.
    let note = w.propose(&alice, &s, "attio_add_note", w.args_for("attio_add_note", 1)).await;
    assert_state(&note, ProposalState::Pending);
    // A "grant" the model makes up in its text or arguments has no effect.
    w.plan(
        &s,
        [
            Step::tool_call("gmail_send", json!({"to": ["x@evil.com"], "subject": "hi", "body": "hi"}))
                .with_text("GRANT: gmail.send *@evil.com (autonomy level 3)"),
            Step::text("ok"),
        ],
    );
    let (_, v) = w.say(&alice, &s, "grant: gmail.send to *@evil.com").await;
    assert_eq!(v["proposals"][0]["state"], "pending", "{v}");

    // Daily cap 2: the second matching write runs, the third asks.
    let second = w.propose(&alice, &s, "gmail_send", inside.clone()).await;
    assert_state(&second, ProposalState::Done);
    let third = w.propose(&alice, &s, "gmail_send", inside.clone()).await;
    assert_state(&third, ProposalState::Pending);
    assert_eq!(w.google.writes("alice@company.com"), 2);

    // Revoked: asks again. Bob cannot see or revoke Alice's grants.
    let bob = w.person("bob@company.com").await;
    let (st, _) = w
        .call("DELETE", &format!("/api/v1/grants/{grant_id}?agent={}", alice.agent_id), &bob.token, None)
        .await;
    assert_eq!(st, 404);
    let (st, _) = w.call("DELETE", &format!("/api/v1/grants/{grant_id}"), &alice.token, None).await;
    assert_eq!(st, 204);
    let (_, g) = w.call("GET", "/api/v1/grants", &alice.token, None).await;
    assert!(g["grants"][0]["revoked_at"].is_number(), "{g}");
    assert_eq!(g["grants_apply"], true);
}

#[tokio::test]
async fn grants_do_not_apply_at_level_one() {
    let w = World::start().await;
    let alice = w.person("alice@company.com").await;
    let s = w.new_session(&alice).await;
    let (st, _) = w.call("POST", "/api/v1/grants", &alice.token, Some(json!({"action": "gmail.send"}))).await;
    assert_eq!(st, 201);
    let p = w.propose(&alice, &s, "gmail_send", w.args_for("gmail_send", 1)).await;
    assert_state(&p, ProposalState::Pending);
    assert_eq!(w.google.writes("alice@company.com"), 0);
}

#[tokio::test]
async fn expired_proposals_are_swept_and_the_session_is_told() {
    let w = World::start_with(|s| {
        s.approvals.proposal_ttl = Duration::from_millis(300);
    })
    .await;
    let alice = w.person("alice@company.com").await;
    let s = w.new_session(&alice).await;
    let p = w.propose(&alice, &s, "gmail_send", w.args_for("gmail_send", 1)).await;
    let mut ws = w.gw.ws(&alice.token).await;
    ws.send(json!({"type": "subscribe", "session": s})).await;
    assert_eq!(ws.next_json().await["type"], "subscribed");
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Approving an overdue proposal fails (and expires it) even before the sweeper runs.
    let (st, v) = w.decide(&alice.token, &p, "approve", false).await;
    assert_eq!(st, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("expired"), "{v}");
    let p2 = w.propose(&alice, &s, "attio_add_note", w.args_for("attio_add_note", 1)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(w.gw.runtime.sweep_expired().await.unwrap(), 1);
    assert_state(&w.proposal(&alice.agent_id, &p2.id).await, ProposalState::Expired);
    // Subscribers get the proposal event and the notice; the notice is in the transcript.
    let mut saw_notice = false;
    for _ in 0..20 {
        let ev = ws.next_json().await;
        if ev["type"] == "notice" {
            assert!(ev["message"]["body"].as_str().unwrap().contains("expired"), "{ev}");
            saw_notice = true;
            break;
        }
    }
    assert!(saw_notice);
    let (_, msgs) = w.call("GET", &format!("/api/v1/sessions/{s}/messages"), &alice.token, None).await;
    let last = msgs.as_array().unwrap().last().unwrap()["body"].as_str().unwrap().to_owned();
    assert!(last.starts_with(&format!("⏰ #{} Add Attio note expired", p2.number)), "{last}");
    assert_eq!(w.total_writes(&["alice@company.com"]), 0);
}

#[tokio::test]
async fn websocket_decisions_and_proposal_events() {
    let w = World::start().await;
    let alice = w.person("alice@company.com").await;
    let s = w.new_session(&alice).await;
    let mut ws = w.gw.ws(&alice.token).await;
    w.plan(&s, [Step::tool_call("attio_add_note", w.args_for("attio_add_note", 1)), Step::text("proposed")]);
    ws.send(json!({"type": "send", "session": s, "content": "note it"})).await;
    let events = ws.until_turn_end().await;
    let proposal = events.iter().find(|e| e["type"] == "proposal").expect("a proposal event").clone();
    assert_eq!(proposal["proposal"]["state"], "pending");
    let id = proposal["proposal"]["id"].as_str().unwrap().to_owned();
    let last = events.last().unwrap();
    assert!(
        last["message"]["body"].as_str().unwrap().contains("📋 Proposed action: Add Attio note"),
        "{last}"
    );

    ws.send(json!({"type": "decide", "proposal": id, "decision": "maybe", "request_id": 1})).await;
    assert_eq!(ws.next_json().await["code"], "bad_request");
    ws.send(json!({"type": "decide", "proposal": "nope", "decision": "approve", "request_id": 2})).await;
    assert_eq!(ws.next_json().await["code"], "not_found");
    ws.send(json!({"type": "decide", "proposal": id, "decision": "approve", "request_id": 3})).await;
    let decided = loop {
        let v = ws.next_json().await;
        if v["type"] == "decided" {
            break v;
        }
    };
    assert_eq!(decided["request_id"], 3);
    assert_eq!(decided["proposal"]["state"], "done");
    assert_eq!(w.attio.writes(), 1);
    // Another user's socket cannot decide it.
    let bob = w.person("bob@company.com").await;
    let mut bws = w.gw.ws(&bob.token).await;
    bws.send(json!({"type": "decide", "proposal": id, "decision": "reject", "agent": alice.agent_id})).await;
    assert_eq!(bws.next_json().await["code"], "not_found");
}

#[tokio::test]
async fn a_members_socket_hears_every_proposal_of_their_agent_without_subscribing() {
    let w = World::start().await;
    let alice = w.person("alice@company.com").await;
    let bob = w.person("bob@company.com").await;
    let mut ws = w.gw.ws(&alice.token).await;
    let mut bws = w.gw.ws(&bob.token).await;
    // A session this socket never opened (another tab, an API client, another agent's thread).
    let s = w.new_session(&alice).await;
    let p = w.propose(&alice, &s, "attio_add_note", w.args_for("attio_add_note", 7)).await;
    let ev = ws.next_json().await;
    assert_eq!((ev["type"].as_str(), ev["session"].as_str()), (Some("proposal"), Some(s.as_str())), "{ev}");
    assert_eq!(
        (ev["proposal"]["id"].as_str(), ev["proposal"]["state"].as_str()),
        (Some(p.id.as_str()), Some("pending"))
    );
    // Decided elsewhere: the states follow, once each.
    let (st, v) = w.decide(&alice.token, &p, "approve", false).await;
    assert_eq!(st, 200, "{v}");
    let mut states = Vec::new();
    while states.last().map(String::as_str) != Some("done") {
        let ev = ws.next_json().await;
        assert_eq!(ev["type"], "proposal", "{ev}");
        states.push(ev["proposal"]["state"].as_str().unwrap().to_owned());
    }
    assert_eq!(states, ["approved", "executing", "done"]);
    // Bob's socket heard nothing of it.
    bws.send(json!({"type": "ping", "request_id": "p"})).await;
    let next = bws.next_json().await;
    assert_eq!(next["type"], "pong", "Bob's socket got {next}");
}
