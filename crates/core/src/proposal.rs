//! Proposals: the durable record of one write an agent wants to make. A write never runs from the
//! model's call; it becomes a proposal that only the owning person (or a grant they set) approves,
//! bound to a fingerprint of the exact tool and canonical arguments.

use crate::Millis;
use crate::ids::{AgentId, UserId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProposalState {
    Pending,
    Approved,
    Executing,
    Done,
    Failed,
    Rejected,
    Superseded,
    Expired,
    /// A crash left the execution in doubt and the tool could not tell: a person must check.
    Unknown,
}

impl ProposalState {
    pub const fn as_str(self) -> &'static str {
        match self {
            ProposalState::Pending => "pending",
            ProposalState::Approved => "approved",
            ProposalState::Executing => "executing",
            ProposalState::Done => "done",
            ProposalState::Failed => "failed",
            ProposalState::Rejected => "rejected",
            ProposalState::Superseded => "superseded",
            ProposalState::Expired => "expired",
            ProposalState::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => ProposalState::Pending,
            "approved" => ProposalState::Approved,
            "executing" => ProposalState::Executing,
            "done" => ProposalState::Done,
            "failed" => ProposalState::Failed,
            "rejected" => ProposalState::Rejected,
            "superseded" => ProposalState::Superseded,
            "expired" => ProposalState::Expired,
            "unknown" => ProposalState::Unknown,
            _ => return None,
        })
    }

    /// The only transitions the store will perform (each as one conditional update).
    pub fn can_move_to(self, next: ProposalState) -> bool {
        use ProposalState::*;
        matches!(
            (self, next),
            (Pending, Approved | Rejected | Superseded | Expired)
                | (Approved, Executing)
                | (Executing, Done | Failed | Unknown)
        )
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            ProposalState::Done
                | ProposalState::Failed
                | ProposalState::Rejected
                | ProposalState::Superseded
                | ProposalState::Expired
                | ProposalState::Unknown
        )
    }
}

impl std::fmt::Display for ProposalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a proposal was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Decision {
    Approved {
        by: String,
        via: String,
    },
    Rejected {
        by: String,
        via: String,
    },
    Edited {
        by: String,
        via: String,
        instructions: String,
    },
    /// Ran without asking because a grant matched.
    Auto {
        grant_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub id: String,
    /// Per-agent number people use: "approve #3".
    pub number: i64,
    pub agent_id: AgentId,
    pub session_id: Option<String>,
    pub owner_id: Option<UserId>,
    pub tool: String,
    pub args: serde_json::Value,
    pub fingerprint: String,
    pub summary: String,
    pub state: ProposalState,
    pub decision: Option<Decision>,
    pub superseded_by: Option<String>,
    pub idempotency_key: String,
    pub result: Option<serde_json::Value>,
    pub trace_id: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub expires_at: Millis,
}

/// JSON with object keys sorted and no insignificant white space, so the same arguments always
/// give the same bytes (and the same fingerprint).
pub fn canonical_json(v: &serde_json::Value) -> String {
    fn write(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    if let Some(val) = map.get(k) {
                        write(val, out);
                    }
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// SHA-256 over the tool name and canonical arguments: what an approval is bound to.
pub fn fingerprint(tool: &str, args: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    h.update(tool.as_bytes());
    h.update([0u8]);
    h.update(canonical_json(args).as_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let a = json!({"b": 1, "a": {"y": [1, {"d": 2, "c": 3}], "x": "é\""}});
        assert_eq!(canonical_json(&a), r#"{"a":{"x":"é\"","y":[1,{"c":3,"d":2}]},"b":1}"#);
    }

    #[test]
    fn fingerprint_is_stable_and_sensitive() {
        let a = json!({"to": "x@y.com", "subject": "hi"});
        let b = json!({"subject": "hi", "to": "x@y.com"});
        assert_eq!(fingerprint("gmail_send", &a), fingerprint("gmail_send", &b));
        assert_ne!(fingerprint("gmail_send", &a), fingerprint("gmail_draft_create", &a));
        let c = json!({"to": "x@y.com", "subject": "hi!"});
        assert_ne!(fingerprint("gmail_send", &a), fingerprint("gmail_send", &c));
    }

    #[test]
    fn only_forward_transitions_are_allowed() {
        use ProposalState::*;
        assert!(Pending.can_move_to(Approved));
        assert!(Approved.can_move_to(Executing));
        assert!(Executing.can_move_to(Done));
        assert!(!Pending.can_move_to(Executing), "must be approved first");
        assert!(!Done.can_move_to(Executing), "never twice");
        assert!(!Rejected.can_move_to(Approved));
        assert!(!Superseded.can_move_to(Approved));
        assert!(Superseded.is_final() && !Pending.is_final());
        for s in [Pending, Approved, Executing, Done, Failed, Rejected, Superseded, Expired, Unknown] {
            assert_eq!(ProposalState::parse(s.as_str()), Some(s));
        }
    }
}
