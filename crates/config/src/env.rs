//! `${VAR}` / `${VAR:-default}` expansion. The environment is a trait so tests never touch the
//! process environment (which is shared by every test thread).

use std::collections::{BTreeMap, HashMap};
use std::env::VarError;

/// Where `${VAR}` references are looked up. Same contract as [`std::env::var`]:
/// `Err(VarError::NotPresent)` means unset, `Err(VarError::NotUnicode(_))` is reported as an error.
pub trait EnvLookup {
    fn var(&self, name: &str) -> Result<String, VarError>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvLookup for ProcessEnv {
    fn var(&self, name: &str) -> Result<String, VarError> {
        std::env::var(name)
    }
}

/// Any `Fn(&str) -> Option<String>` works, e.g. `&|_: &str| None` for "nothing is set".
impl<F> EnvLookup for F
where
    F: Fn(&str) -> Option<String>,
{
    fn var(&self, name: &str) -> Result<String, VarError> {
        self(name).ok_or(VarError::NotPresent)
    }
}

impl EnvLookup for HashMap<String, String> {
    fn var(&self, name: &str) -> Result<String, VarError> {
        self.get(name).cloned().ok_or(VarError::NotPresent)
    }
}

impl EnvLookup for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Result<String, VarError> {
        self.get(name).cloned().ok_or(VarError::NotPresent)
    }
}

/// Result of expanding one string.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Expanded {
    pub value: String,
    /// The string contained at least one `${…}` reference: used to tell plaintext secrets apart.
    pub had_refs: bool,
}

/// An expansion failure; `offset` is the byte offset of the offending `$` in the input string.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ExpandError {
    pub offset: usize,
    pub message: String,
    pub hint: Option<String>,
}

/// Expands `${NAME}` and `${NAME:-default}`; `$$` is a literal `$`, a `$` followed by anything else
/// is kept as is. Shell semantics: an empty variable is "set" for `${NAME}` but takes the default
/// for `${NAME:-default}`. The default is literal text up to the first `}` (no nesting).
pub(crate) fn expand(input: &str, env: &dyn EnvLookup) -> Result<Expanded, ExpandError> {
    if !input.contains('$') {
        return Ok(Expanded { value: input.to_owned(), had_refs: false });
    }
    let mut out = String::with_capacity(input.len());
    let mut had_refs = false;
    let mut rest = input;
    let mut offset = 0;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let at = offset + dollar;
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            offset = at + 2;
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(close) = body.find('}') else {
                return Err(ExpandError {
                    offset: at,
                    message: "unterminated \"${\"".to_owned(),
                    hint: Some("close it with \"}\", or write \"$$\" for a literal \"$\"".to_owned()),
                });
            };
            let inner = &body[..close];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            if !is_var_name(name) {
                return Err(ExpandError {
                    offset: at,
                    message: format!("invalid environment reference \"${{{inner}}}\""),
                    hint: Some(
                        "write ${NAME} or ${NAME:-default} with NAME made of A-Z, a-z, 0-9 and _ \
                         (not starting with a digit), or \"$$\" for a literal \"$\""
                            .to_owned(),
                    ),
                });
            }
            match (env.var(name), default) {
                (Ok(value), Some(default)) if value.is_empty() => out.push_str(default),
                (Ok(value), _) => out.push_str(&value),
                (Err(VarError::NotPresent), Some(default)) => out.push_str(default),
                (Err(VarError::NotPresent), None) => {
                    return Err(ExpandError {
                        offset: at,
                        message: format!("environment variable {name} is not set"),
                        hint: Some(format!("set it or write ${{{name}:-default}}")),
                    });
                }
                (Err(VarError::NotUnicode(_)), _) => {
                    return Err(ExpandError {
                        offset: at,
                        message: format!("environment variable {name} is not valid UTF-8"),
                        hint: None,
                    });
                }
            }
            had_refs = true;
            // `{`, the body and `}` are one byte each plus the body length.
            offset = at + 2 + close + 1;
            rest = &body[close + 1..];
        } else {
            out.push('$');
            offset = at + 1;
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(Expanded { value: out, had_refs })
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn ok(input: &str, pairs: &[(&str, &str)]) -> String {
        expand(input, &env(pairs)).unwrap().value
    }

    #[test]
    fn plain_strings_pass_through() {
        let e = expand("hello", &env(&[])).unwrap();
        assert_eq!(e, Expanded { value: "hello".into(), had_refs: false });
    }

    #[test]
    fn whole_and_partial_references() {
        assert_eq!(ok("${A}", &[("A", "x")]), "x");
        assert_eq!(ok("https://${HOST}/v1", &[("HOST", "h:1")]), "https://h:1/v1");
        assert_eq!(ok("${A}${B}", &[("A", "1"), ("B", "2")]), "12");
        assert!(expand("${A}", &env(&[("A", "x")])).unwrap().had_refs);
    }

    #[test]
    fn defaults_follow_shell_semantics() {
        assert_eq!(ok("${A:-d}", &[]), "d");
        assert_eq!(ok("${A:-d}", &[("A", "")]), "d");
        assert_eq!(ok("${A:-d}", &[("A", "v")]), "v");
        assert_eq!(ok("${A}", &[("A", "")]), "");
        assert_eq!(ok("${A:-}", &[]), "");
        assert_eq!(ok("${A:-https://x:8/y}", &[]), "https://x:8/y");
    }

    #[test]
    fn dollar_escapes_and_lone_dollars() {
        assert_eq!(ok("$${A}", &[]), "${A}");
        assert_eq!(ok("cost $5", &[]), "cost $5");
        assert_eq!(ok("a$$b$", &[]), "a$b$");
        assert!(!expand("$$", &env(&[])).unwrap().had_refs);
    }

    #[test]
    fn missing_variable_reports_offset_and_hint() {
        let err = expand("x ${NOPE}", &env(&[])).unwrap_err();
        assert_eq!(err.offset, 2);
        assert_eq!(err.message, "environment variable NOPE is not set");
        assert_eq!(err.hint.as_deref(), Some("set it or write ${NOPE:-default}"));
    }

    #[test]
    fn offsets_after_earlier_references() {
        let err = expand("${A}/${B}", &env(&[("A", "long value")])).unwrap_err();
        assert_eq!(err.offset, 5);
        let err = expand("$$${B}", &env(&[])).unwrap_err();
        assert_eq!(err.offset, 2);
    }

    #[test]
    fn malformed_references() {
        let err = expand("ab${A", &env(&[])).unwrap_err();
        assert_eq!((err.offset, err.message.as_str()), (2, "unterminated \"${\""));
        let err = expand("${1A}", &env(&[])).unwrap_err();
        assert_eq!(err.message, "invalid environment reference \"${1A}\"");
        let err = expand("${A:=x}", &env(&[])).unwrap_err();
        assert_eq!(err.message, "invalid environment reference \"${A:=x}\"");
        let err = expand("${}", &env(&[])).unwrap_err();
        assert_eq!(err.message, "invalid environment reference \"${}\"");
    }

    #[test]
    fn closures_are_lookups() {
        let f = |name: &str| (name == "A").then(|| "1".to_owned());
        assert_eq!(expand("${A}", &f).unwrap().value, "1");
        assert!(expand("${B}", &f).is_err());
    }
}
