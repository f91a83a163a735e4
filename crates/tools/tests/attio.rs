//! Attio tools against the fake Attio API over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::attio_toolbox;
use crewgate_testkit::fake_attio::FakeAttio;
use crewgate_testkit::fake_common::Fault;
use crewgate_tools::{ToolContext, ToolError};
use serde_json::json;

fn cx() -> ToolContext {
    ToolContext::new()
}

fn seed(a: &FakeAttio) -> (String, String) {
    let acme = a.add_record("companies", json!({"domains": ["acme.com"], "name": "Acme Inc"}));
    let ann = a.add_record(
        "people",
        json!({"email_addresses": ["ann@acme.com"], "name": [{"first_name": "Ann", "last_name": "Lee", "full_name": "Ann Lee"}],
               "company": [{"target_object": "companies", "target_record_id": acme}]}),
    );
    (acme, ann)
}

#[tokio::test]
async fn attio_search_fuzzy_and_by_filter() {
    let a = FakeAttio::start().await;
    let (acme, ann) = seed(&a);
    let tb = attio_toolbox(&a);
    let out = tb.call("attio_search", &json!({"query": "acme"}), &cx()).await.unwrap();
    let req = a.requests().pop().unwrap();
    assert_eq!(req.line(), "POST /v2/objects/records/search");
    assert_eq!(req.header("authorization").unwrap(), format!("Bearer {}", a.api_key()));
    assert_eq!(
        req.json(),
        json!({"query": "acme", "objects": ["people", "companies", "deals"], "request_as": {"type": "workspace"}, "limit": 10})
    );
    let results = out.content["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(
        results
            .iter()
            .any(|r| r["record_id"] == ann.as_str() && r["object"] == "people" && r["text"] == "Ann Lee")
    );
    assert!(results.iter().any(|r| r["record_id"] == acme.as_str() && r["domains"] == json!(["acme.com"])));

    let out = tb
        .call(
            "attio_search",
            &json!({"filter": {"email_addresses": "ann@acme.com"}, "objects": ["people"]}),
            &cx(),
        )
        .await
        .unwrap();
    let req = a.requests().pop().unwrap();
    assert_eq!(req.line(), "POST /v2/objects/people/records/query");
    assert_eq!(req.json(), json!({"filter": {"email_addresses": "ann@acme.com"}, "limit": 10}));
    assert_eq!(out.content["results"][0]["values"]["name"], "Ann Lee");
}

#[tokio::test]
async fn attio_get_record_flattens_current_values() {
    let a = FakeAttio::start().await;
    let (acme, ann) = seed(&a);
    let out = attio_toolbox(&a)
        .call("attio_get_record", &json!({"object": "people", "record_id": ann}), &cx())
        .await
        .unwrap();
    assert_eq!(a.requests().pop().unwrap().line(), format!("GET /v2/objects/people/records/{ann}"));
    assert_eq!(out.content["record_id"], ann.as_str());
    assert_eq!(out.content["values"]["email_addresses"], "ann@acme.com");
    assert_eq!(out.content["values"]["company"], json!({"object": "companies", "record_id": acme}));
    assert!(out.content["values"].get("job_title").is_none(), "empty attributes are left out");

    let err = attio_toolbox(&a)
        .call("attio_get_record", &json!({"object": "people", "record_id": "nope"}), &cx())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ToolError::Api { status: 404, .. }) && err.to_string().contains("attio_search"),
        "{err}"
    );
}

#[tokio::test]
async fn attio_list_fields_and_statuses() {
    let a = FakeAttio::start().await;
    let tb = attio_toolbox(&a);
    let out = tb.call("attio_list_fields", &json!({"object": "deals"}), &cx()).await.unwrap();
    assert_eq!(a.requests().pop().unwrap().line(), "GET /v2/objects/deals/attributes");
    let stage =
        out.content["attributes"].as_array().unwrap().iter().find(|x| x["slug"] == "stage").unwrap().clone();
    assert_eq!(stage["type"], "status");
    assert_eq!(stage["required"], true);
    let out =
        tb.call("attio_list_fields", &json!({"object": "deals", "attribute": "stage"}), &cx()).await.unwrap();
    let lines: Vec<String> = a.requests().iter().rev().take(2).map(|r| r.line()).collect();
    assert_eq!(
        lines,
        ["GET /v2/objects/deals/attributes/stage/statuses", "GET /v2/objects/deals/attributes/stage"]
    );
    assert_eq!(out.content["statuses"], json!(["Lead", "In Progress", "Won 🎉", "Lost"]));
}

#[tokio::test]
async fn attio_upserts_match_by_email_and_domain() {
    let a = FakeAttio::start().await;
    let (acme, _) = seed(&a);
    let tb = attio_toolbox(&a);
    let out = tb
        .call(
            "attio_upsert_person",
            &json!({"email": "ann@acme.com", "first_name": "Ann", "last_name": "Lee-Smith", "job_title": "CTO", "company_domain": "acme.com"}),
            &cx().with_idempotency_key("p-3"),
        )
        .await
        .unwrap();
    let req = a.requests().pop().unwrap();
    assert_eq!(req.line(), "PUT /v2/objects/people/records");
    assert_eq!(req.query_value("matching_attribute"), Some("email_addresses"));
    assert_eq!(req.header("idempotency-key"), Some("p-3"));
    assert_eq!(
        req.json(),
        json!({"data": {"values": {
            "email_addresses": ["ann@acme.com"],
            "name": [{"first_name": "Ann", "last_name": "Lee-Smith", "full_name": "Ann Lee-Smith"}],
            "job_title": "CTO",
            "company": [{"target_object": "companies", "domains": [{"domain": "acme.com"}]}],
        }}})
    );
    assert_eq!(a.records("people").len(), 1, "matched the existing person");
    assert_eq!(out.content["record"]["values"]["job_title"], "CTO");
    assert_eq!(out.content["record"]["values"]["name"], "Ann Lee-Smith");
    assert_eq!(out.content["record"]["values"]["company"]["record_id"], acme.as_str());

    tb.call("attio_upsert_person", &json!({"email": "new@globex.com"}), &cx()).await.unwrap();
    assert_eq!(a.records("people").len(), 2);
    let out = tb
        .call("attio_upsert_company", &json!({"domain": "globex.com", "name": "Globex"}), &cx())
        .await
        .unwrap();
    let req = a.requests().pop().unwrap();
    assert_eq!(req.query_value("matching_attribute"), Some("domains"));
    assert_eq!(req.json(), json!({"data": {"values": {"domains": ["globex.com"], "name": "Globex"}}}));
    assert_eq!(out.content["record"]["values"]["name"], "Globex");
    assert_eq!(a.writes(), 3);
}

#[tokio::test]
async fn attio_create_and_update_deal_records() {
    let a = FakeAttio::start().await;
    let (acme, _) = seed(&a);
    a.add_member("alice@company.com", "Alice", "A");
    let tb = attio_toolbox(&a);
    let values = json!({"name": "Acme rollout", "stage": "Lead", "owner": "alice@company.com", "value": 42000,
        "associated_company": [{"target_object": "companies", "target_record_id": acme}]});
    let out =
        tb.call("attio_create_record", &json!({"object": "deals", "values": values}), &cx()).await.unwrap();
    let req = a.requests().pop().unwrap();
    assert_eq!(req.line(), "POST /v2/objects/deals/records");
    assert_eq!(req.json(), json!({"data": {"values": values}}));
    let deal = out.content["record"]["record_id"].as_str().unwrap().to_owned();
    assert_eq!(out.content["record"]["values"]["stage"], "Lead");
    assert_eq!(out.content["record"]["values"]["value"], "42000 USD");

    let out = tb
        .call(
            "attio_update_record",
            &json!({"object": "deals", "record_id": deal, "values": {"stage": "Won 🎉"}}),
            &cx(),
        )
        .await
        .unwrap();
    let req = a.requests().pop().unwrap();
    assert_eq!(req.line(), format!("PATCH /v2/objects/deals/records/{deal}"));
    assert_eq!(req.json(), json!({"data": {"values": {"stage": "Won 🎉"}}}));
    assert_eq!(out.content["record"]["values"]["stage"], "Won 🎉");
    let history = &a.record("deals", &deal).unwrap()["values"]["stage"];
    assert_eq!(history.as_array().unwrap().len(), 2, "the old stage is kept as history");

    // Attio's validation errors come back with the fix.
    let err = tb
        .call(
            "attio_update_record",
            &json!({"object": "deals", "record_id": deal, "values": {"stage": "Closed"}}),
            &cx(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Cannot find status") && err.to_string().contains("attio_list_fields"),
        "{err}"
    );
    let err = tb
        .call("attio_create_record", &json!({"object": "deals", "values": {"name": "x"}}), &cx())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Required value"), "{err}");
    let err = tb
        .call(
            "attio_create_record",
            &json!({"object": "companies", "values": {"domains": ["acme.com"]}}),
            &cx(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists") && err.to_string().contains("upsert"), "{err}");
    assert_eq!(a.writes(), 2);
}

#[tokio::test]
async fn attio_notes() {
    let a = FakeAttio::start().await;
    let (_, ann) = seed(&a);
    let tb = attio_toolbox(&a);
    let out = tb
        .call(
            "attio_add_note",
            &json!({"object": "people", "record_id": ann, "title": "Call", "content": "Wants a demo."}),
            &cx(),
        )
        .await
        .unwrap();
    let req = a.requests().pop().unwrap();
    assert_eq!(req.line(), "POST /v2/notes");
    assert_eq!(
        req.json(),
        json!({"data": {"parent_object": "people", "parent_record_id": ann, "title": "Call", "format": "plaintext", "content": "Wants a demo."}})
    );
    assert!(out.external_id.is_some());
    let out =
        tb.call("attio_list_notes", &json!({"object": "people", "record_id": ann}), &cx()).await.unwrap();
    let req = a.requests().pop().unwrap();
    assert_eq!(req.line(), "GET /v2/notes");
    assert_eq!(
        req.query,
        vec![
            ("limit".to_owned(), "10".to_owned()),
            ("parent_object".into(), "people".into()),
            ("parent_record_id".into(), ann.clone())
        ]
    );
    assert_eq!(out.content["notes"][0]["title"], "Call");
    assert_eq!(out.content["notes"][0]["content"], "Wants a demo.");
}

#[tokio::test]
async fn attio_tasks() {
    let a = FakeAttio::start().await;
    let (_, ann) = seed(&a);
    let member = a.add_member("alice@company.com", "Alice", "A");
    let tb = attio_toolbox(&a);
    let out = tb
        .call(
            "attio_create_task",
            &json!({"content": "Send the deck", "deadline_at": "2026-03-06T17:00:00Z", "assignees": ["Alice@company.com"],
                    "linked_records": [{"object": "people", "record_id": ann}]}),
            &cx(),
        )
        .await
        .unwrap();
    let reqs = a.requests();
    assert_eq!(reqs[reqs.len() - 2].line(), "GET /v2/workspace_members");
    assert_eq!(reqs[reqs.len() - 1].line(), "POST /v2/tasks");
    assert_eq!(
        reqs[reqs.len() - 1].json(),
        json!({"data": {"content": "Send the deck", "format": "plaintext", "deadline_at": "2026-03-06T17:00:00Z",
        "is_completed": false, "linked_records": [{"target_object": "people", "target_record_id": ann}],
        "assignees": [{"referenced_actor_type": "workspace-member", "referenced_actor_id": member}]}})
    );
    let task = out.content["task"]["id"].as_str().unwrap().to_owned();

    let out = tb
        .call(
            "attio_list_tasks",
            &json!({"object": "people", "record_id": ann, "is_completed": false}),
            &cx(),
        )
        .await
        .unwrap();
    let req = a.requests().pop().unwrap();
    assert_eq!(req.line(), "GET /v2/tasks");
    assert_eq!(
        req.query,
        vec![
            ("limit".to_owned(), "20".to_owned()),
            ("linked_object".into(), "people".into()),
            ("linked_record_id".into(), ann.clone()),
            ("is_completed".into(), "false".into()),
        ]
    );
    assert_eq!(out.content["tasks"][0]["content"], "Send the deck");

    let out = tb
        .call(
            "attio_update_task",
            &json!({"task_id": task, "is_completed": true, "deadline_at": null}),
            &cx(),
        )
        .await
        .unwrap();
    let req = a.requests().pop().unwrap();
    assert_eq!(req.line(), format!("PATCH /v2/tasks/{task}"));
    assert_eq!(req.json(), json!({"data": {"is_completed": true, "deadline_at": null}}));
    assert_eq!(out.content["task"]["is_completed"], true);
    assert_eq!(a.tasks()[0]["is_completed"], true);

    let err = tb
        .call("attio_create_task", &json!({"content": "x", "assignees": ["stranger@ext.com"]}), &cx())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a member"), "{err}");
    assert_eq!(a.writes(), 2);
}

#[tokio::test]
async fn hundred_writes_keep_to_25_per_second() {
    let a = FakeAttio::start().await;
    let (_, ann) = seed(&a);
    let tb = attio_toolbox(&a);
    let calls: Vec<_> = (0..100)
        .map(|i| json!({"object": "people", "record_id": ann, "title": format!("note {i}"), "content": "x"}))
        .collect();
    let c = cx();
    let start = Instant::now();
    let results =
        futures::future::join_all(calls.iter().map(|args| tb.call("attio_add_note", args, &c))).await;
    let elapsed = start.elapsed();
    assert!(results.iter().all(Result::is_ok), "{:?}", results.iter().find_map(|r| r.as_ref().err()));
    assert_eq!(a.rate_limited(), 0, "the fake answered 429: the client exceeded 25 writes/s");
    assert_eq!(a.notes().len(), 100);
    assert_eq!(a.writes(), 100);
    assert!(elapsed >= Duration::from_millis(3900), "{elapsed:?}");
    // In any one-second window at most 25 writes (+1 for timer jitter at the window edges).
    let at: Vec<Instant> = a.requests().iter().filter(|r| r.method == "POST").map(|r| r.at).collect();
    let max = at
        .iter()
        .map(|t| at.iter().filter(|u| **u >= *t && **u < *t + Duration::from_secs(1)).count())
        .max()
        .unwrap();
    assert!(max <= 26, "{max} writes within one second");
}

#[tokio::test]
async fn http_date_retry_after_is_honoured() {
    let a = FakeAttio::start().await;
    let (_, ann) = seed(&a);
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2));
    a.inject(Fault::status(429).on("GET", "/v2/notes").retry_after(date));
    let start = Instant::now();
    attio_toolbox(&a)
        .call("attio_list_notes", &json!({"object": "people", "record_id": ann}), &cx())
        .await
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(1000), "{:?}", start.elapsed());
    assert_eq!(a.requests().iter().map(|r| r.status).collect::<Vec<_>>(), vec![429, 200]);
}

#[tokio::test]
async fn bad_key_and_bad_arguments() {
    let a = FakeAttio::start().await;
    let tb = crewgate_tools::Toolbox::new(crewgate_tools::ToolSettings {
        attio_api_base: a.base_url(),
        attio_api_key: Some(secrecy::SecretString::from("wrong")),
        ..Default::default()
    })
    .unwrap();
    let err = tb.call("attio_search", &json!({"query": "x"}), &cx()).await.unwrap_err();
    assert!(matches!(err, ToolError::NotConfigured(_)) && err.to_string().contains("ATTIO_API_KEY"), "{err}");
    a.clear_requests();
    let good = attio_toolbox(&a);
    let cases = [
        ("attio_search", json!({}), "either query"),
        ("attio_search", json!({"filter": {"name": "x"}}), "exactly one object"),
        ("attio_upsert_person", json!({"email": "not-an-email"}), "e-mail address"),
        ("attio_create_record", json!({"object": "deals", "values": {}}), "at least one"),
        ("attio_list_notes", json!({"object": "people"}), "together"),
        ("attio_update_task", json!({"task_id": "t"}), "nothing to change"),
        ("attio_create_task", json!({"content": "x", "deadline_at": "friday"}), "RFC 3339"),
    ];
    for (tool, args, want) in cases {
        let err = good.call(tool, &args, &cx()).await.unwrap_err();
        assert!(err.nothing_sent() && err.to_string().contains(want), "{tool}: {err}");
    }
    assert!(a.requests().is_empty());
    // There are no delete tools.
    assert!(crewgate_tools::specs().iter().all(|s| !s.name.contains("delete")));
}
