//! Incremental Server-Sent-Events decoder.
//!
//! Bytes arrive in arbitrary TCP-sized pieces: a piece may end in the middle of a line, in the
//! middle of a CRLF pair, or in the middle of a multi-byte UTF-8 character. The decoder buffers raw
//! bytes and only decodes complete lines (line terminators are ASCII, so they never occur inside a
//! multi-byte character). Accepts LF, CRLF and lone CR line endings, `:` comment / keep-alive lines,
//! `data:` with or without the space, multi-line `data`, `event:` names; ignores `id:`/`retry:`.

/// A complete SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Why bytes could not be decoded as SSE.
#[derive(Debug, thiserror::Error)]
pub enum SseError {
    #[error("a stream line is not valid UTF-8")]
    InvalidUtf8(#[source] std::str::Utf8Error),
    #[error("a stream line is longer than {limit} bytes")]
    LineTooLong { limit: usize },
}

/// Longest line accepted (a single chunk of a huge tool-call argument still fits easily).
pub const MAX_LINE: usize = 8 * 1024 * 1024;

/// Incremental SSE decoder: [`SseDecoder::feed`] bytes as they arrive, [`SseDecoder::finish`] at EOF.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: Vec<u8>,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl SseDecoder {
    /// A fresh decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next piece of the body; appends each event completed by it to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(rel) = self.buf[start..].iter().position(|b| *b == b'\n' || *b == b'\r') {
            let end = start + rel;
            let terminator = if self.buf[end] == b'\r' {
                match self.buf.get(end + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    // A CR at the very end: the LF of a CRLF may be in the next piece.
                    None => break,
                }
            } else {
                1
            };
            let line = std::str::from_utf8(&self.buf[start..end]).map_err(SseError::InvalidUtf8)?;
            Self::line(&mut self.event, &mut self.data, &mut self.has_data, line, out);
            start = end + terminator;
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_LINE {
            return Err(SseError::LineTooLong { limit: MAX_LINE });
        }
        Ok(())
    }

    /// End of body: processes an unterminated last line and dispatches a pending event (servers
    /// that omit the final blank line are tolerated).
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let rest = std::mem::take(&mut self.buf);
        let rest = rest.strip_suffix(b"\r").unwrap_or(&rest);
        if !rest.is_empty() {
            let line = std::str::from_utf8(rest).map_err(SseError::InvalidUtf8)?;
            Self::line(&mut self.event, &mut self.data, &mut self.has_data, line, out);
        }
        Self::line(&mut self.event, &mut self.data, &mut self.has_data, "", out);
        Ok(())
    }

    fn line(
        event: &mut Option<String>,
        data: &mut String,
        has_data: &mut bool,
        line: &str,
        out: &mut Vec<SseEvent>,
    ) {
        if line.is_empty() {
            if *has_data {
                out.push(SseEvent { event: event.take(), data: std::mem::take(data) });
                *has_data = false;
            } else {
                *event = None;
            }
            return;
        }
        if line.starts_with(':') {
            return; // comment / keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if *has_data {
                    data.push('\n');
                }
                data.push_str(value);
                *has_data = true;
            }
            "event" => *event = Some(value.to_owned()),
            _ => {} // id, retry, unknown fields
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn decode_in_pieces(body: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        let mut prev = 0;
        for &c in cuts.iter().chain(std::iter::once(&body.len())) {
            d.feed(&body[prev..c], &mut out).unwrap();
            prev = c;
        }
        d.finish(&mut out).unwrap();
        out
    }

    fn data(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn basic_events_comments_and_done() {
        let body = b": keep-alive\n\ndata: {\"a\":1}\n\ndata:{\"b\":2}\n\n\n\ndata: [DONE]\n\n";
        let ev = decode_in_pieces(body, &[]);
        assert_eq!(data(&ev), vec!["{\"a\":1}", "{\"b\":2}", "[DONE]"]);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let body = "data: {\"t\":\"héllo wörld ✓ 🎉\"}\r\n\r\n: ping\r\n\r\nevent: error\r\ndata: x\r\ndata: y\r\n\r\ndata: [DONE]\r\n\r\n";
        let bytes = body.as_bytes();
        let whole = decode_in_pieces(bytes, &[]);
        assert_eq!(
            whole,
            vec![
                SseEvent { event: None, data: "{\"t\":\"héllo wörld ✓ 🎉\"}".into() },
                SseEvent { event: Some("error".into()), data: "x\ny".into() },
                SseEvent { event: None, data: "[DONE]".into() },
            ]
        );
        for i in 0..=bytes.len() {
            assert_eq!(decode_in_pieces(bytes, &[i]), whole, "split at {i}");
            for j in i..=bytes.len() {
                assert_eq!(decode_in_pieces(bytes, &[i, j]), whole, "split at {i},{j}");
            }
        }
    }

    #[test]
    fn split_inside_utf8_character_byte_by_byte() {
        let body = "data: 🎉é\n\n".as_bytes();
        let cuts: Vec<usize> = (1..body.len()).collect();
        let ev = decode_in_pieces(body, &cuts);
        assert_eq!(data(&ev), vec!["🎉é"]);
    }

    #[test]
    fn lone_cr_line_endings() {
        let ev = decode_in_pieces(b"data: a\r\rdata: b\r\r", &[8]);
        assert_eq!(data(&ev), vec!["a", "b"]);
    }

    #[test]
    fn missing_final_blank_line_is_tolerated() {
        let ev = decode_in_pieces(b"data: a\n\ndata: [DONE]", &[3]);
        assert_eq!(data(&ev), vec!["a", "[DONE]"]);
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        let err = d.feed(b"data: \xff\xfe\n\n", &mut out).unwrap_err();
        assert!(matches!(err, SseError::InvalidUtf8(_)));
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn overlong_line_is_an_error() {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        let big = vec![b'a'; MAX_LINE + 1];
        assert!(matches!(d.feed(&big, &mut out), Err(SseError::LineTooLong { .. })));
    }
}
