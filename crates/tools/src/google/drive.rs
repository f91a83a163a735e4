//! Google Drive search and reading Docs (exported as text).

use serde_json::{Value, json};

use super::{Api, Session};
use crate::ToolOutput;
use crate::args;
use crate::error::ToolError;
use crate::http::seg;
use crate::trim::{fit, text_room, window};

const BASE: &str = "/drive/v3";

/// A Drive query string literal: `'` and `\` escaped with `\`.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

pub(super) fn mime_for(kind: &str) -> &'static str {
    match kind {
        "document" => "application/vnd.google-apps.document",
        "spreadsheet" => "application/vnd.google-apps.spreadsheet",
        "presentation" => "application/vnd.google-apps.presentation",
        "folder" => "application/vnd.google-apps.folder",
        _ => "application/pdf",
    }
}

fn kind_of(mime: &str) -> &str {
    match mime {
        "application/vnd.google-apps.document" => "document",
        "application/vnd.google-apps.spreadsheet" => "spreadsheet",
        "application/vnd.google-apps.presentation" => "presentation",
        "application/vnd.google-apps.folder" => "folder",
        "application/pdf" => "pdf",
        other => other,
    }
}

pub(super) async fn search(g: &mut Session<'_>, a: &Value) -> Result<ToolOutput, ToolError> {
    let mut terms = vec!["trashed = false".to_owned()];
    let full_text = args::str(a, "query");
    if let Some(t) = full_text {
        terms.push(format!("fullText contains {}", literal(t)));
    }
    if let Some(n) = args::str(a, "name") {
        terms.push(format!("name contains {}", literal(n)));
    }
    if let Some(k) = args::str(a, "type") {
        terms.push(format!("mimeType = {}", literal(mime_for(k))));
    }
    let mut q = vec![
        ("q", terms.join(" and ")),
        ("pageSize", args::u64_or(a, "max_results", 20).to_string()),
        (
            "fields",
            "nextPageToken,files(id,name,mimeType,modifiedTime,owners(emailAddress),webViewLink,size)".into(),
        ),
        ("supportsAllDrives", "true".into()),
        ("includeItemsFromAllDrives", "true".into()),
        ("corpora", "allDrives".into()),
    ];
    // Drive sorts full-text matches by relevance and rejects orderBy with fullText.
    if full_text.is_none() {
        q.push(("orderBy", "modifiedTime desc".into()));
    }
    if let Some(t) = args::str(a, "page_token") {
        q.push(("pageToken", t.to_owned()));
    }
    let r = g.get(Api::Drive, &format!("{BASE}/files"), &q).await?;
    let files: Vec<Value> = r["files"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|f| {
                    json!({
                        "id": f["id"],
                        "name": f["name"],
                        "type": kind_of(f["mimeType"].as_str().unwrap_or_default()),
                        "modified": f["modifiedTime"],
                        "owner": f["owners"][0]["emailAddress"],
                        "link": f["webViewLink"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = json!({ "files": files });
    if let Some(t) = r["nextPageToken"].as_str() {
        out["next_page_token"] = json!(t);
    }
    Ok(ToolOutput::new(fit(out, g.budget(), Some("files"), "use next_page_token or narrow the search")))
}

pub(super) async fn read_doc(g: &mut Session<'_>, a: &Value) -> Result<ToolOutput, ToolError> {
    let id = args::req(a, "document_id");
    let path = format!("{BASE}/files/{}", seg(id));
    let meta = g
        .get(
            Api::Drive,
            &path,
            &[("fields", "id,name,mimeType".into()), ("supportsAllDrives", "true".into())],
        )
        .await?;
    let mime = meta["mimeType"].as_str().unwrap_or_default();
    let answer = match mime {
        "application/vnd.google-apps.document" | "application/vnd.google-apps.presentation" => {
            g.request(
                reqwest::Method::GET,
                Api::Drive,
                &format!("{path}/export"),
                &[("mimeType", "text/plain".into())],
                None,
            )
            .await?
        }
        "application/vnd.google-apps.spreadsheet" => {
            g.request(
                reqwest::Method::GET,
                Api::Drive,
                &format!("{path}/export"),
                &[("mimeType", "text/csv".into())],
                None,
            )
            .await?
        }
        m if m.starts_with("text/") || m == "application/json" => {
            g.request(reqwest::Method::GET, Api::Drive, &path, &[("alt", "media".into())], None).await?
        }
        other => {
            return Err(ToolError::Api {
                service: "Google",
                status: 400,
                message: format!(
                    "{} is a {} file, which cannot be read as text; only Google Docs, Slides, Sheets and text files can",
                    meta["name"].as_str().unwrap_or(id),
                    kind_of(other)
                ),
            });
        }
    };
    let text = answer.text();
    let text = text.trim_start_matches('\u{feff}');
    let offset = usize::try_from(args::u64_or(a, "offset", 0)).unwrap_or(usize::MAX);
    let (part, more) = window(text, offset, text_room(g.budget(), text));
    let mut out = json!({
        "document_id": id,
        "name": meta["name"],
        "type": kind_of(mime),
        "total_characters": text.chars().count(),
        "offset": offset,
        "text": part,
    });
    if let Some(m) = more {
        out["more"] = json!(m);
    }
    Ok(ToolOutput::new(fit(out, g.budget(), None, "")))
}
