//! Tool manifests: what the model is told about each tool and what the gateway enforces
//! (effect, credential, scopes, skill, action family).

use std::sync::LazyLock;

use serde::Serialize;
use serde_json::{Map, Value, json};

/// Whether a tool only reads or changes something outside the chat. Writes go through the
/// approval gate (proposals) before [`crate::Toolbox::call`] is ever invoked for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Read,
    Write,
}

/// The credential a tool runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    /// The calling user's own Google account (from the [`crate::ToolContext`]).
    GoogleUser,
    /// The company's Notion integration token.
    NotionCompany,
    /// The company's Attio API key.
    AttioCompany,
}

/// The skill (named bundle enabled in `skills.installed`) a tool belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Skill {
    #[serde(rename = "gog")]
    Gog,
    #[serde(rename = "notion")]
    Notion,
    #[serde(rename = "attio-crm")]
    AttioCrm,
}

impl Skill {
    /// The name used in config (`steipete/gog` → `gog`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Gog => "gog",
            Self::Notion => "notion",
            Self::AttioCrm => "attio-crm",
        }
    }
}

/// One tool's manifest.
#[derive(Debug, Clone, Serialize)]
pub struct ToolSpec {
    pub name: &'static str,
    /// Short and precise: sent to the model with every turn.
    pub description: &'static str,
    /// JSON Schema (object) of the arguments; checked before any request.
    pub parameters: Value,
    pub effect: Effect,
    pub credential: Credential,
    /// Google: OAuth scopes (short form after `https://www.googleapis.com/auth/`) the tool needs
    /// (a Gmail reply also needs `gmail.readonly`, checked per call, to read the original).
    /// Attio: API-key scopes. Notion has capabilities, not scopes: empty.
    pub scopes: &'static [&'static str],
    pub skill: Skill,
    /// What autonomy grants match on, e.g. `gmail.send`, `notion.update`.
    pub action_family: &'static str,
}

/// Every tool, in a stable order.
pub fn specs() -> &'static [ToolSpec] {
    &SPECS
}

/// The manifest of `name`.
pub fn spec(name: &str) -> Option<&'static ToolSpec> {
    SPECS.iter().find(|s| s.name == name)
}

fn object(props: Value, required: &[&str]) -> Value {
    let mut o = Map::new();
    o.insert("type".into(), json!("object"));
    o.insert("properties".into(), props);
    if !required.is_empty() {
        o.insert("required".into(), json!(required));
    }
    o.insert("additionalProperties".into(), json!(false));
    Value::Object(o)
}

fn string(desc: &str, max: u64) -> Value {
    json!({"type":"string","minLength":1,"maxLength":max,"description":desc})
}

fn int(desc: &str, min: i64, max: i64) -> Value {
    json!({"type":"integer","minimum":min,"maximum":max,"description":desc})
}

fn emails(desc: &str) -> Value {
    json!({"type":"array","items":{"type":"string","minLength":3,"maxLength":320},"maxItems":50,"description":desc})
}

fn date_time(desc: &str) -> Value {
    json!({"type":"string","format":"date-time","description":desc})
}

fn date_or_time(desc: &str) -> Value {
    json!({"anyOf":[{"type":"string","format":"date-time"},{"type":"string","format":"date"}],"description":desc})
}

fn values(desc: &str) -> Value {
    json!({"type":"object","description":desc})
}

fn rows() -> Value {
    json!({"type":"array","minItems":1,"maxItems":1000,"description":"Rows, each an array of cell values",
        "items":{"type":"array","maxItems":200,"items":{"anyOf":[{"type":"string"},{"type":"number"},{"type":"boolean"},{"type":"null"}]}}})
}

const MAX_BODY: u64 = 100_000;

fn mail_props(send: bool) -> Value {
    let mut p = json!({
        "to": emails("Recipients: address or 'Name <address>'. Optional for a reply (defaults to the original sender)"),
        "cc": emails("Cc recipients"),
        "bcc": emails("Bcc recipients"),
        "subject": json!({"type":"string","maxLength":998,"description":"Subject; for a reply defaults to 'Re: <original subject>'"}),
        "body": string("Plain-text body", MAX_BODY),
        "reply_to_message_id": string("Gmail message id to reply to (keeps the thread)", 200),
    });
    if send && let Some(o) = p.as_object_mut() {
        o.insert("draft_id".into(), string("Send this existing draft instead (no other fields)", 200));
    }
    p
}

static SPECS: LazyLock<Vec<ToolSpec>> = LazyLock::new(|| {
    use Credential::*;
    use Effect::*;
    use Skill::*;
    let g = |name, description, parameters, effect, scopes, action_family| ToolSpec {
        name,
        description,
        parameters,
        effect,
        credential: GoogleUser,
        scopes,
        skill: Gog,
        action_family,
    };
    let n = |name, description, parameters, effect, action_family| ToolSpec {
        name,
        description,
        parameters,
        effect,
        credential: NotionCompany,
        scopes: &[],
        skill: Notion,
        action_family,
    };
    let a = |name, description, parameters, effect, scopes, action_family| ToolSpec {
        name,
        description,
        parameters,
        effect,
        credential: AttioCompany,
        scopes,
        skill: AttioCrm,
        action_family,
    };
    let linked = json!({"type":"array","maxItems":20,"description":"Records to link",
        "items":{"type":"object","additionalProperties":false,"required":["object","record_id"],
            "properties":{"object":{"type":"string","minLength":1,"maxLength":100},"record_id":{"type":"string","minLength":1,"maxLength":100}}}});
    vec![
        // ------------------------------------------------------------------ Google
        g(
            "gmail_search",
            "Search the user's Gmail with Gmail query syntax (e.g. 'from:ann newer_than:7d is:unread'). Returns message ids, thread ids, from, subject, date, snippet.",
            object(
                json!({
                    "query": string("Gmail search query", 500),
                    "max_results": int("Default 10", 1, 50),
                    "page_token": string("From a previous result's next_page_token", 200),
                }),
                &["query"],
            ),
            Read,
            &["gmail.readonly"],
            "gmail.read",
        ),
        g(
            "gmail_read",
            "Read one Gmail message (message_id) or a whole thread (thread_id) as plain text with headers and attachment names.",
            object(
                json!({
                    "message_id": string("Gmail message id", 200),
                    "thread_id": string("Gmail thread id", 200),
                }),
                &[],
            ),
            Read,
            &["gmail.readonly"],
            "gmail.read",
        ),
        g(
            "gmail_draft_create",
            "Create a plain-text Gmail draft, new or as a reply (reply_to_message_id).",
            object(mail_props(false), &["body"]),
            Write,
            &["gmail.compose"],
            "gmail.draft",
        ),
        g(
            "gmail_send",
            "Send a plain-text e-mail, new or as a reply in its thread (reply_to_message_id), or send an existing draft (draft_id).",
            object(mail_props(true), &[]),
            Write,
            &["gmail.compose"],
            "gmail.send",
        ),
        g(
            "calendar_list_events",
            "List calendar events between time_min and time_max (RFC 3339 with offset), soonest first, optionally matching text.",
            object(
                json!({
                    "calendar_id": string("Default 'primary'", 300),
                    "time_min": date_time("Start of the window"),
                    "time_max": date_time("End of the window"),
                    "query": string("Free text to match", 300),
                    "max_results": int("Default 25", 1, 100),
                    "page_token": string("From a previous result's next_page_token", 300),
                }),
                &["time_min", "time_max"],
            ),
            Read,
            &["calendar.readonly"],
            "calendar.read",
        ),
        g(
            "calendar_freebusy",
            "Busy intervals of calendars (default the user's own; colleagues by e-mail) between time_min and time_max.",
            object(
                json!({
                    "time_min": date_time("Start of the window"),
                    "time_max": date_time("End of the window"),
                    "calendars": json!({"type":"array","items":{"type":"string","minLength":1,"maxLength":300},"minItems":1,"maxItems":20,"description":"Calendar ids or e-mail addresses; default ['primary']"}),
                    "time_zone": string("IANA zone for the answer, e.g. Europe/Berlin", 100),
                }),
                &["time_min", "time_max"],
            ),
            Read,
            &["calendar.readonly"],
            "calendar.read",
        ),
        g(
            "calendar_create_event",
            "Create a calendar event. start/end: RFC 3339 date-time, or YYYY-MM-DD for all-day. Attendees get e-mail only if send_updates is 'all' or 'externalOnly'.",
            object(
                json!({
                    "calendar_id": string("Default 'primary'", 300),
                    "summary": string("Title", 1000),
                    "start": date_or_time("Start"),
                    "end": date_or_time("End (exclusive date for all-day)"),
                    "time_zone": string("IANA zone, e.g. Europe/Berlin", 100),
                    "description": json!({"type":"string","maxLength":8000}),
                    "location": json!({"type":"string","maxLength":1000}),
                    "attendees": emails("Attendee e-mail addresses"),
                    "send_updates": json!({"type":"string","enum":["all","externalOnly","none"],"description":"Default 'none'"}),
                    "add_meet": json!({"type":"boolean","description":"Add a Google Meet link"}),
                }),
                &["summary", "start", "end"],
            ),
            Write,
            &["calendar.events"],
            "calendar.create",
        ),
        g(
            "calendar_update_event",
            "Change an existing calendar event; only the fields given change (attendees replaces the list).",
            object(
                json!({
                    "calendar_id": string("Default 'primary'", 300),
                    "event_id": string("Event id", 1024),
                    "summary": string("Title", 1000),
                    "start": date_or_time("Start"),
                    "end": date_or_time("End"),
                    "time_zone": string("IANA zone", 100),
                    "description": json!({"type":"string","maxLength":8000}),
                    "location": json!({"type":"string","maxLength":1000}),
                    "attendees": emails("Full new attendee list"),
                    "send_updates": json!({"type":"string","enum":["all","externalOnly","none"],"description":"Default 'none'"}),
                }),
                &["event_id"],
            ),
            Write,
            &["calendar.events"],
            "calendar.update",
        ),
        g(
            "drive_search",
            "Find Google Drive files by words in their content, by name, or by type. Returns id, name, type, modified time, link.",
            object(
                json!({
                    "query": string("Words in the content or name", 300),
                    "name": string("Text the file name contains", 300),
                    "type": json!({"type":"string","enum":["document","spreadsheet","presentation","folder","pdf"]}),
                    "max_results": int("Default 20", 1, 100),
                    "page_token": string("From a previous result's next_page_token", 300),
                }),
                &[],
            ),
            Read,
            &["drive.readonly"],
            "drive.read",
        ),
        g(
            "docs_read",
            "Read a Google Doc (or Slides) as plain text by file id; use offset to continue a long document.",
            object(
                json!({
                    "document_id": string("Drive file id", 200),
                    "offset": int("Character to start at (default 0)", 0, 100_000_000),
                }),
                &["document_id"],
            ),
            Read,
            &["drive.readonly"],
            "docs.read",
        ),
        g(
            "sheets_read",
            "Read a spreadsheet range in A1 notation (e.g. 'Sheet1!A1:D20'); without range, list the sheet names.",
            object(
                json!({
                    "spreadsheet_id": string("Spreadsheet id", 200),
                    "range": string("A1 range", 500),
                }),
                &["spreadsheet_id"],
            ),
            Read,
            &["spreadsheets.readonly"],
            "sheets.read",
        ),
        g(
            "sheets_update",
            "Overwrite a spreadsheet range with rows of values (entered as if typed: formulas and dates are parsed).",
            object(
                json!({
                    "spreadsheet_id": string("Spreadsheet id", 200),
                    "range": string("A1 range, e.g. 'Sheet1!B2'", 500),
                    "values": rows(),
                    "raw": json!({"type":"boolean","description":"Store values literally instead of parsing them"}),
                }),
                &["spreadsheet_id", "range", "values"],
            ),
            Write,
            &["spreadsheets"],
            "sheets.update",
        ),
        g(
            "sheets_append",
            "Append rows after the last row of the table in a spreadsheet range (e.g. 'Sheet1!A:D').",
            object(
                json!({
                    "spreadsheet_id": string("Spreadsheet id", 200),
                    "range": string("A1 range of the table", 500),
                    "values": rows(),
                    "raw": json!({"type":"boolean","description":"Store values literally instead of parsing them"}),
                }),
                &["spreadsheet_id", "range", "values"],
            ),
            Write,
            &["spreadsheets"],
            "sheets.append",
        ),
        g(
            "contacts_search",
            "Search the user's Google contacts and other contacts by the start of a name, e-mail or phone number.",
            object(
                json!({
                    "query": string("Prefix to match", 200),
                    "max_results": int("Default 10", 1, 30),
                }),
                &["query"],
            ),
            Read,
            &["contacts.readonly", "contacts.other.readonly"],
            "contacts.read",
        ),
        // ------------------------------------------------------------------ Notion
        n(
            "notion_search",
            "Search Notion pages and databases shared with the integration, by title.",
            object(
                json!({
                    "query": json!({"type":"string","maxLength":300,"description":"Title text; empty lists recent items"}),
                    "type": json!({"type":"string","enum":["page","database"]}),
                    "max_results": int("Default 10", 1, 50),
                    "start_cursor": string("From a previous result's next_cursor", 200),
                }),
                &[],
            ),
            Read,
            "notion.read",
        ),
        n(
            "notion_read_page",
            "Read a Notion page by id or URL: its properties and its content as Markdown.",
            object(
                json!({
                    "page_id": string("Page id (32 hex, dashes optional) or page URL", 500),
                    "offset": int("Character of the Markdown to start at (default 0)", 0, 100_000_000),
                }),
                &["page_id"],
            ),
            Read,
            "notion.read",
        ),
        n(
            "notion_query_database",
            "List rows of a Notion database with their properties, optionally with a Notion API filter object and sorts.",
            object(
                json!({
                    "database_id": string("Database id or URL", 500),
                    "filter": json!({"type":"object","description":"Notion filter, e.g. {\"property\":\"Status\",\"status\":{\"equals\":\"Done\"}}"}),
                    "sorts": json!({"type":"array","maxItems":10,"items":{"type":"object"},"description":"e.g. [{\"property\":\"Due\",\"direction\":\"ascending\"}]"}),
                    "max_results": int("Default 20", 1, 100),
                    "start_cursor": string("From a previous result's next_cursor", 200),
                }),
                &["database_id"],
            ),
            Read,
            "notion.read",
        ),
        n(
            "notion_create_page",
            "Create a Notion page under a parent page, or as a row in a database (properties by name), with Markdown content.",
            object(
                json!({
                    "parent_page_id": string("Parent page id or URL", 500),
                    "database_id": string("Database id or URL (instead of parent_page_id)", 500),
                    "title": string("Page title", 2000),
                    "properties": values("Database properties by name, e.g. {\"Status\":\"Todo\",\"Due\":\"2026-02-01\"}"),
                    "content": json!({"type":"string","maxLength":MAX_BODY,"description":"Markdown body"}),
                }),
                &["title"],
            ),
            Write,
            "notion.create",
        ),
        n(
            "notion_update_page",
            "Change a Notion page's title or database properties (by name).",
            object(
                json!({
                    "page_id": string("Page id or URL", 500),
                    "title": string("New title", 2000),
                    "properties": values("Properties by name, e.g. {\"Status\":\"Done\"}"),
                }),
                &["page_id"],
            ),
            Write,
            "notion.update",
        ),
        n(
            "notion_append",
            "Append Markdown content to the end of a Notion page.",
            object(
                json!({
                    "page_id": string("Page (or block) id or URL", 500),
                    "content": string("Markdown to append", MAX_BODY),
                }),
                &["page_id", "content"],
            ),
            Write,
            "notion.update",
        ),
        // ------------------------------------------------------------------ Attio
        a(
            "attio_search",
            "Find Attio records: fuzzy 'query' over names, e-mails, domains, phones; or an Attio 'filter' on one object (e.g. {\"email_addresses\":\"a@b.com\"}).",
            object(
                json!({
                    "query": string("Text to match", 300),
                    "objects": json!({"type":"array","items":{"type":"string","minLength":1,"maxLength":100},"maxItems":10,"description":"Default ['people','companies','deals']; with filter, exactly one"}),
                    "filter": json!({"type":"object","description":"Attio filter (needs one object)"}),
                    "limit": int("Default 10", 1, 50),
                }),
                &[],
            ),
            Read,
            &["record_permission:read", "object_configuration:read"],
            "attio.read",
        ),
        a(
            "attio_get_record",
            "Get one Attio record with its current attribute values.",
            object(
                json!({
                    "object": string("Object slug: people, companies, deals, …", 100),
                    "record_id": string("Record id", 100),
                }),
                &["object", "record_id"],
            ),
            Read,
            &["record_permission:read", "object_configuration:read"],
            "attio.read",
        ),
        a(
            "attio_list_fields",
            "List an Attio object's attributes (slug, type, required, unique); with attribute, its select options or statuses. Use before writing.",
            object(
                json!({
                    "object": string("Object slug", 100),
                    "attribute": string("Attribute slug to list options/statuses of", 100),
                }),
                &["object"],
            ),
            Read,
            &["object_configuration:read"],
            "attio.read",
        ),
        a(
            "attio_upsert_person",
            "Create or update an Attio person matched by e-mail address.",
            object(
                json!({
                    "email": json!({"type":"string","format":"email"}),
                    "first_name": string("First name", 200),
                    "last_name": string("Last name", 200),
                    "job_title": string("Job title", 300),
                    "phone": string("Phone number in international format", 50),
                    "company_domain": string("Domain of their company, e.g. acme.com", 200),
                    "description": json!({"type":"string","maxLength":5000}),
                    "values": values("More attribute values by slug"),
                }),
                &["email"],
            ),
            Write,
            &["record_permission:read-write", "object_configuration:read"],
            "attio.upsert",
        ),
        a(
            "attio_upsert_company",
            "Create or update an Attio company matched by domain.",
            object(
                json!({
                    "domain": string("e.g. acme.com", 200),
                    "name": string("Company name", 300),
                    "description": json!({"type":"string","maxLength":5000}),
                    "values": values("More attribute values by slug"),
                }),
                &["domain"],
            ),
            Write,
            &["record_permission:read-write", "object_configuration:read"],
            "attio.upsert",
        ),
        a(
            "attio_create_record",
            "Create an Attio record (e.g. a deal: name, stage, owner, value) with attribute values by slug.",
            object(
                json!({
                    "object": string("Object slug, e.g. deals", 100),
                    "values": values("Attribute values by slug"),
                }),
                &["object", "values"],
            ),
            Write,
            &["record_permission:read-write", "object_configuration:read"],
            "attio.create",
        ),
        a(
            "attio_update_record",
            "Update attribute values of an Attio record by slug (multi-select values are added, not replaced).",
            object(
                json!({
                    "object": string("Object slug", 100),
                    "record_id": string("Record id", 100),
                    "values": values("Attribute values by slug"),
                }),
                &["object", "record_id", "values"],
            ),
            Write,
            &["record_permission:read-write", "object_configuration:read"],
            "attio.update",
        ),
        a(
            "attio_list_notes",
            "List Attio notes, newest first, optionally only those of one record.",
            object(
                json!({
                    "object": string("Parent object slug", 100),
                    "record_id": string("Parent record id", 100),
                    "limit": int("Default 10", 1, 50),
                }),
                &[],
            ),
            Read,
            &["note:read", "object_configuration:read", "record_permission:read"],
            "attio.read",
        ),
        a(
            "attio_add_note",
            "Add a note (plain text or Markdown) to an Attio record.",
            object(
                json!({
                    "object": string("Parent object slug", 100),
                    "record_id": string("Parent record id", 100),
                    "title": string("Note title", 500),
                    "content": string("Note text", 50_000),
                    "markdown": json!({"type":"boolean","description":"content is Markdown"}),
                }),
                &["object", "record_id", "title", "content"],
            ),
            Write,
            &["note:read-write", "object_configuration:read", "record_permission:read"],
            "attio.note",
        ),
        a(
            "attio_list_tasks",
            "List Attio tasks, optionally of one record or only open/completed ones.",
            object(
                json!({
                    "object": string("Linked object slug", 100),
                    "record_id": string("Linked record id", 100),
                    "is_completed": json!({"type":"boolean"}),
                    "limit": int("Default 20", 1, 50),
                }),
                &[],
            ),
            Read,
            &["task:read", "object_configuration:read", "record_permission:read", "user_management:read"],
            "attio.read",
        ),
        a(
            "attio_create_task",
            "Create an Attio task (plain text), optionally with a deadline, linked records and assignees (workspace member e-mails).",
            object(
                json!({
                    "content": string("Task text", 2000),
                    "deadline_at": date_time("Deadline"),
                    "linked_records": linked.clone(),
                    "assignees": emails("Workspace member e-mail addresses"),
                }),
                &["content"],
            ),
            Write,
            &[
                "task:read-write",
                "object_configuration:read",
                "record_permission:read",
                "user_management:read",
            ],
            "attio.task",
        ),
        a(
            "attio_update_task",
            "Update an Attio task: completion, deadline, linked records or assignees (its text cannot change).",
            object(
                json!({
                    "task_id": string("Task id", 100),
                    "is_completed": json!({"type":"boolean"}),
                    "deadline_at": json!({"anyOf":[{"type":"string","format":"date-time"},{"type":"null"}],"description":"New deadline, or null to clear"}),
                    "linked_records": linked,
                    "assignees": emails("Full new list of assignee e-mails"),
                }),
                &["task_id"],
            ),
            Write,
            &[
                "task:read-write",
                "object_configuration:read",
                "record_permission:read",
                "user_management:read",
            ],
            "attio.task",
        ),
    ]
});

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::schema::KNOWN_KEYWORDS;

    fn keywords_known(schema: &Value, path: &str) {
        let Some(o) = schema.as_object() else { return };
        for (k, v) in o {
            assert!(KNOWN_KEYWORDS.contains(&k.as_str()), "{path}: unknown keyword {k}");
            match k.as_str() {
                "properties" => {
                    for (p, s) in v.as_object().unwrap() {
                        keywords_known(s, &format!("{path}.{p}"));
                    }
                }
                "items" => keywords_known(v, &format!("{path}[]")),
                "anyOf" => v.as_array().unwrap().iter().for_each(|s| keywords_known(s, path)),
                _ => {}
            }
        }
    }

    #[test]
    fn every_manifest_is_well_formed() {
        let mut names = std::collections::HashSet::new();
        for s in specs() {
            assert!(names.insert(s.name), "duplicate {}", s.name);
            assert!(s.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{}", s.name);
            assert!(s.description.len() <= 200, "{} description too long", s.name);
            assert_eq!(s.parameters["type"], "object", "{}", s.name);
            assert_eq!(s.parameters["additionalProperties"], false, "{}", s.name);
            keywords_known(&s.parameters, s.name);
            if s.credential == Credential::GoogleUser {
                assert!(!s.scopes.is_empty(), "{} needs scopes", s.name);
            }
        }
        assert_eq!(specs().len(), 32);
    }
}
