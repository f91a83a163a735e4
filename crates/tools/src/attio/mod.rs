//! Attio REST v2 tools (company API key; 100 reads/s and 25 writes/s kept client-side).
//! There are deliberately no delete tools.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::error::ToolError;
use crate::http::{Answer, backoff, is_transient, seg, send, short};
use crate::limit::RateLimiter;
use crate::spec::ToolSpec;
use crate::trim::{cut, fit};
use crate::{Inner, ToolContext, ToolOutput, args};

const SERVICE: &str = "Attio";
const FIELDS_HINT: &str = "use attio_list_fields to see the object's attributes and their options";

pub(crate) fn check_args(tool: &str, a: &Value) -> Result<(), ToolError> {
    let pair = || {
        if args::has(a, "object") != args::has(a, "record_id") {
            return Err(ToolError::invalid("give object and record_id together"));
        }
        Ok(())
    };
    match tool {
        "attio_search" => {
            match (args::has(a, "query"), args::has(a, "filter")) {
                (true, true) | (false, false) => {
                    return Err(ToolError::invalid(
                        "give either query (fuzzy search) or filter (one object)",
                    ));
                }
                (false, true) if args::strings(a, "objects").len() != 1 => {
                    return Err(ToolError::invalid(
                        "a filter needs exactly one object in objects, e.g. [\"people\"]",
                    ));
                }
                _ => {}
            }
            Ok(())
        }
        "attio_list_notes" | "attio_list_tasks" => pair(),
        "attio_create_record" | "attio_update_record"
            if a["values"].as_object().is_none_or(Map::is_empty) =>
        {
            Err(ToolError::invalid("values must name at least one attribute"))
        }
        "attio_update_task" => {
            let fields = ["is_completed", "deadline_at", "linked_records", "assignees"];
            if !fields.iter().any(|k| a.get(*k).is_some()) {
                return Err(ToolError::invalid(format!(
                    "nothing to change: give one of {}",
                    fields.join(", ")
                )));
            }
            check_assignees(a)
        }
        "attio_create_task" => check_assignees(a),
        _ => Ok(()),
    }
}

fn check_assignees(a: &Value) -> Result<(), ToolError> {
    for e in args::strings(a, "assignees") {
        if !crate::schema::is_email(&e) {
            return Err(ToolError::invalid(format!("assignee {e:?} is not an e-mail address")));
        }
    }
    Ok(())
}

pub(crate) async fn call(
    inner: &Inner,
    spec: &'static ToolSpec,
    a: &Value,
    ctx: &ToolContext,
) -> Result<ToolOutput, ToolError> {
    let key = inner.settings.attio_api_key.as_ref().ok_or_else(|| {
        ToolError::NotConfigured(
            "Attio is not configured: set skills.installed.kesslerio/attio-crm.config.apiKey (ATTIO_API_KEY)"
                .into(),
        )
    })?;
    let c = Attio { inner, key, idempotency_key: ctx.idempotency_key.as_deref() };
    let object = seg(args::req(a, "object"));
    let record = seg(args::req(a, "record_id"));
    match spec.name {
        "attio_search" => c.search(a).await,
        "attio_get_record" => {
            let r = c.get(&format!("/objects/{object}/records/{record}"), &[]).await?;
            Ok(ToolOutput::new(fit(flatten_record(&r["data"], args::req(a, "object")), c.budget(), None, "")))
        }
        "attio_list_fields" => c.fields(&object, a).await,
        "attio_upsert_person" => {
            let values = person_values(a);
            c.write_record(
                Method::PUT,
                "/objects/people/records?matching_attribute=email_addresses",
                values,
                "people",
            )
            .await
        }
        "attio_upsert_company" => {
            let values = company_values(a);
            c.write_record(
                Method::PUT,
                "/objects/companies/records?matching_attribute=domains",
                values,
                "companies",
            )
            .await
        }
        "attio_create_record" => {
            c.write_record(
                Method::POST,
                &format!("/objects/{object}/records"),
                a["values"].clone(),
                args::req(a, "object"),
            )
            .await
        }
        "attio_update_record" => {
            c.write_record(
                Method::PATCH,
                &format!("/objects/{object}/records/{record}"),
                a["values"].clone(),
                args::req(a, "object"),
            )
            .await
        }
        "attio_list_notes" => c.list_notes(a).await,
        "attio_add_note" => c.add_note(a).await,
        "attio_list_tasks" => c.list_tasks(a).await,
        "attio_create_task" => c.create_task(a).await,
        "attio_update_task" => c.update_task(a).await,
        other => Err(ToolError::UnknownTool(other.to_owned())),
    }
}

struct Attio<'a> {
    inner: &'a Inner,
    key: &'a SecretString,
    idempotency_key: Option<&'a str>,
}

impl Attio<'_> {
    fn budget(&self) -> usize {
        self.inner.settings.result_budget
    }

    fn limiter(&self, read: bool) -> &RateLimiter {
        if read { &self.inner.attio_reads } else { &self.inner.attio_writes }
    }

    /// One request through the read or write limiter. Query POSTs are reads for Attio.
    async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        read: bool,
    ) -> Result<Value, ToolError> {
        let url = format!("{}{path}", self.inner.settings.attio_api_base.trim_end_matches('/'));
        let mut attempt = 0u32;
        loop {
            self.limiter(read).acquire().await;
            let mut rb = self.inner.http.request(method.clone(), &url).bearer_auth(self.key.expose_secret());
            if !query.is_empty() {
                rb = rb.query(query);
            }
            if let Some(b) = body {
                rb = rb.json(b);
            }
            if !read && let Some(k) = self.idempotency_key {
                rb = rb.header("Idempotency-Key", k);
            }
            let answer = send(SERVICE, rb).await?;
            if answer.status.is_success() {
                return answer.json(SERVICE);
            }
            if answer.status == StatusCode::TOO_MANY_REQUESTS && attempt < 4 {
                // Attio sends an HTTP date (whole seconds), so "now" may already be past it.
                let wait =
                    answer.retry_after().unwrap_or_else(|| backoff(attempt)).max(Duration::from_millis(50));
                if wait > self.inner.settings.max_retry_wait {
                    return Err(ToolError::RateLimited { service: SERVICE, retry_after: wait });
                }
                self.limiter(read).pause_until(Instant::now() + wait).await;
                attempt += 1;
                continue;
            }
            if read && is_transient(answer.status) && attempt < 2 {
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
                continue;
            }
            return Err(error(&answer));
        }
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ToolError> {
        self.request(Method::GET, path, query, None, true).await
    }

    async fn search(&self, a: &Value) -> Result<ToolOutput, ToolError> {
        let limit = args::u64_or(a, "limit", 10);
        let mut objects = args::strings(a, "objects");
        if let Some(filter) = a.get("filter") {
            let object = objects.first().cloned().unwrap_or_default();
            let body = json!({"filter": filter, "limit": limit});
            let r = self
                .request(
                    Method::POST,
                    &format!("/objects/{}/records/query", seg(&object)),
                    &[],
                    Some(&body),
                    true,
                )
                .await?;
            let records: Vec<Value> = r["data"]
                .as_array()
                .map(|l| l.iter().map(|x| flatten_record(x, &object)).collect())
                .unwrap_or_default();
            let out = json!({"results": records});
            return Ok(ToolOutput::new(fit(out, self.budget(), Some("results"), "narrow the filter")));
        }
        if objects.is_empty() {
            objects = vec!["people".into(), "companies".into(), "deals".into()];
        }
        let body = json!({"query": args::req(a, "query"), "objects": objects, "request_as": {"type": "workspace"}, "limit": limit});
        let r = self.request(Method::POST, "/objects/records/search", &[], Some(&body), true).await?;
        let results: Vec<Value> = r["data"]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|x| {
                        let mut o = json!({"object": x["object_slug"], "record_id": x["id"]["record_id"], "text": x["record_text"]});
                        for k in ["email_addresses", "domains"] {
                            if x[k].as_array().is_some_and(|v| !v.is_empty()) {
                                o[k] = x[k].clone();
                            }
                        }
                        o
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut out = json!({"results": results});
        if results.is_empty() {
            out["note"] = json!(
                "no match; search is fuzzy and eventually consistent — try a shorter query or a filter"
            );
        }
        Ok(ToolOutput::new(fit(out, self.budget(), Some("results"), "use a more specific query")))
    }

    async fn fields(&self, object: &str, a: &Value) -> Result<ToolOutput, ToolError> {
        if let Some(attr) = args::str(a, "attribute") {
            let path = format!("/objects/{object}/attributes/{}", seg(attr));
            let meta = self.get(&path, &[]).await?;
            let ty = meta["data"]["type"].as_str().unwrap_or_default().to_owned();
            let (sub, key) = match ty.as_str() {
                "status" => ("statuses", "statuses"),
                "select" => ("options", "options"),
                other => {
                    return Ok(ToolOutput::new(json!({"attribute": attr, "type": other,
                        "note": "only select and status attributes have options"})));
                }
            };
            let r = self.get(&format!("{path}/{sub}"), &[]).await?;
            let titles: Vec<Value> = r["data"]
                .as_array()
                .map(|l| l.iter().filter(|o| o["is_archived"] != true).map(|o| o["title"].clone()).collect())
                .unwrap_or_default();
            let out = json!({"attribute": attr, "type": ty, key: titles});
            return Ok(ToolOutput::new(fit(out, self.budget(), Some(key), "")));
        }
        let r = self.get(&format!("/objects/{object}/attributes"), &[]).await?;
        let attrs: Vec<Value> = r["data"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter(|x| x["is_archived"] != true)
                    .map(|x| {
                        json!({"slug": x["api_slug"], "title": x["title"], "type": x["type"],
                            "required": x["is_required"], "unique": x["is_unique"], "multiselect": x["is_multiselect"],
                            "writable": x["is_writable"]})
                    })
                    .collect()
            })
            .unwrap_or_default();
        let out = json!({"object": args::req(a, "object"), "attributes": attrs});
        Ok(ToolOutput::new(fit(out, self.budget(), Some("attributes"), "")))
    }

    async fn write_record(
        &self,
        method: Method,
        path: &str,
        values: Value,
        object: &str,
    ) -> Result<ToolOutput, ToolError> {
        let body = json!({"data": {"values": values}});
        let r = self.request(method, path, &[], Some(&body), false).await?;
        let record = flatten_record(&r["data"], object);
        let id = record["record_id"].as_str().map(str::to_owned);
        Ok(ToolOutput::with_id(
            fit(json!({"status": "saved", "record": record}), self.budget(), None, ""),
            id,
        ))
    }

    async fn list_notes(&self, a: &Value) -> Result<ToolOutput, ToolError> {
        let mut q = vec![("limit", args::u64_or(a, "limit", 10).to_string())];
        if let (Some(o), Some(r)) = (args::str(a, "object"), args::str(a, "record_id")) {
            q.push(("parent_object", o.to_owned()));
            q.push(("parent_record_id", r.to_owned()));
        }
        let r = self.get("/notes", &q).await?;
        let notes: Vec<Value> = r["data"]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|n| {
                        json!({"id": n["id"]["note_id"], "title": n["title"],
                            "content": cut(n["content_plaintext"].as_str().unwrap_or_default(), 2000),
                            "object": n["parent_object"], "record_id": n["parent_record_id"], "created_at": n["created_at"]})
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(ToolOutput::new(fit(
            json!({"notes": notes}),
            self.budget(),
            Some("notes"),
            "lower limit or pick a record",
        )))
    }

    async fn add_note(&self, a: &Value) -> Result<ToolOutput, ToolError> {
        let format = if args::bool(a, "markdown") == Some(true) { "markdown" } else { "plaintext" };
        let body = json!({"data": {
            "parent_object": args::req(a, "object"),
            "parent_record_id": args::req(a, "record_id"),
            "title": args::req(a, "title"),
            "format": format,
            "content": args::req(a, "content"),
        }});
        let r = self.request(Method::POST, "/notes", &[], Some(&body), false).await?;
        let id = r["data"]["id"]["note_id"].as_str().map(str::to_owned);
        Ok(ToolOutput::with_id(
            json!({"status": "note added", "note_id": id, "title": r["data"]["title"]}),
            id,
        ))
    }

    async fn list_tasks(&self, a: &Value) -> Result<ToolOutput, ToolError> {
        let mut q = vec![("limit", args::u64_or(a, "limit", 20).to_string())];
        if let (Some(o), Some(r)) = (args::str(a, "object"), args::str(a, "record_id")) {
            q.push(("linked_object", o.to_owned()));
            q.push(("linked_record_id", r.to_owned()));
        }
        if let Some(done) = args::bool(a, "is_completed") {
            q.push(("is_completed", done.to_string()));
        }
        let r = self.get("/tasks", &q).await?;
        let tasks: Vec<Value> =
            r["data"].as_array().map(|l| l.iter().map(task).collect()).unwrap_or_default();
        Ok(ToolOutput::new(fit(
            json!({"tasks": tasks}),
            self.budget(),
            Some("tasks"),
            "lower limit or pick a record",
        )))
    }

    /// Workspace member ids for e-mail addresses (tasks take member ids, people give e-mails).
    async fn members(&self, emails: &[String]) -> Result<Vec<Value>, ToolError> {
        if emails.is_empty() {
            return Ok(Vec::new());
        }
        let r = self.get("/workspace_members", &[]).await?;
        let all = r["data"].as_array().cloned().unwrap_or_default();
        emails
            .iter()
            .map(|e| {
                all.iter()
                    .find(|m| m["email_address"].as_str().is_some_and(|x| x.eq_ignore_ascii_case(e)))
                    .map(|m| json!({"referenced_actor_type": "workspace-member", "referenced_actor_id": m["id"]["workspace_member_id"]}))
                    .ok_or_else(|| ToolError::invalid(format!("{e} is not a member of the Attio workspace")))
            })
            .collect()
    }

    async fn create_task(&self, a: &Value) -> Result<ToolOutput, ToolError> {
        let assignees = self.members(&args::strings(a, "assignees")).await?;
        let body = json!({"data": {
            "content": args::req(a, "content"),
            "format": "plaintext",
            "deadline_at": a.get("deadline_at").cloned().unwrap_or(Value::Null),
            "is_completed": false,
            "linked_records": linked(a),
            "assignees": assignees,
        }});
        let r = self.request(Method::POST, "/tasks", &[], Some(&body), false).await?;
        let t = task(&r["data"]);
        let id = t["id"].as_str().map(str::to_owned);
        Ok(ToolOutput::with_id(json!({"status": "task created", "task": t}), id))
    }

    async fn update_task(&self, a: &Value) -> Result<ToolOutput, ToolError> {
        let mut data = Map::new();
        for k in ["is_completed", "deadline_at"] {
            if let Some(v) = a.get(k) {
                data.insert(k.into(), v.clone());
            }
        }
        if a.get("linked_records").is_some() {
            data.insert("linked_records".into(), linked(a));
        }
        if a.get("assignees").is_some() {
            data.insert("assignees".into(), json!(self.members(&args::strings(a, "assignees")).await?));
        }
        let path = format!("/tasks/{}", seg(args::req(a, "task_id")));
        let r = self.request(Method::PATCH, &path, &[], Some(&json!({"data": data})), false).await?;
        let t = task(&r["data"]);
        let id = t["id"].as_str().map(str::to_owned);
        Ok(ToolOutput::with_id(json!({"status": "task updated", "task": t}), id))
    }
}

fn linked(a: &Value) -> Value {
    json!(
        a["linked_records"]
            .as_array()
            .map(|l| l
                .iter()
                .map(|r| json!({"target_object": r["object"], "target_record_id": r["record_id"]}))
                .collect::<Vec<_>>())
            .unwrap_or_default()
    )
}

fn task(t: &Value) -> Value {
    json!({
        "id": t["id"]["task_id"],
        "content": t["content_plaintext"],
        "deadline_at": t["deadline_at"],
        "is_completed": t["is_completed"],
        // Task links name the object by id (`target_object_id`); the slug when present.
        "linked_records": t["linked_records"].as_array().map(|l| l.iter().map(|r| json!({
            "object": r.get("target_object").filter(|x| !x.is_null()).unwrap_or(&r["target_object_id"]),
            "record_id": r["target_record_id"]})).collect::<Vec<_>>()),
        "assignees": t["assignees"].as_array().map(|l| l.iter().map(|x| x["referenced_actor_id"].clone()).collect::<Vec<_>>()),
    })
}

fn person_values(a: &Value) -> Value {
    let mut v: Map<String, Value> = a["values"].as_object().cloned().unwrap_or_default();
    v.insert("email_addresses".into(), json!([args::req(a, "email")]));
    let (first, last) = (args::str(a, "first_name"), args::str(a, "last_name"));
    if first.is_some() || last.is_some() {
        let full = [first, last].into_iter().flatten().collect::<Vec<_>>().join(" ");
        v.insert(
            "name".into(),
            json!([{"first_name": first.unwrap_or_default(), "last_name": last.unwrap_or_default(), "full_name": full}]),
        );
    }
    for (arg, slug) in [("job_title", "job_title"), ("description", "description")] {
        if let Some(x) = args::str(a, arg) {
            v.insert(slug.into(), json!(x));
        }
    }
    if let Some(p) = args::str(a, "phone") {
        v.insert("phone_numbers".into(), json!([{"original_phone_number": p}]));
    }
    if let Some(d) = args::str(a, "company_domain") {
        v.insert("company".into(), json!([{"target_object": "companies", "domains": [{"domain": d}]}]));
    }
    Value::Object(v)
}

fn company_values(a: &Value) -> Value {
    let mut v: Map<String, Value> = a["values"].as_object().cloned().unwrap_or_default();
    v.insert("domains".into(), json!([args::req(a, "domain")]));
    for k in ["name", "description"] {
        if let Some(x) = args::str(a, k) {
            v.insert(k.into(), json!(x));
        }
    }
    Value::Object(v)
}

/// One attribute value object in plain form.
fn simple(v: &Value) -> Value {
    let ty = v["attribute_type"].as_str().unwrap_or_default();
    match ty {
        "email-address" => v["email_address"].clone(),
        "domain" => v["domain"].clone(),
        "personal-name" => v["full_name"].clone(),
        "phone-number" => {
            v.get("phone_number").filter(|x| !x.is_null()).unwrap_or(&v["original_phone_number"]).clone()
        }
        "currency" => match v["currency_code"].as_str() {
            Some(code) => json!(format!("{} {code}", v["currency_value"])),
            None => v["currency_value"].clone(),
        },
        "select" => v["option"]["title"].clone(),
        "status" => v["status"]["title"].clone(),
        "record-reference" => json!({"object": v["target_object"], "record_id": v["target_record_id"]}),
        "actor-reference" => json!({"type": v["referenced_actor_type"], "id": v["referenced_actor_id"]}),
        "location" => json!(
            ["line_1", "locality", "region", "postcode", "country_code"]
                .iter()
                .filter_map(|k| v[*k].as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "interaction" => v["interacted_at"].clone(),
        _ => v.get("value").cloned().unwrap_or_else(|| {
            let mut o = v.as_object().cloned().unwrap_or_default();
            for k in ["active_from", "active_until", "created_by_actor", "attribute_type"] {
                o.remove(k);
            }
            Value::Object(o)
        }),
    }
}

/// A record with only its current values (`active_until == null`), each in plain form.
fn flatten_record(r: &Value, object: &str) -> Value {
    let mut values = Map::new();
    if let Some(all) = r["values"].as_object() {
        for (slug, list) in all {
            let current: Vec<Value> = list
                .as_array()
                .map(|l| l.iter().filter(|x| x["active_until"].is_null()).map(simple).collect())
                .unwrap_or_default();
            match current.len() {
                0 => {}
                1 => {
                    values.insert(slug.clone(), current.into_iter().next().unwrap_or(Value::Null));
                }
                _ => {
                    values.insert(slug.clone(), json!(current));
                }
            }
        }
    }
    json!({"object": object, "record_id": r["id"]["record_id"], "web_url": r["web_url"], "values": values})
}

/// Attio's `{"status_code","type","code","message"}` as an actionable line.
fn error(answer: &Answer) -> ToolError {
    let body = answer.json_or_null();
    let code = body["code"].as_str().unwrap_or_default();
    let kind = body["type"].as_str().unwrap_or_default();
    let message = body["message"].as_str().map(short).unwrap_or_else(|| short(&answer.text()));
    let status = answer.status.as_u16();
    let text = match (status, code, kind) {
        (401, _, _) => {
            return ToolError::NotConfigured("Attio rejected the API key: check ATTIO_API_KEY".into());
        }
        (403, _, _) => format!(
            "the Attio API key lacks a permission for this ({message}); add the scope in Attio → Workspace settings → Developers"
        ),
        (404, _, _) | (_, "not_found", _) => {
            format!("not found ({message}); check the object slug and record id (attio_search finds ids)")
        }
        (409, _, _) | (_, "uniqueness_conflict", _) => format!(
            "a record with this unique value already exists ({message}); use attio_upsert_person/attio_upsert_company or update that record"
        ),
        (429, _, _) => {
            return ToolError::RateLimited { service: SERVICE, retry_after: Duration::from_secs(1) };
        }
        (s, _, _) if s >= 500 => format!("Attio had a server error ({s}); try again later"),
        _ => format!("rejected: {message}; {FIELDS_HINT}"),
    };
    ToolError::Api { service: SERVICE, status, message: text }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn flattens_current_values() {
        let r = json!({"id":{"record_id":"r1"},"web_url":"https://app.attio.com/x","values":{
            "name":[{"active_until":"2020-01-01","attribute_type":"personal-name","full_name":"Old"},
                    {"active_until":null,"attribute_type":"personal-name","full_name":"Ann Lee"}],
            "email_addresses":[{"active_until":null,"attribute_type":"email-address","email_address":"a@x.co"},
                               {"active_until":null,"attribute_type":"email-address","email_address":"b@x.co"}],
            "stage":[{"active_until":null,"attribute_type":"status","status":{"title":"Won"}}],
            "value":[{"active_until":null,"attribute_type":"currency","currency_value":4200,"currency_code":"USD"}],
            "empty":[]}});
        let f = flatten_record(&r, "people");
        assert_eq!(f["values"]["name"], "Ann Lee");
        assert_eq!(f["values"]["email_addresses"], json!(["a@x.co", "b@x.co"]));
        assert_eq!(f["values"]["stage"], "Won");
        assert_eq!(f["values"]["value"], "4200 USD");
        assert!(f["values"].get("empty").is_none());
    }
}
