//! Outgoing onboarding mail (invites, confirmations, admin notices) over SMTP (`integrations.smtp`).

use async_trait::async_trait;
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("{0:?} is not a usable e-mail address: {1}")]
    Address(String, #[source] lettre::address::AddressError),
    #[error("the e-mail could not be built: {0}")]
    Build(#[source] lettre::error::Error),
    #[error("the SMTP server refused or could not be reached ({0}); check integrations.smtp")]
    Smtp(#[source] lettre::transport::smtp::Error),
}

/// Something that delivers a plain-text e-mail.
#[async_trait]
pub trait Mailer: Send + Sync + std::fmt::Debug {
    async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), MailError>;
}

/// How to reach the SMTP server.
#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub from: String,
    /// STARTTLS upgrade (587) when true; implicit TLS (465) when false, unless `plaintext`.
    pub starttls: bool,
    /// No TLS at all: only for a relay on localhost or a trusted network.
    pub plaintext: bool,
}

pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer").field("from", &self.from.to_string()).finish_non_exhaustive()
    }
}

impl SmtpMailer {
    pub fn new(s: &SmtpSettings) -> Result<Self, MailError> {
        let from: Mailbox = s.from.parse().map_err(|e| MailError::Address(s.from.clone(), e))?;
        let builder = if s.plaintext {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
        } else if s.starttls {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host).map_err(MailError::Smtp)?
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host).map_err(MailError::Smtp)?
        };
        let mut builder = builder.port(s.port).timeout(Some(std::time::Duration::from_secs(20)));
        if let (Some(user), Some(pass)) = (&s.username, &s.password) {
            builder = builder.credentials(Credentials::new(user.clone(), pass.expose_secret().to_owned()));
        }
        Ok(Self { transport: builder.build(), from })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), MailError> {
        let to: Mailbox = to.parse().map_err(|e| MailError::Address(to.to_owned(), e))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_owned())
            .map_err(MailError::Build)?;
        self.transport.send(message).await.map_err(MailError::Smtp)?;
        Ok(())
    }
}
