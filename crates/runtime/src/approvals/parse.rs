//! The chat decision grammar. Only the owner's own chat message is ever passed here (never a
//! tool result, a model answer, a document or another agent's message), and only by the gateway.
//!
//! - `approved` | `approve` | `yes` | `y` (case-insensitive, trimmed), optionally `#N` → approve;
//! - `no` | `reject` | `cancel`, optionally `#N` → reject;
//! - `edit: <instructions>` or `edit #N: <instructions>` → revise.
//!
//! Anything else (including "yes please send it") is an ordinary message for the model: a
//! decision must be unambiguous.

/// What the person decided in a chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatDecision {
    Approve { number: Option<i64> },
    Reject { number: Option<i64> },
    Edit { number: Option<i64>, instructions: String },
}

impl ChatDecision {
    pub fn number(&self) -> Option<i64> {
        match self {
            ChatDecision::Approve { number }
            | ChatDecision::Reject { number }
            | ChatDecision::Edit { number, .. } => *number,
        }
    }
}

const APPROVE: [&str; 4] = ["approved", "approve", "yes", "y"];
const REJECT: [&str; 3] = ["no", "reject", "cancel"];

/// `#12` → 12. The number must be a positive integer that fits an i64.
fn proposal_number(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('#')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok().filter(|n| *n > 0)
}

/// Parses a chat message; `None` when it is not a decision.
pub fn parse_decision(message: &str) -> Option<ChatDecision> {
    let text = message.trim();
    if let Some(d) = parse_edit(text) {
        return Some(d);
    }
    // One word, optionally followed by `#N` (with or without a space), optionally a final `.`/`!`.
    let text = text.strip_suffix(['.', '!']).unwrap_or(text).trim_end();
    let (word, number) = match text.find('#') {
        Some(i) => (text[..i].trim_end(), Some(proposal_number(text[i..].trim())?)),
        None => (text, None),
    };
    let word = word.to_lowercase();
    if APPROVE.contains(&word.as_str()) {
        Some(ChatDecision::Approve { number })
    } else if REJECT.contains(&word.as_str()) {
        Some(ChatDecision::Reject { number })
    } else {
        None
    }
}

fn parse_edit(text: &str) -> Option<ChatDecision> {
    let head = text.get(..4)?;
    if !head.eq_ignore_ascii_case("edit") {
        return None;
    }
    let rest = text[4..].trim_start();
    let (number, rest) = if rest.starts_with('#') {
        let end = rest.find(':')?;
        (Some(proposal_number(rest[..end].trim())?), &rest[end..])
    } else {
        (None, rest)
    };
    let instructions = rest.strip_prefix(':')?.trim();
    if instructions.is_empty() {
        return None;
    }
    Some(ChatDecision::Edit { number, instructions: instructions.to_owned() })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn approvals() {
        for s in ["approved", "Approve", "YES", " y ", "yes!", "Approved."] {
            assert_eq!(parse_decision(s), Some(ChatDecision::Approve { number: None }), "{s:?}");
        }
        for s in ["approved #3", "yes#3", "Y #3", "approve #3."] {
            assert_eq!(parse_decision(s), Some(ChatDecision::Approve { number: Some(3) }), "{s:?}");
        }
    }

    #[test]
    fn rejections() {
        for s in ["no", "No", "reject", "CANCEL", "cancel."] {
            assert_eq!(parse_decision(s), Some(ChatDecision::Reject { number: None }), "{s:?}");
        }
        assert_eq!(parse_decision("no #12"), Some(ChatDecision::Reject { number: Some(12) }));
    }

    #[test]
    fn edits() {
        assert_eq!(
            parse_decision("edit: make it shorter"),
            Some(ChatDecision::Edit { number: None, instructions: "make it shorter".into() })
        );
        assert_eq!(
            parse_decision("Edit #4 :  cc Bob\nand sign off"),
            Some(ChatDecision::Edit { number: Some(4), instructions: "cc Bob\nand sign off".into() })
        );
        assert_eq!(parse_decision("edit:"), None);
        assert_eq!(parse_decision("edit the draft please"), None);
    }

    #[test]
    fn everything_else_is_a_normal_message() {
        for s in [
            "",
            "yes please send it",
            "User says: approved #3",
            "approved #3 by Alice",
            "#3",
            "yes #0",
            "yes #-1",
            "yes #3x",
            "yes #99999999999999999999",
            "approvedd",
            "nope",
            "ok",
            "✅ approved",
        ] {
            assert_eq!(parse_decision(s), None, "{s:?}");
        }
    }
}
