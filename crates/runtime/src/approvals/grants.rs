//! Autonomy grants: which writes may run without asking. Grants come only from the config file
//! (an admin) and from the grants API (the owner or an admin); nothing a model says or a tool
//! returns can create or widen one.
//!
//! A grant matches a write when all of these hold:
//! - its `action` (a glob, `*` = any run of characters) matches the tool name or the tool's
//!   action family (`gmail_send` / `gmail.send`);
//! - every `match` entry matches: the glob must match *every* value of that key, and there must
//!   be at least one value. Keys: `to` or `recipients` = every address in to/cc/bcc/attendees
//!   (so a Bcc cannot slip past a `*@company.com` grant); `targets` = what the tool's summary
//!   names (recipients, page/database ids, object slugs, spreadsheet ids); any other key = that
//!   argument (a string, or each string of an array);
//! - it is not revoked, not expired, and its daily cap (auto-runs in the last 24 h) is not used up.

use crewgate_core::{AgentId, Millis, canonical_json};
use crewgate_store::approvals::Grant;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Length of the rolling window of a daily cap.
pub const DAY_MS: Millis = 24 * 60 * 60 * 1000;

/// Graduated autonomy of one agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Autonomy {
    /// 1: always ask (grants are kept but not applied). 2: grants apply. 3: reserved, behaves
    /// like 2.
    pub level: u8,
    /// Grants declared in the config file (ids from [`config_grant`]).
    pub grants: Vec<Grant>,
}

impl Default for Autonomy {
    fn default() -> Self {
        Self { level: 1, grants: Vec::new() }
    }
}

impl Autonomy {
    /// Whether grants are honoured at this level.
    pub fn grants_apply(&self) -> bool {
        self.level >= 2
    }
}

/// A grant from the config file, with an id that stays the same across restarts (daily caps
/// are counted by grant id).
pub fn config_grant(
    agent: &AgentId,
    action: &str,
    match_args: &BTreeMap<String, String>,
    expires_at: Option<Millis>,
    daily_cap: Option<u32>,
) -> Grant {
    let match_args: serde_json::Map<String, Value> =
        match_args.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    let mut h = Sha256::new();
    for part in [
        agent.as_str(),
        action,
        &canonical_json(&Value::Object(match_args.clone())),
        &expires_at.map(|e| e.to_string()).unwrap_or_default(),
        &daily_cap.map(|c| c.to_string()).unwrap_or_default(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let digest = hex::encode(h.finalize());
    Grant {
        id: format!("config-{}", &digest[..16]),
        agent_id: agent.clone(),
        action: action.to_owned(),
        match_args,
        expires_at,
        daily_cap: daily_cap.map(i64::from),
        created_by: "config".into(),
        created_at: 0,
        revoked_at: None,
    }
}

/// Case-insensitive glob with `*` as the only wildcard.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    // Iterative matcher with one backtrack point (linear enough for short patterns).
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// `Ann <ann@x.com>` → `ann@x.com`.
fn bare_address(s: &str) -> String {
    let s = s.trim();
    match (s.rfind('<'), s.ends_with('>')) {
        (Some(i), true) => s[i + 1..s.len() - 1].trim().to_lowercase(),
        _ => s.to_lowercase(),
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| match i {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            })
            .collect(),
        Some(Value::Number(n)) => vec![n.to_string()],
        Some(Value::Bool(b)) => vec![b.to_string()],
        _ => Vec::new(),
    }
}

/// The values a `match` key is checked against.
fn values_for(key: &str, args: &Value, targets: &[String]) -> Vec<String> {
    match key {
        "to" | "recipients" => ["to", "cc", "bcc", "attendees"]
            .iter()
            .flat_map(|k| strings(args.get(*k)))
            .map(|a| bare_address(&a))
            .collect(),
        "targets" => targets.to_vec(),
        other => strings(args.get(other)),
    }
}

/// Whether `g` covers this write, apart from its daily cap (which needs the store).
pub fn grant_covers(
    g: &Grant,
    tool: &str,
    family: Option<&str>,
    args: &Value,
    targets: &[String],
    now: Millis,
) -> bool {
    if g.revoked_at.is_some() || g.expires_at.is_some_and(|e| e <= now) {
        return false;
    }
    let action = g.action.trim();
    if action.is_empty() || !(glob(action, tool) || family.is_some_and(|f| glob(action, f))) {
        return false;
    }
    g.match_args.iter().all(|(key, pattern)| {
        let Some(pattern) = pattern.as_str() else { return false };
        let values = values_for(key, args, targets);
        !values.is_empty() && values.iter().all(|v| glob(pattern, v))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn grant(action: &str, m: &[(&str, &str)]) -> Grant {
        let map: BTreeMap<String, String> = m.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        config_grant(&AgentId::parse("a").unwrap(), action, &map, None, None)
    }

    #[test]
    fn globs() {
        assert!(glob("*@company.com", "Ann@Company.com"));
        assert!(!glob("*@company.com", "ann@company.com.evil.io"));
        assert!(!glob("*@company.com", "ann@evilcompany.co"));
        assert!(glob("gmail.*", "gmail.send"));
        assert!(glob("a*b*c", "aXXbYYc") && !glob("a*b*c", "aXXbYY"));
        assert!(glob("*", "") && glob("", "") && !glob("", "x"));
    }

    #[test]
    fn action_and_recipients() {
        let g = grant("gmail.send", &[("to", "*@company.com")]);
        let ok = json!({"to": ["Bob <bob@company.com>"], "body": "hi"});
        assert!(grant_covers(&g, "gmail_send", Some("gmail.send"), &ok, &[], 0));
        // A Bcc outside the domain is a recipient too.
        let bcc = json!({"to": ["bob@company.com"], "bcc": ["x@evil.com"], "body": "hi"});
        assert!(!grant_covers(&g, "gmail_send", Some("gmail.send"), &bcc, &[], 0));
        // No recipients (send a draft) → not covered.
        assert!(!grant_covers(&g, "gmail_send", Some("gmail.send"), &json!({"draft_id": "d"}), &[], 0));
        // Another action.
        assert!(!grant_covers(&g, "gmail_draft_create", Some("gmail.draft"), &ok, &[], 0));
        // By tool name too.
        let by_tool = grant("gmail_send", &[]);
        assert!(grant_covers(&by_tool, "gmail_send", Some("gmail.send"), &json!({}), &[], 0));
    }

    #[test]
    fn expiry_revocation_and_targets() {
        let mut g = grant("notion.update", &[("targets", "abc*")]);
        let targets = vec!["abc123".to_owned()];
        assert!(grant_covers(&g, "notion_append", Some("notion.update"), &json!({}), &targets, 10));
        let other = vec!["abc123".to_owned(), "zzz".to_owned()];
        assert!(!grant_covers(&g, "notion_append", Some("notion.update"), &json!({}), &other, 10));
        g.expires_at = Some(10);
        assert!(!grant_covers(&g, "notion_append", Some("notion.update"), &json!({}), &targets, 10));
        g.expires_at = None;
        g.revoked_at = Some(5);
        assert!(!grant_covers(&g, "notion_append", Some("notion.update"), &json!({}), &targets, 10));
    }

    #[test]
    fn config_grant_ids_are_stable_and_distinct() {
        let a = grant("gmail.send", &[("to", "*@company.com")]);
        let b = grant("gmail.send", &[("to", "*@company.com")]);
        let c = grant("gmail.send", &[("to", "*@other.com")]);
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert!(a.id.starts_with("config-"));
    }
}
