//! The orchestrator's admin tools. Offered only to the orchestrator; the writes among them go
//! through the approval gate like every other write, decided by the admin (the orchestrator has
//! no owner). Results never carry a dashboard token: a rotated token is e-mailed to its owner.

use super::{Onboarding, OnboardingError};
use crate::ops::{self, Actor};
use async_trait::async_trait;
use crewgate_core::{TokenKind, UserStatus};
use crewgate_runtime::tools::external::google_status;
use crewgate_runtime::tools::{ToolNeeds, WriteDescription};
use crewgate_runtime::{Effect, Tool, ToolContext, ToolError, ToolManifest, ToolRegistry};
use crewgate_store::onboarding::InviteOrigin;
use crewgate_store::{Store, TokenScope};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::sync::Arc;

/// Where the shared settings live: a sealed named value of the gateway itself.
const SHARED_OWNER: &str = "gateway";
const SHARED_NAME: &str = "shared_settings";
/// Skills a worker may be given.
pub const KNOWN_SKILLS: &[&str] = &["gog", "notion", "attio-crm"];
const LIST_LIMIT: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OnboardUser,
    ListUsers,
    UserStatus,
    SuspendUser,
    RotateUserToken,
    UpdateSharedSettings,
}

struct AdminTool {
    kind: Kind,
    manifest: ToolManifest,
    onboarding: Arc<Onboarding>,
}

fn email_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"email": {"type": "string", "minLength": 3, "maxLength": 254}},
        "required": ["email"],
        "additionalProperties": false
    })
}

fn manifest(kind: Kind) -> ToolManifest {
    let (name, description, parameters, effect) = match kind {
        Kind::OnboardUser => (
            "onboard_user",
            "Invite a person by e-mail: they get a link to connect Google and receive their own agent.",
            json!({
                "type": "object",
                "properties": {
                    "email": {"type": "string", "minLength": 3, "maxLength": 254},
                    "name": {"type": "string", "maxLength": 120}
                },
                "required": ["email"],
                "additionalProperties": false
            }),
            Effect::Write,
        ),
        Kind::ListUsers => (
            "list_users",
            "List people: e-mail, status, role and their agent.",
            json!({"type": "object", "properties": {}, "additionalProperties": false}),
            Effect::Read,
        ),
        Kind::UserStatus => (
            "user_status",
            "One person's status: agent, Google connection, tokens, pending invite.",
            email_schema(),
            Effect::Read,
        ),
        Kind::SuspendUser => (
            "suspend_user",
            "Suspend a person: their tokens stop working at once.",
            email_schema(),
            Effect::Write,
        ),
        Kind::RotateUserToken => (
            "rotate_user_token",
            "Replace a person's dashboard token; the new sign-in link is e-mailed to them.",
            email_schema(),
            Effect::Write,
        ),
        Kind::UpdateSharedSettings => (
            "update_shared_settings",
            "Set which skills new workers get (gog, notion, attio-crm).",
            json!({
                "type": "object",
                "properties": {
                    "worker_skills": {"type": "array", "items": {"type": "string", "enum": KNOWN_SKILLS}, "maxItems": 3}
                },
                "required": ["worker_skills"],
                "additionalProperties": false
            }),
            Effect::Write,
        ),
    };
    ToolManifest { name: name.into(), description: description.into(), parameters, effect }
}

/// Adds the orchestrator's admin tools to `registry`.
pub fn register_admin_tools(
    registry: &mut ToolRegistry,
    onboarding: Arc<Onboarding>,
) -> Result<(), ToolError> {
    for kind in [
        Kind::OnboardUser,
        Kind::ListUsers,
        Kind::UserStatus,
        Kind::SuspendUser,
        Kind::RotateUserToken,
        Kind::UpdateSharedSettings,
    ] {
        registry.register(Arc::new(AdminTool {
            kind,
            manifest: manifest(kind),
            onboarding: onboarding.clone(),
        }))?;
    }
    Ok(())
}

/// The skills new workers get: the admin's shared setting, else the configured list; `None`
/// (no `skills` setting: every installed skill) when neither says anything.
pub async fn worker_skills(store: &dyn Store, default: &[String]) -> Option<Vec<String>> {
    let stored = match store.get_secret(SHARED_OWNER, SHARED_NAME).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "shared settings unreadable; using the configured worker skills");
            None
        }
    };
    stored
        .and_then(|s| serde_json::from_str::<Value>(s.expose_secret()).ok())
        .and_then(|v| {
            v.get("workerSkills")?
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        })
        .or_else(|| (!default.is_empty()).then(|| default.to_vec()))
}

fn failed(e: impl std::fmt::Display) -> ToolError {
    ToolError::Failed(e.to_string())
}

fn from_onboarding(e: OnboardingError) -> ToolError {
    match e {
        OnboardingError::Api(inner) => ToolError::Service {
            message: "the gateway could not finish; try again".into(),
            maybe_done: false,
            source: Some(Box::new(inner)),
        },
        other => ToolError::Failed(other.to_string()),
    }
}

fn email_arg(args: &Value) -> Result<String, ToolError> {
    args.get("email")
        .and_then(Value::as_str)
        .map(|e| e.trim().to_lowercase())
        .ok_or_else(|| ToolError::InvalidArguments("`email` is required".into()))
}

impl AdminTool {
    fn actor(ctx: &ToolContext) -> Actor {
        Actor::Agent(ctx.agent.id.clone())
    }

    async fn user(store: &dyn Store, email: &str) -> Result<crewgate_core::User, ToolError> {
        store.find_user_by_email(email).await.map_err(failed)?.ok_or_else(|| {
            ToolError::Failed(format!("nobody with the e-mail {email} is known; list_users shows who is"))
        })
    }
}

#[async_trait]
impl Tool for AdminTool {
    fn manifest(&self) -> &ToolManifest {
        &self.manifest
    }

    fn needs(&self) -> ToolNeeds {
        ToolNeeds { orchestrator_only: true, ..ToolNeeds::default() }
    }

    fn action_family(&self) -> Option<&str> {
        Some(match self.kind {
            Kind::OnboardUser => "users.invite",
            Kind::SuspendUser => "users.suspend",
            Kind::RotateUserToken => "users.rotate_token",
            Kind::UpdateSharedSettings => "settings.update",
            Kind::ListUsers | Kind::UserStatus => "users.read",
        })
    }

    fn describe_write(&self, args: &Value) -> WriteDescription {
        let email = args.get("email").and_then(Value::as_str).unwrap_or("").trim().to_lowercase();
        let (action, verb, mut lines) = match self.kind {
            Kind::OnboardUser => {
                ("invite a person and create their agent", "invite", vec![("E-mail", email.clone())])
            }
            Kind::SuspendUser => {
                ("suspend a person (their tokens stop working)", "suspend", vec![("E-mail", email.clone())])
            }
            Kind::RotateUserToken => (
                "replace a person's dashboard token and e-mail the new link",
                "rotate",
                vec![("E-mail", email.clone())],
            ),
            Kind::UpdateSharedSettings => (
                "change the skills new workers get",
                "go ahead",
                vec![("Worker skills", args.get("worker_skills").map(Value::to_string).unwrap_or_default())],
            ),
            Kind::ListUsers | Kind::UserStatus => ("read", "go ahead", Vec::new()),
        };
        if let Some(name) = args.get("name").and_then(Value::as_str) {
            lines.push(("Name", name.to_owned()));
        }
        let mut markdown = format!("📋 Proposed action: {action}\n");
        for (label, value) in &lines {
            markdown.push_str(&format!("**{label}:** {value}\n"));
        }
        WriteDescription {
            markdown,
            verb: verb.into(),
            targets: if email.is_empty() { Vec::new() } else { vec![email] },
        }
    }

    async fn call(&self, ctx: &ToolContext, args: Value) -> Result<Value, ToolError> {
        let store = ctx.store.as_ref();
        match self.kind {
            Kind::OnboardUser => {
                let email = email_arg(&args)?;
                let name = args.get("name").and_then(Value::as_str);
                let issued = self
                    .onboarding
                    .create_invite(store, &Self::actor(ctx), &email, name, InviteOrigin::Admin)
                    .await
                    .map_err(from_onboarding)?;
                let mut out = json!({
                    "invited": issued.invite.email,
                    "agent_id": issued.invite.agent_id,
                    "expires_in_hours": (issued.invite.expires_at - crewgate_core::now_millis()) / 3_600_000,
                });
                match issued.emailed {
                    Some(Ok(())) => out["delivery"] = json!("the invite link was e-mailed to them"),
                    other => {
                        // No mail transport (or it failed): the admin passes the link on.
                        out["delivery"] = json!(match other {
                            Some(Err(e)) => format!("e-mailing failed ({e}); give them this link yourself"),
                            _ => "no mail transport is configured; give them this link yourself".to_owned(),
                        });
                        out["link"] = json!(issued.link.expose_secret());
                    }
                }
                Ok(out)
            }
            Kind::ListUsers => {
                let users = store.list_users().await.map_err(failed)?;
                let agents = store.list_agents().await.map_err(failed)?;
                let total = users.len();
                let list: Vec<Value> = users
                    .into_iter()
                    .take(LIST_LIMIT)
                    .map(|u| {
                        let agent = agents.iter().find(|a| a.owner.as_ref() == Some(&u.id)).map(|a| a.id.to_string());
                        json!({"email": u.email, "name": u.name, "role": u.role, "status": u.status, "agent": agent})
                    })
                    .collect();
                let mut out = json!({"users": list});
                if total > LIST_LIMIT {
                    out["more"] = json!(format!("{} more users not shown", total - LIST_LIMIT));
                }
                Ok(out)
            }
            Kind::UserStatus => {
                let email = email_arg(&args)?;
                let invites = store.list_invites().await.map_err(failed)?;
                let now = crewgate_core::now_millis();
                let invite = invites
                    .iter()
                    .find(|i| i.email == email)
                    .map(|i| json!({"status": i.status(now), "agent_id": i.agent_id, "sent": i.sent_count}));
                let Some(user) = store.find_user_by_email(&email).await.map_err(failed)? else {
                    return Ok(json!({"email": email, "known": false, "invite": invite}));
                };
                let agent = store.worker_of_user(&user.id).await.map_err(failed)?;
                let google = google_status(store, &user.id).await.map_err(failed)?;
                let tokens = store.list_tokens(TokenScope::User(user.id.clone())).await.map_err(failed)?;
                let live = tokens.iter().filter(|t| t.revoked_at.is_none()).count();
                Ok(json!({
                    "email": user.email, "known": true, "status": user.status, "role": user.role,
                    "agent": agent.map(|a| a.id.to_string()), "google": google,
                    "live_tokens": live, "invite": invite,
                }))
            }
            Kind::SuspendUser => {
                let email = email_arg(&args)?;
                let user = Self::user(store, &email).await?;
                store.set_user_status(&user.id, UserStatus::Suspended).await.map_err(failed)?;
                let tokens = store.list_tokens(TokenScope::User(user.id.clone())).await.map_err(failed)?;
                let mut revoked = 0;
                for t in tokens.iter().filter(|t| t.revoked_at.is_none()) {
                    if ops::revoke_token(store, &Self::actor(ctx), t).await.map_err(failed)? {
                        revoked += 1;
                    }
                }
                ops::audit(
                    store,
                    &Self::actor(ctx),
                    "user.suspend",
                    Some(&user.id),
                    None,
                    json!({"email": email}),
                )
                .await
                .map_err(failed)?;
                Ok(json!({"suspended": email, "tokens_revoked": revoked}))
            }
            Kind::RotateUserToken => {
                let email = email_arg(&args)?;
                let Some(mailer) = self.onboarding.mailer() else {
                    return Err(ToolError::Failed(
                        "no mail transport is configured, so the new token cannot reach them privately; rotate it on the dashboard's Tokens page, which shows it once".into(),
                    ));
                };
                let user = Self::user(store, &email).await?;
                let agent = store
                    .worker_of_user(&user.id)
                    .await
                    .map_err(failed)?
                    .ok_or_else(|| ToolError::Failed(format!("{email} has no agent yet")))?;
                let (issued, _) = ops::issue_token(
                    store,
                    &Self::actor(ctx),
                    ops::IssueToken {
                        kind: TokenKind::User,
                        agent_id: Some(agent.id.to_string()),
                        label: Some("dashboard (rotated)".into()),
                    },
                )
                .await
                .map_err(failed)?;
                let link = SecretString::from(format!(
                    "{}/?token={}",
                    self.onboarding.settings().public_url,
                    issued.secret.expose_secret()
                ));
                let body = format!(
                    "Hello,\n\nyour crewgate dashboard token was replaced; the old one no longer works.\n\
                     Sign in with this link (it works until the token is rotated again):\n\n{}\n",
                    link.expose_secret()
                );
                mailer.send(&email, "Your new crewgate sign-in link", &body).await.map_err(|e| {
                    ToolError::Service {
                        message: format!(
                            "the token was rotated but the e-mail failed ({e}); rotate again once mail works"
                        ),
                        maybe_done: false,
                        source: Some(Box::new(e)),
                    }
                })?;
                Ok(json!({"rotated": email, "delivery": "the new sign-in link was e-mailed to them"}))
            }
            Kind::UpdateSharedSettings => {
                let skills: Vec<String> = args
                    .get("worker_skills")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default();
                let text = json!({"workerSkills": skills}).to_string();
                store
                    .put_secret(SHARED_OWNER, SHARED_NAME, &SecretString::from(text))
                    .await
                    .map_err(failed)?;
                ops::audit(
                    store,
                    &Self::actor(ctx),
                    "settings.update",
                    None,
                    None,
                    json!({"workerSkills": skills}),
                )
                .await
                .map_err(failed)?;
                Ok(json!({"worker_skills": skills, "applies_to": "workers created from now on"}))
            }
        }
    }
}
