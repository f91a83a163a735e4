//! Onboarding end to end through the real server: the orchestrator (scripted fake LLM) invites
//! a person after the admin approves, the invite e-mail arrives at a fake SMTP server, a real
//! HTTP client follows the link through the fake Google's consent (authorization code + PKCE)
//! back to the callback, and the person ends up with their own worker, token and Google tools.
//! Every refusal is tried and must create nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod approval_world;

use approval_world::common::{self, LLM_KEY};
use crewgate_core::{AgentId, IssuedToken, TokenHash, TokenKind, now_millis};
use crewgate_runtime::tools::external::{google_scopes, register_external_tools};
use crewgate_runtime::{Runtime, Skill, ToolRegistry};
use crewgate_server::bootstrap::{BootstrapInput, bootstrap};
use crewgate_server::onboarding::google::GoogleOAuth;
use crewgate_server::onboarding::mail::{SmtpMailer, SmtpSettings};
use crewgate_server::onboarding::tools::register_admin_tools;
use crewgate_server::onboarding::{Onboarding, OnboardingSettings};
use crewgate_server::{AppState, router};
use crewgate_store::onboarding::{InviteOrigin, NewInvite};
use crewgate_store::{SqliteStore, Store};
use crewgate_testkit::fake_attio::FakeAttio;
use crewgate_testkit::fake_google::{CLIENT_ID, CLIENT_SECRET, FakeGoogle};
use crewgate_testkit::fake_llm::{FakeLlm, Responder, Step};
use crewgate_testkit::fake_notion::FakeNotion;
use crewgate_testkit::fake_smtp::FakeSmtp;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Onb {
    base: String,
    store: Arc<dyn Store>,
    llm: FakeLlm,
    google: FakeGoogle,
    smtp: FakeSmtp,
    admin: String,
    plans: Arc<Mutex<HashMap<String, VecDeque<Step>>>>,
    /// Never follows redirects (so each hop can be inspected).
    http: reqwest::Client,
    _notion: FakeNotion,
    _attio: FakeAttio,
    _dir: tempfile::TempDir,
}

async fn start(tweak: impl FnOnce(&mut OnboardingSettings)) -> Onb {
    let dir = tempfile::tempdir().unwrap();
    let key = crewgate_core::MasterKey::from_hex(&SecretString::from("07".repeat(32))).unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("db"), &key).await.unwrap());
    let report = bootstrap(store.as_ref(), BootstrapInput::default()).await.unwrap();
    let admin = report.new_admin_token.unwrap().secret.expose_secret().to_owned();

    let google = FakeGoogle::start().await;
    let notion = FakeNotion::start().await;
    let attio = FakeAttio::start().await;
    let smtp = FakeSmtp::start().await;
    let llm = FakeLlm::builder().api_key(LLM_KEY).chunk_delay(Duration::ZERO).start().await;
    let plans: Arc<Mutex<HashMap<String, VecDeque<Step>>>> = Arc::default();
    let p = plans.clone();
    llm.set_default(Responder::from_fn(move |req| {
        let session = req.user().unwrap_or_default().to_owned();
        p.lock().unwrap().get_mut(&session).and_then(VecDeque::pop_front).unwrap_or_else(|| Step::text("ok"))
    }));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    google.set_client(CLIENT_ID, CLIENT_SECRET, &[&format!("{base}/oauth/google/callback")]);
    let mut settings = OnboardingSettings {
        public_url: base.clone(),
        google: Some(GoogleOAuth {
            client_id: CLIENT_ID.into(),
            client_secret: SecretString::from(CLIENT_SECRET),
            auth_url: google.auth_url(),
            token_url: google.token_url(),
            userinfo_url: google.userinfo_url(),
            scopes: google_scopes(),
        }),
        allowed_domains: vec!["company.com".into()],
        self_service: true,
        ..OnboardingSettings::default()
    };
    tweak(&mut settings);
    let mailer = SmtpMailer::new(&SmtpSettings {
        host: smtp.host(),
        port: smtp.port(),
        username: None,
        password: None,
        from: "crewgate@company.com".into(),
        starttls: false,
        plaintext: true,
    })
    .unwrap();
    let onboarding = Arc::new(Onboarding::new(settings, Some(Arc::new(mailer))));
    let mut tools = ToolRegistry::with_defaults();
    register_external_tools(
        &mut tools,
        &approval_world::toolbox(&google, &notion, &attio),
        &[Skill::Gog, Skill::Notion, Skill::AttioCrm],
    )
    .unwrap();
    register_admin_tools(&mut tools, onboarding.clone()).unwrap();
    let runtime = Arc::new(Runtime::new(store.clone(), common::runtime_settings(&llm), tools));
    let app = router(AppState::with_runtime(store.clone(), runtime).with_onboarding(onboarding));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Onb {
        base,
        store,
        llm,
        google,
        smtp,
        admin,
        plans,
        http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
        _notion: notion,
        _attio: attio,
        _dir: dir,
    }
}

/// What a browser ends on: final status, final URL and page text.
struct Landing {
    status: u16,
    url: String,
    body: String,
}

impl Onb {
    async fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let mut req =
            self.http.request(method.parse().unwrap(), format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    fn plan(&self, session: &str, steps: impl IntoIterator<Item = Step>) {
        self.plans.lock().unwrap().entry(session.to_owned()).or_default().extend(steps);
    }

    /// Follows redirects by hand from `resp` (like a browser), returning where it lands.
    async fn follow(&self, mut resp: reqwest::Response) -> Landing {
        let mut url = resp.url().to_string();
        for _ in 0..10 {
            if !resp.status().is_redirection() {
                break;
            }
            let next = resp.headers()["location"].to_str().unwrap().to_owned();
            url = if next.starts_with("http") { next } else { format!("{}{next}", self.base) };
            resp = self.http.get(&url).send().await.unwrap();
        }
        let status = resp.status().as_u16();
        Landing { status, url, body: resp.text().await.unwrap() }
    }

    /// Opens the invite link and presses "Connect Google".
    async fn accept(&self, link: &str) -> Landing {
        let page = self.http.get(link).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        let token = between(&html, "name=\"token\" value=\"", "\"").expect("connect form");
        let resp = self
            .http
            .post(format!("{}/invite/connect", self.base))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 303, "connect redirects to Google");
        self.follow(resp).await
    }

    /// Starts consent for an invite link and stops at the callback URL Google redirects to.
    async fn callback_url(&self, link: &str) -> String {
        let token = link.rsplit('/').next().unwrap();
        let resp = self
            .http
            .post(format!("{}/invite/connect", self.base))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 303);
        let google = resp.headers()["location"].to_str().unwrap().to_owned();
        let resp = self.http.get(&google).send().await.unwrap();
        assert_eq!(resp.status(), 302, "the fake Google redirects back");
        resp.headers()["location"].to_str().unwrap().to_owned()
    }

    /// The admin tells the orchestrator to onboard `email`; the proposal waits until the admin
    /// says yes; then the invite e-mail goes out. Returns the link from the e-mail.
    async fn invite_through_orchestrator(&self, email: &str, name: &str) -> String {
        let (s, v) = self.call("POST", "/api/v1/sessions?agent=orchestrator", &self.admin, None).await;
        assert_eq!(s, 201, "{v}");
        let session = v["id"].as_str().unwrap().to_owned();
        self.plan(
            &session,
            [
                Step::tool_call("onboard_user", json!({"email": email.to_uppercase(), "name": name})),
                Step::text("I prepared the invite."),
            ],
        );
        let path = format!("/api/v1/sessions/{session}/messages?agent=orchestrator");
        let mails_before = self.smtp.messages().len();
        let invites_before = self.store.list_invites().await.unwrap().len();
        let (s, v) =
            self.call("POST", &path, &self.admin, Some(json!({"content": format!("Onboard {email}")}))).await;
        assert_eq!(s, 200, "{v}");
        let reply = v["reply"]["body"].as_str().unwrap();
        assert!(reply.contains("invite a person and create their agent"), "{reply}");
        assert!(reply.contains(&format!("**E-mail:** {email}")), "{reply}");
        assert_eq!(self.smtp.messages().len(), mails_before, "nothing is sent before the admin approves");
        assert_eq!(self.store.list_invites().await.unwrap().len(), invites_before);
        let offered = self.llm.chat_requests().last().unwrap().tool_names();
        assert!(offered.contains(&"onboard_user".to_owned()), "{offered:?}");

        let (s, v) = self.call("POST", &path, &self.admin, Some(json!({"content": "yes"}))).await;
        assert_eq!(s, 200, "{v}");
        assert!(v["reply"]["body"].as_str().unwrap().contains("done"), "{v}");
        let mail = self.smtp.wait_for(mails_before + 1, Duration::from_secs(10)).await;
        let invite_mail = &mail[mails_before];
        assert_eq!(invite_mail.to, [email]);
        assert_eq!(invite_mail.subject.as_deref(), Some("Your crewgate assistant is ready to connect"));
        let link = link_in(&invite_mail.body);
        assert!(link.starts_with(&format!("{}/invite/cgi_", self.base)), "{link}");
        link
    }

    async fn invite_link(&self, email: &str) -> String {
        let (s, v) = self.call("POST", "/api/v1/invites", &self.admin, Some(json!({"email": email}))).await;
        assert_eq!(s, 201, "{v}");
        v["link"].as_str().unwrap().to_owned()
    }

    async fn agent_count(&self) -> usize {
        self.store.list_agents().await.unwrap().len()
    }

    async fn notices(&self) -> Vec<String> {
        let orch = AgentId::parse("orchestrator").unwrap();
        let mut out = Vec::new();
        for s in self.store.list_sessions(&orch).await.unwrap() {
            for m in self.store.list_messages(&orch, &s.id).await.unwrap() {
                out.push(m.body);
            }
        }
        out
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let to = s[from..].find(end)? + from;
    Some(&s[from..to])
}

fn link_in(text: &str) -> String {
    text.split_whitespace().find(|w| w.contains("/invite/cgi_")).unwrap().to_owned()
}

/// Seeds one message in the person's fake mailbox, so a Gmail search shows whose it is.
fn seed_mail(google: &FakeGoogle, email: &str, subject: &str) {
    let raw = format!(
        "From: Someone <someone@ext.com>\r\nTo: {email}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@ext.com>\r\n\
         Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello.\r\n"
    );
    google.add_message(email, &raw, &["INBOX"]);
}

#[tokio::test]
async fn admin_onboards_alice_through_the_orchestrator() {
    let o = start(|_| {}).await;
    let alice = "alice@company.com";
    o.google.add_account(alice);
    o.google.sign_in_as(alice);
    seed_mail(&o.google, alice, "Only-for-Alice");
    o.google.add_account("bob@company.com");
    seed_mail(&o.google, "bob@company.com", "Only-for-Bob");

    let link = o.invite_through_orchestrator(alice, "Alice Ng").await;
    let mail = o.smtp.messages();
    assert_eq!(mail[0].to, [alice]);
    let invites = o.store.list_invites().await.unwrap();
    assert_eq!((invites[0].email.as_str(), invites[0].agent_id.as_str()), (alice, "alice-company-com"));
    // Only the hash of the token is stored.
    let token = link.rsplit('/').next().unwrap();
    assert!(o.store.find_invite_by_token(&TokenHash::of(token)).await.unwrap().is_some());

    // The invite page explains what will be connected.
    let page = o.http.get(&link).send().await.unwrap().text().await.unwrap();
    for words in
        ["alice@company.com", "alice-company-com", "Gmail", "Calendar", "Drive", "Connect Google", "approval"]
    {
        assert!(page.contains(words), "invite page lacks {words:?}");
    }

    let landing = o.accept(&link).await;
    assert_eq!(landing.status, 200, "{}", landing.body);
    assert!(landing.url.starts_with(&format!("{}/oauth/google/callback?", o.base)), "{}", landing.url);
    assert!(landing.body.contains("Your assistant is ready"), "{}", landing.body);
    let user_token = between(&landing.body, "data-testid=\"user-token\">", "<").unwrap().to_owned();
    assert!(user_token.starts_with("cgu_"));

    // The worker exists, belongs to Alice, and her token reaches only it.
    let agent = o.store.get_agent(&AgentId::parse("alice-company-com").unwrap()).await.unwrap().unwrap();
    let user = o.store.find_user_by_email(alice).await.unwrap().unwrap();
    assert_eq!(agent.owner.as_ref(), Some(&user.id));
    assert_eq!(user.name.as_deref(), Some("Alice Ng"));
    assert_eq!(agent.settings["subagents"]["allowAgents"], json!(["orchestrator"]));
    let (s, me) = o.call("GET", "/api/v1/me", &user_token, None).await;
    assert_eq!((s, me["agent"]["id"].as_str()), (200, Some("alice-company-com")), "{me}");
    assert_eq!(o.call("GET", "/api/v1/agents/orchestrator", &user_token, None).await.0, 404);
    assert_eq!(o.call("GET", "/api/v1/invites", &user_token, None).await.0, 403);
    assert_eq!(o.call("GET", "/api/v1/sessions?agent=orchestrator", &user_token, None).await.0, 404);

    // Her Google tools use her own credentials: her mailbox, not Bob's.
    let (_, v) = o.call("POST", "/api/v1/sessions", &user_token, None).await;
    let alice_session = v["id"].as_str().unwrap().to_owned();
    o.plan(
        &alice_session,
        [Step::tool_call("gmail_search", json!({"query": "in:inbox"})), Step::text("Found it.")],
    );
    let before = o.llm.chat_requests().len();
    let (s, v) = o
        .call(
            "POST",
            &format!("/api/v1/sessions/{alice_session}/messages"),
            &user_token,
            Some(json!({"content": "what is in my inbox?"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let requests = o.llm.chat_requests();
    assert!(
        !requests[before].tool_names().contains(&"onboard_user".to_owned()),
        "workers get no admin tools"
    );
    let result = &requests[before + 1].tool_results()[0].content;
    assert!(result.contains("Only-for-Alice") && !result.contains("Only-for-Bob"), "{result}");

    // The admin was told in the orchestrator's Onboarding session, and Alice got a confirmation.
    let notices = o.notices().await;
    assert!(
        notices
            .iter()
            .any(|n| n.contains("alice@company.com connected Google") && n.contains("alice-company-com")),
        "{notices:?}"
    );
    let mail = o.smtp.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(mail[1].to, [alice]);
    assert_eq!(mail[1].subject.as_deref(), Some("Your crewgate assistant is ready"));
    assert!(!mail[1].body.contains(&user_token), "the token is never e-mailed");
    let (_, audit) = o.call("GET", "/api/v1/audit", &o.admin, None).await;
    let actions: Vec<&str> = audit.as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for a in ["invite.create", "invite.accept", "agent.create", "token.issue"] {
        assert!(actions.contains(&a), "audit lacks {a}: {actions:?}");
    }

    // The link is single-use.
    let again = o.http.get(&link).send().await.unwrap();
    assert_eq!(again.status(), 410);
    assert!(again.text().await.unwrap().contains("already used"));
}

#[tokio::test]
async fn self_service_join_issues_an_invite_and_onboards_bob() {
    let o = start(|_| {}).await;
    let bob = "bob@company.com";
    o.google.add_account(bob);
    o.google.sign_in_as(bob);
    assert_eq!(o.http.get(format!("{}/join", o.base)).send().await.unwrap().status(), 200);
    let resp =
        o.http.post(format!("{}/join", o.base)).form(&[("email", "Bob@company.com")]).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.unwrap();
    let link = between(&page, "data-testid=\"invite-link\" href=\"", "\"").unwrap().to_owned();
    // Also e-mailed, and the same link.
    let mail = o.smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(link_in(&mail[0].body), link);
    let landing = o.accept(&link).await;
    assert_eq!(landing.status, 200, "{}", landing.body);
    let token = between(&landing.body, "data-testid=\"user-token\">", "<").unwrap().to_owned();
    let (s, me) = o.call("GET", "/api/v1/me", &token, None).await;
    assert_eq!((s, me["agent"]["id"].as_str()), (200, Some("bob-company-com")));
    let invite = &o.store.list_invites().await.unwrap()[0];
    assert_eq!(invite.origin, InviteOrigin::SelfService);
    let notices = o.notices().await;
    assert!(notices.iter().any(|n| n.contains("bob@company.com requested an agent")), "{notices:?}");
    assert!(notices.iter().any(|n| n.contains("bob@company.com connected Google")), "{notices:?}");
    // Self-service confirmations are not mailed a second time (the person just saw the page).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(o.smtp.messages().len(), 1);

    // A foreign domain cannot even ask.
    let resp =
        o.http.post(format!("{}/join", o.base)).form(&[("email", "mallory@evil.com")]).send().await.unwrap();
    let page = resp.text().await.unwrap();
    assert!(page.contains("not in an allowed domain"), "{page}");
    assert_eq!(o.store.list_invites().await.unwrap().len(), 1);
}

#[tokio::test]
async fn join_with_admin_approval_only_asks_the_admin() {
    let o = start(|s| {
        s.require_admin_approval = true;
        s.admin_email = Some("it@company.com".into());
    })
    .await;
    let resp =
        o.http.post(format!("{}/join", o.base)).form(&[("email", "carol@company.com")]).send().await.unwrap();
    let page = resp.text().await.unwrap();
    assert!(page.contains("sent to the admin"), "{page}");
    assert!(o.store.list_invites().await.unwrap().is_empty());
    let notices = o.notices().await;
    assert!(notices.iter().any(|n| n.contains("carol@company.com asked for an agent")), "{notices:?}");
    let mail = o.smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mail[0].to, ["it@company.com"]);
    assert!(mail[0].body.contains("carol@company.com asked for an agent"), "{}", mail[0].body);

    // The admin answers through the orchestrator; Carol gets her link by e-mail and connects.
    let carol = "carol@company.com";
    o.google.add_account(carol);
    o.google.sign_in_as(carol);
    let link = o.invite_through_orchestrator(carol, "Carol").await;
    let landing = o.accept(&link).await;
    assert_eq!(landing.status, 200, "{}", landing.body);
    let token = between(&landing.body, "data-testid=\"user-token\">", "<").unwrap().to_owned();
    let (s, me) = o.call("GET", "/api/v1/me", &token, None).await;
    assert_eq!((s, me["agent"]["id"].as_str()), (200, Some("carol-company-com")), "{me}");
    assert!(o.notices().await.iter().any(|n| n.contains("carol@company.com connected Google")));
}

#[tokio::test]
async fn join_is_refused_when_self_service_is_off() {
    let o = start(|s| s.self_service = false).await;
    assert_eq!(o.http.get(format!("{}/join", o.base)).send().await.unwrap().status(), 403);
    let resp =
        o.http.post(format!("{}/join", o.base)).form(&[("email", "carol@company.com")]).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert!(o.store.list_invites().await.unwrap().is_empty());
}

/// Each refusal shows a clear page and creates no user and no agent.
#[tokio::test]
async fn every_refusal_creates_nothing() {
    let o = start(|_| {}).await;
    let agents = o.agent_count().await;
    for email in ["erin@company.com", "frank@company.com", "gina@company.com", "hal@company.com"] {
        o.google.add_account(email);
    }

    // Expired invite.
    let expired = IssuedToken::generate(TokenKind::Invite);
    o.store
        .create_invite(NewInvite {
            token_hash: expired.hash.clone(),
            email: "old@company.com".into(),
            name: None,
            agent_id: AgentId::parse("old-company-com").unwrap(),
            origin: InviteOrigin::Admin,
            created_by: "test".into(),
            expires_at: now_millis() - 1,
        })
        .await
        .unwrap();
    let link = format!("{}/invite/{}", o.base, expired.secret.expose_secret());
    let resp = o.http.get(&link).send().await.unwrap();
    assert_eq!(resp.status(), 410);
    assert!(resp.text().await.unwrap().contains("expired"));
    let resp = o
        .http
        .post(format!("{}/invite/connect", o.base))
        .form(&[("token", expired.secret.expose_secret())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 410, "no trip to Google for an expired invite");

    // Unknown invite and unknown state.
    assert_eq!(o.http.get(format!("{}/invite/cgi_nope", o.base)).send().await.unwrap().status(), 404);
    let resp =
        o.http.get(format!("{}/oauth/google/callback?code=abc&state=forged", o.base)).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("no longer valid"));

    // Consent denied.
    let erin = o.invite_link("erin@company.com").await;
    o.google.sign_in_as("erin@company.com");
    o.google.deny_consent(true);
    let landing = o.accept(&erin).await;
    assert_eq!(landing.status, 400);
    assert!(landing.body.contains("declined"), "{}", landing.body);
    o.google.deny_consent(false);

    // Signed in to Google as someone else than the invited person.
    o.google.sign_in_as("frank@company.com");
    let landing = o.accept(&erin).await;
    assert_eq!(landing.status, 400);
    assert!(landing.body.contains("signed in to Google as frank@company.com"), "{}", landing.body);

    // Unverified address.
    o.google.sign_in_as("erin@company.com");
    o.google.set_email_verified("erin@company.com", false);
    let landing = o.accept(&erin).await;
    assert_eq!(landing.status, 400);
    assert!(landing.body.contains("has not verified"), "{}", landing.body);
    o.google.set_email_verified("erin@company.com", true);

    // A consumer account (no Workspace domain) although the address looks right.
    o.google.set_hosted_domain("erin@company.com", None);
    let landing = o.accept(&erin).await;
    assert_eq!(landing.status, 400);
    assert!(landing.body.contains("not an account of an allowed company domain"), "{}", landing.body);
    o.google.set_hosted_domain("erin@company.com", Some("company.com"));

    // A state is single-use: replaying a callback fails even though the first one succeeded.
    o.google.sign_in_as("gina@company.com");
    let gina = o.invite_link("gina@company.com").await;
    let callback = o.callback_url(&gina).await;
    let first = o.http.get(&callback).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let second = o.http.get(&callback).send().await.unwrap();
    assert_eq!(second.status(), 400);
    assert!(second.text().await.unwrap().contains("no longer valid"));
    assert_eq!(o.agent_count().await, agents + 1, "only gina's first callback created an agent");

    // PKCE: a code from one consent used with another consent's state fails at Google.
    o.google.sign_in_as("hal@company.com");
    let hal = o.invite_link("hal@company.com").await;
    let cb1 = o.callback_url(&hal).await;
    let cb2 = o.callback_url(&hal).await;
    let code1 = between(&cb1, "code=", "&").unwrap();
    let state2 = cb2.split("state=").nth(1).unwrap().split('&').next().unwrap();
    let swapped = format!("{}/oauth/google/callback?code={code1}&state={state2}", o.base);
    let resp = o.http.get(&swapped).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("Google refused the sign-in"));
    let token_calls: Vec<_> = o.google.requests().into_iter().filter(|r| r.path == "/token").collect();
    assert!(token_calls.iter().any(|r| r.status == 400), "the fake refused the verifier");

    // Nothing but gina was created; erin's and hal's invites are still usable.
    assert_eq!(o.agent_count().await, agents + 1);
    for email in ["erin@company.com", "frank@company.com", "hal@company.com", "old@company.com"] {
        assert!(o.store.find_user_by_email(email).await.unwrap().is_none(), "{email} was created");
    }
    let now = now_millis();
    let pending: Vec<String> = o
        .store
        .list_invites()
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.status(now) == "pending")
        .map(|i| i.email)
        .collect();
    assert!(
        pending.contains(&"erin@company.com".to_owned()) && pending.contains(&"hal@company.com".to_owned())
    );

    // And a correct retry of erin's invite still works.
    o.google.sign_in_as("erin@company.com");
    let landing = o.accept(&erin).await;
    assert_eq!(landing.status, 200, "{}", landing.body);
}

#[tokio::test]
async fn two_people_with_colliding_ids_onboard_at_once() {
    let o = start(|_| {}).await;
    // Both derive `a-b-company-com`.
    let (x, y) = ("a.b@company.com", "a-b@company.com");
    o.google.add_account(x);
    o.google.add_account(y);
    let (lx, ly) = tokio::join!(o.invite_link(x), o.invite_link(y));
    // The browser identity comes from `login_hint` (nobody signed in), so both run at once.
    o.google.sign_out();
    let (a, b) = tokio::join!(o.accept(&lx), o.accept(&ly));
    assert_eq!((a.status, b.status), (200, 200), "{} / {}", a.body, b.body);
    let ida = between(&a.body, "data-testid=\"agent-id\">", "<").unwrap().to_owned();
    let idb = between(&b.body, "data-testid=\"agent-id\">", "<").unwrap().to_owned();
    let mut ids = vec![ida, idb];
    ids.sort();
    assert_eq!(ids, ["a-b-company-com", "a-b-company-com-2"]);
    let ux = o.store.find_user_by_email(x).await.unwrap().unwrap();
    let uy = o.store.find_user_by_email(y).await.unwrap().unwrap();
    let wx = o.store.worker_of_user(&ux.id).await.unwrap().unwrap();
    let wy = o.store.worker_of_user(&uy.id).await.unwrap().unwrap();
    assert_ne!(wx.id, wy.id);
}

#[tokio::test]
async fn a_member_reconnects_google_after_the_grant_was_revoked() {
    let o = start(|_| {}).await;
    let alice = "alice@company.com";
    o.google.add_account(alice);
    o.google.sign_in_as(alice);
    let link = o.invite_link(alice).await;
    let landing = o.accept(&link).await;
    let token = between(&landing.body, "data-testid=\"user-token\">", "<").unwrap().to_owned();
    let user = o.store.find_user_by_email(alice).await.unwrap().unwrap();
    let status = crewgate_runtime::tools::external::google_status(o.store.as_ref(), &user.id).await.unwrap();
    assert!(
        matches!(status, crewgate_runtime::tools::external::GoogleStatus::Connected { .. }),
        "{status:?}"
    );

    // Google revokes the grant; the next tool call marks the connection.
    o.google.revoke(alice);
    o.google.expire_access_tokens(alice);
    let (_, v) = o.call("POST", "/api/v1/sessions", &token, None).await;
    let session = v["id"].as_str().unwrap().to_owned();
    o.plan(&session, [Step::tool_call("gmail_search", json!({"query": "x"})), Step::text("Hmm.")]);
    o.call(
        "POST",
        &format!("/api/v1/sessions/{session}/messages"),
        &token,
        Some(json!({"content": "mail?"})),
    )
    .await;
    let status = crewgate_runtime::tools::external::google_status(o.store.as_ref(), &user.id).await.unwrap();
    assert!(
        matches!(status, crewgate_runtime::tools::external::GoogleStatus::NeedsReconnect { .. }),
        "{status:?}"
    );

    // Reconnect from the dashboard's API: a fresh consent restores the connection.
    let (s, v) = o.call("POST", "/api/v1/me/google/connect", &token, None).await;
    assert_eq!(s, 200, "{v}");
    let url = v["url"].as_str().unwrap();
    assert!(
        url.contains("login_hint=alice%40company.com") && url.contains("code_challenge_method=S256"),
        "{url}"
    );
    let landing = o.follow(o.http.get(url).send().await.unwrap()).await;
    assert_eq!(landing.status, 200, "{}", landing.body);
    assert!(landing.body.contains("Google reconnected"), "{}", landing.body);
    assert!(landing.body.contains(&format!("href=\"{}/\"", o.base)), "a way back: {}", landing.body);
    let status = crewgate_runtime::tools::external::google_status(o.store.as_ref(), &user.id).await.unwrap();
    assert!(
        matches!(status, crewgate_runtime::tools::external::GoogleStatus::Connected { .. }),
        "{status:?}"
    );

    // Reconnecting as someone else is refused and changes nothing.
    o.google.add_account("bob@company.com");
    o.google.sign_in_as("bob@company.com");
    let (_, v) = o.call("POST", "/api/v1/me/google/connect", &token, None).await;
    let landing = o.follow(o.http.get(v["url"].as_str().unwrap()).send().await.unwrap()).await;
    assert_eq!(landing.status, 400);
    assert!(landing.body.contains("signed in to Google as bob@company.com"), "{}", landing.body);
}

#[tokio::test]
async fn admin_invite_api_lists_resends_and_revokes() {
    let o = start(|_| {}).await;
    let first = o.invite_link("ivy@company.com").await;
    assert_eq!(o.smtp.wait_for(1, Duration::from_secs(10)).await.len(), 1);
    let (s, list) = o.call("GET", "/api/v1/invites", &o.admin, None).await;
    assert_eq!(s, 200);
    let id = list[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list[0]["status"], "pending");
    assert!(!list.to_string().contains("cgi_"), "no token in listings");
    // A second invite for the same person is a conflict; a foreign domain is refused.
    let (s, _) = o.call("POST", "/api/v1/invites", &o.admin, Some(json!({"email": "ivy@company.com"}))).await;
    assert_eq!(s, 409);
    let (s, v) = o.call("POST", "/api/v1/invites", &o.admin, Some(json!({"email": "x@evil.com"}))).await;
    assert_eq!(s, 400, "{v}");
    // Resend: a new link, the old one dies, the mail goes out again.
    let (s, v) = o.call("POST", &format!("/api/v1/invites/{id}/resend"), &o.admin, None).await;
    assert_eq!(s, 200, "{v}");
    let second = v["link"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(o.http.get(&first).send().await.unwrap().status(), 404);
    assert_eq!(o.http.get(&second).send().await.unwrap().status(), 200);
    assert_eq!(o.smtp.wait_for(2, Duration::from_secs(10)).await.len(), 2);
    // Revoke: the link stops working.
    assert_eq!(o.call("DELETE", &format!("/api/v1/invites/{id}"), &o.admin, None).await.0, 204);
    let resp = o.http.get(&second).send().await.unwrap();
    assert_eq!(resp.status(), 410);
    assert!(resp.text().await.unwrap().contains("revoked"));
    let (_, list) = o.call("GET", "/api/v1/invites", &o.admin, None).await;
    assert_eq!(list[0]["status"], "revoked");
}

impl Onb {
    /// One orchestrator turn in a fresh admin session that calls `tool` with `args`; returns the
    /// session's message path and the turn's JSON.
    async fn orchestrator_calls(&self, tool: &str, args: Value) -> (String, Value) {
        let (_, v) = self.call("POST", "/api/v1/sessions?agent=orchestrator", &self.admin, None).await;
        let session = v["id"].as_str().unwrap().to_owned();
        self.plan(&session, [Step::tool_call(tool, args), Step::text("Done asking.")]);
        let path = format!("/api/v1/sessions/{session}/messages?agent=orchestrator");
        let (s, v) = self.call("POST", &path, &self.admin, Some(json!({"content": "please"}))).await;
        assert_eq!(s, 200, "{v}");
        (path, v)
    }

    async fn onboard(&self, email: &str) -> String {
        self.google.add_account(email);
        self.google.sign_in_as(email);
        let link = self.invite_link(email).await;
        let landing = self.accept(&link).await;
        assert_eq!(landing.status, 200, "{}", landing.body);
        between(&landing.body, "data-testid=\"user-token\">", "<").unwrap().to_owned()
    }
}

#[tokio::test]
async fn the_orchestrators_admin_tools_read_freely_and_write_only_after_the_admin_says_yes() {
    let o = start(|_| {}).await;
    let alice = "alice@company.com";
    let token = o.onboard(alice).await;

    // Reads run at once.
    let (_, v) = o.orchestrator_calls("list_users", json!({})).await;
    assert!(v["proposals"].as_array().is_none_or(Vec::is_empty), "{v}");
    let result = &o.llm.chat_requests().last().unwrap().tool_results()[0].content;
    assert!(result.contains(alice) && result.contains("alice-company-com"), "{result}");
    o.orchestrator_calls("user_status", json!({"email": alice})).await;
    let result = &o.llm.chat_requests().last().unwrap().tool_results()[0].content;
    assert!(result.contains("\"connected\"") && result.contains("\"live_tokens\":1"), "{result}");

    // Rotation: pending until approved; then the old token dies and the new link is e-mailed.
    let mails = o.smtp.messages().len();
    let (path, v) = o.orchestrator_calls("rotate_user_token", json!({"email": alice})).await;
    assert_eq!(v["proposals"][0]["state"], "pending", "{v}");
    assert_eq!(o.call("GET", "/api/v1/me", &token, None).await.0, 200, "nothing happened yet");
    let (_, v) = o.call("POST", &path, &o.admin, Some(json!({"content": "yes"}))).await;
    assert!(v["reply"]["body"].as_str().unwrap().contains("done"), "{v}");
    assert_eq!(o.call("GET", "/api/v1/me", &token, None).await.0, 401);
    let mail = o.smtp.wait_for(mails + 1, Duration::from_secs(10)).await;
    let new_link =
        mail[mails].body.split_whitespace().find(|w| w.contains("?token=cgu_")).unwrap().to_owned();
    let new_token = new_link.split("token=").nth(1).unwrap().to_owned();
    assert_eq!(o.call("GET", "/api/v1/me", &new_token, None).await.0, 200);
    let results =
        o.llm.chat_requests().iter().flat_map(|r| r.tool_results()).map(|t| t.content).collect::<Vec<_>>();
    assert!(results.iter().all(|r| !r.contains(&new_token)), "the model never sees a token");

    // Suspension: a "no" changes nothing; a "yes" locks the person out at once.
    let (path, _) = o.orchestrator_calls("suspend_user", json!({"email": alice})).await;
    let (_, v) = o.call("POST", &path, &o.admin, Some(json!({"content": "no"}))).await;
    assert!(v["reply"]["body"].as_str().unwrap().contains("nothing was done"), "{v}");
    assert_eq!(o.call("GET", "/api/v1/me", &new_token, None).await.0, 200);
    let (path, _) = o.orchestrator_calls("suspend_user", json!({"email": alice})).await;
    o.call("POST", &path, &o.admin, Some(json!({"content": "yes"}))).await;
    assert_eq!(o.call("GET", "/api/v1/me", &new_token, None).await.0, 401);
    let user = o.store.find_user_by_email(alice).await.unwrap().unwrap();
    assert_eq!(user.status, crewgate_core::UserStatus::Suspended);

    // Shared settings: new workers get only the chosen skills.
    let (path, v) =
        o.orchestrator_calls("update_shared_settings", json!({"worker_skills": ["notion"]})).await;
    assert_eq!(v["proposals"][0]["state"], "pending", "{v}");
    o.call("POST", &path, &o.admin, Some(json!({"content": "yes"}))).await;
    o.onboard("bob@company.com").await;
    let bob = o.store.get_agent(&AgentId::parse("bob-company-com").unwrap()).await.unwrap().unwrap();
    assert_eq!(bob.settings["skills"], json!(["notion"]));
    let alice_agent =
        o.store.get_agent(&AgentId::parse("alice-company-com").unwrap()).await.unwrap().unwrap();
    assert!(alice_agent.settings.get("skills").is_none(), "existing workers are unchanged");

    // A member's own agent is never offered these tools, and cannot make the orchestrator act.
    let (s, _) = o.call("POST", "/api/v1/sessions?agent=orchestrator", &token, None).await;
    assert_eq!(s, 401, "a rotated token");
}

#[tokio::test]
async fn the_admins_socket_hears_orchestrator_proposals_without_subscribing() {
    let o = start(|_| {}).await;
    let ws_url = format!("{}/api/v1/ws", o.base.replacen("http", "ws", 1));
    let mut ws = common::ws_connect(&ws_url, &o.admin).await;
    let (_, v) = o.orchestrator_calls("onboard_user", json!({"email": "dana@company.com"})).await;
    let id = v["proposals"][0]["id"].as_str().unwrap().to_owned();
    let ev = ws.next_json().await;
    assert_eq!(ev["type"], "proposal", "{ev}");
    assert_eq!(
        (ev["proposal"]["id"].as_str(), ev["proposal"]["state"].as_str()),
        (Some(id.as_str()), Some("pending"))
    );
}
