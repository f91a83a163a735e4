//! Offline admin commands: they open the store in the data dir (or PostgreSQL) directly, so they
//! work whether or not a gateway is running. Whoever can read the data dir is the operator.

use crate::StoreArgs;
use crate::context::open_store;
use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use crewgate_core::{AgentId, IssuedToken, TokenKind};
use crewgate_server::ops::{self, Actor, CreateAgent, IssueToken};
use crewgate_store::TokenScope;
use secrecy::ExposeSecret;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// List agents.
    #[command(after_help = "Example:\n  crewgate agents list --data-dir ./crewgate-data")]
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Add a worker agent for a person (id derived from the e-mail) or with an explicit id.
    #[command(
        after_help = "Examples:\n  crewgate agents add --owner alice@company.com\n  crewgate agents add --id research --name Research"
    )]
    Add {
        #[command(flatten)]
        store: StoreArgs,
        /// The person the agent belongs to (created as a member if unknown).
        #[arg(long)]
        owner: Option<String>,
        /// Explicit agent id (a-z, 0-9, '-').
        #[arg(long)]
        id: Option<String>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Remove an agent (soft delete; its tokens are revoked, its id is never reused).
    #[command(after_help = "Example:\n  crewgate agents remove alice-company-com")]
    Remove {
        #[command(flatten)]
        store: StoreArgs,
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List people with their role and status.
    #[command(after_help = "Example:\n  crewgate users list")]
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GenerateKind {
    Admin,
    User,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Issue a token and print it once. A new user token replaces the person's previous one.
    #[command(
        after_help = "Examples:\n  crewgate tokens issue --agent alice-company-com\n  crewgate tokens issue --admin --label backup-admin"
    )]
    Issue {
        #[command(flatten)]
        store: StoreArgs,
        /// Issue an admin token.
        #[arg(long, conflicts_with = "agent")]
        admin: bool,
        /// Issue a user token for this agent's owner.
        #[arg(long, required_unless_present = "admin")]
        agent: Option<String>,
        #[arg(long)]
        label: Option<String>,
    },
    /// List tokens (prefix and last four characters only; secrets are never stored).
    #[command(after_help = "Example:\n  crewgate tokens list")]
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Replace a token with a new one; the old one stops working at once.
    #[command(
        after_help = "Example:\n  crewgate tokens rotate 0193f1c2…   (an id from `crewgate tokens list`)"
    )]
    Rotate {
        #[command(flatten)]
        store: StoreArgs,
        id: String,
    },
    /// Revoke a token at once.
    #[command(after_help = "Example:\n  crewgate tokens revoke 0193f1c2…")]
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        id: String,
    },
    /// Print a fresh token without storing it, to put into a config file via ${ENV}.
    #[command(after_help = "Example:\n  ADMIN_TOKEN=$(crewgate tokens generate admin)")]
    Generate { kind: GenerateKind },
}

pub fn init(path: &Path, force: bool) -> Result<()> {
    if path.exists() && !force {
        bail!("{} already exists; pass --force to overwrite it", path.display());
    }
    std::fs::write(path, crewgate_config::STARTER_CONFIG)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    println!(
        "next: edit it, check it with `crewgate config check {}`, then run `crewgate gateway --config {}`",
        path.display(),
        path.display()
    );
    Ok(())
}

pub fn config_check(path: &Path) -> ExitCode {
    match crewgate_config::Config::load(path) {
        Ok(cfg) => {
            for w in &cfg.warnings {
                eprintln!("warning: {w}");
            }
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

pub async fn agents(cmd: AgentsCommand) -> Result<()> {
    match cmd {
        AgentsCommand::List { store } => {
            let s = open_store(&store).await?;
            let agents = s.list_agents().await?;
            println!("{:<40} {:<13} {:<30} OWNER", "ID", "KIND", "NAME");
            for a in agents {
                let owner = match &a.owner {
                    Some(id) => s.get_user(id).await?.map(|u| u.email).unwrap_or_else(|| id.to_string()),
                    None => "-".into(),
                };
                println!("{:<40} {:<13} {:<30} {owner}", a.id, a.kind, a.name);
            }
        }
        AgentsCommand::Add { store, owner, id, name } => {
            if owner.is_none() && id.is_none() {
                bail!("give --owner EMAIL (the id is derived from it) or --id ID");
            }
            let s = open_store(&store).await?;
            let agent = ops::create_agent(
                s.as_ref(),
                &Actor::Cli,
                CreateAgent { id, name, owner_email: owner, kind: None, settings: None },
            )
            .await?;
            println!("created agent {}", agent.id);
            if agent.owner.is_some() {
                println!(
                    "next: `crewgate tokens issue --agent {}` gives its owner a dashboard token",
                    agent.id
                );
            }
        }
        AgentsCommand::Remove { store, id } => {
            let s = open_store(&store).await?;
            let id = AgentId::parse(&id)?;
            if !ops::delete_agent(s.as_ref(), &Actor::Cli, &id).await? {
                bail!("no agent {id}; see `crewgate agents list`");
            }
            println!("removed agent {id} and revoked its tokens");
        }
    }
    Ok(())
}

pub async fn users(cmd: UsersCommand) -> Result<()> {
    let UsersCommand::List { store } = cmd;
    let s = open_store(&store).await?;
    println!("{:<38} {:<36} {:<7} STATUS", "ID", "EMAIL", "ROLE");
    for u in s.list_users().await? {
        println!("{:<38} {:<36} {:<7} {}", u.id, u.email, u.role, u.status);
    }
    Ok(())
}

pub async fn tokens(cmd: TokensCommand) -> Result<()> {
    match cmd {
        TokensCommand::Issue { store, admin, agent, label } => {
            let s = open_store(&store).await?;
            let kind = if admin { TokenKind::Admin } else { TokenKind::User };
            let (issued, info) =
                ops::issue_token(s.as_ref(), &Actor::Cli, IssueToken { kind, agent_id: agent, label })
                    .await?;
            print_new_token(&issued, &info.id);
        }
        TokensCommand::List { store } => {
            let s = open_store(&store).await?;
            println!("{:<34} {:<7} {:<10} {:<24} {:<8} LABEL", "ID", "KIND", "TOKEN", "AGENT", "STATE");
            for t in s.list_tokens(TokenScope::All).await? {
                let state = if t.revoked_at.is_some() { "revoked" } else { "live" };
                let agent = t.agent_id.as_ref().map(ToString::to_string).unwrap_or_else(|| "-".into());
                println!(
                    "{:<34} {:<7} {:<10} {:<24} {:<8} {}",
                    t.id,
                    t.kind,
                    t.display,
                    agent,
                    state,
                    t.label.as_deref().unwrap_or("")
                );
            }
        }
        TokensCommand::Rotate { store, id } => {
            let s = open_store(&store).await?;
            let old = s
                .get_token(&id)
                .await?
                .with_context(|| format!("no token {id}; see `crewgate tokens list`"))?;
            let (issued, info) = ops::rotate_token(s.as_ref(), &Actor::Cli, &old).await?;
            println!("token {id} is revoked");
            print_new_token(&issued, &info.id);
        }
        TokensCommand::Revoke { store, id } => {
            let s = open_store(&store).await?;
            let t = s
                .get_token(&id)
                .await?
                .with_context(|| format!("no token {id}; see `crewgate tokens list`"))?;
            if ops::revoke_token(s.as_ref(), &Actor::Cli, &t).await? {
                println!("revoked token {id}");
            } else {
                println!("token {id} was already revoked");
            }
        }
        TokensCommand::Generate { kind } => {
            let kind = match kind {
                GenerateKind::Admin => TokenKind::Admin,
                GenerateKind::User => TokenKind::User,
            };
            println!("{}", IssuedToken::generate(kind).secret.expose_secret());
        }
    }
    Ok(())
}

fn print_new_token(issued: &IssuedToken, id: &str) {
    println!("{} token (id {id}); shown once, store it now:", issued.kind);
    println!("{}", issued.secret.expose_secret());
}
