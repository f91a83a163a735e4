//! Onboarding with the real binary and its config file: `crewgate invite create` e-mails a link
//! (fake SMTP), a browser-like client follows it through the fake Google's consent (code + PKCE)
//! to the ready page, the new person's token and Google tools work — and none of the secrets
//! involved (invite token, OAuth state and code, Google access and refresh tokens, the user
//! token) ever appears in the gateway's trace-level logs or the CLI's output beyond the one
//! place each is meant to be shown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crewgate_core::{MasterKey, UserId};
use crewgate_store::{SqliteStore, Store};
use crewgate_testkit::fake_google::{self, FakeGoogle};
use crewgate_testkit::fake_llm::{FakeLlm, Responder, Step};
use crewgate_testkit::fake_smtp::FakeSmtp;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_crewgate");
const MASTER: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
const ALICE: &str = "alice@company.com";

struct Running {
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let to = s[from..].find(end)? + from;
    Some(&s[from..to])
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{base}/ready")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the gateway never became ready");
}

fn cli(data: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("MASTER_KEY", MASTER)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{args:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_cli_to_ready_page_with_no_secret_in_the_logs() {
    let google = FakeGoogle::start().await;
    google.add_account(ALICE);
    google.sign_in_as(ALICE);
    google.add_message(
        ALICE,
        "From: a@ext.com\r\nTo: alice@company.com\r\nSubject: Quarterly numbers\r\nMessage-ID: <q@ext.com>\r\n\
         Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\nHi.\r\n",
        &["INBOX"],
    );
    let smtp = FakeSmtp::start().await;
    let llm = FakeLlm::builder().api_key("sk-fake").chunk_delay(Duration::ZERO).start().await;
    llm.set_default(Responder::from_fn(|req| {
        let last_is_tool = req.messages().last().is_some_and(|m| m["role"] == "tool");
        if last_is_tool {
            Step::text("You have mail about quarterly numbers.")
        } else {
            Step::tool_call("gmail_search", json!({"query": "in:inbox"}))
        }
    }));

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    google.set_client(
        fake_google::CLIENT_ID,
        fake_google::CLIENT_SECRET,
        &[&format!("{base}/oauth/google/callback")],
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("crewgate.jsonc");
    std::fs::write(
        &config,
        json!({
            "gateway": {"publicUrl": base},
            "llm": {"baseUrl": llm.base_url(), "apiKey": "sk-fake", "model": "fake/model"},
            "skills": {"installed": {"steipete/gog": {"enabled": true, "config": {
                "clientId": fake_google::CLIENT_ID, "clientSecret": fake_google::CLIENT_SECRET}}}},
            "integrations": {
                "google": {"apiBase": google.base_url(), "authUrl": google.auth_url(), "tokenUrl": google.token_url()},
                "smtp": {"host": smtp.host(), "port": smtp.port(), "from": "crewgate@company.com", "starttls": false, "plaintext": true}
            },
            "onboarding": {"allowedDomains": ["company.com"]},
        })
        .to_string(),
    )
    .unwrap();

    let log_path = dir.path().join("gateway.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let gw = Running {
        child: Command::new(BIN)
            .arg("gateway")
            .arg("--data-dir")
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .env("MASTER_KEY", MASTER)
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "trace")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    };
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    wait_ready(&http, &base).await;

    // The offline CLI beside the running gateway, as the README shows.
    let cfg = config.to_str().unwrap();
    let out = cli(&data, &["invite", "create", ALICE, "--name", "Alice Ng", "--config", cfg]);
    assert!(out.contains("e-mailed to alice@company.com"), "{out}");
    let link = between(&out, "link: ", "\n").unwrap().to_owned();
    assert!(link.starts_with(&format!("{base}/invite/cgi_")), "{out}");
    let mail = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert!(mail[0].body.contains(&link));
    let listed = cli(&data, &["invite", "list"]);
    assert!(listed.contains("alice-company-com") && listed.contains("pending"), "{listed}");
    assert!(!listed.contains("cgi_"), "{listed}");
    let invite_token = link.rsplit('/').next().unwrap().to_owned();

    // Resend and revoke from the CLI (a second person).
    let out = cli(&data, &["invite", "create", "bob@company.com", "--config", cfg]);
    let bob_id = between(&out, "invite ", " ").unwrap().to_owned();
    let bob_link = between(&out, "link: ", "\n").unwrap().to_owned();
    let out = cli(&data, &["invite", "resend", &bob_id, "--config", cfg]);
    let bob_link2 = between(&out, "link: ", "\n").unwrap().to_owned();
    assert_ne!(bob_link, bob_link2);
    assert_eq!(http.get(&bob_link).send().await.unwrap().status(), 404, "the old link died");
    assert_eq!(http.get(&bob_link2).send().await.unwrap().status(), 200);
    assert!(cli(&data, &["invite", "revoke", &bob_id]).contains("revoked"));
    assert_eq!(http.get(&bob_link2).send().await.unwrap().status(), 410);
    assert_eq!(smtp.wait_for(3, Duration::from_secs(10)).await.len(), 3);

    // A browser: the page, the button, Google's consent, the callback.
    let page = http.get(&link).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Connect Google"), "{page}");
    let resp =
        http.post(format!("{base}/invite/connect")).form(&[("token", &invite_token)]).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let to_google = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(to_google.starts_with(&google.auth_url()), "{to_google}");
    let state = between(&to_google, "state=", "&").unwrap().to_owned();
    let resp = http.get(&to_google).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let callback = resp.headers()["location"].to_str().unwrap().to_owned();
    let code = between(&callback, "code=", "&").unwrap().to_owned();
    let ready = http.get(&callback).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready = ready.text().await.unwrap();
    let user_token = between(&ready, "data-testid=\"user-token\">", "<").unwrap().to_owned();

    // The new person's token works and the agent reads her Gmail.
    let me: Value = http
        .get(format!("{base}/api/v1/me"))
        .bearer_auth(&user_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["agent"]["id"], "alice-company-com");
    let session: Value = http
        .post(format!("{base}/api/v1/sessions"))
        .bearer_auth(&user_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = session["id"].as_str().unwrap();
    let reply: Value = http
        .post(format!("{base}/api/v1/sessions/{id}/messages"))
        .bearer_auth(&user_token)
        .json(&json!({"content": "anything new?"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(reply["reply"]["body"].as_str().unwrap().contains("quarterly"), "{reply}");
    let tool_result = &llm.chat_requests()[1].tool_results()[0].content;
    assert!(tool_result.contains("Quarterly numbers"), "{tool_result}");
    let access_token = google
        .api_requests()
        .iter()
        .find_map(|r| r.header("authorization").map(|a| a.trim_start_matches("Bearer ").to_owned()))
        .unwrap();

    Command::new("kill").arg("-TERM").arg(gw.child.id().to_string()).status().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(gw);
    let key = MasterKey::from_hex(&SecretString::from(MASTER)).unwrap();
    let store = SqliteStore::open(&data.join("crewgate.db"), &key).await.unwrap();
    let user = store.find_user_by_email(ALICE).await.unwrap().unwrap();
    let google_secret = store.get_secret(user.id.as_str(), "google").await.unwrap().unwrap();
    let stored: Value = serde_json::from_str(google_secret.expose_secret()).unwrap();
    let refresh_token = stored["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(stored["access_token"].as_str(), Some(access_token.as_str()));
    let _ = UserId::parse(user.id.as_str()).unwrap();

    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.len() > 10_000, "trace logging was on: {} bytes", logs.len());
    assert!(logs.contains("invite") || logs.contains("oauth"), "the onboarding requests were logged at all");
    for (what, secret) in [
        ("invite token", invite_token.as_str()),
        ("OAuth state", state.as_str()),
        ("OAuth code", code.as_str()),
        ("Google access token", access_token.as_str()),
        ("Google refresh token", refresh_token.as_str()),
        ("user token", user_token.as_str()),
    ] {
        assert!(secret.len() >= 16, "{what} looks wrong: {secret}");
        assert!(!logs.contains(secret), "the {what} appears in the gateway's logs");
    }
}
