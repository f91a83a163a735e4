//! Error and warning values. One format for both, documented in the crate README:
//! `FILE:LINE:COL: KEY.PATH: message — hint` (the path and the hint are left out when there is none).

use std::fmt;
use std::path::PathBuf;

/// One located problem (an error or a warning) in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as given to [`crate::Config::parse`] or the path given to
    /// [`crate::Config::load`].
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters (not bytes).
    pub column: usize,
    /// Key path such as `agents.list[1].id`; empty for problems not tied to a key (syntax errors).
    /// Keys of `gateway.auth.userTokens` are secrets and appear as `<token>` (or as their
    /// `${VAR}` reference when the key is exactly one).
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " — {hint}")?;
        }
        Ok(())
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read; the I/O error is the `source()`.
    #[error("{}: cannot read config file", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is invalid. Display prints one diagnostic per line, in file order
    /// for each phase (syntax and `${VAR}`, then types, then cross-field checks).
    #[error("{}", Lines(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    /// The located problems; empty for [`ConfigError::Read`].
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid(diagnostics) => diagnostics,
        }
    }
}

struct Lines<'a>(&'a [Diagnostic]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// A problem before it is given a file name and line:column (positions are byte offsets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub pos: usize,
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    pub fn new(pos: usize, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { pos, path: path.into(), message: message.into(), hint: None }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn locate(self, file: &str, text: &str) -> Diagnostic {
        let (line, column) = line_col(text, self.pos);
        Diagnostic {
            file: file.to_owned(),
            line,
            column,
            path: self.path,
            message: self.message,
            hint: self.hint,
        }
    }
}

/// 1-based line and character column of a byte offset. `\n`, `\r\n` and a lone `\r` end a line,
/// as in the JSONC parser, so our positions agree with its syntax errors.
pub(crate) fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let mut end = pos.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let mut line = 1;
    let mut column = 1;
    let mut chars = before.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' || (c == '\r' && chars.peek() != Some(&'\n')) {
            line += 1;
            column = 1;
        } else if c != '\r' {
            column += 1;
        }
    }
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_and_line_breaks() {
        assert_eq!(line_col("abc", 0), (1, 1));
        assert_eq!(line_col("abc", 2), (1, 3));
        assert_eq!(line_col("a\nbc", 3), (2, 2));
        assert_eq!(line_col("a\r\nbc", 4), (2, 2));
        assert_eq!(line_col("a\rbc", 2), (2, 1));
        assert_eq!(line_col("é\"x", 3), (1, 3));
        assert_eq!(line_col("ab", 99), (1, 3));
    }

    #[test]
    fn display_leaves_out_empty_path_and_hint() {
        let mut d = Problem::new(0, "", "syntax error: expected comma").locate("f.jsonc", "");
        assert_eq!(d.to_string(), "f.jsonc:1:1: syntax error: expected comma");
        d.path = "gateway.port".into();
        d.hint = Some("use 1-65535".into());
        assert_eq!(d.to_string(), "f.jsonc:1:1: gateway.port: syntax error: expected comma — use 1-65535");
    }
}
