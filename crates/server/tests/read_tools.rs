//! Every read tool of crewgate-tools through the real agent loop: the scripted fake model calls
//! the tool, the gateway runs it at once (reads need no approval) against the fake Google,
//! Notion or Attio API, and each test checks the exact request the fake received and the `tool`
//! message the model got back in its next request. Then the Google connection as
//! `GET /api/v1/me` shows it: connected, "needs reconnect" after `invalid_grant`, not connected,
//! each person only ever seeing their own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod approval_world;

use approval_world::{Person, World, call};
use crewgate_core::UserId;
use crewgate_runtime::tools::external::{GOOGLE_SECRET, StoredGoogleToken, connect_google};
use crewgate_testkit::fake_common::{RecordedRequest, parse_query};
use crewgate_testkit::fake_llm::Step;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

const ALICE: &str = "alice@company.com";
const BOB: &str = "bob@company.com";
/// The `Notion-Version` the gateway pins (`crewgate_tools::NOTION_VERSION`; the server crate
/// does not depend on crewgate-tools, and a change of the pin should be a deliberate one).
const NOTION_VERSION: &str = "2025-09-03";
const ANSWER: &str = "Here is what I found.";

// ------------------------------------------------------------------------------------------
// Harness

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fake {
    Google,
    Notion,
    Attio,
}

/// One read tool call through the agent loop.
struct Ran {
    /// Every request the tool's fake received, in order (Google: the token endpoint included).
    requests: Vec<RecordedRequest>,
    /// The `tool` message the model got back, verbatim.
    content: String,
}

impl Ran {
    /// The tool message as JSON: it must reach the model intact.
    fn result(&self) -> Value {
        serde_json::from_str(&self.content)
            .unwrap_or_else(|e| panic!("the model did not get intact JSON ({e}): {}", self.content))
    }

    fn lines(&self) -> Vec<String> {
        self.requests.iter().map(RecordedRequest::line).collect()
    }
}

/// `who` asks; the fake model calls `tool` with `args` in a new session, then answers
/// [`ANSWER`]. Checks the turn (no proposal, the tool offered, one tool message for the call,
/// nothing sent to the other fakes) and returns what `fake` received and what the model got.
async fn run(w: &World, who: &Person, fake: Fake, tool: &str, args: Value) -> Ran {
    w.google.clear_requests();
    w.notion.clear_requests();
    w.attio.clear_requests();
    let s = w.new_session(who).await;
    w.plan(&s, [Step::tool_calls([call(tool, args).with_id("call_read_1")]), Step::text(ANSWER)]);
    let (st, v) = w.say(who, &s, "look it up for me").await;
    assert_eq!(st, 200, "{tool}: {v}");
    assert_eq!(v["reply"]["body"], ANSWER, "{tool}: {v}");
    assert_eq!(v["proposals"], json!([]), "{tool}: a read runs at once, without a proposal");
    assert_eq!(w.plan_left(&s), 0);

    let llm: Vec<_> = w.gw.llm.chat_requests().into_iter().filter(|r| r.user() == Some(s.as_str())).collect();
    assert_eq!(llm.len(), 2, "{tool}: one request for the call, one with its result");
    assert!(llm[0].tool_names().iter().any(|n| n == tool), "{tool} not offered: {:?}", llm[0].tool_names());
    let results = llm[1].tool_results();
    assert_eq!(results.len(), 1, "{tool}: {results:?}");
    assert_eq!(results[0].tool_call_id, "call_read_1");

    let (google, notion, attio) = (w.google.requests(), w.notion.requests(), w.attio.requests());
    let (mine, others) = match fake {
        Fake::Google => (google, [notion, attio].concat()),
        Fake::Notion => (notion, [google, attio].concat()),
        Fake::Attio => (attio, [google, notion].concat()),
    };
    assert!(
        others.is_empty(),
        "{tool} reached another fake: {:?}",
        others.iter().map(RecordedRequest::line).collect::<Vec<_>>()
    );
    Ran { requests: mine, content: results[0].content.clone() }
}

/// `r` is `line` ("GET /path", path as sent) with exactly these query pairs (in order) and this
/// JSON body (`None`: no body), and succeeded.
fn assert_request(r: &RecordedRequest, line: &str, query: &[(&str, &str)], body: Option<Value>) {
    assert_eq!(r.line(), line);
    let q: Vec<(&str, &str)> = r.query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(q, query, "{line}");
    match body {
        Some(b) => {
            assert_eq!(r.header("content-type"), Some("application/json"), "{line}");
            assert_eq!(r.json(), b, "{line}");
        }
        None => assert!(r.body.is_empty(), "{line}: unexpected body {}", r.text()),
    }
    assert_eq!(r.status, 200, "{line}");
}

/// The Google access token the store holds for `who`.
async fn stored_access_token(w: &World, who: &Person) -> String {
    stored_google(w, who).await["access_token"].as_str().unwrap().to_owned()
}

async fn stored_google(w: &World, who: &Person) -> Value {
    let s = w.gw.store.get_secret(&who.user_id, GOOGLE_SECRET).await.unwrap().unwrap();
    serde_json::from_str(s.expose_secret()).unwrap()
}

/// Every request carried `who`'s own access token (none of another account), and no token
/// refresh was needed.
async fn assert_google_auth(w: &World, who: &Person, ran: &Ran) {
    let bearer = format!("Bearer {}", stored_access_token(w, who).await);
    assert!(!ran.requests.is_empty());
    for r in &ran.requests {
        assert_ne!(r.path, "/token", "the stored token is valid: no refresh");
        assert_eq!(r.header("authorization"), Some(bearer.as_str()), "{}", r.line());
        assert_eq!(r.account.as_deref(), Some(who.email.as_str()), "{}", r.line());
    }
}

fn assert_notion_auth(w: &World, ran: &Ran) {
    let bearer = format!("Bearer {}", w.notion.token());
    assert!(!ran.requests.is_empty());
    for r in &ran.requests {
        assert_eq!(r.header("notion-version"), Some(NOTION_VERSION), "{}", r.line());
        assert_eq!(r.header("authorization"), Some(bearer.as_str()), "{}", r.line());
    }
}

fn assert_attio_auth(w: &World, ran: &Ran) {
    let bearer = format!("Bearer {}", w.attio.api_key());
    assert!(!ran.requests.is_empty());
    for r in &ran.requests {
        assert_eq!(r.header("authorization"), Some(bearer.as_str()), "{}", r.line());
    }
}

/// A world with Alice and Bob, each with their own connected fake Google account.
async fn two_people() -> (World, Person, Person) {
    let w = World::start().await;
    let alice = w.person(ALICE).await;
    let bob = w.person(BOB).await;
    (w, alice, bob)
}

fn plain_mail(from: &str, to: &str, subject: &str, message_id: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Mon, 02 Mar 2026 09:00:00 +0000\r\nMessage-ID: {message_id}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n{body}\r\n"
    )
}

/// Seeds through the fake's own API (it has no helper for notes and tasks); not recorded.
async fn attio_post(w: &World, path: &str, body: Value) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", w.attio.base_url()))
        .bearer_auth(w.attio.api_key())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "seeding {path}: {}", resp.status());
    let v = resp.json().await.unwrap();
    w.attio.clear_requests();
    v
}

// ------------------------------------------------------------------------------------------
// Google

#[tokio::test]
async fn gmail_search_through_the_agent_loop() {
    let (w, alice, _bob) = two_people().await;
    let (m1, t1) = w.google.add_message(
        ALICE,
        &plain_mail("Ann <ann@ext.com>", ALICE, "Budget 2026", "<b1@ext.com>", "The numbers are attached."),
        &[],
    );
    w.google.add_message(
        ALICE,
        &plain_mail("Bob <bob@other.com>", ALICE, "Lunch", "<l1@other.com>", "pizza?"),
        &[],
    );
    // Bob has a matching message too: Alice's search must not see it.
    w.google.add_message(
        BOB,
        &plain_mail("Ann <ann@ext.com>", BOB, "For Bob only", "<x1@ext.com>", "secret"),
        &[],
    );

    let ran =
        run(&w, &alice, Fake::Google, "gmail_search", json!({"query": "from:ann", "max_results": 5})).await;
    assert_google_auth(&w, &alice, &ran).await;
    assert_eq!(ran.requests.len(), 2, "{:?}", ran.lines());
    assert_request(
        &ran.requests[0],
        "GET /gmail/v1/users/me/messages",
        &[("q", "from:ann"), ("maxResults", "5")],
        None,
    );
    assert_request(
        &ran.requests[1],
        &format!("GET /gmail/v1/users/me/messages/{m1}"),
        &[
            ("metadataHeaders", "From"),
            ("metadataHeaders", "To"),
            ("metadataHeaders", "Subject"),
            ("metadataHeaders", "Date"),
            ("format", "metadata"),
        ],
        None,
    );
    assert_eq!(
        ran.result(),
        json!({"results": [{
            "id": m1, "thread_id": t1, "from": "Ann <ann@ext.com>", "to": ALICE, "subject": "Budget 2026",
            "date": "Mon, 02 Mar 2026 09:00:00 +0000", "snippet": "The numbers are attached.", "unread": true,
        }]})
    );
}

#[tokio::test]
async fn gmail_read_through_the_agent_loop() {
    let (w, alice, _bob) = two_people().await;
    let mime = concat!(
        "From: Ann <ann@ext.com>\r\nTo: alice@company.com\r\nSubject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n",
        "Date: Mon, 02 Mar 2026 09:00:00 +0000\r\nMessage-ID: <alt@ext.com>\r\nMIME-Version: 1.0\r\n",
        "Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n",
        "--outer\r\nContent-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n",
        "--inner\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\nSGFsbG8gV2VsdCDigJQgcGxhaW4=\r\n",
        "--inner\r\nContent-Type: text/html; charset=UTF-8\r\n\r\n<p>Hallo <b>HTML</b></p>\r\n--inner--\r\n",
        "--outer\r\nContent-Type: application/pdf; name=\"q1.pdf\"\r\nContent-Disposition: attachment; filename=\"q1.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n",
        "--outer--\r\n"
    );
    let (id, thread) = w.google.add_message(ALICE, mime, &[]);

    let ran = run(&w, &alice, Fake::Google, "gmail_read", json!({"message_id": id})).await;
    assert_google_auth(&w, &alice, &ran).await;
    assert_eq!(ran.requests.len(), 1, "{:?}", ran.lines());
    assert_request(
        &ran.requests[0],
        &format!("GET /gmail/v1/users/me/messages/{id}"),
        &[("format", "full")],
        None,
    );
    assert_eq!(
        ran.result(),
        json!({
            "id": id, "thread_id": thread, "from": "Ann <ann@ext.com>", "to": ALICE, "cc": null,
            "date": "Mon, 02 Mar 2026 09:00:00 +0000", "subject": "Grüße", "labels": ["INBOX", "UNREAD"],
            "body": "Hallo Welt — plain",
            "attachments": [{"filename": "q1.pdf", "mime_type": "application/pdf", "size": 9}],
        })
    );
}

#[tokio::test]
async fn calendar_list_events_through_the_agent_loop() {
    let (w, alice, _bob) = two_people().await;
    let standup = w.google.add_event(
        ALICE,
        "primary",
        json!({"summary": "Standup", "location": "Room 1",
        "start": {"dateTime": "2026-03-02T09:00:00+01:00"}, "end": {"dateTime": "2026-03-02T09:15:00+01:00"},
        "attendees": [{"email": BOB}]}),
    );
    let review = w.google.add_event(
        ALICE,
        "primary",
        json!({"summary": "Quarterly review with Dana",
        "start": {"dateTime": "2026-03-02T15:00:00Z"}, "end": {"dateTime": "2026-03-02T16:00:00Z"}}),
    );
    w.google.add_event(
        ALICE,
        "primary",
        json!({"summary": "Next week",
        "start": {"dateTime": "2026-03-09T09:00:00Z"}, "end": {"dateTime": "2026-03-09T10:00:00Z"}}),
    );
    w.google.add_event(
        BOB,
        "primary",
        json!({"summary": "Bob's dentist",
        "start": {"dateTime": "2026-03-02T11:00:00Z"}, "end": {"dateTime": "2026-03-02T12:00:00Z"}}),
    );

    let ran = run(
        &w,
        &alice,
        Fake::Google,
        "calendar_list_events",
        json!({"time_min": "2026-03-02T00:00:00Z", "time_max": "2026-03-03T00:00:00Z"}),
    )
    .await;
    assert_google_auth(&w, &alice, &ran).await;
    assert_eq!(ran.requests.len(), 1, "{:?}", ran.lines());
    assert_request(
        &ran.requests[0],
        "GET /calendar/v3/calendars/primary/events",
        &[
            ("timeMin", "2026-03-02T00:00:00Z"),
            ("timeMax", "2026-03-03T00:00:00Z"),
            ("singleEvents", "true"),
            ("orderBy", "startTime"),
            ("maxResults", "25"),
        ],
        None,
    );
    let result = ran.result();
    let events = result["events"].as_array().unwrap();
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [standup.as_str(), review.as_str()], "{result}");
    assert_eq!(events[0]["summary"], "Standup");
    assert_eq!(events[0]["start"], "2026-03-02T09:00:00+01:00");
    assert_eq!(events[0]["end"], "2026-03-02T09:15:00+01:00");
    assert_eq!(events[0]["location"], "Room 1");
    assert_eq!(events[0]["organizer"], ALICE);
    assert_eq!(events[0]["attendees"], json!([{"email": BOB, "response": "needsAction"}]));
    assert_eq!(events[1]["summary"], "Quarterly review with Dana");
    assert_eq!(events[1]["start"], "2026-03-02T15:00:00Z");
    assert!(result.get("next_page_token").is_none() && result.get("more_results").is_none(), "{result}");
}

#[tokio::test]
async fn calendar_freebusy_through_the_agent_loop() {
    let (w, alice, _bob) = two_people().await;
    w.google.add_event(
        ALICE,
        "primary",
        json!({"summary": "Busy",
        "start": {"dateTime": "2026-03-02T10:00:00Z"}, "end": {"dateTime": "2026-03-02T11:00:00Z"}}),
    );
    w.google.add_event(
        BOB,
        "primary",
        json!({"summary": "Bob busy",
        "start": {"dateTime": "2026-03-02T13:00:00Z"}, "end": {"dateTime": "2026-03-02T14:00:00Z"}}),
    );

    let ran = run(
        &w,
        &alice,
        Fake::Google,
        "calendar_freebusy",
        json!({"time_min": "2026-03-02T08:00:00Z", "time_max": "2026-03-02T18:00:00Z", "calendars": ["primary", "nobody@else.com"]}),
    )
    .await;
    assert_google_auth(&w, &alice, &ran).await;
    assert_eq!(ran.requests.len(), 1, "{:?}", ran.lines());
    assert_request(
        &ran.requests[0],
        "POST /calendar/v3/freeBusy",
        &[],
        Some(json!({"timeMin": "2026-03-02T08:00:00Z", "timeMax": "2026-03-02T18:00:00Z",
            "items": [{"id": "primary"}, {"id": "nobody@else.com"}]})),
    );
    let result = ran.result();
    assert_eq!(
        result["calendars"]["primary"],
        json!({"busy": [{"start": "2026-03-02T10:00:00.000Z", "end": "2026-03-02T11:00:00.000Z"}]}),
        "{result}"
    );
    let err = result["calendars"]["nobody@else.com"]["error"].as_str().unwrap();
    assert!(err.contains("notFound") && err.contains("no access"), "{err}");
}

#[tokio::test]
async fn drive_search_through_the_agent_loop() {
    let (w, alice, _bob) = two_people().await;
    let doc = w.google.add_file(
        ALICE,
        "Budget plan",
        "application/vnd.google-apps.document",
        "The budget for 2026 is tight.",
    );
    w.google.add_file(ALICE, "Budget sheet", "application/vnd.google-apps.spreadsheet", "a,b");
    w.google.add_file(ALICE, "Holiday", "application/vnd.google-apps.document", "beach");
    w.google.add_file(BOB, "Bob's budget", "application/vnd.google-apps.document", "budget");

    let ran =
        run(&w, &alice, Fake::Google, "drive_search", json!({"query": "budget", "type": "document"})).await;
    assert_google_auth(&w, &alice, &ran).await;
    assert_eq!(ran.requests.len(), 1, "{:?}", ran.lines());
    assert_request(
        &ran.requests[0],
        "GET /drive/v3/files",
        &[
            (
                "q",
                "trashed = false and fullText contains 'budget' and mimeType = 'application/vnd.google-apps.document'",
            ),
            ("pageSize", "20"),
            (
                "fields",
                "nextPageToken,files(id,name,mimeType,modifiedTime,owners(emailAddress),webViewLink,size)",
            ),
            ("supportsAllDrives", "true"),
            ("includeItemsFromAllDrives", "true"),
            ("corpora", "allDrives"),
        ],
        None,
    );
    let result = ran.result();
    let files = result["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{result}");
    assert_eq!(files[0]["id"], doc.as_str());
    assert_eq!(files[0]["name"], "Budget plan");
    assert_eq!(files[0]["type"], "document");
    assert_eq!(files[0]["owner"], ALICE);
    assert!(files[0]["modified"].is_string() && files[0]["link"].is_string(), "{result}");
}

#[tokio::test]
async fn docs_read_through_the_agent_loop() {
    let (w, alice, _bob) = two_people().await;
    let text = "Quarterly report\n\nRevenue grew 12 % — mostly in Köln.";
    let doc = w.google.add_file(ALICE, "Report Q1", "application/vnd.google-apps.document", text);

    let ran = run(&w, &alice, Fake::Google, "docs_read", json!({"document_id": doc})).await;
    assert_google_auth(&w, &alice, &ran).await;
    assert_eq!(ran.requests.len(), 2, "{:?}", ran.lines());
    assert_request(
        &ran.requests[0],
        &format!("GET /drive/v3/files/{doc}"),
        &[("fields", "id,name,mimeType"), ("supportsAllDrives", "true")],
        None,
    );
    assert_request(
        &ran.requests[1],
        &format!("GET /drive/v3/files/{doc}/export"),
        &[("mimeType", "text/plain")],
        None,
    );
    assert_eq!(
        ran.result(),
        json!({"document_id": doc, "name": "Report Q1", "type": "document",
            "total_characters": text.chars().count(), "offset": 0, "text": text})
    );
}

#[tokio::test]
async fn sheets_read_through_the_agent_loop() {
    let (w, alice, _bob) = two_people().await;
    let id = w.google.add_spreadsheet(
        ALICE,
        "Pipeline",
        &[
            ("Deals", vec![vec!["Name", "Value"], vec!["Acme", "100"], vec!["Globex", "250"]]),
            ("Notes", vec![]),
        ],
    );

    let ran =
        run(&w, &alice, Fake::Google, "sheets_read", json!({"spreadsheet_id": id, "range": "Deals!A1:B3"}))
            .await;
    assert_google_auth(&w, &alice, &ran).await;
    assert_eq!(ran.requests.len(), 1, "{:?}", ran.lines());
    assert_request(
        &ran.requests[0],
        &format!("GET /v4/spreadsheets/{id}/values/Deals%21A1%3AB3"),
        &[("valueRenderOption", "FORMATTED_VALUE"), ("majorDimension", "ROWS")],
        None,
    );
    assert_eq!(
        ran.result(),
        json!({"range": "Deals!A1:B3", "row_count": 3, "rows": [["Name", "Value"], ["Acme", "100"], ["Globex", "250"]]})
    );
}

#[tokio::test]
async fn contacts_search_through_the_agent_loop() {
    let (w, alice, _bob) = two_people().await;
    w.google.add_contact(ALICE, "Ann Lee", &["ann@ext.com"], &["+49 30 1234"], Some("Ext GmbH"), false);
    w.google.add_contact(ALICE, "Bob Stone", &["bob@other.com"], &[], None, false);
    w.google.add_contact(ALICE, "Anna Other", &["anna@somewhere.com"], &[], None, true);
    w.google.add_contact(BOB, "Annabel Bob-only", &["annabel@ext.com"], &[], None, false);

    let ran =
        run(&w, &alice, Fake::Google, "contacts_search", json!({"query": "ann", "max_results": 5})).await;
    assert_google_auth(&w, &alice, &ran).await;
    assert_eq!(ran.requests.len(), 4, "{:?}", ran.lines());
    let contacts = "names,emailAddresses,phoneNumbers,organizations";
    let other = "names,emailAddresses,phoneNumbers";
    // People API: a warm-up request with an empty query before each search.
    assert_request(
        &ran.requests[0],
        "GET /v1/people:searchContacts",
        &[("query", ""), ("readMask", contacts)],
        None,
    );
    assert_request(
        &ran.requests[1],
        "GET /v1/people:searchContacts",
        &[("query", "ann"), ("readMask", contacts), ("pageSize", "5")],
        None,
    );
    assert_request(
        &ran.requests[2],
        "GET /v1/otherContacts:search",
        &[("query", ""), ("readMask", other)],
        None,
    );
    assert_request(
        &ran.requests[3],
        "GET /v1/otherContacts:search",
        &[("query", "ann"), ("readMask", other), ("pageSize", "5")],
        None,
    );
    assert_eq!(
        ran.result(),
        json!({"contacts": [
            {"name": "Ann Lee", "emails": ["ann@ext.com"], "phones": ["+49 30 1234"], "organization": "Ext GmbH", "source": "contacts"},
            {"name": "Anna Other", "emails": ["anna@somewhere.com"], "phones": [], "organization": null, "source": "other contacts"},
        ]})
    );
}

// ------------------------------------------------------------------------------------------
// Notion

fn para(text: &str) -> Value {
    json!({"type": "paragraph", "paragraph": {"rich_text": [{"text": {"content": text}}]}})
}

fn item(ty: &str, text: &str) -> Value {
    json!({"type": ty, ty: {"rich_text": [{"text": {"content": text}}]}})
}

/// A tasks database under the shared "Team notes" page: (database id, data source id).
fn tasks_database(w: &World) -> (String, String) {
    w.notion.add_database(
        &w.notion_page,
        "Tasks",
        json!({"Task": {"type": "title"}, "Status": {"type": "status", "options": ["Todo", "Doing", "Done"]},
               "Due": {"type": "date"}, "Points": {"type": "number"}}),
    )
}

#[tokio::test]
async fn notion_search_through_the_agent_loop() {
    let w = World::start().await;
    let alice = w.person(ALICE).await;
    let launch = w.notion.add_page(Some(&w.notion_page), "Launch plan", vec![]);
    w.notion.add_page(None, "Secret plan", vec![]); // not shared with the integration

    let ran = run(&w, &alice, Fake::Notion, "notion_search", json!({"query": "plan", "type": "page"})).await;
    assert_notion_auth(&w, &ran);
    assert_eq!(ran.requests.len(), 1, "{:?}", ran.lines());
    assert_request(
        &ran.requests[0],
        "POST /v1/search",
        &[],
        Some(json!({"query": "plan", "page_size": 10, "filter": {"property": "object", "value": "page"},
            "sort": {"direction": "descending", "timestamp": "last_edited_time"}})),
    );
    let result = ran.result();
    let results = result["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "only the shared page: {result}");
    assert_eq!(results[0]["type"], "page");
    assert_eq!(results[0]["id"], launch.as_str());
    assert_eq!(results[0]["title"], "Launch plan");
    assert!(results[0]["url"].as_str().unwrap().contains(&launch.replace('-', "")), "{result}");
}

#[tokio::test]
async fn notion_read_page_through_the_agent_loop() {
    let w = World::start().await;
    let alice = w.person(ALICE).await;
    let page = w.notion.add_page(
        Some(&w.notion_page),
        "Launch plan",
        vec![
            item("heading_1", "Goals"),
            json!({"type": "paragraph", "paragraph": {"rich_text": [
                {"text": {"content": "Ship "}}, {"text": {"content": "v1"}, "annotations": {"bold": true}}]}}),
            item("bulleted_list_item", "API"),
            json!({"type": "to_do", "to_do": {"rich_text": [{"text": {"content": "write tests"}}], "checked": true}}),
            para("The end."),
        ],
    );
    let url = format!("https://www.notion.so/acme/Launch-plan-{}", page.replace('-', ""));

    let ran = run(&w, &alice, Fake::Notion, "notion_read_page", json!({"page_id": url})).await;
    assert_notion_auth(&w, &ran);
    assert_eq!(ran.requests.len(), 2, "{:?}", ran.lines());
    assert_request(&ran.requests[0], &format!("GET /v1/pages/{page}"), &[], None);
    assert_request(
        &ran.requests[1],
        &format!("GET /v1/blocks/{page}/children"),
        &[("page_size", "100")],
        None,
    );
    let result = ran.result();
    assert_eq!(result["id"], page.as_str());
    assert_eq!(result["title"], "Launch plan");
    assert_eq!(result["offset"], 0);
    let markdown = "# Goals\n\nShip **v1**\n\n- API\n- [x] write tests\n\nThe end.";
    assert_eq!(result["markdown"], markdown, "{result}");
    assert_eq!(result["total_characters"], markdown.chars().count());
    assert!(result.get("more").is_none(), "{result}");
}

#[tokio::test]
async fn notion_query_database_through_the_agent_loop() {
    let w = World::start().await;
    let alice = w.person(ALICE).await;
    let (db, ds) = tasks_database(&w);
    w.notion.add_row(&ds, json!({"Task": {"title": [{"text": {"content": "Write spec"}}]}, "Status": {"status": {"name": "Done"}}, "Points": {"number": 3}}));
    let ship = w.notion.add_row(
        &ds,
        json!({"Task": {"title": [{"text": {"content": "Ship"}}]}, "Status": {"status": {"name": "Todo"}},
        "Due": {"date": {"start": "2026-03-01"}}}),
    );
    let filter = json!({"property": "Status", "status": {"equals": "Todo"}});

    let ran = run(
        &w,
        &alice,
        Fake::Notion,
        "notion_query_database",
        json!({"database_id": db, "filter": filter, "max_results": 5}),
    )
    .await;
    assert_notion_auth(&w, &ran);
    assert_eq!(ran.requests.len(), 2, "{:?}", ran.lines());
    assert_request(&ran.requests[0], &format!("GET /v1/databases/{db}"), &[], None);
    assert_request(
        &ran.requests[1],
        &format!("POST /v1/data_sources/{ds}/query"),
        &[],
        Some(json!({"page_size": 5, "filter": filter})),
    );
    let result = ran.result();
    assert_eq!(result["database_id"], db.as_str());
    let rows = result["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{result}");
    assert_eq!(rows[0]["id"], ship.as_str());
    assert_eq!(
        rows[0]["properties"],
        json!({"Task": "Ship", "Status": "Todo", "Due": "2026-03-01", "Points": null})
    );
}

// ------------------------------------------------------------------------------------------
// Attio

#[tokio::test]
async fn attio_search_through_the_agent_loop() {
    let w = World::start().await;
    let alice = w.person(ALICE).await;
    let acme = w.attio.add_record("companies", json!({"domains": ["acme.com"], "name": "Acme Inc"}));

    let ran = run(&w, &alice, Fake::Attio, "attio_search", json!({"query": "acme"})).await;
    assert_attio_auth(&w, &ran);
    assert_eq!(ran.requests.len(), 1, "{:?}", ran.lines());
    assert_request(
        &ran.requests[0],
        "POST /v2/objects/records/search",
        &[],
        Some(
            json!({"query": "acme", "objects": ["people", "companies", "deals"], "request_as": {"type": "workspace"}, "limit": 10}),
        ),
    );
    let result = ran.result();
    let mut results = result["results"].as_array().unwrap().clone();
    results.sort_by_key(|r| r["object"].as_str().unwrap().to_owned());
    assert_eq!(
        results,
        [
            json!({"object": "companies", "record_id": acme, "text": "Acme Inc", "domains": ["acme.com"]}),
            json!({"object": "people", "record_id": w.attio_person, "text": "Ann Lee", "email_addresses": ["ann@acme.com"]}),
        ]
    );
}

#[tokio::test]
async fn attio_get_record_through_the_agent_loop() {
    let w = World::start().await;
    let alice = w.person(ALICE).await;
    let ann = w.attio_person.clone();

    let ran =
        run(&w, &alice, Fake::Attio, "attio_get_record", json!({"object": "people", "record_id": ann})).await;
    assert_attio_auth(&w, &ran);
    assert_eq!(ran.requests.len(), 1, "{:?}", ran.lines());
    assert_request(&ran.requests[0], &format!("GET /v2/objects/people/records/{ann}"), &[], None);
    let result = ran.result();
    assert_eq!(result["record_id"], ann.as_str());
    assert_eq!(result["values"]["email_addresses"], "ann@acme.com");
    assert_eq!(result["values"]["name"], "Ann Lee");
    assert!(result["values"].get("job_title").is_none(), "empty attributes are left out: {result}");
}

#[tokio::test]
async fn attio_list_fields_through_the_agent_loop() {
    let w = World::start().await;
    let alice = w.person(ALICE).await;

    let ran =
        run(&w, &alice, Fake::Attio, "attio_list_fields", json!({"object": "deals", "attribute": "stage"}))
            .await;
    assert_attio_auth(&w, &ran);
    assert_eq!(ran.requests.len(), 2, "{:?}", ran.lines());
    assert_request(&ran.requests[0], "GET /v2/objects/deals/attributes/stage", &[], None);
    assert_request(&ran.requests[1], "GET /v2/objects/deals/attributes/stage/statuses", &[], None);
    assert_eq!(
        ran.result(),
        json!({"attribute": "stage", "type": "status", "statuses": ["Lead", "In Progress", "Won 🎉", "Lost"]})
    );
}

#[tokio::test]
async fn attio_list_notes_through_the_agent_loop() {
    let w = World::start().await;
    let alice = w.person(ALICE).await;
    let ann = w.attio_person.clone();
    let note = attio_post(
        &w,
        "/notes",
        json!({"data": {"parent_object": "people", "parent_record_id": ann, "title": "Call with Ann",
            "format": "plaintext", "content": "Wants a demo next week."}}),
    )
    .await;
    let note_id = note["data"]["id"]["note_id"].as_str().unwrap().to_owned();

    let ran =
        run(&w, &alice, Fake::Attio, "attio_list_notes", json!({"object": "people", "record_id": ann})).await;
    assert_attio_auth(&w, &ran);
    assert_eq!(ran.requests.len(), 1, "{:?}", ran.lines());
    assert_request(
        &ran.requests[0],
        "GET /v2/notes",
        &[("limit", "10"), ("parent_object", "people"), ("parent_record_id", &ann)],
        None,
    );
    let result = ran.result();
    let notes = result["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{result}");
    assert_eq!(notes[0]["id"], note_id.as_str());
    assert_eq!(notes[0]["title"], "Call with Ann");
    assert_eq!(notes[0]["content"], "Wants a demo next week.");
    assert_eq!(notes[0]["object"], "people");
    assert_eq!(notes[0]["record_id"], ann.as_str());
}

#[tokio::test]
async fn attio_list_tasks_through_the_agent_loop() {
    let w = World::start().await;
    let alice = w.person(ALICE).await;
    let ann = w.attio_person.clone();
    let task = attio_post(
        &w,
        "/tasks",
        json!({"data": {"content": "Send Ann the deck", "format": "plaintext", "deadline_at": "2026-03-06T17:00:00Z",
            "is_completed": false, "linked_records": [{"target_object": "people", "target_record_id": ann}], "assignees": []}}),
    )
    .await;
    let task_id = task["data"]["id"]["task_id"].as_str().unwrap().to_owned();

    let ran = run(
        &w,
        &alice,
        Fake::Attio,
        "attio_list_tasks",
        json!({"object": "people", "record_id": ann, "is_completed": false}),
    )
    .await;
    assert_attio_auth(&w, &ran);
    assert_eq!(ran.requests.len(), 1, "{:?}", ran.lines());
    assert_request(
        &ran.requests[0],
        "GET /v2/tasks",
        &[
            ("limit", "20"),
            ("linked_object", "people"),
            ("linked_record_id", &ann),
            ("is_completed", "false"),
        ],
        None,
    );
    let result = ran.result();
    let tasks = result["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{result}");
    assert_eq!(tasks[0]["id"], task_id.as_str());
    assert_eq!(tasks[0]["content"], "Send Ann the deck");
    assert_eq!(tasks[0]["deadline_at"], "2026-03-06T17:00:00Z");
    assert_eq!(tasks[0]["is_completed"], false);
    assert_eq!(tasks[0]["linked_records"][0]["record_id"], ann.as_str());
}

// ------------------------------------------------------------------------------------------
// All of them, and trimmed lists

/// The tests above cover exactly the read tools the gateway has.
#[tokio::test]
async fn every_read_tool_is_covered() {
    const COVERED: [&str; 16] = [
        "attio_get_record",
        "attio_list_fields",
        "attio_list_notes",
        "attio_list_tasks",
        "attio_search",
        "calendar_freebusy",
        "calendar_list_events",
        "contacts_search",
        "docs_read",
        "drive_search",
        "gmail_read",
        "gmail_search",
        "notion_query_database",
        "notion_read_page",
        "notion_search",
        "sheets_read",
    ];
    let w = World::start().await;
    let mut reads: Vec<String> =
        w.gw.runtime
            .tools()
            .manifests()
            .into_iter()
            .filter(|m| m.effect == crewgate_runtime::Effect::Read)
            .map(|m| m.name.clone())
            .filter(|n| !is_builtin(n))
            .collect();
    reads.sort();
    assert_eq!(reads, COVERED);
}

/// The runtime's own tools (not crewgate-tools): they have their own tests.
fn is_builtin(name: &str) -> bool {
    crewgate_runtime::ToolRegistry::with_defaults().get(name).is_some()
        || crewgate_runtime::agents::TOOL_NAMES.contains(&name)
}

/// Too much for the model: Alice has 40 long e-mails and 60 Drive files with long names. Both
/// lists arrive trimmed, as intact JSON, with the "N more results" hint (`more_results` sorts
/// before `results` in the Gmail answer, after `files` in the Drive one).
async fn assert_trimmed_lists_reach_the_model_with_the_hint(w: World) {
    let alice = w.person(ALICE).await;
    for i in 0..40 {
        let body = format!("Report {i}: {}", "lorem ipsum dolor sit amet ".repeat(12));
        w.google.add_message(
            ALICE,
            &plain_mail(
                "Ann <ann@ext.com>",
                ALICE,
                &format!("Weekly report {i}"),
                &format!("<r{i}@ext.com>"),
                &body,
            ),
            &[],
        );
    }
    for i in 0..60 {
        let name = format!("Budget plan {i} — {}", "very long file name ".repeat(5));
        w.google.add_file(ALICE, &name, "application/vnd.google-apps.document", "x");
    }

    let ran =
        run(&w, &alice, Fake::Google, "gmail_search", json!({"query": "report", "max_results": 40})).await;
    assert_eq!(ran.requests.len(), 41, "one list and 40 metadata requests");
    let result = ran.result();
    let kept = result["results"].as_array().unwrap().len();
    assert!((1..40).contains(&kept), "{kept}");
    assert_eq!(
        result["more_results"],
        format!(
            "{} more results not shown (output size limit); use next_page_token or a narrower query",
            40 - kept
        )
    );
    assert!(ran.content.len() <= 12_000, "{}", ran.content.len());

    let ran =
        run(&w, &alice, Fake::Google, "drive_search", json!({"name": "Budget", "max_results": 60})).await;
    assert_request(
        &ran.requests[0],
        "GET /drive/v3/files",
        &[
            ("q", "trashed = false and name contains 'Budget'"),
            ("pageSize", "60"),
            (
                "fields",
                "nextPageToken,files(id,name,mimeType,modifiedTime,owners(emailAddress),webViewLink,size)",
            ),
            ("supportsAllDrives", "true"),
            ("includeItemsFromAllDrives", "true"),
            ("corpora", "allDrives"),
            ("orderBy", "modifiedTime desc"),
        ],
        None,
    );
    let result = ran.result();
    let kept = result["files"].as_array().unwrap().len();
    assert!((1..60).contains(&kept), "{kept}");
    assert_eq!(
        result["more_results"],
        format!(
            "{} more results not shown (output size limit); use next_page_token or narrow the search",
            60 - kept
        )
    );
    assert!(ran.content.len() <= 12_000, "{}", ran.content.len());
}

#[tokio::test]
async fn a_trimmed_list_reaches_the_model_with_the_more_results_hint() {
    // The runtime clips every tool result at `max_tool_result_chars`; with a larger clip the
    // tools' own trimming is still what the model sees.
    let w = World::start_with(|s| s.max_tool_result_chars = 12_000).await;
    assert_trimmed_lists_reach_the_model_with_the_hint(w).await;
}

/// The tools' result budget (7,500 bytes) stays under the runtime's 8,000-character clip, so a
/// trimmed list reaches the model as intact JSON with its hint.
#[tokio::test]
async fn a_trimmed_list_reaches_the_model_intact_with_the_default_settings() {
    assert_trimmed_lists_reach_the_model_with_the_hint(World::start().await).await;
}

// ------------------------------------------------------------------------------------------
// The Google connection in GET /api/v1/me

async fn me(w: &World, who: &Person) -> Value {
    let (st, v) = w.call("GET", "/api/v1/me", &who.token, None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["user"]["id"], who.user_id.as_str(), "{v}");
    v
}

#[tokio::test]
async fn invalid_grant_shows_as_needs_reconnect_in_me_for_that_user_only() {
    let (w, alice, bob) = two_people().await;
    let carol = w.gw.person("carol@company.com").await; // no Google connection
    w.google.add_message(ALICE, &plain_mail("ann@ext.com", ALICE, "Hello", "<h1@ext.com>", "hi"), &[]);
    w.google.add_message(BOB, &plain_mail("ann@ext.com", BOB, "Hello Bob", "<h2@ext.com>", "hi"), &[]);

    assert_eq!(
        me(&w, &alice).await["connections"],
        json!({"google": {"state": "connected", "email": ALICE}})
    );
    assert_eq!(me(&w, &bob).await["connections"], json!({"google": {"state": "connected", "email": BOB}}));
    assert_eq!(me(&w, &carol).await["connections"], json!({"google": {"state": "not_connected"}}));
    let (st, admin) = w.call("GET", "/api/v1/me", &w.gw.admin, None).await;
    assert_eq!((st, &admin["kind"]), (200, &json!("admin")));
    assert!(admin.get("connections").is_none(), "{admin}");

    // Alice revokes the grant at Google: the tool's 401 leads to a refresh, which gets
    // invalid_grant; the model is told how to reconnect.
    let refresh_token = stored_google(&w, &alice).await["refresh_token"].as_str().unwrap().to_owned();
    w.google.revoke(ALICE);
    let ran = run(&w, &alice, Fake::Google, "gmail_search", json!({"query": "hello"})).await;
    let seen: Vec<(String, u16)> = ran.requests.iter().map(|r| (r.line(), r.status)).collect();
    assert_eq!(seen, [("GET /gmail/v1/users/me/messages".to_owned(), 401), ("POST /token".to_owned(), 400)]);
    let form: std::collections::HashMap<_, _> = parse_query(&ran.requests[1].text()).into_iter().collect();
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["refresh_token"], refresh_token, "Alice's own refresh token");
    assert!(ran.content.starts_with("error: "), "{}", ran.content);
    assert!(ran.content.contains("reconnect Google on the dashboard"), "{}", ran.content);

    assert_eq!(
        me(&w, &alice).await["connections"],
        json!({"google": {"state": "needs_reconnect", "email": ALICE, "reason": "Token has been expired or revoked."}})
    );
    // Nobody else's status changed, and nobody else's /me mentions Alice's account.
    for (who, want) in [
        (&bob, json!({"google": {"state": "connected", "email": BOB}})),
        (&carol, json!({"google": {"state": "not_connected"}})),
    ] {
        let v = me(&w, who).await;
        assert_eq!(v["connections"], want);
        assert!(!v.to_string().contains(ALICE), "{v}");
    }

    // Marked: the next call is refused without reaching Google, with the same advice.
    let again = run(&w, &alice, Fake::Google, "gmail_search", json!({"query": "hello"})).await;
    assert!(again.requests.is_empty(), "{:?}", again.lines());
    assert!(again.content.contains("reconnect Google on the dashboard"), "{}", again.content);

    // Bob's expired access token is refreshed with his own refresh token; he stays connected.
    let bob_before = stored_google(&w, &bob).await;
    let bob_refresh = bob_before["refresh_token"].as_str().unwrap().to_owned();
    w.google.expire_access_tokens(BOB);
    let ran = run(&w, &bob, Fake::Google, "gmail_search", json!({"query": "hello"})).await;
    let seen: Vec<(String, u16)> = ran.requests.iter().map(|r| (r.path.clone(), r.status)).collect();
    assert_eq!(
        seen[..3],
        [
            ("/gmail/v1/users/me/messages".to_owned(), 401),
            ("/token".to_owned(), 200),
            ("/gmail/v1/users/me/messages".to_owned(), 200),
        ]
    );
    let form: std::collections::HashMap<_, _> = parse_query(&ran.requests[1].text()).into_iter().collect();
    assert_eq!(form["refresh_token"], bob_refresh);
    assert!(ran.requests[2..].iter().all(|r| r.account.as_deref() == Some(BOB)));
    assert_eq!(ran.result()["results"][0]["subject"], "Hello Bob");
    assert_eq!(me(&w, &bob).await["connections"]["google"]["state"], "connected");
    assert_ne!(
        stored_access_token(&w, &bob).await,
        bob_before["access_token"],
        "the new access token is stored"
    );

    // Alice reconnects: connected again, and her tools work again.
    let account = w.google.add_account(ALICE);
    connect_google(
        w.gw.store.as_ref(),
        &UserId::parse(&alice.user_id).unwrap(),
        &StoredGoogleToken {
            access_token: Some(SecretString::from(account.access_token)),
            expires_at: None,
            refresh_token: Some(SecretString::from(account.refresh_token)),
            scopes: Some(account.scopes),
            email: Some(ALICE.to_owned()),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        me(&w, &alice).await["connections"],
        json!({"google": {"state": "connected", "email": ALICE}})
    );
    let ran = run(&w, &alice, Fake::Google, "gmail_search", json!({"query": "hello"})).await;
    assert_eq!(ran.result()["results"], json!([]), "the new fake mailbox is empty");
    assert!(ran.requests.iter().all(|r| r.status == 200 && r.account.as_deref() == Some(ALICE)));
}

#[tokio::test]
async fn an_unreadable_google_connection_shows_as_needs_reconnect() {
    let w = World::start().await;
    let dave = w.gw.person("dave@company.com").await;
    w.gw.store.put_secret(&dave.user_id, GOOGLE_SECRET, &SecretString::from("not json")).await.unwrap();
    assert_eq!(
        me(&w, &dave).await["connections"],
        json!({"google": {"state": "needs_reconnect", "email": null, "reason": "the stored connection cannot be read"}})
    );
}
