//! A fake of the Google APIs the crewgate tools use, on one origin with the real paths (what
//! `integrations.google.apiBase` expects): Gmail v1, Calendar v3, Drive v3 (search, export),
//! Sheets v4 (values), People v1 (searchContacts, otherContacts), OIDC userinfo, and OAuth:
//! the authorization endpoint (`GET /o/oauth2/v2/auth`, code flow with PKCE S256) and the token
//! endpoint (`POST /token`, authorization-code and refresh-token grants).
//!
//! It keeps per-account state (several accounts in one fake, each with its own access and
//! refresh tokens and granted scopes) and checks what Google checks: a valid, unexpired bearer
//! token of *that* account; the scopes the endpoint needs; JSON bodies and required fields;
//! `raw` messages that are base64url RFC 2822 with ASCII-only (RFC 2047-encoded) headers. Errors
//! come in Google's shape `{"error":{"code","message","status","errors":[{"reason"}]}}`.
//!
//! ```no_run
//! # async fn demo() {
//! use crewgate_testkit::fake_google::FakeGoogle;
//! let google = FakeGoogle::start().await;
//! let alice = google.add_account("alice@company.com");
//! // point the tools at google.base_url() / google.token_url(), use alice.access_token …
//! let sent = google.sent("alice@company.com");
//! # }
//! ```
//!
//! ## OAuth authorization code + PKCE
//!
//! Register the web client with [`FakeGoogle::set_client`] (until then `/o/oauth2/v2/auth`
//! answers Google's "Error 401: invalid_client" page). The authorization endpoint plays the
//! browser too: the person signed in ([`FakeGoogle::sign_in_as`], else a `login_hint` naming a
//! known account) consents at once (or refuses, [`FakeGoogle::deny_consent`]) and the answer is
//! the `302 Found` back to `redirect_uri` with `code` and `state`. Malformed requests get Google's
//! HTML error page (400/401, never a redirect). On top of what Google enforces, the fake requires
//! what crewgate must always send: `state`, scopes `openid` and `email`, and PKCE with `S256`
//! (Google itself would accept `plain` or no PKCE).
//!
//! ```no_run
//! # async fn demo() {
//! use crewgate_testkit::fake_google::FakeGoogle;
//! let google = FakeGoogle::start().await;
//! google.set_client("cid.apps.googleusercontent.com", "secret", &["https://gw.example/oauth/google"]);
//! google.add_account("alice@company.com");
//! google.sign_in_as("alice@company.com");
//! // GET google.auth_url()?client_id=…&redirect_uri=…&response_type=code&scope=openid%20email…
//! //     &state=…&code_challenge=…&code_challenge_method=S256  → 302 Location: …?code=…&state=…
//! // POST google.token_url() grant_type=authorization_code&code=…&code_verifier=…
//! # }
//! ```
//!
//! Codes live 10 minutes ([`FakeGoogle::expire_codes`]), are single-use and bound to the client,
//! the `redirect_uri`, the code challenge and the account. The exchange answers like Google:
//! `invalid_grant` "Invalid code verifier." / "Missing code verifier." / "Bad Request" (used or
//! expired code) / "Malformed auth code." (unknown code), `redirect_uri_mismatch` "Bad Request"
//! (different `redirect_uri`), `invalid_client` (unknown client, wrong secret; the client may
//! authenticate in the body or with HTTP Basic). A `refresh_token` is returned only with
//! `access_type=offline`, and after the first one only with `prompt=consent` (Google's rule).
//! The `id_token` is a JWT whose payload carries `iss`, `azp`, `aud`, `sub`, `email`,
//! `email_verified`, `hd` (if any), `iat`, `exp` (and `nonce`, `name`); its RS256 signature is
//! fake (there is no JWKS endpoint), so read the claims without verifying, or use userinfo.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use mailparse::{MailAddr, MailHeaderMap, ParsedMail};
use serde_json::{Map, Value, json};

use sha2::{Digest, Sha256};

use crate::fake_common::{
    Fault, RecordedRequest, Reply, Server, hex_id, lock, parse_query, parse_rfc3339, percent_decode,
    percent_encode, record, rfc3339, serve, take_fault, unix_millis, unix_now,
};

/// Scopes a new account grants: the set crewgate requests (apis.md §2.9).
pub const DEFAULT_SCOPES: &[&str] = &[
    "openid",
    "email",
    "profile",
    "gmail.readonly",
    "gmail.compose",
    "calendar.readonly",
    "calendar.events",
    "drive.readonly",
    "documents.readonly",
    "spreadsheets",
    "contacts.readonly",
    "contacts.other.readonly",
];

const SCOPE_PREFIX: &str = "https://www.googleapis.com/auth/";

/// Google scopes the authorization endpoint knows besides [`DEFAULT_SCOPES`] (short form);
/// anything else is `invalid_scope`.
const OTHER_KNOWN_SCOPES: &[&str] = &[
    "https://mail.google.com/",
    "gmail.send",
    "gmail.modify",
    "gmail.labels",
    "gmail.metadata",
    "calendar",
    "calendar.events.readonly",
    "drive",
    "drive.file",
    "drive.metadata.readonly",
    "documents",
    "spreadsheets.readonly",
    "contacts",
    "directory.readonly",
];

/// Path of the authorization endpoint (as on `accounts.google.com`).
const AUTH_PATH: &str = "/o/oauth2/v2/auth";

/// Lifetime of authorization codes.
const CODE_TTL: Duration = Duration::from_secs(600);

/// Credentials of one fake account, as the OAuth flow would have produced them.
#[derive(Debug, Clone)]
pub struct FakeGoogleAccount {
    pub email: String,
    pub access_token: String,
    pub refresh_token: String,
    /// Granted scopes, short form (`gmail.readonly`).
    pub scopes: Vec<String>,
}

/// A message as the fake understands it (parsed from the RFC 2822 it received or was seeded
/// with): headers decoded, body transfer-decoded.
#[derive(Debug, Clone)]
pub struct GmailMessage {
    pub id: String,
    pub thread_id: String,
    pub labels: Vec<String>,
    /// The RFC 2822 text exactly as received.
    pub raw: String,
    /// Header names and raw (undecoded) values, in order.
    pub headers: Vec<(String, String)>,
    pub from: Option<String>,
    /// Bare addresses.
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    /// Display names of the `To` mailboxes, decoded.
    pub to_names: Vec<Option<String>>,
    /// Decoded (RFC 2047).
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Option<String>,
    pub date: Option<String>,
    pub mime_type: String,
    pub charset: String,
    pub transfer_encoding: Option<String>,
    /// The text of the first `text/plain` part (or the single body), decoded.
    pub body: String,
    /// The `Idempotency-Key` header of the request that sent or drafted it.
    pub idempotency_key: Option<String>,
    pub internal_date: i64,
}

impl GmailMessage {
    /// The first raw value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A Drive file. Google-native types (`application/vnd.google-apps.*`) are exported as text.
#[derive(Debug, Clone)]
pub struct FakeFile {
    pub id: String,
    pub name: String,
    pub mime_type: String,
    /// Text for export / download.
    pub content: String,
    pub modified_time: String,
    pub trashed: bool,
}

#[derive(Debug, Clone)]
struct Sheet {
    title: String,
    id: u64,
    cells: Vec<Vec<String>>,
}

#[derive(Debug, Clone)]
struct Spreadsheet {
    title: String,
    sheets: Vec<Sheet>,
}

#[derive(Debug, Clone)]
struct Draft {
    id: String,
    message: GmailMessage,
}

#[derive(Debug, Default)]
struct Account {
    email: String,
    /// Google's stable account id (`sub`), 21 digits.
    sub: String,
    email_verified: bool,
    /// Workspace domain (`hd` claim).
    hosted_domain: Option<String>,
    /// Live refresh tokens (the one from `add_account`, then one per offline code exchange).
    refresh_tokens: Vec<String>,
    /// A refresh token came out of the code flow: later consents get none without
    /// `prompt=consent`.
    offline_granted: bool,
    revoked: bool,
    scopes: Vec<String>,
    messages: Vec<GmailMessage>,
    drafts: Vec<Draft>,
    /// Calendar id → events (the primary calendar's id is the account's e-mail).
    calendars: BTreeMap<String, Vec<Value>>,
    files: Vec<FakeFile>,
    spreadsheets: BTreeMap<String, Spreadsheet>,
    contacts: Vec<Value>,
    other_contacts: Vec<Value>,
    contacts_warm: bool,
    other_contacts_warm: bool,
    writes: usize,
}

#[derive(Debug)]
struct AccessToken {
    email: String,
    expires: Instant,
    revoked: bool,
}

/// An authorization code issued by the authorization endpoint.
#[derive(Debug, Clone)]
struct AuthCode {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    email: String,
    /// Scopes consented to (short form).
    scopes: Vec<String>,
    include_granted_scopes: bool,
    /// Whether the exchange returns a refresh token.
    offline: bool,
    nonce: Option<String>,
    expires: Instant,
    used: bool,
}

struct GoogleState {
    client_id: String,
    client_secret: String,
    /// Redirect URIs of the registered web client; `None` until `set_client` (authorization
    /// then fails with `invalid_client`).
    redirect_uris: Option<Vec<String>>,
    codes: HashMap<String, AuthCode>,
    /// The person signed in to the "browser".
    signed_in: Option<String>,
    deny_consent: bool,
    token_ttl: Duration,
    accounts: BTreeMap<String, Account>,
    access: HashMap<String, AccessToken>,
    requests: Vec<RecordedRequest>,
    faults: Vec<Fault>,
    counter: u64,
}

impl GoogleState {
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn issue_access(&mut self, email: &str) -> String {
        let n = self.next();
        let token = format!("ya29.fake-{}", hex_id(n, 24));
        self.access.insert(
            token.clone(),
            AccessToken { email: email.to_owned(), expires: Instant::now() + self.token_ttl, revoked: false },
        );
        token
    }
}

struct Shared {
    state: Mutex<GoogleState>,
}

/// The running fake. Stops when dropped.
pub struct FakeGoogle {
    shared: Arc<Shared>,
    server: Server,
}

impl fmt::Debug for FakeGoogle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeGoogle").field("addr", &self.server.addr).finish_non_exhaustive()
    }
}

/// OAuth client of the fake (what the gateway's config would hold).
pub const CLIENT_ID: &str = "fake-client-id.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "fake-client-secret";

impl FakeGoogle {
    /// Starts the fake with [`CLIENT_ID`]/[`CLIENT_SECRET`] and 1-hour access tokens.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(GoogleState {
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.into(),
                redirect_uris: None,
                codes: HashMap::new(),
                signed_in: None,
                deny_consent: false,
                token_ttl: Duration::from_secs(3599),
                accounts: BTreeMap::new(),
                access: HashMap::new(),
                requests: Vec::new(),
                faults: Vec::new(),
                counter: 0,
            }),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = serve(app, "fake-google").await;
        Self { shared, server }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, GoogleState> {
        lock(&self.shared.state)
    }

    /// `http://127.0.0.1:<port>`: use as `integrations.google.apiBase`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// The OAuth token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base_url())
    }

    /// The OAuth authorization endpoint (`…/o/oauth2/v2/auth`).
    pub fn auth_url(&self) -> String {
        format!("{}{AUTH_PATH}", self.base_url())
    }

    /// The OIDC userinfo endpoint (`…/v1/userinfo`).
    pub fn userinfo_url(&self) -> String {
        format!("{}/v1/userinfo", self.base_url())
    }

    /// Registers the OAuth web client: its id, secret and exact redirect URIs. It replaces
    /// [`CLIENT_ID`]/[`CLIENT_SECRET`] at the token endpoint too (refresh included).
    pub fn set_client(&self, client_id: &str, client_secret: &str, redirect_uris: &[&str]) {
        let mut st = self.state();
        st.client_id = client_id.to_owned();
        st.client_secret = client_secret.to_owned();
        st.redirect_uris = Some(redirect_uris.iter().map(|u| (*u).to_owned()).collect());
    }

    /// The person signed in to the browser that visits the authorization endpoint (an account
    /// added with [`add_account`](Self::add_account)). Without one, a `login_hint` naming a
    /// known account is used.
    pub fn sign_in_as(&self, email: &str) {
        self.state().signed_in = Some(email.to_owned());
    }

    /// Nobody is signed in to the browser any more.
    pub fn sign_out(&self) {
        self.state().signed_in = None;
    }

    /// `true`: the person refuses consent; the authorization endpoint redirects with
    /// `error=access_denied&state=…` instead of a code.
    pub fn deny_consent(&self, deny: bool) {
        self.state().deny_consent = deny;
    }

    /// The account's `email_verified` claim (default `true`).
    pub fn set_email_verified(&self, email: &str, verified: bool) {
        if let Some(a) = self.state().accounts.get_mut(email) {
            a.email_verified = verified;
        }
    }

    /// The account's `hd` claim (default: the e-mail's domain, none for gmail.com).
    pub fn set_hosted_domain(&self, email: &str, hd: Option<&str>) {
        if let Some(a) = self.state().accounts.get_mut(email) {
            a.hosted_domain = hd.map(str::to_owned);
        }
    }

    /// The account's stable `sub` (what userinfo and the `id_token` carry).
    pub fn subject(&self, email: &str) -> Option<String> {
        self.state().accounts.get(email).map(|a| a.sub.clone())
    }

    /// Every authorization code issued so far expires now.
    pub fn expire_codes(&self) {
        let now = Instant::now();
        for c in self.state().codes.values_mut() {
            c.expires = now;
        }
    }

    /// Adds an account with [`DEFAULT_SCOPES`], a valid access token and a refresh token.
    pub fn add_account(&self, email: &str) -> FakeGoogleAccount {
        let mut st = self.state();
        let n = st.next();
        let refresh_token = format!("1//fake-refresh-{}", hex_id(n, 20));
        let mut calendars = BTreeMap::new();
        calendars.insert(email.to_owned(), Vec::new());
        st.accounts.insert(
            email.to_owned(),
            Account {
                email: email.to_owned(),
                sub: google_sub(email),
                email_verified: true,
                hosted_domain: default_hosted_domain(email),
                refresh_tokens: vec![refresh_token.clone()],
                scopes: DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
                calendars,
                ..Account::default()
            },
        );
        let access_token = st.issue_access(email);
        FakeGoogleAccount {
            email: email.to_owned(),
            access_token,
            refresh_token,
            scopes: DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// Changes the scopes an account granted (short form).
    pub fn set_scopes(&self, email: &str, scopes: &[&str]) {
        if let Some(a) = self.state().accounts.get_mut(email) {
            a.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        }
    }

    /// Every access token of the account stops working (as if expired): the next call gets 401.
    pub fn expire_access_tokens(&self, email: &str) {
        for t in self.state().access.values_mut().filter(|t| t.email == email) {
            t.expires = Instant::now();
        }
    }

    /// Lifetime of access tokens issued from now on.
    pub fn set_access_token_ttl(&self, ttl: Duration) {
        self.state().token_ttl = ttl;
    }

    /// The user revoked access: access tokens die and refreshing gives `invalid_grant`.
    pub fn revoke(&self, email: &str) {
        let mut st = self.state();
        if let Some(a) = st.accounts.get_mut(email) {
            a.revoked = true;
            a.refresh_tokens.clear();
            a.offline_granted = false;
        }
        for t in st.access.values_mut().filter(|t| t.email == email) {
            t.revoked = true;
        }
    }

    /// Injects a failure (see [`Fault`]); 401, 403, 429 (with `Retry-After`) and 5xx come in
    /// Google's error shape.
    pub fn inject(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    /// Every request received, in order (the OAuth endpoints included: paths `/token` and
    /// `/o/oauth2/v2/auth`).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// Requests other than to the OAuth token and authorization endpoints.
    pub fn api_requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.iter().filter(|r| r.path != "/token" && r.path != AUTH_PATH).cloned().collect()
    }

    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    /// Successful writes (send, draft, event insert/patch, sheet update/append) of an account.
    pub fn writes(&self, email: &str) -> usize {
        self.state().accounts.get(email).map_or(0, |a| a.writes)
    }

    /// Messages the account sent (parsed), oldest first.
    pub fn sent(&self, email: &str) -> Vec<GmailMessage> {
        self.state()
            .accounts
            .get(email)
            .map(|a| a.messages.iter().filter(|m| m.labels.iter().any(|l| l == "SENT")).cloned().collect())
            .unwrap_or_default()
    }

    /// The account's drafts (parsed).
    pub fn drafts(&self, email: &str) -> Vec<GmailMessage> {
        self.state()
            .accounts
            .get(email)
            .map(|a| a.drafts.iter().map(|d| d.message.clone()).collect())
            .unwrap_or_default()
    }

    /// Puts an RFC 2822 message in the mailbox (labels default `INBOX`, `UNREAD`); threads it
    /// by `In-Reply-To`/`References`. Returns `(message id, thread id)`.
    #[allow(clippy::expect_used)] // test helper: a malformed seed message is a bug in the test
    pub fn add_message(&self, email: &str, raw: &str, labels: &[&str]) -> (String, String) {
        let mut st = self.state();
        let n = st.next();
        let id = hex_id(n, 16);
        let account = st.accounts.get_mut(email).expect("fake google: unknown account");
        let mut m = parse_message(raw.as_bytes(), &id, "").expect("fake google: seed message does not parse");
        let labels: Vec<String> = if labels.is_empty() {
            vec!["INBOX".into(), "UNREAD".into()]
        } else {
            labels.iter().map(|l| (*l).to_owned()).collect()
        };
        m.labels = labels;
        m.thread_id = thread_for(account, &m, None, false).unwrap_or_else(|| id.clone());
        let out = (m.id.clone(), m.thread_id.clone());
        account.messages.push(m);
        out
    }

    /// Adds an event (Calendar's JSON shape; `id` generated if absent) to `calendar_id`
    /// (`primary` = the account's own). Returns the event id.
    pub fn add_event(&self, email: &str, calendar_id: &str, mut event: Value) -> String {
        let mut st = self.state();
        let n = st.next();
        let id = event["id"].as_str().map(str::to_owned).unwrap_or_else(|| hex_id(n, 26));
        event["id"] = json!(id);
        complete_event(&mut event, email, &id);
        let cal = if calendar_id == "primary" { email.to_owned() } else { calendar_id.to_owned() };
        if let Some(a) = st.accounts.get_mut(email) {
            a.calendars.entry(cal).or_default().push(event);
        }
        id
    }

    /// Events of a calendar (`primary` = the account's own).
    pub fn events(&self, email: &str, calendar_id: &str) -> Vec<Value> {
        let cal = if calendar_id == "primary" { email } else { calendar_id };
        self.state().accounts.get(email).and_then(|a| a.calendars.get(cal).cloned()).unwrap_or_default()
    }

    /// Adds a Drive file; returns its id.
    pub fn add_file(&self, email: &str, name: &str, mime_type: &str, content: &str) -> String {
        let mut st = self.state();
        let n = st.next();
        let id = format!("1{}", hex_id(n, 32));
        if let Some(a) = st.accounts.get_mut(email) {
            a.files.push(FakeFile {
                id: id.clone(),
                name: name.into(),
                mime_type: mime_type.into(),
                content: content.into(),
                modified_time: rfc3339(unix_now() - 3600 * i64::try_from(n).unwrap_or(0)),
                trashed: false,
            });
        }
        id
    }

    /// Adds a spreadsheet with sheets of rows; returns its id.
    pub fn add_spreadsheet(&self, email: &str, title: &str, sheets: &[(&str, Vec<Vec<&str>>)]) -> String {
        let mut st = self.state();
        let n = st.next();
        let id = format!("1S{}", hex_id(n, 30));
        let sheets = sheets
            .iter()
            .enumerate()
            .map(|(i, (t, rows))| Sheet {
                title: (*t).to_owned(),
                id: i as u64 * 1000,
                cells: rows.iter().map(|r| r.iter().map(|c| (*c).to_owned()).collect()).collect(),
            })
            .collect();
        if let Some(a) = st.accounts.get_mut(email) {
            a.spreadsheets.insert(id.clone(), Spreadsheet { title: title.into(), sheets });
        }
        id
    }

    /// The cells of a sheet (trailing empty cells/rows kept as stored).
    pub fn sheet_values(&self, email: &str, spreadsheet_id: &str, sheet: &str) -> Vec<Vec<String>> {
        self.state()
            .accounts
            .get(email)
            .and_then(|a| a.spreadsheets.get(spreadsheet_id))
            .and_then(|s| s.sheets.iter().find(|x| x.title == sheet))
            .map(|s| s.cells.clone())
            .unwrap_or_default()
    }

    /// Adds a contact (`other` = an "other contact", someone the user interacted with).
    pub fn add_contact(
        &self,
        email: &str,
        name: &str,
        emails: &[&str],
        phones: &[&str],
        organization: Option<&str>,
        other: bool,
    ) {
        let mut st = self.state();
        let n = st.next();
        let prefix = if other { "otherContacts" } else { "people" };
        let mut p = json!({
            "resourceName": format!("{prefix}/c{}", hex_id(n, 12)),
            "etag": format!("%{}", hex_id(n + 7, 12)),
            "names": [{"displayName": name, "unstructuredName": name}],
            "emailAddresses": emails.iter().map(|e| json!({"value": e})).collect::<Vec<_>>(),
            "phoneNumbers": phones.iter().map(|e| json!({"value": e})).collect::<Vec<_>>(),
        });
        if let Some(o) = organization {
            p["organizations"] = json!([{"name": o}]);
        }
        if let Some(a) = st.accounts.get_mut(email) {
            if other { a.other_contacts.push(p) } else { a.contacts.push(p) }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Errors in Google's shape
// ------------------------------------------------------------------------------------------

fn gerr(code: u16, status: &str, message: &str, reason: &str) -> Reply {
    Reply::json(
        code,
        json!({"error": {"code": code, "message": message, "status": status,
            "errors": [{"message": message, "domain": "global", "reason": reason}]}}),
    )
}

fn bad_request(message: &str) -> Reply {
    gerr(400, "INVALID_ARGUMENT", message, "badRequest")
}

fn not_found(message: &str) -> Reply {
    gerr(404, "NOT_FOUND", message, "notFound")
}

fn unauthenticated(missing: bool) -> Reply {
    let message = if missing {
        "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
    } else {
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
    };
    gerr(401, "UNAUTHENTICATED", message, if missing { "required" } else { "authError" }).with_header(
        "www-authenticate",
        "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
    )
}

fn insufficient_scopes() -> Reply {
    Reply::json(
        403,
        json!({"error": {"code": 403, "message": "Request had insufficient authentication scopes.", "status": "PERMISSION_DENIED",
            "errors": [{"message": "Insufficient Permission", "domain": "global", "reason": "insufficientPermissions"}],
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                "domain": "googleapis.com"}]}}),
    )
}

fn fault_reply(f: &Fault) -> Reply {
    let r = match f.status {
        401 => unauthenticated(false),
        403 => gerr(403, "PERMISSION_DENIED", "User Rate Limit Exceeded", "userRateLimitExceeded"),
        429 => gerr(
            429,
            "RESOURCE_EXHAUSTED",
            "Resource has been exhausted (e.g. check quota).",
            "rateLimitExceeded",
        ),
        503 => gerr(503, "UNAVAILABLE", "The service is currently unavailable.", "backendError"),
        s if s >= 500 => gerr(s, "INTERNAL", "Internal error encountered.", "backendError"),
        s => gerr(s, "FAILED_PRECONDITION", "Injected failure.", "failedPrecondition"),
    };
    match &f.retry_after {
        Some(v) => r.with_header("retry-after", v),
        None => r,
    }
}

// ------------------------------------------------------------------------------------------
// Routing
// ------------------------------------------------------------------------------------------

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut rec = record(&method, &uri, &headers, &body);
    let mut st = lock(&shared.state);
    let reply = route(&mut st, &mut rec);
    rec.status = reply.status;
    st.requests.push(rec);
    drop(st);
    reply.into_response()
}

fn route(st: &mut GoogleState, rec: &mut RecordedRequest) -> Reply {
    if let Some(f) = take_fault(&mut st.faults, rec) {
        return fault_reply(&f);
    }
    if rec.path == "/token" {
        return if rec.method == "POST" { token(st, rec) } else { not_found("Not Found") };
    }
    if rec.path == AUTH_PATH {
        return if rec.method == "GET" { authorize(st, rec) } else { not_found("Not Found") };
    }
    let token = match rec.header("authorization").and_then(|h| h.strip_prefix("Bearer ")) {
        Some(t) => t.trim().to_owned(),
        None => return unauthenticated(true),
    };
    let email = match st.access.get(&token) {
        Some(t) if !t.revoked && t.expires > Instant::now() => t.email.clone(),
        _ => return unauthenticated(false),
    };
    rec.account = Some(email.clone());
    let segs: Vec<String> = rec.path.trim_start_matches('/').split('/').map(str::to_owned).collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let body = if matches!(rec.method.as_str(), "POST" | "PUT" | "PATCH") && !rec.body.is_empty() {
        match serde_json::from_slice::<Value>(&rec.body) {
            Ok(v) => v,
            Err(e) => return bad_request(&format!("Invalid JSON payload received. {e}")),
        }
    } else {
        Value::Null
    };
    st.counter += 1;
    let n = st.counter;
    let Some(account) = st.accounts.get_mut(&email) else { return unauthenticated(false) };
    let m = rec.method.as_str();
    let r = &*rec;
    match (m, s.as_slice()) {
        (_, ["gmail", "v1", "users", user, rest @ ..]) => {
            if *user != "me" && percent_decode(user) != email {
                return gerr(
                    403,
                    "PERMISSION_DENIED",
                    &format!("Delegation denied for {email}"),
                    "forbidden",
                );
            }
            gmail(account, m, rest, r, &body, n)
        }
        (_, ["calendar", "v3", rest @ ..]) => calendar(account, m, rest, r, &body, n),
        (_, ["drive", "v3", "files", rest @ ..]) => drive(account, m, rest, r),
        (_, ["v4", "spreadsheets", id, rest @ ..]) => sheets(account, m, &percent_decode(id), rest, r, &body),
        ("GET", ["v1", "people:searchContacts"]) => contacts(account, r, false),
        ("GET", ["v1", "otherContacts:search"]) => contacts(account, r, true),
        ("GET", ["v1", "userinfo"] | ["oauth2", "v3", "userinfo"]) => Reply::json(200, userinfo(account)),
        _ => not_found("Not Found"),
    }
}

/// Whether the account granted one of `accepted` (what the endpoint's discovery doc lists).
fn has_scope(a: &Account, accepted: &[&str]) -> bool {
    a.scopes.iter().any(|g| {
        let g = g.strip_prefix(SCOPE_PREFIX).unwrap_or(g);
        accepted.contains(&g)
    })
}

macro_rules! need {
    ($a:expr, $($s:expr),+) => {
        if !has_scope($a, &[$($s),+]) {
            return insufficient_scopes();
        }
    };
}

// ------------------------------------------------------------------------------------------
// OAuth: authorization and token endpoints, userinfo
// ------------------------------------------------------------------------------------------

fn oauth_err(status: u16, error: &str, description: &str) -> Reply {
    Reply::json(status, json!({"error": error, "error_description": description}))
}

/// Google's stable account id for an e-mail: 21 digits starting with 1.
fn google_sub(email: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in email.to_ascii_lowercase().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("1{h:020}")
}

/// The `hd` of a new account: its e-mail domain, none for consumer Gmail.
fn default_hosted_domain(email: &str) -> Option<String> {
    let domain = email.rsplit_once('@')?.1.to_ascii_lowercase();
    (!domain.is_empty() && domain != "gmail.com" && domain != "googlemail.com").then_some(domain)
}

/// Short scopes as Google lists them in `scope`: full URLs except `openid email profile`.
fn scope_string(scopes: &[String]) -> String {
    scopes
        .iter()
        .map(|s| {
            if s.contains(':') || ["openid", "email", "profile"].contains(&s.as_str()) {
                s.clone()
            } else {
                format!("{SCOPE_PREFIX}{s}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A requested scope in short form, or `None` if Google does not know it.
fn normalize_scope(s: &str) -> Option<String> {
    let short = s.strip_prefix(SCOPE_PREFIX).unwrap_or(s);
    let short = match short {
        "userinfo.email" => "email",
        "userinfo.profile" => "profile",
        other => other,
    };
    (DEFAULT_SCOPES.contains(&short) || OTHER_KNOWN_SCOPES.contains(&short)).then(|| short.to_owned())
}

fn userinfo(a: &Account) -> Value {
    let mut v = json!({"sub": a.sub, "email": a.email, "email_verified": a.email_verified,
        "name": a.email.split('@').next().unwrap_or_default()});
    if let Some(hd) = &a.hosted_domain {
        v["hd"] = json!(hd);
    }
    v
}

fn b64_json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap_or_default())
}

/// An OIDC `id_token` (JWT) for the account. The RS256 signature is fake: no JWKS to check it.
fn id_token(client_id: &str, a: &Account, nonce: Option<&str>) -> String {
    let now = unix_now();
    let header = json!({"alg": "RS256", "kid": "fake-google-key-1", "typ": "JWT"});
    let mut payload = json!({
        "iss": "https://accounts.google.com", "azp": client_id, "aud": client_id, "sub": a.sub,
        "email": a.email, "email_verified": a.email_verified, "iat": now, "exp": now + 3600,
    });
    if let Some(hd) = &a.hosted_domain {
        payload["hd"] = json!(hd);
    }
    if let Some(n) = nonce {
        payload["nonce"] = json!(n);
    }
    if a.scopes.iter().any(|s| s == "profile") {
        payload["name"] = json!(a.email.split('@').next().unwrap_or_default());
    }
    let signing_input = format!("{}.{}", b64_json(&header), b64_json(&payload));
    let signature = Sha256::digest(format!("{signing_input}.fake-google-signature").as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Google's HTML error page of the authorization endpoint (shown to the person; no redirect).
fn auth_error_page(status: u16, error: &str, message: &str) -> Reply {
    let (error, message) = (html_escape(error), html_escape(message));
    Reply::text(
        status,
        "text/html; charset=utf-8",
        format!(
            "<!DOCTYPE html><html lang=\"en\"><head><title>Error {status}: {error}</title></head><body>\
             <h1>Access blocked: Authorization Error</h1><p>{message}</p><p>Error {status}: {error}</p>\
             </body></html>"
        ),
    )
}

/// `uri` with query pairs appended (percent-encoded).
fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = uri.to_owned();
    let mut sep = if uri.contains('?') { '&' } else { '?' };
    for (k, v) in pairs {
        out.push(sep);
        out.push_str(k);
        out.push('=');
        out.push_str(&percent_encode(v));
        sep = '&';
    }
    out
}

fn redirect(location: &str) -> Reply {
    Reply::text(
        302,
        "text/html; charset=UTF-8",
        format!("<HTML><HEAD><TITLE>Moved Temporarily</TITLE></HEAD><BODY>The document has moved <A HREF=\"{}\">here</A>.</BODY></HTML>", html_escape(location)),
    )
    .with_header("location", location)
}

fn is_pkce_value(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// `GET /o/oauth2/v2/auth`: validates the request like Google, then acts as the browser of the
/// signed-in person consenting (or refusing).
fn authorize(st: &mut GoogleState, rec: &mut RecordedRequest) -> Reply {
    let query = rec.query.clone();
    let get = |k: &str| query.iter().find(|(q, v)| q == k && !v.is_empty()).map(|(_, v)| v.clone());
    let missing =
        |k: &str| auth_error_page(400, "invalid_request", &format!("Missing required parameter: {k}"));
    let Some(client_id) = get("client_id") else { return missing("client_id") };
    if st.redirect_uris.is_none() || client_id != st.client_id {
        return auth_error_page(401, "invalid_client", "The OAuth client was not found.");
    }
    let Some(redirect_uri) = get("redirect_uri") else { return missing("redirect_uri") };
    if !st.redirect_uris.iter().flatten().any(|u| *u == redirect_uri) {
        return auth_error_page(
            400,
            "redirect_uri_mismatch",
            &format!(
                "You can't sign in to this app because it doesn't comply with Google's OAuth 2.0 policy. \
                 If you're the app developer, register the redirect URI in the Google Cloud Console. \
                 Request details: redirect_uri={redirect_uri}"
            ),
        );
    }
    match get("response_type").as_deref() {
        None => return missing("response_type"),
        Some("code") => {}
        Some(other) => {
            return auth_error_page(
                400,
                "unsupported_response_type",
                &format!("Unsupported response_type: {other} (the fake serves the code flow only)"),
            );
        }
    }
    let Some(scope) = get("scope") else { return missing("scope") };
    let mut scopes: Vec<String> = Vec::new();
    let mut invalid: Vec<&str> = Vec::new();
    for s in scope.split_whitespace() {
        match normalize_scope(s) {
            Some(n) if !scopes.contains(&n) => scopes.push(n),
            Some(_) => {}
            None => invalid.push(s),
        }
    }
    if !invalid.is_empty() {
        return auth_error_page(
            400,
            "invalid_scope",
            &format!("Some requested scopes were invalid. {{invalid=[{}]}}", invalid.join(", ")),
        );
    }
    if !["openid", "email"].iter().all(|s| scopes.iter().any(|x| x == s)) {
        return auth_error_page(
            400,
            "invalid_scope",
            "The fake requires the scopes openid and email (crewgate needs the id_token's email).",
        );
    }
    let Some(state) = get("state") else { return missing("state") };
    let Some(challenge) = get("code_challenge") else { return missing("code_challenge") };
    match get("code_challenge_method").as_deref() {
        Some("S256") => {}
        Some(other) => {
            return auth_error_page(
                400,
                "invalid_request",
                &format!("Invalid code_challenge_method: {other} (the fake accepts S256 only)"),
            );
        }
        None => {
            return auth_error_page(
                400,
                "invalid_request",
                "Missing code_challenge_method (the fake accepts S256 only; Google would assume plain)",
            );
        }
    }
    if !is_pkce_value(&challenge) {
        return auth_error_page(
            400,
            "invalid_request",
            "Invalid code_challenge: 43 to 128 characters [A-Za-z0-9-._~]",
        );
    }
    let access_type = get("access_type");
    if access_type.as_deref().is_some_and(|t| t != "online" && t != "offline") {
        return auth_error_page(400, "invalid_request", "Invalid access_type");
    }
    let prompt = get("prompt").unwrap_or_default();
    let user = st.signed_in.clone().or_else(|| get("login_hint").filter(|h| st.accounts.contains_key(h)));
    let Some(email) = user.filter(|e| st.accounts.contains_key(e)) else {
        return auth_error_page(
            400,
            "invalid_request",
            "Nobody is signed in (fake: call sign_in_as with an added account, or pass a login_hint naming one)",
        );
    };
    rec.account = Some(email.clone());
    if st.deny_consent {
        return redirect(&with_query(&redirect_uri, &[("error", "access_denied"), ("state", &state)]));
    }
    let offline_granted = st.accounts.get(&email).is_some_and(|a| a.offline_granted);
    let offline = access_type.as_deref() == Some("offline")
        && (!offline_granted || prompt.split_whitespace().any(|p| p == "consent"));
    let n = st.next();
    let code = format!("4/0A{}", hex_id(n, 70));
    let scope_out = scope_string(&scopes);
    let hd = st.accounts.get(&email).and_then(|a| a.hosted_domain.clone());
    st.codes.insert(
        code.clone(),
        AuthCode {
            client_id,
            redirect_uri: redirect_uri.clone(),
            challenge,
            email,
            scopes,
            include_granted_scopes: get("include_granted_scopes").as_deref() == Some("true"),
            offline,
            nonce: get("nonce"),
            expires: Instant::now() + CODE_TTL,
            used: false,
        },
    );
    let mut pairs = vec![("state", state.as_str()), ("code", code.as_str()), ("scope", scope_out.as_str())];
    pairs.push(("authuser", "0"));
    if let Some(hd) = &hd {
        pairs.push(("hd", hd.as_str()));
    }
    if !prompt.is_empty() {
        pairs.push(("prompt", prompt.as_str()));
    }
    redirect(&with_query(&redirect_uri, &pairs))
}

/// The client's id and secret: HTTP Basic (`client_secret_basic`) if present, else the form.
fn client_credentials(
    rec: &RecordedRequest,
    form: &HashMap<String, String>,
) -> Result<(Option<String>, Option<String>), Reply> {
    let basic = rec.header("authorization").and_then(|h| {
        let (scheme, rest) = h.split_once(' ')?;
        scheme.eq_ignore_ascii_case("basic").then(|| rest.trim().to_owned())
    });
    let Some(basic) = basic else {
        return Ok((form.get("client_id").cloned(), form.get("client_secret").cloned()));
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| oauth_err(401, "invalid_client", "Unauthorized"))?;
    let (id, secret) = decoded.split_once(':').unwrap_or((&decoded, ""));
    // RFC 6749 §2.3.1: both are form-urlencoded before joining.
    let (id, secret) = (percent_decode(&id.replace('+', " ")), percent_decode(&secret.replace('+', " ")));
    if form.get("client_id").is_some_and(|f| *f != id) {
        return Err(oauth_err(401, "invalid_client", "Unauthorized"));
    }
    Ok((Some(id), (!secret.is_empty()).then_some(secret)))
}

fn token(st: &mut GoogleState, rec: &mut RecordedRequest) -> Reply {
    let form: HashMap<String, String> = parse_query(&rec.text()).into_iter().collect();
    let (client_id, client_secret) = match client_credentials(rec, &form) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let Some(client_id) = client_id else {
        return oauth_err(400, "invalid_request", "Could not determine client ID from request.");
    };
    if client_id != st.client_id {
        return oauth_err(401, "invalid_client", "The OAuth client was not found.");
    }
    let Some(client_secret) = client_secret else {
        return oauth_err(400, "invalid_request", "client_secret is missing.");
    };
    if client_secret != st.client_secret {
        return oauth_err(401, "invalid_client", "Unauthorized");
    }
    match form.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {
            let Some(rt) = form.get("refresh_token") else {
                return oauth_err(400, "invalid_request", "Missing required parameter: refresh_token");
            };
            let Some(email) = st
                .accounts
                .values()
                .find(|a| a.refresh_tokens.contains(rt) && !a.revoked)
                .map(|a| a.email.clone())
            else {
                return oauth_err(400, "invalid_grant", "Token has been expired or revoked.");
            };
            let scope = st.accounts.get(&email).map(|a| scope_string(&a.scopes));
            let ttl = st.token_ttl.as_secs();
            let access = st.issue_access(&email);
            rec.account = Some(email);
            Reply::json(
                200,
                json!({"access_token": access, "expires_in": ttl, "scope": scope, "token_type": "Bearer"}),
            )
        }
        Some("authorization_code") => exchange_code(st, rec, &form, &client_id),
        Some(_) => oauth_err(400, "unsupported_grant_type", "Invalid grant_type"),
        None => oauth_err(400, "invalid_request", "Missing required parameter: grant_type"),
    }
}

/// `grant_type=authorization_code`: the code must be known, unused, unexpired, issued to this
/// client for this `redirect_uri`, and the verifier must hash to its challenge.
fn exchange_code(
    st: &mut GoogleState,
    rec: &mut RecordedRequest,
    form: &HashMap<String, String>,
    client_id: &str,
) -> Reply {
    let Some(code) = form.get("code").filter(|c| !c.is_empty()) else {
        return oauth_err(400, "invalid_request", "Missing required parameter: code");
    };
    let Some(redirect_uri) = form.get("redirect_uri").filter(|c| !c.is_empty()) else {
        return oauth_err(400, "invalid_request", "Missing required parameter: redirect_uri");
    };
    let Some(c) = st.codes.get(code) else {
        return oauth_err(400, "invalid_grant", "Malformed auth code.");
    };
    if c.used || c.expires <= Instant::now() || c.client_id != client_id {
        return oauth_err(400, "invalid_grant", "Bad Request");
    }
    if c.redirect_uri != *redirect_uri {
        return oauth_err(400, "redirect_uri_mismatch", "Bad Request");
    }
    let Some(verifier) = form.get("code_verifier").filter(|v| !v.is_empty()) else {
        return oauth_err(400, "invalid_grant", "Missing code verifier.");
    };
    if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != c.challenge {
        return oauth_err(400, "invalid_grant", "Invalid code verifier.");
    }
    let c = c.clone();
    if let Some(stored) = st.codes.get_mut(code) {
        stored.used = true;
    }
    let n = st.next();
    let ttl = st.token_ttl.as_secs();
    let Some(account) = st.accounts.get_mut(&c.email) else {
        return oauth_err(400, "invalid_grant", "Account has been deleted");
    };
    if c.include_granted_scopes {
        let mut scopes = account.scopes.clone();
        scopes.extend(c.scopes.iter().filter(|s| !account.scopes.contains(s)).cloned());
        account.scopes = scopes;
    } else {
        account.scopes = c.scopes.clone();
    }
    account.revoked = false;
    let refresh = c.offline.then(|| {
        let rt = format!("1//fake-refresh-{}", hex_id(n, 20));
        account.refresh_tokens.push(rt.clone());
        account.offline_granted = true;
        rt
    });
    let scope = scope_string(&account.scopes);
    let id_token = account
        .scopes
        .iter()
        .any(|s| s == "openid")
        .then(|| id_token(client_id, account, c.nonce.as_deref()));
    let access = st.issue_access(&c.email);
    rec.account = Some(c.email.clone());
    let mut out = json!({"access_token": access, "expires_in": ttl, "scope": scope, "token_type": "Bearer"});
    if let Some(rt) = refresh {
        out["refresh_token"] = json!(rt);
    }
    if let Some(t) = id_token {
        out["id_token"] = json!(t);
    }
    Reply::json(200, out)
}

// ------------------------------------------------------------------------------------------
// Gmail
// ------------------------------------------------------------------------------------------

fn gmail(a: &mut Account, m: &str, rest: &[&str], r: &RecordedRequest, body: &Value, n: u64) -> Reply {
    match (m, rest) {
        ("GET", ["profile"]) => {
            need!(a, "gmail.readonly", "gmail.modify", "gmail.compose", "https://mail.google.com/");
            Reply::json(
                200,
                json!({"emailAddress": a.email, "messagesTotal": a.messages.len(), "threadsTotal": a.messages.len(), "historyId": "1000"}),
            )
        }
        ("GET", ["messages"]) => {
            need!(a, "gmail.readonly", "gmail.modify", "https://mail.google.com/");
            list_messages(a, r)
        }
        ("GET", ["messages", id]) => {
            need!(a, "gmail.readonly", "gmail.modify", "https://mail.google.com/");
            let Some(msg) = a.messages.iter().find(|x| x.id == *id) else {
                return not_found("Requested entity was not found.");
            };
            match message_json(msg, r) {
                Ok(v) => Reply::json(200, v),
                Err(e) => e,
            }
        }
        ("GET", ["threads", id]) => {
            need!(a, "gmail.readonly", "gmail.modify", "https://mail.google.com/");
            let msgs: Vec<&GmailMessage> = a.messages.iter().filter(|x| x.thread_id == *id).collect();
            if msgs.is_empty() {
                return not_found("Requested entity was not found.");
            }
            let mut list = Vec::new();
            for msg in msgs {
                match message_json(msg, r) {
                    Ok(v) => list.push(v),
                    Err(e) => return e,
                }
            }
            Reply::json(200, json!({"id": id, "historyId": "1000", "messages": list}))
        }
        ("POST", ["messages", "send"]) => {
            need!(a, "gmail.send", "gmail.compose", "gmail.modify", "https://mail.google.com/");
            let mut msg = match incoming(body, r, n, true) {
                Ok(m) => m,
                Err(e) => return e,
            };
            let requested = body["threadId"].as_str();
            if let Some(t) = requested
                && !a.messages.iter().any(|x| x.thread_id == t)
            {
                return not_found("Requested entity was not found.");
            }
            msg.thread_id = thread_for(a, &msg, requested, true).unwrap_or_else(|| msg.id.clone());
            msg.labels = vec!["SENT".into()];
            let out = json!({"id": msg.id, "threadId": msg.thread_id, "labelIds": ["SENT"]});
            a.messages.push(msg);
            a.writes += 1;
            Reply::json(200, out)
        }
        ("GET", ["drafts"]) => {
            need!(a, "gmail.readonly", "gmail.compose", "gmail.modify", "https://mail.google.com/");
            let drafts: Vec<Value> = a
                .drafts
                .iter()
                .map(
                    |d| json!({"id": d.id, "message": {"id": d.message.id, "threadId": d.message.thread_id}}),
                )
                .collect();
            Reply::json(200, json!({"drafts": drafts, "resultSizeEstimate": drafts.len()}))
        }
        ("POST", ["drafts"]) => {
            need!(a, "gmail.compose", "gmail.modify", "https://mail.google.com/");
            if !body["message"].is_object() {
                return bad_request("Missing draft message");
            }
            let mut msg = match incoming(&body["message"], r, n, false) {
                Ok(m) => m,
                Err(e) => return e,
            };
            let requested = body["message"]["threadId"].as_str();
            msg.thread_id = thread_for(a, &msg, requested, true).unwrap_or_else(|| msg.id.clone());
            msg.labels = vec!["DRAFT".into()];
            let id = format!("r{}", hex_id(n + 1, 18));
            let out = json!({"id": id, "message": {"id": msg.id, "threadId": msg.thread_id, "labelIds": ["DRAFT"]}});
            a.drafts.push(Draft { id, message: msg });
            a.writes += 1;
            Reply::json(200, out)
        }
        ("POST", ["drafts", "send"]) => {
            need!(a, "gmail.compose", "gmail.modify", "https://mail.google.com/");
            let Some(id) = body["id"].as_str() else { return bad_request("Missing draft id") };
            let Some(i) = a.drafts.iter().position(|d| d.id == id) else {
                return not_found("Requested entity was not found.");
            };
            let mut msg = a.drafts.remove(i).message;
            if msg.to.is_empty() && msg.cc.is_empty() && msg.bcc.is_empty() {
                return bad_request("Recipient address required");
            }
            msg.labels = vec!["SENT".into()];
            msg.idempotency_key = r.header("idempotency-key").map(str::to_owned).or(msg.idempotency_key);
            let out = json!({"id": msg.id, "threadId": msg.thread_id, "labelIds": ["SENT"]});
            a.messages.push(msg);
            a.writes += 1;
            Reply::json(200, out)
        }
        _ => not_found("Not Found"),
    }
}

/// Decodes and parses `{raw}` the way Gmail does: base64url, RFC 2822, ASCII headers.
fn incoming(
    message: &Value,
    r: &RecordedRequest,
    n: u64,
    needs_recipient: bool,
) -> Result<GmailMessage, Reply> {
    let Some(raw) = message["raw"].as_str() else {
        return Err(bad_request(
            "'raw' RFC822 payload message string or uploading message via /upload/* URL required",
        ));
    };
    // Gmail wants the URL-safe alphabet; '+' or '/' fail to decode.
    let bytes =
        URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')).or_else(|_| URL_SAFE.decode(raw)).map_err(|e| {
            bad_request(&format!("Invalid value at 'message.raw' (TYPE_BYTES), Base64 decoding failed: {e}"))
        })?;
    let mut msg = parse_message(&bytes, &hex_id(n, 16), "")
        .map_err(|e| bad_request(&format!("Invalid RFC 2822 message: {e}")))?;
    if needs_recipient && msg.to.is_empty() && msg.cc.is_empty() && msg.bcc.is_empty() {
        return Err(bad_request("Recipient address required"));
    }
    msg.idempotency_key = r.header("idempotency-key").map(str::to_owned);
    msg.internal_date = unix_millis();
    Ok(msg)
}

fn normalized_subject(s: &str) -> String {
    let mut s = s.trim();
    loop {
        let lower = s.to_ascii_lowercase();
        match ["re:", "fwd:", "fw:", "aw:"].iter().find(|p| lower.starts_with(**p)) {
            Some(p) => s = s[p.len()..].trim_start(),
            None => return s.to_owned(),
        }
    }
}

/// Gmail's threading rules: a message joins a thread only if `threadId` names it (for API
/// sends), its `In-Reply-To`/`References` name a message of that thread, and the subjects match.
fn thread_for(a: &Account, msg: &GmailMessage, requested: Option<&str>, api: bool) -> Option<String> {
    if api && requested.is_none() {
        return None;
    }
    let mut ids: Vec<&str> = Vec::new();
    for h in [&msg.in_reply_to, &msg.references].into_iter().flatten() {
        ids.extend(h.split_whitespace());
    }
    let subject = normalized_subject(msg.subject.as_deref().unwrap_or_default());
    a.messages
        .iter()
        .find(|x| {
            x.message_id.as_deref().is_some_and(|mid| ids.contains(&mid))
                && normalized_subject(x.subject.as_deref().unwrap_or_default()) == subject
                && requested.is_none_or(|t| t == x.thread_id)
        })
        .map(|x| x.thread_id.clone())
}

fn addresses(p: &ParsedMail<'_>, name: &str) -> Result<Vec<(Option<String>, String)>, String> {
    let mut out = Vec::new();
    for h in p.headers.iter().filter(|h| h.get_key().eq_ignore_ascii_case(name)) {
        let list = mailparse::addrparse_header(h).map_err(|e| format!("Invalid {name} header: {e}"))?;
        for a in list.into_inner() {
            match a {
                MailAddr::Single(s) => out.push((s.display_name, s.addr)),
                MailAddr::Group(g) => out.extend(g.addrs.into_iter().map(|s| (s.display_name, s.addr))),
            }
        }
    }
    Ok(out)
}

fn first_text(p: &ParsedMail<'_>) -> Option<String> {
    if p.subparts.is_empty() {
        return (p.ctype.mimetype.starts_with("text/")).then(|| p.get_body().unwrap_or_default());
    }
    p.subparts
        .iter()
        .find(|s| s.ctype.mimetype == "text/plain")
        .and_then(first_text)
        .or_else(|| p.subparts.iter().find_map(first_text))
}

/// Parses a message strictly enough to catch what Gmail would garble or refuse: raw 8-bit
/// bytes in headers (must be RFC 2047-encoded), non-ASCII bodies without a declared charset.
fn parse_message(bytes: &[u8], id: &str, thread_id: &str) -> Result<GmailMessage, String> {
    let header_end = find_header_end(bytes).ok_or("no blank line between headers and body")?;
    if !bytes[..header_end].is_ascii() {
        return Err("header contains raw non-ASCII bytes; use RFC 2047 encoded-words".into());
    }
    let p = mailparse::parse_mail(bytes).map_err(|e| e.to_string())?;
    let h = |k: &str| p.headers.get_first_value(k);
    let to = addresses(&p, "To")?;
    let body_raw =
        if p.subparts.is_empty() { p.get_body_raw().map_err(|e| e.to_string())? } else { Vec::new() };
    if !body_raw.is_ascii()
        && p.ctype.charset.eq_ignore_ascii_case("us-ascii")
        && !p.ctype.params.contains_key("charset")
    {
        return Err("8-bit body without a charset in Content-Type".into());
    }
    let raw = String::from_utf8_lossy(bytes).into_owned();
    Ok(GmailMessage {
        id: id.to_owned(),
        thread_id: thread_id.to_owned(),
        labels: Vec::new(),
        headers: p
            .headers
            .iter()
            .map(|x| (x.get_key(), String::from_utf8_lossy(x.get_value_raw()).into_owned()))
            .collect(),
        from: h("From"),
        to_names: to.iter().map(|(n, _)| n.clone()).collect(),
        to: to.into_iter().map(|(_, a)| a).collect(),
        cc: addresses(&p, "Cc")?.into_iter().map(|(_, a)| a).collect(),
        bcc: addresses(&p, "Bcc")?.into_iter().map(|(_, a)| a).collect(),
        subject: h("Subject"),
        message_id: h("Message-ID").map(|s| s.trim().to_owned()),
        in_reply_to: h("In-Reply-To").map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ")),
        references: h("References").map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ")),
        date: h("Date"),
        mime_type: p.ctype.mimetype.clone(),
        charset: p.ctype.charset.clone(),
        transfer_encoding: h("Content-Transfer-Encoding"),
        body: first_text(&p).unwrap_or_default(),
        raw,
        idempotency_key: None,
        internal_date: unix_millis(),
    })
}

fn find_header_end(b: &[u8]) -> Option<usize> {
    (0..b.len()).find(|&i| b[i..].starts_with(b"\r\n\r\n") || b[i..].starts_with(b"\n\n"))
}

/// Gmail's `payload` part tree for one MIME part.
fn part_json(p: &ParsedMail<'_>, part_id: &str, only: Option<&[String]>) -> Value {
    let headers: Vec<Value> = p
        .headers
        .iter()
        .filter(|h| only.is_none_or(|o| o.iter().any(|x| x.eq_ignore_ascii_case(&h.get_key()))))
        .map(|h| json!({"name": h.get_key(), "value": h.get_value()}))
        .collect();
    if only.is_some() {
        return json!({"partId": part_id, "mimeType": p.ctype.mimetype, "filename": "", "headers": headers});
    }
    let disposition = p.get_content_disposition();
    let filename = disposition
        .params
        .get("filename")
        .or_else(|| p.ctype.params.get("name"))
        .cloned()
        .unwrap_or_default();
    let mut v =
        json!({"partId": part_id, "mimeType": p.ctype.mimetype, "filename": filename, "headers": headers});
    if p.subparts.is_empty() {
        let data = p.get_body_raw().unwrap_or_default();
        v["body"] = if filename.is_empty() {
            json!({"size": data.len(), "data": URL_SAFE_NO_PAD.encode(&data)})
        } else {
            json!({"size": data.len(), "attachmentId": format!("ANGjdJ{}", hex_id(data.len() as u64, 20))})
        };
    } else {
        v["body"] = json!({"size": 0});
        let prefix = if part_id.is_empty() { String::new() } else { format!("{part_id}.") };
        v["parts"] = json!(
            p.subparts
                .iter()
                .enumerate()
                .map(|(i, s)| part_json(s, &format!("{prefix}{i}"), None))
                .collect::<Vec<_>>()
        );
    }
    v
}

fn message_json(msg: &GmailMessage, r: &RecordedRequest) -> Result<Value, Reply> {
    let format = r.query_value("format").unwrap_or("full");
    let p = mailparse::parse_mail(msg.raw.as_bytes())
        .map_err(|e| gerr(500, "INTERNAL", &e.to_string(), "backendError"))?;
    let snippet: String =
        msg.body.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(120).collect();
    let mut v = json!({
        "id": msg.id, "threadId": msg.thread_id, "labelIds": msg.labels, "snippet": snippet,
        "historyId": "1000", "internalDate": msg.internal_date.to_string(), "sizeEstimate": msg.raw.len(),
    });
    match format {
        "minimal" => {}
        "raw" => v["raw"] = json!(URL_SAFE.encode(msg.raw.as_bytes())),
        "metadata" => {
            let wanted: Vec<String> =
                r.query_values("metadataHeaders").iter().map(|s| (*s).to_owned()).collect();
            let all: Vec<String> = p.headers.iter().map(|h| h.get_key()).collect();
            v["payload"] = part_json(&p, "", Some(if wanted.is_empty() { &all } else { &wanted }));
        }
        "full" => v["payload"] = part_json(&p, "", None),
        other => return Err(bad_request(&format!("Invalid value at 'format' ({other})"))),
    }
    Ok(v)
}

/// The subset of Gmail search the tests need: `from:` `to:` `subject:` `is:unread` `in:` `label:`
/// `rfc822msgid:` `has:attachment`, quoted phrases and words; date operators are accepted and
/// ignored.
fn matches_query(m: &GmailMessage, q: &str) -> bool {
    let lower = |s: &str| s.to_lowercase();
    let text = lower(&format!(
        "{} {} {} {}",
        m.subject.as_deref().unwrap_or_default(),
        m.body,
        m.from.as_deref().unwrap_or_default(),
        m.to.join(" ")
    ));
    let mut tokens = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in q.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    tokens.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        tokens.push(cur);
    }
    let has_label = |l: &str| m.labels.iter().any(|x| x.eq_ignore_ascii_case(l));
    tokens.iter().all(|t| {
        let t = lower(t);
        match t.split_once(':') {
            Some(("from", v)) => lower(m.from.as_deref().unwrap_or_default()).contains(v),
            Some(("to", v)) => m.to.iter().any(|x| lower(x).contains(v)),
            Some(("subject", v)) => lower(m.subject.as_deref().unwrap_or_default()).contains(v),
            Some(("is", "unread")) => has_label("UNREAD"),
            Some(("is", "read")) => !has_label("UNREAD"),
            Some(("in" | "label", v)) => has_label(v),
            Some(("rfc822msgid", v)) => m
                .message_id
                .as_deref()
                .is_some_and(|id| lower(id).trim_matches(['<', '>']) == v.trim_matches(['<', '>'])),
            Some(("has", "attachment")) => {
                m.raw.to_ascii_lowercase().contains("content-disposition: attachment")
            }
            Some(("newer_than" | "older_than" | "after" | "before", _)) => true,
            _ => text.contains(&t),
        }
    })
}

fn list_messages(a: &Account, r: &RecordedRequest) -> Reply {
    let max = match r.query_value("maxResults").map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) if (1..=500).contains(&n) => n,
        Some(_) => return bad_request("Invalid maxResults"),
    };
    let q = r.query_value("q").unwrap_or_default();
    let mut found: Vec<&GmailMessage> =
        a.messages.iter().filter(|m| !m.labels.iter().any(|l| l == "DRAFT") && matches_query(m, q)).collect();
    found.sort_by(|x, y| y.internal_date.cmp(&x.internal_date).then(y.id.cmp(&x.id)));
    let start = r
        .query_value("pageToken")
        .and_then(|t| t.strip_prefix("pt"))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0usize);
    let page: Vec<Value> =
        found.iter().skip(start).take(max).map(|m| json!({"id": m.id, "threadId": m.thread_id})).collect();
    let mut out = json!({"resultSizeEstimate": found.len()});
    if !page.is_empty() {
        out["messages"] = json!(page);
    }
    if start + max < found.len() {
        out["nextPageToken"] = json!(format!("pt{}", start + max));
    }
    Reply::json(200, out)
}

// ------------------------------------------------------------------------------------------
// Calendar
// ------------------------------------------------------------------------------------------

fn complete_event(e: &mut Value, organizer: &str, id: &str) {
    let now = rfc3339(unix_now());
    if e["status"].is_null() {
        e["status"] = json!("confirmed");
    }
    e["kind"] = json!("calendar#event");
    e["htmlLink"] = json!(format!("https://www.google.com/calendar/event?eid={id}"));
    if e["created"].is_null() {
        e["created"] = json!(now);
    }
    e["updated"] = json!(now);
    if e["organizer"].is_null() {
        e["organizer"] = json!({"email": organizer, "self": true});
        e["creator"] = json!({"email": organizer, "self": true});
    }
    if let Some(list) = e["attendees"].as_array_mut() {
        for at in list {
            if at["responseStatus"].is_null() {
                at["responseStatus"] = json!("needsAction");
            }
        }
    }
}

/// Start/end of an event as Unix seconds, checking the shapes Google accepts.
fn event_span(e: &Value) -> Result<(i64, i64), Reply> {
    let t = |v: &Value, which: &str| -> Result<i64, Reply> {
        if v.is_null() {
            return Err(bad_request(&format!("Missing {which} time.")));
        }
        let s = v["dateTime"]
            .as_str()
            .or_else(|| v["date"].as_str())
            .ok_or_else(|| bad_request(&format!("Missing {which} time.")))?;
        if v["dateTime"].is_string() && s.len() == 10 || v["date"].is_string() && s.len() != 10 {
            return Err(bad_request("Invalid value for date/dateTime."));
        }
        parse_rfc3339(s).ok_or_else(|| bad_request(&format!("Invalid {which} time.")))
    };
    let (s, e2) = (t(&e["start"], "start")?, t(&e["end"], "end")?);
    if e["start"]["date"].is_string() != e["end"]["date"].is_string() {
        return Err(bad_request("Start and end times must either both be date or both be dateTime."));
    }
    if e2 <= s {
        return Err(bad_request("The specified time range is empty."));
    }
    Ok((s, e2))
}

fn calendar(a: &mut Account, m: &str, rest: &[&str], r: &RecordedRequest, body: &Value, n: u64) -> Reply {
    let resolve = |a: &Account, raw: &str| -> String {
        let id = percent_decode(raw);
        if id == "primary" { a.email.clone() } else { id }
    };
    match (m, rest) {
        ("POST", ["freeBusy"]) => {
            need!(
                a,
                "calendar",
                "calendar.readonly",
                "calendar.events",
                "calendar.freebusy",
                "calendar.events.freebusy"
            );
            let (Some(min), Some(max)) = (
                body["timeMin"].as_str().and_then(parse_rfc3339),
                body["timeMax"].as_str().and_then(parse_rfc3339),
            ) else {
                return bad_request("Missing timeMin or timeMax (RFC 3339 with offset).");
            };
            let mut cals = Map::new();
            for item in body["items"].as_array().cloned().unwrap_or_default() {
                let id = item["id"].as_str().unwrap_or_default().to_owned();
                let cal = if id == "primary" { a.email.clone() } else { id.clone() };
                let v = match a.calendars.get(&cal) {
                    Some(events) => {
                        let mut busy: Vec<(i64, i64)> = events
                            .iter()
                            .filter(|e| e["status"] != "cancelled" && e["transparency"] != "transparent")
                            .filter_map(|e| event_span(e).ok())
                            .filter(|(s, e)| *e > min && *s < max)
                            .map(|(s, e)| (s.max(min), e.min(max)))
                            .collect();
                        busy.sort_unstable();
                        json!({"busy": busy.iter().map(|(s, e)| json!({"start": rfc3339(*s), "end": rfc3339(*e)})).collect::<Vec<_>>()})
                    }
                    None => json!({"errors": [{"domain": "global", "reason": "notFound"}], "busy": []}),
                };
                cals.insert(id, v);
            }
            Reply::json(
                200,
                json!({"kind": "calendar#freeBusy", "timeMin": rfc3339(min), "timeMax": rfc3339(max), "calendars": cals}),
            )
        }
        ("GET", ["calendars", cal, "events"]) => {
            need!(a, "calendar", "calendar.readonly", "calendar.events", "calendar.events.readonly");
            let cal = resolve(a, cal);
            let Some(events) = a.calendars.get(&cal) else { return not_found("Not Found") };
            if r.query_value("orderBy") == Some("startTime") && r.query_value("singleEvents") != Some("true")
            {
                return bad_request("The requested ordering is not available for the particular query.");
            }
            let bound = |k: &str| -> Result<Option<i64>, Reply> {
                match r.query_value(k) {
                    None => Ok(None),
                    Some(v) => parse_rfc3339(v)
                        .filter(|_| v.len() > 10)
                        .map(Some)
                        .ok_or_else(|| bad_request("Bad Request")),
                }
            };
            let (min, max) = match (bound("timeMin"), bound("timeMax")) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(e), _) | (_, Err(e)) => return e,
            };
            let limit = match r.query_value("maxResults").map(str::parse::<usize>) {
                None => 250,
                Some(Ok(n)) if (1..=2500).contains(&n) => n,
                Some(_) => return bad_request("Invalid value for maxResults"),
            };
            let q = r.query_value("q").map(str::to_lowercase);
            let mut items: Vec<(i64, Value)> = events
                .iter()
                .filter(|e| e["status"] != "cancelled")
                .filter_map(|e| event_span(e).ok().map(|span| (span, e)))
                .filter(|((s, e), _)| min.is_none_or(|m| *e > m) && max.is_none_or(|m| *s < m))
                .filter(|(_, e)| {
                    q.as_ref().is_none_or(|q| {
                        ["summary", "description", "location"]
                            .iter()
                            .any(|k| e[*k].as_str().is_some_and(|v| v.to_lowercase().contains(q)))
                    })
                })
                .map(|((s, _), e)| (s, e.clone()))
                .collect();
            items.sort_by_key(|(s, _)| *s);
            let start = r.query_value("pageToken").and_then(|t| t.parse().ok()).unwrap_or(0usize);
            let page: Vec<Value> = items.iter().skip(start).take(limit).map(|(_, e)| e.clone()).collect();
            let mut out =
                json!({"kind": "calendar#events", "summary": cal, "timeZone": "UTC", "items": page});
            if start + limit < items.len() {
                out["nextPageToken"] = json!((start + limit).to_string());
            }
            Reply::json(200, out)
        }
        ("GET", ["calendars", cal, "events", id]) => {
            need!(a, "calendar", "calendar.readonly", "calendar.events", "calendar.events.readonly");
            let cal = resolve(a, cal);
            let id = percent_decode(id);
            match a.calendars.get(&cal).and_then(|l| l.iter().find(|e| e["id"] == id.as_str())) {
                Some(e) => Reply::json(200, e.clone()),
                None => not_found("Not Found"),
            }
        }
        ("POST", ["calendars", cal, "events"]) => {
            need!(a, "calendar", "calendar.events");
            if let Some(su) = r.query_value("sendUpdates")
                && !["all", "externalOnly", "none"].contains(&su)
            {
                return bad_request("Invalid value for sendUpdates");
            }
            let cal = resolve(a, cal);
            if !a.calendars.contains_key(&cal) {
                return not_found("Not Found");
            }
            let mut e = body.clone();
            if !e.is_object() {
                return bad_request("Invalid JSON payload received.");
            }
            if let Err(r) = event_span(&e) {
                return r;
            }
            let id = match e["id"].as_str() {
                Some(id) => {
                    let ok = (5..=1024).contains(&id.len())
                        && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b));
                    if !ok {
                        return bad_request("Invalid resource id value.");
                    }
                    if a.calendars.values().flatten().any(|x| x["id"] == id) {
                        return gerr(
                            409,
                            "ALREADY_EXISTS",
                            "The requested identifier already exists.",
                            "duplicate",
                        );
                    }
                    id.to_owned()
                }
                None => hex_id(n, 26),
            };
            e["id"] = json!(id);
            if e["conferenceData"]["createRequest"].is_object() {
                if r.query_value("conferenceDataVersion") == Some("1") {
                    let code = hex_id(n + 3, 10);
                    e["hangoutLink"] = json!(format!(
                        "https://meet.google.com/{}-{}-{}",
                        &code[0..3],
                        &code[3..7],
                        &code[7..10]
                    ));
                } else if let Some(o) = e.as_object_mut() {
                    // Without conferenceDataVersion=1 Google ignores conference data.
                    o.remove("conferenceData");
                }
            }
            complete_event(&mut e, &a.email.clone(), &id);
            e["x-fake-sendUpdates"] = json!(r.query_value("sendUpdates").unwrap_or("none"));
            a.calendars.entry(cal).or_default().push(e.clone());
            a.writes += 1;
            Reply::json(200, strip_fake(e))
        }
        ("PATCH", ["calendars", cal, "events", id]) => {
            need!(a, "calendar", "calendar.events");
            let cal = resolve(a, cal);
            let id = percent_decode(id);
            let Some(obj) = body.as_object() else { return bad_request("Invalid JSON payload received.") };
            let Some(e) =
                a.calendars.get_mut(&cal).and_then(|l| l.iter_mut().find(|e| e["id"] == id.as_str()))
            else {
                return not_found("Not Found");
            };
            let mut next = e.clone();
            for (k, v) in obj {
                next[k] = v.clone();
            }
            if let Err(r) = event_span(&next) {
                return r;
            }
            let email = a.email.clone();
            complete_event(&mut next, &email, &id);
            next["x-fake-sendUpdates"] = json!(r.query_value("sendUpdates").unwrap_or("none"));
            *e = next.clone();
            a.writes += 1;
            Reply::json(200, strip_fake(next))
        }
        _ => not_found("Not Found"),
    }
}

fn strip_fake(mut e: Value) -> Value {
    if let Some(o) = e.as_object_mut() {
        o.retain(|k, _| !k.starts_with("x-fake-"));
    }
    e
}

// ------------------------------------------------------------------------------------------
// Drive
// ------------------------------------------------------------------------------------------

enum Term {
    Trashed(bool),
    NameContains(String),
    FullText(String),
    MimeType(String),
    InParents,
}

/// Parses `field op 'literal' [and …]` (the subset the tools send; `or`/`not` are rejected).
fn parse_drive_query(q: &str) -> Result<Vec<Term>, String> {
    let mut terms = Vec::new();
    let mut rest = q.trim();
    while !rest.is_empty() {
        let literal = |s: &str| -> Result<(String, usize), String> {
            let s_trim = s.trim_start();
            let skipped = s.len() - s_trim.len();
            let mut chars = s_trim.char_indices();
            if chars.next().map(|(_, c)| c) != Some('\'') {
                return Err(format!("expected a quoted literal at {s_trim:?}"));
            }
            let mut out = String::new();
            let mut escaped = false;
            for (i, c) in chars {
                match (escaped, c) {
                    (true, c) => {
                        out.push(c);
                        escaped = false;
                    }
                    (false, '\\') => escaped = true,
                    (false, '\'') => return Ok((out, skipped + i + 1)),
                    (false, c) => out.push(c),
                }
            }
            Err("unterminated literal".into())
        };
        if let Some(r) = rest.strip_prefix("trashed = ") {
            let (v, r) = if let Some(r) = r.strip_prefix("false") {
                (false, r)
            } else if let Some(r) = r.strip_prefix("true") {
                (true, r)
            } else {
                return Err("trashed must be true or false".into());
            };
            terms.push(Term::Trashed(v));
            rest = r;
        } else if let Some(r) = rest.strip_prefix("name contains ") {
            let (v, used) = literal(r)?;
            terms.push(Term::NameContains(v));
            rest = &r[used..];
        } else if let Some(r) = rest.strip_prefix("fullText contains ") {
            let (v, used) = literal(r)?;
            terms.push(Term::FullText(v));
            rest = &r[used..];
        } else if let Some(r) = rest.strip_prefix("mimeType = ") {
            let (v, used) = literal(r)?;
            terms.push(Term::MimeType(v));
            rest = &r[used..];
        } else if rest.starts_with('\'') {
            let (_, used) = literal(rest)?;
            let r = rest[used..].trim_start().strip_prefix("in parents").ok_or("expected 'in parents'")?;
            terms.push(Term::InParents);
            rest = r;
        } else {
            return Err(format!("unsupported query term at {rest:?}"));
        }
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("and ") {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err(format!("expected 'and' at {rest:?}"));
        }
    }
    Ok(terms)
}

fn file_json(f: &FakeFile, owner: &str) -> Value {
    json!({"kind": "drive#file", "id": f.id, "name": f.name, "mimeType": f.mime_type, "modifiedTime": f.modified_time,
        "owners": [{"emailAddress": owner}], "webViewLink": format!("https://docs.google.com/open?id={}", f.id),
        "size": (!f.mime_type.starts_with("application/vnd.google-apps")).then(|| f.content.len().to_string())})
}

fn drive(a: &mut Account, m: &str, rest: &[&str], r: &RecordedRequest) -> Reply {
    need!(a, "drive", "drive.readonly", "drive.file", "drive.metadata.readonly");
    match (m, rest) {
        ("GET", []) => {
            let q = r.query_value("q").unwrap_or_default();
            let terms = match parse_drive_query(q) {
                Ok(t) => t,
                Err(e) => return gerr(400, "INVALID_ARGUMENT", &format!("Invalid Value: {e}"), "invalid"),
            };
            if r.query_value("orderBy").is_some() && terms.iter().any(|t| matches!(t, Term::FullText(_))) {
                return gerr(
                    400,
                    "INVALID_ARGUMENT",
                    "Sorting is not supported for queries with fullText terms. Results are always in descending relevance order.",
                    "invalid",
                );
            }
            let size = match r.query_value("pageSize").map(str::parse::<usize>) {
                None => 100,
                Some(Ok(n)) if (1..=1000).contains(&n) => n,
                Some(_) => return bad_request("Invalid value for pageSize"),
            };
            let mut files: Vec<&FakeFile> = a
                .files
                .iter()
                .filter(|f| {
                    terms.iter().all(|t| match t {
                        Term::Trashed(v) => f.trashed == *v,
                        Term::NameContains(s) => f.name.to_lowercase().contains(&s.to_lowercase()),
                        Term::FullText(s) => {
                            let s = s.to_lowercase();
                            f.name.to_lowercase().contains(&s) || f.content.to_lowercase().contains(&s)
                        }
                        Term::MimeType(s) => f.mime_type == *s,
                        Term::InParents => true,
                    })
                })
                .collect();
            if r.query_value("orderBy") == Some("modifiedTime desc") {
                files.sort_by(|x, y| y.modified_time.cmp(&x.modified_time));
            }
            let start = r.query_value("pageToken").and_then(|t| t.parse().ok()).unwrap_or(0usize);
            let list: Vec<Value> =
                files.iter().skip(start).take(size).map(|f| file_json(f, &a.email)).collect();
            let mut out = json!({"kind": "drive#fileList", "incompleteSearch": false, "files": list});
            if start + size < files.len() {
                out["nextPageToken"] = json!((start + size).to_string());
            }
            Reply::json(200, out)
        }
        ("GET", [id]) => {
            let Some(f) = a.files.iter().find(|f| f.id == *id) else {
                return gerr(404, "NOT_FOUND", &format!("File not found: {id}."), "notFound");
            };
            if r.query_value("alt") == Some("media") {
                if f.mime_type.starts_with("application/vnd.google-apps") {
                    return gerr(
                        403,
                        "PERMISSION_DENIED",
                        "Only files with binary content can be downloaded. Use Export with Docs Editors files.",
                        "fileNotDownloadable",
                    );
                }
                return Reply::text(200, &f.mime_type, f.content.clone());
            }
            Reply::json(200, file_json(f, &a.email))
        }
        ("GET", [id, "export"]) => {
            let Some(f) = a.files.iter().find(|f| f.id == *id) else {
                return gerr(404, "NOT_FOUND", &format!("File not found: {id}."), "notFound");
            };
            let Some(mime) = r.query_value("mimeType") else {
                return bad_request("Required parameter: mimeType");
            };
            let ok = match f.mime_type.as_str() {
                "application/vnd.google-apps.document" => {
                    ["text/plain", "text/markdown", "text/html", "application/pdf"].contains(&mime)
                }
                "application/vnd.google-apps.spreadsheet" => ["text/csv", "application/pdf"].contains(&mime),
                "application/vnd.google-apps.presentation" => {
                    ["text/plain", "application/pdf"].contains(&mime)
                }
                _ => {
                    return gerr(
                        403,
                        "PERMISSION_DENIED",
                        "Export only supports Docs Editors files.",
                        "fileNotExportable",
                    );
                }
            };
            if !ok {
                return bad_request("The requested conversion is not supported.");
            }
            // Real text exports of Docs start with a byte-order mark.
            Reply::text(200, &format!("{mime}; charset=utf-8"), format!("\u{feff}{}", f.content))
        }
        _ => not_found("Not Found"),
    }
}

// ------------------------------------------------------------------------------------------
// Sheets
// ------------------------------------------------------------------------------------------

/// A parsed A1 range: sheet index, first row/col (0-based), optional last row/col (inclusive).
struct A1 {
    sheet: usize,
    row0: usize,
    col0: usize,
    row1: Option<usize>,
    col1: Option<usize>,
}

fn col_index(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    Some(s.bytes().fold(0usize, |acc, b| acc * 26 + usize::from(b.to_ascii_uppercase() - b'A' + 1)) - 1)
}

fn col_name(mut i: usize) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'A' + u8::try_from(i % 26).unwrap_or(0));
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    s.reverse();
    String::from_utf8_lossy(&s).into_owned()
}

fn cell_ref(s: &str) -> Option<(Option<usize>, Option<usize>)> {
    let letters: String = s.chars().take_while(char::is_ascii_alphabetic).collect();
    let digits = &s[letters.len()..];
    let col = if letters.is_empty() { None } else { Some(col_index(&letters)?) };
    let row = if digits.is_empty() { None } else { Some(digits.parse::<usize>().ok()?.checked_sub(1)?) };
    (col.is_some() || row.is_some()).then_some((col, row))
}

fn parse_a1(ss: &Spreadsheet, range: &str) -> Option<A1> {
    let (sheet_name, cells) = match range.rfind('!') {
        Some(i) => (Some(&range[..i]), &range[i + 1..]),
        None => (None, range),
    };
    let find = |name: &str| {
        let name = name
            .strip_prefix('\'')
            .and_then(|n| n.strip_suffix('\''))
            .map(|n| n.replace("''", "'"))
            .unwrap_or(name.to_owned());
        ss.sheets.iter().position(|s| s.title == name)
    };
    // A bare name that is a sheet title means the whole sheet.
    if sheet_name.is_none()
        && let Some(i) = find(cells)
    {
        return Some(A1 { sheet: i, row0: 0, col0: 0, row1: None, col1: None });
    }
    let sheet = match sheet_name {
        Some(n) => find(n)?,
        None => 0,
    };
    if cells.is_empty() {
        return Some(A1 { sheet, row0: 0, col0: 0, row1: None, col1: None });
    }
    let (a, b) = cells.split_once(':').unwrap_or((cells, cells));
    let (c0, r0) = cell_ref(a)?;
    let (c1, r1) = cell_ref(b)?;
    Some(A1 { sheet, row0: r0.unwrap_or(0), col0: c0.unwrap_or(0), row1: r1, col1: c1 })
}

fn a1_string(title: &str, row0: usize, col0: usize, row1: usize, col1: usize) -> String {
    let t = if title.chars().all(|c| c.is_ascii_alphanumeric()) {
        title.to_owned()
    } else {
        format!("'{}'", title.replace('\'', "''"))
    };
    format!("{t}!{}{}:{}{}", col_name(col0), row0 + 1, col_name(col1), row1 + 1)
}

fn cell_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => {
            if *b {
                "TRUE".into()
            } else {
                "FALSE".into()
            }
        }
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn sheets(a: &mut Account, m: &str, id: &str, rest: &[&str], r: &RecordedRequest, body: &Value) -> Reply {
    if m == "GET" {
        need!(a, "spreadsheets", "spreadsheets.readonly", "drive", "drive.readonly", "drive.file");
    } else {
        need!(a, "spreadsheets", "drive", "drive.file");
    }
    let Some(ss) = a.spreadsheets.get_mut(id) else {
        return gerr(404, "NOT_FOUND", "Requested entity was not found.", "notFound");
    };
    match (m, rest) {
        ("GET", []) => {
            let sheets: Vec<Value> = ss
                .sheets
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let cols = s.cells.iter().map(Vec::len).max().unwrap_or(0).max(26);
                    json!({"properties": {"sheetId": s.id, "title": s.title, "index": i, "sheetType": "GRID",
                        "gridProperties": {"rowCount": s.cells.len().max(1000), "columnCount": cols}}})
                })
                .collect();
            Reply::json(
                200,
                json!({"spreadsheetId": id, "properties": {"title": ss.title}, "sheets": sheets}),
            )
        }
        (_, ["values", raw_range]) => {
            let append = raw_range.ends_with(":append");
            let range = percent_decode(raw_range.strip_suffix(":append").unwrap_or(raw_range));
            let Some(a1) = parse_a1(ss, &range) else {
                return bad_request(&format!("Unable to parse range: {range}"));
            };
            match (m, append) {
                ("GET", false) => {
                    let sheet = &ss.sheets[a1.sheet];
                    let last_row = a1.row1.unwrap_or(sheet.cells.len().saturating_sub(1));
                    let mut rows: Vec<Vec<String>> = Vec::new();
                    for ri in a1.row0..=last_row {
                        let row = sheet.cells.get(ri).cloned().unwrap_or_default();
                        let end = a1.col1.map_or(row.len(), |c| (c + 1).min(row.len()));
                        let mut cells: Vec<String> =
                            row.get(a1.col0.min(end)..end).map(<[String]>::to_vec).unwrap_or_default();
                        while cells.last().is_some_and(String::is_empty) {
                            cells.pop();
                        }
                        rows.push(cells);
                    }
                    while rows.last().is_some_and(Vec::is_empty) {
                        rows.pop();
                    }
                    let width = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
                    let col1 = a1.col1.unwrap_or(a1.col0 + width - 1);
                    let mut out = json!({"range": a1_string(&sheet.title, a1.row0, a1.col0, a1.row1.unwrap_or(last_row.max(a1.row0)), col1), "majorDimension": "ROWS"});
                    if !rows.is_empty() {
                        out["values"] = json!(rows);
                    }
                    Reply::json(200, out)
                }
                ("PUT", false) | ("POST", true) => {
                    match r.query_value("valueInputOption") {
                        Some("RAW" | "USER_ENTERED") => {}
                        Some(_) => return bad_request("Invalid valueInputOption"),
                        None => return bad_request("'valueInputOption' is required but not specified"),
                    }
                    if let Some(br) = body["range"].as_str()
                        && br != range
                    {
                        return bad_request(&format!(
                            "Requested writing within range [{range}], but tried writing to [{br}]"
                        ));
                    }
                    if body["majorDimension"].as_str().is_some_and(|d| d != "ROWS") {
                        return bad_request("Only ROWS is supported by the fake");
                    }
                    let Some(values) = body["values"].as_array() else {
                        return bad_request("Missing values");
                    };
                    let rows: Vec<Vec<String>> = values
                        .iter()
                        .map(|row| {
                            row.as_array().map(|c| c.iter().map(cell_text).collect()).unwrap_or_default()
                        })
                        .collect();
                    let sheet = &mut ss.sheets[a1.sheet];
                    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
                    let start_row = if append {
                        // The table: the last non-empty row within the range's columns.
                        let cols = a1.col0..=a1.col1.unwrap_or(usize::MAX);
                        let last = sheet
                            .cells
                            .iter()
                            .enumerate()
                            .skip(a1.row0)
                            .rev()
                            .find(|(_, row)| {
                                row.iter().enumerate().any(|(c, v)| cols.contains(&c) && !v.is_empty())
                            })
                            .map(|(i, _)| i);
                        last.map_or(a1.row0, |l| l + 1)
                    } else {
                        if let Some(r1) = a1.row1
                            && a1.row0 + rows.len() > r1 + 1
                        {
                            return bad_request(&format!(
                                "Requested writing within range [{range}], but tried writing to row [{}]",
                                a1.row0 + rows.len()
                            ));
                        }
                        if let Some(c1) = a1.col1
                            && a1.col0 + width > c1 + 1
                        {
                            return bad_request(&format!(
                                "Requested writing within range [{range}], but tried writing to column [{}]",
                                col_name(a1.col0 + width - 1)
                            ));
                        }
                        a1.row0
                    };
                    for (i, row) in rows.iter().enumerate() {
                        let ri = start_row + i;
                        if sheet.cells.len() <= ri {
                            sheet.cells.resize(ri + 1, Vec::new());
                        }
                        let target = &mut sheet.cells[ri];
                        if target.len() < a1.col0 + row.len() {
                            target.resize(a1.col0 + row.len(), String::new());
                        }
                        for (ci, v) in row.iter().enumerate() {
                            target[a1.col0 + ci] = v.clone();
                        }
                    }
                    let cells: usize = rows.iter().map(Vec::len).sum();
                    let updated = a1_string(
                        &sheet.title,
                        start_row,
                        a1.col0,
                        start_row + rows.len().max(1) - 1,
                        a1.col0 + width.max(1) - 1,
                    );
                    let title = sheet.title.clone();
                    a.writes += 1;
                    let update = json!({"spreadsheetId": id, "updatedRange": updated, "updatedRows": rows.len(),
                        "updatedColumns": width, "updatedCells": cells});
                    if append {
                        let table = a1_string(
                            &title,
                            a1.row0,
                            a1.col0,
                            start_row.max(a1.row0 + 1) - 1,
                            a1.col0 + width.max(1) - 1,
                        );
                        Reply::json(200, json!({"spreadsheetId": id, "tableRange": table, "updates": update}))
                    } else {
                        Reply::json(200, update)
                    }
                }
                _ => not_found("Not Found"),
            }
        }
        _ => not_found("Not Found"),
    }
}

// ------------------------------------------------------------------------------------------
// People
// ------------------------------------------------------------------------------------------

fn contacts(a: &mut Account, r: &RecordedRequest, other: bool) -> Reply {
    if other {
        need!(a, "contacts.other.readonly");
    } else {
        need!(a, "contacts", "contacts.readonly");
    }
    let Some(mask) = r.query_value("readMask").filter(|m| !m.is_empty()) else {
        return bad_request("Must specify a readMask.");
    };
    let fields: Vec<&str> = mask.split(',').map(str::trim).collect();
    let allowed: &[&str] = if other {
        &["names", "emailAddresses", "phoneNumbers", "metadata", "photos"]
    } else {
        &[
            "names",
            "emailAddresses",
            "phoneNumbers",
            "organizations",
            "metadata",
            "photos",
            "addresses",
            "birthdays",
            "biographies",
            "nicknames",
        ]
    };
    if let Some(bad) = fields.iter().find(|f| !allowed.contains(f)) {
        return bad_request(&format!("Invalid readMask path: {bad}"));
    }
    let size = match r.query_value("pageSize").map(str::parse::<usize>) {
        None => 10,
        Some(Ok(n)) if (1..=30).contains(&n) => n,
        Some(_) => return bad_request("pageSize must be between 1 and 30"),
    };
    let query = r.query_value("query").unwrap_or_default().to_lowercase();
    let warm = if other { &mut a.other_contacts_warm } else { &mut a.contacts_warm };
    if query.is_empty() {
        // The warm-up request: refreshes the search cache, returns nothing.
        *warm = true;
        return Reply::json(200, json!({}));
    }
    if !*warm {
        // A cold cache answers with nothing, which is why clients must warm it up.
        return Reply::json(200, json!({}));
    }
    let list = if other { &a.other_contacts } else { &a.contacts };
    let results: Vec<Value> = list
        .iter()
        .filter(|p| {
            let words = |k: &str, f: &str| -> Vec<String> {
                p[k].as_array()
                    .map(|l| l.iter().filter_map(|x| x[f].as_str()).map(str::to_lowercase).collect())
                    .unwrap_or_default()
            };
            let names = words("names", "displayName");
            names
                .iter()
                .flat_map(|n| n.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                .any(|w| w.starts_with(&query))
                || names.iter().any(|n| n.starts_with(&query))
                || words("emailAddresses", "value").iter().any(|e| e.starts_with(&query))
                || words("phoneNumbers", "value")
                    .iter()
                    .any(|e| e.replace([' ', '-'], "").starts_with(&query.replace([' ', '-'], "")))
                || words("organizations", "name").iter().any(|e| e.starts_with(&query))
        })
        .take(size)
        .map(|p| {
            let mut person = json!({"resourceName": p["resourceName"], "etag": p["etag"]});
            for f in &fields {
                if !p[*f].is_null() {
                    person[*f] = p[*f].clone();
                }
            }
            json!({"person": person})
        })
        .collect();
    if results.is_empty() {
        Reply::json(200, json!({}))
    } else {
        Reply::json(200, json!({"results": results}))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a1_ranges() {
        let ss = Spreadsheet {
            title: "t".into(),
            sheets: vec![
                Sheet { title: "Sheet1".into(), id: 0, cells: vec![] },
                Sheet { title: "My Data".into(), id: 1, cells: vec![] },
            ],
        };
        let a = parse_a1(&ss, "Sheet1!B2:D10").unwrap();
        assert_eq!((a.sheet, a.row0, a.col0, a.row1, a.col1), (0, 1, 1, Some(9), Some(3)));
        let a = parse_a1(&ss, "'My Data'!A:C").unwrap();
        assert_eq!((a.sheet, a.row0, a.col0, a.row1, a.col1), (1, 0, 0, None, Some(2)));
        assert!(parse_a1(&ss, "Nope!A1").is_none());
        assert_eq!(col_name(27), "AB");
        assert_eq!(col_index("AB"), Some(27));
    }

    #[test]
    fn drive_queries() {
        let t =
            parse_drive_query("trashed = false and fullText contains 'it\\'s' and mimeType = 'x'").unwrap();
        assert_eq!(t.len(), 3);
        assert!(matches!(&t[1], Term::FullText(s) if s == "it's"));
        assert!(parse_drive_query("name = 'x'").is_err());
    }
}
