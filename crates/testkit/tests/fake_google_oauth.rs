#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The fake Google's authorization-code + PKCE flow, driven like a browser and a gateway would.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use crewgate_testkit::fake_common::parse_query;
use crewgate_testkit::fake_google::{self, FakeGoogle};
use serde_json::Value;
use sha2::{Digest, Sha256};

const CID: &str = "123-web.apps.googleusercontent.com";
const SECRET: &str = "GOCSPX-web-secret";
const REDIRECT: &str = "https://gw.example.com/oauth/google/callback";
const ALICE: &str = "alice@company.com";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-0123456789abcdefghij";
const FULL_SCOPE: &str = "openid email profile https://www.googleapis.com/auth/gmail.readonly \
    https://www.googleapis.com/auth/gmail.compose https://www.googleapis.com/auth/calendar.readonly";

type Overrides = Vec<(&'static str, Option<&'static str>)>;

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn setup() -> FakeGoogle {
    let g = FakeGoogle::start().await;
    g.set_client(CID, SECRET, &[REDIRECT, "http://localhost:8080/cb"]);
    g.add_account(ALICE);
    g.sign_in_as(ALICE);
    g
}

/// The standard authorization request crewgate sends, with `overrides` replacing or (value
/// `None`) removing parameters.
fn auth_params(overrides: &[(&str, Option<&str>)]) -> Vec<(String, String)> {
    let challenge = challenge(VERIFIER);
    let mut p: Vec<(String, String)> = [
        ("client_id", CID),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", FULL_SCOPE),
        ("state", "st/ate+1=2&x"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("access_type", "offline"),
        ("prompt", "consent"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (k, v) in overrides {
        p.retain(|(x, _)| x != k);
        if let Some(v) = v {
            p.push(((*k).to_owned(), (*v).to_owned()));
        }
    }
    p
}

async fn authorize(g: &FakeGoogle, params: &[(String, String)]) -> reqwest::Response {
    http().get(g.auth_url()).query(params).send().await.unwrap()
}

/// Authorizes and returns the query of the redirect.
async fn redirect_query(g: &FakeGoogle, params: &[(String, String)]) -> (String, Vec<(String, String)>) {
    let r = authorize(g, params).await;
    assert_eq!(r.status(), 302, "{}", r.text().await.unwrap());
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let (base, q) = loc.split_once('?').unwrap();
    (base.to_owned(), parse_query(q))
}

fn get<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str())
}

async fn code(g: &FakeGoogle) -> String {
    let (_, q) = redirect_query(g, &auth_params(&[])).await;
    get(&q, "code").unwrap().to_owned()
}

async fn exchange(g: &FakeGoogle, form: &[(&str, &str)]) -> (u16, Value) {
    let r = http().post(g.token_url()).form(form).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn exchange_code(g: &FakeGoogle, code: &str, verifier: &str, redirect: &str) -> (u16, Value) {
    exchange(
        g,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect),
            ("client_id", CID),
            ("client_secret", SECRET),
            ("code_verifier", verifier),
        ],
    )
    .await
}

fn jwt_payload(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert!(!parts[2].is_empty());
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}

async fn api_get(url: &str, token: &str) -> (u16, Value) {
    let r = http().get(url).bearer_auth(token).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn full_flow_gives_working_tokens_and_an_id_token() {
    let g = setup().await;
    g.add_message(ALICE, "From: bob@x.com\r\nTo: alice@company.com\r\nSubject: Hi\r\n\r\nHello\r\n", &[]);

    let (base, q) = redirect_query(&g, &auth_params(&[("nonce", Some("n-0S6"))])).await;
    assert_eq!(base, REDIRECT);
    assert_eq!(get(&q, "state"), Some("st/ate+1=2&x"), "state comes back byte for byte");
    let code = get(&q, "code").unwrap().to_owned();
    assert!(code.starts_with("4/"), "{code}");
    assert!(get(&q, "scope").unwrap().contains("https://www.googleapis.com/auth/gmail.readonly"));
    assert_eq!(get(&q, "hd"), Some("company.com"));
    let auth_req = g.requests().into_iter().find(|r| r.path == "/o/oauth2/v2/auth").unwrap();
    assert_eq!(auth_req.status, 302);
    assert_eq!(auth_req.account.as_deref(), Some(ALICE));
    assert_eq!(auth_req.query_value("code_challenge_method"), Some("S256"));
    assert!(g.api_requests().is_empty(), "OAuth requests are not API requests");

    let (status, t) = exchange_code(&g, &code, VERIFIER, REDIRECT).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["expires_in"], 3599);
    assert_eq!(t["token_type"], "Bearer");
    let access = t["access_token"].as_str().unwrap();
    let refresh = t["refresh_token"].as_str().unwrap();
    let scope: Vec<&str> = t["scope"].as_str().unwrap().split(' ').collect();
    for s in [
        "openid",
        "email",
        "profile",
        "https://www.googleapis.com/auth/gmail.readonly",
        "https://www.googleapis.com/auth/gmail.compose",
        "https://www.googleapis.com/auth/calendar.readonly",
    ] {
        assert!(scope.contains(&s), "{s} in {scope:?}");
    }
    assert_eq!(scope.len(), 6, "{scope:?}");

    let claims = jwt_payload(t["id_token"].as_str().unwrap());
    assert_eq!(claims["iss"], "https://accounts.google.com");
    assert_eq!(claims["aud"], CID);
    assert_eq!(claims["email"], ALICE);
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["hd"], "company.com");
    assert_eq!(claims["nonce"], "n-0S6");
    let sub = g.subject(ALICE).unwrap();
    assert_eq!(claims["sub"], sub.as_str());
    assert_eq!(sub.len(), 21);
    assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());

    let (s, info) = api_get(&g.userinfo_url(), access).await;
    assert_eq!(s, 200);
    assert_eq!(info["sub"], sub.as_str());
    assert_eq!(info["email"], ALICE);
    assert_eq!(info["email_verified"], true);
    assert_eq!(info["hd"], "company.com");
    assert!(info["name"].is_string());

    let (s, list) = api_get(&format!("{}/gmail/v1/users/me/messages", g.base_url()), access).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["messages"].as_array().unwrap().len(), 1);
    // Only the consented scopes are granted: Drive was not requested.
    let (s, _) = api_get(&format!("{}/drive/v3/files", g.base_url()), access).await;
    assert_eq!(s, 403);

    // The new refresh token works with the new client.
    let (s, r) = exchange(
        &g,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", CID),
            ("client_secret", SECRET),
        ],
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let (s, _) = api_get(&g.userinfo_url(), r["access_token"].as_str().unwrap()).await;
    assert_eq!(s, 200);
    let token_reqs: Vec<_> = g.requests().into_iter().filter(|r| r.path == "/token").collect();
    assert_eq!(token_reqs.len(), 2);
    assert!(token_reqs.iter().all(|r| r.account.as_deref() == Some(ALICE)));
}

#[tokio::test]
async fn wrong_verifier_is_invalid_grant() {
    let g = setup().await;
    let code = code(&g).await;
    let (s, e) = exchange_code(&g, &code, "wrong-verifier-wrong-verifier-wrong-verifier-000", REDIRECT).await;
    assert_eq!(s, 400);
    assert_eq!(e["error"], "invalid_grant");
    assert_eq!(e["error_description"], "Invalid code verifier.");
    let (s, e) = exchange(
        &g,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", CID),
            ("client_secret", SECRET),
        ],
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(e["error_description"], "Missing code verifier.");
}

#[tokio::test]
async fn a_code_works_once() {
    let g = setup().await;
    let code = code(&g).await;
    assert_eq!(exchange_code(&g, &code, VERIFIER, REDIRECT).await.0, 200);
    let (s, e) = exchange_code(&g, &code, VERIFIER, REDIRECT).await;
    assert_eq!(s, 400);
    assert_eq!(e["error"], "invalid_grant");
    let (s, e) = exchange_code(&g, "4/0Anonsense", VERIFIER, REDIRECT).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test]
async fn expired_codes_are_invalid_grant() {
    let g = setup().await;
    let code = code(&g).await;
    g.expire_codes();
    let (s, e) = exchange_code(&g, &code, VERIFIER, REDIRECT).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test]
async fn token_redirect_uri_must_equal_the_authorize_one() {
    let g = setup().await;
    let code = code(&g).await;
    // Registered, but not the one the code was issued for: Google answers
    // {"error":"redirect_uri_mismatch","error_description":"Bad Request"}.
    let (s, e) = exchange_code(&g, &code, VERIFIER, "http://localhost:8080/cb").await;
    assert_eq!(s, 400);
    assert_eq!(e["error"], "redirect_uri_mismatch");
    assert_eq!(e["error_description"], "Bad Request");
    // The code was not spent by the failed attempt.
    assert_eq!(exchange_code(&g, &code, VERIFIER, REDIRECT).await.0, 200);
}

#[tokio::test]
async fn unregistered_redirect_uri_is_an_error_page_without_redirect() {
    let g = setup().await;
    for uri in ["https://evil.example.com/cb", "https://gw.example.com/oauth/google/callback/"] {
        let r = authorize(&g, &auth_params(&[("redirect_uri", Some(uri))])).await;
        assert_eq!(r.status(), 400);
        assert!(r.headers().get("location").is_none());
        assert!(r.text().await.unwrap().contains("redirect_uri_mismatch"));
    }
    assert_eq!(g.requests().last().unwrap().status, 400);
}

#[tokio::test]
async fn pkce_must_be_s256() {
    let g = setup().await;
    for overrides in [
        vec![("code_challenge_method", Some("plain"))],
        vec![("code_challenge_method", None)],
        vec![("code_challenge", None)],
        vec![("code_challenge", Some("short"))],
    ] {
        let r = authorize(&g, &auth_params(&overrides)).await;
        assert_eq!(r.status(), 400, "{overrides:?}");
        assert!(r.headers().get("location").is_none());
        assert!(r.text().await.unwrap().contains("invalid_request"));
    }
}

#[tokio::test]
async fn other_malformed_requests_are_refused() {
    let g = setup().await;
    let cases: Vec<(Overrides, u16, &str)> = vec![
        (vec![("client_id", Some("other.apps.googleusercontent.com"))], 401, "invalid_client"),
        (vec![("response_type", Some("token"))], 400, "unsupported_response_type"),
        (vec![("scope", Some("https://www.googleapis.com/auth/gmail.readonly"))], 400, "invalid_scope"),
        (vec![("scope", Some("openid email https://www.googleapis.com/auth/nope"))], 400, "invalid_scope"),
        (vec![("state", None)], 400, "invalid_request"),
    ];
    for (overrides, status, error) in cases {
        let r = authorize(&g, &auth_params(&overrides)).await;
        assert_eq!(r.status(), status, "{overrides:?}");
        assert!(r.headers().get("location").is_none());
        assert!(r.text().await.unwrap().contains(error), "{overrides:?}");
    }
}

#[tokio::test]
async fn without_a_registered_client_authorization_fails() {
    let g = FakeGoogle::start().await;
    g.add_account(ALICE);
    g.sign_in_as(ALICE);
    let r = authorize(&g, &auth_params(&[("client_id", Some(fake_google::CLIENT_ID))])).await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("invalid_client"));
}

#[tokio::test]
async fn refused_consent_redirects_with_access_denied() {
    let g = setup().await;
    g.deny_consent(true);
    let (base, q) = redirect_query(&g, &auth_params(&[])).await;
    assert_eq!(base, REDIRECT);
    assert_eq!(get(&q, "error"), Some("access_denied"));
    assert_eq!(get(&q, "state"), Some("st/ate+1=2&x"));
    assert_eq!(get(&q, "code"), None);
    g.deny_consent(false);
    let (_, q) = redirect_query(&g, &auth_params(&[])).await;
    assert!(get(&q, "code").is_some());
}

#[tokio::test]
async fn who_consents_is_the_signed_in_person_or_the_login_hint() {
    let g = setup().await;
    g.add_account("bob@gmail.com");
    g.sign_out();
    let r = authorize(&g, &auth_params(&[])).await;
    assert_eq!(r.status(), 400, "nobody signed in and no hint");
    let r = authorize(&g, &auth_params(&[("login_hint", Some("nobody@company.com"))])).await;
    assert_eq!(r.status(), 400, "hint names no account");

    let (_, q) = redirect_query(&g, &auth_params(&[("login_hint", Some("bob@gmail.com"))])).await;
    assert_eq!(get(&q, "hd"), None);
    let (_, t) = exchange_code(&g, get(&q, "code").unwrap(), VERIFIER, REDIRECT).await;
    let claims = jwt_payload(t["id_token"].as_str().unwrap());
    assert_eq!(claims["email"], "bob@gmail.com");
    assert!(claims.get("hd").is_none(), "consumer accounts have no hd: {claims}");

    // The signed-in person wins over the hint.
    g.sign_in_as(ALICE);
    let (_, q) = redirect_query(&g, &auth_params(&[("login_hint", Some("bob@gmail.com"))])).await;
    let (_, t) = exchange_code(&g, get(&q, "code").unwrap(), VERIFIER, REDIRECT).await;
    assert_eq!(jwt_payload(t["id_token"].as_str().unwrap())["email"], ALICE);
}

#[tokio::test]
async fn email_verified_and_hd_knobs_show_in_userinfo_and_id_token() {
    let g = setup().await;
    g.set_email_verified(ALICE, false);
    g.set_hosted_domain(ALICE, Some("subsidiary.example"));
    let (_, t) = exchange_code(&g, &code(&g).await, VERIFIER, REDIRECT).await;
    let claims = jwt_payload(t["id_token"].as_str().unwrap());
    assert_eq!(claims["email_verified"], false);
    assert_eq!(claims["hd"], "subsidiary.example");
    let access = t["access_token"].as_str().unwrap();
    let (_, info) = api_get(&g.userinfo_url(), access).await;
    assert_eq!(info["email_verified"], false);
    assert_eq!(info["hd"], "subsidiary.example");

    g.set_hosted_domain(ALICE, None);
    let (_, info) = api_get(&format!("{}/oauth2/v3/userinfo", g.base_url()), access).await;
    assert!(info.get("hd").is_none(), "{info}");
    assert_eq!(info["email"], ALICE);
}

#[tokio::test]
async fn client_authentication_body_or_basic() {
    let g = setup().await;
    let code1 = code(&g).await;
    let basic = STANDARD.encode(format!("{CID}:{SECRET}"));
    let r = http()
        .post(g.token_url())
        .header("authorization", format!("Basic {basic}"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code1.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let code2 = code(&g).await;
    let (s, e) = exchange(
        &g,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code2),
            ("redirect_uri", REDIRECT),
            ("client_id", CID),
            ("client_secret", "wrong"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (401, Some("invalid_client")));
    let (s, e) = exchange(
        &g,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code2),
            ("redirect_uri", REDIRECT),
            ("client_id", CID),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_request")));
}

#[tokio::test]
async fn refresh_token_only_offline_and_again_only_with_prompt_consent() {
    let g = setup().await;
    let online = auth_params(&[("access_type", None), ("prompt", None)]);
    let (_, q) = redirect_query(&g, &online).await;
    let (_, t) = exchange_code(&g, get(&q, "code").unwrap(), VERIFIER, REDIRECT).await;
    assert!(t.get("refresh_token").is_none(), "{t}");

    let offline = auth_params(&[("prompt", None)]);
    let (_, q) = redirect_query(&g, &offline).await;
    let (_, t) = exchange_code(&g, get(&q, "code").unwrap(), VERIFIER, REDIRECT).await;
    assert!(t["refresh_token"].is_string(), "first offline consent: {t}");
    let (_, q) = redirect_query(&g, &offline).await;
    let (_, t) = exchange_code(&g, get(&q, "code").unwrap(), VERIFIER, REDIRECT).await;
    assert!(t.get("refresh_token").is_none(), "re-consent without prompt=consent: {t}");
    let (_, q) = redirect_query(&g, &auth_params(&[])).await;
    let (_, t) = exchange_code(&g, get(&q, "code").unwrap(), VERIFIER, REDIRECT).await;
    assert!(t["refresh_token"].is_string(), "prompt=consent: {t}");
}

#[tokio::test]
async fn reconnecting_after_revocation_works() {
    let g = setup().await;
    let (_, t) = exchange_code(&g, &code(&g).await, VERIFIER, REDIRECT).await;
    let old_refresh = t["refresh_token"].as_str().unwrap().to_owned();
    g.revoke(ALICE);
    let refresh = |rt: String| {
        let g = &g;
        async move {
            exchange(
                g,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", rt.as_str()),
                    ("client_id", CID),
                    ("client_secret", SECRET),
                ],
            )
            .await
        }
    };
    assert_eq!(refresh(old_refresh.clone()).await.1["error"], "invalid_grant");
    let (_, t) = exchange_code(&g, &code(&g).await, VERIFIER, REDIRECT).await;
    let new_refresh = t["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(refresh(new_refresh).await.0, 200);
    assert_eq!(refresh(old_refresh).await.1["error"], "invalid_grant", "old grants stay dead");
}

#[tokio::test]
async fn default_client_refresh_still_works_without_set_client() {
    let g = FakeGoogle::start().await;
    let a = g.add_account(ALICE);
    let (s, t) = exchange(
        &g,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", a.refresh_token.as_str()),
            ("client_id", fake_google::CLIENT_ID),
            ("client_secret", fake_google::CLIENT_SECRET),
        ],
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert!(t["scope"].as_str().unwrap().contains("https://www.googleapis.com/auth/gmail.readonly"));
}
