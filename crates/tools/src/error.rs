//! Errors of tool calls. Every `Display` is a short sentence written for the model *and* the
//! person: what went wrong and what to do about it. Causes stay attached as `source()`.

use std::time::Duration;

/// A failed tool call.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("unknown tool {0:?}")]
    UnknownTool(String),

    /// The model's arguments do not match the tool's schema; nothing was sent.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),

    /// The skill's company credential or the Google OAuth client is not configured.
    #[error("{0}")]
    NotConfigured(String),

    /// The calling user has no Google account connected.
    #[error("Google is not connected for this user: connect Google from the dashboard first")]
    NotConnected,

    /// The Google grant was revoked or expired (`invalid_grant`); the credential is marked.
    #[error("{0}")]
    NeedsReconnect(String),

    /// The user's grant lacks scopes this tool needs.
    #[error(
        "the connected Google account has not granted {missing}: reconnect Google from the dashboard and allow access"
    )]
    MissingScopes { missing: String },

    /// The API answered with an error; `message` says what to do.
    #[error("{service}: {message}")]
    Api { service: &'static str, status: u16, message: String },

    /// Still rate limited after waiting as long as allowed.
    #[error("{service} is rate limiting requests; try again in {} s", retry_after.as_secs().max(1))]
    RateLimited { service: &'static str, retry_after: Duration },

    /// The request did not reach the API or the answer did not arrive.
    #[error("{service} could not be reached: {source}")]
    Transport {
        service: &'static str,
        #[source]
        source: reqwest::Error,
    },

    /// The API answered with something we cannot read.
    #[error("{service} sent an unexpected response: {detail}")]
    UnexpectedResponse { service: &'static str, detail: String },

    /// The credential store behind [`crate::GoogleCredentials`] failed.
    #[error("the stored Google credential could not be used: {0}")]
    Credentials(#[source] crate::credentials::CredentialError),
}

impl ToolError {
    /// True when the failure was decided before any request left the process, so a write
    /// certainly did not happen.
    pub fn nothing_sent(&self) -> bool {
        matches!(
            self,
            Self::UnknownTool(_)
                | Self::InvalidArguments(_)
                | Self::NotConfigured(_)
                | Self::NotConnected
                | Self::MissingScopes { .. }
        )
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArguments(msg.into())
    }

    pub(crate) fn unexpected(service: &'static str, detail: impl Into<String>) -> Self {
        Self::UnexpectedResponse { service, detail: detail.into() }
    }
}
