//! Rendering of key paths (`agents.list[1].id`) for messages.

/// Object whose keys are bearer tokens: they must never show up in a message or a log.
pub(crate) const USER_TOKENS: &str = "gateway.auth.userTokens";

/// Path of `raw_key` (as written in the file, before `${VAR}` expansion) inside `parent`.
pub(crate) fn key(parent: &str, raw_key: &str) -> String {
    let segment = if parent == USER_TOKENS {
        redact_token(raw_key)
    } else if !raw_key.is_empty()
        && raw_key.chars().all(|c| !c.is_whitespace() && !matches!(c, '.' | '[' | ']' | '"'))
    {
        raw_key.to_owned()
    } else {
        format!("[{raw_key:?}]")
    };
    match (parent.is_empty(), segment.starts_with('[')) {
        (true, _) | (false, true) => format!("{parent}{segment}"),
        (false, false) => format!("{parent}.{segment}"),
    }
}

/// Path of element `i` of the array at `parent`.
pub(crate) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// A token key is shown only when it is exactly one `${VAR}` reference (which names, not
/// reveals, the secret).
fn redact_token(raw_key: &str) -> String {
    let single_ref = raw_key
        .strip_prefix("${")
        .and_then(|rest| rest.strip_suffix('}'))
        .is_some_and(|inner| !inner.contains(['$', '{', '}', '.', '[', ']']));
    if single_ref { raw_key.to_owned() } else { "<token>".to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_keys_indices_and_odd_keys() {
        assert_eq!(key("", "gateway"), "gateway");
        assert_eq!(key("gateway", "port"), "gateway.port");
        assert_eq!(key("skills.installed", "steipete/gog"), "skills.installed.steipete/gog");
        assert_eq!(key("a", "b.c"), "a[\"b.c\"]");
        assert_eq!(key("", ""), "[\"\"]");
        assert_eq!(index("agents.list", 2), "agents.list[2]");
    }

    #[test]
    fn token_keys_are_redacted() {
        assert_eq!(key(USER_TOKENS, "cgu_secret"), "gateway.auth.userTokens.<token>");
        assert_eq!(key(USER_TOKENS, "${ALICE_TOKEN}"), "gateway.auth.userTokens.${ALICE_TOKEN}");
        assert_eq!(key(USER_TOKENS, "${A}${B}"), "gateway.auth.userTokens.<token>");
        assert_eq!(key(USER_TOKENS, "x${A}"), "gateway.auth.userTokens.<token>");
    }
}
