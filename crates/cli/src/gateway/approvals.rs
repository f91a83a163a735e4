//! The approval gate's wiring from the config file: which external tools the gateway offers
//! (`skills.installed` + `integrations.*`) and the approval settings (`approvals.*`,
//! `agents.list[].autonomy`).

use anyhow::{Context, Result};
use crewgate_config::{Config, SkillId};
use crewgate_runtime::approvals::{ApprovalSettings, Autonomy, config_grant};
use crewgate_runtime::tools::external::register_external_tools;
use crewgate_runtime::{Skill, ToolRegistry, ToolSettings, Toolbox};
use secrecy::{ExposeSecret, SecretString};

fn present(key: Option<&SecretString>) -> Option<SecretString> {
    key.filter(|k| !k.expose_secret().trim().is_empty()).cloned()
}

/// The built-in tools plus the Google, Notion and Attio tools of every enabled skill that can
/// work (Notion and Attio need their company key; Google needs each person's own connection,
/// checked per agent at every turn).
pub fn tools(cfg: Option<&Config>) -> Result<ToolRegistry> {
    let mut registry = ToolRegistry::with_defaults();
    let Some(cfg) = cfg else { return Ok(registry) };
    let installed = &cfg.skills.installed;
    let integrations = &cfg.integrations;
    let gog = installed.gog.as_ref().filter(|s| s.enabled);
    let notion_key =
        installed.notion.as_ref().filter(|s| s.enabled).and_then(|s| present(s.config.api_key.as_ref()));
    let attio_key =
        installed.attio_crm.as_ref().filter(|s| s.enabled).and_then(|s| present(s.config.api_key.as_ref()));
    for (id, usable) in [(SkillId::Notion, notion_key.is_some()), (SkillId::AttioCrm, attio_key.is_some())] {
        if cfg.skill_enabled(id) && !usable {
            tracing::warn!(skill = %id, "skill enabled without its apiKey: its tools are not offered");
        }
    }
    let settings = ToolSettings {
        google_api_base: integrations.google.api_base.as_ref().map(|u| u.as_str().to_owned()),
        google_token_url: integrations.google.token_url.as_str().to_owned(),
        google_client_id: gog.and_then(|g| g.config.client_id.clone()).filter(|c| !c.trim().is_empty()),
        google_client_secret: gog.and_then(|g| present(g.config.client_secret.as_ref())),
        notion_api_base: integrations.notion.api_base.as_str().trim_end_matches('/').to_owned(),
        notion_api_key: notion_key.clone(),
        attio_api_base: integrations.attio.api_base.as_str().trim_end_matches('/').to_owned(),
        attio_api_key: attio_key.clone(),
        ..ToolSettings::default()
    };
    let mut skills = Vec::new();
    if gog.is_some() {
        skills.push(Skill::Gog);
    }
    if notion_key.is_some() {
        skills.push(Skill::Notion);
    }
    if attio_key.is_some() {
        skills.push(Skill::AttioCrm);
    }
    if skills.is_empty() {
        return Ok(registry);
    }
    let toolbox = Toolbox::new(settings).context("building the HTTP client of the tools")?;
    let added = register_external_tools(&mut registry, &toolbox, &skills).context("registering the tools")?;
    tracing::info!(tools = added.len(), ?skills, "external tools ready");
    Ok(registry)
}

/// `approvals.*` and each config agent's autonomy (level and grants).
pub fn settings(cfg: &Config) -> ApprovalSettings {
    let mut s = ApprovalSettings {
        proposal_ttl: cfg.approvals.ttl(),
        admins_may_decide: cfg.approvals.admins_may_decide,
        ..ApprovalSettings::default()
    };
    for a in &cfg.agents.list {
        let grants = a
            .autonomy
            .grants
            .iter()
            .map(|g| {
                config_grant(
                    &a.id,
                    &g.action,
                    &g.match_args,
                    g.expires_at.as_ref().map(|t| t.millis),
                    g.daily_cap,
                )
            })
            .collect();
        s.autonomy.insert(a.id.clone(), Autonomy { level: a.autonomy.level.get(), grants });
    }
    s
}
