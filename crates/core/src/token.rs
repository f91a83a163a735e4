//! Bearer tokens: 24 random bytes, hex-encoded behind a kind prefix (`cga_`, `cgu_`, `cgi_`).
//! Only the SHA-256 of the whole token string is ever stored; lookups go by that hash, so no
//! stored secret is compared byte by byte.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

const RANDOM_BYTES: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Admin,
    User,
    Invite,
}

impl TokenKind {
    pub const fn prefix(self) -> &'static str {
        match self {
            TokenKind::Admin => "cga_",
            TokenKind::User => "cgu_",
            TokenKind::Invite => "cgi_",
        }
    }
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenKind::Admin => "admin",
            TokenKind::User => "user",
            TokenKind::Invite => "invite",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(TokenKind::Admin),
            "user" => Some(TokenKind::User),
            "invite" => Some(TokenKind::Invite),
            _ => None,
        }
    }
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed token: expected cga_, cgu_ or cgi_ followed by 48 hex characters")]
    Malformed,
}

/// SHA-256 of a token string, hex encoded (what the store keeps).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenHash(String);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        Self(hex::encode(Sha256::digest(token.as_bytes())))
    }
    pub fn from_hex(hex: String) -> Self {
        Self(hex)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", &self.0[..self.0.len().min(8)])
    }
}

/// A freshly generated token: the secret is shown to the person once and then dropped.
#[derive(Debug)]
pub struct IssuedToken {
    pub kind: TokenKind,
    pub secret: SecretString,
    pub hash: TokenHash,
    /// What lists show: prefix and last four characters (`cgu_…9f3a`).
    pub display: String,
}

impl IssuedToken {
    pub fn generate(kind: TokenKind) -> Self {
        let mut bytes = [0u8; RANDOM_BYTES];
        rand::fill(&mut bytes);
        let secret = format!("{}{}", kind.prefix(), hex::encode(bytes));
        Self::from_secret(kind, secret)
    }

    /// Wraps an existing token string (config-file tokens are imported this way).
    pub fn from_secret(kind: TokenKind, secret: String) -> Self {
        let hash = TokenHash::of(&secret);
        let display = display_form(kind, &secret);
        Self { kind, secret: SecretString::from(secret), hash, display }
    }
}

/// `bytes` random bytes, hex encoded: session cookies, CSRF tokens, OAuth `state`.
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::fill(&mut b[..]);
    hex::encode(b)
}

/// Prefix plus the last four characters: enough to recognise a token, useless to an attacker.
pub fn display_form(kind: TokenKind, secret: &str) -> String {
    let tail: String = secret.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("{}…{tail}", kind.prefix())
}

/// Checks the shape of a presented bearer token and returns its kind and hash. Unknown shapes are
/// rejected before any store lookup.
pub fn parse_presented(token: &SecretString) -> Result<(TokenKind, TokenHash), TokenError> {
    let s = token.expose_secret();
    let kind = [TokenKind::Admin, TokenKind::User, TokenKind::Invite]
        .into_iter()
        .find(|k| s.starts_with(k.prefix()))
        .ok_or(TokenError::Malformed)?;
    let body = &s[kind.prefix().len()..];
    if body.len() != RANDOM_BYTES * 2 || !body.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::Malformed);
    }
    Ok((kind, TokenHash::of(s)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn generated_tokens_parse_back_with_their_kind_and_hash() {
        for kind in [TokenKind::Admin, TokenKind::User, TokenKind::Invite] {
            let t = IssuedToken::generate(kind);
            let s = t.secret.expose_secret();
            assert!(s.starts_with(kind.prefix()));
            assert_eq!(s.len(), 4 + 48);
            let (k, h) = parse_presented(&t.secret).unwrap();
            assert_eq!(k, kind);
            assert_eq!(h, t.hash);
            assert!(t.display.ends_with(&s[s.len() - 4..]));
            assert!(!format!("{t:?}").contains(&s[4..]), "Debug leaks the secret");
        }
    }

    #[test]
    fn two_tokens_differ() {
        let a = IssuedToken::generate(TokenKind::User);
        let b = IssuedToken::generate(TokenKind::User);
        assert_ne!(a.hash, b.hash);
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let bad = [
            "",
            "cga_",
            "cgx_000000000000000000000000000000000000000000000000",
            "cga_00000000000000000000000000000000000000000000000",
            "cga_zz0000000000000000000000000000000000000000000000",
            "Bearer cga_000000000000000000000000000000000000000000000000",
            "cga_0000000000000000000000000000000000000000000000000",
        ];
        for b in bad {
            assert_eq!(parse_presented(&SecretString::from(b)), Err(TokenError::Malformed), "{b:?}");
        }
    }
}
