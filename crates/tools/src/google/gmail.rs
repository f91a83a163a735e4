//! Gmail: search, read (message or thread), drafts and sending (new or reply in thread).

use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::mime::{self, Outgoing};
use super::{Api, Session};
use crate::args;
use crate::error::ToolError;
use crate::http::seg;
use crate::trim::{cut, fit};
use crate::{PriorExecution, ToolOutput};

const BASE: &str = "/gmail/v1/users/me";

pub(super) fn check_read(a: &Value) -> Result<(), ToolError> {
    match (args::has(a, "message_id"), args::has(a, "thread_id")) {
        (true, false) | (false, true) => Ok(()),
        _ => Err(ToolError::invalid("give exactly one of message_id or thread_id")),
    }
}

pub(super) fn check_compose(tool: &str, a: &Value) -> Result<(), ToolError> {
    if tool == "gmail_send" && args::has(a, "draft_id") {
        let others = ["to", "cc", "bcc", "subject", "body", "reply_to_message_id"];
        if others.iter().any(|k| args::has(a, k)) {
            return Err(ToolError::invalid("draft_id sends an existing draft: give no other fields"));
        }
        return Ok(());
    }
    if !args::has(a, "body") {
        return Err(ToolError::invalid("body is required"));
    }
    let reply = args::has(a, "reply_to_message_id");
    if !reply && args::strings(a, "to").is_empty() {
        return Err(ToolError::invalid("to is required (at least one recipient) unless replying"));
    }
    if !reply && args::str(a, "subject").is_none_or(|s| s.trim().is_empty()) {
        return Err(ToolError::invalid("subject is required unless replying"));
    }
    // Addresses are checked here too, so a bad one never becomes a proposal.
    for key in ["to", "cc", "bcc"] {
        for addr in args::strings(a, key) {
            mime::build(&Outgoing { to: std::slice::from_ref(&addr), body: "", ..Default::default() })
                .map_err(|e| ToolError::invalid(format!("{key}: {e}")))?;
        }
    }
    Ok(())
}

fn header<'a>(msg: &'a Value, name: &str) -> Option<&'a str> {
    msg["payload"]["headers"].as_array()?.iter().find_map(|h| {
        h["name"].as_str().filter(|n| n.eq_ignore_ascii_case(name)).and_then(|_| h["value"].as_str())
    })
}

fn label_flag(msg: &Value, label: &str) -> bool {
    msg["labelIds"].as_array().is_some_and(|l| l.iter().any(|x| x == label))
}

pub(super) async fn search(g: &mut Session<'_>, a: &Value) -> Result<ToolOutput, ToolError> {
    let max = args::u64_or(a, "max_results", 10);
    let mut q = vec![("q", args::req(a, "query").to_owned()), ("maxResults", max.to_string())];
    if let Some(t) = args::str(a, "page_token") {
        q.push(("pageToken", t.to_owned()));
    }
    let list = g.get(Api::Gmail, &format!("{BASE}/messages"), &q).await?;
    let ids: Vec<String> = list["messages"]
        .as_array()
        .map(|m| m.iter().filter_map(|x| x["id"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let meta: Vec<(&str, String)> = ["From", "To", "Subject", "Date"]
        .iter()
        .map(|h| ("metadataHeaders", (*h).to_owned()))
        .chain([("format", "metadata".to_owned())])
        .collect();
    let mut results = Vec::with_capacity(ids.len());
    for id in ids {
        let m = g.get(Api::Gmail, &format!("{BASE}/messages/{}", seg(&id)), &meta).await?;
        results.push(json!({
            "id": m["id"],
            "thread_id": m["threadId"],
            "from": header(&m, "From"),
            "to": header(&m, "To"),
            "subject": header(&m, "Subject"),
            "date": header(&m, "Date"),
            "snippet": m["snippet"],
            "unread": label_flag(&m, "UNREAD"),
        }));
    }
    let mut out = json!({ "results": results });
    if let Some(t) = list["nextPageToken"].as_str() {
        out["next_page_token"] = json!(t);
    }
    if results_empty(&out) {
        out["note"] = json!("no messages match; try a broader query");
    }
    Ok(ToolOutput::new(fit(out, g.budget(), Some("results"), "use next_page_token or a narrower query")))
}

fn results_empty(v: &Value) -> bool {
    v["results"].as_array().is_none_or(Vec::is_empty)
}

fn render(m: &Value, body_cap: usize) -> Value {
    let extracted = mime::extract(&m["payload"]);
    json!({
        "id": m["id"],
        "thread_id": m["threadId"],
        "from": header(m, "From"),
        "to": header(m, "To"),
        "cc": header(m, "Cc"),
        "date": header(m, "Date"),
        "subject": header(m, "Subject"),
        "labels": m["labelIds"],
        "body": cut(&extracted.text, body_cap),
        "attachments": extracted.attachments.iter().map(|at| json!({
            "filename": at.filename, "mime_type": at.mime_type, "size": at.size
        })).collect::<Vec<_>>(),
    })
}

pub(super) async fn read(g: &mut Session<'_>, a: &Value) -> Result<ToolOutput, ToolError> {
    let full = [("format", "full".to_owned())];
    let budget = g.budget();
    if let Some(id) = args::str(a, "message_id") {
        let m = g.get(Api::Gmail, &format!("{BASE}/messages/{}", seg(id)), &full).await?;
        return Ok(ToolOutput::new(fit(render(&m, budget), budget, None, "")));
    }
    let id = args::req(a, "thread_id");
    let t = g.get(Api::Gmail, &format!("{BASE}/threads/{}", seg(id)), &full).await?;
    let messages = t["messages"].as_array().cloned().unwrap_or_default();
    // Share the budget between messages; the newest matter most, so list them first.
    let cap = budget / messages.len().max(1);
    let rendered: Vec<Value> = messages.iter().rev().map(|m| render(m, cap)).collect();
    let out =
        json!({ "thread_id": t["id"], "message_count": messages.len(), "messages_newest_first": rendered });
    Ok(ToolOutput::new(fit(out, budget, Some("messages_newest_first"), "read older messages by message_id")))
}

/// `<crewgate.<hash>@domain>`: the same proposal always produces the same Message-ID, so a
/// re-send after a crash is recognisable (`rfc822msgid:` search).
fn message_id(key: &str, from: Option<&str>) -> String {
    let hash = hex::encode(&Sha256::digest(key.as_bytes())[..12]);
    let domain = from
        .and_then(|f| f.rsplit_once('@'))
        .map(|(_, d)| d.trim_end_matches('>').to_owned())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "crewgate.local".into());
    format!("<crewgate.{hash}@{domain}>")
}

/// Finds a message sent earlier with this key's `Message-ID`.
pub(super) async fn prior(g: &mut Session<'_>, key: &str) -> Result<PriorExecution, ToolError> {
    let id = message_id(key, g.email.as_deref());
    let q = [("q", format!("rfc822msgid:{}", id.trim_matches(['<', '>']))), ("maxResults", "1".to_owned())];
    let r = g.get(Api::Gmail, &format!("{BASE}/messages"), &q).await?;
    Ok(match r["messages"][0]["id"].as_str() {
        Some(found) => PriorExecution::Found(ToolOutput::with_id(
            json!({"status": "sent", "message_id": found, "thread_id": r["messages"][0]["threadId"]}),
            Some(found.to_owned()),
        )),
        None => PriorExecution::NotFound,
    })
}

struct ReplyTo {
    thread_id: String,
    subject: String,
    to: Vec<String>,
    in_reply_to: Option<String>,
    references: Option<String>,
}

async fn original(g: &mut Session<'_>, id: &str) -> Result<ReplyTo, ToolError> {
    let q: Vec<(&str, String)> = ["Subject", "From", "Reply-To", "Message-ID", "References", "In-Reply-To"]
        .iter()
        .map(|h| ("metadataHeaders", (*h).to_owned()))
        .chain([("format", "metadata".to_owned())])
        .collect();
    let m = g.get(Api::Gmail, &format!("{BASE}/messages/{}", seg(id)), &q).await?;
    let msg_id = header(&m, "Message-ID").map(str::trim).map(str::to_owned);
    // RFC 5322 §3.6.4: parent's References (or its In-Reply-To) followed by the parent's id.
    let parent_refs = header(&m, "References").or_else(|| header(&m, "In-Reply-To")).map(str::to_owned);
    let references = match (&parent_refs, &msg_id) {
        (Some(r), Some(id)) => Some(format!("{} {id}", r.split_whitespace().collect::<Vec<_>>().join(" "))),
        (None, Some(id)) => Some(id.clone()),
        (r, None) => r.clone(),
    };
    let subject = header(&m, "Subject").unwrap_or_default().to_owned();
    let reply_subject =
        if subject.to_ascii_lowercase().starts_with("re:") { subject } else { format!("Re: {subject}") };
    let to = header(&m, "Reply-To").or_else(|| header(&m, "From")).map(split_addresses).unwrap_or_default();
    Ok(ReplyTo {
        thread_id: m["threadId"].as_str().unwrap_or_default().to_owned(),
        subject: reply_subject,
        to,
        in_reply_to: msg_id,
        references,
    })
}

/// Splits an address header at commas outside quotes.
fn split_addresses(h: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut cur, mut quoted) = (String::new(), false);
    for c in h.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => {
                out.push(cur.trim().to_owned());
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    out.push(cur.trim().to_owned());
    out.into_iter().filter(|s| !s.is_empty()).collect()
}

/// `gmail_draft_create` (`send == false`) and `gmail_send`.
pub(super) async fn compose(g: &mut Session<'_>, a: &Value, send: bool) -> Result<ToolOutput, ToolError> {
    if send && let Some(draft) = args::str(a, "draft_id") {
        let m = g
            .json(Method::POST, Api::Gmail, &format!("{BASE}/drafts/send"), &[], Some(&json!({"id": draft})))
            .await?;
        let id = m["id"].as_str().map(str::to_owned);
        return Ok(ToolOutput::with_id(
            json!({"status": "sent", "message_id": m["id"], "thread_id": m["threadId"], "draft_id": draft}),
            id,
        ));
    }
    let reply = match args::str(a, "reply_to_message_id") {
        Some(id) => Some(original(g, id).await?),
        None => None,
    };
    let mut to = args::strings(a, "to");
    if to.is_empty()
        && let Some(r) = &reply
    {
        to.clone_from(&r.to);
    }
    if to.is_empty() {
        return Err(ToolError::invalid("the original message has no sender to reply to: give to"));
    }
    let subject = args::str(a, "subject")
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
        .or_else(|| reply.as_ref().map(|r| r.subject.clone()))
        .unwrap_or_default();
    let (cc, bcc) = (args::strings(a, "cc"), args::strings(a, "bcc"));
    let from = g.email.clone();
    let message = mime::build(&Outgoing {
        from: from.as_deref(),
        to: &to,
        cc: &cc,
        bcc: &bcc,
        subject: &subject,
        body: args::req(a, "body"),
        message_id: g.idempotency_key.map(|k| message_id(k, from.as_deref())),
        in_reply_to: reply.as_ref().and_then(|r| r.in_reply_to.clone()),
        references: reply.as_ref().and_then(|r| r.references.clone()),
        date: mime::date_now(),
    })?;
    let mut msg = json!({ "raw": mime::raw(&message) });
    if let Some(r) = reply.as_ref().filter(|r| !r.thread_id.is_empty()) {
        msg["threadId"] = json!(r.thread_id);
    }
    if send {
        let m = g.json(Method::POST, Api::Gmail, &format!("{BASE}/messages/send"), &[], Some(&msg)).await?;
        let id = m["id"].as_str().map(str::to_owned);
        Ok(ToolOutput::with_id(
            json!({"status": "sent", "message_id": m["id"], "thread_id": m["threadId"], "to": to, "subject": subject}),
            id,
        ))
    } else {
        let d = g
            .json(Method::POST, Api::Gmail, &format!("{BASE}/drafts"), &[], Some(&json!({ "message": msg })))
            .await?;
        let id = d["id"].as_str().map(str::to_owned);
        Ok(ToolOutput::with_id(
            json!({"status": "draft created", "draft_id": d["id"], "message_id": d["message"]["id"],
                   "thread_id": d["message"]["threadId"], "to": to, "subject": subject}),
            id,
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn splits_quoted_addresses() {
        assert_eq!(split_addresses("\"Lee, Ann\" <a@b.co>, c@d.co"), vec!["\"Lee, Ann\" <a@b.co>", "c@d.co"]);
    }

    #[test]
    fn message_ids_are_stable() {
        assert_eq!(message_id("k1", Some("me@x.co")), message_id("k1", Some("me@x.co")));
        assert_ne!(message_id("k1", None), message_id("k2", None));
        assert!(message_id("k", Some("me@x.co")).ends_with("@x.co>"));
    }
}
