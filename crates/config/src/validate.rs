//! Checks that span several values (uniqueness, references) and non-fatal warnings. Runs after
//! the typed deserialization succeeded; positions come from the tree, walked in the same order.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;

use secrecy::ExposeSecret;

use crate::error::{Problem, line_col};
use crate::model::Config;
use crate::path;
use crate::tree::Node;
use crate::values::{SkillId, is_domain};

pub(crate) struct Findings {
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

pub(crate) fn check(config: &mut Config, root: &Node, text: &str) -> Findings {
    let mut f = Checker { root, text, errors: Vec::new(), warnings: Vec::new() };
    // Domains first: the agent checks compare owners with the normalised list.
    f.onboarding(config);
    f.agents(config);
    f.user_tokens(config);
    f.skills(config);
    f.plaintext_secrets();
    f.public_url(config);
    let Checker { mut errors, mut warnings, .. } = f;
    errors.sort_by_key(|p| p.pos);
    warnings.sort_by_key(|p| p.pos);
    Findings { errors, warnings }
}

/// `["a", "b"]` → `a.b`, with the same rendering as deserialization errors.
fn path_of(keys: &[&str]) -> String {
    keys.iter().fold(String::new(), |p, k| path::key(&p, k))
}

struct Checker<'a> {
    root: &'a Node,
    text: &'a str,
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Checker<'_> {
    fn line(&self, pos: usize) -> usize {
        line_col(self.text, pos).0
    }

    fn pos(&self, keys: &[&str]) -> usize {
        self.root.at(keys).map_or(self.root.pos, |n| n.pos)
    }

    fn agents(&mut self, config: &Config) {
        let list = self.root.at(&["agents", "list"]);
        let mut first_by_id: HashMap<&str, usize> = HashMap::new();
        let mut first_default: Option<&str> = None;
        for (i, agent) in config.agents.list.iter().enumerate() {
            let base = path::index("agents.list", i);
            let node = list.and_then(|l| l.elements().get(i));
            let field_pos =
                |key: &str| node.map_or(self.root.pos, |n| n.get(key).map_or(n.pos, |e| e.value.pos));
            let id_pos = field_pos("id");
            match first_by_id.entry(agent.id.as_str()) {
                MapEntry::Occupied(first) => {
                    let line = self.line(*first.get());
                    self.errors.push(
                        Problem::new(
                            id_pos,
                            path::key(&base, "id"),
                            format!("duplicate agent id \"{}\"", agent.id),
                        )
                        .hint(format!("first defined at line {line}")),
                    );
                }
                MapEntry::Vacant(slot) => {
                    slot.insert(id_pos);
                }
            }
            if agent.default {
                match first_default {
                    None => first_default = Some(agent.id.as_str()),
                    Some(first) => self.warnings.push(
                        Problem::new(
                            field_pos("default"),
                            path::key(&base, "default"),
                            "another agent is already the default",
                        )
                        .hint(format!("the first one wins: \"{first}\"")),
                    ),
                }
            }
            if let Some(owner) = &agent.owner
                && !config.onboarding.domain_allowed(owner)
            {
                self.warnings.push(
                    Problem::new(field_pos("owner"), path::key(&base, "owner"), "owner is outside onboarding.allowedDomains")
                        .hint("this person could not sign in with Google to approve; fix the address or the domain list"),
                );
            }
        }
    }

    fn user_tokens(&mut self, config: &Config) {
        let Some(node) = self.root.at(&["gateway", "auth", "userTokens"]) else {
            return;
        };
        let mut declared: Vec<&str> = Vec::new();
        for agent in &config.agents.list {
            if !declared.contains(&agent.id.as_str()) {
                declared.push(agent.id.as_str());
            }
        }
        let admin = config.gateway.auth.token.as_ref().map(|t| t.expose_secret());
        let mut first_by_token: HashMap<&str, usize> = HashMap::new();
        // Deserialization kept exactly the entries with a non-empty token, in order.
        let entries = node.entries().iter().filter(|e| !e.key.is_empty());
        for (entry, token) in entries.zip(&config.gateway.auth.user_tokens) {
            let entry_path = path::key(path::USER_TOKENS, &entry.raw_key);
            if !entry.raw_key.contains("${") {
                self.warnings.push(
                    Problem::new(entry.key_pos, entry_path.clone(), "plaintext token in config")
                        .hint("it will be hashed on import; prefer ${ENV}"),
                );
            }
            let secret = token.token.expose_secret();
            if admin == Some(secret) {
                self.errors.push(
                    Problem::new(entry.key_pos, entry_path.clone(), "this token is also the admin token")
                        .hint("give every person their own token"),
                );
            }
            match first_by_token.entry(secret) {
                MapEntry::Occupied(first) => {
                    let line = self.line(*first.get());
                    self.errors.push(
                        Problem::new(entry.key_pos, entry_path.clone(), "the same token is listed twice")
                            .hint(format!("first at line {line}")),
                    );
                }
                MapEntry::Vacant(slot) => {
                    slot.insert(entry.key_pos);
                }
            }
            if !declared.contains(&token.agent_id.as_str()) {
                let (pos, path) = match entry.value.get("agentId") {
                    Some(id) => (id.value.pos, path::key(&entry_path, &id.raw_key)),
                    None => (entry.value.pos, entry_path),
                };
                let hint = if declared.is_empty() {
                    "declare it in agents.list (no agents are declared)".to_owned()
                } else {
                    format!("declare it in agents.list (declared: {})", declared.join(", "))
                };
                self.errors.push(
                    Problem::new(pos, path, format!("unknown agent id \"{}\"", token.agent_id)).hint(hint),
                );
            }
        }
    }

    fn skills(&mut self, config: &Config) {
        let Some(node) = self.root.at(&["skills", "installed"]) else {
            return;
        };
        let mut first: HashMap<SkillId, (usize, &str)> = HashMap::new();
        for entry in node.entries() {
            let Ok(id) = entry.key.parse::<SkillId>() else { continue };
            let entry_path = path::key("skills.installed", &entry.raw_key);
            if let Some((pos, raw)) = first.get(&id) {
                let line = self.line(*pos);
                self.errors.push(
                    Problem::new(entry.key_pos, entry_path, format!("skill {id} is listed twice"))
                        .hint(format!("first as \"{raw}\" at line {line}")),
                );
                continue;
            }
            first.insert(id, (entry.key_pos, &entry.raw_key));
            if !config.skill_enabled(id) {
                continue;
            }
            let installed = &config.skills.installed;
            let missing: Vec<&str> = match id {
                SkillId::Gog => {
                    let c = installed.gog.as_ref().map(|s| &s.config);
                    let mut m = Vec::new();
                    if c.is_none_or(|c| c.client_id.is_none()) {
                        m.push("config.clientId");
                    }
                    if c.is_none_or(|c| c.client_secret.is_none()) {
                        m.push("config.clientSecret");
                    }
                    m
                }
                SkillId::Notion | SkillId::AttioCrm => {
                    let skill = if id == SkillId::Notion { &installed.notion } else { &installed.attio_crm };
                    if skill.as_ref().is_none_or(|s| s.config.api_key.is_none()) {
                        vec!["config.apiKey"]
                    } else {
                        vec![]
                    }
                }
            };
            if !missing.is_empty() {
                let verb = if missing.len() == 1 { "is" } else { "are" };
                self.warnings.push(
                    Problem::new(
                        entry.key_pos,
                        entry_path,
                        format!("skill {id} is enabled but {} {verb} not set", missing.join(" and ")),
                    )
                    .hint("its tools will fail until then; set it or write \"enabled\": false"),
                );
            }
        }
    }

    fn onboarding(&mut self, config: &mut Config) {
        let list = self.root.at(&["onboarding", "allowedDomains"]);
        for (i, domain) in config.onboarding.allowed_domains.iter_mut().enumerate() {
            let normalised = domain.trim().trim_start_matches('@').to_ascii_lowercase();
            if is_domain(&normalised) {
                *domain = normalised;
            } else {
                let pos = list.and_then(|l| l.elements().get(i)).map_or(self.root.pos, |n| n.pos);
                self.errors.push(
                    Problem::new(
                        pos,
                        path::index("onboarding.allowedDomains", i),
                        format!("invalid domain {domain:?}"),
                    )
                    .hint("write a domain such as company.com"),
                );
            }
        }
        let o = &config.onboarding;
        if o.self_service && o.allowed_domains.is_empty() && !o.require_admin_approval {
            self.warnings.push(
                Problem::new(
                    self.pos(&["onboarding", "selfService"]),
                    "onboarding.selfService",
                    "self-service onboarding is open to any Google account",
                )
                .hint("set onboarding.allowedDomains or requireAdminApproval"),
            );
        }
    }

    /// Secrets belong in the environment; a literal one ends up in backups, diffs and screenshares.
    fn plaintext_secrets(&mut self) {
        let mut secrets: Vec<(&Node, String)> = Vec::new();
        for keys in [
            &["llm", "apiKey"][..],
            &["integrations", "smtp", "password"],
            &["backup", "s3", "secretAccessKey"],
        ] {
            if let Some(node) = self.root.at(keys) {
                secrets.push((node, path_of(keys)));
            }
        }
        if let Some(skills) = self.root.at(&["skills", "installed"]) {
            for entry in skills.entries() {
                for key in ["clientSecret", "apiKey"] {
                    if let Some(node) = entry.value.at(&["config", key]) {
                        let p = path::key(
                            &path::key(&path::key("skills.installed", &entry.raw_key), "config"),
                            key,
                        );
                        secrets.push((node, p));
                    }
                }
            }
        }
        for (node, p) in secrets {
            if node.is_plaintext() {
                self.warnings
                    .push(Problem::new(node.pos, p, "plaintext secret in config").hint("prefer ${ENV}"));
            }
        }
        if let Some(node) = self.root.at(&["gateway", "auth", "token"])
            && node.is_plaintext()
        {
            self.warnings.push(
                Problem::new(node.pos, "gateway.auth.token", "plaintext token in config")
                    .hint("it will be hashed on import; prefer ${ENV}"),
            );
        }
    }

    fn public_url(&mut self, config: &Config) {
        if let Some(url) = &config.gateway.public_url
            && !url.is_https()
            && !url.is_loopback()
        {
            self.warnings.push(
                Problem::new(
                    self.pos(&["gateway", "publicUrl"]),
                    "gateway.publicUrl",
                    "publicUrl is not https",
                )
                .hint("dashboard session cookies are Secure-only, so browsers drop them over plain http"),
            );
        }
    }
}
