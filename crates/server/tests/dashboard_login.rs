//! The dashboard's token → cookie exchange: HttpOnly + SameSite=Strict cookie, CSRF required on
//! state-changing requests, logout and token revocation end the browser session.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use crewgate_runtime::tools::ToolRegistry;
use reqwest::header::{COOKIE, SET_COOKIE};

async fn login(base: &str, token: &str, host: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({ "token": token }));
    if let Some(h) = host {
        req = req.header("host", h).header("x-forwarded-proto", "https");
    }
    req.send().await.unwrap()
}

fn cookie_of(resp: &reqwest::Response) -> (String, String) {
    let set = resp.headers().get(SET_COOKIE).unwrap().to_str().unwrap().to_owned();
    let pair = set.split(';').next().unwrap().to_owned();
    (pair, set)
}

#[tokio::test]
async fn token_exchanged_for_a_strict_httponly_cookie_with_csrf() {
    let gw = common::gateway(ToolRegistry::with_defaults()).await;
    let alice = gw.person("alice@company.com").await;
    let resp = login(&gw.base, &alice.token, None).await;
    assert_eq!(resp.status(), 200);
    let (cookie, set) = cookie_of(&resp);
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"), "{set}");
    assert!(!set.contains(&alice.token), "the token itself is never the cookie");
    let body: serde_json::Value = resp.json().await.unwrap();
    let csrf = body["csrf"].as_str().unwrap().to_owned();
    assert_eq!(body["kind"], "user");

    let client = reqwest::Client::new();
    let me = client.get(format!("{}/api/v1/me", gw.base)).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(me.status(), 200);
    let me: serde_json::Value = me.json().await.unwrap();
    assert_eq!(me["agent"]["id"], alice.agent_id.as_str());

    // A state-changing request with the cookie but without the CSRF header is refused.
    let no_csrf =
        client.post(format!("{}/api/v1/sessions", gw.base)).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(no_csrf.status(), 403);
    let wrong = client
        .post(format!("{}/api/v1/sessions", gw.base))
        .header(COOKIE, &cookie)
        .header("x-csrf-token", "0".repeat(32))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let ok = client
        .post(format!("{}/api/v1/sessions", gw.base))
        .header(COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);

    let session: serde_json::Value = client
        .get(format!("{}/api/v1/auth/session", gw.base))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["csrf"], csrf.as_str(), "a reloaded page gets its CSRF token back");

    // Logout ends this browser session.
    let out = client
        .post(format!("{}/api/v1/auth/logout", gw.base))
        .header(COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(out.headers().get(SET_COOKIE).unwrap().to_str().unwrap().contains("Max-Age=0"));
    let after = client.get(format!("{}/api/v1/me", gw.base)).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(after.status(), 401);
}

#[tokio::test]
async fn revoking_the_token_ends_its_browser_sessions() {
    let gw = common::gateway(ToolRegistry::with_defaults()).await;
    let alice = gw.person("alice@company.com").await;
    let resp = login(&gw.base, &alice.token, None).await;
    let (cookie, _) = cookie_of(&resp);
    let client = reqwest::Client::new();
    assert_eq!(
        client.get(format!("{}/api/v1/me", gw.base)).header(COOKIE, &cookie).send().await.unwrap().status(),
        200
    );
    let (s, _) = gw.call("DELETE", &format!("/api/v1/tokens/{}", alice.token_id), &gw.admin, None).await;
    assert_eq!(s, 204);
    assert_eq!(
        client.get(format!("{}/api/v1/me", gw.base)).header(COOKIE, &cookie).send().await.unwrap().status(),
        401
    );
}

#[tokio::test]
async fn bad_tokens_get_no_cookie_and_public_hosts_get_secure_cookies() {
    let gw = common::gateway(ToolRegistry::with_defaults()).await;
    for bad in ["", "cgu_nope", &"cgu_".repeat(13)] {
        let resp = login(&gw.base, bad, None).await;
        assert_eq!(resp.status(), 401, "{bad:?}");
        assert!(resp.headers().get(SET_COOKIE).is_none());
    }
    let alice = gw.person("alice@company.com").await;
    let resp = login(&gw.base, &alice.token, Some("crewgate.example.com")).await;
    let (_, set) = cookie_of(&resp);
    assert!(set.contains("Secure"), "behind HTTPS the cookie is Secure: {set}");
    // A forged cookie is refused.
    let forged = reqwest::Client::new()
        .get(format!("{}/api/v1/me", gw.base))
        .header(COOKIE, format!("crewgate_session=cgs_{}", "ab".repeat(32)))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
}
