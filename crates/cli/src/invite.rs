//! `crewgate invite …`: invites made offline on the data dir, exactly as the dashboard and the
//! orchestrator make them (same rules, same audit, same e-mail when SMTP is configured).

use crate::StoreArgs;
use crate::context::open_store;
use crate::gateway::onboarding::onboarding;
use anyhow::{Context, Result};
use clap::Subcommand;
use crewgate_core::now_millis;
use crewgate_server::ops::Actor;
use crewgate_store::onboarding::InviteOrigin;
use secrecy::ExposeSecret;
use std::path::PathBuf;

const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:18789";

#[derive(Debug, Subcommand)]
pub enum InviteCommand {
    /// Invite a person: prints the single-use link (and e-mails it when integrations.smtp is set).
    #[command(
        after_help = "The link is printed once; only its hash is stored. It expires after onboarding.inviteTtlHours (default 7 days).\n\nExamples:\n  crewgate invite create alice@company.com\n  crewgate invite create bob@company.com --name \"Bob Lee\" --config crewgate.jsonc"
    )]
    Create {
        #[command(flatten)]
        store: StoreArgs,
        email: String,
        #[arg(long)]
        name: Option<String>,
        /// Config file: public URL, allowed domains, invite lifetime, SMTP.
        #[arg(long, env = "CREWGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// List invites with their status (pending, used, expired, revoked).
    #[command(after_help = "Example:\n  crewgate invite list")]
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Replace a pending (or expired) invite's link with a fresh one; the old link stops working.
    #[command(after_help = "Example:\n  crewgate invite resend 5f0c…   (an id from `crewgate invite list`)")]
    Resend {
        #[command(flatten)]
        store: StoreArgs,
        id: String,
        #[arg(long, env = "CREWGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Revoke a pending invite; its link stops working at once.
    #[command(after_help = "Example:\n  crewgate invite revoke 5f0c…")]
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        id: String,
    },
}

fn load(config: Option<&PathBuf>) -> Result<crewgate_server::onboarding::Onboarding> {
    let cfg = match config {
        Some(path) => Some(crewgate_config::Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?),
        None => None,
    };
    let public = cfg
        .as_ref()
        .and_then(|c| c.gateway.public_url.as_ref())
        .map(|u| u.as_str().trim_end_matches('/').to_owned())
        .unwrap_or_else(|| DEFAULT_PUBLIC_URL.to_owned());
    onboarding(cfg.as_ref(), &public)
}

fn print_issued(i: &crewgate_server::onboarding::IssuedInvite) {
    println!("invite {} for {} (agent {})", i.invite.id, i.invite.email, i.invite.agent_id);
    println!("link: {}", i.link.expose_secret());
    match &i.emailed {
        Some(Ok(())) => println!("e-mailed to {}", i.invite.email),
        Some(Err(e)) => println!("e-mail failed: {e} — give them the link yourself"),
        None => println!("(no SMTP configured: give them the link yourself; it is shown only now)"),
    }
}

pub async fn invite(cmd: InviteCommand) -> Result<()> {
    match cmd {
        InviteCommand::Create { store, email, name, config } => {
            let o = load(config.as_ref())?;
            let s = open_store(&store).await?;
            let issued = o
                .create_invite(s.as_ref(), &Actor::Cli, &email, name.as_deref(), InviteOrigin::Admin)
                .await
                .context("creating the invite")?;
            print_issued(&issued);
        }
        InviteCommand::List { store } => {
            let s = open_store(&store).await?;
            let now = now_millis();
            println!("{:<34} {:<32} {:<28} {:<8} SENT", "ID", "EMAIL", "AGENT", "STATUS");
            for i in s.list_invites().await? {
                println!(
                    "{:<34} {:<32} {:<28} {:<8} {}",
                    i.id,
                    i.email,
                    i.agent_id,
                    i.status(now),
                    i.sent_count
                );
            }
        }
        InviteCommand::Resend { store, id, config } => {
            let o = load(config.as_ref())?;
            let s = open_store(&store).await?;
            let issued =
                o.resend_invite(s.as_ref(), &Actor::Cli, &id).await.context("resending the invite")?;
            print_issued(&issued);
        }
        InviteCommand::Revoke { store, id } => {
            let s = open_store(&store).await?;
            let o = crewgate_server::onboarding::Onboarding::default();
            o.revoke_invite(s.as_ref(), &Actor::Cli, &id).await.context("revoking the invite")?;
            println!("revoked invite {id}");
        }
    }
    Ok(())
}
