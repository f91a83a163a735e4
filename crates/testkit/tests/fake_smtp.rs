#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The fake SMTP server, driven by a raw TCP conversation.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use crewgate_testkit::fake_smtp::FakeSmtp;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Client {
    conn: BufReader<TcpStream>,
}

impl Client {
    async fn connect(smtp: &FakeSmtp) -> Self {
        let stream = TcpStream::connect((smtp.host().as_str(), smtp.port())).await.unwrap();
        let mut c = Self { conn: BufReader::new(stream) };
        let greeting = c.reply().await;
        assert!(greeting[0].starts_with("220 "), "{greeting:?}");
        c
    }

    /// One (possibly multi-line) reply.
    async fn reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(5), self.conn.read_line(&mut line))
                .await
                .expect("reply timed out")
                .unwrap();
            assert!(n > 0, "connection closed; got {lines:?}");
            assert!(line.ends_with("\r\n"), "{line:?}");
            let line = line.trim_end().to_owned();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines;
            }
        }
    }

    async fn send_raw(&mut self, data: &str) {
        self.conn.get_mut().write_all(data.as_bytes()).await.unwrap();
    }

    /// Sends a command and returns the reply code and lines.
    async fn cmd(&mut self, line: &str) -> (u16, Vec<String>) {
        self.send_raw(&format!("{line}\r\n")).await;
        let r = self.reply().await;
        (r[0][..3].parse().unwrap(), r)
    }

    async fn code(&mut self, line: &str) -> u16 {
        self.cmd(line).await.0
    }
}

const MESSAGE: &str = "From: Crewgate <noreply@crewgate.example>\r\n\
To: alice@company.com, bob@company.com\r\n\
Subject: =?UTF-8?B?V2lsbGtvbW1lbiwgSsO8cmdlbiDinJM=?=\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=UTF-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Hello J=C3=BCrgen,\r\n\
..this line started with a dot\r\n\
.\r\n";

#[tokio::test]
async fn full_session_with_dot_stuffing_and_encoded_subject() {
    let smtp = FakeSmtp::start().await;
    let mut c = Client::connect(&smtp).await;
    let (code, ehlo) = c.cmd("EHLO client.example").await;
    assert_eq!(code, 250);
    assert!(ehlo.iter().any(|l| l.ends_with("8BITMIME")), "{ehlo:?}");
    assert!(ehlo.iter().any(|l| l.ends_with("SMTPUTF8")), "{ehlo:?}");
    assert!(!ehlo.iter().any(|l| l.contains("AUTH")), "no AUTH without credentials: {ehlo:?}");
    assert_eq!(c.code("NOOP").await, 250);
    assert_eq!(c.code("MAIL FROM:<bounce@crewgate.example> BODY=8BITMIME").await, 250);
    assert_eq!(c.code("RCPT TO:<alice@company.com>").await, 250);
    assert_eq!(c.code("rcpt to: <bob@company.com>").await, 250);
    assert_eq!(c.code("DATA").await, 354);
    c.send_raw(MESSAGE).await;
    let r = c.reply().await;
    assert!(r[0].starts_with("250 "), "{r:?}");

    // A second message in the same session after RSET of an abandoned transaction.
    assert_eq!(c.code("MAIL FROM:<>").await, 250);
    assert_eq!(c.code("RSET").await, 250);
    assert_eq!(c.code("RCPT TO:<x@y.z>").await, 503, "RSET ended the transaction");
    assert_eq!(c.code("MAIL FROM:<other@crewgate.example>").await, 250);
    assert_eq!(c.code("RCPT TO:<carol@company.com>").await, 250);
    assert_eq!(c.code("DATA").await, 354);
    c.send_raw("Subject: plain\r\n\r\nsecond\r\n.\r\n").await;
    assert_eq!(c.reply().await[0][..3].to_owned(), "250");
    assert_eq!(c.code("QUIT").await, 221);

    let got = smtp.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 2);
    let m = &got[0];
    assert_eq!(m.from, "bounce@crewgate.example");
    assert_eq!(m.to, vec!["alice@company.com", "bob@company.com"]);
    assert_eq!(m.subject.as_deref(), Some("Willkommen, Jürgen ✓"));
    assert_eq!(m.body, "Hello Jürgen,\r\n.this line started with a dot\r\n");
    assert!(m.raw.contains("\r\n.this line started with a dot\r\n"), "{}", m.raw);
    assert!(m.raw.starts_with("From: Crewgate"));
    assert_eq!(m.header("content-type"), Some("text/plain; charset=UTF-8"));
    assert_eq!(m.header("To"), Some("alice@company.com, bob@company.com"));
    assert_eq!(m.auth_user, None);
    assert_eq!(got[1].from, "other@crewgate.example");
    assert_eq!(got[1].to, vec!["carol@company.com"]);
    assert_eq!(got[1].body, "second\r\n");
    assert_eq!(smtp.messages().len(), 2);
}

#[tokio::test]
async fn commands_out_of_sequence_get_503() {
    let smtp = FakeSmtp::start().await;
    let mut c = Client::connect(&smtp).await;
    assert_eq!(c.code("MAIL FROM:<a@b.c>").await, 503, "before EHLO");
    assert_eq!(c.code("HELO client.example").await, 250);
    assert_eq!(c.code("RCPT TO:<a@b.c>").await, 503, "before MAIL");
    assert_eq!(c.code("DATA").await, 503, "before MAIL");
    assert_eq!(c.code("MAIL FROM:<a@b.c>").await, 250);
    assert_eq!(c.code("MAIL FROM:<a@b.c>").await, 503, "nested MAIL");
    assert_eq!(c.code("DATA").await, 503, "no recipient");
    assert_eq!(c.code("RCPT TO:missing-brackets").await, 501);
    assert_eq!(c.code("AUTH PLAIN AGEAYg==").await, 503, "AUTH not offered");
    assert_eq!(c.code("BOGUS").await, 500);
    assert_eq!(c.code("EHLO").await, 501);
    assert_eq!(c.code("QUIT").await, 221);
    assert!(smtp.messages().is_empty());
}

#[tokio::test]
async fn auth_plain_and_login() {
    let smtp = FakeSmtp::start_with_auth("mailer", "s3cret").await;
    let mut c = Client::connect(&smtp).await;
    let (_, ehlo) = c.cmd("EHLO client.example").await;
    assert!(ehlo.iter().any(|l| l.ends_with("AUTH PLAIN LOGIN")), "{ehlo:?}");
    assert_eq!(c.code("MAIL FROM:<a@b.c>").await, 530, "authentication required");

    let wrong = STANDARD.encode("\0mailer\0nope");
    assert_eq!(c.code(&format!("AUTH PLAIN {wrong}")).await, 535);
    assert_eq!(c.code("AUTH LOGIN").await, 334);
    assert_eq!(c.code(&STANDARD.encode("mailer")).await, 334);
    assert_eq!(c.code(&STANDARD.encode("wrong")).await, 535);
    assert_eq!(c.code("AUTH CRAM-MD5").await, 504);

    // PLAIN without an initial response: empty challenge, then the response.
    assert_eq!(c.code("AUTH PLAIN").await, 334);
    assert_eq!(c.code(&STANDARD.encode("\0mailer\0s3cret")).await, 235);
    assert_eq!(c.code("AUTH PLAIN x").await, 503, "already authenticated");
    assert_eq!(c.code("MAIL FROM:<a@b.c>").await, 250);
    assert_eq!(c.code("RCPT TO:<d@e.f>").await, 250);
    assert_eq!(c.code("DATA").await, 354);
    c.send_raw("Subject: hi\r\n\r\nbody\r\n.\r\n").await;
    assert!(c.reply().await[0].starts_with("250"));
    assert_eq!(smtp.wait_for(1, Duration::from_secs(5)).await[0].auth_user.as_deref(), Some("mailer"));

    let mut c = Client::connect(&smtp).await;
    assert_eq!(c.code("EHLO client.example").await, 250);
    assert_eq!(c.code(&format!("AUTH LOGIN {}", STANDARD.encode("mailer"))).await, 334);
    assert_eq!(c.code(&STANDARD.encode("s3cret")).await, 235);
}

#[tokio::test]
async fn fail_next_answers_451() {
    let smtp = FakeSmtp::start().await;
    smtp.fail_next(2);
    let mut c = Client::connect(&smtp).await;
    assert_eq!(c.code("EHLO client.example").await, 250);
    let (code, lines) = c.cmd("MAIL FROM:<a@b.c>").await;
    assert_eq!(code, 451);
    assert_eq!(lines[0], "451 4.3.0 try again later");
    assert_eq!(c.code("MAIL FROM:<a@b.c>").await, 451);
    assert_eq!(c.code("MAIL FROM:<a@b.c>").await, 250);
    assert_eq!(c.code("RCPT TO:<d@e.f>").await, 250);
    assert_eq!(c.code("DATA").await, 354);
    c.send_raw("Subject: third time\r\n\r\nok\r\n.\r\n").await;
    assert!(c.reply().await[0].starts_with("250"));
    assert_eq!(smtp.messages()[0].subject.as_deref(), Some("third time"));
}

#[tokio::test]
async fn wait_for_returns_what_arrived_at_timeout_and_drop_stops_the_server() {
    let smtp = FakeSmtp::start().await;
    let started = std::time::Instant::now();
    assert!(smtp.wait_for(1, Duration::from_millis(100)).await.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(100));

    let mut open = Client::connect(&smtp).await;
    let (host, port) = (smtp.host(), smtp.port());
    drop(smtp);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(TcpStream::connect((host.as_str(), port)).await.is_err(), "listener closed");
    // The open session was ended too.
    open.send_raw("NOOP\r\n").await;
    let mut line = String::new();
    let n = tokio::time::timeout(Duration::from_secs(5), open.conn.read_line(&mut line)).await.unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "{line:?}");
}
