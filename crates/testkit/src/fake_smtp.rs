//! A minimal SMTP server on 127.0.0.1 (plain TCP, no TLS) speaking enough RFC 5321 for an SMTP
//! client such as `lettre`'s `AsyncSmtpTransport::builder_dangerous(host).port(port)`: greeting,
//! `EHLO`/`HELO`, `AUTH PLAIN`/`AUTH LOGIN` (RFC 4954, only when credentials are configured),
//! `MAIL FROM`, `RCPT TO`, `DATA` (dot-unstuffed until `<CRLF>.<CRLF>`), `RSET`, `NOOP`, `QUIT`.
//! Commands out of sequence get `503`, unknown ones `500`, bad arguments `501`.
//!
//! Every accepted message is kept, parsed with `mailparse`, as an [`SmtpMessage`].
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use crewgate_testkit::fake_smtp::FakeSmtp;
//! let smtp = FakeSmtp::start_with_auth("mailer", "s3cret").await;
//! // point the mailer at smtp.host():smtp.port() without TLS …
//! let got = smtp.wait_for(1, Duration::from_secs(5)).await;
//! assert_eq!(got[0].subject.as_deref(), Some("Welcome"));
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailparse::{MailHeaderMap, ParsedMail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::fake_common::{hex_id, lock};

/// Longest command line accepted (RFC 5321 §4.5.3.1.4 says 512 octets; be lenient).
const MAX_COMMAND_LINE: usize = 4096;
/// Largest message accepted (`552` beyond).
const MAX_MESSAGE: usize = 32 * 1024 * 1024;

/// A message the server accepted.
#[derive(Debug, Clone)]
pub struct SmtpMessage {
    /// Envelope sender (`MAIL FROM`), without angle brackets; empty for the null sender `<>`.
    pub from: String,
    /// Envelope recipients (`RCPT TO`), in order.
    pub to: Vec<String>,
    /// The message as transmitted after `DATA`, dot-unstuffed, with CRLF line ends.
    pub raw: String,
    /// The `Subject` header, RFC 2047 decoded.
    pub subject: Option<String>,
    /// The first `text/plain` part (or the single text body), transfer- and charset-decoded.
    pub body: String,
    /// Header names and values (values RFC 2047 decoded and unfolded), in order.
    pub headers: Vec<(String, String)>,
    /// The user name the session authenticated as, if it did.
    pub auth_user: Option<String>,
}

impl SmtpMessage {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
struct SmtpState {
    messages: Vec<SmtpMessage>,
    fail_next: usize,
    counter: u64,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<SmtpState>,
    /// `(username, password)` required before `MAIL FROM`.
    credentials: Option<(String, String)>,
}

/// The running server. Stops (with every open session) when dropped.
#[derive(Debug)]
pub struct FakeSmtp {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeSmtp {
    /// A server that needs no authentication (and advertises none).
    pub async fn start() -> Self {
        Self::start_inner(None).await
    }

    /// A server that advertises `AUTH PLAIN LOGIN` and requires these credentials before
    /// `MAIL FROM` (`530` otherwise, `535` for wrong ones).
    pub async fn start_with_auth(username: &str, password: &str) -> Self {
        Self::start_inner(Some((username.to_owned(), password.to_owned()))).await
    }

    /// Panics if the loopback port cannot be bound (a broken test host).
    #[allow(clippy::expect_used)]
    async fn start_inner(credentials: Option<(String, String)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("fake smtp: could not bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake smtp: no local address");
        let shared = Arc::new(Shared { state: Mutex::new(SmtpState::default()), credentials });
        let accept_shared = shared.clone();
        let task = tokio::spawn(async move {
            // Sessions live in the set: aborting this task drops it, which aborts them all.
            let mut sessions = JoinSet::new();
            loop {
                while sessions.try_join_next().is_some() {}
                match listener.accept().await {
                    Ok((stream, _)) => {
                        sessions.spawn(session(stream, accept_shared.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "fake smtp: accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
        Self { shared, addr, task }
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> String {
        self.addr.ip().to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Messages accepted so far, oldest first.
    pub fn messages(&self) -> Vec<SmtpMessage> {
        lock(&self.shared.state).messages.clone()
    }

    /// Forgets the messages accepted so far.
    pub fn clear(&self) {
        lock(&self.shared.state).messages.clear();
    }

    /// Waits until at least `n` messages were accepted or `timeout` passed, then returns all
    /// messages (fewer than `n` on timeout).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<SmtpMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n || Instant::now() >= deadline {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The next `n` `MAIL FROM` commands (any session) answer `451 4.3.0 try again later`.
    pub fn fail_next(&self, n: usize) {
        lock(&self.shared.state).fail_next = n;
    }
}

// ------------------------------------------------------------------------------------------
// One SMTP session
// ------------------------------------------------------------------------------------------

type Conn = BufReader<TcpStream>;

async fn send(conn: &mut Conn, reply: &str) -> std::io::Result<()> {
    // One write per reply: split writes meet Nagle + delayed ACK (40 ms stalls).
    let s = conn.get_mut();
    s.write_all(format!("{reply}\r\n").as_bytes()).await?;
    s.flush().await
}

/// Reads one line (up to `max` bytes) without its line end; `None` at end of stream or if the
/// line is too long (the session then ends).
async fn read_line(conn: &mut Conn, max: usize) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let n = (&mut *conn).take(max as u64 + 2).read_until(b'\n', &mut buf).await.ok()?;
    if n == 0 || !buf.ends_with(b"\n") {
        return None;
    }
    buf.pop();
    if buf.ends_with(b"\r") {
        buf.pop();
    }
    Some(buf)
}

/// `FROM:<addr> params` → `addr`; `None` if malformed.
fn path_arg<'a>(arg: &'a str, keyword: &str) -> Option<&'a str> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some(&rest[..end])
}

#[derive(Default)]
struct Session {
    greeted: bool,
    auth_user: Option<String>,
    mail_from: Option<String>,
    rcpts: Vec<String>,
}

impl Session {
    fn reset(&mut self) {
        self.mail_from = None;
        self.rcpts.clear();
    }
}

enum AuthOutcome {
    Ok(String),
    Reply(&'static str),
    Closed,
}

async fn session(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let mut conn = BufReader::new(stream);
    if send(&mut conn, "220 fake-smtp.localhost ESMTP crewgate-testkit ready").await.is_err() {
        return;
    }
    let mut s = Session::default();
    while let Some(line) = read_line(&mut conn, MAX_COMMAND_LINE).await {
        let line = String::from_utf8_lossy(&line).into_owned();
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim()),
            None => (line.trim().to_ascii_uppercase(), ""),
        };
        let reply: String = match verb.as_str() {
            "EHLO" | "HELO" if arg.is_empty() => "501 5.5.4 Syntax: EHLO hostname".into(),
            "EHLO" => {
                s.greeted = true;
                s.reset();
                let mut lines = vec![format!("250-fake-smtp.localhost greets {arg}")];
                if shared.credentials.is_some() {
                    lines.push("250-AUTH PLAIN LOGIN".into());
                }
                lines.push("250-8BITMIME".into());
                lines.push("250-ENHANCEDSTATUSCODES".into());
                lines.push("250 SMTPUTF8".into());
                lines.join("\r\n")
            }
            "HELO" => {
                s.greeted = true;
                s.reset();
                "250 fake-smtp.localhost".into()
            }
            "AUTH" => {
                if shared.credentials.is_none() {
                    "503 5.5.1 AUTH not supported".into()
                } else if !s.greeted {
                    "503 5.5.1 Send EHLO first".into()
                } else if s.auth_user.is_some() {
                    "503 5.5.1 Already authenticated".into()
                } else if s.mail_from.is_some() {
                    "503 5.5.1 AUTH not allowed during a mail transaction".into()
                } else {
                    match auth(&mut conn, &shared, arg).await {
                        AuthOutcome::Ok(user) => {
                            s.auth_user = Some(user);
                            "235 2.7.0 Authentication successful".into()
                        }
                        AuthOutcome::Reply(r) => r.into(),
                        AuthOutcome::Closed => return,
                    }
                }
            }
            "MAIL" => {
                if !s.greeted {
                    "503 5.5.1 Send EHLO/HELO first".into()
                } else if shared.credentials.is_some() && s.auth_user.is_none() {
                    "530 5.7.0 Authentication required".into()
                } else if s.mail_from.is_some() {
                    "503 5.5.1 Nested MAIL command".into()
                } else {
                    match path_arg(arg, "FROM:") {
                        None => "501 5.5.4 Syntax: MAIL FROM:<address>".into(),
                        Some(from) => {
                            let mut st = lock(&shared.state);
                            if st.fail_next > 0 {
                                st.fail_next -= 1;
                                "451 4.3.0 try again later".into()
                            } else {
                                s.mail_from = Some(from.to_owned());
                                "250 2.1.0 OK".into()
                            }
                        }
                    }
                }
            }
            "RCPT" => {
                if s.mail_from.is_none() {
                    "503 5.5.1 Need MAIL before RCPT".into()
                } else {
                    match path_arg(arg, "TO:") {
                        Some(to) if !to.is_empty() => {
                            s.rcpts.push(to.to_owned());
                            "250 2.1.5 OK".into()
                        }
                        _ => "501 5.5.4 Syntax: RCPT TO:<address>".into(),
                    }
                }
            }
            "DATA" => {
                if s.mail_from.is_none() {
                    "503 5.5.1 Need MAIL command".into()
                } else if s.rcpts.is_empty() {
                    "503 5.5.1 Need RCPT (recipient)".into()
                } else if !arg.is_empty() {
                    "501 5.5.4 Syntax: DATA".into()
                } else {
                    if send(&mut conn, "354 End data with <CR><LF>.<CR><LF>").await.is_err() {
                        return;
                    }
                    let Some(data) = read_data(&mut conn).await else { return };
                    let from = s.mail_from.take().unwrap_or_default();
                    let to = std::mem::take(&mut s.rcpts);
                    match data {
                        Err(()) => "552 5.3.4 Message too big".into(),
                        Ok(raw) => {
                            let mut msg = parse(&raw, from, to);
                            msg.auth_user = s.auth_user.clone();
                            let mut st = lock(&shared.state);
                            st.counter += 1;
                            let id = hex_id(st.counter, 12).to_ascii_uppercase();
                            st.messages.push(msg);
                            format!("250 2.0.0 OK queued as {id}")
                        }
                    }
                }
            }
            "RSET" => {
                s.reset();
                "250 2.0.0 OK".into()
            }
            "NOOP" => "250 2.0.0 OK".into(),
            "VRFY" => "252 2.5.2 Cannot VRFY user".into(),
            "QUIT" => {
                let _ = send(&mut conn, "221 2.0.0 Bye").await;
                return;
            }
            _ => "500 5.5.2 Command not recognized".into(),
        };
        if send(&mut conn, &reply).await.is_err() {
            return;
        }
    }
}

/// Reads the message after `354` until the line `.`; unstuffs leading dots. `None`: the
/// connection ended; `Some(Err)`: too big (read to the end anyway).
async fn read_data(conn: &mut Conn) -> Option<Result<Vec<u8>, ()>> {
    let mut out = Vec::new();
    let mut too_big = false;
    loop {
        let mut line = Vec::new();
        let n = conn.read_until(b'\n', &mut line).await.ok()?;
        if n == 0 {
            return None;
        }
        if line == b".\r\n" || line == b".\n" {
            break;
        }
        let line = if line.starts_with(b".") { &line[1..] } else { &line[..] };
        if out.len() + line.len() > MAX_MESSAGE {
            too_big = true;
        }
        if !too_big {
            out.extend_from_slice(line);
        }
    }
    Some(if too_big { Err(()) } else { Ok(out) })
}

async fn auth(conn: &mut Conn, shared: &Shared, arg: &str) -> AuthOutcome {
    let Some((user, pass)) = &shared.credentials else {
        return AuthOutcome::Reply("503 5.5.1 AUTH not supported");
    };
    let (mechanism, initial) = match arg.split_once(' ') {
        Some((m, i)) => (m.to_ascii_uppercase(), Some(i.trim().to_owned())),
        None => (arg.to_ascii_uppercase(), None),
    };
    // Reads one client response to a `334` challenge: base64 or `*` (cancel).
    async fn respond(conn: &mut Conn, challenge: &str) -> Result<Vec<u8>, AuthOutcome> {
        if send(conn, challenge).await.is_err() {
            return Err(AuthOutcome::Closed);
        }
        let Some(line) = read_line(conn, MAX_COMMAND_LINE).await else { return Err(AuthOutcome::Closed) };
        decode(&String::from_utf8_lossy(&line))
    }
    fn decode(s: &str) -> Result<Vec<u8>, AuthOutcome> {
        if s.trim() == "*" {
            return Err(AuthOutcome::Reply("501 5.7.0 Authentication canceled"));
        }
        if s.trim() == "=" {
            return Ok(Vec::new());
        }
        STANDARD.decode(s.trim()).map_err(|_| AuthOutcome::Reply("501 5.5.2 Cannot decode response"))
    }
    let (given_user, given_pass) = match mechanism.as_str() {
        "PLAIN" => {
            let data = match initial {
                Some(i) => decode(&i),
                None => respond(conn, "334 ").await,
            };
            let data = match data {
                Ok(d) => d,
                Err(o) => return o,
            };
            // authzid NUL authcid NUL passwd
            let parts: Vec<&[u8]> = data.split(|b| *b == 0).collect();
            let [_, u, p] = parts.as_slice() else {
                return AuthOutcome::Reply("501 5.5.2 Invalid PLAIN response");
            };
            (String::from_utf8_lossy(u).into_owned(), String::from_utf8_lossy(p).into_owned())
        }
        "LOGIN" => {
            let u = match initial {
                Some(i) => decode(&i),
                None => respond(conn, "334 VXNlcm5hbWU6").await,
            };
            let u = match u {
                Ok(u) => u,
                Err(o) => return o,
            };
            let p = match respond(conn, "334 UGFzc3dvcmQ6").await {
                Ok(p) => p,
                Err(o) => return o,
            };
            (String::from_utf8_lossy(&u).into_owned(), String::from_utf8_lossy(&p).into_owned())
        }
        "" => return AuthOutcome::Reply("501 5.5.4 Syntax: AUTH mechanism"),
        _ => return AuthOutcome::Reply("504 5.5.4 Unrecognized authentication type"),
    };
    if given_user == *user && given_pass == *pass {
        AuthOutcome::Ok(given_user)
    } else {
        AuthOutcome::Reply("535 5.7.8 Authentication credentials invalid")
    }
}

fn first_text(p: &ParsedMail<'_>) -> Option<String> {
    if p.subparts.is_empty() {
        return p.ctype.mimetype.starts_with("text/").then(|| p.get_body().unwrap_or_default());
    }
    p.subparts
        .iter()
        .find(|s| s.ctype.mimetype == "text/plain")
        .and_then(first_text)
        .or_else(|| p.subparts.iter().find_map(first_text))
}

/// Parses what `DATA` carried; a message `mailparse` cannot read keeps only `raw`.
fn parse(raw: &[u8], from: String, to: Vec<String>) -> SmtpMessage {
    let mut msg = SmtpMessage {
        from,
        to,
        raw: String::from_utf8_lossy(raw).into_owned(),
        subject: None,
        body: String::new(),
        headers: Vec::new(),
        auth_user: None,
    };
    if let Ok(p) = mailparse::parse_mail(raw) {
        msg.subject = p.headers.get_first_value("Subject");
        msg.headers = p.headers.iter().map(|h| (h.get_key(), h.get_value())).collect();
        msg.body = first_text(&p).unwrap_or_default();
    }
    msg
}
