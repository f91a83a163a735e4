//! A fake of the Notion API (version 2025-09-03: databases with data sources) for one
//! internal integration.
//!
//! Checks what Notion checks: the integration token, a `Notion-Version` header, JSON bodies,
//! property values against the data source schema, rich-text length (2000), ≤100 blocks per
//! append, and sharing: pages and databases are invisible (404 `object_not_found`) unless they or
//! an ancestor were shared with the integration. Rate limit: a token bucket of 3 requests/s
//! (burst 3 by default); above it, 429 `rate_limited` with `Retry-After`. Errors come as
//! `{"object":"error","status","code","message","request_id"}`.
//!
//! ```no_run
//! # async fn demo() {
//! use crewgate_testkit::fake_notion::FakeNotion;
//! use serde_json::json;
//! let notion = FakeNotion::start().await;
//! let page = notion.add_page(None, "Team plan", vec![json!({"type":"paragraph","paragraph":{"rich_text":[{"text":{"content":"Hi"}}]}})]);
//! notion.share(&page);
//! // point the tools at notion.base_url() with notion.token() …
//! # }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::fake_common::{
    Fault, RecordedRequest, Reply, Server, TokenBucket, lock, parse_rfc3339, record, rfc3339, serve,
    take_fault, unix_now, uuid_like,
};

/// Versions the fake accepts. Only 2025-09-03 and later have data sources.
pub const VERSIONS: &[&str] = &["2022-06-28", "2025-09-03", "2026-03-11"];

const RICH_TEXT_TYPES: &[&str] = &[
    "paragraph",
    "heading_1",
    "heading_2",
    "heading_3",
    "bulleted_list_item",
    "numbered_list_item",
    "to_do",
    "toggle",
    "quote",
    "callout",
    "code",
];

const CODE_LANGUAGES: &[&str] = &[
    "plain text",
    "rust",
    "python",
    "javascript",
    "typescript",
    "json",
    "shell",
    "bash",
    "sql",
    "yaml",
    "html",
    "css",
    "go",
    "java",
    "markdown",
    "c",
    "c++",
    "c#",
    "ruby",
    "kotlin",
    "swift",
    "php",
];

#[derive(Debug, Clone)]
struct Page {
    id: String,
    parent: Value,
    properties: Map<String, Value>,
    in_trash: bool,
    created: String,
    edited: String,
    children: Vec<String>,
}

#[derive(Debug, Clone)]
struct Block {
    id: String,
    parent: Value,
    ty: String,
    data: Value,
    children: Vec<String>,
    created: String,
}

#[derive(Debug, Clone)]
struct Database {
    id: String,
    title: Value,
    parent: Value,
    data_sources: Vec<String>,
}

#[derive(Debug, Clone)]
struct DataSource {
    id: String,
    database_id: String,
    title: Value,
    schema: Map<String, Value>,
}

struct NotionState {
    token: String,
    pages: BTreeMap<String, Page>,
    blocks: BTreeMap<String, Block>,
    databases: BTreeMap<String, Database>,
    data_sources: BTreeMap<String, DataSource>,
    shared: HashSet<String>,
    bucket: TokenBucket,
    requests: Vec<RecordedRequest>,
    faults: Vec<Fault>,
    writes: usize,
    rate_limited: usize,
    counter: u64,
}

impl NotionState {
    fn id(&mut self) -> String {
        self.counter += 1;
        uuid_like(self.counter)
    }
}

struct Shared {
    state: Mutex<NotionState>,
}

/// The running fake. Stops when dropped.
pub struct FakeNotion {
    shared: Arc<Shared>,
    server: Server,
}

impl fmt::Debug for FakeNotion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeNotion").field("addr", &self.server.addr).finish_non_exhaustive()
    }
}

/// A Notion error.
#[derive(Debug, Clone)]
pub struct NotionError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

fn nerr(status: u16, code: &'static str, message: impl Into<String>) -> NotionError {
    NotionError { status, code, message: message.into() }
}

fn invalid(message: impl Into<String>) -> NotionError {
    nerr(400, "validation_error", message)
}

fn not_found(id: &str) -> NotionError {
    nerr(
        404,
        "object_not_found",
        format!(
            "Could not find page with ID: {id}. Make sure the relevant pages and databases are shared with your integration."
        ),
    )
}

impl NotionError {
    fn reply(&self) -> Reply {
        Reply::json(
            self.status,
            json!({"object": "error", "status": self.status, "code": self.code, "message": self.message,
                "request_id": uuid_like(u64::from(self.status))}),
        )
    }
}

impl FakeNotion {
    /// Starts the fake with a fresh integration token.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(NotionState {
                token: format!("ntn_fake{}", uuid_like(7).replace('-', "")),
                pages: BTreeMap::new(),
                blocks: BTreeMap::new(),
                databases: BTreeMap::new(),
                data_sources: BTreeMap::new(),
                shared: HashSet::new(),
                bucket: TokenBucket::new(3.0, 3.0),
                requests: Vec::new(),
                faults: Vec::new(),
                writes: 0,
                rate_limited: 0,
                counter: 100,
            }),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = serve(app, "fake-notion").await;
        Self { shared, server }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, NotionState> {
        lock(&self.shared.state)
    }

    /// `http://127.0.0.1:<port>/v1`: use as `integrations.notion.apiBase`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.server.addr)
    }

    /// The integration token.
    pub fn token(&self) -> String {
        self.state().token.clone()
    }

    /// Replaces the rate limit (requests per second, burst).
    pub fn set_rate_limit(&self, per_second: f64, burst: f64) {
        self.state().bucket = TokenBucket::new(per_second, burst);
    }

    /// Shares a page or database (and so everything under it) with the integration.
    pub fn share(&self, id: &str) {
        self.state().shared.insert(id.to_owned());
    }

    /// Adds a page (under `parent` page, or at the workspace top level) with blocks in Notion's
    /// write shape. Returns its id.
    #[allow(clippy::expect_used)] // test helper: an invalid seed is a bug in the test
    pub fn add_page(&self, parent: Option<&str>, title: &str, blocks: Vec<Value>) -> String {
        let mut st = self.state();
        let parent = match parent {
            Some(p) => json!({"type": "page_id", "page_id": p}),
            None => json!({"type": "workspace", "workspace": true}),
        };
        let body = json!({"parent": parent, "properties": {"title": {"title": [{"text": {"content": title}}]}}, "children": blocks});
        let page = create_page(&mut st, &body, true).expect("fake notion: invalid seed page");
        page["id"].as_str().unwrap_or_default().to_owned()
    }

    /// Adds a database with one data source under a page. `schema` maps property names to
    /// `{"type": …, "options": [names]}` (options for select/multi_select/status); a title
    /// property named "Name" is added if none is given. Returns `(database_id, data_source_id)`.
    #[allow(clippy::expect_used)] // test helper: an invalid seed is a bug in the test
    pub fn add_database(&self, parent_page: &str, title: &str, schema: Value) -> (String, String) {
        let mut st = self.state();
        let db_id = st.id();
        let ds_id = st.id();
        let mut props = Map::new();
        let mut has_title = false;
        for (i, (name, def)) in schema.as_object().cloned().unwrap_or_default().into_iter().enumerate() {
            let ty = def["type"].as_str().unwrap_or("rich_text").to_owned();
            has_title |= ty == "title";
            let mut inner = json!({});
            if let Some(opts) = def["options"].as_array() {
                let options: Vec<Value> = opts
                    .iter()
                    .enumerate()
                    .map(|(j, o)| json!({"id": format!("opt{i}{j}"), "name": o, "color": "default"}))
                    .collect();
                inner = json!({"options": options});
            }
            let id = if ty == "title" { "title".to_owned() } else { format!("p{i:03}") };
            props.insert(name.clone(), json!({"id": id, "name": name, "type": ty, ty.clone(): inner}));
        }
        if !has_title {
            props.insert("Name".into(), json!({"id": "title", "name": "Name", "type": "title", "title": {}}));
        }
        let rt = normalize_rich_text(&json!([{"text": {"content": title}}]), "title")
            .expect("fake notion: invalid database title");
        st.databases.insert(
            db_id.clone(),
            Database {
                id: db_id.clone(),
                title: rt.clone(),
                parent: json!({"type": "page_id", "page_id": parent_page}),
                data_sources: vec![ds_id.clone()],
            },
        );
        st.data_sources.insert(
            ds_id.clone(),
            DataSource { id: ds_id.clone(), database_id: db_id.clone(), title: rt, schema: props },
        );
        (db_id, ds_id)
    }

    /// Adds a row (page) to a data source with properties in Notion's write shape.
    #[allow(clippy::expect_used)] // test helper: an invalid seed is a bug in the test
    pub fn add_row(&self, data_source_id: &str, properties: Value) -> String {
        let mut st = self.state();
        let body = json!({"parent": {"type": "data_source_id", "data_source_id": data_source_id}, "properties": properties});
        let page = create_page(&mut st, &body, true).expect("fake notion: invalid seed row");
        page["id"].as_str().unwrap_or_default().to_owned()
    }

    /// A page in the API's read shape.
    pub fn page(&self, id: &str) -> Option<Value> {
        let st = self.state();
        st.pages.get(id).map(page_json)
    }

    /// The top-level blocks of a page (or children of a block), read shape.
    pub fn blocks(&self, id: &str) -> Vec<Value> {
        let st = self.state();
        let ids = st
            .pages
            .get(id)
            .map(|p| p.children.clone())
            .or_else(|| st.blocks.get(id).map(|b| b.children.clone()));
        ids.unwrap_or_default().iter().filter_map(|b| st.blocks.get(b)).map(block_json).collect()
    }

    /// Injects a failure (429 with `Retry-After`, 5xx, …) in Notion's error shape.
    pub fn inject(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    /// Successful writes (page create/update, block append).
    pub fn writes(&self) -> usize {
        self.state().writes
    }

    /// How many requests the rate limiter refused.
    pub fn rate_limited(&self) -> usize {
        self.state().rate_limited
    }
}

// ------------------------------------------------------------------------------------------
// Shapes
// ------------------------------------------------------------------------------------------

fn compact(id: &str) -> String {
    id.replace('-', "")
}

/// Accepts ids with or without dashes, like Notion.
fn canonical(id: &str) -> Option<String> {
    let c = compact(id).to_ascii_lowercase();
    (c.len() == 32 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("{}-{}-{}-{}-{}", &c[0..8], &c[8..12], &c[12..16], &c[16..20], &c[20..32]))
}

fn user() -> Value {
    json!({"object": "user", "id": "00000000-0000-4000-a000-000000000b07"})
}

fn plain(rt: &Value) -> String {
    rt.as_array().map(|l| l.iter().filter_map(|t| t["plain_text"].as_str()).collect()).unwrap_or_default()
}

/// Write-shape rich text → read shape, enforcing Notion's limits.
fn normalize_rich_text(v: &Value, path: &str) -> Result<Value, NotionError> {
    let Some(items) = v.as_array() else {
        return Err(invalid(format!(
            "body failed validation: {path} should be an array, instead was `{v}`."
        )));
    };
    if items.len() > 100 {
        return Err(invalid(format!(
            "body failed validation: {path}.length should be ≤ `100`, instead was `{}`.",
            items.len()
        )));
    }
    let mut out = Vec::new();
    for (i, t) in items.iter().enumerate() {
        let Some(content) = t["text"]["content"].as_str() else {
            return Err(invalid(format!(
                "body failed validation: {path}[{i}].text.content should be defined, instead was `undefined`."
            )));
        };
        let n = content.chars().count();
        if n > 2000 {
            return Err(invalid(format!(
                "body failed validation: {path}[{i}].text.content.length should be ≤ `2000`, instead was `{n}`."
            )));
        }
        let link = t["text"]["link"]["url"].as_str();
        let a = &t["annotations"];
        let flag = |k: &str| a[k].as_bool().unwrap_or(false);
        out.push(json!({
            "type": "text",
            "text": {"content": content, "link": link.map(|u| json!({"url": u}))},
            "annotations": {"bold": flag("bold"), "italic": flag("italic"), "strikethrough": flag("strikethrough"),
                "underline": flag("underline"), "code": flag("code"), "color": a["color"].as_str().unwrap_or("default")},
            "plain_text": content,
            "href": link,
        }));
    }
    Ok(json!(out))
}

fn page_url(p: &Page) -> String {
    let title = title_of(&p.properties);
    let slug: String = title.split_whitespace().collect::<Vec<_>>().join("-");
    let slug: String = slug.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    if slug.is_empty() {
        format!("https://www.notion.so/{}", compact(&p.id))
    } else {
        format!("https://www.notion.so/{slug}-{}", compact(&p.id))
    }
}

fn title_of(props: &Map<String, Value>) -> String {
    props.values().find(|v| v["type"] == "title").map(|v| plain(&v["title"])).unwrap_or_default()
}

fn page_json(p: &Page) -> Value {
    json!({
        "object": "page", "id": p.id, "created_time": p.created, "last_edited_time": p.edited,
        "created_by": user(), "last_edited_by": user(), "cover": null, "icon": null,
        "parent": p.parent, "archived": p.in_trash, "in_trash": p.in_trash, "properties": p.properties,
        "url": page_url(p), "public_url": null,
    })
}

fn block_json(b: &Block) -> Value {
    json!({
        "object": "block", "id": b.id, "parent": b.parent, "created_time": b.created, "last_edited_time": b.created,
        "created_by": user(), "last_edited_by": user(), "has_children": !b.children.is_empty(),
        "archived": false, "in_trash": false, "type": b.ty, b.ty.clone(): b.data,
    })
}

fn database_json(db: &Database, st: &NotionState) -> Value {
    let sources: Vec<Value> = db
        .data_sources
        .iter()
        .filter_map(|d| st.data_sources.get(d))
        .map(|d| json!({"id": d.id, "name": plain(&d.title)}))
        .collect();
    json!({"object": "database", "id": db.id, "title": db.title, "description": [], "parent": db.parent,
        "is_inline": false, "in_trash": false, "is_locked": false, "data_sources": sources, "icon": null, "cover": null,
        "url": format!("https://www.notion.so/{}", compact(&db.id)), "public_url": null})
}

fn data_source_json(ds: &DataSource, st: &NotionState) -> Value {
    let parent = st.databases.get(&ds.database_id).map(|d| d.parent.clone()).unwrap_or(Value::Null);
    json!({"object": "data_source", "id": ds.id, "title": ds.title, "description": [],
        "parent": {"type": "database_id", "database_id": ds.database_id}, "database_parent": parent,
        "properties": ds.schema, "archived": false, "in_trash": false,
        "url": format!("https://www.notion.so/{}", compact(&ds.database_id))})
}

/// Whether an object (page, block, database, data source) is reachable through something shared.
fn visible(st: &NotionState, id: &str) -> bool {
    let mut cur = id.to_owned();
    for _ in 0..64 {
        if st.shared.contains(&cur) {
            return true;
        }
        let parent = if let Some(p) = st.pages.get(&cur) {
            p.parent.clone()
        } else if let Some(b) = st.blocks.get(&cur) {
            b.parent.clone()
        } else if let Some(d) = st.databases.get(&cur) {
            d.parent.clone()
        } else if let Some(ds) = st.data_sources.get(&cur) {
            json!({"type": "database_id", "database_id": ds.database_id})
        } else {
            return false;
        };
        let next =
            ["page_id", "block_id", "database_id", "data_source_id"].iter().find_map(|k| parent[*k].as_str());
        match next {
            Some(n) => cur = n.to_owned(),
            None => return false,
        }
    }
    false
}

// ------------------------------------------------------------------------------------------
// Properties and blocks
// ------------------------------------------------------------------------------------------

/// A property value in write shape → read shape, checked against its schema entry.
fn property_value(name: &str, schema: &mut Value, v: &Value) -> Result<Value, NotionError> {
    let ty = schema["type"].as_str().unwrap_or_default().to_owned();
    let id = schema["id"].clone();
    let mismatch = || invalid(format!("{name} is expected to be {ty}."));
    let Some(inner) = v.get(&ty) else { return Err(mismatch()) };
    let value = match ty.as_str() {
        "title" | "rich_text" => normalize_rich_text(inner, &format!("body.properties.{name}.{ty}"))?,
        "number" => {
            if !(inner.is_number() || inner.is_null()) {
                return Err(mismatch());
            }
            inner.clone()
        }
        "checkbox" => inner.as_bool().map(Value::Bool).ok_or_else(mismatch)?,
        "url" | "email" | "phone_number" => {
            if !(inner.is_string() || inner.is_null()) {
                return Err(mismatch());
            }
            inner.clone()
        }
        "select" | "status" => {
            if inner.is_null() {
                Value::Null
            } else {
                let wanted = inner["name"].as_str().ok_or_else(mismatch)?;
                let options = schema[&ty]["options"].as_array().cloned().unwrap_or_default();
                match options.iter().find(|o| o["name"] == wanted) {
                    Some(o) => o.clone(),
                    None if ty == "status" => {
                        return Err(invalid(format!(
                            "Invalid status option. Status option \"{wanted}\" does not exist for {name}."
                        )));
                    }
                    None => {
                        // Notion adds unknown select options to the schema.
                        let o = json!({"id": format!("new{}", options.len()), "name": wanted, "color": "default"});
                        if let Some(list) = schema[&ty]["options"].as_array_mut() {
                            list.push(o.clone());
                        } else {
                            schema[&ty] = json!({"options": [o.clone()]});
                        }
                        o
                    }
                }
            }
        }
        "multi_select" => {
            let items = inner.as_array().ok_or_else(mismatch)?;
            let mut out = Vec::new();
            for it in items {
                let wanted = it["name"].as_str().ok_or_else(mismatch)?;
                out.push(json!({"id": format!("ms-{wanted}"), "name": wanted, "color": "default"}));
            }
            json!(out)
        }
        "date" => {
            if inner.is_null() {
                Value::Null
            } else {
                let start = inner["start"].as_str().ok_or_else(mismatch)?;
                if parse_rfc3339(start).is_none() {
                    return Err(invalid(format!(
                        "body failed validation: body.properties.{name}.date.start should be a valid ISO 8601 date string, instead was `\"{start}\"`."
                    )));
                }
                json!({"start": start, "end": inner["end"], "time_zone": null})
            }
        }
        "people" | "relation" => {
            let items = inner.as_array().ok_or_else(mismatch)?;
            if items.iter().any(|x| x["id"].as_str().and_then(canonical).is_none()) {
                return Err(invalid(format!(
                    "body failed validation: body.properties.{name}.{ty}[].id should be a valid uuid"
                )));
            }
            json!(items.iter().map(|x| json!({"id": x["id"]})).collect::<Vec<_>>())
        }
        other => {
            return Err(invalid(format!(
                "{name} is a {other} property, which cannot be set through the API."
            )));
        }
    };
    Ok(json!({"id": id, "type": ty, ty.clone(): value}))
}

/// Validates a block in write shape, stores it (and nested children) and returns its id.
fn store_block(
    st: &mut NotionState,
    b: &Value,
    parent: Value,
    path: &str,
    depth: usize,
) -> Result<String, NotionError> {
    let Some(ty) = b["type"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| b.as_object().and_then(|o| o.keys().find(|k| *k != "object" && *k != "type").cloned()))
    else {
        return Err(invalid(format!("body failed validation: {path}.type should be defined")));
    };
    let Some(data) = b.get(&ty).cloned() else {
        return Err(invalid(format!(
            "body failed validation: {path}.{ty} should be defined, instead was `undefined`."
        )));
    };
    let mut data = data;
    if RICH_TEXT_TYPES.contains(&ty.as_str()) {
        data["rich_text"] = normalize_rich_text(&data["rich_text"], &format!("{path}.{ty}.rich_text"))?;
        if data["color"].is_null() {
            data["color"] = json!("default");
        }
    } else if !["divider", "bookmark", "equation", "image", "embed", "table_of_contents", "breadcrumb"]
        .contains(&ty.as_str())
    {
        return Err(invalid(format!(
            "body failed validation: {path}.type `{ty}` is not supported for creation."
        )));
    }
    if ty == "to_do" && data["checked"].is_null() {
        data["checked"] = json!(false);
    }
    if ty == "code" {
        let lang = data["language"].as_str().unwrap_or_default();
        if !CODE_LANGUAGES.contains(&lang) {
            return Err(invalid(format!(
                "body failed validation: {path}.code.language should be one of the supported languages, instead was `\"{lang}\"`."
            )));
        }
        if data["caption"].is_null() {
            data["caption"] = json!([]);
        }
    }
    let nested = data.as_object_mut().and_then(|o| o.remove("children"));
    let id = st.id();
    let mut kids = Vec::new();
    if let Some(children) = nested.as_ref().and_then(Value::as_array) {
        if depth >= 2 {
            return Err(invalid(format!(
                "body failed validation: {path}.{ty}.children: nesting deeper than two levels is not allowed in one request."
            )));
        }
        for (i, c) in children.iter().enumerate() {
            kids.push(store_block(
                st,
                c,
                json!({"type": "block_id", "block_id": id}),
                &format!("{path}.{ty}.children[{i}]"),
                depth + 1,
            )?);
        }
    }
    let now = rfc3339(unix_now());
    st.blocks.insert(id.clone(), Block { id: id.clone(), parent, ty, data, children: kids, created: now });
    Ok(id)
}

fn store_children(
    st: &mut NotionState,
    children: &Value,
    parent: &Value,
) -> Result<Vec<String>, NotionError> {
    let Some(list) = children.as_array() else {
        return Err(invalid("body failed validation: body.children should be an array"));
    };
    if list.len() > 100 {
        return Err(invalid(format!(
            "body failed validation: body.children.length should be ≤ `100`, instead was `{}`.",
            list.len()
        )));
    }
    // A failed request changes nothing: roll back blocks stored before the bad one.
    let snapshot = st.blocks.clone();
    let mut ids = Vec::new();
    for (i, b) in list.iter().enumerate() {
        match store_block(st, b, parent.clone(), &format!("body.children[{i}]"), 1) {
            Ok(id) => ids.push(id),
            Err(e) => {
                st.blocks = snapshot;
                return Err(e);
            }
        }
    }
    Ok(ids)
}

fn create_page(st: &mut NotionState, body: &Value, seeding: bool) -> Result<Value, NotionError> {
    let parent = &body["parent"];
    let given = body["properties"].as_object().cloned().unwrap_or_default();
    let (parent, mut properties) = if let Some(p) = parent["page_id"].as_str() {
        let p = canonical(p)
            .ok_or_else(|| invalid("body failed validation: body.parent.page_id should be a valid uuid"))?;
        if !st.pages.contains_key(&p) || (!seeding && !visible(st, &p)) {
            return Err(not_found(&p));
        }
        let mut props = Map::new();
        for (k, v) in &given {
            if k != "title" && v.get("title").is_none() {
                return Err(invalid(format!(
                    "Invalid property: {k}. Pages under a page can only have a title."
                )));
            }
            let mut schema = json!({"id": "title", "type": "title"});
            props.insert("title".into(), property_value("title", &mut schema, v)?);
        }
        (json!({"type": "page_id", "page_id": p}), props)
    } else if let Some(ds_id) =
        parent["data_source_id"].as_str().or_else(|| parent["database_id"].as_str()).and_then(canonical)
    {
        // A database_id parent works while the database has a single data source.
        let ds_id = match st.databases.get(&ds_id) {
            Some(db) if db.data_sources.len() == 1 => db.data_sources[0].clone(),
            Some(_) => return Err(invalid("Database has multiple data sources; use parent.data_source_id.")),
            None => ds_id,
        };
        if !st.data_sources.contains_key(&ds_id) || (!seeding && !visible(st, &ds_id)) {
            return Err(not_found(&ds_id));
        }
        let mut schema = st.data_sources.get(&ds_id).map(|d| d.schema.clone()).unwrap_or_default();
        let mut props = Map::new();
        for (k, v) in &given {
            let Some(s) = schema.get_mut(k) else {
                return Err(invalid(format!("{k} is not a property that exists.")));
            };
            props.insert(k.clone(), property_value(k, s, v)?);
        }
        // Every schema property appears on the page, empty if not given.
        for (k, s) in &schema {
            if !props.contains_key(k) {
                let ty = s["type"].as_str().unwrap_or_default();
                let empty = match ty {
                    "title" | "rich_text" | "multi_select" | "people" | "relation" | "files" => json!([]),
                    "checkbox" => json!(false),
                    _ => Value::Null,
                };
                props.insert(k.clone(), json!({"id": s["id"], "type": ty, ty: empty}));
            }
        }
        if let Some(ds) = st.data_sources.get_mut(&ds_id) {
            ds.schema = schema;
        }
        (
            json!({"type": "data_source_id", "data_source_id": ds_id, "database_id": st.data_sources.get(&ds_id).map(|d| d.database_id.clone())}),
            props,
        )
    } else if parent["workspace"] == true && seeding {
        let mut props = Map::new();
        if let Some(v) = given.get("title") {
            let mut schema = json!({"id": "title", "type": "title"});
            props.insert("title".into(), property_value("title", &mut schema, v)?);
        }
        (json!({"type": "workspace", "workspace": true}), props)
    } else {
        return Err(invalid(
            "body failed validation: body.parent should be defined, instead was `undefined`.",
        ));
    };
    if !properties.values().any(|v| v["type"] == "title") {
        properties.insert("title".into(), json!({"id": "title", "type": "title", "title": []}));
    }
    if body.get("markdown").is_some() && body.get("children").is_some() {
        return Err(invalid("markdown and children are mutually exclusive"));
    }
    let id = st.id();
    let children = match body.get("children") {
        Some(c) => store_children(st, c, &json!({"type": "page_id", "page_id": id}))?,
        None => Vec::new(),
    };
    let now = rfc3339(unix_now());
    let page = Page {
        id: id.clone(),
        parent,
        properties,
        in_trash: false,
        created: now.clone(),
        edited: now,
        children,
    };
    let json = page_json(&page);
    st.pages.insert(id, page);
    Ok(json)
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
        Err(Ok(reply)) => reply,
        Err(Err(e)) => e.reply(),
    };
    rec.status = reply.status;
    st.requests.push(rec);
    drop(st);
    reply.into_response()
}

type Routed = Result<Value, Result<Reply, NotionError>>;

fn fail(e: NotionError) -> Result<Reply, NotionError> {
    Err(e)
}

fn route(st: &mut NotionState, rec: &RecordedRequest) -> Routed {
    if let Some(f) = take_fault(&mut st.faults, rec) {
        let (code, msg) = match f.status {
            429 => ("rate_limited", "You have been rate limited. Please try again in a few minutes."),
            502 => ("bad_gateway", "Bad gateway."),
            503 => ("service_unavailable", "Notion is unavailable, please try again later."),
            504 => ("gateway_timeout", "Gateway timeout."),
            409 => ("conflict_error", "Conflict occurred while saving. Please try again."),
            401 => ("unauthorized", "API token is invalid."),
            _ => ("internal_server_error", "Unexpected error occurred."),
        };
        let mut r = nerr(f.status, code, msg).reply();
        if let Some(ra) = &f.retry_after {
            r = r.with_header("retry-after", ra);
        }
        return Err(Ok(r));
    }
    let token = rec.header("authorization").and_then(|h| h.strip_prefix("Bearer ")).map(str::trim);
    if token != Some(st.token.as_str()) {
        return Err(fail(nerr(401, "unauthorized", "API token is invalid.")));
    }
    if let Err(wait) = st.bucket.take() {
        st.rate_limited += 1;
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let r = nerr(429, "rate_limited", "You have been rate limited. Please try again in a few minutes.")
            .reply();
        return Err(Ok(r.with_header("retry-after", &secs.to_string())));
    }
    let version = match rec.header("notion-version") {
        None => {
            return Err(fail(nerr(
                400,
                "missing_version",
                "Notion-Version header failed validation: Notion-Version header should be defined, instead was `undefined`.",
            )));
        }
        Some(v) if !VERSIONS.contains(&v) => {
            return Err(fail(invalid(format!(
                "Notion-Version header failed validation: `{v}` is not a valid version."
            ))));
        }
        Some(v) => v.to_owned(),
    };
    let modern = version.as_str() >= "2025-09-03";
    let body = if matches!(rec.method.as_str(), "POST" | "PATCH") && !rec.body.is_empty() {
        serde_json::from_slice::<Value>(&rec.body)
            .map_err(|e| fail(nerr(400, "invalid_json", format!("Error parsing JSON body: {e}"))))?
    } else {
        json!({})
    };
    let path = rec.path.strip_prefix("/v1").unwrap_or("");
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let id_of = |raw: &str, what: &str| -> Result<String, Result<Reply, NotionError>> {
        canonical(raw).ok_or_else(|| {
            fail(invalid(format!(
                "path failed validation: path.{what}_id should be a valid uuid, instead was `\"{raw}\"`."
            )))
        })
    };
    match (rec.method.as_str(), segs.as_slice()) {
        ("POST", ["search"]) => search(st, &body, modern).map_err(fail),
        ("GET", ["pages", raw]) => {
            let id = id_of(raw, "page")?;
            match st.pages.get(&id) {
                Some(p) if visible(st, &id) => Ok(page_json(p)),
                _ => Err(fail(not_found(&id))),
            }
        }
        ("POST", ["pages"]) => {
            let page = create_page(st, &body, false).map_err(fail)?;
            st.writes += 1;
            Ok(page)
        }
        ("PATCH", ["pages", raw]) => {
            let id = id_of(raw, "page")?;
            let page = update_page(st, &id, &body).map_err(fail)?;
            st.writes += 1;
            Ok(page)
        }
        ("GET", ["blocks", raw, "children"]) => {
            let id = id_of(raw, "block")?;
            let children = match (st.pages.get(&id), st.blocks.get(&id)) {
                (Some(p), _) => p.children.clone(),
                (None, Some(b)) => b.children.clone(),
                _ => return Err(fail(not_found(&id))),
            };
            if !visible(st, &id) {
                return Err(fail(not_found(&id)));
            }
            let blocks: Vec<Value> =
                children.iter().filter_map(|c| st.blocks.get(c)).map(block_json).collect();
            paginate(blocks, rec.query_value("start_cursor"), rec.query_value("page_size"), "block")
                .map_err(fail)
        }
        ("PATCH", ["blocks", raw, "children"]) => {
            let id = id_of(raw, "block")?;
            let is_page = st.pages.contains_key(&id);
            if !(is_page || st.blocks.contains_key(&id)) || !visible(st, &id) {
                return Err(fail(not_found(&id)));
            }
            let parent = if is_page {
                json!({"type": "page_id", "page_id": id})
            } else {
                json!({"type": "block_id", "block_id": id})
            };
            let ids = store_children(st, &body["children"], &parent).map_err(fail)?;
            if let Some(p) = st.pages.get_mut(&id) {
                p.children.extend(ids.iter().cloned());
                p.edited = rfc3339(unix_now());
            } else if let Some(b) = st.blocks.get_mut(&id) {
                b.children.extend(ids.iter().cloned());
            }
            st.writes += 1;
            let blocks: Vec<Value> = ids.iter().filter_map(|c| st.blocks.get(c)).map(block_json).collect();
            Ok(
                json!({"object": "list", "results": blocks, "next_cursor": null, "has_more": false, "type": "block", "block": {}}),
            )
        }
        ("GET", ["databases", raw]) => {
            let id = id_of(raw, "database")?;
            match st.databases.get(&id) {
                Some(db) if visible(st, &id) => Ok(database_json(db, st)),
                _ => Err(fail(nerr(
                    404,
                    "object_not_found",
                    format!(
                        "Could not find database with ID: {id}. Make sure the relevant pages and databases are shared with your integration."
                    ),
                ))),
            }
        }
        ("POST", ["databases", _, "query"]) if modern => Err(fail(nerr(
            400,
            "invalid_request_url",
            "Invalid request URL: databases/{id}/query is not available in this API version; query the data source.",
        ))),
        ("GET", ["data_sources", raw]) if modern => {
            let id = id_of(raw, "data_source")?;
            match st.data_sources.get(&id) {
                Some(ds) if visible(st, &id) => Ok(data_source_json(ds, st)),
                _ => Err(fail(not_found(&id))),
            }
        }
        ("POST", ["data_sources", raw, "query"]) if modern => {
            let id = id_of(raw, "data_source")?;
            if !st.data_sources.contains_key(&id) || !visible(st, &id) {
                return Err(fail(not_found(&id)));
            }
            query(st, &id, &body).map_err(fail)
        }
        _ => Err(fail(nerr(400, "invalid_request_url", "Invalid request URL."))),
    }
}

fn paginate(
    items: Vec<Value>,
    cursor: Option<&str>,
    size: Option<&str>,
    kind: &str,
) -> Result<Value, NotionError> {
    let size = match size.map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => return Err(invalid("body failed validation: page_size should be ≤ `100`.")),
    };
    let start = match cursor {
        None => 0,
        Some(c) => items
            .iter()
            .position(|x| x["id"] == c)
            .ok_or_else(|| invalid(format!("start_cursor `{c}` is invalid.")))?,
    };
    let page: Vec<Value> = items.iter().skip(start).take(size).cloned().collect();
    let next = items.get(start + size).map(|x| x["id"].clone()).unwrap_or(Value::Null);
    Ok(
        json!({"object": "list", "results": page, "next_cursor": next, "has_more": !next.is_null(), "type": kind, kind: {}}),
    )
}

fn search(st: &NotionState, body: &Value, modern: bool) -> Result<Value, NotionError> {
    let query = body["query"].as_str().unwrap_or_default().to_lowercase();
    let filter = body["filter"]["value"].as_str();
    let allowed = if modern { ["page", "data_source"] } else { ["page", "database"] };
    if let Some(f) = filter
        && !allowed.contains(&f)
    {
        return Err(invalid(format!(
            "body failed validation: body.filter.value should be `\"{}\"` or `\"{}\"`, instead was `\"{f}\"`.",
            allowed[0], allowed[1]
        )));
    }
    let mut results: Vec<(String, Value)> = Vec::new();
    if filter.is_none_or(|f| f == "page") {
        for p in st.pages.values().filter(|p| !p.in_trash && visible(st, &p.id)) {
            if title_of(&p.properties).to_lowercase().contains(&query) {
                results.push((p.edited.clone(), page_json(p)));
            }
        }
    }
    if filter.is_none_or(|f| f != "page") {
        for ds in st.data_sources.values().filter(|d| visible(st, &d.id)) {
            if plain(&ds.title).to_lowercase().contains(&query) {
                let v = if modern {
                    data_source_json(ds, st)
                } else {
                    st.databases.get(&ds.database_id).map(|d| database_json(d, st)).unwrap_or_default()
                };
                results.push((String::new(), v));
            }
        }
    }
    if body["sort"]["direction"] == "descending" {
        results.sort_by(|a, b| b.0.cmp(&a.0));
    }
    let items: Vec<Value> = results.into_iter().map(|(_, v)| v).collect();
    let size = body["page_size"].as_u64().map(|n| n.to_string());
    paginate(items, body["start_cursor"].as_str(), size.as_deref(), "page_or_data_source")
}

fn update_page(st: &mut NotionState, id: &str, body: &Value) -> Result<Value, NotionError> {
    let Some(page) = st.pages.get(id).cloned() else { return Err(not_found(id)) };
    if !visible(st, id) {
        return Err(not_found(id));
    }
    if page.in_trash && body["in_trash"] != false {
        return Err(invalid(
            "Can't edit block that is archived. You must unarchive the block before editing.",
        ));
    }
    let ds_id = page.parent["data_source_id"].as_str().map(str::to_owned);
    let mut schema: Map<String, Value> = match &ds_id {
        Some(d) => st.data_sources.get(d).map(|d| d.schema.clone()).unwrap_or_default(),
        None => page
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), json!({"id": v["id"], "type": v["type"]})))
            .collect(),
    };
    let mut props = page.properties.clone();
    if let Some(given) = body["properties"].as_object() {
        for (k, v) in given {
            let Some(s) = schema.get_mut(k) else {
                return Err(invalid(format!("{k} is not a property that exists.")));
            };
            props.insert(k.clone(), property_value(k, s, v)?);
        }
    }
    if let Some(ds) = ds_id.as_ref().and_then(|d| st.data_sources.get_mut(d)) {
        ds.schema = schema;
    }
    let Some(p) = st.pages.get_mut(id) else { return Err(not_found(id)) };
    p.properties = props;
    if let Some(t) = body["in_trash"].as_bool().or_else(|| body["archived"].as_bool()) {
        p.in_trash = t;
    }
    p.edited = rfc3339(unix_now());
    let p = p.clone();
    Ok(page_json(&p))
}

/// The value a filter compares: plain text, number, bool, or option names.
fn filter_matches(
    props: &Map<String, Value>,
    f: &Value,
    schema: &Map<String, Value>,
) -> Result<bool, NotionError> {
    if let Some(list) = f["and"].as_array() {
        for x in list {
            if !filter_matches(props, x, schema)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    if let Some(list) = f["or"].as_array() {
        for x in list {
            if filter_matches(props, x, schema)? {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    let Some(name) = f["property"].as_str() else {
        return Err(invalid("body failed validation: body.filter.property should be defined."));
    };
    let Some(def) = schema.get(name) else {
        return Err(invalid(format!("Could not find property with name or id: {name}")));
    };
    let ty = def["type"].as_str().unwrap_or_default();
    let cond = f.get(ty).and_then(Value::as_object).ok_or_else(|| {
        invalid(format!(
            "body failed validation: body.filter.{ty} should be defined (property {name} is of type {ty})."
        ))
    })?;
    let v = &props.get(name).cloned().unwrap_or_default()[ty];
    let text = match ty {
        "title" | "rich_text" => plain(v),
        "select" | "status" => v["name"].as_str().unwrap_or_default().to_owned(),
        "date" => v["start"].as_str().unwrap_or_default().to_owned(),
        "url" | "email" | "phone_number" => v.as_str().unwrap_or_default().to_owned(),
        _ => String::new(),
    };
    let names: Vec<String> = v
        .as_array()
        .map(|l| l.iter().filter_map(|x| x["name"].as_str()).map(str::to_owned).collect())
        .unwrap_or_default();
    let mut ok = true;
    for (op, arg) in cond {
        ok &= match (op.as_str(), ty) {
            ("equals", "checkbox") => v.as_bool() == arg.as_bool(),
            ("equals", "number") => v.as_f64() == arg.as_f64(),
            ("greater_than", "number") => v.as_f64().zip(arg.as_f64()).is_some_and(|(a, b)| a > b),
            ("less_than", "number") => v.as_f64().zip(arg.as_f64()).is_some_and(|(a, b)| a < b),
            ("contains", "multi_select") => names.iter().any(|n| Some(n.as_str()) == arg.as_str()),
            ("equals", _) => Some(text.as_str()) == arg.as_str(),
            ("does_not_equal", _) => Some(text.as_str()) != arg.as_str(),
            ("contains", _) => arg.as_str().is_some_and(|a| text.to_lowercase().contains(&a.to_lowercase())),
            ("starts_with", _) => arg.as_str().is_some_and(|a| text.starts_with(a)),
            ("is_empty", _) => text.is_empty() && names.is_empty() && v.is_null(),
            ("is_not_empty", _) => !(text.is_empty() && names.is_empty()),
            ("before" | "after" | "on_or_before" | "on_or_after", "date") => {
                let (Some(a), Some(b)) = (parse_rfc3339(&text), arg.as_str().and_then(parse_rfc3339)) else {
                    return Ok(false);
                };
                match op.as_str() {
                    "before" => a < b,
                    "after" => a > b,
                    "on_or_before" => a <= b,
                    _ => a >= b,
                }
            }
            _ => {
                return Err(invalid(format!(
                    "body failed validation: filter condition `{op}` is not valid for a {ty} property."
                )));
            }
        };
    }
    Ok(ok)
}

fn query(st: &NotionState, ds_id: &str, body: &Value) -> Result<Value, NotionError> {
    let schema = st.data_sources.get(ds_id).map(|d| d.schema.clone()).unwrap_or_default();
    let mut rows: Vec<&Page> =
        st.pages.values().filter(|p| !p.in_trash && p.parent["data_source_id"] == ds_id).collect();
    if let Some(f) = body.get("filter") {
        let mut kept = Vec::new();
        for p in rows {
            if filter_matches(&p.properties, f, &schema)? {
                kept.push(p);
            }
        }
        rows = kept;
    }
    rows.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
    if let Some(sorts) = body["sorts"].as_array() {
        for s in sorts.iter().rev() {
            let desc = s["direction"] == "descending";
            let key = |p: &Page| -> String {
                match (s["property"].as_str(), s["timestamp"].as_str()) {
                    (Some(name), _) => {
                        let v = p.properties.get(name).cloned().unwrap_or_default();
                        let ty = v["type"].as_str().unwrap_or_default().to_owned();
                        let inner = &v[&ty];
                        match ty.as_str() {
                            "title" | "rich_text" => plain(inner),
                            "select" | "status" => inner["name"].as_str().unwrap_or_default().to_owned(),
                            "date" => inner["start"].as_str().unwrap_or_default().to_owned(),
                            "number" => format!("{:020.6}", inner.as_f64().unwrap_or(0.0)),
                            _ => inner.to_string(),
                        }
                    }
                    (None, Some("last_edited_time")) => p.edited.clone(),
                    _ => p.created.clone(),
                }
            };
            if let Some(name) = s["property"].as_str()
                && !schema.contains_key(name)
            {
                return Err(invalid(format!("Could not find sort property with name or id: {name}")));
            }
            rows.sort_by(|a, b| {
                let o = key(a).cmp(&key(b));
                if desc { o.reverse() } else { o }
            });
        }
    }
    let items: Vec<Value> = rows.iter().map(|p| page_json(p)).collect();
    let size = body["page_size"].as_u64().map(|n| n.to_string());
    paginate(items, body["start_cursor"].as_str(), size.as_deref(), "page_or_data_source")
}
