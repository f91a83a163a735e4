//! Start-up bootstrap: makes sure a usable gateway exists (orchestrator agent, an admin token) and
//! imports what the config file declares (agents, admin token, user tokens). Idempotent: running it
//! on every start changes nothing once everything is in place, and never resurrects a token that
//! was revoked through the API.

use crate::error::ApiError;
use crate::ops::{self, Actor, CreateAgent};
use crewgate_core::token::parse_presented;
use crewgate_core::{AgentId, AgentKind, IssuedToken, TokenKind};
use crewgate_store::Store;
use secrecy::{ExposeSecret, SecretString};

pub const ORCHESTRATOR_ID: &str = "orchestrator";

/// What the config file declares, already validated by `crewgate-config`.
#[derive(Debug, Default)]
pub struct BootstrapInput {
    pub admin_token: Option<SecretString>,
    pub agents: Vec<DeclaredAgent>,
    pub user_tokens: Vec<DeclaredUserToken>,
}

#[derive(Debug, Clone)]
pub struct DeclaredAgent {
    pub id: AgentId,
    pub name: Option<String>,
    pub kind: AgentKind,
    pub owner_email: Option<String>,
    pub settings: serde_json::Value,
}

#[derive(Debug)]
pub struct DeclaredUserToken {
    pub token: SecretString,
    pub agent_id: AgentId,
}

#[derive(Debug, Default)]
pub struct BootstrapReport {
    /// Set only when no admin token existed: the caller shows it once, then drops it.
    pub new_admin_token: Option<IssuedToken>,
    pub created_agents: Vec<AgentId>,
    pub imported_tokens: usize,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(
        "gateway.auth.token is not a crewgate admin token (cga_ followed by 48 hex characters); generate one with `crewgate tokens generate admin`"
    )]
    BadAdminToken,
    #[error(
        "a gateway.auth.userTokens key for agent {0} is not a crewgate user token (cgu_ followed by 48 hex characters); generate one with `crewgate tokens generate user`"
    )]
    BadUserToken(AgentId),
    #[error("gateway.auth.userTokens refers to agent {0}, which is neither in agents.list nor in the store")]
    UnknownAgent(AgentId),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] crewgate_store::StoreError),
}

pub async fn bootstrap(store: &dyn Store, input: BootstrapInput) -> Result<BootstrapReport, BootstrapError> {
    let mut report = BootstrapReport::default();
    let actor = Actor::System;

    let orchestrator = AgentId::parse(ORCHESTRATOR_ID).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let mut declared = input.agents;
    if !declared.iter().any(|a| a.id == orchestrator) {
        declared.insert(
            0,
            DeclaredAgent {
                id: orchestrator,
                name: Some("Orchestrator".into()),
                kind: AgentKind::Orchestrator,
                owner_email: None,
                settings: serde_json::json!({}),
            },
        );
    }
    for agent in declared {
        if store.agent_id_taken(&agent.id).await? {
            continue;
        }
        // A user token needs a person to belong to; config agents without an owner get a
        // placeholder user under the reserved `.invalid` domain.
        let owner_email = agent.owner_email.clone().or_else(|| {
            input
                .user_tokens
                .iter()
                .any(|t| t.agent_id == agent.id)
                .then(|| format!("{}@config.invalid", agent.id))
        });
        let created = ops::create_agent(
            store,
            &actor,
            CreateAgent {
                id: Some(agent.id.to_string()),
                name: agent.name,
                owner_email,
                kind: Some(agent.kind),
                settings: Some(agent.settings),
            },
        )
        .await?;
        report.created_agents.push(created.id);
    }

    if let Some(secret) = input.admin_token {
        match parse_presented(&secret) {
            Ok((TokenKind::Admin, _)) => {}
            _ => return Err(BootstrapError::BadAdminToken),
        }
        let token = IssuedToken::from_secret(TokenKind::Admin, secret.expose_secret().to_owned());
        import(store, &actor, &token, None, &mut report).await?;
    }
    for ut in input.user_tokens {
        match parse_presented(&ut.token) {
            Ok((TokenKind::User, _)) => {}
            _ => return Err(BootstrapError::BadUserToken(ut.agent_id)),
        }
        if store.get_agent(&ut.agent_id).await?.is_none() {
            return Err(BootstrapError::UnknownAgent(ut.agent_id));
        }
        let token = IssuedToken::from_secret(TokenKind::User, ut.token.expose_secret().to_owned());
        import(store, &actor, &token, Some(&ut.agent_id), &mut report).await?;
    }

    if store.count_live_tokens(TokenKind::Admin).await? == 0 {
        let (issued, _) = ops::issue_token(
            store,
            &actor,
            ops::IssueToken { kind: TokenKind::Admin, agent_id: None, label: Some("first start".into()) },
        )
        .await?;
        report.new_admin_token = Some(issued);
    }
    Ok(report)
}

/// Registers a config token once. A token already known (live or revoked) is left alone, so a
/// revocation through the API sticks even though the config still names the token.
async fn import(
    store: &dyn Store,
    actor: &Actor,
    token: &IssuedToken,
    agent: Option<&AgentId>,
    report: &mut BootstrapReport,
) -> Result<(), BootstrapError> {
    match ops::register_token(store, actor, token, agent.map(AgentId::as_str), Some("config".into())).await {
        Ok(_) => {
            report.imported_tokens += 1;
            Ok(())
        }
        Err(ApiError::Conflict(_)) => {
            if store.resolve_token(&token.hash, crewgate_core::now_millis()).await?.is_none() {
                report.warnings.push(format!(
                    "a config token ({}) was revoked or has expired; remove it from the config file",
                    token.display
                ));
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
