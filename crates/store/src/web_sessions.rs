//! Browser sessions behind the dashboard cookie. A session is only as alive as the token it was
//! exchanged from: revoking or rotating that token ends every browser session made from it.

use crate::Result;
use async_trait::async_trait;
use crewgate_core::{Millis, TokenHash, TokenInfo};

/// A live browser session with the token it stands for.
#[derive(Debug, Clone)]
pub struct WebSession {
    pub token: TokenInfo,
    /// Must come back in `X-CSRF-Token` on state-changing requests.
    pub csrf: String,
    pub expires_at: Millis,
}

#[async_trait]
pub trait WebSessionStore: Send + Sync {
    async fn create_web_session(
        &self,
        hash: &TokenHash,
        token_id: &str,
        csrf: &str,
        expires_at: Millis,
    ) -> Result<()>;
    /// The session if it is live and its token is live too.
    async fn resolve_web_session(&self, hash: &TokenHash, now: Millis) -> Result<Option<WebSession>>;
    async fn revoke_web_session(&self, hash: &TokenHash, now: Millis) -> Result<bool>;
}
