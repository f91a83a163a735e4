//! A fake of the Attio REST API v2 for one workspace API key.
//!
//! Objects `people`, `companies` and `deals` with Attio's standard attributes; records keep
//! historic-aware values (`active_from`/`active_until`); writes are validated like Attio does
//! (unknown attribute slugs, select/status titles, required and unique attributes, single vs
//! multi values). Assert (`PUT …?matching_attribute=`), notes, tasks and workspace members are
//! supported; there is no delete. Rate limits: token buckets of 100 reads/s and 25 writes/s
//! (query POSTs count as reads); above them 429 `rate_limit_exceeded` with `Retry-After` as an
//! HTTP date. Errors come as `{"status_code","type","code","message"}`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use crate::fake_common::{
    Fault, RecordedRequest, Reply, Server, TokenBucket, lock, record, rfc3339, serve, take_fault, unix_now,
    uuid_like,
};

const WORKSPACE_ID: &str = "a0a0a0a0-0000-4000-a000-00000000a770";

#[derive(Debug, Clone)]
struct Attribute {
    id: String,
    slug: String,
    title: String,
    ty: String,
    required: bool,
    unique: bool,
    multi: bool,
    /// Select options or status titles.
    options: Vec<String>,
}

#[derive(Debug, Clone)]
struct Record {
    id: String,
    created_at: String,
    values: BTreeMap<String, Vec<Value>>,
}

#[derive(Debug, Clone)]
struct Object {
    id: String,
    slug: String,
    attributes: Vec<Attribute>,
    records: Vec<Record>,
}

#[derive(Debug, Clone)]
struct Member {
    id: String,
    email: String,
    first: String,
    last: String,
}

struct AttioState {
    api_key: String,
    objects: BTreeMap<String, Object>,
    notes: Vec<Value>,
    tasks: Vec<Value>,
    members: Vec<Member>,
    reads: TokenBucket,
    writes_bucket: TokenBucket,
    requests: Vec<RecordedRequest>,
    faults: Vec<Fault>,
    writes: usize,
    rate_limited: usize,
    counter: u64,
}

impl AttioState {
    fn id(&mut self) -> String {
        self.counter += 1;
        uuid_like(self.counter)
    }
}

struct Shared {
    state: Mutex<AttioState>,
}

/// The running fake. Stops when dropped.
pub struct FakeAttio {
    shared: Arc<Shared>,
    server: Server,
}

impl fmt::Debug for FakeAttio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeAttio").field("addr", &self.server.addr).finish_non_exhaustive()
    }
}

/// An Attio error.
#[derive(Debug, Clone)]
pub struct AttioError {
    pub status: u16,
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
}

fn aerr(status: u16, code: &'static str, message: impl Into<String>) -> AttioError {
    let kind = match status {
        401 | 403 => "auth_error",
        429 => "rate_limit_error",
        s if s >= 500 => "server_error",
        _ => "invalid_request_error",
    };
    AttioError { status, kind, code, message: message.into() }
}

fn invalid(message: impl Into<String>) -> AttioError {
    aerr(400, "validation_type", message)
}

impl AttioError {
    fn reply(&self) -> Reply {
        Reply::json(
            self.status,
            json!({"status_code": self.status, "type": self.kind, "code": self.code, "message": self.message}),
        )
    }
}

fn attr(st: &mut AttioState, slug: &str, title: &str, ty: &str, flags: &str, options: &[&str]) -> Attribute {
    Attribute {
        id: st.id(),
        slug: slug.into(),
        title: title.into(),
        ty: ty.into(),
        required: flags.contains('r'),
        unique: flags.contains('u'),
        multi: flags.contains('m'),
        options: options.iter().map(|o| (*o).to_owned()).collect(),
    }
}

impl FakeAttio {
    /// Starts the fake with the standard objects and a fresh API key.
    pub async fn start() -> Self {
        let mut st = AttioState {
            api_key: format!("attio_fake_{}", uuid_like(11).replace('-', "")),
            objects: BTreeMap::new(),
            notes: Vec::new(),
            tasks: Vec::new(),
            members: Vec::new(),
            reads: TokenBucket::new(100.0, 100.0),
            writes_bucket: TokenBucket::new(25.0, 25.0),
            requests: Vec::new(),
            faults: Vec::new(),
            writes: 0,
            rate_limited: 0,
            counter: 1000,
        };
        let people = vec![
            attr(&mut st, "email_addresses", "Email addresses", "email-address", "um", &[]),
            attr(&mut st, "name", "Name", "personal-name", "", &[]),
            attr(&mut st, "job_title", "Job title", "text", "", &[]),
            attr(&mut st, "phone_numbers", "Phone numbers", "phone-number", "m", &[]),
            attr(&mut st, "description", "Description", "text", "", &[]),
            attr(&mut st, "company", "Company", "record-reference:companies", "", &[]),
        ];
        let companies = vec![
            attr(&mut st, "domains", "Domains", "domain", "um", &[]),
            attr(&mut st, "name", "Name", "text", "", &[]),
            attr(&mut st, "description", "Description", "text", "", &[]),
            attr(&mut st, "categories", "Categories", "select", "m", &["SaaS", "B2B", "Finance"]),
        ];
        let deals = vec![
            attr(&mut st, "name", "Deal name", "text", "r", &[]),
            attr(&mut st, "stage", "Deal stage", "status", "r", &["Lead", "In Progress", "Won 🎉", "Lost"]),
            attr(&mut st, "owner", "Deal owner", "actor-reference", "r", &[]),
            attr(&mut st, "value", "Deal value", "currency", "", &[]),
            attr(&mut st, "associated_company", "Associated company", "record-reference:companies", "", &[]),
            attr(&mut st, "associated_people", "Associated people", "record-reference:people", "m", &[]),
        ];
        for (slug, attributes) in [("people", people), ("companies", companies), ("deals", deals)] {
            let id = st.id();
            st.objects.insert(slug.into(), Object { id, slug: slug.into(), attributes, records: Vec::new() });
        }
        let shared = Arc::new(Shared { state: Mutex::new(st) });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = serve(app, "fake-attio").await;
        Self { shared, server }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, AttioState> {
        lock(&self.shared.state)
    }

    /// `http://127.0.0.1:<port>/v2`: use as `integrations.attio.apiBase`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v2", self.server.addr)
    }

    pub fn api_key(&self) -> String {
        self.state().api_key.clone()
    }

    /// Adds a workspace member; returns its id.
    pub fn add_member(&self, email: &str, first: &str, last: &str) -> String {
        let mut st = self.state();
        let id = st.id();
        st.members.push(Member {
            id: id.clone(),
            email: email.into(),
            first: first.into(),
            last: last.into(),
        });
        id
    }

    /// Creates a record from write-shape values (as `POST /objects/{object}/records` would).
    #[allow(clippy::expect_used)] // test helper: an invalid seed is a bug in the test
    pub fn add_record(&self, object: &str, values: Value) -> String {
        let mut st = self.state();
        let r = create_record(&mut st, object, &values).expect("fake attio: invalid seed record");
        r["id"]["record_id"].as_str().unwrap_or_default().to_owned()
    }

    /// A record in the API's read shape.
    pub fn record(&self, object: &str, record_id: &str) -> Option<Value> {
        let st = self.state();
        let o = st.objects.get(object)?;
        o.records.iter().find(|r| r.id == record_id).map(|r| record_json(o, r))
    }

    /// All records of an object (read shape).
    pub fn records(&self, object: &str) -> Vec<Value> {
        let st = self.state();
        st.objects
            .get(object)
            .map(|o| o.records.iter().map(|r| record_json(o, r)).collect())
            .unwrap_or_default()
    }

    pub fn notes(&self) -> Vec<Value> {
        self.state().notes.clone()
    }

    pub fn tasks(&self) -> Vec<Value> {
        self.state().tasks.clone()
    }

    /// Injects a failure (429 with an HTTP-date `Retry-After`, 5xx, …) in Attio's error shape.
    pub fn inject(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    /// Successful writes.
    pub fn writes(&self) -> usize {
        self.state().writes
    }

    /// Requests refused by the rate limiter.
    pub fn rate_limited(&self) -> usize {
        self.state().rate_limited
    }
}

// ------------------------------------------------------------------------------------------
// Values
// ------------------------------------------------------------------------------------------

fn meta(ty: &str) -> Value {
    json!({"active_from": rfc3339(unix_now()), "active_until": null,
        "created_by_actor": {"type": "api-token", "id": "00000000-0000-4000-a000-0000000a91e7"}, "attribute_type": ty})
}

fn with_meta(ty: &str, fields: Value) -> Value {
    let mut v = meta(ty);
    if let (Some(o), Some(f)) = (v.as_object_mut(), fields.as_object()) {
        o.extend(f.clone());
    }
    v
}

fn find_record_by<'a>(o: &'a Object, slug: &str, field: &str, wanted: &str) -> Option<&'a Record> {
    o.records.iter().find(|r| {
        r.values.get(slug).is_some_and(|vs| {
            vs.iter().any(|v| {
                v["active_until"].is_null()
                    && v[field].as_str().is_some_and(|x| x.eq_ignore_ascii_case(wanted))
            })
        })
    })
}

/// One write-shape value of `a` → read shape.
fn normalize(st: &AttioState, a: &Attribute, v: &Value) -> Result<Value, AttioError> {
    let bad = |what: &str| invalid(format!("Invalid value for attribute \"{}\": {what}", a.slug));
    let s = |k: &str| v.as_str().map(str::to_owned).or_else(|| v[k].as_str().map(str::to_owned));
    let ty = a.ty.split(':').next().unwrap_or_default();
    Ok(match ty {
        "email-address" => {
            let e = s("email_address").ok_or_else(|| bad("expected an email address"))?;
            let Some((local, domain)) = e.rsplit_once('@').filter(|(l, d)| !l.is_empty() && d.contains('.'))
            else {
                return Err(bad(&format!("\"{e}\" is not a valid email address")));
            };
            with_meta(
                "email-address",
                json!({"original_email_address": e, "email_address": e.to_lowercase(),
                "email_domain": domain.to_lowercase(), "email_root_domain": domain.to_lowercase(), "email_local_specifier": local}),
            )
        }
        "domain" => {
            let d = s("domain").ok_or_else(|| bad("expected a domain"))?;
            if !d.contains('.') || d.contains('/') || d.contains(' ') {
                return Err(bad(&format!("\"{d}\" is not a valid domain")));
            }
            with_meta("domain", json!({"domain": d.to_lowercase(), "root_domain": d.to_lowercase()}))
        }
        "personal-name" => {
            let (first, last, full) = match v {
                Value::String(full) => {
                    let mut parts = full.splitn(2, ' ');
                    (
                        parts.next().unwrap_or_default().to_owned(),
                        parts.next().unwrap_or_default().to_owned(),
                        full.clone(),
                    )
                }
                Value::Object(_) => {
                    let first = v["first_name"].as_str().unwrap_or_default().to_owned();
                    let last = v["last_name"].as_str().unwrap_or_default().to_owned();
                    let full = v["full_name"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("{first} {last}").trim().to_owned());
                    (first, last, full)
                }
                _ => return Err(bad("expected a name object")),
            };
            with_meta("personal-name", json!({"first_name": first, "last_name": last, "full_name": full}))
        }
        "phone-number" => {
            let p = s("original_phone_number").ok_or_else(|| bad("expected a phone number"))?;
            if !p.trim_start_matches('+').chars().all(|c| c.is_ascii_digit() || c == ' ' || c == '-') {
                return Err(bad(&format!("\"{p}\" is not a valid phone number")));
            }
            let digits: String = p.chars().filter(char::is_ascii_digit).collect();
            with_meta(
                "phone-number",
                json!({"original_phone_number": p, "phone_number": format!("+{digits}"), "country_code": v["country_code"]}),
            )
        }
        "text" => with_meta("text", json!({"value": v.as_str().ok_or_else(|| bad("expected a string"))?})),
        "number" => {
            if !v.is_number() {
                return Err(bad("expected a number"));
            }
            with_meta("number", json!({"value": v}))
        }
        "currency" => {
            let n = if v.is_number() { v.clone() } else { v["currency_value"].clone() };
            if !n.is_number() {
                return Err(bad("expected a number"));
            }
            with_meta(
                "currency",
                json!({"currency_value": n, "currency_code": v["currency_code"].as_str().unwrap_or("USD")}),
            )
        }
        "select" | "status" => {
            let title = s("title")
                .or_else(|| s("option"))
                .or_else(|| s("status"))
                .ok_or_else(|| bad("expected an option title"))?;
            let Some(t) = a.options.iter().find(|o| **o == title) else {
                let what = if ty == "select" { "select option" } else { "status" };
                return Err(aerr(
                    400,
                    "value_not_found",
                    format!("Cannot find {what} with title \"{title}\"."),
                ));
            };
            let inner = json!({"id": {"workspace_id": WORKSPACE_ID, "option_id": format!("opt-{t}")}, "title": t, "is_archived": false});
            with_meta(ty, if ty == "select" { json!({"option": inner}) } else { json!({"status": inner}) })
        }
        "record-reference" => {
            let target = a.ty.split(':').nth(1).unwrap_or_default();
            if v["target_object"].as_str() != Some(target) {
                return Err(bad(&format!("target_object must be \"{target}\"")));
            }
            let o = st.objects.get(target).ok_or_else(|| bad("unknown target object"))?;
            let found = if let Some(id) = v["target_record_id"].as_str() {
                o.records.iter().find(|r| r.id == id)
            } else if let Some(d) = v["domains"][0]["domain"].as_str() {
                find_record_by(o, "domains", "domain", d)
            } else if let Some(e) = v["email_addresses"][0]["email_address"].as_str() {
                find_record_by(o, "email_addresses", "email_address", e)
            } else {
                return Err(bad("expected target_record_id or a matching attribute"));
            };
            let r = found.ok_or_else(|| {
                aerr(
                    400,
                    "value_not_found",
                    format!("Could not find a {target} record to reference for \"{}\".", a.slug),
                )
            })?;
            with_meta("record-reference", json!({"target_object": target, "target_record_id": r.id}))
        }
        "actor-reference" => {
            let email = v.as_str().or_else(|| v["workspace_member_email_address"].as_str());
            let id = match (email, v["referenced_actor_id"].as_str()) {
                (Some(e), _) => {
                    st.members.iter().find(|m| m.email.eq_ignore_ascii_case(e)).map(|m| m.id.clone())
                }
                (None, Some(id)) => st.members.iter().find(|m| m.id == id).map(|m| m.id.clone()),
                _ => None,
            };
            let id = id.ok_or_else(|| {
                aerr(400, "value_not_found", format!("Cannot find workspace member for \"{}\".", a.slug))
            })?;
            with_meta(
                "actor-reference",
                json!({"referenced_actor_type": "workspace-member", "referenced_actor_id": id}),
            )
        }
        "date" | "timestamp" | "checkbox" => with_meta(ty, json!({"value": v})),
        other => return Err(bad(&format!("unsupported attribute type {other}"))),
    })
}

/// Write-shape `values` → read-shape value lists per attribute slug.
fn normalize_values(
    st: &AttioState,
    o: &Object,
    values: &Value,
) -> Result<BTreeMap<String, Vec<Value>>, AttioError> {
    let Some(map) = values.as_object() else {
        return Err(invalid("Body payload validation error: data.values must be an object."));
    };
    let mut out = BTreeMap::new();
    for (slug, v) in map {
        let Some(a) = o.attributes.iter().find(|a| a.slug == *slug || a.id == *slug) else {
            return Err(aerr(
                400,
                "value_not_found",
                format!("Cannot find attribute with slug/ID \"{slug}\"."),
            ));
        };
        let items: Vec<&Value> = match v {
            Value::Array(l) => l.iter().collect(),
            Value::Null => Vec::new(),
            other => vec![other],
        };
        if items.len() > 1 && !a.multi {
            return Err(invalid(format!(
                "Attribute \"{slug}\" accepts a single value, got {}.",
                items.len()
            )));
        }
        let list = items.into_iter().map(|x| normalize(st, a, x)).collect::<Result<Vec<_>, _>>()?;
        out.insert(a.slug.clone(), list);
    }
    Ok(out)
}

fn main_field(v: &Value) -> Option<String> {
    [
        "email_address",
        "domain",
        "value",
        "full_name",
        "phone_number",
        "target_record_id",
        "referenced_actor_id",
    ]
    .iter()
    .find_map(|k| v[*k].as_str().map(str::to_owned))
    .or_else(|| v["option"]["title"].as_str().map(str::to_owned))
    .or_else(|| v["status"]["title"].as_str().map(str::to_owned))
}

fn check_unique(
    o: &Object,
    values: &BTreeMap<String, Vec<Value>>,
    except: Option<&str>,
) -> Result<(), AttioError> {
    for a in o.attributes.iter().filter(|a| a.unique) {
        for v in values.get(&a.slug).into_iter().flatten() {
            let Some(key) = main_field(v) else { continue };
            let clash = o.records.iter().filter(|r| Some(r.id.as_str()) != except).any(|r| {
                r.values.get(&a.slug).is_some_and(|vs| {
                    vs.iter().any(|x| {
                        x["active_until"].is_null() && main_field(x).as_deref() == Some(key.as_str())
                    })
                })
            });
            if clash {
                return Err(aerr(
                    409,
                    "uniqueness_conflict",
                    format!(
                        "Uniqueness constraint violated: The value \"{key}\" provided for attribute \"{}\" already exists.",
                        a.slug
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn record_json(o: &Object, r: &Record) -> Value {
    let mut values = Map::new();
    for a in &o.attributes {
        values.insert(a.slug.clone(), json!(r.values.get(&a.slug).cloned().unwrap_or_default()));
    }
    json!({"id": {"workspace_id": WORKSPACE_ID, "object_id": o.id, "record_id": r.id}, "created_at": r.created_at,
        "web_url": format!("https://app.attio.com/fake/{}/{}", o.slug, r.id), "values": values})
}

fn create_record(st: &mut AttioState, object: &str, values: &Value) -> Result<Value, AttioError> {
    let Some(o) = st.objects.get(object) else {
        return Err(aerr(404, "not_found", format!("Object with slug/ID \"{object}\" not found.")));
    };
    let vals = normalize_values(st, o, values)?;
    for a in o.attributes.iter().filter(|a| a.required) {
        if vals.get(&a.slug).is_none_or(Vec::is_empty) {
            return Err(invalid(format!(
                "Required value for attribute with slug \"{}\" was not provided.",
                a.slug
            )));
        }
    }
    check_unique(o, &vals, None)?;
    let id = st.id();
    let record = Record { id, created_at: rfc3339(unix_now()), values: vals };
    let Some(o) = st.objects.get_mut(object) else { return Err(aerr(404, "not_found", "Object vanished")) };
    o.records.push(record.clone());
    let o = o.clone();
    Ok(record_json(&o, &record))
}

/// Applies new values: single-value attributes are replaced (old value gets `active_until`),
/// multi-select ones are prepended (`overwrite == false`, PATCH) or replaced (assert).
fn apply(r: &mut Record, o: &Object, vals: BTreeMap<String, Vec<Value>>, overwrite: bool) {
    let now = rfc3339(unix_now());
    for (slug, new) in vals {
        let multi = o.attributes.iter().any(|a| a.slug == slug && a.multi);
        let list = r.values.entry(slug).or_default();
        if multi && !overwrite {
            let existing: Vec<Option<String>> =
                list.iter().filter(|v| v["active_until"].is_null()).map(main_field).collect();
            let mut add: Vec<Value> =
                new.into_iter().filter(|v| !existing.contains(&main_field(v))).collect();
            add.append(list);
            *list = add;
        } else {
            for v in list.iter_mut().filter(|v| v["active_until"].is_null()) {
                v["active_until"] = json!(now);
            }
            list.extend(new);
        }
    }
}

// ------------------------------------------------------------------------------------------
// Routing
// ------------------------------------------------------------------------------------------

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut rec = record(&method, &uri, &headers, &body);
    let mut st = lock(&shared.state);
    let reply = match route(&mut st, &rec) {
        Ok(v) => Reply::json(200, v),
        Err(Ok(r)) => r,
        Err(Err(e)) => e.reply(),
    };
    rec.status = reply.status;
    st.requests.push(rec);
    drop(st);
    reply.into_response()
}

fn retry_after_date(wait: Duration) -> String {
    // An HTTP date has whole seconds: round up so the client does not come back too early.
    httpdate::fmt_http_date(SystemTime::now() + wait + Duration::from_millis(999))
}

fn fail(e: AttioError) -> Result<Reply, AttioError> {
    Err(e)
}

fn authorized(st: &AttioState, rec: &RecordedRequest) -> bool {
    let Some(h) = rec.header("authorization") else { return false };
    if let Some(t) = h.strip_prefix("Bearer ") {
        return t.trim() == st.api_key;
    }
    // HTTP Basic with the key as user name is accepted too.
    h.strip_prefix("Basic ")
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .map(|d| String::from_utf8_lossy(&d).split(':').next().unwrap_or_default() == st.api_key)
        .unwrap_or(false)
}

fn route(st: &mut AttioState, rec: &RecordedRequest) -> Result<Value, Result<Reply, AttioError>> {
    if let Some(f) = take_fault(&mut st.faults, rec) {
        let code = match f.status {
            429 => "rate_limit_exceeded",
            401 => "invalid_auth",
            s if s >= 500 => "internal_server_error",
            _ => "injected",
        };
        let mut r = aerr(f.status, code, "Injected failure").reply();
        if let Some(ra) = &f.retry_after {
            r = r.with_header("retry-after", ra);
        }
        return Err(Ok(r));
    }
    if !authorized(st, rec) {
        return Err(fail(aerr(
            401,
            "invalid_auth",
            "Authentication failed: the access token is invalid or has been revoked.",
        )));
    }
    let path = rec.path.strip_prefix("/v2").unwrap_or("");
    let segs: Vec<String> =
        path.trim_start_matches('/').split('/').map(crate::fake_common::percent_decode).collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = rec.method.as_str();
    let read = m == "GET" || (m == "POST" && (s.last() == Some(&"query") || s.last() == Some(&"search")));
    let bucket = if read { &mut st.reads } else { &mut st.writes_bucket };
    if let Err(wait) = bucket.take() {
        st.rate_limited += 1;
        let r = aerr(429, "rate_limit_exceeded", "Rate limit exceeded, please try again later").reply();
        return Err(Ok(r.with_header("retry-after", &retry_after_date(wait))));
    }
    let body = if matches!(m, "POST" | "PUT" | "PATCH") {
        serde_json::from_slice::<Value>(&rec.body)
            .map_err(|e| fail(invalid(format!("Body payload validation error: invalid JSON ({e})."))))?
    } else {
        Value::Null
    };
    let data = &body["data"];
    let need_data = || -> Result<(), Result<Reply, AttioError>> {
        if data.is_object() {
            Ok(())
        } else {
            Err(fail(invalid("Body payload validation error: \"data\" is required.")))
        }
    };
    let result = match (m, s.as_slice()) {
        ("GET", ["self"]) => Ok(
            json!({"active": true, "scope": "record_permission:read-write object_configuration:read note:read-write task:read-write user_management:read",
            "workspace_id": WORKSPACE_ID, "workspace_name": "Fake Co", "workspace_slug": "fake-co"}),
        ),
        ("GET", ["workspace_members"]) => Ok(json!({"data": st.members.iter().map(|mb| json!({
            "id": {"workspace_id": WORKSPACE_ID, "workspace_member_id": mb.id}, "first_name": mb.first, "last_name": mb.last,
            "avatar_url": null, "email_address": mb.email, "access_level": "member", "created_at": rfc3339(unix_now())})).collect::<Vec<_>>()})),
        ("GET", ["objects", obj, "attributes"]) => {
            let o = object(st, obj)?;
            Ok(json!({"data": o.attributes.iter().map(|a| attribute_json(o, a)).collect::<Vec<_>>()}))
        }
        ("GET", ["objects", obj, "attributes", slug]) => {
            let o = object(st, obj)?;
            let a = attribute(o, slug)?;
            Ok(json!({"data": attribute_json(o, a)}))
        }
        ("GET", ["objects", obj, "attributes", slug, kind @ ("options" | "statuses")]) => {
            let o = object(st, obj)?;
            let a = attribute(o, slug)?;
            let wanted = if *kind == "options" { "select" } else { "status" };
            if a.ty != wanted {
                return Err(fail(invalid(format!("Attribute \"{slug}\" is not a {wanted} attribute."))));
            }
            Ok(
                json!({"data": a.options.iter().map(|t| json!({"id": {"workspace_id": WORKSPACE_ID, "object_id": o.id, "attribute_id": a.id, "option_id": format!("opt-{t}")},
                "title": t, "is_archived": false})).collect::<Vec<_>>()}),
            )
        }
        ("GET", ["objects", obj, "records", id]) => {
            let o = object(st, obj)?;
            let r =
                o.records.iter().find(|r| r.id == *id).ok_or_else(|| {
                    fail(aerr(404, "not_found", format!("Record with ID \"{id}\" not found.")))
                })?;
            Ok(json!({"data": record_json(o, r)}))
        }
        ("POST", ["objects", obj, "records"]) => {
            need_data()?;
            let r = create_record(st, obj, &data["values"]).map_err(fail)?;
            Ok(json!({"data": r}))
        }
        ("PUT", ["objects", obj, "records"]) => {
            need_data()?;
            let Some(matching) = rec.query_value("matching_attribute").map(str::to_owned) else {
                return Err(fail(invalid("Query parameter \"matching_attribute\" is required.")));
            };
            assert_record(st, obj, &matching, &data["values"]).map(|r| json!({"data": r})).map_err(fail)
        }
        ("PATCH" | "PUT", ["objects", obj, "records", id]) => {
            need_data()?;
            let overwrite = m == "PUT";
            let o = object(st, obj)?.clone();
            let vals = normalize_values(st, &o, &data["values"]).map_err(fail)?;
            check_unique(&o, &vals, Some(id)).map_err(fail)?;
            let Some(oo) = st.objects.get_mut(*obj) else {
                return Err(fail(aerr(404, "not_found", "Object not found.")));
            };
            let Some(r) = oo.records.iter_mut().find(|r| r.id == *id) else {
                return Err(fail(aerr(404, "not_found", format!("Record with ID \"{id}\" not found."))));
            };
            apply(r, &o, vals, overwrite);
            let r = r.clone();
            Ok(json!({"data": record_json(&o, &r)}))
        }
        ("POST", ["objects", obj, "records", "query"]) => {
            let o = object(st, obj)?;
            let limit = body["limit"].as_u64().unwrap_or(500) as usize;
            let offset = body["offset"].as_u64().unwrap_or(0) as usize;
            let mut out = Vec::new();
            for r in &o.records {
                if body.get("filter").is_none_or(Value::is_null)
                    || record_matches(o, r, &body["filter"]).map_err(fail)?
                {
                    out.push(record_json(o, r));
                }
            }
            Ok(json!({"data": out.into_iter().skip(offset).take(limit).collect::<Vec<_>>()}))
        }
        ("POST", ["objects", "records", "search"]) => search(st, &body),
        ("POST", ["notes"]) => {
            need_data()?;
            create_note(st, data).map_err(fail)
        }
        ("GET", ["notes"]) => {
            let limit = rec.query_value("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(10);
            if limit > 50 {
                return Err(fail(invalid("limit must be at most 50")));
            }
            let offset = rec.query_value("offset").and_then(|l| l.parse::<usize>().ok()).unwrap_or(0);
            let (po, pr) = (rec.query_value("parent_object"), rec.query_value("parent_record_id"));
            let list: Vec<Value> = st
                .notes
                .iter()
                .rev()
                .filter(|n| {
                    po.is_none_or(|p| n["parent_object"] == p)
                        && pr.is_none_or(|p| n["parent_record_id"] == p)
                })
                .skip(offset)
                .take(limit)
                .cloned()
                .collect();
            Ok(json!({"data": list}))
        }
        ("POST", ["tasks"]) => {
            need_data()?;
            create_task(st, data).map_err(fail)
        }
        ("GET", ["tasks"]) => {
            let limit = rec.query_value("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(500);
            let (lo, lr) = (rec.query_value("linked_object"), rec.query_value("linked_record_id"));
            let done = rec.query_value("is_completed").map(|v| v == "true");
            let list: Vec<Value> = st
                .tasks
                .iter()
                .rev()
                .filter(|t| done.is_none_or(|d| t["is_completed"] == d))
                .filter(|t| {
                    lr.is_none_or(|id| {
                        t["linked_records"].as_array().is_some_and(|l| {
                            l.iter().any(|x| {
                                x["target_record_id"] == id && lo.is_none_or(|o| x["target_object"] == o)
                            })
                        })
                    })
                })
                .take(limit)
                .cloned()
                .collect();
            Ok(json!({"data": list}))
        }
        ("PATCH", ["tasks", id]) => {
            need_data()?;
            update_task(st, id, data).map_err(fail)
        }
        ("DELETE", _) => Err(fail(aerr(403, "forbidden", "The fake does not allow deletes."))),
        _ => Err(fail(aerr(404, "not_found", format!("Route {m} {path} not found.")))),
    };
    if result.is_ok() && !read {
        st.writes += 1;
    }
    result
}

fn object<'a>(st: &'a AttioState, slug: &str) -> Result<&'a Object, Result<Reply, AttioError>> {
    st.objects
        .get(slug)
        .or_else(|| st.objects.values().find(|o| o.id == slug))
        .ok_or_else(|| fail(aerr(404, "not_found", format!("Object with slug/ID \"{slug}\" not found."))))
}

fn attribute<'a>(o: &'a Object, slug: &str) -> Result<&'a Attribute, Result<Reply, AttioError>> {
    o.attributes
        .iter()
        .find(|a| a.slug == slug || a.id == slug)
        .ok_or_else(|| fail(aerr(404, "not_found", format!("Attribute with slug/ID \"{slug}\" not found."))))
}

fn attribute_json(o: &Object, a: &Attribute) -> Value {
    json!({"id": {"workspace_id": WORKSPACE_ID, "object_id": o.id, "attribute_id": a.id}, "title": a.title, "description": null,
        "api_slug": a.slug, "type": a.ty.split(':').next(), "is_system_attribute": true, "is_writable": true,
        "is_required": a.required, "is_unique": a.unique, "is_multiselect": a.multi, "is_default_value_enabled": false,
        "is_archived": false, "default_value": null, "relationship": null, "created_at": rfc3339(0), "config": {}})
}

fn assert_record(
    st: &mut AttioState,
    obj: &str,
    matching: &str,
    values: &Value,
) -> Result<Value, AttioError> {
    let Some(o) = st.objects.get(obj).cloned() else {
        return Err(aerr(404, "not_found", format!("Object with slug/ID \"{obj}\" not found.")));
    };
    let Some(a) = o.attributes.iter().find(|a| a.slug == matching) else {
        return Err(aerr(
            400,
            "value_not_found",
            format!("Cannot find attribute with slug/ID \"{matching}\"."),
        ));
    };
    if !a.unique {
        return Err(invalid(format!(
            "Attribute \"{matching}\" is not unique and cannot be used as matching_attribute."
        )));
    }
    let vals = normalize_values(st, &o, values)?;
    let Some(keys) = vals.get(matching).filter(|v| !v.is_empty()) else {
        return Err(invalid(format!(
            "The matching attribute \"{matching}\" must have a value in data.values."
        )));
    };
    let keys: Vec<Option<String>> = keys.iter().map(main_field).collect();
    let existing = o.records.iter().position(|r| {
        r.values
            .get(matching)
            .is_some_and(|vs| vs.iter().any(|v| v["active_until"].is_null() && keys.contains(&main_field(v))))
    });
    match existing {
        Some(i) => {
            let id = o.records[i].id.clone();
            check_unique(&o, &vals, Some(&id))?;
            let Some(oo) = st.objects.get_mut(obj) else {
                return Err(aerr(404, "not_found", "Object vanished"));
            };
            apply(&mut oo.records[i], &o, vals, true);
            let r = oo.records[i].clone();
            Ok(record_json(&o, &r))
        }
        None => create_record(st, obj, values),
    }
}

fn record_matches(o: &Object, r: &Record, f: &Value) -> Result<bool, AttioError> {
    let Some(map) = f.as_object() else { return Err(aerr(400, "filter_error", "Filter must be an object.")) };
    for (k, cond) in map {
        let ok = match k.as_str() {
            "$and" => {
                let mut all = true;
                for x in cond.as_array().into_iter().flatten() {
                    all &= record_matches(o, r, x)?;
                }
                all
            }
            "$or" => {
                let mut any = false;
                for x in cond.as_array().into_iter().flatten() {
                    any |= record_matches(o, r, x)?;
                }
                any
            }
            "$not" => !record_matches(o, r, cond)?,
            slug => {
                if !o.attributes.iter().any(|a| a.slug == slug) {
                    return Err(aerr(400, "filter_error", format!("Unknown attribute slug: {slug}")));
                }
                let current: Vec<String> = r
                    .values
                    .get(slug)
                    .into_iter()
                    .flatten()
                    .filter(|v| v["active_until"].is_null())
                    .filter_map(main_field)
                    .map(|s| s.to_lowercase())
                    .collect();
                let test = |op: &str, arg: &Value| -> Result<bool, AttioError> {
                    let a =
                        arg.as_str().map(str::to_lowercase).or_else(|| arg.as_f64().map(|n| n.to_string()));
                    Ok(match (op, a) {
                        ("$eq", Some(a)) => current.contains(&a),
                        ("$contains", Some(a)) => current.iter().any(|c| c.contains(&a)),
                        ("$starts_with", Some(a)) => current.iter().any(|c| c.starts_with(&a)),
                        ("$not_empty", _) => !current.is_empty(),
                        _ => {
                            return Err(aerr(
                                400,
                                "filter_error",
                                format!("Unsupported filter condition {op} on {slug}"),
                            ));
                        }
                    })
                };
                match cond {
                    Value::Object(ops) => {
                        let mut all = true;
                        for (op, arg) in ops {
                            // Nested property filters such as {"name":{"full_name":{"$eq":…}}}.
                            if !op.starts_with('$') {
                                if let Some((op2, arg2)) = arg.as_object().and_then(|x| x.iter().next()) {
                                    all &= test(op2, arg2)?;
                                }
                                continue;
                            }
                            all &= test(op, arg)?;
                        }
                        all
                    }
                    other => test("$eq", other)?,
                }
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn search(st: &AttioState, body: &Value) -> Result<Value, Result<Reply, AttioError>> {
    let Some(query) = body["query"].as_str() else {
        return Err(fail(invalid("Body payload validation error: \"query\" is required.")));
    };
    let Some(objects) = body["objects"].as_array().filter(|o| !o.is_empty()) else {
        return Err(fail(invalid("Body payload validation error: \"objects\" must be a non-empty array.")));
    };
    if !body["request_as"].is_object() {
        return Err(fail(invalid("Body payload validation error: \"request_as\" is required.")));
    }
    let limit = body["limit"].as_u64().unwrap_or(25).min(25) as usize;
    let q = query.to_lowercase();
    let mut out = Vec::new();
    for slug in objects.iter().filter_map(Value::as_str) {
        let o = object(st, slug)?;
        for r in &o.records {
            let current = |k: &str, f: &str| -> Vec<String> {
                r.values
                    .get(k)
                    .into_iter()
                    .flatten()
                    .filter(|v| v["active_until"].is_null())
                    .filter_map(|v| v[f].as_str().map(str::to_owned))
                    .collect()
            };
            let text = current("name", "full_name")
                .into_iter()
                .chain(current("name", "value"))
                .next()
                .unwrap_or_default();
            let emails = current("email_addresses", "email_address");
            let domains = current("domains", "domain");
            let phones = current("phone_numbers", "phone_number");
            let hay = [vec![text.clone()], emails.clone(), domains.clone(), phones.clone()].concat();
            if hay.iter().any(|h| h.to_lowercase().contains(&q)) {
                out.push(json!({"id": {"workspace_id": WORKSPACE_ID, "object_id": o.id, "record_id": r.id},
                    "object_id": o.id, "object_slug": o.slug, "record_text": text, "record_image": null,
                    "email_addresses": emails, "domains": domains, "phone_numbers": phones}));
            }
        }
    }
    out.truncate(limit);
    Ok(json!({"data": out}))
}

fn record_exists(st: &AttioState, object: &str, id: &str) -> bool {
    st.objects.get(object).is_some_and(|o| o.records.iter().any(|r| r.id == id))
}

fn create_note(st: &mut AttioState, d: &Value) -> Result<Value, AttioError> {
    for k in ["parent_object", "parent_record_id", "title", "format", "content"] {
        if !d[k].is_string() {
            return Err(invalid(format!("Body payload validation error: data.{k} is required.")));
        }
    }
    let format = d["format"].as_str().unwrap_or_default();
    if !["plaintext", "markdown"].contains(&format) {
        return Err(invalid("data.format must be \"plaintext\" or \"markdown\"."));
    }
    let (po, pr) =
        (d["parent_object"].as_str().unwrap_or_default(), d["parent_record_id"].as_str().unwrap_or_default());
    if !record_exists(st, po, pr) {
        return Err(aerr(404, "not_found", format!("Record with ID \"{pr}\" not found in {po}.")));
    }
    let id = st.id();
    let content = d["content"].as_str().unwrap_or_default();
    let plain =
        if format == "markdown" { content.replace(['#', '*', '_', '`'], "") } else { content.to_owned() };
    let note = json!({"id": {"workspace_id": WORKSPACE_ID, "note_id": id}, "parent_object": po, "parent_record_id": pr,
        "title": d["title"], "meeting_id": null, "content_plaintext": plain.trim(), "content_markdown": content, "tags": [],
        "created_by_actor": {"type": "api-token", "id": null}, "created_at": rfc3339(unix_now())});
    st.notes.push(note.clone());
    Ok(json!({"data": note}))
}

fn links_and_assignees(st: &AttioState, d: &Value) -> Result<(Option<Value>, Option<Value>), AttioError> {
    let links = match d.get("linked_records") {
        None => None,
        Some(Value::Array(l)) => {
            let mut out = Vec::new();
            for x in l {
                let (o, r) = (
                    x["target_object"].as_str().unwrap_or_default(),
                    x["target_record_id"].as_str().unwrap_or_default(),
                );
                let Some(obj) = st.objects.get(o) else {
                    return Err(aerr(404, "not_found", format!("Object with slug/ID \"{o}\" not found.")));
                };
                if !record_exists(st, o, r) {
                    return Err(aerr(404, "not_found", format!("Record with ID \"{r}\" not found in {o}.")));
                }
                out.push(json!({"target_object_id": obj.id, "target_object": o, "target_record_id": r}));
            }
            Some(json!(out))
        }
        Some(_) => return Err(invalid("data.linked_records must be an array.")),
    };
    let assignees = match d.get("assignees") {
        None => None,
        Some(Value::Array(l)) => {
            let mut out = Vec::new();
            for x in l {
                let id = x["referenced_actor_id"].as_str().unwrap_or_default();
                if x["referenced_actor_type"] != "workspace-member" || !st.members.iter().any(|m| m.id == id)
                {
                    return Err(aerr(
                        400,
                        "value_not_found",
                        format!("Workspace member \"{id}\" not found."),
                    ));
                }
                out.push(json!({"referenced_actor_type": "workspace-member", "referenced_actor_id": id}));
            }
            Some(json!(out))
        }
        Some(_) => return Err(invalid("data.assignees must be an array.")),
    };
    Ok((links, assignees))
}

fn create_task(st: &mut AttioState, d: &Value) -> Result<Value, AttioError> {
    for k in ["content", "format", "deadline_at", "is_completed", "linked_records", "assignees"] {
        if d.get(k).is_none() {
            return Err(invalid(format!("Body payload validation error: data.{k} is required.")));
        }
    }
    if d["format"] != "plaintext" {
        return Err(invalid("Tasks can only be created from plaintext (data.format must be \"plaintext\")."));
    }
    if !(d["deadline_at"].is_null()
        || d["deadline_at"].as_str().and_then(crate::fake_common::parse_rfc3339).is_some())
    {
        return Err(invalid("data.deadline_at must be an ISO 8601 timestamp or null."));
    }
    let (links, assignees) = links_and_assignees(st, d)?;
    let id = st.id();
    let task = json!({"id": {"workspace_id": WORKSPACE_ID, "task_id": id}, "content_plaintext": d["content"],
        "deadline_at": d["deadline_at"], "is_completed": d["is_completed"].as_bool().unwrap_or(false),
        "linked_records": links.unwrap_or_else(|| json!([])), "assignees": assignees.unwrap_or_else(|| json!([])),
        "created_by_actor": {"type": "api-token", "id": null}, "created_at": rfc3339(unix_now())});
    st.tasks.push(task.clone());
    Ok(json!({"data": task}))
}

fn update_task(st: &mut AttioState, id: &str, d: &Value) -> Result<Value, AttioError> {
    if d.get("content").is_some() || d.get("format").is_some() {
        return Err(invalid("Task content cannot be updated."));
    }
    let (links, assignees) = links_and_assignees(st, d)?;
    let Some(t) = st.tasks.iter_mut().find(|t| t["id"]["task_id"] == id) else {
        return Err(aerr(404, "not_found", format!("Task with ID \"{id}\" not found.")));
    };
    if let Some(v) = d.get("is_completed") {
        t["is_completed"] =
            json!(v.as_bool().ok_or_else(|| invalid("data.is_completed must be a boolean."))?);
    }
    if let Some(v) = d.get("deadline_at") {
        t["deadline_at"] = v.clone();
    }
    if let Some(l) = links {
        t["linked_records"] = l;
    }
    if let Some(a) = assignees {
        t["assignees"] = a;
    }
    Ok(json!({"data": t.clone()}))
}
