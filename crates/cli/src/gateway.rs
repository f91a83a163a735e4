//! `crewgate gateway`: open (and bootstrap) the store, bind, serve until SIGTERM/SIGINT.

use crate::StoreArgs;
use crate::context::{DB_FILE, key_note, load_key, location, open_store_with};
use anyhow::{Context, Result};
use clap::Args;
use crewgate_server::bootstrap::{self, BootstrapInput, DeclaredAgent, DeclaredUserToken};
use crewgate_server::{AppState, router, serve};
use crewgate_store::StoreLocation;
use secrecy::ExposeSecret;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;
use tracing_subscriber::EnvFilter;

mod approvals;
pub(crate) mod onboarding;

pub const DEFAULT_BIND: &str = "127.0.0.1:18789";

#[derive(Debug, Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// JSONC config file (see `crewgate init`).
    #[arg(long, env = "CREWGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on; overrides gateway.bind/gateway.port from the config.
    #[arg(long, env = "CREWGATE_BIND")]
    pub bind: Option<SocketAddr>,
}

pub async fn run(args: GatewayArgs) -> Result<()> {
    let started = Instant::now();
    init_tracing();
    let config = match &args.config {
        Some(path) => {
            let cfg = crewgate_config::Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
            for w in &cfg.warnings {
                tracing::warn!("{w}");
            }
            Some(cfg)
        }
        None => None,
    };

    let (key, key_origin) = load_key(&args.store)?;
    if let Some(note) = key_note(&key_origin) {
        eprintln!("{note}");
    }
    // A fresh machine restores the newest backup before the store is created. If restore fails we
    // stop: starting empty would begin a new generation and retention could delete the real backups.
    let sqlite = matches!(location(&args.store)?, StoreLocation::Sqlite { .. });
    let backup_settings = if sqlite { crate::backup::settings(config.as_ref())? } else { None };
    if let Some(s) = &backup_settings
        && let Some(report) = crewgate_backup::restore_if_empty(&args.store.data_dir, s, &key)
            .await
            .context("restoring the newest backup into the empty data dir")?
    {
        tracing::info!(generation = %report.generation, sequence = report.sequence, bytes = report.bytes, "restored from S3");
    }
    let store = open_store_with(&args.store, &key).await?;
    let replicator = match backup_settings {
        Some(s) => Some(
            crewgate_backup::Replicator::start(&args.store.data_dir.join(DB_FILE), s, &key)
                .await
                .context("starting the S3 backup")?,
        ),
        None => None,
    };
    let input = config.as_ref().map(declared_from_config).transpose()?.unwrap_or_default();
    let report = bootstrap::bootstrap(store.as_ref(), input).await.context("bootstrapping the store")?;
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    if !report.created_agents.is_empty() {
        tracing::info!(agents = ?report.created_agents.iter().map(ToString::to_string).collect::<Vec<_>>(), "created agents");
    }

    let bind = match (args.bind, &config) {
        (Some(b), _) => b,
        (None, Some(cfg)) => cfg.gateway.socket_addr(),
        (None, None) => DEFAULT_BIND.parse().context("parsing the default bind address")?,
    };
    let listener = tokio::net::TcpListener::bind(bind).await.with_context(|| {
        format!("cannot listen on {bind}: is another gateway running? pick another with --bind")
    })?;
    let local = listener.local_addr().context("reading the bound address")?;
    let base_url = config.as_ref().and_then(public_url).unwrap_or_else(|| format!("http://{local}"));

    // The only place a token secret is ever printed: once, on the first start.
    if let Some(token) = &report.new_admin_token {
        println!("admin token: {}", token.secret.expose_secret());
        println!("dashboard: {base_url}/?token={}", token.secret.expose_secret());
        println!("(shown once: store the admin token now; `crewgate tokens issue --admin` makes another)");
    } else {
        println!("dashboard: {base_url}/");
    }
    println!("listening on http://{local} (ready in {} ms)", started.elapsed().as_millis());

    let onboarding = std::sync::Arc::new(onboarding::onboarding(config.as_ref(), &base_url)?);
    let mut tools = approvals::tools(config.as_ref())?;
    crewgate_server::onboarding::tools::register_admin_tools(&mut tools, onboarding.clone())
        .context("registering the orchestrator's tools")?;
    let runtime = std::sync::Arc::new(crewgate_runtime::Runtime::new(
        store.clone(),
        runtime_settings(config.as_ref()),
        tools,
    ));
    // Agents may message each other and run background tasks (the runtime's own tools).
    runtime.enable_inter_agent();
    // Settle writes a previous process left half-done before anything new can start.
    let recovered = runtime.recover_proposals().await.context("recovering interrupted proposals")?;
    if recovered != crewgate_runtime::RecoveryReport::default() {
        tracing::warn!(?recovered, "settled proposals interrupted by the previous stop");
    }
    let _sweeper = runtime.spawn_sweeper();
    let app = router(
        AppState::with_runtime(store, runtime).with_backup(replicator.clone()).with_onboarding(onboarding),
    );
    serve(listener, app, shutdown_signal()).await.context("serving HTTP")?;
    if let Some(r) = replicator {
        // Graceful stop flushes the last changes to S3 (bounded; the outcome is logged).
        if let Err(e) = r.shutdown().await {
            tracing::error!(error = %e, "the last changes could not be flushed to S3; they are still in the local store");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_unset| EnvFilter::new("info"));
    // Ignore the error when a subscriber is already set (only possible in tests).
    let _already_set =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// Turns the config's declarations into bootstrap input (the server crate does not know the
/// config format).
fn declared_from_config(cfg: &crewgate_config::Config) -> Result<BootstrapInput> {
    let mut agents = Vec::with_capacity(cfg.agents.list.len());
    for a in &cfg.agents.list {
        agents.push(DeclaredAgent {
            id: a.id.clone(),
            name: Some(a.display_name().to_owned()),
            kind: a.effective_kind(),
            owner_email: a.owner.as_ref().map(|e| e.as_str().to_owned()),
            settings: serde_json::to_value(a).context("serialising agent settings")?,
        });
    }
    Ok(BootstrapInput {
        admin_token: cfg.gateway.auth.token.clone().filter(|t| !t.expose_secret().is_empty()),
        agents,
        user_tokens: cfg
            .gateway
            .auth
            .user_tokens
            .iter()
            .map(|t| DeclaredUserToken { token: t.token.clone(), agent_id: t.agent_id.clone() })
            .collect(),
    })
}

fn public_url(cfg: &crewgate_config::Config) -> Option<String> {
    cfg.gateway.public_url.as_ref().map(|u| u.as_str().trim_end_matches('/').to_owned())
}

/// LLM provider, key and default model from `llm.*`; without a config (or key), RedPill with
/// `REDPILL_API_KEY` from the environment.
fn runtime_settings(cfg: Option<&crewgate_config::Config>) -> crewgate_runtime::RuntimeSettings {
    let mut s = crewgate_runtime::RuntimeSettings::default();
    if let Some(cfg) = cfg {
        s.llm.base_url = cfg.llm.base_url.as_str().to_owned();
        s.llm.api_key = cfg.llm.api_key.clone();
        s.llm.timeout = cfg.llm.timeout();
        s.default_model = cfg.llm.model.primary.clone();
        s.approvals = approvals::settings(cfg);
    }
    s.llm.api_key = s.llm.api_key.filter(|k| !k.expose_secret().trim().is_empty()).or_else(|| {
        std::env::var("REDPILL_API_KEY")
            .ok()
            .filter(|k| !k.trim().is_empty())
            .map(secrecy::SecretString::from)
    });
    s
}
