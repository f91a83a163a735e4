//! The fakes themselves refuse what the real APIs refuse (so the tool tests above can fail).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use crewgate_testkit::fake_attio::FakeAttio;
use crewgate_testkit::fake_google::FakeGoogle;
use crewgate_testkit::fake_notion::FakeNotion;
use serde_json::{Value, json};

async fn send(rb: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn notion_checks_version_and_rate_limits_bursts() {
    let n = FakeNotion::start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/search", n.base_url());
    let (status, _, body) = send(http.post(&url).bearer_auth(n.token()).json(&json!({}))).await;
    assert_eq!(
        (status, body["object"].as_str(), body["code"].as_str()),
        (400, Some("error"), Some("missing_version"))
    );
    let (status, _, body) =
        send(http.post(&url).bearer_auth("ntn_bad").header("Notion-Version", "2025-09-03").json(&json!({})))
            .await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));

    let mut limited = 0;
    for _ in 0..10 {
        let (status, headers, body) = send(
            http.post(&url).bearer_auth(n.token()).header("Notion-Version", "2025-09-03").json(&json!({})),
        )
        .await;
        if status == 429 {
            limited += 1;
            assert_eq!(body["code"], "rate_limited");
            assert!(headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
        }
    }
    assert!(limited >= 5, "only {limited} of 10 back-to-back requests were limited");
    assert_eq!(n.rate_limited(), limited);
}

#[tokio::test]
async fn attio_limits_writes_to_25_per_second() {
    let a = FakeAttio::start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/objects/companies/records", a.base_url());
    let (status, _, body) = send(http.post(&url).bearer_auth("nope").json(&json!({}))).await;
    assert_eq!((status, body["type"].as_str()), (401, Some("auth_error")));
    let mut limited = 0;
    for i in 0..40 {
        let body = json!({"data": {"values": {"domains": [format!("c{i}.com")]}}});
        let (status, headers, body) = send(http.post(&url).bearer_auth(a.api_key()).json(&body)).await;
        if status == 429 {
            limited += 1;
            assert_eq!(
                body,
                json!({"status_code": 429, "type": "rate_limit_error", "code": "rate_limit_exceeded",
                "message": "Rate limit exceeded, please try again later"})
            );
            assert!(httpdate::parse_http_date(headers["retry-after"].to_str().unwrap()).is_ok());
        }
    }
    assert!(limited >= 10, "only {limited} of 40 back-to-back writes were limited");
    assert_eq!(a.writes(), 40 - limited);
    // Reads have their own, larger budget.
    let (status, _, _) =
        send(http.get(format!("{}/objects/companies/attributes", a.base_url())).bearer_auth(a.api_key()))
            .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn google_checks_tokens_and_raw_messages() {
    let g = FakeGoogle::start().await;
    let alice = g.add_account("alice@company.com");
    let http = reqwest::Client::new();
    let url = format!("{}/gmail/v1/users/me/messages/send", g.base_url());
    let (status, _, body) = send(http.post(&url).json(&json!({"raw": ""}))).await;
    assert_eq!((status, body["error"]["status"].as_str()), (401, Some("UNAUTHENTICATED")));

    let raw_utf8 = "To: a@b.co\r\nSubject: Grüße\r\n\r\nx\r\n";
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let (status, _, body) =
        send(http.post(&url).bearer_auth(&alice.access_token).json(&json!({"raw": b64(raw_utf8)}))).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("RFC 2047"), "{body}");
    let no_to = "Subject: x\r\n\r\nbody\r\n";
    let (status, _, body) =
        send(http.post(&url).bearer_auth(&alice.access_token).json(&json!({"raw": b64(no_to)}))).await;
    assert_eq!((status, body["error"]["message"].as_str()), (400, Some("Recipient address required")));
    let std_alphabet =
        base64::engine::general_purpose::STANDARD.encode("To: a@b.co\r\nSubject: ???>>>\r\n\r\n???>>>\r\n");
    assert!(std_alphabet.contains(['+', '/']));
    let (status, _, _) =
        send(http.post(&url).bearer_auth(&alice.access_token).json(&json!({"raw": std_alphabet}))).await;
    assert_eq!(status, 400, "Gmail wants base64url");
    let eight_bit_body = "To: a@b.co\r\nSubject: x\r\n\r\nGrüße\r\n";
    let (status, _, _) =
        send(http.post(&url).bearer_auth(&alice.access_token).json(&json!({"raw": b64(eight_bit_body)})))
            .await;
    assert_eq!(status, 400, "8-bit body without charset");
    assert_eq!(g.writes("alice@company.com"), 0);

    // Another user's mailbox is not reachable with Alice's token.
    let (status, _, _) = send(
        http.get(format!("{}/gmail/v1/users/bob@company.com/messages", g.base_url()))
            .bearer_auth(&alice.access_token),
    )
    .await;
    assert_eq!(status, 403);
}
