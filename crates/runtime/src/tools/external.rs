//! crewgate-tools' native Google, Notion and Attio tools as runtime [`Tool`]s.
//!
//! [`register_external_tools`] adds the tools of the deployment's usable skills to a registry;
//! which of them an agent is offered is decided per turn ([`ToolRegistry::available_to`]): its
//! `skills` allowlist, and for Google the owner's own connection ([`GOOGLE_SECRET`]). A Google
//! call only ever carries the credential of the calling agent's owner, read from the store
//! through [`StoreGoogleCredentials`].

use super::{
    PriorExecution, Tool, ToolContext, ToolError, ToolManifest, ToolNeeds, ToolRegistry, WriteDescription,
};
use crate::tools::Effect;
use async_trait::async_trait;
use crewgate_core::{Millis, UserId};
use crewgate_store::{Store, StoreError};
use crewgate_tools::{
    Credential, CredentialError, GoogleCredentials, GoogleToken, Skill, ToolSpec, Toolbox, specs, summarize,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

pub use crewgate_tools::GoogleToken as StoredGoogleToken;

/// Name of the owner's sealed secret that holds their Google connection.
pub const GOOGLE_SECRET: &str = "google";

/// One crewgate-tools tool.
pub struct ExternalTool {
    spec: &'static ToolSpec,
    manifest: ToolManifest,
    toolbox: Toolbox,
}

impl std::fmt::Debug for ExternalTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalTool").field("name", &self.spec.name).finish_non_exhaustive()
    }
}

impl ExternalTool {
    pub fn new(spec: &'static ToolSpec, toolbox: Toolbox) -> Self {
        let manifest = ToolManifest {
            name: spec.name.to_owned(),
            description: spec.description.to_owned(),
            parameters: spec.parameters.clone(),
            effect: match spec.effect {
                crewgate_tools::Effect::Read => Effect::Read,
                crewgate_tools::Effect::Write => Effect::Write,
            },
        };
        Self { spec, manifest, toolbox }
    }

    fn context(&self, ctx: &ToolContext) -> crewgate_tools::ToolContext {
        let mut out = crewgate_tools::ToolContext::new();
        if self.spec.credential == Credential::GoogleUser
            && let Some(owner) = &ctx.agent.owner
        {
            out = out.with_google(Arc::new(StoreGoogleCredentials::new(ctx.store.clone(), owner.clone())));
        }
        if let Some(key) = &ctx.idempotency_key {
            out = out.with_idempotency_key(key.clone());
        }
        out
    }
}

/// Adds the tools of `skills` (the skills that are enabled and, for Notion and Attio, have
/// their company key in `toolbox`) to `registry`. Returns the names added.
pub fn register_external_tools(
    registry: &mut ToolRegistry,
    toolbox: &Toolbox,
    skills: &[Skill],
) -> Result<Vec<String>, ToolError> {
    let mut added = Vec::new();
    for spec in specs().iter().filter(|s| skills.contains(&s.skill)) {
        registry.register(Arc::new(ExternalTool::new(spec, toolbox.clone())))?;
        added.push(spec.name.to_owned());
    }
    Ok(added)
}

/// Every OAuth scope the Google tools need (full URLs), plus `openid email profile` for sign-in:
/// what onboarding asks Google for.
pub fn google_scopes() -> Vec<String> {
    let mut out = vec!["openid".to_owned(), "email".to_owned(), "profile".to_owned()];
    for spec in specs().iter().filter(|s| s.credential == Credential::GoogleUser) {
        for scope in spec.scopes {
            let full = format!("https://www.googleapis.com/auth/{scope}");
            if !out.contains(&full) {
                out.push(full);
            }
        }
    }
    out
}

/// Keeps the tools' own sentence for the model; marks failures after which a write may still
/// have happened (the request left and no clear answer came back).
fn map_error(e: crewgate_tools::ToolError) -> ToolError {
    use crewgate_tools::ToolError as E;
    let maybe_done = match &e {
        E::Api { status, .. } => *status >= 500,
        E::Transport { source, .. } => !source.is_connect(),
        E::UnexpectedResponse { .. } => true,
        _ => false,
    };
    match e {
        E::InvalidArguments(m) => ToolError::InvalidArguments(m),
        other => ToolError::Service { message: other.to_string(), maybe_done, source: Some(Box::new(other)) },
    }
}

#[async_trait]
impl Tool for ExternalTool {
    fn manifest(&self) -> &ToolManifest {
        &self.manifest
    }

    async fn call(&self, ctx: &ToolContext, args: Value) -> Result<Value, ToolError> {
        let out = self.toolbox.call(self.spec.name, &args, &self.context(ctx)).await.map_err(map_error)?;
        Ok(out.content)
    }

    fn validate(&self, args: &Value) -> Result<(), String> {
        // The toolbox also checks what a schema cannot say (one of two ids, dates, …).
        self.toolbox.validate(self.spec.name, args).map(|_| ()).map_err(|e| match e {
            crewgate_tools::ToolError::InvalidArguments(m) => m,
            other => other.to_string(),
        })
    }

    fn action_family(&self) -> Option<&str> {
        Some(self.spec.action_family)
    }

    fn describe_write(&self, args: &Value) -> WriteDescription {
        match summarize(self.spec.name, args) {
            Some(s) => WriteDescription {
                markdown: s.to_markdown(),
                verb: if s.action.starts_with("Send") { "send".into() } else { "go ahead".into() },
                targets: s.targets,
            },
            None => WriteDescription {
                markdown: format!("📋 Proposed action: {}\n", self.spec.name),
                verb: "go ahead".into(),
                targets: Vec::new(),
            },
        }
    }

    async fn find_prior(&self, ctx: &ToolContext, args: &Value) -> Result<PriorExecution, ToolError> {
        let found = self
            .toolbox
            .find_prior_execution(self.spec.name, args, &self.context(ctx))
            .await
            .map_err(map_error)?;
        Ok(match found {
            crewgate_tools::PriorExecution::Found(out) => PriorExecution::Found(out.content),
            crewgate_tools::PriorExecution::NotFound => PriorExecution::NotFound,
            crewgate_tools::PriorExecution::Unknown => PriorExecution::Unknown,
        })
    }

    fn needs(&self) -> ToolNeeds {
        ToolNeeds {
            skill: Some(self.spec.skill.as_str()),
            owner_secret: (self.spec.credential == Credential::GoogleUser).then_some(GOOGLE_SECRET),
            orchestrator_only: false,
        }
    }
}

// ------------------------------------------------------------------------------------------
// Google credentials sealed in the store

/// What [`GOOGLE_SECRET`] holds (as JSON, sealed by the store).
#[derive(Default, Serialize, Deserialize)]
struct StoredGoogle {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    /// Set when Google refused the refresh token (`invalid_grant`): the person must reconnect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    needs_reconnect: Option<String>,
}

impl StoredGoogle {
    fn token(&self) -> GoogleToken {
        GoogleToken {
            access_token: self.access_token.clone().map(SecretString::from),
            expires_at: self.expires_at,
            refresh_token: self.refresh_token.clone().map(SecretString::from),
            scopes: self.scopes.clone(),
            email: self.email.clone(),
        }
    }
}

/// A person's Google connection as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum GoogleStatus {
    NotConnected,
    Connected { email: Option<String> },
    NeedsReconnect { email: Option<String>, reason: String },
}

async fn load_stored(store: &dyn Store, owner: &UserId) -> Result<Option<StoredGoogle>, StoreError> {
    let Some(secret) = store.get_secret(owner.as_str(), GOOGLE_SECRET).await? else { return Ok(None) };
    serde_json::from_str(secret.expose_secret())
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("the stored Google connection does not parse: {e}")))
}

async fn save_stored(store: &dyn Store, owner: &UserId, s: &StoredGoogle) -> Result<(), StoreError> {
    let text = serde_json::to_string(s)
        .map_err(|e| StoreError::Corrupt(format!("the Google connection does not serialise: {e}")))?;
    store.put_secret(owner.as_str(), GOOGLE_SECRET, &SecretString::from(text)).await
}

/// Stores (or replaces, after a reconnect) `owner`'s Google connection; clears "needs reconnect".
pub async fn connect_google(
    store: &dyn Store,
    owner: &UserId,
    token: &GoogleToken,
) -> Result<(), StoreError> {
    let s = StoredGoogle {
        access_token: token.access_token.as_ref().map(|t| t.expose_secret().to_owned()),
        expires_at: token.expires_at,
        refresh_token: token.refresh_token.as_ref().map(|t| t.expose_secret().to_owned()),
        scopes: token.scopes.clone(),
        email: token.email.clone(),
        needs_reconnect: None,
    };
    save_stored(store, owner, &s).await
}

/// Whether `owner` connected Google, and whether the connection still works.
pub async fn google_status(store: &dyn Store, owner: &UserId) -> Result<GoogleStatus, StoreError> {
    Ok(match load_stored(store, owner).await? {
        None => GoogleStatus::NotConnected,
        Some(StoredGoogle { needs_reconnect: Some(reason), email, .. }) => {
            GoogleStatus::NeedsReconnect { email, reason }
        }
        Some(s) => GoogleStatus::Connected { email: s.email },
    })
}

/// One person's Google credential, read from and written back to the store on every use (no
/// process-local copy, so a reconnect or revocation applies at once on every replica).
#[derive(Clone)]
pub struct StoreGoogleCredentials {
    store: Arc<dyn Store>,
    owner: UserId,
}

impl std::fmt::Debug for StoreGoogleCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreGoogleCredentials").field("owner", &self.owner).finish_non_exhaustive()
    }
}

impl StoreGoogleCredentials {
    pub fn new(store: Arc<dyn Store>, owner: UserId) -> Self {
        Self { store, owner }
    }

    async fn stored(&self) -> Result<StoredGoogle, CredentialError> {
        load_stored(self.store.as_ref(), &self.owner)
            .await
            .map_err(|e| CredentialError::Store(Box::new(e)))?
            .ok_or(CredentialError::NotConnected)
    }

    async fn save(&self, s: &StoredGoogle) -> Result<(), CredentialError> {
        save_stored(self.store.as_ref(), &self.owner, s)
            .await
            .map_err(|e| CredentialError::Store(Box::new(e)))
    }
}

#[async_trait]
impl GoogleCredentials for StoreGoogleCredentials {
    async fn load(&self) -> Result<GoogleToken, CredentialError> {
        let s = self.stored().await?;
        if s.needs_reconnect.is_some() {
            return Err(CredentialError::NeedsReconnect);
        }
        Ok(s.token())
    }

    async fn store_access_token(
        &self,
        access_token: &SecretString,
        expires_at: Millis,
    ) -> Result<(), CredentialError> {
        let mut s = self.stored().await?;
        s.access_token = Some(access_token.expose_secret().to_owned());
        s.expires_at = Some(expires_at);
        self.save(&s).await
    }

    async fn mark_needs_reconnect(&self, reason: &str) -> Result<(), CredentialError> {
        let mut s = self.stored().await?;
        s.needs_reconnect = Some(reason.to_owned());
        self.save(&s).await
    }
}
