//! Notion tools (company integration token, `Notion-Version` pinned, ≈3 requests/s).

mod markdown;

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::error::ToolError;
use crate::http::{Answer, backoff, is_transient, seg, send, short};
use crate::spec::ToolSpec;
use crate::trim::{fit, window};
use crate::{Inner, NOTION_VERSION, ToolContext, ToolOutput, args};

const SERVICE: &str = "Notion";
/// Blocks rendered for one page read; deeper/longer pages get a note instead.
const MAX_BLOCKS: usize = 600;
const MAX_DEPTH: usize = 3;

pub(crate) const NOT_SHARED: &str = "not found: the page or database does not exist or is not shared with the integration. In Notion, open it, choose ••• → Connections and add the integration, then try again";

/// A Notion id from an id (with or without dashes) or a page URL: the trailing 32 hex digits.
pub(crate) fn notion_id(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s.split(['?', '#']).next().unwrap_or(s);
    let last = s.trim_end_matches('/').rsplit('/').next().unwrap_or(s);
    let compact: String = last.chars().filter(|c| *c != '-').collect();
    if compact.len() < 32 {
        return None;
    }
    let hex = &compact[compact.len() - 32..];
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let h = hex.to_ascii_lowercase();
    Some(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
}

pub(crate) fn check_args(tool: &str, a: &Value) -> Result<(), ToolError> {
    for key in ["page_id", "database_id", "parent_page_id"] {
        if let Some(v) = args::str(a, key)
            && notion_id(v).is_none()
        {
            return Err(ToolError::invalid(format!(
                "{key} must be a Notion id (32 hex digits) or a page URL"
            )));
        }
    }
    match tool {
        "notion_create_page" => {
            if args::has(a, "parent_page_id") == args::has(a, "database_id") {
                return Err(ToolError::invalid("give exactly one of parent_page_id or database_id"));
            }
            if args::has(a, "properties") && !args::has(a, "database_id") {
                return Err(ToolError::invalid("properties only apply to rows of a database (database_id)"));
            }
        }
        "notion_update_page" if !args::has(a, "title") && !args::has(a, "properties") => {
            return Err(ToolError::invalid("nothing to change: give title or properties"));
        }
        "notion_append" if markdown::to_blocks(args::req(a, "content")).is_empty() => {
            return Err(ToolError::invalid("content has no text to append"));
        }
        _ => {}
    }
    Ok(())
}

pub(crate) async fn call(
    inner: &Inner,
    spec: &'static ToolSpec,
    a: &Value,
    ctx: &ToolContext,
) -> Result<ToolOutput, ToolError> {
    let key = inner.settings.notion_api_key.as_ref().ok_or_else(|| {
        ToolError::NotConfigured(
            "Notion is not configured: set skills.installed.steipete/notion.config.apiKey (NOTION_API_KEY)"
                .into(),
        )
    })?;
    let n = Notion { inner, key, idempotency_key: ctx.idempotency_key.as_deref() };
    let id = |k: &str| args::str(a, k).and_then(notion_id).unwrap_or_default();
    match spec.name {
        "notion_search" => n.search(a).await,
        "notion_read_page" => n.read_page(&id("page_id"), a).await,
        "notion_query_database" => n.query(&id("database_id"), a).await,
        "notion_create_page" => n.create(a).await,
        "notion_update_page" => n.update(&id("page_id"), a).await,
        "notion_append" => {
            let page = id("page_id");
            let count = n.append(&page, &markdown::to_blocks(args::req(a, "content"))).await?;
            Ok(ToolOutput::with_id(
                json!({"status": "appended", "page_id": page, "blocks": count}),
                Some(page),
            ))
        }
        other => Err(ToolError::UnknownTool(other.to_owned())),
    }
}

struct Notion<'a> {
    inner: &'a Inner,
    key: &'a SecretString,
    idempotency_key: Option<&'a str>,
}

impl Notion<'_> {
    fn budget(&self) -> usize {
        self.inner.settings.result_budget
    }

    /// One request through the shared limiter; 429s are waited out (`Retry-After`), 5xx retried
    /// for reads only.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        read: bool,
    ) -> Result<Value, ToolError> {
        let url = format!("{}{path}", self.inner.settings.notion_api_base.trim_end_matches('/'));
        let mut attempt = 0u32;
        loop {
            self.inner.notion_limiter.acquire().await;
            let mut rb = self
                .inner
                .http
                .request(method.clone(), &url)
                .bearer_auth(self.key.expose_secret())
                .header("Notion-Version", NOTION_VERSION);
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
                let wait = answer.retry_after().unwrap_or_else(|| backoff(attempt + 1));
                if wait > self.inner.settings.max_retry_wait {
                    return Err(ToolError::RateLimited { service: SERVICE, retry_after: wait });
                }
                tracing::debug!(?wait, "notion rate limited; waiting");
                self.inner.notion_limiter.pause_until(Instant::now() + wait).await;
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

    async fn search(&self, a: &Value) -> Result<ToolOutput, ToolError> {
        let mut body = json!({
            "query": args::str(a, "query").unwrap_or_default(),
            "page_size": args::u64_or(a, "max_results", 10),
            "sort": {"direction": "descending", "timestamp": "last_edited_time"},
        });
        if let Some(t) = args::str(a, "type") {
            // Since 2025-09-03 databases are searched as their data sources.
            let value = if t == "database" { "data_source" } else { "page" };
            body["filter"] = json!({"property": "object", "value": value});
        }
        if let Some(c) = args::str(a, "start_cursor") {
            body["start_cursor"] = json!(c);
        }
        let r = self.request(Method::POST, "/search", Some(&body), true).await?;
        let results: Vec<Value> = r["results"]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|x| match x["object"].as_str() {
                        Some("page") => json!({"type": "page", "id": x["id"], "title": page_title(x), "url": x["url"],
                            "last_edited": x["last_edited_time"]}),
                        _ => json!({"type": "database", "database_id": x["parent"]["database_id"].as_str().or(x["id"].as_str()),
                            "data_source_id": x["id"], "title": markdown::plain(&x["title"]), "url": x["url"],
                            "last_edited": x["last_edited_time"]}),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut out = json!({"results": results});
        if r["has_more"] == true {
            out["next_cursor"] = r["next_cursor"].clone();
        }
        if results_empty(&out) {
            out["note"] =
                json!("nothing found; the integration only sees pages shared with it (••• → Connections)");
        }
        Ok(ToolOutput::new(fit(
            out,
            self.budget(),
            Some("results"),
            "use next_cursor or a more specific query",
        )))
    }

    /// All children of a block, following `next_cursor`, then their children (bounded).
    async fn children(
        &self,
        id: &str,
        depth: usize,
        seen: &mut usize,
    ) -> Result<(Vec<Value>, bool), ToolError> {
        let mut blocks = Vec::new();
        let mut cursor: Option<String> = None;
        let mut truncated = false;
        loop {
            let mut path = format!("/blocks/{}/children?page_size=100", seg(id));
            if let Some(c) = &cursor {
                path.push_str(&format!("&start_cursor={}", seg(c)));
            }
            let r = self.request(Method::GET, &path, None, true).await?;
            for b in r["results"].as_array().cloned().unwrap_or_default() {
                if *seen >= MAX_BLOCKS {
                    truncated = true;
                    break;
                }
                *seen += 1;
                blocks.push(b);
            }
            cursor = r["next_cursor"].as_str().map(str::to_owned);
            if truncated || r["has_more"] != true || cursor.is_none() {
                break;
            }
        }
        for b in &mut blocks {
            let ty = b["type"].as_str().unwrap_or_default().to_owned();
            if b["has_children"] == true && ty != "child_page" && ty != "child_database" {
                if depth + 1 >= MAX_DEPTH || *seen >= MAX_BLOCKS {
                    truncated = true;
                    continue;
                }
                let id = b["id"].as_str().unwrap_or_default().to_owned();
                let (kids, t) = Box::pin(self.children(&id, depth + 1, seen)).await?;
                truncated |= t;
                b["children"] = json!(kids);
            }
        }
        Ok((blocks, truncated))
    }

    async fn read_page(&self, id: &str, a: &Value) -> Result<ToolOutput, ToolError> {
        let page = self.request(Method::GET, &format!("/pages/{}", seg(id)), None, true).await?;
        let mut seen = 0;
        let (blocks, truncated) = self.children(id, 0, &mut seen).await?;
        let mut md = String::new();
        markdown::render_blocks(&blocks, 0, &mut md);
        if truncated {
            md.push_str("\n[… the page has more (deeper or further) content than was read]\n");
        }
        let md = md.trim_end().to_owned();
        let offset = usize::try_from(args::u64_or(a, "offset", 0)).unwrap_or(usize::MAX);
        let props = flatten_properties(&page["properties"], true);
        let room = crate::trim::text_room(self.budget().saturating_sub(json_len(&props)), &md);
        let (part, more) = window(&md, offset, room);
        let mut out = json!({
            "id": page["id"], "title": page_title(&page), "url": page["url"], "in_trash": page["in_trash"],
            "properties": props, "total_characters": md.chars().count(), "offset": offset, "markdown": part,
        });
        if let Some(m) = more {
            out["more"] = json!(m);
        }
        Ok(ToolOutput::new(fit(out, self.budget(), None, "")))
    }

    async fn data_source(&self, database_id: &str) -> Result<String, ToolError> {
        let db = self.request(Method::GET, &format!("/databases/{}", seg(database_id)), None, true).await?;
        db["data_sources"][0]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ToolError::unexpected(SERVICE, "the database has no data source"))
    }

    async fn query(&self, database_id: &str, a: &Value) -> Result<ToolOutput, ToolError> {
        let ds = self.data_source(database_id).await?;
        let mut body = json!({"page_size": args::u64_or(a, "max_results", 20)});
        for k in ["filter", "sorts", "start_cursor"] {
            if let Some(v) = a.get(k) {
                body[k] = v.clone();
            }
        }
        let r = self
            .request(Method::POST, &format!("/data_sources/{}/query", seg(&ds)), Some(&body), true)
            .await?;
        let rows: Vec<Value> = r["results"]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|p| json!({"id": p["id"], "url": p["url"], "properties": flatten_properties(&p["properties"], false)}))
                    .collect()
            })
            .unwrap_or_default();
        let mut out = json!({"database_id": database_id, "rows": rows});
        if r["has_more"] == true {
            out["next_cursor"] = r["next_cursor"].clone();
        }
        Ok(ToolOutput::new(fit(out, self.budget(), Some("rows"), "use next_cursor or a filter")))
    }

    async fn create(&self, a: &Value) -> Result<ToolOutput, ToolError> {
        let title = args::req(a, "title");
        let blocks = markdown::to_blocks(args::str(a, "content").unwrap_or_default());
        let (parent, properties) = if let Some(db) = args::str(a, "database_id").and_then(notion_id) {
            let ds = self.data_source(&db).await?;
            let schema =
                self.request(Method::GET, &format!("/data_sources/{}", seg(&ds)), None, true).await?;
            let schema = schema["properties"].as_object().cloned().unwrap_or_default();
            let types: Map<String, Value> =
                schema.iter().map(|(k, v)| (k.clone(), v["type"].clone())).collect();
            let mut props = convert_properties(a.get("properties"), &types)?;
            let title_name =
                types.iter().find(|(_, t)| *t == "title").map(|(k, _)| k.clone()).unwrap_or("Name".into());
            props.insert(title_name, json!({"title": markdown::inline(title)}));
            (json!({"type": "data_source_id", "data_source_id": ds}), props)
        } else {
            let page = args::str(a, "parent_page_id").and_then(notion_id).unwrap_or_default();
            let mut props = Map::new();
            props.insert("title".into(), json!({"title": markdown::inline(title)}));
            (json!({"type": "page_id", "page_id": page}), props)
        };
        let first: Vec<Value> = blocks.iter().take(100).cloned().collect();
        let mut body = json!({"parent": parent, "properties": properties});
        if !first.is_empty() {
            body["children"] = json!(first);
        }
        let page = self.request(Method::POST, "/pages", Some(&body), false).await?;
        let id = page["id"].as_str().unwrap_or_default().to_owned();
        if blocks.len() > 100 {
            self.append(&id, &blocks[100..]).await?;
        }
        Ok(ToolOutput::with_id(
            json!({"status": "created", "page_id": id, "url": page["url"], "title": title, "blocks": blocks.len()}),
            Some(id),
        ))
    }

    async fn update(&self, id: &str, a: &Value) -> Result<ToolOutput, ToolError> {
        let page = self.request(Method::GET, &format!("/pages/{}", seg(id)), None, true).await?;
        let types: Map<String, Value> = page["properties"]
            .as_object()
            .map(|p| p.iter().map(|(k, v)| (k.clone(), v["type"].clone())).collect())
            .unwrap_or_default();
        let mut props = convert_properties(a.get("properties"), &types)?;
        if let Some(title) = args::str(a, "title") {
            let name =
                types.iter().find(|(_, t)| *t == "title").map(|(k, _)| k.clone()).unwrap_or("title".into());
            props.insert(name, json!({"title": markdown::inline(title)}));
        }
        let body = json!({"properties": props});
        let page = self.request(Method::PATCH, &format!("/pages/{}", seg(id)), Some(&body), false).await?;
        Ok(ToolOutput::with_id(
            json!({"status": "updated", "page_id": page["id"], "url": page["url"], "title": page_title(&page),
                   "properties": flatten_properties(&page["properties"], true)}),
            Some(id.to_owned()),
        ))
    }

    /// Appends blocks in requests of at most 100 (Notion's limit).
    async fn append(&self, id: &str, blocks: &[Value]) -> Result<usize, ToolError> {
        for chunk in blocks.chunks(100) {
            let body = json!({"children": chunk});
            self.request(Method::PATCH, &format!("/blocks/{}/children", seg(id)), Some(&body), false).await?;
        }
        Ok(blocks.len())
    }
}

fn results_empty(v: &Value) -> bool {
    v["results"].as_array().is_none_or(Vec::is_empty)
}

fn json_len(v: &Value) -> usize {
    serde_json::to_string(v).map(|s| s.len()).unwrap_or(0)
}

fn page_title(page: &Value) -> String {
    if let Some(t) = page["title"].as_array() {
        return markdown::plain(&json!(t));
    }
    page["properties"]
        .as_object()
        .and_then(|p| p.values().find(|v| v["type"] == "title"))
        .map(|v| markdown::plain(&v["title"]))
        .unwrap_or_default()
}

/// Property values as plain JSON (`"Status": "Done"`), for the model.
fn flatten_properties(props: &Value, skip_title: bool) -> Value {
    let mut out = Map::new();
    let Some(props) = props.as_object() else { return Value::Object(out) };
    for (name, p) in props {
        let ty = p["type"].as_str().unwrap_or_default();
        if skip_title && ty == "title" {
            continue;
        }
        let v = &p[ty];
        let names = |v: &Value| -> Value {
            json!(
                v.as_array()
                    .map(|l| l.iter().map(|x| x["name"].clone()).collect::<Vec<_>>())
                    .unwrap_or_default()
            )
        };
        let flat = match ty {
            "title" | "rich_text" => json!(markdown::plain(v)),
            "select" | "status" => v["name"].clone(),
            "multi_select" => names(v),
            "date" => {
                if v["end"].is_null() {
                    v["start"].clone()
                } else {
                    json!({"start": v["start"], "end": v["end"]})
                }
            }
            "people" => json!(
                v.as_array()
                    .map(|l| l
                        .iter()
                        .map(|x| x["name"].as_str().map_or(x["id"].clone(), |n| json!(n)))
                        .collect::<Vec<_>>())
                    .unwrap_or_default()
            ),
            "relation" => json!(
                v.as_array()
                    .map(|l| l.iter().map(|x| x["id"].clone()).collect::<Vec<_>>())
                    .unwrap_or_default()
            ),
            "formula" => v.get(v["type"].as_str().unwrap_or_default()).cloned().unwrap_or(Value::Null),
            "unique_id" => match (v["prefix"].as_str(), &v["number"]) {
                (Some(p), n) => json!(format!("{p}-{n}")),
                (None, n) => n.clone(),
            },
            "files" => names(v),
            "rollup" => v.get(v["type"].as_str().unwrap_or_default()).cloned().unwrap_or(Value::Null),
            "created_by" | "last_edited_by" => v["name"].clone(),
            _ => v.clone(),
        };
        out.insert(name.clone(), flat);
    }
    Value::Object(out)
}

/// The model's simple property values (`"Status": "Done"`) in Notion's write shape, by the
/// property types of the schema. Unknown names fail before anything is written.
fn convert_properties(
    given: Option<&Value>,
    types: &Map<String, Value>,
) -> Result<Map<String, Value>, ToolError> {
    let mut out = Map::new();
    let Some(given) = given.and_then(Value::as_object) else { return Ok(out) };
    for (name, v) in given {
        let Some(ty) = types.get(name).and_then(Value::as_str) else {
            let known: Vec<&str> = types.keys().map(String::as_str).collect();
            return Err(ToolError::invalid(format!(
                "no property {name:?}; the properties are: {}",
                known.join(", ")
            )));
        };
        let bad =
            || ToolError::invalid(format!("property {name:?} is of type {ty}; the value {v} does not fit"));
        // Already in Notion's shape: pass through.
        if v.as_object().is_some_and(|o| o.contains_key(ty)) {
            out.insert(name.clone(), v.clone());
            continue;
        }
        let value = match ty {
            "title" | "rich_text" => json!({ty: markdown::inline(v.as_str().ok_or_else(bad)?)}),
            "number" => match v {
                Value::Number(_) | Value::Null => json!({"number": v}),
                Value::String(s) => {
                    let n = s.trim().parse::<f64>().map_err(|e| {
                        ToolError::invalid(format!("property {name:?} is a number; {s:?} is not one ({e})"))
                    })?;
                    json!({"number": n})
                }
                _ => return Err(bad()),
            },
            "select" | "status" => match v {
                Value::String(s) => json!({ty: {"name": s}}),
                Value::Null => json!({ty: null}),
                _ => return Err(bad()),
            },
            "multi_select" => {
                let items: Vec<String> = match v {
                    Value::Array(l) => l
                        .iter()
                        .map(|x| x.as_str().map(str::to_owned).ok_or_else(bad))
                        .collect::<Result<_, _>>()?,
                    Value::String(s) => {
                        s.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect()
                    }
                    _ => return Err(bad()),
                };
                json!({"multi_select": items.iter().map(|n| json!({"name": n})).collect::<Vec<_>>()})
            }
            "date" => match v {
                Value::String(s) => json!({"date": {"start": s}}),
                Value::Object(o) if o.contains_key("start") => json!({"date": v}),
                Value::Null => json!({"date": null}),
                _ => return Err(bad()),
            },
            "checkbox" => json!({"checkbox": v.as_bool().ok_or_else(bad)?}),
            "url" | "email" | "phone_number" => match v {
                Value::String(_) | Value::Null => json!({ty: v}),
                _ => return Err(bad()),
            },
            "people" | "relation" => {
                let ids: Vec<Value> = match v {
                    Value::Array(l) => l
                        .iter()
                        .map(|x| x.as_str().map(|s| json!({"id": s})).ok_or_else(bad))
                        .collect::<Result<_, _>>()?,
                    Value::String(s) => vec![json!({"id": s})],
                    _ => return Err(bad()),
                };
                json!({ty: ids})
            }
            other => {
                return Err(ToolError::invalid(format!(
                    "property {name:?} ({other}) is computed by Notion and cannot be set"
                )));
            }
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}

/// Notion's `{"object":"error","status","code","message"}` as an actionable line.
fn error(answer: &Answer) -> ToolError {
    let body = answer.json_or_null();
    let code = body["code"].as_str().unwrap_or_default();
    let message = body["message"].as_str().map(short).unwrap_or_else(|| short(&answer.text()));
    let status = answer.status.as_u16();
    let text = match code {
        "object_not_found" => NOT_SHARED.to_owned(),
        "unauthorized" => {
            return ToolError::NotConfigured(
                "Notion rejected the integration token (unauthorized): check NOTION_API_KEY".into(),
            );
        }
        "restricted_resource" => format!(
            "the integration lacks a capability for this ({message}); enable it in the Notion integration settings"
        ),
        "validation_error" | "invalid_request" | "invalid_json" | "invalid_request_url" => {
            format!("rejected the request: {message}")
        }
        "conflict_error" => "the page was changed at the same time (conflict); try again".into(),
        "rate_limited" => {
            return ToolError::RateLimited {
                service: SERVICE,
                retry_after: std::time::Duration::from_secs(1),
            };
        }
        _ if status >= 500 => format!("Notion had a server error ({status}); try again later"),
        _ => format!("request failed ({status} {code}): {message}"),
    };
    ToolError::Api { service: SERVICE, status, message: text }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn ids_from_urls() {
        let want = "1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d";
        assert_eq!(notion_id("1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d").unwrap(), want);
        assert_eq!(notion_id(want).unwrap(), want);
        assert_eq!(
            notion_id("https://www.notion.so/acme/Team-Plan-1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d?pvs=4").unwrap(),
            want
        );
        assert!(notion_id("not-an-id").is_none());
    }

    #[test]
    fn converts_simple_property_values() {
        let types: Map<String, Value> = serde_json::from_value(json!({"Status":"status","Tags":"multi_select","Due":"date","Done":"checkbox","N":"number","F":"formula"})).unwrap();
        let got = convert_properties(
            Some(&json!({"Status":"Done","Tags":"a, b","Due":"2026-02-01","Done":true,"N":"4.5"})),
            &types,
        )
        .unwrap();
        assert_eq!(got["Status"], json!({"status":{"name":"Done"}}));
        assert_eq!(got["Tags"], json!({"multi_select":[{"name":"a"},{"name":"b"}]}));
        assert_eq!(got["Due"], json!({"date":{"start":"2026-02-01"}}));
        assert_eq!(got["N"], json!({"number":4.5}));
        assert!(
            convert_properties(Some(&json!({"Nope":1})), &types)
                .unwrap_err()
                .to_string()
                .contains("the properties are")
        );
        assert!(convert_properties(Some(&json!({"F":1})), &types).is_err());
        assert!(convert_properties(Some(&json!({"Done":"yes"})), &types).is_err());
    }
}
