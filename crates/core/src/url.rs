//! URL text helpers.

/// RFC 3986 percent-encoding of everything but the unreserved characters (`A-Z a-z 0-9 - . _ ~`):
/// safe for a query value or a path segment (SigV4's `UriEncode` with `/` encoded too).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::percent_encode;

    #[test]
    fn only_unreserved_characters_stay() {
        assert_eq!(percent_encode("a+b@c.com/x y~é"), "a%2Bb%40c.com%2Fx%20y~%C3%A9");
        assert_eq!(percent_encode("AZaz09-._~"), "AZaz09-._~");
    }
}
