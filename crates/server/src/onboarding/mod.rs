//! Onboarding: invites, Google sign-in with PKCE, and the creation of a person's worker agent.
//!
//! Invariants:
//! - an invite is single-use and expiring, bound to one e-mail and one reserved agent id; only its
//!   token's SHA-256 is stored, and resending replaces the token (the old link dies);
//! - an OAuth `state` is single-use, expiring, bound to one invite (or one reconnecting user) and
//!   carries the PKCE verifier, sealed at rest; the browser never sees the verifier;
//! - nothing is created unless Google says the consenting account *is* the invited address,
//!   verified, and (when `onboarding.allowedDomains` is set) in an allowed Workspace domain;
//! - a failure after the invite was used puts it back, so the person can try again.

pub mod google;
pub mod mail;
pub mod pages;
pub mod tools;

use crate::error::ApiError;
use crate::ops::{self, Actor};
use crewgate_core::{
    AgentId, AgentKind, IssuedToken, Millis, Role, TokenHash, TokenKind, UserId, UserStatus,
    agent_id_from_email, now_millis, token::random_hex,
};
use crewgate_runtime::tools::external::{StoredGoogleToken, connect_google};
use crewgate_store::onboarding::{Invite, InviteOrigin, NewInvite, NewOAuthState, OAuthPurpose};
use crewgate_store::{NewAgent, NewUser, Store, StoreError};
use google::{GoogleIdentity, GoogleOAuth, OAuthError, pkce_challenge};
use mail::Mailer;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// How long a `state` (one trip to Google's consent screen) stays usable.
pub const STATE_TTL: Duration = Duration::from_secs(15 * 60);
/// Path of the OAuth redirect URI under `gateway.publicUrl`.
pub const CALLBACK_PATH: &str = "/oauth/google/callback";
const ORCHESTRATOR: &str = "orchestrator";
/// The orchestrator session that collects onboarding notices for the admin.
const NOTICE_SESSION_KEY: &str = "onboarding-notices";
const MAX_ID_ATTEMPTS: u32 = 1000;

/// Onboarding settings (from `gateway.publicUrl`, `onboarding.*`, `skills.installed.gog`,
/// `integrations.google` and `integrations.smtp`).
#[derive(Debug, Clone)]
pub struct OnboardingSettings {
    /// Base URL people reach the gateway at, without a trailing slash.
    pub public_url: String,
    /// `None`: Google sign-in is not configured (no `gog` client id/secret).
    pub google: Option<GoogleOAuth>,
    /// Lower-case domains; empty: any domain may be invited (self-service then stays off).
    pub allowed_domains: Vec<String>,
    pub self_service: bool,
    pub invite_ttl: Duration,
    pub require_admin_approval: bool,
    /// Onboarding notices are also e-mailed here (when a mailer is configured).
    pub admin_email: Option<String>,
    /// Skills a new worker may use (its `skills` setting).
    pub worker_skills: Vec<String>,
}

impl Default for OnboardingSettings {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:18789".into(),
            google: None,
            allowed_domains: Vec::new(),
            self_service: false,
            invite_ttl: Duration::from_secs(168 * 3600),
            require_admin_approval: false,
            admin_email: None,
            worker_skills: Vec::new(),
        }
    }
}

/// Why onboarding refused; each message tells the person what to do next.
#[derive(Debug, thiserror::Error)]
pub enum OnboardingError {
    #[error("{0:?} is not an e-mail address")]
    BadEmail(String),
    #[error(
        "{email} is not in an allowed domain ({allowed}); use your company account, or ask the admin to add the domain to onboarding.allowedDomains"
    )]
    DomainNotAllowed { email: String, allowed: String },
    #[error(
        "{0} already has an agent; sign in to the dashboard with your token, or ask the admin to rotate it"
    )]
    AlreadyOnboarded(String),
    #[error("there is already a pending invite for {0}; resend or revoke it")]
    PendingInvite(String),
    #[error("this invite link is not valid; ask the admin for a new one")]
    InviteUnknown,
    #[error("this invite has expired; ask the admin to resend it")]
    InviteExpired,
    #[error("this invite was already used; sign in to the dashboard with the token you were given")]
    InviteUsed,
    #[error("this invite was revoked; ask the admin for a new one")]
    InviteRevoked,
    #[error(
        "Google sign-in is not configured on this gateway; the admin must set skills.installed.gog clientId and clientSecret"
    )]
    GoogleNotConfigured,
    #[error("this sign-in link has expired or was already used; open your invite link again")]
    StateUnknown,
    #[error(
        "you declined to connect your Google account, so nothing was set up; open your invite link again to retry"
    )]
    ConsentDenied,
    #[error("Google returned an error ({0}); open your invite link again to retry")]
    GoogleError(String),
    #[error("Google refused the sign-in ({0}); open your invite link again to retry")]
    Exchange(#[source] OAuthError),
    #[error(
        "you signed in to Google as {got}, but the invite is for {expected}; sign in with the invited account"
    )]
    WrongAccount { expected: String, got: String },
    #[error("Google has not verified the address {0}; verify it with Google first")]
    EmailNotVerified(String),
    #[error(
        "{email} is not an account of an allowed company domain ({allowed}); sign in with your company account"
    )]
    ForeignDomain { email: String, allowed: String },
    #[error("self-service sign-up is off on this gateway; ask the admin for an invite")]
    SelfServiceOff,
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<StoreError> for OnboardingError {
    fn from(e: StoreError) -> Self {
        OnboardingError::Api(e.into())
    }
}

impl OnboardingError {
    /// The HTTP status of the page or API answer.
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode as S;
        match self {
            OnboardingError::BadEmail(_) | OnboardingError::DomainNotAllowed { .. } => S::BAD_REQUEST,
            OnboardingError::AlreadyOnboarded(_) | OnboardingError::PendingInvite(_) => S::CONFLICT,
            OnboardingError::InviteUnknown => S::NOT_FOUND,
            OnboardingError::InviteExpired | OnboardingError::InviteUsed | OnboardingError::InviteRevoked => {
                S::GONE
            }
            OnboardingError::GoogleNotConfigured => S::SERVICE_UNAVAILABLE,
            OnboardingError::SelfServiceOff => S::FORBIDDEN,
            OnboardingError::Api(_) => S::INTERNAL_SERVER_ERROR,
            _ => S::BAD_REQUEST,
        }
    }
}

impl From<OnboardingError> for ApiError {
    fn from(e: OnboardingError) -> Self {
        match e {
            OnboardingError::Api(a) => a,
            e @ (OnboardingError::AlreadyOnboarded(_) | OnboardingError::PendingInvite(_)) => {
                ApiError::Conflict(e.to_string())
            }
            e @ (OnboardingError::InviteUnknown
            | OnboardingError::InviteExpired
            | OnboardingError::InviteUsed
            | OnboardingError::InviteRevoked) => ApiError::Conflict(e.to_string()),
            other => ApiError::BadRequest(other.to_string()),
        }
    }
}

/// A freshly made (or re-sent) invite: the link carries the token, shown once.
#[derive(Debug)]
pub struct IssuedInvite {
    pub invite: Invite,
    pub link: SecretString,
    /// `Some(Ok)` when e-mailed, `Some(Err(why))` when sending failed, `None` without a mailer.
    pub emailed: Option<Result<(), String>>,
}

/// What the "ready" page shows once.
#[derive(Debug)]
pub struct Onboarded {
    pub email: String,
    pub agent_id: AgentId,
    pub token: IssuedToken,
    pub dashboard_url: String,
}

/// The outcome of a successful callback.
#[derive(Debug)]
pub enum Completed {
    Onboarded(Onboarded),
    Reconnected { email: String },
}

/// A person's request on `/join`.
#[derive(Debug)]
pub enum JoinOutcome {
    /// The invite link (also e-mailed when a mailer is configured).
    Invited(Box<IssuedInvite>),
    /// The admin was asked first (`onboarding.requireAdminApproval`).
    AwaitingAdmin,
}

/// The onboarding service; shared by the portal routes, the admin API and the orchestrator tools.
#[derive(Debug, Clone)]
pub struct Onboarding {
    settings: OnboardingSettings,
    http: reqwest::Client,
    mailer: Option<Arc<dyn Mailer>>,
}

impl Default for Onboarding {
    fn default() -> Self {
        Self::new(OnboardingSettings::default(), None)
    }
}

fn lower(email: &str) -> String {
    email.trim().to_lowercase()
}

fn domain_of(email: &str) -> &str {
    email.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
}

impl Onboarding {
    pub fn new(settings: OnboardingSettings, mailer: Option<Arc<dyn Mailer>>) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "default HTTP client for Google sign-in");
                reqwest::Client::new()
            });
        Self { settings, http, mailer }
    }

    pub fn settings(&self) -> &OnboardingSettings {
        &self.settings
    }

    pub fn mailer(&self) -> Option<&Arc<dyn Mailer>> {
        self.mailer.as_ref()
    }

    pub fn redirect_uri(&self) -> String {
        format!("{}{CALLBACK_PATH}", self.settings.public_url)
    }

    fn invite_link(&self, token: &IssuedToken) -> SecretString {
        SecretString::from(format!("{}/invite/{}", self.settings.public_url, token.secret.expose_secret()))
    }

    fn check_domain(&self, email: &str) -> Result<(), OnboardingError> {
        let allowed = &self.settings.allowed_domains;
        if allowed.is_empty() || allowed.iter().any(|d| d == domain_of(email)) {
            Ok(())
        } else {
            Err(OnboardingError::DomainNotAllowed { email: email.to_owned(), allowed: allowed.join(", ") })
        }
    }

    /// A new invite for `email`, with an agent id reserved for its worker, e-mailed when a mailer
    /// is configured.
    pub async fn create_invite(
        &self,
        store: &dyn Store,
        actor: &Actor,
        email: &str,
        name: Option<&str>,
        origin: InviteOrigin,
    ) -> Result<IssuedInvite, OnboardingError> {
        let email = lower(email);
        if !ops::valid_email(&email) {
            return Err(OnboardingError::BadEmail(email));
        }
        self.check_domain(&email)?;
        if let Some(user) = store.find_user_by_email(&email).await?
            && store.worker_of_user(&user.id).await?.is_some()
        {
            return Err(OnboardingError::AlreadyOnboarded(email));
        }
        if pending_invite_for(store, &email).await?.is_some() {
            return Err(OnboardingError::PendingInvite(email));
        }
        let now = now_millis();
        let base = agent_id_from_email(&email).map_err(|e| OnboardingError::BadEmail(e.to_string()))?;
        let token = IssuedToken::generate(TokenKind::Invite);
        let expires_at = now + millis(self.settings.invite_ttl);
        let mut attempt = 1;
        let invite = loop {
            let id = if attempt == 1 { base.clone() } else { base.with_suffix(attempt) };
            attempt += 1;
            if attempt > MAX_ID_ATTEMPTS {
                return Err(ApiError::Conflict(format!("no free agent id near {base}")).into());
            }
            if store.agent_id_taken(&id).await? {
                continue;
            }
            let new = NewInvite {
                token_hash: token.hash.clone(),
                email: email.clone(),
                name: name.map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned),
                agent_id: id,
                origin,
                created_by: actor.describe(),
                expires_at,
            };
            match store.create_invite(new).await {
                Ok(invite) => break invite,
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        ops::audit(
            store,
            actor,
            "invite.create",
            None,
            Some(&invite.agent_id),
            serde_json::json!({"invite_id": invite.id, "email": invite.email, "origin": invite.origin}),
        )
        .await?;
        let link = self.invite_link(&token);
        let emailed = self.send_invite_mail(&invite, &link).await;
        Ok(IssuedInvite { invite, link, emailed })
    }

    /// A fresh link for a pending invite (the old link stops working), e-mailed again.
    pub async fn resend_invite(
        &self,
        store: &dyn Store,
        actor: &Actor,
        id: &str,
    ) -> Result<IssuedInvite, OnboardingError> {
        let token = IssuedToken::generate(TokenKind::Invite);
        let now = now_millis();
        let invite = store
            .reissue_invite(id, token.hash.clone(), now + millis(self.settings.invite_ttl), now)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("pending invite {id}")))?;
        ops::audit(
            store,
            actor,
            "invite.resend",
            None,
            Some(&invite.agent_id),
            serde_json::json!({"invite_id": invite.id}),
        )
        .await?;
        let link = self.invite_link(&token);
        let emailed = self.send_invite_mail(&invite, &link).await;
        Ok(IssuedInvite { invite, link, emailed })
    }

    pub async fn revoke_invite(
        &self,
        store: &dyn Store,
        actor: &Actor,
        id: &str,
    ) -> Result<(), OnboardingError> {
        if !store.revoke_invite(id, now_millis()).await? {
            return Err(ApiError::not_found(format!("pending invite {id}")).into());
        }
        ops::audit(store, actor, "invite.revoke", None, None, serde_json::json!({"invite_id": id})).await?;
        Ok(())
    }

    async fn send_invite_mail(&self, invite: &Invite, link: &SecretString) -> Option<Result<(), String>> {
        let mailer = self.mailer.as_ref()?;
        let days = self.settings.invite_ttl.as_secs() / 86_400;
        let body = format!(
            "Hello{},\n\nyou are invited to your own AI assistant at your company's crewgate.\n\n\
             Open this link to connect your Google account (Gmail, Calendar, Drive, Docs, Sheets, \
             Contacts) and get your dashboard:\n\n{}\n\nThe link works once and expires in {days} day(s). \
             Your assistant only reads on its own; every e-mail, event or edit it proposes waits for \
             your approval.\n",
            invite.name.as_deref().map(|n| format!(" {n}")).unwrap_or_default(),
            link.expose_secret()
        );
        let sent = mailer.send(&invite.email, "Your crewgate assistant is ready to connect", &body).await;
        Some(sent.map_err(|e| {
            tracing::warn!(invite = %invite.id, error = %e, "the invite e-mail could not be sent");
            e.to_string()
        }))
    }

    /// The pending invite behind a presented invite token, or why it cannot be used.
    pub async fn pending_invite(&self, store: &dyn Store, token: &str) -> Result<Invite, OnboardingError> {
        if !token.starts_with(TokenKind::Invite.prefix()) {
            return Err(OnboardingError::InviteUnknown);
        }
        let invite =
            store.find_invite_by_token(&TokenHash::of(token)).await?.ok_or(OnboardingError::InviteUnknown)?;
        match invite.status(now_millis()) {
            "pending" => Ok(invite),
            "used" => Err(OnboardingError::InviteUsed),
            "revoked" => Err(OnboardingError::InviteRevoked),
            _ => Err(OnboardingError::InviteExpired),
        }
    }

    /// Starts Google consent for an invite: a single-use `state` with a fresh PKCE verifier.
    /// Returns the URL to send the browser to.
    pub async fn start_invite_sign_in(
        &self,
        store: &dyn Store,
        token: &str,
    ) -> Result<String, OnboardingError> {
        let invite = self.pending_invite(store, token).await?;
        self.start(store, OAuthPurpose::Invite { invite_id: invite.id.clone() }, &invite.email).await
    }

    /// Starts Google consent again for a member whose connection needs renewing.
    pub async fn start_reconnect(
        &self,
        store: &dyn Store,
        user: &UserId,
        email: &str,
    ) -> Result<String, OnboardingError> {
        self.start(store, OAuthPurpose::Reconnect { user_id: user.clone() }, email).await
    }

    async fn start(
        &self,
        store: &dyn Store,
        purpose: OAuthPurpose,
        email: &str,
    ) -> Result<String, OnboardingError> {
        let google = self.settings.google.as_ref().ok_or(OnboardingError::GoogleNotConfigured)?;
        let state = random_hex(32);
        let verifier = random_hex(48);
        let challenge = pkce_challenge(&verifier);
        store
            .create_oauth_state(NewOAuthState {
                state_hash: TokenHash::of(&state),
                purpose,
                verifier: SecretString::from(verifier),
                expires_at: now_millis() + millis(STATE_TTL),
            })
            .await?;
        let hd = match self.settings.allowed_domains.as_slice() {
            [one] => Some(one.as_str()),
            _ => None,
        };
        Ok(google.authorize_url(&self.redirect_uri(), &state, &challenge, email, hd))
    }

    /// Handles Google's redirect back: every check, then the worker, user and token.
    pub async fn callback(
        &self,
        store: &dyn Store,
        code: Option<&str>,
        state: Option<&str>,
        error: Option<&str>,
    ) -> Result<Completed, OnboardingError> {
        let google = self.settings.google.as_ref().ok_or(OnboardingError::GoogleNotConfigured)?;
        // The state is consumed first, whatever else happens: it never works twice.
        let taken = match state {
            Some(s) if !s.is_empty() => store.take_oauth_state(&TokenHash::of(s), now_millis()).await?,
            _ => None,
        };
        let Some(taken) = taken else { return Err(OnboardingError::StateUnknown) };
        match error {
            Some("access_denied") => return Err(OnboardingError::ConsentDenied),
            Some(other) => return Err(OnboardingError::GoogleError(other.chars().take(80).collect())),
            None => {}
        }
        let code = code.filter(|c| !c.is_empty()).ok_or(OnboardingError::GoogleError("no code".into()))?;
        let tokens = google
            .exchange_code(&self.http, code, &taken.verifier, &self.redirect_uri())
            .await
            .map_err(OnboardingError::Exchange)?;
        let identity =
            google.userinfo(&self.http, &tokens.access_token).await.map_err(OnboardingError::Exchange)?;
        let stored = StoredGoogleToken {
            access_token: Some(tokens.access_token.clone()),
            expires_at: tokens.expires_in.map(|s| now_millis() + (s as Millis) * 1000),
            refresh_token: tokens.refresh_token.clone(),
            scopes: Some(tokens.scopes.clone()),
            email: Some(lower(&identity.email)),
        };
        match taken.purpose {
            OAuthPurpose::Invite { invite_id } => {
                let invite = store.get_invite(&invite_id).await?.ok_or(OnboardingError::InviteUnknown)?;
                self.verify_identity(&invite.email, &identity)?;
                if !store.use_invite(&invite.id, now_millis()).await? {
                    return Err(match invite.status(now_millis()) {
                        "revoked" => OnboardingError::InviteRevoked,
                        "expired" => OnboardingError::InviteExpired,
                        _ => OnboardingError::InviteUsed,
                    });
                }
                match self.create_worker(store, &invite, &identity, &stored).await {
                    Ok(done) => Ok(Completed::Onboarded(done)),
                    Err(e) => {
                        if let Err(release) = store.release_invite(&invite.id).await {
                            tracing::error!(error = %release, "could not put a failed invite back");
                        }
                        Err(e)
                    }
                }
            }
            OAuthPurpose::Reconnect { user_id } => {
                let user = store
                    .get_user(&user_id)
                    .await?
                    .ok_or_else(|| ApiError::not_found(format!("user {user_id}")))?;
                self.verify_identity(&user.email, &identity)?;
                connect_google(store, &user.id, &stored).await?;
                ops::audit(
                    store,
                    &Actor::System,
                    "google.reconnect",
                    Some(&user.id),
                    None,
                    serde_json::json!({"email": user.email}),
                )
                .await?;
                Ok(Completed::Reconnected { email: user.email })
            }
        }
    }

    fn verify_identity(&self, expected: &str, id: &GoogleIdentity) -> Result<(), OnboardingError> {
        let got = lower(&id.email);
        if got != lower(expected) {
            return Err(OnboardingError::WrongAccount { expected: lower(expected), got });
        }
        if !id.email_verified {
            return Err(OnboardingError::EmailNotVerified(got));
        }
        let allowed = &self.settings.allowed_domains;
        if !allowed.is_empty() {
            let hd = id.hd.as_deref().map(str::to_lowercase);
            if !hd.is_some_and(|hd| allowed.contains(&hd)) {
                return Err(OnboardingError::ForeignDomain { email: got, allowed: allowed.join(", ") });
            }
        }
        Ok(())
    }

    async fn create_worker(
        &self,
        store: &dyn Store,
        invite: &Invite,
        identity: &GoogleIdentity,
        google: &StoredGoogleToken,
    ) -> Result<Onboarded, OnboardingError> {
        let actor = Actor::System;
        let name = invite.name.clone().or_else(|| identity.name.clone());
        let user = match store.find_user_by_email(&invite.email).await? {
            Some(u) if store.worker_of_user(&u.id).await?.is_some() => {
                return Err(OnboardingError::AlreadyOnboarded(invite.email.clone()));
            }
            Some(u) => {
                if u.status != UserStatus::Active {
                    store.set_user_status(&u.id, UserStatus::Active).await?;
                }
                u
            }
            None => {
                let u = store
                    .create_user(NewUser {
                        email: invite.email.clone(),
                        name: name.clone(),
                        role: Role::Member,
                        status: UserStatus::Active,
                    })
                    .await?;
                ops::audit(
                    store,
                    &actor,
                    "user.create",
                    Some(&u.id),
                    None,
                    serde_json::json!({"email": u.email}),
                )
                .await?;
                u
            }
        };
        let mut settings = serde_json::json!({
            "identity": { "name": name.clone().map(|n| format!("{n}'s assistant")).unwrap_or_else(|| "Assistant".into()) },
            "subagents": { "allowAgents": [ORCHESTRATOR] },
        });
        if let Some(skills) = tools::worker_skills(store, &self.settings.worker_skills).await {
            settings["skills"] = serde_json::json!(skills);
        }
        // The reserved id is ours; should someone have taken it by hand since, take the next one.
        let mut attempt = 1;
        let agent = loop {
            let id =
                if attempt == 1 { invite.agent_id.clone() } else { invite.agent_id.with_suffix(attempt) };
            attempt += 1;
            if attempt > MAX_ID_ATTEMPTS {
                return Err(ApiError::Conflict(format!("no free agent id near {}", invite.agent_id)).into());
            }
            if attempt > 2 && store.invite_reserves_agent(&id).await? {
                continue;
            }
            let new = NewAgent {
                id,
                kind: AgentKind::Worker,
                owner: Some(user.id.clone()),
                name: name.clone().unwrap_or_else(|| invite.email.clone()),
                settings: settings.clone(),
            };
            match store.create_agent(new).await {
                Ok(a) => break a,
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        ops::audit(
            store,
            &actor,
            "agent.create",
            Some(&user.id),
            Some(&agent.id),
            serde_json::json!({"kind": agent.kind, "invite_id": invite.id}),
        )
        .await?;
        connect_google(store, &user.id, google).await?;
        let (token, _) = ops::issue_token(
            store,
            &actor,
            ops::IssueToken {
                kind: TokenKind::User,
                agent_id: Some(agent.id.to_string()),
                label: Some("dashboard (onboarding)".into()),
            },
        )
        .await?;
        store.set_invite_user(&invite.id, &user.id).await?;
        ops::audit(
            store,
            &actor,
            "invite.accept",
            Some(&user.id),
            Some(&agent.id),
            serde_json::json!({"invite_id": invite.id, "email": invite.email, "google_sub": identity.sub}),
        )
        .await?;
        let dashboard_url = format!("{}/", self.settings.public_url);
        self.notify_admin(
            store,
            &format!(
                "✅ {} connected Google and now has the worker agent `{}` (invite {}, {}).",
                invite.email,
                agent.id,
                invite.id,
                invite.origin.as_str().replace('_', "-")
            ),
        )
        .await;
        if invite.origin == InviteOrigin::Admin
            && let Some(mailer) = &self.mailer
        {
            let body = format!(
                "Hello,\n\nyour assistant `{}` is set up and connected to your Google account. \
                 Open the dashboard at {dashboard_url} and sign in with the token shown to you once \
                 on the set-up page.\n",
                agent.id
            );
            if let Err(e) = mailer.send(&invite.email, "Your crewgate assistant is ready", &body).await {
                tracing::warn!(error = %e, "the onboarding confirmation e-mail could not be sent");
            }
        }
        Ok(Onboarded { email: invite.email.clone(), agent_id: agent.id, token, dashboard_url })
    }

    /// A person's request on `/join`.
    pub async fn join(&self, store: &dyn Store, email: &str) -> Result<JoinOutcome, OnboardingError> {
        if !self.self_service_open() {
            return Err(OnboardingError::SelfServiceOff);
        }
        let email = lower(email);
        if !ops::valid_email(&email) {
            return Err(OnboardingError::BadEmail(email));
        }
        self.check_domain(&email)?;
        if self.settings.require_admin_approval {
            self.notify_admin(
                store,
                &format!(
                    "📨 {email} asked for an agent on the join page. To invite them, tell me \"onboard {email}\" \
                     (or create the invite on the dashboard's Invites page)."
                ),
            )
            .await;
            ops::audit(
                store,
                &Actor::System,
                "join.request",
                None,
                None,
                serde_json::json!({"email": email}),
            )
            .await?;
            return Ok(JoinOutcome::AwaitingAdmin);
        }
        // Asking again re-sends: a fresh link replaces the pending one.
        let issued = match pending_invite_for(store, &email).await? {
            Some(p) => self.resend_invite(store, &Actor::System, &p.id).await?,
            None => {
                self.create_invite(store, &Actor::System, &email, None, InviteOrigin::SelfService).await?
            }
        };
        self.notify_admin(
            store,
            &format!(
                "📨 {email} requested an agent on the join page; an invite for `{}` was issued.",
                issued.invite.agent_id
            ),
        )
        .await;
        Ok(JoinOutcome::Invited(Box::new(issued)))
    }

    /// Whether `/join` is open: self-service on, and either restricted to allowed domains or
    /// every request going to the admin first.
    pub fn self_service_open(&self) -> bool {
        let s = &self.settings;
        s.self_service && (!s.allowed_domains.is_empty() || s.require_admin_approval)
    }

    /// A notice in the orchestrator's "Onboarding" session (the admin reads it on the dashboard),
    /// and by e-mail to `onboarding.adminEmail` when set.
    pub async fn notify_admin(&self, store: &dyn Store, text: &str) {
        if let (Some(mailer), Some(to)) = (&self.mailer, &self.settings.admin_email)
            && let Err(e) = mailer.send(to, "crewgate onboarding", &format!("{text}\n")).await
        {
            tracing::warn!(error = %e, "the onboarding notice could not be e-mailed to the admin");
        }
        let Ok(orchestrator) = AgentId::parse(ORCHESTRATOR) else { return };
        let result = async {
            let session = store.session_for_key(&orchestrator, NOTICE_SESSION_KEY, "Onboarding").await?;
            store.append_message(&orchestrator, &session.id, "assistant", text).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not post an onboarding notice for the admin");
        }
    }
}

/// The pending invite of `email` (lower-cased), if any.
async fn pending_invite_for(store: &dyn Store, email: &str) -> Result<Option<Invite>, StoreError> {
    let now = now_millis();
    Ok(store.list_invites().await?.into_iter().find(|i| i.email == email && i.status(now) == "pending"))
}

fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX / 2)
}

/// An invite as the admin API lists it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InviteView {
    #[serde(flatten)]
    pub invite: Invite,
    pub status: &'static str,
}

impl InviteView {
    pub fn new(invite: Invite) -> Self {
        let status = invite.status(now_millis());
        Self { invite, status }
    }
}
