//! The `crewgate` binary: the gateway and offline admin commands. This is the only place (with
//! `crewgate-server`) that wires crates together; errors become `anyhow` here and nowhere else.

mod admin;
mod audit;
mod backup;
mod chat;
mod context;
mod doctor;
mod gateway;
mod healthcheck;
mod invite;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "crewgate",
    version,
    about = "A self-hosted, multi-user AI agent gateway",
    long_about = "crewgate runs one orchestrator agent and one worker agent per person, with per-person \
tokens, human approval for every write, and all state in an embedded database (or PostgreSQL).\n\n\
Start it with `crewgate gateway`; the first start prints the admin token and the dashboard URL once.",
    after_help = "Examples:\n  crewgate gateway\n  crewgate gateway --data-dir /var/lib/crewgate --config crewgate.jsonc\n  crewgate tokens issue --agent alice-company-com"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the state lives; shared by the gateway and every offline command.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Data directory (SQLite database, master key file).
    #[arg(long, env = "CREWGATE_DATA_DIR", default_value = "./crewgate-data", global = true)]
    pub data_dir: PathBuf,
    /// PostgreSQL URL (postgres://user:pass@host/db) instead of the embedded SQLite database.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (HTTP API on 127.0.0.1:18789 by default).
    #[command(
        after_help = "Examples:\n  crewgate gateway\n  crewgate gateway --bind 0.0.0.0:18789 --config crewgate.jsonc\n  DATABASE_URL=postgres://crewgate@db/crewgate crewgate gateway"
    )]
    Gateway(gateway::GatewayArgs),
    /// Write a commented starter config file.
    #[command(
        after_help = "Example:\n  crewgate init --config crewgate.jsonc && crewgate config check crewgate.jsonc"
    )]
    Init {
        /// Where to write it.
        #[arg(long, default_value = "crewgate.jsonc")]
        config: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Validate a config file and print every problem with file:line:col.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage agents in the store (offline, on the data dir).
    #[command(subcommand)]
    Agents(admin::AgentsCommand),
    /// List people in the store (offline).
    #[command(subcommand)]
    Users(admin::UsersCommand),
    /// Issue, list, rotate and revoke tokens (offline).
    #[command(subcommand)]
    Tokens(admin::TokensCommand),
    /// Invite people: create, list, resend and revoke single-use invite links (offline).
    #[command(subcommand)]
    Invite(invite::InviteCommand),
    /// Talk to an agent of a running gateway (streams over the WebSocket).
    #[command(after_help = "Example:\n  CREWGATE_TOKEN=cgu_… crewgate chat --agent alice-company-com")]
    Chat(chat::ChatArgs),
    /// Audit log: verify its hash chain (detects entries changed in the database).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Encrypted continuous S3 backup: status, now, list.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Restore the newest (or a point-in-time) backup from S3 into a data dir.
    Restore(backup::RestoreArgs),
    /// Check config, environment, store, S3, LLM, Google OAuth settings and clock; print what to fix.
    #[command(
        after_help = "Prints one line per check: `ok|warn|FAIL  name: detail — what to do`; exits 1 if any check FAILs.\n\nExamples:\n  crewgate doctor --config crewgate.jsonc\n  crewgate doctor --offline"
    )]
    Doctor(doctor::DoctorArgs),
    /// Exit 0 if the local gateway answers GET /ready with 200 (for container health checks).
    #[command(after_help = "Example:\n  CREWGATE_BIND=0.0.0.0:18789 crewgate healthcheck")]
    Healthcheck(healthcheck::HealthcheckArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check FILE: syntax, unknown keys, types, ${ENV} references, agent ids, token targets.
    #[command(after_help = "Example:\n  crewgate config check crewgate.jsonc")]
    Check { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Gateway(args) => gateway::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Init { config, force } => admin::init(&config, force).map(|()| ExitCode::SUCCESS),
        Command::Config(ConfigCommand::Check { file }) => Ok(admin::config_check(&file)),
        Command::Agents(cmd) => admin::agents(cmd).await.map(|()| ExitCode::SUCCESS),
        Command::Users(cmd) => admin::users(cmd).await.map(|()| ExitCode::SUCCESS),
        Command::Tokens(cmd) => admin::tokens(cmd).await.map(|()| ExitCode::SUCCESS),
        Command::Invite(cmd) => invite::invite(cmd).await.map(|()| ExitCode::SUCCESS),
        Command::Chat(args) => chat::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Audit(cmd) => audit::audit(cmd).await,
        Command::Backup(cmd) => backup::backup(cmd).await.map(|()| ExitCode::SUCCESS),
        Command::Restore(args) => backup::restore_cmd(args).await.map(|()| ExitCode::SUCCESS),
        Command::Doctor(args) => doctor::run(args).await,
        Command::Healthcheck(args) => Ok(healthcheck::run(args).await),
    }
}
