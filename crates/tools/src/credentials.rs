//! The calling user's Google credential, behind a trait so the gateway can keep it sealed in the
//! store. The tools only ever see one user's credential per call (it travels in the
//! [`crate::ToolContext`]), which is what keeps users' Google accounts apart.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use crewgate_core::Millis;
use secrecy::SecretString;

/// What the store holds for one connected Google account.
#[derive(Clone)]
pub struct GoogleToken {
    /// `None` when only a refresh token is known (the first call refreshes).
    pub access_token: Option<SecretString>,
    /// When the access token stops working; `None` = unknown (refresh on the first 401).
    pub expires_at: Option<Millis>,
    pub refresh_token: Option<SecretString>,
    /// Granted scopes (full URLs or the short form after `auth/`); `None` = unknown, not checked.
    pub scopes: Option<Vec<String>>,
    /// The account's address, used as `From` of outgoing mail when known.
    pub email: Option<String>,
}

impl fmt::Debug for GoogleToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleToken")
            .field("access_token", &self.access_token.as_ref().map(|_| "[redacted]"))
            .field("expires_at", &self.expires_at)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "[redacted]"))
            .field("scopes", &self.scopes)
            .field("email", &self.email)
            .finish()
    }
}

/// Failures of a credential store.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("no Google account is connected")]
    NotConnected,
    #[error("the Google connection needs to be renewed")]
    NeedsReconnect,
    #[error("credential store failed")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// One user's Google credential, as the tools need it.
#[async_trait]
pub trait GoogleCredentials: Send + Sync {
    /// The current token. `Err(NeedsReconnect)` once [`Self::mark_needs_reconnect`] was called.
    async fn load(&self) -> Result<GoogleToken, CredentialError>;
    /// Persists a refreshed access token (Google does not rotate the refresh token).
    async fn store_access_token(
        &self,
        access_token: &SecretString,
        expires_at: Millis,
    ) -> Result<(), CredentialError>;
    /// Records that the grant is dead (`invalid_grant`), so the dashboard can show "reconnect".
    async fn mark_needs_reconnect(&self, reason: &str) -> Result<(), CredentialError>;
}

/// An in-memory credential, for tests and single-process tools.
#[derive(Clone)]
pub struct InMemoryGoogleCredentials {
    inner: Arc<Mutex<MemState>>,
}

struct MemState {
    token: GoogleToken,
    needs_reconnect: Option<String>,
    stores: usize,
}

impl fmt::Debug for InMemoryGoogleCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("InMemoryGoogleCredentials")
            .field("token", &s.token)
            .field("needs_reconnect", &s.needs_reconnect)
            .finish()
    }
}

impl InMemoryGoogleCredentials {
    pub fn new(token: GoogleToken) -> Self {
        Self { inner: Arc::new(Mutex::new(MemState { token, needs_reconnect: None, stores: 0 })) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The reason given to `mark_needs_reconnect`, if it was called.
    pub fn needs_reconnect(&self) -> Option<String> {
        self.lock().needs_reconnect.clone()
    }

    /// The token as currently stored.
    pub fn token(&self) -> GoogleToken {
        self.lock().token.clone()
    }

    /// How many times a refreshed access token was stored.
    pub fn refreshes_stored(&self) -> usize {
        self.lock().stores
    }

    /// Replaces the stored token (e.g. after a reconnect) and clears the reconnect mark.
    pub fn replace(&self, token: GoogleToken) {
        let mut s = self.lock();
        s.token = token;
        s.needs_reconnect = None;
    }
}

#[async_trait]
impl GoogleCredentials for InMemoryGoogleCredentials {
    async fn load(&self) -> Result<GoogleToken, CredentialError> {
        let s = self.lock();
        if s.needs_reconnect.is_some() {
            return Err(CredentialError::NeedsReconnect);
        }
        Ok(s.token.clone())
    }

    async fn store_access_token(
        &self,
        access_token: &SecretString,
        expires_at: Millis,
    ) -> Result<(), CredentialError> {
        let mut s = self.lock();
        s.token.access_token = Some(access_token.clone());
        s.token.expires_at = Some(expires_at);
        s.stores += 1;
        Ok(())
    }

    async fn mark_needs_reconnect(&self, reason: &str) -> Result<(), CredentialError> {
        self.lock().needs_reconnect = Some(reason.to_owned());
        Ok(())
    }
}
