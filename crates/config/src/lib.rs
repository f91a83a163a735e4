//! crewgate's configuration file: JSONC with `${VAR}` / `${VAR:-default}` expansion in every
//! string, validated into typed structs. Every error points at `FILE:LINE:COL` and the key path;
//! see the crate README for the exact format.
//!
//! Pipeline: text → JSONC AST (byte ranges) → located tree with expanded strings (`tree`) →
//! serde over that tree (`de`), so type errors keep their position → cross-field checks and
//! warnings (`validate`).

mod de;
mod env;
mod error;
mod model;
mod path;
mod tree;
mod validate;
mod values;

use std::path::Path;

pub use env::{EnvLookup, ProcessEnv};
pub use error::{ConfigError, Diagnostic};
pub use model::{
    AgentConfig, AgentsConfig, ApiKeySkill, ApiKeySkillConfig, ApprovalsConfig, AttioIntegration, AuthConfig,
    Autonomy, BackupConfig, Config, DEFAULT_ATTIO_API_BASE, DEFAULT_GOOGLE_AUTH_URL,
    DEFAULT_GOOGLE_TOKEN_URL, DEFAULT_LLM_BASE_URL, DEFAULT_MODEL, DEFAULT_NOTION_API_BASE, DEFAULT_PORT,
    GatewayConfig, GogSkill, GogSkillConfig, GoogleIntegration, Grant, Identity, InstalledSkills,
    IntegrationsConfig, LlmConfig, NotionIntegration, OnboardingConfig, S3Config, SkillsConfig, SmtpConfig,
    Subagents, UserToken,
};
pub use values::{
    AgentSelector, AutonomyLevel, Email, HttpUrl, ModelRef, SkillId, Timestamp, UnknownSkill, UrlError,
};

/// The file `crewgate init` writes: every setting with a comment, secrets from the environment.
/// Parses with an empty environment (tested), with warnings only for skills lacking credentials.
pub const STARTER_CONFIG: &str = include_str!("starter.jsonc");

/// Default config file name.
pub const DEFAULT_FILE_NAME: &str = "crewgate.jsonc";

impl Config {
    /// Reads and parses `path`, expanding `${VAR}` from the process environment. Messages name
    /// the file as `path` is written.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, &ProcessEnv)
    }

    pub fn load_with_env(path: &Path, env: &dyn EnvLookup) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, &path.display().to_string(), env)
    }

    /// Parses config text. `file_name` is only used in messages.
    ///
    /// All `${VAR}` and duplicate-key problems are reported together, then the first type error,
    /// then all cross-field errors (duplicate agent ids, unknown agents in `userTokens`, …).
    pub fn parse(text: &str, file_name: &str, env: &dyn EnvLookup) -> Result<Config, ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let invalid = |problems: Vec<error::Problem>| {
            ConfigError::Invalid(problems.into_iter().map(|p| p.locate(file_name, text)).collect())
        };
        let root = tree::parse(text, env).map_err(invalid)?;
        let mut config: Config = de::from_tree(&root).map_err(|p| invalid(vec![p]))?;
        let findings = validate::check(&mut config, &root, text);
        if !findings.errors.is_empty() {
            return Err(invalid(findings.errors));
        }
        config.warnings = findings.warnings.into_iter().map(|p| p.locate(file_name, text)).collect();
        Ok(config)
    }
}
