//! Notion tools against the fake Notion API over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::notion_toolbox;
use crewgate_testkit::fake_common::Fault;
use crewgate_testkit::fake_notion::FakeNotion;
use crewgate_tools::{NOTION_VERSION, ToolContext, ToolError};
use serde_json::{Value, json};

fn para(text: &str) -> Value {
    json!({"type": "paragraph", "paragraph": {"rich_text": [{"text": {"content": text}}]}})
}

fn item(ty: &str, text: &str) -> Value {
    json!({"type": ty, ty: {"rich_text": [{"text": {"content": text}}]}})
}

fn cx() -> ToolContext {
    ToolContext::new()
}

/// A shared team page with a database of tasks.
fn seed(n: &FakeNotion) -> (String, String, String) {
    let team = n.add_page(None, "Team space", vec![]);
    n.share(&team);
    let (db, ds) = n.add_database(
        &team,
        "Tasks",
        json!({"Task": {"type": "title"}, "Status": {"type": "status", "options": ["Todo", "Doing", "Done"]},
               "Due": {"type": "date"}, "Tags": {"type": "multi_select"}, "Points": {"type": "number"}}),
    );
    (team, db, ds)
}

#[tokio::test]
async fn notion_search_sends_pinned_version_and_sees_only_shared_pages() {
    let n = FakeNotion::start().await;
    let (team, _, _) = seed(&n);
    n.add_page(Some(&team), "Launch plan", vec![]);
    n.add_page(None, "Secret plan", vec![]); // not shared
    let out = notion_toolbox(&n)
        .call("notion_search", &json!({"query": "plan", "type": "page"}), &cx())
        .await
        .unwrap();
    let req = n.requests().pop().unwrap();
    assert_eq!(req.line(), "POST /v1/search");
    assert_eq!(req.header("notion-version"), Some(NOTION_VERSION));
    assert_eq!(req.header("authorization").unwrap(), format!("Bearer {}", n.token()));
    assert_eq!(
        req.json(),
        json!({"query": "plan", "page_size": 10, "filter": {"property": "object", "value": "page"},
        "sort": {"direction": "descending", "timestamp": "last_edited_time"}})
    );
    let results = out.content["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["title"], "Launch plan");
    assert_eq!(results[0]["type"], "page");

    let out = notion_toolbox(&n)
        .call("notion_search", &json!({"query": "task", "type": "database"}), &cx())
        .await
        .unwrap();
    assert_eq!(n.requests().pop().unwrap().json()["filter"]["value"], "data_source");
    assert_eq!(out.content["results"][0]["title"], "Tasks");
    assert!(out.content["results"][0]["database_id"].is_string());
}

#[tokio::test]
async fn notion_read_page_renders_markdown() {
    let n = FakeNotion::start().await;
    let (team, _, _) = seed(&n);
    let page = n.add_page(
        Some(&team),
        "Launch plan",
        vec![
            item("heading_1", "Goals"),
            json!({"type": "paragraph", "paragraph": {"rich_text": [
                {"text": {"content": "Ship "}}, {"text": {"content": "v1"}, "annotations": {"bold": true}},
                {"text": {"content": " see "}}, {"text": {"content": "docs", "link": {"url": "https://x.example/docs"}}}]}}),
            json!({"type": "bulleted_list_item", "bulleted_list_item": {"rich_text": [{"text": {"content": "API"}}],
                "children": [item("bulleted_list_item", "auth")]}}),
            item("bulleted_list_item", "UI"),
            json!({"type": "to_do", "to_do": {"rich_text": [{"text": {"content": "write tests"}}], "checked": true}}),
            json!({"type": "code", "code": {"rich_text": [{"text": {"content": "cargo test"}}], "language": "shell"}}),
            json!({"type": "divider", "divider": {}}),
            para("The end."),
        ],
    );
    let url = format!("https://www.notion.so/acme/Launch-plan-{}", page.replace('-', ""));
    let out = notion_toolbox(&n).call("notion_read_page", &json!({"page_id": url}), &cx()).await.unwrap();
    let lines: Vec<String> = n.requests().iter().map(|r| r.line()).collect();
    assert_eq!(lines[0], format!("GET /v1/pages/{page}"));
    assert_eq!(lines[1], format!("GET /v1/blocks/{page}/children"));
    assert_eq!(lines.len(), 3, "one nested list fetched: {lines:?}");
    assert_eq!(out.content["title"], "Launch plan");
    assert_eq!(
        out.content["markdown"],
        "# Goals\n\nShip **v1** see [docs](https://x.example/docs)\n\n- API\n  - auth\n- UI\n- [x] write tests\n\n```shell\ncargo test\n```\n\n---\n\nThe end."
    );
}

#[tokio::test]
async fn unshared_page_is_explained() {
    let n = FakeNotion::start().await;
    let hidden = n.add_page(None, "Private", vec![]);
    let err =
        notion_toolbox(&n).call("notion_read_page", &json!({"page_id": hidden}), &cx()).await.unwrap_err();
    assert!(matches!(err, ToolError::Api { status: 404, .. }), "{err:?}");
    assert!(err.to_string().contains("share") && err.to_string().contains("Connections"), "{err}");
}

#[tokio::test]
async fn notion_query_database_goes_through_the_data_source() {
    let n = FakeNotion::start().await;
    let (_, db, ds) = seed(&n);
    n.add_row(&ds, json!({"Task": {"title": [{"text": {"content": "Write spec"}}]}, "Status": {"status": {"name": "Done"}}, "Points": {"number": 3}}));
    n.add_row(&ds, json!({"Task": {"title": [{"text": {"content": "Ship"}}]}, "Status": {"status": {"name": "Todo"}}, "Due": {"date": {"start": "2026-03-01"}},
        "Tags": {"multi_select": [{"name": "launch"}]}}));
    let filter = json!({"property": "Status", "status": {"equals": "Todo"}});
    let out = notion_toolbox(&n)
        .call("notion_query_database", &json!({"database_id": db, "filter": filter, "max_results": 5}), &cx())
        .await
        .unwrap();
    let reqs = n.requests();
    assert_eq!(reqs[0].line(), format!("GET /v1/databases/{db}"));
    assert_eq!(reqs[1].line(), format!("POST /v1/data_sources/{ds}/query"));
    assert_eq!(reqs[1].json(), json!({"page_size": 5, "filter": filter}));
    let rows = out.content["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["properties"],
        json!({"Task": "Ship", "Status": "Todo", "Due": "2026-03-01", "Tags": ["launch"], "Points": null})
    );

    // A filter that does not fit the schema is Notion's validation error, explained.
    let err = notion_toolbox(&n)
        .call(
            "notion_query_database",
            &json!({"database_id": db, "filter": {"property": "Status", "select": {"equals": "x"}}}),
            &cx(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("rejected the request"), "{err}");
}

#[tokio::test]
async fn notion_create_page_under_a_page_with_markdown() {
    let n = FakeNotion::start().await;
    let (team, _, _) = seed(&n);
    let content = "# Notes\n\nMet **Ann** today.\n\n- follow up\n- [ ] send deck\n\n```\nplain\n```";
    let out = notion_toolbox(&n)
        .call(
            "notion_create_page",
            &json!({"parent_page_id": team, "title": "Meeting", "content": content}),
            &cx().with_idempotency_key("p-9"),
        )
        .await
        .unwrap();
    let req = n.requests().pop().unwrap();
    assert_eq!(req.line(), "POST /v1/pages");
    assert_eq!(req.header("idempotency-key"), Some("p-9"));
    let body = req.json();
    assert_eq!(body["parent"], json!({"type": "page_id", "page_id": team}));
    assert_eq!(
        body["properties"],
        json!({"title": {"title": [{"type": "text", "text": {"content": "Meeting"}}]}})
    );
    let types: Vec<&str> =
        body["children"].as_array().unwrap().iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["heading_1", "paragraph", "bulleted_list_item", "to_do", "code"]);
    assert_eq!(
        body["children"][1]["paragraph"]["rich_text"][1],
        json!({"type": "text", "text": {"content": "Ann"},
        "annotations": {"bold": true, "italic": false, "code": false, "strikethrough": false}})
    );
    let id = out.content["page_id"].as_str().unwrap();
    assert_eq!(out.external_id.as_deref(), Some(id));
    assert_eq!(n.blocks(id).len(), 5);
    assert_eq!(n.writes(), 1);
}

#[tokio::test]
async fn notion_create_page_in_a_database_maps_properties_by_schema() {
    let n = FakeNotion::start().await;
    let (_, db, ds) = seed(&n);
    let out = notion_toolbox(&n)
        .call(
            "notion_create_page",
            &json!({"database_id": db, "title": "Launch", "properties": {"Status": "Doing", "Due": "2026-02-01", "Tags": ["a", "b"], "Points": 5}}),
            &cx(),
        )
        .await
        .unwrap();
    let lines: Vec<String> = n.requests().iter().map(|r| r.line()).collect();
    assert_eq!(
        lines,
        [
            format!("GET /v1/databases/{db}"),
            format!("GET /v1/data_sources/{ds}"),
            "POST /v1/pages".to_owned()
        ]
    );
    let body = n.requests().pop().unwrap().json();
    assert_eq!(body["parent"], json!({"type": "data_source_id", "data_source_id": ds}));
    assert_eq!(body["properties"]["Status"], json!({"status": {"name": "Doing"}}));
    assert_eq!(body["properties"]["Task"]["title"][0]["text"]["content"], "Launch");
    let page = n.page(out.content["page_id"].as_str().unwrap()).unwrap();
    assert_eq!(page["properties"]["Status"]["status"]["name"], "Doing");
    assert_eq!(page["properties"]["Points"]["number"], 5);

    // An unknown property or status is refused before (unknown name) or by Notion (bad option).
    let err = notion_toolbox(&n)
        .call(
            "notion_create_page",
            &json!({"database_id": db, "title": "x", "properties": {"Owner": "me"}}),
            &cx(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ToolError::InvalidArguments(_)) && err.to_string().contains("Status"), "{err}");
    let err = notion_toolbox(&n)
        .call(
            "notion_create_page",
            &json!({"database_id": db, "title": "x", "properties": {"Status": "Blocked"}}),
            &cx(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Invalid status option"), "{err}");
    assert_eq!(n.writes(), 1);
}

#[tokio::test]
async fn long_content_is_appended_in_chunks_of_100_blocks() {
    let n = FakeNotion::start().await;
    let (team, _, _) = seed(&n);
    let content: String = (0..230).map(|i| format!("- item {i}\n")).collect();
    let out = notion_toolbox(&n)
        .call(
            "notion_create_page",
            &json!({"parent_page_id": team, "title": "Long", "content": content}),
            &cx(),
        )
        .await
        .unwrap();
    let id = out.content["page_id"].as_str().unwrap().to_owned();
    let writes: Vec<(String, usize)> = n
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| (r.line(), r.json()["children"].as_array().map_or(0, Vec::len)))
        .collect();
    assert_eq!(
        writes,
        vec![
            ("POST /v1/pages".to_owned(), 100),
            (format!("PATCH /v1/blocks/{id}/children"), 100),
            (format!("PATCH /v1/blocks/{id}/children"), 30),
        ]
    );
    assert_eq!(n.blocks(&id).len(), 230);
}

#[tokio::test]
async fn notion_update_page_and_append() {
    let n = FakeNotion::start().await;
    let (_, _, ds) = seed(&n);
    let row = n.add_row(
        &ds,
        json!({"Task": {"title": [{"text": {"content": "Old"}}]}, "Status": {"status": {"name": "Todo"}}}),
    );
    let tb = notion_toolbox(&n);
    let out = tb
        .call(
            "notion_update_page",
            &json!({"page_id": row, "title": "New", "properties": {"Status": "Done"}}),
            &cx(),
        )
        .await
        .unwrap();
    let reqs = n.requests();
    assert_eq!(reqs[0].line(), format!("GET /v1/pages/{row}"));
    assert_eq!(reqs[1].line(), format!("PATCH /v1/pages/{row}"));
    assert_eq!(
        reqs[1].json(),
        json!({"properties": {"Status": {"status": {"name": "Done"}}, "Task": {"title": [{"type": "text", "text": {"content": "New"}}]}}})
    );
    assert_eq!(out.content["title"], "New");
    assert_eq!(out.content["properties"]["Status"], "Done");

    n.clear_requests();
    let out = tb
        .call("notion_append", &json!({"page_id": row, "content": "Done on **Friday**."}), &cx())
        .await
        .unwrap();
    let req = n.requests().pop().unwrap();
    assert_eq!(req.line(), format!("PATCH /v1/blocks/{row}/children"));
    assert_eq!(req.json()["children"].as_array().unwrap().len(), 1);
    assert_eq!(out.content["blocks"], 1);
    assert_eq!(n.blocks(&row)[0]["paragraph"]["rich_text"][1]["plain_text"], "Friday");
    assert_eq!(n.writes(), 2);
}

#[tokio::test]
async fn burst_of_20_requests_is_spaced_and_nothing_fails() {
    let n = FakeNotion::start().await;
    let (team, _, _) = seed(&n);
    n.add_page(Some(&team), "Plan", vec![]);
    let tb = notion_toolbox(&n);
    let args = json!({"query": "plan"});
    let c = cx();
    let start = Instant::now();
    let results = futures::future::join_all((0..20).map(|_| tb.call("notion_search", &args, &c))).await;
    assert!(
        results.iter().all(Result::is_ok),
        "{:?}",
        results.iter().filter_map(|r| r.as_ref().err()).collect::<Vec<_>>()
    );
    assert_eq!(n.rate_limited(), 0, "the fake refused requests: the client did not keep to 3/s");
    let reqs = n.requests();
    assert_eq!(reqs.len(), 20);
    assert!(reqs.iter().all(|r| r.status == 200));
    let gaps: Vec<Duration> = reqs.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps.iter().all(|g| *g >= Duration::from_millis(250)), "{gaps:?}");
    assert!(start.elapsed() >= Duration::from_millis(19 * 320), "{:?}", start.elapsed());
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let n = FakeNotion::start().await;
    seed(&n);
    n.inject(Fault::status(429).path("/v1/search").retry_after("2"));
    let start = Instant::now();
    notion_toolbox(&n).call("notion_search", &json!({"query": ""}), &cx()).await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(1950), "{:?}", start.elapsed());
    let statuses: Vec<u16> = n.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 200]);
    let reqs = n.requests();
    assert!(reqs[1].at - reqs[0].at >= Duration::from_secs(2));

    // A write that gets a 5xx is not retried.
    n.clear_requests();
    n.inject(Fault::status(502).on("PATCH", "/children"));
    let page = n.add_page(None, "P", vec![]);
    n.share(&page);
    let err = notion_toolbox(&n)
        .call("notion_append", &json!({"page_id": page, "content": "x"}), &cx())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("try again later"), "{err}");
    assert_eq!(n.requests().len(), 1);
}

#[tokio::test]
async fn bad_token_and_bad_arguments() {
    let n = FakeNotion::start().await;
    let tb = crewgate_tools::Toolbox::new(crewgate_tools::ToolSettings {
        notion_api_base: n.base_url(),
        notion_api_key: Some(secrecy::SecretString::from("ntn_wrong")),
        ..Default::default()
    })
    .unwrap();
    let err = tb.call("notion_search", &json!({"query": "x"}), &cx()).await.unwrap_err();
    assert!(
        matches!(err, ToolError::NotConfigured(_)) && err.to_string().contains("NOTION_API_KEY"),
        "{err}"
    );
    n.clear_requests();

    let good = notion_toolbox(&n);
    let cases = [
        ("notion_read_page", json!({"page_id": "not-an-id"}), "Notion id"),
        ("notion_create_page", json!({"title": "x"}), "exactly one of parent_page_id or database_id"),
        (
            "notion_create_page",
            json!({"title": "x", "parent_page_id": "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d", "properties": {"a": 1}}),
            "only apply",
        ),
        ("notion_update_page", json!({"page_id": "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d"}), "nothing to change"),
        (
            "notion_append",
            json!({"page_id": "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d", "content": "  \n "}),
            "no text",
        ),
        ("notion_search", json!({"max_results": 0}), "at least 1"),
    ];
    for (tool, args, want) in cases {
        let err = good.call(tool, &args, &cx()).await.unwrap_err();
        assert!(err.nothing_sent() && err.to_string().contains(want), "{tool}: {err}");
    }
    assert!(n.requests().is_empty());
    let unconfigured = crewgate_tools::Toolbox::new(crewgate_tools::ToolSettings::default()).unwrap();
    let err = unconfigured.call("notion_search", &json!({}), &cx()).await.unwrap_err();
    assert!(matches!(err, ToolError::NotConfigured(_)));
}
