//! RFC 2822 / MIME: building the plain-text messages we send, and getting plain text out of
//! the MIME tree Gmail returns (`payload` with base64url `body.data` per part).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::Value;

use crate::error::ToolError;
use crate::schema::is_email;

/// One outgoing plain-text message.
#[derive(Debug, Default)]
pub(crate) struct Outgoing<'a> {
    pub from: Option<&'a str>,
    pub to: &'a [String],
    pub cc: &'a [String],
    pub bcc: &'a [String],
    pub subject: &'a str,
    pub body: &'a str,
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Option<String>,
    /// RFC 2822 `Date` value.
    pub date: String,
}

/// The `Date` header value for `now`: `Tue, 03 Mar 2026 10:00:00 +0000`.
pub(crate) fn date_now() -> String {
    let http = httpdate::fmt_http_date(std::time::SystemTime::now());
    // HTTP dates end in "GMT", an obsolete RFC 2822 zone; write the numeric form.
    http.strip_suffix("GMT").map(|s| format!("{s}+0000")).unwrap_or(http)
}

/// Builds the message with CRLF line ends. Fails (before anything is sent) on malformed
/// addresses or header values that would allow header injection.
pub(crate) fn build(m: &Outgoing<'_>) -> Result<String, ToolError> {
    let mut out = String::new();
    let mut header = |name: &str, value: &str| {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    };
    if let Some(from) = m.from {
        header("From", &address(from)?);
    }
    for (name, list) in [("To", m.to), ("Cc", m.cc), ("Bcc", m.bcc)] {
        if !list.is_empty() {
            let encoded = list.iter().map(|a| address(a)).collect::<Result<Vec<_>, _>>()?;
            header(name, &encoded.join(",\r\n "));
        }
    }
    if m.subject.chars().any(char::is_control) {
        return Err(ToolError::invalid("subject must be one line"));
    }
    header("Subject", &encode_words(m.subject));
    header("Date", &m.date);
    for (name, v) in
        [("Message-ID", &m.message_id), ("In-Reply-To", &m.in_reply_to), ("References", &m.references)]
    {
        if let Some(v) = v {
            if v.chars().any(|c| c.is_control() || !c.is_ascii()) {
                return Err(ToolError::invalid(format!("invalid {name} header")));
            }
            header(name, &fold_ids(v));
        }
    }
    header("MIME-Version", "1.0");
    header("Content-Type", "text/plain; charset=\"UTF-8\"");
    let body = m.body.replace("\r\n", "\n").replace('\r', "\n");
    let seven_bit = body.is_ascii() && body.lines().all(|l| l.len() <= 998);
    if seven_bit {
        header("Content-Transfer-Encoding", "7bit");
        out.push_str("\r\n");
        out.push_str(&body.replace('\n', "\r\n"));
    } else {
        header("Content-Transfer-Encoding", "base64");
        out.push_str("\r\n");
        let encoded = STANDARD.encode(body.replace('\n', "\r\n").as_bytes());
        for chunk in encoded.as_bytes().chunks(76) {
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push_str("\r\n");
        }
    }
    Ok(out)
}

/// Gmail's `raw`: base64url of the whole message.
pub(crate) fn raw(message: &str) -> String {
    URL_SAFE_NO_PAD.encode(message.as_bytes())
}

/// `a@b.c` or `Name <a@b.c>` → a header-safe mailbox.
fn address(input: &str) -> Result<String, ToolError> {
    let input = input.trim();
    let (name, addr) = match (input.rfind('<'), input.ends_with('>')) {
        (Some(i), true) => (input[..i].trim().trim_matches('"').trim(), &input[i + 1..input.len() - 1]),
        _ => ("", input),
    };
    if !is_email(addr) || !addr.is_ascii() {
        return Err(ToolError::invalid(format!("{input:?} is not an e-mail address")));
    }
    if name.chars().any(char::is_control) {
        return Err(ToolError::invalid(format!("{input:?} has a line break in the name")));
    }
    if name.is_empty() {
        return Ok(addr.to_owned());
    }
    let name = if !name.is_ascii() {
        encode_words(name)
    } else if name.chars().any(|c| "()<>[]:;@\\,.\"".contains(c)) {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        name.to_owned()
    };
    Ok(format!("{name} <{addr}>"))
}

/// RFC 2047 `B` encoded-words for non-ASCII text (each word ≤ 75 characters, never splitting a
/// UTF-8 sequence), folded onto continuation lines. ASCII text is returned unchanged.
pub(crate) fn encode_words(text: &str) -> String {
    if text.is_ascii() {
        return text.to_owned();
    }
    // "=?UTF-8?B?" + "?=" is 12 characters; 45 bytes encode to 60, so a word stays ≤ 72.
    const MAX_BYTES: usize = 45;
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > MAX_BYTES {
            words.push(format!("=?UTF-8?B?{}?=", STANDARD.encode(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", STANDARD.encode(chunk.as_bytes())));
    }
    words.join("\r\n ")
}

/// Folds a list of message ids so long `References` stay under the line limit.
fn fold_ids(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join("\r\n ")
}

// ------------------------------------------------------------------------------------------
// Reading
// ------------------------------------------------------------------------------------------

/// An attachment seen while extracting text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Attachment {
    pub filename: String,
    pub mime_type: String,
    pub size: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Extracted {
    pub text: String,
    pub attachments: Vec<Attachment>,
}

/// Plain text of a Gmail `payload`: `text/plain` preferred inside `multipart/alternative`,
/// `text/html` stripped to text when it is the only body; parts with a file name are listed as
/// attachments.
pub(crate) fn extract(payload: &Value) -> Extracted {
    let mut out = Extracted::default();
    let text = walk(payload, &mut out.attachments);
    out.text = text.trim().to_owned();
    out
}

fn mime_type(part: &Value) -> String {
    part["mimeType"].as_str().unwrap_or("text/plain").to_ascii_lowercase()
}

fn walk(part: &Value, attachments: &mut Vec<Attachment>) -> String {
    let mime = mime_type(part);
    let filename = part["filename"].as_str().unwrap_or_default();
    let is_attachment = !filename.is_empty()
        || header(part, "content-disposition")
            .is_some_and(|d| d.to_ascii_lowercase().starts_with("attachment"));
    if is_attachment && !mime.starts_with("multipart/") {
        attachments.push(Attachment {
            filename: if filename.is_empty() { "(unnamed)".into() } else { filename.to_owned() },
            mime_type: mime,
            size: part["body"]["size"].as_u64().unwrap_or(0),
        });
        return String::new();
    }
    let parts: &[Value] = part["parts"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if mime == "multipart/alternative" {
        // Prefer the plain alternative; fall back to the richest other one (last, by RFC 2046).
        let plain = parts.iter().find(|p| mime_type(p) == "text/plain");
        let chosen = plain.or_else(|| parts.iter().rev().find(|p| !mime_type(p).starts_with("text/plain")));
        let mut ignored = Vec::new();
        let text = chosen.map(|p| walk(p, attachments)).unwrap_or_default();
        // Attachments hidden in other alternatives still count.
        for p in parts.iter().filter(|p| Some(*p) != chosen) {
            walk(p, &mut ignored);
        }
        attachments.extend(ignored);
        return text;
    }
    if mime.starts_with("multipart/") || mime == "message/rfc822" {
        let texts: Vec<String> =
            parts.iter().map(|p| walk(p, attachments)).filter(|t| !t.trim().is_empty()).collect();
        return texts.join("\n\n");
    }
    let data = part["body"]["data"].as_str().unwrap_or_default();
    let bytes = match decode_base64url(data) {
        Ok(b) => b,
        Err(e) => return format!("[a {mime} part could not be decoded: {e}]"),
    };
    let charset = header(part, "content-type").and_then(|ct| param(&ct, "charset")).unwrap_or_default();
    let text = decode_charset(&bytes, &charset);
    match mime.as_str() {
        "text/plain" => text,
        "text/html" => html_to_text(&text),
        _ => String::new(),
    }
}

fn header(part: &Value, name: &str) -> Option<String> {
    part["headers"].as_array()?.iter().find_map(|h| {
        h["name"]
            .as_str()
            .filter(|n| n.eq_ignore_ascii_case(name))
            .and_then(|_| h["value"].as_str())
            .map(str::to_owned)
    })
}

fn param(content_type: &str, name: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().trim_matches('"').to_ascii_lowercase())
    })
}

/// base64url, padded or not (Gmail usually omits padding); lenient about the standard alphabet.
pub(crate) fn decode_base64url(data: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let clean: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    // Only the last alphabet's error is reported: the earlier ones are expected misses.
    URL_SAFE_NO_PAD
        .decode(clean.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(&clean))
        .or_else(|_| STANDARD.decode(&clean))
}

fn decode_charset(bytes: &[u8], charset: &str) -> String {
    match charset {
        // Latin-1 maps bytes to code points one to one; windows-1252 is close enough for text.
        "iso-8859-1" | "latin1" | "iso-8859-15" | "windows-1252" | "cp1252" => {
            bytes.iter().map(|&b| char::from(b)).collect()
        }
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// HTML to readable text: drops `script`/`style`/`head`, turns block ends into line breaks,
/// list items into "- ", links into "text (url)", and decodes entities.
pub(crate) fn html_to_text(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    let mut skip_until: Option<&'static str> = None;
    let mut link: Option<String> = None;
    while let Some(lt) = rest.find('<') {
        if skip_until.is_none() {
            out.push_str(&decode_entities(&rest[..lt]));
        }
        rest = &rest[lt..];
        if rest.starts_with("<!--") {
            rest = rest.find("-->").map_or("", |e| &rest[e + 3..]);
            continue;
        }
        let end = rest.find('>').map_or(rest.len(), |e| e + 1);
        let tag = &rest[1..end.saturating_sub(1).max(1)];
        rest = &rest[end..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if let Some(until) = skip_until {
            if closing && name == until {
                skip_until = None;
            }
            continue;
        }
        match (name.as_str(), closing) {
            ("script", false) => skip_until = Some("script"),
            ("style", false) => skip_until = Some("style"),
            ("head", false) => skip_until = Some("head"),
            ("br", _) => out.push('\n'),
            (
                "p" | "div" | "tr" | "table" | "ul" | "ol" | "blockquote" | "h1" | "h2" | "h3" | "h4" | "h5"
                | "h6",
                _,
            ) => out.push('\n'),
            ("li", false) => out.push_str("\n- "),
            ("td" | "th", true) => out.push('\t'),
            ("a", false) => link = attr(tag, "href"),
            ("a", true) => {
                if let Some(href) = link.take()
                    && href.starts_with("http")
                    && !out.trim_end().ends_with(&href)
                {
                    out.push_str(&format!(" ({href})"));
                }
            }
            _ => {}
        }
    }
    if skip_until.is_none() {
        out.push_str(&decode_entities(rest));
    }
    tidy(&out)
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let i = lower.find(&format!("{name}="))? + name.len() + 1;
    let v = &tag[i..];
    let (quote, v) = match v.chars().next()? {
        q @ ('"' | '\'') => (Some(q), &v[1..]),
        _ => (None, v),
    };
    let end = match quote {
        Some(q) => v.find(q)?,
        None => v.find(char::is_whitespace).unwrap_or(v.len()),
    };
    Some(decode_entities(&v[..end]))
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.replace(['\n', '\r', '\t'], " ");
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest[..rest.len().min(12)].find(';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" | "#39" => Some('\''),
            "nbsp" => Some(' '),
            e if e.starts_with("#x") || e.starts_with("#X") => {
                u32::from_str_radix(&e[2..], 16).ok().and_then(char::from_u32)
            }
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out.replace(['\n', '\r', '\t'], " ")
}

/// Collapses runs of spaces and of blank lines.
fn tidy(s: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    for line in s.lines() {
        let l = line.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
        let l = l.trim().to_owned();
        if l.is_empty() && lines.last().is_none_or(|p: &String| p.is_empty()) {
            continue;
        }
        lines.push(l);
    }
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn encoded_words_split_on_char_boundaries() {
        let s = "Grüße aus Köln — 東京で会いましょう, and a longer tail to force several words";
        let enc = encode_words(s);
        let mut decoded = Vec::new();
        for w in enc.split("\r\n ") {
            assert!(w.len() <= 75, "{w}");
            let b64 = w.strip_prefix("=?UTF-8?B?").unwrap().strip_suffix("?=").unwrap();
            let bytes = STANDARD.decode(b64).unwrap();
            assert!(String::from_utf8(bytes.clone()).is_ok(), "word splits a character");
            decoded.extend(bytes);
        }
        assert_eq!(String::from_utf8(decoded).unwrap(), s);
        assert_eq!(encode_words("plain"), "plain");
    }

    #[test]
    fn addresses() {
        assert_eq!(address("a@b.co").unwrap(), "a@b.co");
        assert_eq!(address("Ann Lee <a@b.co>").unwrap(), "Ann Lee <a@b.co>");
        assert_eq!(address("Lee, Ann <a@b.co>").unwrap(), "\"Lee, Ann\" <a@b.co>");
        assert!(address("Jörg <j@b.co>").unwrap().starts_with("=?UTF-8?B?"));
        assert!(address("a@b.co\r\nBcc: x@y.z").is_err());
        assert!(address("nobody").is_err());
    }

    #[test]
    fn alternative_prefers_plain_and_html_falls_back() {
        let b = |s: &str| URL_SAFE_NO_PAD.encode(s);
        let alt = json!({"mimeType":"multipart/alternative","parts":[
            {"mimeType":"text/plain","body":{"data": b("plain body")}},
            {"mimeType":"text/html","body":{"data": b("<p>html body</p>")}}]});
        assert_eq!(extract(&alt).text, "plain body");
        let html = json!({"mimeType":"multipart/mixed","parts":[
            {"mimeType":"text/html","body":{"data": b("<html><head><style>p{}</style></head><body><p>Hi &amp; bye</p><ul><li>one</li></ul><a href=\"https://x.example/a\">link</a><script>x()</script></body></html>")}},
            {"mimeType":"application/pdf","filename":"a.pdf","body":{"attachmentId":"A1","size":1234}}]});
        let e = extract(&html);
        assert_eq!(e.text, "Hi & bye\n\n- one\nlink (https://x.example/a)");
        assert_eq!(
            e.attachments,
            vec![Attachment { filename: "a.pdf".into(), mime_type: "application/pdf".into(), size: 1234 }]
        );
    }
}
