//! Google tools against the fake Google APIs over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{creds, ctx, google_toolbox};
use crewgate_testkit::fake_common::Fault;
use crewgate_testkit::fake_google::FakeGoogle;
use crewgate_tools::{ToolContext, ToolError};
use serde_json::{Value, json};

const ALICE: &str = "alice@company.com";
const BOB: &str = "bob@company.com";

fn plain_mail(from: &str, to: &str, subject: &str, id: &str, extra: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Mon, 02 Mar 2026 09:00:00 +0000\r\nMessage-ID: {id}\r\n{extra}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n{body}\r\n"
    )
}

fn q<'a>(r: &'a crewgate_testkit::fake_common::RecordedRequest, k: &str) -> &'a str {
    r.query_value(k).unwrap_or_else(|| panic!("{} has no query {k}: {:?}", r.line(), r.query))
}

// ---------------------------------------------------------------------------------- Gmail

#[tokio::test]
async fn gmail_search_lists_matching_messages_with_metadata() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    g.add_message(
        ALICE,
        &plain_mail("Ann <ann@ext.com>", ALICE, "Budget 2026", "<m1@ext.com>", "", "numbers attached"),
        &[],
    );
    g.add_message(
        ALICE,
        &plain_mail("Bob <bob@other.com>", ALICE, "Lunch", "<m2@other.com>", "", "pizza?"),
        &[],
    );
    g.add_message(
        ALICE,
        &plain_mail("Ann <ann@ext.com>", ALICE, "Re: Budget 2026", "<m3@ext.com>", "", "second thoughts"),
        &[],
    );
    let c = creds(&a);
    let out = google_toolbox(&g)
        .call("gmail_search", &json!({"query": "from:ann", "max_results": 5}), &ctx(&c))
        .await
        .unwrap();

    let reqs = g.api_requests();
    assert_eq!(reqs.len(), 3, "{:?}", reqs.iter().map(|r| r.line()).collect::<Vec<_>>());
    assert_eq!(reqs[0].line(), "GET /gmail/v1/users/me/messages");
    assert_eq!(q(&reqs[0], "q"), "from:ann");
    assert_eq!(q(&reqs[0], "maxResults"), "5");
    assert_eq!(reqs[0].header("authorization").unwrap(), format!("Bearer {}", a.access_token));
    for r in &reqs[1..] {
        assert!(r.path.starts_with("/gmail/v1/users/me/messages/"), "{}", r.line());
        assert_eq!(q(r, "format"), "metadata");
        assert_eq!(r.query_values("metadataHeaders"), vec!["From", "To", "Subject", "Date"]);
    }
    let results = out.content["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let subjects: Vec<&str> = results.iter().map(|r| r["subject"].as_str().unwrap()).collect();
    assert!(subjects.contains(&"Budget 2026") && subjects.contains(&"Re: Budget 2026"), "{subjects:?}");
    assert_eq!(results[0]["from"], "Ann <ann@ext.com>");
    assert_eq!(results[0]["unread"], true);
    assert!(results[0]["snippet"].as_str().unwrap().len() > 3);

    // No match: Gmail omits "messages"; the tool says so.
    let none =
        google_toolbox(&g).call("gmail_search", &json!({"query": "from:nobody"}), &ctx(&c)).await.unwrap();
    assert_eq!(none.content["results"], json!([]));
    assert!(none.content["note"].as_str().unwrap().contains("no messages"));
}

#[tokio::test]
async fn gmail_read_extracts_plain_text_from_mime() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    let alternative = concat!(
        "From: ann@ext.com\r\nTo: alice@company.com\r\nSubject: =?UTF-8?B?R3LDvMOfZQ==?=\r\nMessage-ID: <alt@ext.com>\r\n",
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n",
        "--outer\r\nContent-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n",
        "--inner\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\nSGFsbG8gV2VsdCDigJQgcGxhaW4=\r\n",
        "--inner\r\nContent-Type: text/html; charset=UTF-8\r\n\r\n<p>Hallo <b>HTML</b></p>\r\n--inner--\r\n",
        "--outer\r\nContent-Type: application/pdf; name=\"q1.pdf\"\r\nContent-Disposition: attachment; filename=\"q1.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n",
        "--outer--\r\n"
    );
    let (id1, _) = g.add_message(ALICE, alternative, &[]);
    let html_only = concat!(
        "From: news@ext.com\r\nTo: alice@company.com\r\nSubject: News\r\nMessage-ID: <html@ext.com>\r\nMIME-Version: 1.0\r\n",
        "Content-Type: text/html; charset=ISO-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
        "<html><head><style>p {color:red}</style></head><body><h1>Caf=E9 news</h1><p>Line one<br>Line two &amp; more</p>",
        "<ul><li>first</li><li>second</li></ul><a href=3D\"https://ext.com/read\">Read on</a></body></html>\r\n"
    );
    let (id2, _) = g.add_message(ALICE, html_only, &[]);
    let c = creds(&a);
    let tb = google_toolbox(&g);

    let out = tb.call("gmail_read", &json!({"message_id": id1}), &ctx(&c)).await.unwrap();
    let req = g.api_requests().pop().unwrap();
    assert_eq!(req.line(), format!("GET /gmail/v1/users/me/messages/{id1}"));
    assert_eq!(q(&req, "format"), "full");
    assert_eq!(out.content["body"], "Hallo Welt — plain");
    assert_eq!(out.content["subject"], "Grüße");
    assert_eq!(
        out.content["attachments"],
        json!([{"filename": "q1.pdf", "mime_type": "application/pdf", "size": 9}])
    );

    let out = tb.call("gmail_read", &json!({"message_id": id2}), &ctx(&c)).await.unwrap();
    assert_eq!(
        out.content["body"],
        "Café news\n\nLine one\nLine two & more\n\n- first\n- second\nRead on (https://ext.com/read)"
    );
}

#[tokio::test]
async fn gmail_read_thread_newest_first() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    let (_, thread) =
        g.add_message(ALICE, &plain_mail("ann@ext.com", ALICE, "Plan", "<p1@ext.com>", "", "first"), &[]);
    let (_, t2) = g.add_message(
        ALICE,
        &plain_mail(
            "ann@ext.com",
            ALICE,
            "Re: Plan",
            "<p2@ext.com>",
            "In-Reply-To: <p1@ext.com>\r\nReferences: <p1@ext.com>\r\n",
            "second",
        ),
        &[],
    );
    assert_eq!(thread, t2, "the fake threads by References");
    let c = creds(&a);
    let out = google_toolbox(&g).call("gmail_read", &json!({"thread_id": thread}), &ctx(&c)).await.unwrap();
    assert_eq!(g.api_requests().pop().unwrap().line(), format!("GET /gmail/v1/users/me/threads/{thread}"));
    assert_eq!(out.content["message_count"], 2);
    let bodies: Vec<&str> = out.content["messages_newest_first"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["second", "first"]);
}

#[tokio::test]
async fn gmail_send_builds_a_parsable_utf8_message() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    let c = creds(&a);
    let subject =
        "Grüße aus Köln — 会議の議題について, and quite a long subject line that needs several encoded words";
    let body = "Hallo Jörg,\n\nanbei die Zahlen für Q1 — 東京.\n\nViele Grüße\nAlice";
    let args = json!({"to": ["Jörg Müller <joerg@ext.com>", "team@company.com"], "cc": ["boss@company.com"], "subject": subject, "body": body});
    let out = google_toolbox(&g)
        .call("gmail_send", &args, &ctx(&c).with_idempotency_key("proposal-42"))
        .await
        .unwrap();

    let reqs = g.api_requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].line(), "POST /gmail/v1/users/me/messages/send");
    assert_eq!(reqs[0].header("idempotency-key"), Some("proposal-42"));
    let sent_body = reqs[0].json();
    assert!(sent_body.get("threadId").is_none());
    let raw = sent_body["raw"].as_str().unwrap();
    assert!(!raw.contains(['+', '/', '=']), "raw must be unpadded base64url");

    let sent = g.sent(ALICE);
    assert_eq!(sent.len(), 1);
    let m = &sent[0];
    assert_eq!(m.subject.as_deref(), Some(subject));
    assert_eq!(m.to, vec!["joerg@ext.com", "team@company.com"]);
    assert_eq!(m.to_names[0].as_deref(), Some("Jörg Müller"));
    assert_eq!(m.cc, vec!["boss@company.com"]);
    assert_eq!(m.from.as_deref(), Some(ALICE));
    assert_eq!(m.mime_type, "text/plain");
    assert!(m.charset.eq_ignore_ascii_case("utf-8"), "{}", m.charset);
    assert_eq!(m.transfer_encoding.as_deref(), Some("base64"));
    assert_eq!(m.body.replace("\r\n", "\n"), body);
    assert!(m.header("Subject").unwrap().starts_with("=?UTF-8?B?"), "subject must be RFC 2047 encoded");
    assert!(m.raw.lines().all(|l| l.len() <= 998));
    assert!(
        m.message_id.as_deref().unwrap().starts_with("<crewgate.")
            && m.message_id.as_deref().unwrap().ends_with("@company.com>")
    );
    assert_eq!(m.idempotency_key.as_deref(), Some("proposal-42"));
    assert_eq!(g.writes(ALICE), 1);
    assert_eq!(out.content["status"], "sent");
    assert_eq!(out.external_id.as_deref(), Some(m.id.as_str()));

    // Same proposal → same Message-ID (recognisable duplicate).
    google_toolbox(&g).call("gmail_send", &args, &ctx(&c).with_idempotency_key("proposal-42")).await.unwrap();
    let sent = g.sent(ALICE);
    assert_eq!(sent[0].message_id, sent[1].message_id);
}

#[tokio::test]
async fn gmail_send_reply_threads_correctly() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    let (_, thread) = g.add_message(
        ALICE,
        &plain_mail("Ann <ann@ext.com>", ALICE, "Offer", "<o1@ext.com>", "", "Our offer"),
        &[],
    );
    let (orig, t2) = g.add_message(
        ALICE,
        &plain_mail(
            "Ann <ann@ext.com>",
            ALICE,
            "Re: Offer",
            "<o2@ext.com>",
            "In-Reply-To: <o1@ext.com>\r\nReferences: <o1@ext.com>\r\nReply-To: Sales <sales@ext.com>\r\n",
            "Any news?",
        ),
        &[],
    );
    assert_eq!(thread, t2);
    let c = creds(&a);
    let out = google_toolbox(&g)
        .call("gmail_send", &json!({"reply_to_message_id": orig, "body": "Yes — signed."}), &ctx(&c))
        .await
        .unwrap();

    let reqs = g.api_requests();
    assert_eq!(reqs.len(), 2, "{:?}", reqs.iter().map(|r| r.line()).collect::<Vec<_>>());
    assert_eq!(reqs[0].line(), format!("GET /gmail/v1/users/me/messages/{orig}"));
    assert_eq!(q(&reqs[0], "format"), "metadata");
    assert_eq!(reqs[1].line(), "POST /gmail/v1/users/me/messages/send");
    assert_eq!(reqs[1].json()["threadId"], thread.as_str());

    let m = &g.sent(ALICE)[0];
    assert_eq!(m.thread_id, thread, "the fake only threads when threadId, References and subject all match");
    assert_eq!(m.in_reply_to.as_deref(), Some("<o2@ext.com>"));
    assert_eq!(m.references.as_deref(), Some("<o1@ext.com> <o2@ext.com>"));
    assert_eq!(m.subject.as_deref(), Some("Re: Offer"));
    assert_eq!(m.to, vec!["sales@ext.com"], "replies go to Reply-To");
    assert_eq!(m.body.trim_end(), "Yes — signed.");
    assert_eq!(out.content["thread_id"], thread.as_str());
}

#[tokio::test]
async fn gmail_draft_create_then_send_draft() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    let c = creds(&a);
    let tb = google_toolbox(&g);
    let out = tb
        .call(
            "gmail_draft_create",
            &json!({"to": ["ann@ext.com"], "subject": "Draft", "body": "plain ascii body"}),
            &ctx(&c),
        )
        .await
        .unwrap();
    let req = g.api_requests().pop().unwrap();
    assert_eq!(req.line(), "POST /gmail/v1/users/me/drafts");
    assert!(req.json()["message"]["raw"].is_string());
    let drafts = g.drafts(ALICE);
    assert_eq!(drafts.len(), 1);
    assert_eq!(drafts[0].subject.as_deref(), Some("Draft"));
    assert_eq!(drafts[0].transfer_encoding.as_deref(), Some("7bit"));
    assert_eq!(drafts[0].body.trim_end(), "plain ascii body");
    let draft_id = out.content["draft_id"].as_str().unwrap().to_owned();
    assert!(g.sent(ALICE).is_empty());

    tb.call("gmail_send", &json!({"draft_id": draft_id}), &ctx(&c)).await.unwrap();
    let req = g.api_requests().pop().unwrap();
    assert_eq!(req.line(), "POST /gmail/v1/users/me/drafts/send");
    assert_eq!(req.json(), json!({"id": draft_id}));
    assert_eq!(g.sent(ALICE).len(), 1);
    assert!(g.drafts(ALICE).is_empty());
    assert_eq!(g.writes(ALICE), 2);
}

// ---------------------------------------------------------------------------------- Calendar

#[tokio::test]
async fn calendar_list_events_in_window() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    g.add_event(ALICE, "primary", json!({"summary": "Late", "start": {"dateTime": "2026-03-02T15:00:00Z"}, "end": {"dateTime": "2026-03-02T16:00:00Z"}}));
    g.add_event(ALICE, "primary", json!({"summary": "Standup", "location": "Room 1", "start": {"dateTime": "2026-03-02T09:00:00+01:00"}, "end": {"dateTime": "2026-03-02T09:15:00+01:00"},
        "attendees": [{"email": "bob@company.com"}]}));
    g.add_event(ALICE, "primary", json!({"summary": "Next week", "start": {"dateTime": "2026-03-09T09:00:00Z"}, "end": {"dateTime": "2026-03-09T10:00:00Z"}}));
    let c = creds(&a);
    let out = google_toolbox(&g)
        .call(
            "calendar_list_events",
            &json!({"time_min": "2026-03-02T00:00:00Z", "time_max": "2026-03-03T00:00:00Z"}),
            &ctx(&c),
        )
        .await
        .unwrap();
    let req = g.api_requests().pop().unwrap();
    assert_eq!(req.line(), "GET /calendar/v3/calendars/primary/events");
    assert_eq!(
        req.query,
        vec![
            ("timeMin".to_owned(), "2026-03-02T00:00:00Z".to_owned()),
            ("timeMax".into(), "2026-03-03T00:00:00Z".into()),
            ("singleEvents".into(), "true".into()),
            ("orderBy".into(), "startTime".into()),
            ("maxResults".into(), "25".into()),
        ]
    );
    let events = out.content["events"].as_array().unwrap();
    let names: Vec<&str> = events.iter().map(|e| e["summary"].as_str().unwrap()).collect();
    assert_eq!(names, ["Standup", "Late"]);
    assert_eq!(events[0]["start"], "2026-03-02T09:00:00+01:00");
    assert_eq!(events[0]["location"], "Room 1");
    assert_eq!(events[0]["attendees"], json!([{"email": "bob@company.com", "response": "needsAction"}]));
}

#[tokio::test]
async fn calendar_freebusy_reports_busy_intervals() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    g.add_event(ALICE, "primary", json!({"summary": "x", "start": {"dateTime": "2026-03-02T10:00:00Z"}, "end": {"dateTime": "2026-03-02T11:00:00Z"}}));
    let c = creds(&a);
    let out = google_toolbox(&g)
        .call(
            "calendar_freebusy",
            &json!({"time_min": "2026-03-02T08:00:00Z", "time_max": "2026-03-02T18:00:00Z", "calendars": ["primary", "nobody@else.com"]}),
            &ctx(&c),
        )
        .await
        .unwrap();
    let req = g.api_requests().pop().unwrap();
    assert_eq!(req.line(), "POST /calendar/v3/freeBusy");
    assert_eq!(
        req.json(),
        json!({"timeMin": "2026-03-02T08:00:00Z", "timeMax": "2026-03-02T18:00:00Z", "items": [{"id": "primary"}, {"id": "nobody@else.com"}]})
    );
    assert_eq!(
        out.content["calendars"]["primary"]["busy"],
        json!([{"start": "2026-03-02T10:00:00.000Z", "end": "2026-03-02T11:00:00.000Z"}])
    );
    assert!(out.content["calendars"]["nobody@else.com"]["error"].as_str().unwrap().contains("notFound"));
}

#[tokio::test]
async fn calendar_create_event_is_exactly_once_per_idempotency_key() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    let c = creds(&a);
    let args = json!({"summary": "Kick-off", "start": "2026-03-05T10:00:00+01:00", "end": "2026-03-05T11:00:00+01:00",
        "time_zone": "Europe/Berlin", "attendees": ["ann@ext.com"], "description": "agenda", "add_meet": true});
    let tb = google_toolbox(&g);
    let cx = ctx(&c).with_idempotency_key("proposal-7");
    let out = tb.call("calendar_create_event", &args, &cx).await.unwrap();

    let req = g.api_requests().pop().unwrap();
    assert_eq!(req.line(), "POST /calendar/v3/calendars/primary/events");
    assert_eq!(q(&req, "sendUpdates"), "none");
    assert_eq!(q(&req, "conferenceDataVersion"), "1");
    let body = req.json();
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b)));
    assert_eq!(body["start"], json!({"dateTime": "2026-03-05T10:00:00+01:00", "timeZone": "Europe/Berlin"}));
    assert_eq!(body["attendees"], json!([{"email": "ann@ext.com"}]));
    assert_eq!(body["conferenceData"]["createRequest"]["conferenceSolutionKey"]["type"], "hangoutsMeet");
    assert_eq!(out.content["status"], "created");
    assert_eq!(out.external_id.as_deref(), Some(id.as_str()));
    assert!(out.content["event"]["meet"].as_str().unwrap().starts_with("https://meet.google.com/"));

    // A retry of the same approved action (e.g. after a crash) does not create a second event.
    let again = tb.call("calendar_create_event", &args, &cx).await.unwrap();
    assert_eq!(again.content["status"], "already created");
    assert_eq!(g.events(ALICE, "primary").len(), 1);
    assert_eq!(g.writes(ALICE), 1);

    // All-day events use dates.
    tb.call(
        "calendar_create_event",
        &json!({"summary": "Offsite", "start": "2026-04-01", "end": "2026-04-03"}),
        &ctx(&c),
    )
    .await
    .unwrap();
    assert_eq!(g.api_requests().pop().unwrap().json()["end"], json!({"date": "2026-04-03"}));
}

#[tokio::test]
async fn calendar_update_event_patches_only_given_fields() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    let id = g.add_event(ALICE, "primary", json!({"summary": "Old", "location": "Room 1", "start": {"dateTime": "2026-03-02T10:00:00Z"}, "end": {"dateTime": "2026-03-02T11:00:00Z"}}));
    let c = creds(&a);
    let out = google_toolbox(&g)
        .call(
            "calendar_update_event",
            &json!({"event_id": id, "summary": "New", "send_updates": "all"}),
            &ctx(&c),
        )
        .await
        .unwrap();
    let req = g.api_requests().pop().unwrap();
    assert_eq!(req.line(), format!("PATCH /calendar/v3/calendars/primary/events/{id}"));
    assert_eq!(q(&req, "sendUpdates"), "all");
    assert_eq!(req.json(), json!({"summary": "New"}));
    let ev = &g.events(ALICE, "primary")[0];
    assert_eq!(ev["summary"], "New");
    assert_eq!(ev["location"], "Room 1");
    assert_eq!(out.content["event"]["summary"], "New");
}

// ---------------------------------------------------------------------------------- Drive, Docs, Sheets, People

#[tokio::test]
async fn drive_search_builds_the_drive_query() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    let doc = g.add_file(
        ALICE,
        "Budget plan",
        "application/vnd.google-apps.document",
        "The budget for 2026 is tight.",
    );
    g.add_file(ALICE, "Budget sheet", "application/vnd.google-apps.spreadsheet", "a,b");
    g.add_file(ALICE, "Holiday", "application/vnd.google-apps.document", "beach");
    let c = creds(&a);
    let out = google_toolbox(&g)
        .call("drive_search", &json!({"query": "budget", "type": "document"}), &ctx(&c))
        .await
        .unwrap();
    let req = g.api_requests().pop().unwrap();
    assert_eq!(req.line(), "GET /drive/v3/files");
    assert_eq!(
        q(&req, "q"),
        "trashed = false and fullText contains 'budget' and mimeType = 'application/vnd.google-apps.document'"
    );
    assert_eq!(req.query_value("orderBy"), None, "Drive rejects orderBy with fullText");
    assert_eq!(q(&req, "pageSize"), "20");
    assert_eq!(out.content["files"].as_array().unwrap().len(), 1);
    assert_eq!(out.content["files"][0]["id"], doc.as_str());
    assert_eq!(out.content["files"][0]["type"], "document");

    // Quotes in the text are escaped; name searches are ordered by modification time.
    google_toolbox(&g).call("drive_search", &json!({"name": "Alice's"}), &ctx(&c)).await.unwrap();
    let req = g.api_requests().pop().unwrap();
    assert_eq!(q(&req, "q"), "trashed = false and name contains 'Alice\\'s'");
    assert_eq!(q(&req, "orderBy"), "modifiedTime desc");
}

#[tokio::test]
async fn docs_read_exports_text_and_pages_long_documents() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    let text = (0..300).map(|i| format!("Line {i} of the quarterly report.")).collect::<Vec<_>>().join("\n");
    let doc = g.add_file(ALICE, "Report", "application/vnd.google-apps.document", &text);
    let c = creds(&a);
    let out = google_toolbox(&g).call("docs_read", &json!({"document_id": doc}), &ctx(&c)).await.unwrap();
    let reqs = g.api_requests();
    assert_eq!(reqs[0].line(), format!("GET /drive/v3/files/{doc}"));
    assert_eq!(reqs[1].line(), format!("GET /drive/v3/files/{doc}/export"));
    assert_eq!(q(&reqs[1], "mimeType"), "text/plain");
    let part = out.content["text"].as_str().unwrap();
    assert!(part.starts_with("Line 0 of"), "BOM stripped: {:?}", &part[..10]);
    assert_eq!(out.content["total_characters"], text.chars().count());
    let more = out.content["more"].as_str().unwrap();
    assert!(serde_json::to_string(&out.content).unwrap().len() <= 7_500);
    let next: usize =
        more.rsplit("offset ").next().unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(next, part.chars().count());
    let rest = google_toolbox(&g)
        .call("docs_read", &json!({"document_id": doc, "offset": next}), &ctx(&c))
        .await
        .unwrap();
    assert_eq!(format!("{part}{}", rest.content["text"].as_str().unwrap()), text);
    assert!(rest.content.get("more").is_none());

    let pdf = g.add_file(ALICE, "scan.pdf", "application/pdf", "%PDF");
    let err = google_toolbox(&g).call("docs_read", &json!({"document_id": pdf}), &ctx(&c)).await.unwrap_err();
    assert!(err.to_string().contains("cannot be read as text"), "{err}");
}

#[tokio::test]
async fn sheets_read_lists_sheets_and_reads_ranges() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    let id = g.add_spreadsheet(
        ALICE,
        "Pipeline",
        &[
            ("Deals", vec![vec!["Name", "Value"], vec!["Acme", "100"], vec!["Globex", "250"]]),
            ("Notes", vec![]),
        ],
    );
    let c = creds(&a);
    let tb = google_toolbox(&g);
    let out = tb.call("sheets_read", &json!({"spreadsheet_id": id}), &ctx(&c)).await.unwrap();
    let req = g.api_requests().pop().unwrap();
    assert_eq!(req.line(), format!("GET /v4/spreadsheets/{id}"));
    assert_eq!(q(&req, "fields"), "properties.title,sheets.properties");
    assert_eq!(out.content["title"], "Pipeline");
    assert_eq!(out.content["sheets"][1]["title"], "Notes");

    let out = tb
        .call("sheets_read", &json!({"spreadsheet_id": id, "range": "Deals!A1:B3"}), &ctx(&c))
        .await
        .unwrap();
    let req = g.api_requests().pop().unwrap();
    assert_eq!(req.path, format!("/v4/spreadsheets/{id}/values/Deals%21A1%3AB3"));
    assert_eq!(q(&req, "valueRenderOption"), "FORMATTED_VALUE");
    assert_eq!(out.content["rows"], json!([["Name", "Value"], ["Acme", "100"], ["Globex", "250"]]));
    assert_eq!(out.content["range"], "Deals!A1:B3");
}

#[tokio::test]
async fn sheets_update_and_append_write_values() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    let id =
        g.add_spreadsheet(ALICE, "Pipeline", &[("Deals", vec![vec!["Name", "Value"], vec!["Acme", "100"]])]);
    let c = creds(&a);
    let tb = google_toolbox(&g);
    let out = tb
        .call(
            "sheets_update",
            &json!({"spreadsheet_id": id, "range": "Deals!B2", "values": [[120]]}),
            &ctx(&c).with_idempotency_key("p-1"),
        )
        .await
        .unwrap();
    let req = g.api_requests().pop().unwrap();
    assert_eq!(req.line(), format!("PUT /v4/spreadsheets/{id}/values/Deals%21B2"));
    assert_eq!(q(&req, "valueInputOption"), "USER_ENTERED");
    assert_eq!(req.json(), json!({"range": "Deals!B2", "majorDimension": "ROWS", "values": [[120]]}));
    assert_eq!(req.header("idempotency-key"), Some("p-1"));
    assert_eq!(out.content["updated_cells"], 1);

    let out = tb
        .call("sheets_append", &json!({"spreadsheet_id": id, "range": "Deals!A:B", "values": [["Globex", "250"], ["Initech", true]], "raw": true}), &ctx(&c))
        .await
        .unwrap();
    let req = g.api_requests().pop().unwrap();
    assert_eq!(req.line(), format!("POST /v4/spreadsheets/{id}/values/Deals%21A%3AB:append"));
    assert_eq!(q(&req, "valueInputOption"), "RAW");
    assert_eq!(q(&req, "insertDataOption"), "INSERT_ROWS");
    assert_eq!(out.content["updated_range"], "Deals!A3:B4");
    assert_eq!(
        g.sheet_values(ALICE, &id, "Deals"),
        vec![vec!["Name", "Value"], vec!["Acme", "120"], vec!["Globex", "250"], vec!["Initech", "TRUE"]]
    );
    assert_eq!(g.writes(ALICE), 2);
}

#[tokio::test]
async fn contacts_search_warms_up_and_searches_both_sources() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    g.add_contact(ALICE, "Ann Lee", &["ann@ext.com"], &["+49 30 1234"], Some("Ext GmbH"), false);
    g.add_contact(ALICE, "Bob Stone", &["bob@other.com"], &[], None, false);
    g.add_contact(ALICE, "Anna Other", &["anna@somewhere.com"], &[], None, true);
    let c = creds(&a);
    let out = google_toolbox(&g).call("contacts_search", &json!({"query": "ann"}), &ctx(&c)).await.unwrap();
    let lines: Vec<(String, String)> =
        g.api_requests().iter().map(|r| (r.line(), r.query_value("query").unwrap().to_owned())).collect();
    assert_eq!(
        lines,
        vec![
            ("GET /v1/people:searchContacts".to_owned(), String::new()),
            ("GET /v1/people:searchContacts".into(), "ann".into()),
            ("GET /v1/otherContacts:search".into(), String::new()),
            ("GET /v1/otherContacts:search".into(), "ann".into()),
        ]
    );
    assert_eq!(
        out.content["contacts"],
        json!([
            {"name": "Ann Lee", "emails": ["ann@ext.com"], "phones": ["+49 30 1234"], "organization": "Ext GmbH", "source": "contacts"},
            {"name": "Anna Other", "emails": ["anna@somewhere.com"], "phones": [], "organization": null, "source": "other contacts"},
        ])
    );
}

// ---------------------------------------------------------------------------------- Tokens

#[tokio::test]
async fn refreshes_an_expired_token_before_calling() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    let c = creds(&a);
    let mut t = c.token();
    t.expires_at = Some(crewgate_core::now_millis() - 1000);
    c.replace(t);
    google_toolbox(&g).call("gmail_search", &json!({"query": "x"}), &ctx(&c)).await.unwrap();
    let reqs = g.requests();
    assert_eq!(reqs[0].line(), "POST /token");
    let form: std::collections::HashMap<_, _> =
        crewgate_testkit::fake_common::parse_query(&reqs[0].text()).into_iter().collect();
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["refresh_token"], a.refresh_token);
    assert_eq!(form["client_id"], crewgate_testkit::fake_google::CLIENT_ID);
    assert_eq!(reqs.len(), 2, "no 401 round-trip: refreshed before the call");
    assert_eq!(reqs[1].status, 200);
    assert_ne!(reqs[1].header("authorization").unwrap(), format!("Bearer {}", a.access_token));
    assert_eq!(c.refreshes_stored(), 1);
    assert!(c.token().expires_at.unwrap() > crewgate_core::now_millis() + 3_000_000);
}

#[tokio::test]
async fn refreshes_on_401_and_retries_once() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    let c = creds(&a);
    g.expire_access_tokens(ALICE);
    google_toolbox(&g).call("gmail_search", &json!({"query": "x"}), &ctx(&c)).await.unwrap();
    let lines: Vec<(String, u16)> = g.requests().iter().map(|r| (r.line(), r.status)).collect();
    assert_eq!(
        lines,
        vec![
            ("GET /gmail/v1/users/me/messages".to_owned(), 401),
            ("POST /token".into(), 200),
            ("GET /gmail/v1/users/me/messages".into(), 200),
        ]
    );
    assert_eq!(c.refreshes_stored(), 1);

    // A second 401 after the refresh is not retried forever.
    g.clear_requests();
    g.inject(Fault::status(401).path("/gmail/").times(5));
    let err = google_toolbox(&g).call("gmail_search", &json!({"query": "x"}), &ctx(&c)).await.unwrap_err();
    assert!(err.to_string().contains("reconnect Google"), "{err}");
    assert_eq!(g.api_requests().len(), 2);
}

#[tokio::test]
async fn invalid_grant_marks_needs_reconnect() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    let c = creds(&a);
    g.revoke(ALICE);
    let err = google_toolbox(&g).call("gmail_search", &json!({"query": "x"}), &ctx(&c)).await.unwrap_err();
    assert!(matches!(err, ToolError::NeedsReconnect(_)), "{err:?}");
    assert!(err.to_string().contains("reconnect Google on the dashboard"), "{err}");
    assert_eq!(c.needs_reconnect().as_deref(), Some("Token has been expired or revoked."));
    let reqs = g.requests();
    assert_eq!(reqs.last().unwrap().line(), "POST /token");
    assert_eq!(reqs.last().unwrap().status, 400);

    // Once marked, calls fail at once without touching Google.
    g.clear_requests();
    let err = google_toolbox(&g)
        .call(
            "calendar_list_events",
            &json!({"time_min": "2026-03-02T00:00:00Z", "time_max": "2026-03-03T00:00:00Z"}),
            &ctx(&c),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ToolError::NeedsReconnect(_)));
    assert!(g.requests().is_empty());
}

#[tokio::test]
async fn not_connected_and_missing_scopes_send_nothing() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    let tb = google_toolbox(&g);
    let err = tb.call("gmail_search", &json!({"query": "x"}), &ToolContext::new()).await.unwrap_err();
    assert!(matches!(err, ToolError::NotConnected));
    let c = creds(&a);
    let mut t = c.token();
    t.scopes = Some(vec!["https://www.googleapis.com/auth/gmail.readonly".into()]);
    c.replace(t);
    let err = tb
        .call("gmail_send", &json!({"to": ["x@y.co"], "subject": "s", "body": "b"}), &ctx(&c))
        .await
        .unwrap_err();
    assert!(matches!(&err, ToolError::MissingScopes { missing } if missing == "gmail.compose"), "{err:?}");
    assert!(g.requests().is_empty());
    // gmail.compose alone sends new mail; a reply also needs to read the original.
    t = c.token();
    t.scopes = Some(vec!["gmail.compose".into()]);
    c.replace(t);
    let err = tb
        .call("gmail_send", &json!({"reply_to_message_id": "m1", "body": "b"}), &ctx(&c))
        .await
        .unwrap_err();
    assert!(matches!(&err, ToolError::MissingScopes { missing } if missing == "gmail.readonly"), "{err:?}");
    assert!(g.requests().is_empty());
    tb.call("gmail_send", &json!({"to": ["x@y.co"], "subject": "s", "body": "b"}), &ctx(&c)).await.unwrap();
    assert_eq!(g.writes(ALICE), 1);

    // The fake enforces scopes too: a grant without calendar gets Google's 403.
    let c = creds(&a);
    g.set_scopes(ALICE, &["gmail.readonly"]);
    let err = tb
        .call(
            "calendar_list_events",
            &json!({"time_min": "2026-03-02T00:00:00Z", "time_max": "2026-03-03T00:00:00Z"}),
            &ctx(&c),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ToolError::Api { status: 403, .. }), "{err:?}");
    assert!(err.to_string().contains("did not grant"), "{err}");
}

#[tokio::test]
async fn each_user_uses_only_their_own_google_account() {
    let g = FakeGoogle::start().await;
    let alice = g.add_account(ALICE);
    let bob = g.add_account(BOB);
    g.add_message(ALICE, &plain_mail("x@ext.com", ALICE, "for alice", "<a@x>", "", "a"), &[]);
    g.add_message(BOB, &plain_mail("x@ext.com", BOB, "for bob", "<b@x>", "", "b"), &[]);
    let (ca, cb) = (creds(&alice), creds(&bob));
    let tb = google_toolbox(&g);
    let (args, cxa, cxb) = (json!({"query": "for"}), ctx(&ca), ctx(&cb));
    let (ra, rb) = tokio::join!(tb.call("gmail_search", &args, &cxa), tb.call("gmail_search", &args, &cxb));
    assert_eq!(ra.unwrap().content["results"][0]["subject"], "for alice");
    assert_eq!(rb.unwrap().content["results"][0]["subject"], "for bob");
    tb.call("gmail_send", &json!({"to": ["x@ext.com"], "subject": "from bob", "body": "hi"}), &ctx(&cb))
        .await
        .unwrap();
    // Bob's token expires: the refresh uses Bob's refresh token and stores into Bob's credential.
    g.expire_access_tokens(BOB);
    tb.call(
        "calendar_list_events",
        &json!({"time_min": "2026-03-02T00:00:00Z", "time_max": "2026-03-03T00:00:00Z"}),
        &ctx(&cb),
    )
    .await
    .unwrap();

    for r in g.requests() {
        if r.path == "/token" {
            assert!(
                r.text().contains(&bob.refresh_token.replace('/', "%2F")),
                "refresh must use Bob's token"
            );
            continue;
        }
        let auth = r.header("authorization").unwrap().to_owned();
        match r.account.as_deref() {
            Some(ALICE) => assert_eq!(auth, format!("Bearer {}", alice.access_token)),
            Some(BOB) => assert!(auth != format!("Bearer {}", alice.access_token)),
            other => assert!(r.status == 401 && auth.contains(&bob.access_token), "{other:?} {}", r.line()),
        }
    }
    assert_eq!(g.sent(BOB).len(), 1);
    assert!(g.sent(ALICE).is_empty());
    assert_eq!((ca.refreshes_stored(), cb.refreshes_stored()), (0, 1));
}

// ---------------------------------------------------------------------------------- Faults

#[tokio::test]
async fn rate_limits_are_waited_out_and_write_5xx_is_not_retried() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    let c = creds(&a);
    let tb = google_toolbox(&g);
    g.inject(Fault::status(429).on("GET", "/gmail/v1/users/me/messages").retry_after("1"));
    let start = Instant::now();
    tb.call("gmail_search", &json!({"query": "x"}), &ctx(&c)).await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(950), "Retry-After honoured");
    assert_eq!(g.api_requests().iter().map(|r| r.status).collect::<Vec<_>>(), vec![429, 200]);

    // A read hitting a 503 is retried; a send hitting a 500 is not (it may have happened).
    g.clear_requests();
    g.inject(Fault::status(503).on("GET", "/calendar/"));
    tb.call(
        "calendar_list_events",
        &json!({"time_min": "2026-03-02T00:00:00Z", "time_max": "2026-03-03T00:00:00Z"}),
        &ctx(&c),
    )
    .await
    .unwrap();
    assert_eq!(g.api_requests().len(), 2);
    g.clear_requests();
    g.inject(Fault::status(500).on("POST", "/messages/send"));
    let err = tb
        .call("gmail_send", &json!({"to": ["x@ext.com"], "subject": "s", "body": "b"}), &ctx(&c))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("try again later"), "{err}");
    assert_eq!(g.api_requests().len(), 1);
    assert_eq!(g.writes(ALICE), 0);
}

#[tokio::test]
async fn invalid_arguments_send_nothing() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    let c = creds(&a);
    let tb = google_toolbox(&g);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("gmail_search", json!({}), "required property \"query\""),
        ("gmail_search", json!({"query": "x", "max_results": 500}), "at most 50"),
        ("gmail_read", json!({"message_id": "a", "thread_id": "b"}), "exactly one"),
        (
            "gmail_send",
            json!({"to": ["not an address"], "subject": "s", "body": "b"}),
            "not an e-mail address",
        ),
        (
            "gmail_send",
            json!({"to": ["a@b.co\r\nBcc: evil@x.com"], "subject": "s", "body": "b"}),
            "not an e-mail address",
        ),
        ("gmail_send", json!({"to": ["a@b.co"], "subject": "s\r\nBcc: evil@x.com", "body": "b"}), "one line"),
        ("gmail_send", json!({"to": ["a@b.co"], "body": "b"}), "subject is required"),
        ("gmail_send", json!({"draft_id": "r1", "body": "b"}), "no other fields"),
        (
            "calendar_list_events",
            json!({"time_min": "tomorrow", "time_max": "2026-03-03T00:00:00Z"}),
            "RFC 3339",
        ),
        (
            "calendar_create_event",
            json!({"summary": "x", "start": "2026-03-02", "end": "2026-03-02T10:00:00Z"}),
            "both be dates",
        ),
        ("calendar_update_event", json!({"event_id": "e1"}), "nothing to change"),
        (
            "sheets_update",
            json!({"spreadsheet_id": "s", "range": "A1", "values": "nope"}),
            "must be an array",
        ),
        ("drive_search", json!({"type": "video"}), "must be one of"),
        ("contacts_search", json!({"query": "a", "extra": 1}), "unknown property \"extra\""),
        ("calendar_update_event", json!({"event_id": "..", "summary": "x"}), "not a valid id"),
        ("no_such_tool", json!({}), "unknown tool"),
    ];
    for (tool, args, want) in cases {
        let err = tb.call(tool, &args, &ctx(&c)).await.unwrap_err();
        assert!(err.nothing_sent(), "{tool}: {err:?}");
        assert!(err.to_string().contains(want), "{tool}: {err} (wanted {want:?})");
    }
    assert!(g.requests().is_empty(), "{:?}", g.requests().iter().map(|r| r.line()).collect::<Vec<_>>());
}

#[tokio::test]
async fn prior_execution_is_found_by_idempotency_key() {
    use crewgate_tools::PriorExecution;
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    let c = creds(&a);
    let tb = google_toolbox(&g);
    let send = json!({"to": ["ann@ext.com"], "subject": "Hi", "body": "b"});
    let event = json!({"summary": "x", "start": "2026-03-05T10:00:00Z", "end": "2026-03-05T11:00:00Z"});
    let (k1, k2) = (ctx(&c).with_idempotency_key("proposal-1"), ctx(&c).with_idempotency_key("proposal-2"));

    assert_eq!(tb.find_prior_execution("gmail_send", &send, &k1).await.unwrap(), PriorExecution::NotFound);
    assert_eq!(
        tb.find_prior_execution("calendar_create_event", &event, &k1).await.unwrap(),
        PriorExecution::NotFound
    );
    let sent = tb.call("gmail_send", &send, &k1).await.unwrap();
    let created = tb.call("calendar_create_event", &event, &k1).await.unwrap();
    g.clear_requests();

    let PriorExecution::Found(out) = tb.find_prior_execution("gmail_send", &send, &k1).await.unwrap() else {
        panic!("not found")
    };
    assert_eq!(out.external_id, sent.external_id);
    let req = g.api_requests().pop().unwrap();
    assert!(q(&req, "q").starts_with("rfc822msgid:crewgate."), "{}", q(&req, "q"));
    let PriorExecution::Found(out) =
        tb.find_prior_execution("calendar_create_event", &event, &k1).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(out.external_id, created.external_id);
    assert_eq!(tb.find_prior_execution("gmail_send", &send, &k2).await.unwrap(), PriorExecution::NotFound);
    assert_eq!(
        tb.find_prior_execution("calendar_create_event", &event, &k2).await.unwrap(),
        PriorExecution::NotFound
    );
    assert_eq!(
        tb.find_prior_execution(
            "sheets_append",
            &json!({"spreadsheet_id": "s", "range": "A:B", "values": [[1]]}),
            &k1
        )
        .await
        .unwrap(),
        PriorExecution::Unknown
    );
    assert_eq!(g.writes(ALICE), 2);
}

#[tokio::test]
async fn large_results_are_trimmed_with_a_hint() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    for i in 0..30 {
        let body = format!("report {i} {}", "lorem ipsum ".repeat(40));
        g.add_message(
            ALICE,
            &plain_mail("ann@ext.com", ALICE, &format!("Report {i}"), &format!("<r{i}@ext.com>"), "", &body),
            &[],
        );
    }
    let c = creds(&a);
    let tb = crewgate_tools::Toolbox::new(crewgate_tools::ToolSettings {
        result_budget: 3000,
        ..common::google_settings(&g)
    })
    .unwrap();
    let out =
        tb.call("gmail_search", &json!({"query": "report", "max_results": 30}), &ctx(&c)).await.unwrap();
    let size = serde_json::to_string(&out.content).unwrap().len();
    assert!(size <= 3000, "{size}");
    let kept = out.content["results"].as_array().unwrap().len();
    assert!((3..30).contains(&kept), "{kept}");
    assert_eq!(
        out.content["more_results"],
        format!(
            "{} more results not shown (output size limit); use next_page_token or a narrower query",
            30 - kept
        )
    );
}
