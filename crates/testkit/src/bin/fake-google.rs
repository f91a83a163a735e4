//! `fake-google`: the fake Google APIs and OAuth/OIDC server (`crewgate_testkit::fake_google`) as
//! a process, for tests written in other languages (the dashboard's browser tests in `e2e/`).
//!
//! ```text
//! fake-google [--redirect-uri URI]… [--account EMAIL]… [--sign-in EMAIL]
//! ```
//!
//! Prints one JSON line on stdout, `{"baseUrl": "http://127.0.0.1:P", "authUrl": "…/o/oauth2/v2/auth",
//! "tokenUrl": "…/token", "userinfoUrl": "…/v1/userinfo", "controlUrl": "http://127.0.0.1:Q",
//! "clientId": "…", "clientSecret": "…"}`, then serves until stdin closes (the parent went away)
//! or SIGTERM/SIGINT. `baseUrl` is what `integrations.google.apiBase` takes, `authUrl`/`tokenUrl`
//! what `integrations.google.authUrl`/`tokenUrl` take, and `clientId`/`clientSecret` the OAuth
//! client (`skills.installed["steipete/gog"].config`). `--redirect-uri` registers the client's
//! redirect URIs at start (the gateway's `<publicUrl>/oauth/google/callback`; until some are
//! registered, consent answers Google's `invalid_client` page). `--account` adds an account
//! (default scopes, empty mailbox); `--sign-in` is the person signed in to "the browser" that
//! visits the consent page (who consents at once).
//!
//! Control API (loopback only, its own port):
//! - `POST /accounts` `{"email"}`: adds an account; answers `{"email"}`.
//! - `POST /sign-in` `{"email"}`: that account is signed in (`{"email": null}` signs out).
//! - `POST /client` `{"clientId", "clientSecret", "redirectUris": […]}`: (re)registers the client.
//! - `POST /deny-consent` `{"deny": true|false}`: the next consents are refused (or given again).
//! - `POST /revoke` `{"email"}`: the account revokes the grant (tokens die, refresh fails).
//! - `POST /messages` `{"email", "raw", "labels": […]?}`: puts an RFC 2822 message in the mailbox;
//!   answers `{"id", "threadId"}`.
//! - `GET /sent?email=…`: the messages the account sent, oldest first, parsed:
//!   `[{"id", "threadId", "from", "to": […], "cc": […], "bcc": […], "subject", "body",
//!   "idempotencyKey", "inReplyTo"}]`.
//! - `GET /state?email=…`: `{"writes": N, "sent": N, "drafts": N, "apiRequests": N}`.

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use crewgate_testkit::fake_common::parse_query;
use crewgate_testkit::fake_google::{self, FakeGoogle, GmailMessage};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

use crewgate_testkit::process::{BoxError, serve_control};
type Reply = (StatusCode, Json<Value>);

fn bad(message: impl Into<String>) -> Reply {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message.into()})))
}

fn ok(v: Value) -> Reply {
    (StatusCode::OK, Json(v))
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, Reply> {
    b.map(|Json(v)| v).map_err(|e| bad(e.body_text()))
}

fn valid_email(e: &str) -> bool {
    e.split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !e.contains(char::is_whitespace))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Email {
    email: Option<String>,
}

async fn add_account(State(g): State<Arc<FakeGoogle>>, b: Result<Json<Email>, JsonRejection>) -> Reply {
    let req = match body(b) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let Some(email) = req.email.filter(|e| valid_email(e)) else { return bad("email: an e-mail address") };
    g.add_account(&email);
    (StatusCode::CREATED, Json(json!({"email": email})))
}

async fn sign_in(State(g): State<Arc<FakeGoogle>>, b: Result<Json<Email>, JsonRejection>) -> Reply {
    match body(b) {
        Ok(Email { email: Some(email) }) => {
            if g.subject(&email).is_none() {
                return bad(format!("no account {email}: POST /accounts first"));
            }
            g.sign_in_as(&email);
            ok(json!({"signedIn": email}))
        }
        Ok(Email { email: None }) => {
            g.sign_out();
            ok(json!({"signedIn": null}))
        }
        Err(e) => e,
    }
}

async fn revoke(State(g): State<Arc<FakeGoogle>>, b: Result<Json<Email>, JsonRejection>) -> Reply {
    match body(b) {
        Ok(Email { email: Some(email) }) if g.subject(&email).is_some() => {
            g.revoke(&email);
            ok(json!({"revoked": email}))
        }
        Ok(_) => bad("email: a known account"),
        Err(e) => e,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Client {
    client_id: String,
    client_secret: String,
    redirect_uris: Vec<String>,
}

async fn set_client(State(g): State<Arc<FakeGoogle>>, b: Result<Json<Client>, JsonRejection>) -> Reply {
    let c = match body(b) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let uris: Vec<&str> = c.redirect_uris.iter().map(String::as_str).collect();
    g.set_client(&c.client_id, &c.client_secret, &uris);
    ok(json!({"clientId": c.client_id, "redirectUris": c.redirect_uris}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Deny {
    deny: bool,
}

async fn deny_consent(State(g): State<Arc<FakeGoogle>>, b: Result<Json<Deny>, JsonRejection>) -> Reply {
    match body(b) {
        Ok(d) => {
            g.deny_consent(d.deny);
            ok(json!({"deny": d.deny}))
        }
        Err(e) => e,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMessage {
    email: String,
    raw: String,
    #[serde(default)]
    labels: Vec<String>,
}

async fn add_message(State(g): State<Arc<FakeGoogle>>, b: Result<Json<NewMessage>, JsonRejection>) -> Reply {
    let m = match body(b) {
        Ok(m) => m,
        Err(e) => return e,
    };
    if g.subject(&m.email).is_none() {
        return bad(format!("no account {}: POST /accounts first", m.email));
    }
    if mailparse::parse_mail(m.raw.as_bytes()).is_err() {
        return bad("raw: not an RFC 2822 message");
    }
    // `add_message` panics on a message it cannot read; running it on its own task keeps the
    // control server alive (the check above makes that unlikely anyway).
    let g2 = g.clone();
    let added = tokio::task::spawn_blocking(move || {
        let labels: Vec<&str> = m.labels.iter().map(String::as_str).collect();
        g2.add_message(&m.email, &m.raw, &labels)
    })
    .await;
    match added {
        Ok((id, thread)) => (StatusCode::CREATED, Json(json!({"id": id, "threadId": thread}))),
        Err(_) => bad("raw: the fake could not read this message"),
    }
}

fn email_param(q: Option<String>) -> Option<String> {
    parse_query(q.as_deref().unwrap_or_default()).into_iter().find(|(k, _)| k == "email").map(|(_, v)| v)
}

fn message_json(m: &GmailMessage) -> Value {
    json!({
        "id": m.id,
        "threadId": m.thread_id,
        "from": m.from,
        "to": m.to,
        "cc": m.cc,
        "bcc": m.bcc,
        "subject": m.subject,
        "body": m.body,
        "idempotencyKey": m.idempotency_key,
        "inReplyTo": m.in_reply_to,
    })
}

async fn sent(State(g): State<Arc<FakeGoogle>>, RawQuery(q): RawQuery) -> Reply {
    let Some(email) = email_param(q) else { return bad("?email= is required") };
    ok(Value::Array(g.sent(&email).iter().map(message_json).collect()))
}

async fn state(State(g): State<Arc<FakeGoogle>>, RawQuery(q): RawQuery) -> Reply {
    let Some(email) = email_param(q) else { return bad("?email= is required") };
    let api = g.api_requests().iter().filter(|r| r.account.as_deref() == Some(email.as_str())).count();
    ok(json!({
        "writes": g.writes(&email),
        "sent": g.sent(&email).len(),
        "drafts": g.drafts(&email).len(),
        "apiRequests": api,
    }))
}

struct Args {
    redirect_uris: Vec<String>,
    accounts: Vec<String>,
    sign_in: Option<String>,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut args = Args { redirect_uris: Vec::new(), accounts: Vec::new(), sign_in: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--redirect-uri" => args.redirect_uris.push(value()?),
            "--account" => {
                let v = value()?;
                if !valid_email(&v) {
                    return Err(format!("--account {v:?}: not an e-mail address").into());
                }
                args.accounts.push(v);
            }
            "--sign-in" => args.sign_in = Some(value()?),
            "-h" | "--help" => {
                println!("usage: fake-google [--redirect-uri URI]… [--account EMAIL]… [--sign-in EMAIL]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (see --help)").into()),
        }
    }
    if let Some(s) = &args.sign_in
        && !args.accounts.contains(s)
    {
        return Err(format!("--sign-in {s:?}: add it with --account too").into());
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let google = Arc::new(FakeGoogle::start().await);
    if !args.redirect_uris.is_empty() {
        let uris: Vec<&str> = args.redirect_uris.iter().map(String::as_str).collect();
        google.set_client(fake_google::CLIENT_ID, fake_google::CLIENT_SECRET, &uris);
    }
    for a in &args.accounts {
        google.add_account(a);
    }
    if let Some(s) = &args.sign_in {
        google.sign_in_as(s);
    }
    let app = Router::new()
        .route("/accounts", post(add_account))
        .route("/sign-in", post(sign_in))
        .route("/client", post(set_client))
        .route("/deny-consent", post(deny_consent))
        .route("/revoke", post(revoke))
        .route("/messages", post(add_message))
        .route("/sent", get(sent))
        .route("/state", get(state))
        .with_state(google.clone());
    let announce = json!({
        "baseUrl": google.base_url(),
        "authUrl": google.auth_url(),
        "tokenUrl": google.token_url(),
        "userinfoUrl": google.userinfo_url(),
        "clientId": fake_google::CLIENT_ID,
        "clientSecret": fake_google::CLIENT_SECRET,
    });
    serve_control(app, announce.as_object().cloned().unwrap_or_default()).await
}
