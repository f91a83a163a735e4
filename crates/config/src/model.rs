//! The typed configuration. Every object rejects unknown keys (a typo must not silently turn a
//! setting off) and every section is optional with the defaults below.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crewgate_core::{AgentId, AgentKind};
use secrecy::SecretString;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::Diagnostic;
use crate::values::{
    AgentSelector, AutonomyLevel, Email, HttpUrl, ModelRef, SkillId, Timestamp, agent_id, de_agent_id,
    de_bind, de_nonempty, de_nonzero_u32, de_nonzero_u64, de_port,
};

pub const DEFAULT_PORT: u16 = 18789;
pub const DEFAULT_LLM_BASE_URL: &str = "https://api.redpill.ai/v1";
pub const DEFAULT_MODEL: &str = "deepseek/deepseek-v3.2";
pub const DEFAULT_GOOGLE_AUTH_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";
pub const DEFAULT_GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
pub const DEFAULT_NOTION_API_BASE: &str = "https://api.notion.com/v1";
pub const DEFAULT_ATTIO_API_BASE: &str = "https://api.attio.com/v2";

#[cfg(test)]
pub(crate) const BUILT_IN_URLS: [&str; 5] = [
    DEFAULT_LLM_BASE_URL,
    DEFAULT_GOOGLE_AUTH_URL,
    DEFAULT_GOOGLE_TOKEN_URL,
    DEFAULT_NOTION_API_BASE,
    DEFAULT_ATTIO_API_BASE,
];

/// The whole config file. `Config::default()` is what `{}` parses to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Config {
    pub gateway: GatewayConfig,
    pub llm: LlmConfig,
    pub agents: AgentsConfig,
    pub skills: SkillsConfig,
    pub integrations: IntegrationsConfig,
    pub onboarding: OnboardingConfig,
    pub backup: BackupConfig,
    pub approvals: ApprovalsConfig,
    /// Non-fatal findings (plaintext secrets, enabled skills without credentials, …), in file
    /// order. Print them at start-up.
    #[serde(skip)]
    pub warnings: Vec<Diagnostic>,
}

impl Config {
    /// The first agent with `"default": true`, else the first agent (OpenClaw's rule).
    pub fn default_agent(&self) -> Option<&AgentConfig> {
        self.agents.list.iter().find(|a| a.default).or_else(|| self.agents.list.first())
    }

    pub fn agent(&self, id: &str) -> Option<&AgentConfig> {
        self.agents.list.iter().find(|a| a.id.as_str() == id)
    }

    pub fn skill_enabled(&self, id: SkillId) -> bool {
        self.skills.installed.is_enabled(id)
    }
}

// ---------------------------------------------------------------------------------------------
// gateway

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct GatewayConfig {
    #[serde(deserialize_with = "de_port")]
    pub port: u16,
    /// An IP address; `"loopback"` and `"lan"` (OpenClaw's names) mean 127.0.0.1 and 0.0.0.0.
    #[serde(deserialize_with = "de_bind")]
    pub bind: IpAddr,
    /// The origin people reach the gateway at (invite links, OAuth redirect URIs).
    pub public_url: Option<HttpUrl>,
    pub auth: AuthConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            port: DEFAULT_PORT,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            public_url: None,
            auth: AuthConfig::default(),
        }
    }
}

impl GatewayConfig {
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AuthConfig {
    /// Admin token to import (hashed on import). Empty or absent: the gateway generates one.
    pub token: Option<SecretString>,
    /// Pre-issued dashboard tokens, in file order. Entries whose token expands to `""` are
    /// skipped, so `"${ALICE_TOKEN:-}": "alice"` is off until the variable is set.
    #[serde(deserialize_with = "de_user_tokens")]
    pub user_tokens: Vec<UserToken>,
}

/// One `gateway.auth.userTokens` entry: `"<token>": "agent-id"` or `"<token>": { "agentId": … }`.
#[derive(Debug, Clone)]
pub struct UserToken {
    pub token: SecretString,
    pub agent_id: AgentId,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UserTokenObject {
    #[serde(deserialize_with = "de_agent_id")]
    agent_id: AgentId,
}

struct UserTokenTarget(AgentId);

impl<'de> Deserialize<'de> for UserTokenTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TargetVisitor;
        impl<'de> Visitor<'de> for TargetVisitor {
            type Value = UserTokenTarget;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an agent id or an object with agentId")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<UserTokenTarget, E> {
                agent_id(s).map(UserTokenTarget)
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<UserTokenTarget, M::Error> {
                let o = UserTokenObject::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(UserTokenTarget(o.agent_id))
            }
        }
        d.deserialize_any(TargetVisitor)
    }
}

fn de_user_tokens<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<UserToken>, D::Error> {
    struct TokensVisitor;
    impl<'de> Visitor<'de> for TokensVisitor {
        type Value = Vec<UserToken>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object mapping tokens to agent ids")
        }
        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Vec<UserToken>, M::Error> {
            let mut out = Vec::new();
            while let Some(token) = map.next_key::<String>()? {
                let UserTokenTarget(agent_id) = map.next_value()?;
                if !token.is_empty() {
                    out.push(UserToken { token: token.into(), agent_id });
                }
            }
            Ok(out)
        }
    }
    d.deserialize_map(TokensVisitor)
}

// ---------------------------------------------------------------------------------------------
// llm

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LlmConfig {
    /// OpenAI-compatible base URL, without `/chat/completions`.
    pub base_url: HttpUrl,
    pub api_key: Option<SecretString>,
    /// Default model for agents that do not name one.
    pub model: ModelRef,
    #[serde(deserialize_with = "de_nonzero_u64")]
    pub timeout_secs: u64,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            base_url: HttpUrl::known(DEFAULT_LLM_BASE_URL),
            api_key: None,
            model: ModelRef::new(DEFAULT_MODEL),
            timeout_secs: 120,
        }
    }
}

impl LlmConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

// ---------------------------------------------------------------------------------------------
// agents

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AgentsConfig {
    pub list: Vec<AgentConfig>,
}

/// One `agents.list[]` entry: OpenClaw's `AgentEntrySchema` subset plus our `owner`, `kind`,
/// `identity.personality` and `autonomy`. Serializes back to the same shape (for the store).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentConfig {
    #[serde(deserialize_with = "de_agent_id")]
    pub id: AgentId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub default: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    #[serde(default)]
    pub identity: Identity,
    /// `None`: use `llm.model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
    /// The person who approves this agent's writes (our extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Email>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<AgentKind>,
    #[serde(default)]
    pub subagents: Subagents,
    /// Skill allowlist; `None` means every enabled skill, `Some([])` none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skills: Option<Vec<SkillId>>,
    #[serde(default)]
    pub autonomy: Autonomy,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl AgentConfig {
    /// The configured kind; if absent, an agent with an owner is that person's worker and one
    /// without is an orchestrator.
    pub fn effective_kind(&self) -> AgentKind {
        self.kind.unwrap_or(if self.owner.is_some() { AgentKind::Worker } else { AgentKind::Orchestrator })
    }

    /// `name`, else `identity.name`, else the id.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().or(self.identity.name.as_deref()).unwrap_or(self.id.as_str())
    }

    /// Skill allowlist applied to what is enabled.
    pub fn may_use_skill(&self, id: SkillId) -> bool {
        self.skills.as_ref().is_none_or(|list| list.contains(&id))
    }

    /// Whether this agent may spawn/message `other` (always itself).
    pub fn allows_agent(&self, other: &AgentId) -> bool {
        *other == self.id || self.subagents.allow_agents.iter().any(|s| s.matches(other))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Identity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Persona text (our extension; OpenClaw keeps it in SOUL.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub personality: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub theme: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    /// Workspace-relative path, http(s) URL or data: URI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Subagents {
    /// Agents this one may reach; `["*"]` = any. Empty (default): only itself.
    pub allow_agents: Vec<AgentSelector>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Autonomy {
    pub level: AutonomyLevel,
    pub grants: Vec<Grant>,
}

/// A rule letting a matching write run without asking: `"gmail.send"` or
/// `{ "action": "gmail.send", "match": { "to": "*@company.com" }, "expiresAt": "…", "dailyCap": 20 }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// Tool name the grant covers.
    pub action: String,
    /// Argument name → glob pattern (`*` wildcard); all must match. Empty: any arguments.
    #[serde(rename = "match", skip_serializing_if = "BTreeMap::is_empty")]
    pub match_args: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// At most this many auto-approved runs per day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily_cap: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GrantObject {
    #[serde(deserialize_with = "de_nonempty")]
    action: String,
    #[serde(default, rename = "match")]
    match_args: BTreeMap<String, String>,
    #[serde(default)]
    expires_at: Option<Timestamp>,
    #[serde(default)]
    daily_cap: Option<u32>,
}

impl<'de> Deserialize<'de> for Grant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct GrantVisitor;
        impl<'de> Visitor<'de> for GrantVisitor {
            type Value = Grant;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an action name or an object with action, match, expiresAt, dailyCap")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Grant, E> {
                if s.trim().is_empty() {
                    return Err(E::custom("must not be empty"));
                }
                Ok(Grant {
                    action: s.to_owned(),
                    match_args: BTreeMap::new(),
                    expires_at: None,
                    daily_cap: None,
                })
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Grant, M::Error> {
                let o = GrantObject::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Grant {
                    action: o.action,
                    match_args: o.match_args,
                    expires_at: o.expires_at,
                    daily_cap: o.daily_cap,
                })
            }
        }
        d.deserialize_any(GrantVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// skills

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct SkillsConfig {
    pub installed: InstalledSkills,
}

/// `skills.installed`, keyed by ClawHub slug or short name (`"steipete/gog"` or `"gog"`).
#[derive(Debug, Clone, Default)]
pub struct InstalledSkills {
    pub gog: Option<GogSkill>,
    pub notion: Option<ApiKeySkill>,
    pub attio_crm: Option<ApiKeySkill>,
}

impl InstalledSkills {
    /// Listed and not `"enabled": false`.
    pub fn is_enabled(&self, id: SkillId) -> bool {
        match id {
            SkillId::Gog => self.gog.as_ref().is_some_and(|s| s.enabled),
            SkillId::Notion => self.notion.as_ref().is_some_and(|s| s.enabled),
            SkillId::AttioCrm => self.attio_crm.as_ref().is_some_and(|s| s.enabled),
        }
    }

    pub fn enabled(&self) -> Vec<SkillId> {
        SkillId::ALL.into_iter().filter(|id| self.is_enabled(*id)).collect()
    }
}

impl<'de> Deserialize<'de> for InstalledSkills {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SkillsVisitor;
        impl<'de> Visitor<'de> for SkillsVisitor {
            type Value = InstalledSkills;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object keyed by skill id")
            }
            // A skill listed under both its names is reported by validation, at the second key.
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<InstalledSkills, M::Error> {
                let mut out = InstalledSkills::default();
                while let Some(id) = map.next_key::<SkillId>()? {
                    match id {
                        SkillId::Gog => out.gog = Some(map.next_value()?),
                        SkillId::Notion => out.notion = Some(map.next_value()?),
                        SkillId::AttioCrm => out.attio_crm = Some(map.next_value()?),
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(SkillsVisitor)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct GogSkill {
    /// Listing a skill enables it unless this is `false`.
    pub enabled: bool,
    pub config: GogSkillConfig,
}

impl Default for GogSkill {
    fn default() -> Self {
        Self { enabled: true, config: GogSkillConfig::default() }
    }
}

/// Google OAuth client of the deployment (each person still signs in with their own account).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct GogSkillConfig {
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
}

/// Notion and Attio: one workspace-wide API key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ApiKeySkill {
    pub enabled: bool,
    pub config: ApiKeySkillConfig,
}

impl Default for ApiKeySkill {
    fn default() -> Self {
        Self { enabled: true, config: ApiKeySkillConfig::default() }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ApiKeySkillConfig {
    pub api_key: Option<SecretString>,
}

// ---------------------------------------------------------------------------------------------
// integrations

/// Base URLs of external services, so tests and proxies can point elsewhere.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct IntegrationsConfig {
    pub google: GoogleIntegration,
    pub notion: NotionIntegration,
    pub attio: AttioIntegration,
    /// Invite e-mails; without it invites are only shown as links.
    pub smtp: Option<SmtpConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct GoogleIntegration {
    /// Replaces the origin of every Google API host (Gmail, Calendar, Drive, Docs, Sheets,
    /// People, userinfo), keeping the real paths. `None`: the real hosts.
    pub api_base: Option<HttpUrl>,
    pub auth_url: HttpUrl,
    pub token_url: HttpUrl,
}

impl Default for GoogleIntegration {
    fn default() -> Self {
        Self {
            api_base: None,
            auth_url: HttpUrl::known(DEFAULT_GOOGLE_AUTH_URL),
            token_url: HttpUrl::known(DEFAULT_GOOGLE_TOKEN_URL),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct NotionIntegration {
    pub api_base: HttpUrl,
}

impl Default for NotionIntegration {
    fn default() -> Self {
        Self { api_base: HttpUrl::known(DEFAULT_NOTION_API_BASE) }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AttioIntegration {
    pub api_base: HttpUrl,
}

impl Default for AttioIntegration {
    fn default() -> Self {
        Self { api_base: HttpUrl::known(DEFAULT_ATTIO_API_BASE) }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SmtpConfig {
    #[serde(deserialize_with = "de_nonempty")]
    pub host: String,
    #[serde(default = "default_smtp_port", deserialize_with = "de_port")]
    pub port: u16,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretString>,
    pub from: Email,
    /// Upgrade with STARTTLS (port 587); `false` means implicit TLS is expected (port 465).
    #[serde(default = "yes")]
    pub starttls: bool,
    /// No TLS at all: only for a relay on localhost or a trusted network.
    #[serde(default)]
    pub plaintext: bool,
}

fn default_smtp_port() -> u16 {
    587
}

fn yes() -> bool {
    true
}

// ---------------------------------------------------------------------------------------------
// approvals

/// The human approval gate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ApprovalsConfig {
    /// A pending proposal expires (and its session is told) this many hours after it was made.
    #[serde(deserialize_with = "de_nonzero_u32")]
    pub ttl_hours: u32,
    /// Let admins approve, reject or edit other people's agents' proposals. Off: only the
    /// agent's owner decides (admins still decide for agents without an owner).
    pub admins_may_decide: bool,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        Self { ttl_hours: 24, admins_may_decide: false }
    }
}

impl ApprovalsConfig {
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.ttl_hours) * 3600)
    }
}

// ---------------------------------------------------------------------------------------------
// onboarding and backup

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct OnboardingConfig {
    /// Lower-case domains whose Google accounts may join; empty: any (invites still required
    /// unless `selfService`).
    pub allowed_domains: Vec<String>,
    pub self_service: bool,
    #[serde(deserialize_with = "de_nonzero_u32")]
    pub invite_ttl_hours: u32,
    pub require_admin_approval: bool,
    /// Where onboarding notices (join requests, people who connected) are e-mailed, besides the
    /// orchestrator's Onboarding session; needs `integrations.smtp`.
    pub admin_email: Option<Email>,
}

impl Default for OnboardingConfig {
    fn default() -> Self {
        Self {
            allowed_domains: Vec::new(),
            self_service: false,
            invite_ttl_hours: 168,
            require_admin_approval: false,
            admin_email: None,
        }
    }
}

impl OnboardingConfig {
    pub fn invite_ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.invite_ttl_hours) * 3600)
    }

    /// Whether `email`'s domain may join (always, when no domains are configured).
    pub fn domain_allowed(&self, email: &Email) -> bool {
        self.allowed_domains.is_empty() || self.allowed_domains.iter().any(|d| d == email.domain())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct BackupConfig {
    /// `None`: no backup.
    pub s3: Option<S3Config>,
    #[serde(deserialize_with = "de_nonzero_u64")]
    pub interval_ms: u64,
    #[serde(deserialize_with = "de_nonzero_u32")]
    pub retain_generations: u32,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self { s3: None, interval_ms: 1000, retain_generations: 3 }
    }
}

impl BackupConfig {
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct S3Config {
    /// `None`: AWS S3 for `region`.
    #[serde(default)]
    pub endpoint: Option<HttpUrl>,
    #[serde(deserialize_with = "de_nonempty")]
    pub bucket: String,
    #[serde(default = "default_prefix")]
    pub prefix: String,
    #[serde(default)]
    pub region: Option<String>,
    /// `true` for most self-hosted servers (MinIO, s3s-fs): `endpoint/bucket/key`.
    #[serde(default)]
    pub path_style: bool,
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<SecretString>,
}

fn default_prefix() -> String {
    "crewgate/".to_owned()
}
