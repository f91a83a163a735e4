//! What a pending write looks like to the person asked to approve it, and what an autonomy
//! grant can be narrowed to. Pure functions of (tool, arguments): the approval gate stores the
//! result with the proposal.

use serde::Serialize;
use serde_json::Value;

use crate::args;
use crate::notion::notion_id;
use crate::trim::cut;

/// A write, described for its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriteSummary {
    /// "Send email", "Create calendar event", …
    pub action: &'static str,
    /// Labelled values in display order, already shortened.
    pub fields: Vec<(&'static str, String)>,
    /// What a grant may be narrowed to: recipient/attendee addresses (lowercase), Notion page or
    /// database ids, the Attio object slug, the spreadsheet id, the calendar id.
    pub targets: Vec<String>,
}

impl WriteSummary {
    /// `📋 Proposed action: …` followed by `**Label:** value` lines (multi-line values quoted).
    pub fn to_markdown(&self) -> String {
        let mut out = format!("📋 Proposed action: {}\n", self.action);
        for (label, value) in &self.fields {
            if value.contains('\n') {
                out.push_str(&format!("**{label}:**\n"));
                for line in value.lines() {
                    out.push_str(&format!("> {line}\n"));
                }
            } else {
                out.push_str(&format!("**{label}:** {value}\n"));
            }
        }
        out
    }
}

fn bare(addr: &str) -> String {
    let a = addr.trim();
    let a = match (a.rfind('<'), a.ends_with('>')) {
        (Some(i), true) => &a[i + 1..a.len() - 1],
        _ => a,
    };
    a.to_ascii_lowercase()
}

fn list(a: &Value, k: &str) -> String {
    args::strings(a, k).join(", ")
}

fn push(fields: &mut Vec<(&'static str, String)>, label: &'static str, value: Option<String>) {
    if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
        fields.push((label, v));
    }
}

fn s(a: &Value, k: &str) -> Option<String> {
    args::str(a, k).map(str::to_owned)
}

fn compact_json(v: Option<&Value>) -> Option<String> {
    v.filter(|v| !v.is_null()).map(|v| cut(&v.to_string(), 500))
}

/// The summary of a write tool call; `None` for read tools and unknown tools.
pub fn summarize(tool: &str, a: &Value) -> Option<WriteSummary> {
    let mut f = Vec::new();
    let mut targets = Vec::new();
    let action = match tool {
        "gmail_send" | "gmail_draft_create" => {
            if let Some(d) = args::str(a, "draft_id") {
                push(&mut f, "Draft", Some(d.to_owned()));
                return Some(WriteSummary { action: "Send draft", fields: f, targets: vec![d.to_owned()] });
            }
            push(
                &mut f,
                "To",
                Some(list(a, "to")).filter(|t| !t.is_empty()).or_else(|| {
                    args::has(a, "reply_to_message_id")
                        .then(|| "(the sender of the original message)".to_owned())
                }),
            );
            push(&mut f, "Cc", Some(list(a, "cc")));
            push(&mut f, "Bcc", Some(list(a, "bcc")));
            push(
                &mut f,
                "Subject",
                s(a, "subject")
                    .or_else(|| args::has(a, "reply_to_message_id").then(|| "Re: (original subject)".into())),
            );
            push(&mut f, "In reply to", s(a, "reply_to_message_id"));
            push(&mut f, "Body", s(a, "body").map(|b| cut(&b, 1000)));
            for k in ["to", "cc", "bcc"] {
                targets.extend(args::strings(a, k).iter().map(|x| bare(x)));
            }
            if tool == "gmail_send" { "Send email" } else { "Create email draft" }
        }
        "calendar_create_event" | "calendar_update_event" => {
            push(&mut f, "Event", s(a, "event_id"));
            push(&mut f, "Title", s(a, "summary"));
            if let (Some(st), Some(en)) = (args::str(a, "start"), args::str(a, "end")) {
                let tz = args::str(a, "time_zone").map(|z| format!(" ({z})")).unwrap_or_default();
                f.push(("When", format!("{st} – {en}{tz}")));
            }
            push(&mut f, "Calendar", s(a, "calendar_id"));
            push(&mut f, "Location", s(a, "location"));
            push(&mut f, "Attendees", Some(list(a, "attendees")));
            let notify = match args::str(a, "send_updates").unwrap_or("none") {
                "all" => "yes, all attendees get e-mail",
                "externalOnly" => "only external attendees get e-mail",
                _ => "no",
            };
            if args::has(a, "attendees") || args::has(a, "send_updates") {
                f.push(("Notify attendees", notify.to_owned()));
            }
            if args::bool(a, "add_meet") == Some(true) {
                f.push(("Meet link", "yes".into()));
            }
            push(&mut f, "Description", s(a, "description").map(|d| cut(&d, 500)));
            targets.extend(args::strings(a, "attendees").iter().map(|x| bare(x)));
            targets.push(args::str(a, "calendar_id").unwrap_or("primary").to_owned());
            targets.extend(s(a, "event_id"));
            if tool == "calendar_create_event" { "Create calendar event" } else { "Update calendar event" }
        }
        "sheets_update" | "sheets_append" => {
            push(&mut f, "Spreadsheet", s(a, "spreadsheet_id"));
            push(&mut f, "Range", s(a, "range"));
            let rows = a["values"].as_array().cloned().unwrap_or_default();
            let preview: Vec<String> = rows.iter().take(5).map(|r| cut(&r.to_string(), 200)).collect();
            let more = rows.len().saturating_sub(5);
            let mut text = preview.join("\n");
            if more > 0 {
                text.push_str(&format!("\n… and {more} more rows"));
            }
            f.push(("Rows", text));
            targets.extend(s(a, "spreadsheet_id"));
            if tool == "sheets_update" { "Overwrite spreadsheet cells" } else { "Append spreadsheet rows" }
        }
        "notion_create_page" | "notion_update_page" | "notion_append" => {
            push(&mut f, "Page", s(a, "page_id"));
            push(&mut f, "Under page", s(a, "parent_page_id"));
            push(&mut f, "In database", s(a, "database_id"));
            push(&mut f, "Title", s(a, "title"));
            push(&mut f, "Properties", compact_json(a.get("properties")));
            push(&mut f, "Content", s(a, "content").map(|c| cut(&c, 1000)));
            for k in ["page_id", "parent_page_id", "database_id"] {
                targets.extend(args::str(a, k).and_then(notion_id));
            }
            match tool {
                "notion_create_page" => "Create Notion page",
                "notion_update_page" => "Update Notion page",
                _ => "Append to Notion page",
            }
        }
        "attio_upsert_person" => {
            push(&mut f, "Email", s(a, "email"));
            let name = [args::str(a, "first_name"), args::str(a, "last_name")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            push(&mut f, "Name", Some(name));
            push(&mut f, "Job title", s(a, "job_title"));
            push(&mut f, "Phone", s(a, "phone"));
            push(&mut f, "Company", s(a, "company_domain"));
            push(&mut f, "Description", s(a, "description").map(|d| cut(&d, 500)));
            push(&mut f, "Other values", compact_json(a.get("values")));
            targets.push("people".into());
            "Create or update Attio person"
        }
        "attio_upsert_company" => {
            push(&mut f, "Domain", s(a, "domain"));
            push(&mut f, "Name", s(a, "name"));
            push(&mut f, "Description", s(a, "description").map(|d| cut(&d, 500)));
            push(&mut f, "Other values", compact_json(a.get("values")));
            targets.push("companies".into());
            "Create or update Attio company"
        }
        "attio_create_record" | "attio_update_record" => {
            push(&mut f, "Object", s(a, "object"));
            push(&mut f, "Record", s(a, "record_id"));
            push(&mut f, "Values", compact_json(a.get("values")));
            targets.extend(s(a, "object"));
            if tool == "attio_create_record" { "Create Attio record" } else { "Update Attio record" }
        }
        "attio_add_note" => {
            push(&mut f, "Record", Some(format!("{} {}", args::req(a, "object"), args::req(a, "record_id"))));
            push(&mut f, "Title", s(a, "title"));
            push(&mut f, "Note", s(a, "content").map(|c| cut(&c, 1000)));
            targets.extend(s(a, "object"));
            "Add Attio note"
        }
        "attio_create_task" | "attio_update_task" => {
            push(&mut f, "Task", s(a, "task_id"));
            push(&mut f, "Text", s(a, "content"));
            if let Some(d) = a.get("deadline_at") {
                f.push(("Deadline", d.as_str().map_or("none".to_owned(), str::to_owned)));
            }
            if let Some(done) = args::bool(a, "is_completed") {
                f.push(("Completed", if done { "yes" } else { "no" }.into()));
            }
            push(&mut f, "Assignees", Some(list(a, "assignees")));
            push(&mut f, "Linked records", compact_json(a.get("linked_records")));
            targets.push("tasks".into());
            if tool == "attio_create_task" { "Create Attio task" } else { "Update Attio task" }
        }
        _ => return None,
    };
    targets.sort();
    targets.dedup();
    Some(WriteSummary { action, fields: f, targets })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::spec::{Effect, specs};
    use serde_json::json;

    #[test]
    fn every_write_tool_has_a_summary_and_no_read_tool_does() {
        for s in specs() {
            assert_eq!(summarize(s.name, &json!({})).is_some(), s.effect == Effect::Write, "{}", s.name);
        }
    }

    #[test]
    fn email_summary() {
        let sum = summarize(
            "gmail_send",
            &json!({"to": ["Ann <Ann@Ext.com>"], "cc": ["b@company.com"], "subject": "Offer", "body": "Line 1\nLine 2"}),
        )
        .unwrap();
        assert_eq!(sum.action, "Send email");
        assert_eq!(sum.targets, vec!["ann@ext.com", "b@company.com"]);
        assert_eq!(
            sum.to_markdown(),
            "📋 Proposed action: Send email\n**To:** Ann <Ann@Ext.com>\n**Cc:** b@company.com\n**Subject:** Offer\n**Body:**\n> Line 1\n> Line 2\n"
        );
    }
}
