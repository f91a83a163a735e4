//! Prompt assembly: system prompt (base instructions + persona + context) and recent history
//! under a token budget.
//!
//! History rule (see README): history is cut into *exchanges* — a user message and everything
//! that answered it (assistant text, tool calls, tool results). The newest exchange (holding the
//! current message) is always sent; older exchanges are added newest first while they fit the
//! budget, and everything older than the first one that does not fit is dropped (never a part of
//! an exchange, so a tool result is never sent without the call it answers). Tool results of
//! earlier exchanges are clipped, because the model can call the tool again. A note tells the
//! model how many messages were left out. Nothing is summarised: dropping is predictable and
//! costs no extra model call.

use crewgate_core::{Agent, AgentKind, User};
use crewgate_llm::{ChatRequest, Message as LlmMessage, Role, ToolCall};
use crewgate_store::{Message, MessageRole};
use serde_json::Value;
use std::collections::HashSet;

const BASE: &str = include_str!("../../../prompts/base.md");
const WORKER: &str = include_str!("../../../prompts/worker.md");
const ORCHESTRATOR: &str = include_str!("../../../prompts/orchestrator.md");

/// Longest SOUL.md read from an agent's workspace.
pub(crate) const MAX_SOUL_BYTES: u64 = 16 * 1024;
/// Tool results of earlier exchanges are clipped to this many characters.
const OLD_TOOL_RESULT_CHARS: usize = 600;

/// A rough token estimate (about four characters per token for English text and JSON). Used for
/// the history budget and for reporting, never for billing.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

/// Estimated prompt tokens of a request: messages (with a small per-message overhead) and tools.
pub fn estimate_request_tokens(req: &ChatRequest) -> usize {
    let messages: usize = req.messages.iter().map(message_tokens).sum();
    let tools = if req.tools.is_empty() {
        0
    } else {
        serde_json::to_string(&req.tools).map_or(0, |s| estimate_tokens(&s))
    };
    messages + tools
}

fn message_tokens(m: &LlmMessage) -> usize {
    4 + estimate_tokens(m.text())
        + m.tool_calls
            .iter()
            .map(|c| 4 + estimate_tokens(&c.function.name) + estimate_tokens(&c.function.arguments))
            .sum::<usize>()
}

/// The settings fields the runtime reads from an agent (written by config import or the API).
#[derive(Debug, Default)]
pub(crate) struct AgentProfile {
    pub name: Option<String>,
    pub personality: Option<String>,
    pub model: Option<String>,
    pub workspace: Option<String>,
}

impl AgentProfile {
    pub(crate) fn of(agent: &Agent) -> Self {
        let s = &agent.settings;
        let text = |v: Option<&Value>| {
            v.and_then(Value::as_str).map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned)
        };
        // `model` is a string, or `{primary, fallbacks}` as the config writes it.
        let model = match s.get("model") {
            Some(Value::Object(o)) => text(o.get("primary")),
            other => text(other),
        };
        Self {
            name: text(s.pointer("/identity/name")),
            personality: text(s.pointer("/identity/personality")),
            model,
            workspace: text(s.get("workspace")),
        }
    }
}

/// The system message of every request of a turn.
pub(crate) fn system_prompt(
    agent: &Agent,
    profile: &AgentProfile,
    owner: Option<&User>,
    soul: Option<&str>,
    today: &str,
) -> String {
    let mut out = String::with_capacity(2048);
    out.push_str(BASE.trim_end());
    out.push_str("\n\n");
    out.push_str(match agent.kind {
        AgentKind::Worker => WORKER.trim_end(),
        AgentKind::Orchestrator => ORCHESTRATOR.trim_end(),
    });
    out.push_str("\n\n## Identity\n");
    let name = profile.name.as_deref().unwrap_or(&agent.name);
    out.push_str(&format!("Your name is {name}."));
    if let Some(p) = &profile.personality {
        out.push('\n');
        out.push_str(p);
    }
    if let Some(soul) = soul.map(str::trim).filter(|s| !s.is_empty()) {
        out.push_str("\n\n## Soul\n");
        out.push_str(soul);
    }
    out.push_str("\n\n## Context\n");
    if let Some(u) = owner {
        match &u.name {
            Some(n) => out.push_str(&format!("You work for {n} <{}>.\n", u.email)),
            None => out.push_str(&format!("You work for {}.\n", u.email)),
        }
    }
    out.push_str(&format!("Today (UTC) is {today}."));
    out
}

/// What [`history`] kept and dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryStats {
    pub sent_messages: usize,
    pub dropped_messages: usize,
    pub estimated_tokens: usize,
}

/// Turns stored messages (oldest first, the current user message last) into the history part of
/// the prompt under `budget` estimated tokens. `older_exist` says the store holds messages before
/// `stored` (it was read with a limit), so the note counts them as dropped too.
pub(crate) fn history(
    stored: &[Message],
    budget: usize,
    older_exist: bool,
) -> (Vec<LlmMessage>, HistoryStats) {
    let converted: Vec<LlmMessage> = repair_pairs(stored.iter().filter_map(to_llm).collect());
    let mut groups: Vec<Vec<LlmMessage>> = Vec::new();
    for m in converted {
        match groups.last_mut() {
            Some(g) if m.role != Role::User => g.push(m),
            _ => groups.push(vec![m]),
        }
    }
    let total_messages: usize = groups.iter().map(Vec::len).sum();
    let newest = groups.len().saturating_sub(1);
    let mut kept: Vec<Vec<LlmMessage>> = Vec::new();
    let mut used = 0usize;
    for (i, mut group) in groups.into_iter().enumerate().rev() {
        if i != newest {
            clip_tool_results(&mut group);
        }
        let cost: usize = group.iter().map(message_tokens).sum();
        if i != newest && used + cost > budget {
            break;
        }
        used += cost;
        kept.push(group);
    }
    kept.reverse();
    let mut out: Vec<LlmMessage> = kept.into_iter().flatten().collect();
    let dropped = total_messages - out.len();
    let stats = HistoryStats { sent_messages: out.len(), dropped_messages: dropped, estimated_tokens: used };
    if dropped > 0 || older_exist {
        let more = if older_exist { " or more" } else { "" };
        out.insert(
            0,
            LlmMessage::system(format!(
                "({dropped}{more} earlier messages of this conversation are not shown to save space; ask the person if you need them.)"
            )),
        );
    }
    (out, stats)
}

fn to_llm(m: &Message) -> Option<LlmMessage> {
    match MessageRole::parse(&m.role)? {
        MessageRole::User => Some(LlmMessage::user(&m.body)),
        MessageRole::Assistant if m.tool_calls.is_empty() => Some(LlmMessage::assistant(&m.body)),
        MessageRole::Assistant => {
            let calls = m.tool_calls.iter().map(|c| ToolCall::new(&c.id, &c.name, &c.arguments)).collect();
            let mut msg = LlmMessage::assistant_tool_calls(calls);
            if !m.body.is_empty() {
                msg.content = Some(m.body.clone());
            }
            Some(msg)
        }
        MessageRole::Tool => Some(LlmMessage::tool(m.tool_call_id.as_deref()?, &m.body)),
        // Failed turns are for the person, not the model.
        MessageRole::Error => None,
    }
}

/// Keeps only complete tool rounds: an assistant message with tool calls followed by a result
/// for every call. Incomplete rounds (possible only in data written by older or crashed
/// versions) are removed, keeping any assistant text; stray tool results are removed.
fn repair_pairs(messages: Vec<LlmMessage>) -> Vec<LlmMessage> {
    let mut out = Vec::with_capacity(messages.len());
    let mut iter = messages.into_iter().peekable();
    while let Some(m) = iter.next() {
        match m.role {
            Role::Tool => {} // not preceded by its call (handled below)
            Role::Assistant if !m.tool_calls.is_empty() => {
                let mut results = Vec::new();
                while iter.peek().is_some_and(|n| n.role == Role::Tool) {
                    if let Some(r) = iter.next() {
                        results.push(r);
                    }
                }
                let wanted: HashSet<&str> = m.tool_calls.iter().map(|c| c.id.as_str()).collect();
                let got: HashSet<&str> = results.iter().filter_map(|r| r.tool_call_id.as_deref()).collect();
                if wanted == got && results.len() == wanted.len() {
                    out.push(m);
                    out.extend(results);
                } else if !m.text().is_empty() {
                    out.push(LlmMessage::assistant(m.text()));
                }
            }
            _ => out.push(m),
        }
    }
    out
}

fn clip_tool_results(group: &mut [LlmMessage]) {
    for m in group.iter_mut().filter(|m| m.role == Role::Tool) {
        if let Some(text) = &m.content
            && text.chars().count() > OLD_TOOL_RESULT_CHARS
        {
            let mut clipped: String = text.chars().take(OLD_TOOL_RESULT_CHARS).collect();
            clipped.push_str(" […cut; call the tool again for the full result]");
            m.content = Some(clipped);
        }
    }
}

/// The first `max` characters of `text`, with `…` when cut.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let line = text.trim();
    if line.chars().count() <= max {
        return line.to_owned();
    }
    let mut out: String = line.chars().take(max).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crewgate_store::StoredToolCall;

    fn msg(role: &str, body: &str) -> Message {
        Message {
            id: String::new(),
            session_id: "s".into(),
            role: role.into(),
            body: body.into(),
            created_at: 0,
            tool_calls: Vec::new(),
            tool_call_id: None,
            tool_name: None,
        }
    }

    fn call(id: &str) -> Message {
        Message {
            tool_calls: vec![StoredToolCall { id: id.into(), name: "t".into(), arguments: "{}".into() }],
            ..msg("assistant", "")
        }
    }

    fn result(id: &str, body: &str) -> Message {
        Message { tool_call_id: Some(id.into()), tool_name: Some("t".into()), ..msg("tool", body) }
    }

    fn roles(ms: &[LlmMessage]) -> Vec<&'static str> {
        ms.iter()
            .map(|m| match m.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Tool => "tool",
            })
            .collect()
    }

    #[test]
    fn everything_fits_nothing_is_noted() {
        let stored = [msg("user", "a"), msg("assistant", "b"), msg("error", "boom"), msg("user", "c")];
        let (h, stats) = history(&stored, 1000, false);
        assert_eq!(roles(&h), ["user", "assistant", "user"], "error messages never reach the model");
        assert_eq!(stats.dropped_messages, 0);
    }

    #[test]
    fn whole_old_exchanges_are_dropped_newest_kept() {
        let long = "x".repeat(400); // ~100 tokens
        let stored = [
            msg("user", "first"),
            call("c1"),
            result("c1", &"z".repeat(2000)),
            msg("assistant", &long),
            msg("user", "second"),
            msg("assistant", &long),
            msg("user", &"y".repeat(2000)), // the current message: over budget on its own
        ];
        let (h, stats) = history(&stored, 150, false);
        // The current exchange is always kept; the previous one (≈ 110 tokens) no longer fits
        // after it, so it and everything older is dropped.
        assert_eq!(roles(&h), ["system", "user"]);
        assert_eq!(stats.dropped_messages, 6);
        assert!(h[0].text().contains("6 earlier messages"), "{}", h[0].text());

        let (h, stats) = history(&stored, 1200, true);
        assert_eq!(
            roles(&h),
            ["system", "user", "assistant", "tool", "assistant", "user", "assistant", "user"]
        );
        assert!(h[0].text().contains("0 or more earlier"), "{}", h[0].text());
        assert_eq!(stats.sent_messages, 7);
        // The old tool result was clipped; the current exchange is never clipped.
        assert!(h[3].text().len() < 700 && h[3].text().ends_with("full result]"));
    }

    #[test]
    fn incomplete_tool_rounds_are_repaired() {
        let mut with_text = call("c9");
        with_text.body = "let me check".into();
        let stored = [
            result("zz", "stray"),
            msg("user", "q"),
            call("c1"), // never answered
            msg("user", "q2"),
            with_text,
            result("c8", "wrong id"),
            msg("user", "q3"),
            call("c2"),
            result("c2", "ok"),
        ];
        let (h, _) = history(&stored, 10_000, false);
        assert_eq!(roles(&h), ["user", "user", "assistant", "user", "assistant", "tool"]);
        assert_eq!(h[2].text(), "let me check");
        assert!(h[2].tool_calls.is_empty());
        assert_eq!(h[5].tool_call_id.as_deref(), Some("c2"));
    }

    #[test]
    fn profile_reads_string_and_object_models() {
        let mut agent = Agent {
            id: crewgate_core::AgentId::parse("a").unwrap(),
            kind: AgentKind::Worker,
            owner: None,
            name: "a".into(),
            settings: serde_json::json!({"model": {"primary": "m1", "fallbacks": []},
                                         "identity": {"name": " Ada ", "personality": "Dry wit."}}),
            created_at: 0,
        };
        let p = AgentProfile::of(&agent);
        assert_eq!((p.model.as_deref(), p.name.as_deref()), (Some("m1"), Some("Ada")));
        let sys = system_prompt(&agent, &p, None, Some("Be kind."), "2025-01-01");
        assert!(sys.contains("Your name is Ada.\nDry wit.") && sys.contains("## Soul\nBe kind."), "{sys}");
        agent.settings = serde_json::json!({"model": "m2"});
        assert_eq!(AgentProfile::of(&agent).model.as_deref(), Some("m2"));
        agent.settings = serde_json::json!({});
        let p = AgentProfile::of(&agent);
        assert!(p.model.is_none() && p.name.is_none());
        assert!(system_prompt(&agent, &p, None, None, "d").contains("Your name is a."));
    }
}
