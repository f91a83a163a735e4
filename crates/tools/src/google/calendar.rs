//! Google Calendar: list, free/busy, create, update.

use reqwest::Method;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{Api, Session};
use crate::args;
use crate::error::ToolError;
use crate::http::seg;
use crate::schema::is_date;
use crate::trim::{cut, fit};
use crate::{PriorExecution, ToolOutput};

const BASE: &str = "/calendar/v3";

pub(super) fn check(tool: &str, a: &Value) -> Result<(), ToolError> {
    let (start, end) = (args::str(a, "start"), args::str(a, "end"));
    if let (Some(s), Some(e)) = (start, end) {
        if is_date(s) != is_date(e) {
            return Err(ToolError::invalid("start and end must both be dates (all-day) or both date-times"));
        }
        // Same format on both sides: a plain string comparison orders them only if the offsets
        // match, so leave other cases to Google.
        if (is_date(s) || s.ends_with('Z') && e.ends_with('Z')) && e <= s {
            return Err(ToolError::invalid("end must be after start"));
        }
    }
    if tool == "calendar_update_event" {
        let fields = ["summary", "start", "end", "description", "location", "attendees", "time_zone"];
        if !fields.iter().any(|k| args::has(a, k)) {
            return Err(ToolError::invalid(format!(
                "nothing to change: give at least one of {}",
                fields.join(", ")
            )));
        }
        if start.is_some() != end.is_some() {
            return Err(ToolError::invalid("give start and end together"));
        }
    }
    for addr in args::strings(a, "attendees") {
        if !crate::schema::is_email(&addr) {
            return Err(ToolError::invalid(format!("attendee {addr:?} is not an e-mail address")));
        }
    }
    Ok(())
}

fn calendar(a: &Value) -> String {
    seg(args::str(a, "calendar_id").unwrap_or("primary"))
}

fn summarize(e: &Value) -> Value {
    let time = |t: &Value| t.get("dateTime").or_else(|| t.get("date")).cloned().unwrap_or(Value::Null);
    let attendees: Vec<Value> = e["attendees"]
        .as_array()
        .map(|l| l.iter().map(|x| json!({"email": x["email"], "response": x["responseStatus"]})).collect())
        .unwrap_or_default();
    let mut o = json!({
        "id": e["id"],
        "summary": e["summary"],
        "start": time(&e["start"]),
        "end": time(&e["end"]),
        "status": e["status"],
        "organizer": e["organizer"]["email"],
        "link": e["htmlLink"],
    });
    let m = o.as_object_mut();
    if let Some(m) = m {
        for (k, v) in [("location", &e["location"]), ("meet", &e["hangoutLink"])] {
            if !v.is_null() {
                m.insert(k.into(), v.clone());
            }
        }
        if let Some(d) = e["description"].as_str() {
            m.insert("description".into(), json!(cut(d, 500)));
        }
        if !attendees.is_empty() {
            m.insert("attendees".into(), json!(attendees));
        }
    }
    o
}

pub(super) async fn list(g: &mut Session<'_>, a: &Value) -> Result<ToolOutput, ToolError> {
    let mut q = vec![
        ("timeMin", args::req(a, "time_min").to_owned()),
        ("timeMax", args::req(a, "time_max").to_owned()),
        ("singleEvents", "true".to_owned()),
        ("orderBy", "startTime".to_owned()),
        ("maxResults", args::u64_or(a, "max_results", 25).to_string()),
    ];
    if let Some(text) = args::str(a, "query") {
        q.push(("q", text.to_owned()));
    }
    if let Some(t) = args::str(a, "page_token") {
        q.push(("pageToken", t.to_owned()));
    }
    let r = g.get(Api::Calendar, &format!("{BASE}/calendars/{}/events", calendar(a)), &q).await?;
    let events: Vec<Value> =
        r["items"].as_array().map(|l| l.iter().map(summarize).collect()).unwrap_or_default();
    let mut out = json!({ "time_zone": r["timeZone"], "events": events });
    if let Some(t) = r["nextPageToken"].as_str() {
        out["next_page_token"] = json!(t);
    }
    Ok(ToolOutput::new(fit(out, g.budget(), Some("events"), "use a shorter time window")))
}

pub(super) async fn freebusy(g: &mut Session<'_>, a: &Value) -> Result<ToolOutput, ToolError> {
    let mut ids = args::strings(a, "calendars");
    if ids.is_empty() {
        ids.push("primary".into());
    }
    let mut body = json!({
        "timeMin": args::req(a, "time_min"),
        "timeMax": args::req(a, "time_max"),
        "items": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
    });
    if let Some(tz) = args::str(a, "time_zone") {
        body["timeZone"] = json!(tz);
    }
    let r = g.json(Method::POST, Api::Calendar, &format!("{BASE}/freeBusy"), &[], Some(&body)).await?;
    let mut cals = Map::new();
    if let Some(c) = r["calendars"].as_object() {
        for (id, v) in c {
            let mut entry = json!({ "busy": v["busy"] });
            if let Some(errs) = v["errors"].as_array().filter(|e| !e.is_empty()) {
                entry["error"] = json!(format!(
                    "{} (no access to this calendar's free/busy)",
                    errs[0]["reason"].as_str().unwrap_or("error")
                ));
            }
            cals.insert(id.clone(), entry);
        }
    }
    let out = json!({ "time_min": r["timeMin"], "time_max": r["timeMax"], "calendars": cals });
    Ok(ToolOutput::new(fit(out, g.budget(), None, "")))
}

fn time(v: &str, tz: Option<&str>) -> Value {
    if is_date(v) {
        json!({ "date": v })
    } else {
        let mut t = json!({ "dateTime": v });
        if let Some(tz) = tz {
            t["timeZone"] = json!(tz);
        }
        t
    }
}

/// A Calendar event id derived from the idempotency key. Calendar accepts client ids in
/// base32hex (`a-v0-9`, 5–1024 characters) and answers 409 for a second insert with the same id,
/// which makes event creation exactly-once.
pub(crate) fn event_id(key: &str) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::from("cg");
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in &digest[..20] {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
    }
    out
}

fn event_body(a: &Value) -> Value {
    let tz = args::str(a, "time_zone");
    let mut e = Map::new();
    for (key, field) in [("summary", "summary"), ("description", "description"), ("location", "location")] {
        if let Some(v) = args::str(a, key) {
            e.insert(field.into(), json!(v));
        }
    }
    for key in ["start", "end"] {
        if let Some(v) = args::str(a, key) {
            e.insert(key.into(), time(v, tz));
        }
    }
    if args::has(a, "attendees") {
        let list: Vec<Value> = args::strings(a, "attendees").iter().map(|m| json!({ "email": m })).collect();
        e.insert("attendees".into(), json!(list));
    }
    Value::Object(e)
}

pub(super) async fn create(g: &mut Session<'_>, a: &Value) -> Result<ToolOutput, ToolError> {
    let mut body = event_body(a);
    let mut q = vec![("sendUpdates", args::str(a, "send_updates").unwrap_or("none").to_owned())];
    let key = g.idempotency_key;
    if let Some(k) = key {
        body["id"] = json!(event_id(k));
    }
    if args::bool(a, "add_meet") == Some(true) {
        let request_id = key.map(event_id).unwrap_or_else(|| event_id(&format!("{body}")));
        body["conferenceData"] = json!({"createRequest": {"requestId": request_id, "conferenceSolutionKey": {"type": "hangoutsMeet"}}});
        q.push(("conferenceDataVersion", "1".into()));
    }
    let path = format!("{BASE}/calendars/{}/events", calendar(a));
    let (e, already) = match g.json(Method::POST, Api::Calendar, &path, &q, Some(&body)).await {
        Ok(e) => (e, false),
        // Our id exists: this proposal was executed before (e.g. a retry after a crash).
        Err(ToolError::Api { status: 409, .. }) if key.is_some() => {
            let id = body["id"].as_str().unwrap_or_default().to_owned();
            (g.get(Api::Calendar, &format!("{path}/{}", seg(&id)), &[]).await?, true)
        }
        Err(e) => return Err(e),
    };
    let mut out =
        json!({ "status": if already { "already created" } else { "created" }, "event": summarize(&e) });
    if already {
        out["note"] =
            json!("this event was created by an earlier run of the same approved action; not created twice");
    }
    let id = e["id"].as_str().map(str::to_owned);
    Ok(ToolOutput::with_id(fit(out, g.budget(), None, ""), id))
}

/// Looks up the event this key would have created.
pub(super) async fn prior(g: &mut Session<'_>, a: &Value, key: &str) -> Result<PriorExecution, ToolError> {
    let path = format!("{BASE}/calendars/{}/events/{}", calendar(a), event_id(key));
    match g.get(Api::Calendar, &path, &[]).await {
        Ok(e) => {
            let id = e["id"].as_str().map(str::to_owned);
            Ok(PriorExecution::Found(ToolOutput::with_id(
                json!({"status": "created", "event": summarize(&e)}),
                id,
            )))
        }
        Err(ToolError::Api { status: 404, .. }) => Ok(PriorExecution::NotFound),
        Err(e) => Err(e),
    }
}

pub(super) async fn update(g: &mut Session<'_>, a: &Value) -> Result<ToolOutput, ToolError> {
    let body = event_body(a);
    let q = [("sendUpdates", args::str(a, "send_updates").unwrap_or("none").to_owned())];
    let path = format!("{BASE}/calendars/{}/events/{}", calendar(a), seg(args::req(a, "event_id")));
    let e = g.json(Method::PATCH, Api::Calendar, &path, &q, Some(&body)).await?;
    let id = e["id"].as_str().map(str::to_owned);
    Ok(ToolOutput::with_id(
        fit(json!({ "status": "updated", "event": summarize(&e) }), g.budget(), None, ""),
        id,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn event_ids_are_base32hex() {
        let id = event_id("proposal-17");
        assert_eq!(id, event_id("proposal-17"));
        assert_eq!(id.len(), 34);
        assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b)), "{id}");
    }

    #[test]
    fn rejects_mixed_and_inverted_times() {
        let e = check("calendar_create_event", &json!({"start":"2026-01-02","end":"2026-01-02T10:00:00Z"}));
        assert!(e.is_err());
        let e = check(
            "calendar_create_event",
            &json!({"start":"2026-01-02T10:00:00Z","end":"2026-01-02T09:00:00Z"}),
        );
        assert!(e.unwrap_err().to_string().contains("end must be after start"));
        assert!(check("calendar_update_event", &json!({"event_id":"x"})).is_err());
    }
}
