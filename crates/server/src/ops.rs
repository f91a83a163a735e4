//! Admin operations shared by the REST API, the offline CLI and start-up bootstrap, so each rule
//! (id derivation, owner creation, last-admin guard, audit) lives in exactly one place.

use crate::error::ApiError;
use crewgate_core::{
    Agent, AgentId, AgentKind, IssuedToken, Principal, Role, TokenInfo, TokenKind, UserStatus,
    agent_id_from_email, now_millis,
};
use crewgate_store::{NewAgent, NewAudit, NewToken, NewUser, Store, StoreError};
use serde::Deserialize;

/// Who performs an operation, for the audit log.
#[derive(Debug, Clone)]
pub enum Actor {
    Principal(Principal),
    /// The offline CLI on the data dir (whoever can read the data dir is the operator).
    Cli,
    /// Start-up bootstrap and config import.
    System,
    /// An agent's tool, run after its approver said yes (the orchestrator's admin tools).
    Agent(AgentId),
}

impl Actor {
    pub(crate) fn describe(&self) -> String {
        match self {
            Actor::Principal(p) => p.actor(),
            Actor::Cli => "cli".into(),
            Actor::System => "system".into(),
            Actor::Agent(id) => format!("agent:{id}"),
        }
    }
}

pub async fn audit(
    store: &dyn Store,
    actor: &Actor,
    action: &str,
    user_id: Option<&crewgate_core::UserId>,
    agent_id: Option<&AgentId>,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    store
        .append_audit(NewAudit {
            actor: actor.describe(),
            user_id: user_id.cloned(),
            agent_id: agent_id.cloned(),
            action: action.into(),
            detail,
        })
        .await?;
    Ok(())
}

/// Body of `POST /api/v1/agents` and arguments of `crewgate agents add`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateAgent {
    /// Explicit id; derived from `owner_email` when absent.
    pub id: Option<String>,
    pub name: Option<String>,
    /// The person this worker belongs to; created as an active member when unknown.
    pub owner_email: Option<String>,
    #[serde(default)]
    pub kind: Option<AgentKind>,
    /// Persona, model, allow-list, autonomy.
    #[serde(default)]
    pub settings: Option<serde_json::Value>,
}

const MAX_ID_ATTEMPTS: u32 = 1000;

pub async fn create_agent(store: &dyn Store, actor: &Actor, req: CreateAgent) -> Result<Agent, ApiError> {
    let owner = match req.owner_email.as_deref().map(str::trim) {
        Some(email) if !valid_email(email) => {
            return Err(ApiError::BadRequest(format!("{email:?} is not an e-mail address")));
        }
        Some(email) => Some(match store.find_user_by_email(email).await? {
            Some(u) => u,
            None => {
                let u = store
                    .create_user(NewUser {
                        email: email.to_owned(),
                        name: None,
                        role: Role::Member,
                        status: UserStatus::Active,
                    })
                    .await?;
                audit(store, actor, "user.create", Some(&u.id), None, serde_json::json!({"email": u.email}))
                    .await?;
                u
            }
        }),
        None => None,
    };
    let kind = req.kind.unwrap_or(AgentKind::Worker);
    let explicit =
        req.id.as_deref().map(AgentId::parse).transpose().map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let base = match (&explicit, &owner) {
        (Some(id), _) => id.clone(),
        (None, Some(u)) => agent_id_from_email(&u.email).map_err(|e| ApiError::BadRequest(e.to_string()))?,
        (None, None) => {
            return Err(ApiError::BadRequest(
                "give an agent `id` or an `ownerEmail` to derive it from".into(),
            ));
        }
    };
    let settings = req.settings.unwrap_or_else(|| serde_json::json!({}));
    if !settings.is_object() {
        return Err(ApiError::BadRequest("`settings` must be a JSON object".into()));
    }
    // Derived ids get a numeric suffix on collision; an explicit id that is taken is a conflict.
    let mut attempt = 1;
    loop {
        let id = if attempt == 1 { base.clone() } else { base.with_suffix(attempt) };
        let new = NewAgent {
            id: id.clone(),
            kind,
            owner: owner.as_ref().map(|u| u.id.clone()),
            name: req.name.clone().unwrap_or_else(|| id.to_string()),
            settings: settings.clone(),
        };
        match store.create_agent(new).await {
            Ok(agent) => {
                audit(
                    store,
                    actor,
                    "agent.create",
                    agent.owner.as_ref(),
                    Some(&agent.id),
                    serde_json::json!({"kind": agent.kind}),
                )
                .await?;
                return Ok(agent);
            }
            Err(StoreError::Conflict(msg)) if explicit.is_some() => return Err(ApiError::Conflict(msg)),
            Err(StoreError::Conflict(_)) if attempt < MAX_ID_ATTEMPTS => attempt += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

pub(crate) fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else { return false };
    !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !s.contains(char::is_whitespace)
}

pub async fn delete_agent(store: &dyn Store, actor: &Actor, id: &AgentId) -> Result<bool, ApiError> {
    let deleted = store.delete_agent(id).await?;
    if deleted {
        audit(store, actor, "agent.delete", None, Some(id), serde_json::json!({})).await?;
    }
    Ok(deleted)
}

/// Body of `POST /api/v1/tokens` and arguments of `crewgate tokens issue`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IssueToken {
    pub kind: TokenKind,
    /// For user tokens: the agent the token opens (its owner becomes the token's user).
    pub agent_id: Option<String>,
    pub label: Option<String>,
}

/// Issues a token. Issuing a user token for an agent revokes that agent's previous user tokens,
/// so a person has one live dashboard token at a time (rotation by re-issue).
pub async fn issue_token(
    store: &dyn Store,
    actor: &Actor,
    req: IssueToken,
) -> Result<(IssuedToken, TokenInfo), ApiError> {
    let issued = IssuedToken::generate(req.kind);
    let info = register_token(store, actor, &issued, req.agent_id.as_deref(), req.label).await?;
    if let (TokenKind::User, Some(user)) = (info.kind, &info.user_id) {
        let older = store.list_tokens(crewgate_store::TokenScope::User(user.clone())).await?;
        for old in
            older.iter().filter(|t| t.id != info.id && t.kind == TokenKind::User && t.revoked_at.is_none())
        {
            revoke_token(store, actor, old).await?;
        }
    }
    Ok((issued, info))
}

/// Stores an already generated token (also used for config-file tokens).
pub async fn register_token(
    store: &dyn Store,
    actor: &Actor,
    token: &IssuedToken,
    agent_id: Option<&str>,
    label: Option<String>,
) -> Result<TokenInfo, ApiError> {
    let (user_id, agent_id) = match token.kind {
        TokenKind::Admin => (None, None),
        TokenKind::Invite => {
            return Err(ApiError::BadRequest("invite tokens are created with `crewgate invite`".into()));
        }
        TokenKind::User => {
            let id = agent_id.ok_or_else(|| ApiError::BadRequest("a user token needs `agentId`".into()))?;
            let id = AgentId::parse(id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
            let agent =
                store.get_agent(&id).await?.ok_or_else(|| ApiError::not_found(format!("agent {id}")))?;
            let owner = agent.owner.ok_or_else(|| {
                ApiError::Conflict(format!(
                    "agent {id} has no owner; create agents for people with `ownerEmail` so a token can belong to them"
                ))
            })?;
            (Some(owner), Some(id))
        }
    };
    let info = store
        .insert_token(NewToken {
            kind: token.kind,
            hash: token.hash.clone(),
            display: token.display.clone(),
            label,
            user_id: user_id.clone(),
            agent_id: agent_id.clone(),
            expires_at: None,
        })
        .await?;
    audit(
        store,
        actor,
        "token.issue",
        user_id.as_ref(),
        agent_id.as_ref(),
        serde_json::json!({"token_id": info.id, "kind": info.kind}),
    )
    .await?;
    Ok(info)
}

/// Replaces a live token with a new one of the same kind and binding; the old one stops working
/// at once.
pub async fn rotate_token(
    store: &dyn Store,
    actor: &Actor,
    old: &TokenInfo,
) -> Result<(IssuedToken, TokenInfo), ApiError> {
    if old.revoked_at.is_some() {
        return Err(ApiError::Conflict("this token is already revoked; issue a new one instead".into()));
    }
    let issued = IssuedToken::generate(old.kind);
    let info = store
        .rotate_token(
            &old.id,
            NewToken {
                kind: old.kind,
                hash: issued.hash.clone(),
                display: issued.display.clone(),
                label: old.label.clone(),
                user_id: old.user_id.clone(),
                agent_id: old.agent_id.clone(),
                expires_at: None,
            },
            now_millis(),
        )
        .await?;
    audit(
        store,
        actor,
        "token.rotate",
        old.user_id.as_ref(),
        old.agent_id.as_ref(),
        serde_json::json!({"old_token_id": old.id, "token_id": info.id}),
    )
    .await?;
    Ok((issued, info))
}

pub async fn revoke_token(store: &dyn Store, actor: &Actor, token: &TokenInfo) -> Result<bool, ApiError> {
    if token.kind == TokenKind::Admin
        && token.revoked_at.is_none()
        && store.count_live_tokens(TokenKind::Admin).await? <= 1
    {
        return Err(ApiError::Conflict(
            "this is the last admin token; issue another admin token first, or rotate this one".into(),
        ));
    }
    let revoked = store.revoke_token(&token.id, now_millis()).await?;
    if revoked {
        audit(
            store,
            actor,
            "token.revoke",
            token.user_id.as_ref(),
            token.agent_id.as_ref(),
            serde_json::json!({"token_id": token.id}),
        )
        .await?;
    }
    Ok(revoked)
}
