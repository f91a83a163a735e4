//! Google Sheets: read a range (or list sheets), update a range, append rows.

use reqwest::Method;
use serde_json::{Value, json};

use super::{Api, Session};
use crate::ToolOutput;
use crate::args;
use crate::error::ToolError;
use crate::http::seg;
use crate::trim::fit;

const BASE: &str = "/v4/spreadsheets";

pub(super) async fn read(g: &mut Session<'_>, a: &Value) -> Result<ToolOutput, ToolError> {
    let id = args::req(a, "spreadsheet_id");
    let Some(range) = args::str(a, "range") else {
        let meta = g
            .get(
                Api::Sheets,
                &format!("{BASE}/{}", seg(id)),
                &[("fields", "properties.title,sheets.properties".into())],
            )
            .await?;
        let sheets: Vec<Value> = meta["sheets"]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|s| {
                        let p = &s["properties"];
                        json!({"title": p["title"], "rows": p["gridProperties"]["rowCount"], "columns": p["gridProperties"]["columnCount"]})
                    })
                    .collect()
            })
            .unwrap_or_default();
        let out = json!({"spreadsheet_id": id, "title": meta["properties"]["title"], "sheets": sheets,
            "hint": "read a range such as '<sheet title>!A1:Z50'"});
        return Ok(ToolOutput::new(fit(out, g.budget(), Some("sheets"), "")));
    };
    let r = g
        .get(
            Api::Sheets,
            &format!("{BASE}/{}/values/{}", seg(id), seg(range)),
            &[("valueRenderOption", "FORMATTED_VALUE".into()), ("majorDimension", "ROWS".into())],
        )
        .await?;
    let rows = r["values"].as_array().cloned().unwrap_or_default();
    let out = json!({"range": r["range"], "row_count": rows.len(), "rows": rows});
    Ok(ToolOutput::new(fit(out, g.budget(), Some("rows"), "read the remaining rows with a smaller range")))
}

/// `sheets_update` (`append == false`) and `sheets_append`.
pub(super) async fn write(g: &mut Session<'_>, a: &Value, append: bool) -> Result<ToolOutput, ToolError> {
    let id = args::req(a, "spreadsheet_id");
    let range = args::req(a, "range");
    let input = if args::bool(a, "raw") == Some(true) { "RAW" } else { "USER_ENTERED" };
    let values = a.get("values").cloned().unwrap_or_else(|| json!([]));
    if append {
        let path = format!("{BASE}/{}/values/{}:append", seg(id), seg(range));
        let q = [("valueInputOption", input.to_owned()), ("insertDataOption", "INSERT_ROWS".to_owned())];
        let body = json!({"majorDimension": "ROWS", "values": values});
        let r = g.json(Method::POST, Api::Sheets, &path, &q, Some(&body)).await?;
        let u = &r["updates"];
        let out = json!({"status": "appended", "table_range": r["tableRange"], "updated_range": u["updatedRange"],
            "updated_rows": u["updatedRows"], "updated_cells": u["updatedCells"]});
        Ok(ToolOutput::with_id(out, u["updatedRange"].as_str().map(str::to_owned)))
    } else {
        let path = format!("{BASE}/{}/values/{}", seg(id), seg(range));
        let q = [("valueInputOption", input.to_owned())];
        let body = json!({"range": range, "majorDimension": "ROWS", "values": values});
        let r = g.json(Method::PUT, Api::Sheets, &path, &q, Some(&body)).await?;
        let out = json!({"status": "updated", "updated_range": r["updatedRange"], "updated_rows": r["updatedRows"],
            "updated_columns": r["updatedColumns"], "updated_cells": r["updatedCells"]});
        Ok(ToolOutput::with_id(out, r["updatedRange"].as_str().map(str::to_owned)))
    }
}
