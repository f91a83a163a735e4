//! Storage side of onboarding: invites (single-use, expiring, bound to an e-mail and a reserved
//! agent id; only the token's SHA-256 is stored) and OAuth `state`s (single-use, expiring, bound
//! to an invite or to a reconnecting user; the PKCE verifier is sealed).
//!
//! Every "use" is one conditional UPDATE, so two concurrent callbacks with the same invite or the
//! same `state` cannot both succeed.

use crate::Result;
use async_trait::async_trait;
use crewgate_core::{AgentId, Millis, TokenHash, UserId};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// How an invite came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InviteOrigin {
    /// The admin (dashboard, CLI, or the orchestrator after the admin approved).
    Admin,
    /// A person asked on the `/join` page.
    SelfService,
}

impl InviteOrigin {
    pub const fn as_str(self) -> &'static str {
        match self {
            InviteOrigin::Admin => "admin",
            InviteOrigin::SelfService => "self_service",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(InviteOrigin::Admin),
            "self_service" => Some(InviteOrigin::SelfService),
            _ => None,
        }
    }
}

/// An invite as stored (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invite {
    pub id: String,
    /// Lower-cased.
    pub email: String,
    pub name: Option<String>,
    /// Reserved for the worker this invite creates; unique among all invites ever made.
    pub agent_id: AgentId,
    pub origin: InviteOrigin,
    pub created_by: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    /// Set once, by [`OnboardingStore::use_invite`].
    pub used_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
    /// The user created from it.
    pub user_id: Option<UserId>,
    /// How many times the link was (re)sent.
    pub sent_count: i64,
}

impl Invite {
    /// `pending`, `used`, `revoked` or `expired`.
    pub fn status(&self, now: Millis) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.used_at.is_some() {
            "used"
        } else if self.expires_at <= now {
            "expired"
        } else {
            "pending"
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewInvite {
    pub token_hash: TokenHash,
    pub email: String,
    pub name: Option<String>,
    pub agent_id: AgentId,
    pub origin: InviteOrigin,
    pub created_by: String,
    pub expires_at: Millis,
}

/// What an OAuth `state` was started for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthPurpose {
    /// Connecting Google while accepting an invite.
    Invite { invite_id: String },
    /// A member re-running consent after their grant was revoked.
    Reconnect { user_id: UserId },
}

#[derive(Debug, Clone)]
pub struct NewOAuthState {
    /// SHA-256 of the `state` value sent to Google.
    pub state_hash: TokenHash,
    pub purpose: OAuthPurpose,
    /// The PKCE verifier (sealed at rest).
    pub verifier: SecretString,
    pub expires_at: Millis,
}

/// A consumed `state`: what it was for and the verifier for the code exchange.
#[derive(Debug)]
pub struct OAuthState {
    pub purpose: OAuthPurpose,
    pub verifier: SecretString,
}

#[async_trait]
pub trait OnboardingStore: Send + Sync {
    /// Fails with [`crate::StoreError::Conflict`] when `agent_id` is already reserved by any
    /// invite (used, revoked or expired ones included) — the caller picks the next suffix.
    async fn create_invite(&self, invite: NewInvite) -> Result<Invite>;
    async fn get_invite(&self, id: &str) -> Result<Option<Invite>>;
    /// The invite with this token hash, whatever its state (the portal explains why a dead one
    /// cannot be used).
    async fn find_invite_by_token(&self, hash: &TokenHash) -> Result<Option<Invite>>;
    /// Newest first.
    async fn list_invites(&self) -> Result<Vec<Invite>>;
    /// True when some invite reserved this agent id.
    async fn invite_reserves_agent(&self, agent_id: &AgentId) -> Result<bool>;
    /// Revokes a pending (unused, unrevoked) invite; false when there was none.
    async fn revoke_invite(&self, id: &str, now: Millis) -> Result<bool>;
    /// Replaces the token of an unused, unrevoked invite (resend: the old link stops working; an
    /// expired one is revived), sets its new expiry and counts the send; `None` otherwise.
    async fn reissue_invite(
        &self,
        id: &str,
        token_hash: TokenHash,
        expires_at: Millis,
        now: Millis,
    ) -> Result<Option<Invite>>;
    /// Marks a pending, unexpired invite used, exactly once; false for everyone else.
    async fn use_invite(&self, id: &str, now: Millis) -> Result<bool>;
    /// Puts a used invite back to pending (onboarding failed after [`Self::use_invite`]).
    async fn release_invite(&self, id: &str) -> Result<()>;
    /// Records the user an accepted invite created.
    async fn set_invite_user(&self, id: &str, user: &UserId) -> Result<()>;

    async fn create_oauth_state(&self, state: NewOAuthState) -> Result<()>;
    /// Consumes a live `state` exactly once; `None` when unknown, used or expired.
    async fn take_oauth_state(&self, hash: &TokenHash, now: Millis) -> Result<Option<OAuthState>>;
}
