//! JSONC text → a located value tree with every string already `${VAR}`-expanded.
//!
//! The typed layer never sees the text: it deserializes from this tree (see `de.rs`), and every
//! node remembers the byte offset it came from, so every later error can point at the file.

use std::collections::HashMap;

use jsonc_parser::ast;
use jsonc_parser::common::Range;
use jsonc_parser::{CollectOptions, ParseOptions};

use crate::env::{EnvLookup, ExpandError, expand};
use crate::error::{Problem, line_col};
use crate::path;

pub(crate) struct Node {
    /// Byte offset of the first character of the value (the quote of a string, `{` of an object).
    pub pos: usize,
    pub kind: Kind,
}

pub(crate) enum Kind {
    Null,
    Bool(bool),
    Num { raw: String, value: Num },
    Str { value: String, from_env: bool },
    Arr(Vec<Node>),
    Obj(Vec<Entry>),
}

#[derive(Clone, Copy)]
pub(crate) enum Num {
    Int(i128),
    Float(f64),
}

pub(crate) struct Entry {
    /// The key as written (before expansion): used in paths, so messages match the file.
    pub raw_key: String,
    /// The key after `${VAR}` expansion: what the typed layer sees.
    pub key: String,
    pub key_pos: usize,
    pub value: Node,
}

impl Node {
    pub fn entries(&self) -> &[Entry] {
        match &self.kind {
            Kind::Obj(entries) => entries,
            _ => &[],
        }
    }

    pub fn elements(&self) -> &[Node] {
        match &self.kind {
            Kind::Arr(elements) => elements,
            _ => &[],
        }
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries().iter().find(|e| e.key == key)
    }

    /// Follows object keys from this node; `None` when a key is absent.
    pub fn at(&self, keys: &[&str]) -> Option<&Node> {
        keys.iter().try_fold(self, |node, key| node.get(key).map(|e| &e.value))
    }

    #[cfg(test)]
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str { value, .. } => Some(value),
            _ => None,
        }
    }

    /// A non-empty string written literally, without any `${VAR}`: a plaintext secret candidate.
    pub fn is_plaintext(&self) -> bool {
        matches!(&self.kind, Kind::Str { value, from_env: false } if !value.is_empty())
    }

    /// "a string", "an object", … for type-mismatch messages. Never the string itself: it may be
    /// a secret.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Null => "null".to_owned(),
            Kind::Bool(b) => b.to_string(),
            Kind::Num { raw, .. } => format!("the number {raw}"),
            Kind::Str { .. } => "a string".to_owned(),
            Kind::Arr(_) => "an array".to_owned(),
            Kind::Obj(_) => "an object".to_owned(),
        }
    }
}

/// Parses the text and expands every string. Syntax errors stop at the first (the parser cannot
/// recover); duplicate keys and `${VAR}` problems are all collected.
pub(crate) fn parse(text: &str, env: &dyn EnvLookup) -> Result<Node, Vec<Problem>> {
    // JSONC as VS Code and OpenClaw's docs write it: comments, trailing commas and unquoted keys.
    // The JSON5 extras stay off so typos (a missing comma, a stray `+`) are reported, not guessed.
    let options = ParseOptions {
        allow_comments: true,
        allow_loose_object_property_names: true,
        allow_trailing_commas: true,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    };
    let parsed = jsonc_parser::parse_to_ast(text, &CollectOptions::default(), &options).map_err(|e| {
        vec![Problem::new(
            e.range().start,
            "",
            format!("syntax error: {}", lower_first(&e.kind().to_string())),
        )]
    })?;
    let Some(value) = parsed.value else {
        return Err(vec![
            Problem::new(0, "", "the config is empty")
                .hint("write {} to use every default, or run `crewgate init` for a starter file"),
        ]);
    };
    if !matches!(value, ast::Value::Object(_)) {
        let root = Builder::new(text, env).build(value, "");
        return Err(vec![Problem::new(
            root.pos,
            "",
            format!("the top level must be an object, found {}", root.describe()),
        )]);
    }
    let mut builder = Builder::new(text, env);
    let root = builder.build(value, "");
    if builder.problems.is_empty() { Ok(root) } else { Err(builder.problems) }
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

struct Builder<'t> {
    text: &'t str,
    env: &'t dyn EnvLookup,
    problems: Vec<Problem>,
}

impl<'t> Builder<'t> {
    fn new(text: &'t str, env: &'t dyn EnvLookup) -> Self {
        Self { text, env, problems: Vec::new() }
    }

    fn build(&mut self, value: ast::Value<'_>, path: &str) -> Node {
        match value {
            ast::Value::NullKeyword(n) => Node { pos: n.range.start, kind: Kind::Null },
            ast::Value::BooleanLit(b) => Node { pos: b.range.start, kind: Kind::Bool(b.value) },
            ast::Value::NumberLit(n) => {
                let value = parse_number(n.value);
                Node { pos: n.range.start, kind: Kind::Num { raw: n.value.to_owned(), value } }
            }
            ast::Value::StringLit(s) => {
                let (value, from_env) = self.expand(&s.value, s.range, true, path);
                Node { pos: s.range.start, kind: Kind::Str { value, from_env } }
            }
            ast::Value::Array(a) => {
                let elements = a
                    .elements
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| self.build(v, &path::index(path, i)))
                    .collect();
                Node { pos: a.range.start, kind: Kind::Arr(elements) }
            }
            ast::Value::Object(o) => {
                let mut seen: HashMap<String, usize> = HashMap::new();
                let mut entries = Vec::with_capacity(o.properties.len());
                for prop in o.properties {
                    let (raw_key, range, quoted) = match prop.name {
                        ast::ObjectPropName::String(lit) => (lit.value.into_owned(), lit.range, true),
                        ast::ObjectPropName::Word(word) => (word.value.to_owned(), word.range, false),
                    };
                    let child = path::key(path, &raw_key);
                    if let Some(&first) = seen.get(&raw_key) {
                        let (line, _) = line_col(self.text, first);
                        self.problems.push(
                            Problem::new(range.start, child, "duplicate key")
                                .hint(format!("first defined at line {line}")),
                        );
                        continue;
                    }
                    seen.insert(raw_key.clone(), range.start);
                    let (key, _) = self.expand(&raw_key, range, quoted, &child);
                    let value = self.build(prop.value, &child);
                    entries.push(Entry { raw_key, key, key_pos: range.start, value });
                }
                Node { pos: o.range.start, kind: Kind::Obj(entries) }
            }
        }
    }

    /// Expands one string or key. On failure records the problem and returns an empty value: the
    /// tree is discarded anyway, but building on lets us report every bad reference at once.
    fn expand(&mut self, value: &str, range: Range, quoted: bool, path: &str) -> (String, bool) {
        match expand(value, self.env) {
            Ok(expanded) => (expanded.value, expanded.had_refs),
            Err(ExpandError { offset, message, hint }) => {
                let pos = self.offset_in_literal(value, range, quoted, offset);
                let mut problem = Problem::new(pos, path, message);
                problem.hint = hint;
                self.problems.push(problem);
                (String::new(), true)
            }
        }
    }

    /// Maps an offset in the unescaped string back to the file. Only exact when the literal has no
    /// escapes (the usual case for `${…}`); otherwise points at the literal's start.
    fn offset_in_literal(&self, value: &str, range: Range, quoted: bool, offset: usize) -> usize {
        let inner = if quoted {
            range.start.checked_add(1).zip(range.end.checked_sub(1))
        } else {
            Some((range.start, range.end))
        };
        match inner.and_then(|(start, end)| Some((start, self.text.get(start..end)?))) {
            Some((start, raw)) if raw == value => start + offset,
            _ => range.start,
        }
    }
}

fn parse_number(raw: &str) -> Num {
    if !raw.contains(['.', 'e', 'E'])
        && let Ok(n) = raw.parse::<i128>()
    {
        return Num::Int(n);
    }
    // The parser only hands over JSON number syntax, which f64 always accepts (huge → infinity).
    Num::Float(raw.parse::<f64>().unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    fn problems(text: &str) -> Vec<Problem> {
        match parse(text, &none) {
            Ok(_) => panic!("expected problems"),
            Err(p) => p,
        }
    }

    #[test]
    fn keeps_positions_and_expands() {
        let env = |n: &str| (n == "H").then(|| "example.com".to_owned());
        let root = parse("{\n  \"a\": \"https://${H}/v1\", // c\n  b: [1, 2.5,],\n}", &env).ok().unwrap();
        let a = root.get("a").unwrap();
        assert_eq!((a.key_pos, a.value.pos), (4, 9));
        assert_eq!(a.value.as_str(), Some("https://example.com/v1"));
        assert!(!a.value.is_plaintext());
        let b = root.at(&["b"]).unwrap();
        assert!(matches!(b.elements()[0].kind, Kind::Num { value: Num::Int(1), .. }));
        assert!(matches!(b.elements()[1].kind, Kind::Num { value: Num::Float(_), .. }));
    }

    #[test]
    fn collects_every_reference_and_duplicate() {
        let p = problems("{\"a\": \"${X}\", \"b\": \"x ${Y}\", \"a\": 1}");
        assert_eq!(p.len(), 3);
        assert_eq!((p[0].pos, p[0].path.as_str()), (7, "a"));
        assert_eq!((p[1].pos, p[1].path.as_str()), (22, "b"));
        assert_eq!((p[2].pos, p[2].message.as_str()), (29, "duplicate key"));
    }

    #[test]
    fn escaped_literals_point_at_their_start() {
        let p = problems("{\"a\": \"\\u0041${X}\"}");
        assert_eq!(p[0].pos, 6);
    }

    #[test]
    fn non_object_root_is_rejected() {
        let p = problems("[1]");
        assert_eq!(p[0].message, "the top level must be an object, found an array");
    }

    #[test]
    fn strict_json_extras_are_syntax_errors() {
        assert_eq!(problems("{\"a\": 1 \"b\": 2}")[0].message, "syntax error: expected comma");
        assert!(problems("{\"a\": 'x'}")[0].message.starts_with("syntax error:"));
        assert!(problems("{\"a\": +1}")[0].message.starts_with("syntax error:"));
    }
}
