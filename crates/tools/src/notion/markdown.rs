//! Notion blocks ⇄ Markdown. Reading renders the block tree the way a person would write it;
//! writing turns the model's Markdown into blocks (headings, lists, to-dos, quotes, code,
//! dividers, paragraphs; inline bold/italic/code/strike/links).

use serde_json::{Value, json};

/// Rich text (an array of rich-text objects) as Markdown.
pub(crate) fn rich_text(rt: &Value) -> String {
    let Some(items) = rt.as_array() else { return String::new() };
    let mut out = String::new();
    for t in items {
        let mut s =
            t["plain_text"].as_str().or_else(|| t["text"]["content"].as_str()).unwrap_or_default().to_owned();
        if s.is_empty() {
            continue;
        }
        let a = &t["annotations"];
        if a["code"] == true {
            s = format!("`{s}`");
        }
        if a["bold"] == true {
            s = format!("**{s}**");
        }
        if a["italic"] == true {
            s = format!("_{s}_");
        }
        if a["strikethrough"] == true {
            s = format!("~~{s}~~");
        }
        if let Some(url) = t["href"].as_str().or_else(|| t["text"]["link"]["url"].as_str()) {
            s = format!("[{s}]({url})");
        }
        out.push_str(&s);
    }
    out
}

/// Plain text of rich text (titles, property values).
pub(crate) fn plain(rt: &Value) -> String {
    rt.as_array()
        .map(|items| {
            items
                .iter()
                .map(|t| {
                    t["plain_text"].as_str().or_else(|| t["text"]["content"].as_str()).unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One block (with its already-fetched `children` array, if any) as Markdown lines, indented.
pub(crate) fn render_block(b: &Value, indent: usize, number: usize, out: &mut String) {
    let ty = b["type"].as_str().unwrap_or("unsupported");
    let data = &b[ty];
    let text = rich_text(&data["rich_text"]);
    let pad = "  ".repeat(indent);
    let line = match ty {
        "paragraph" => text,
        "heading_1" => format!("# {text}"),
        "heading_2" => format!("## {text}"),
        "heading_3" => format!("### {text}"),
        "bulleted_list_item" => format!("- {text}"),
        "numbered_list_item" => format!("{number}. {text}"),
        "to_do" => format!("- [{}] {text}", if data["checked"] == true { "x" } else { " " }),
        "toggle" => format!("- {text}"),
        "quote" => format!("> {text}"),
        "callout" => format!("> {} {text}", data["icon"]["emoji"].as_str().unwrap_or("💡")),
        "code" => {
            let lang = data["language"].as_str().unwrap_or_default();
            let lang = if lang == "plain text" { "" } else { lang };
            format!("```{lang}\n{}\n```", plain(&data["rich_text"]))
        }
        "divider" => "---".into(),
        "equation" => format!("$${}$$", data["expression"].as_str().unwrap_or_default()),
        "child_page" => format!(
            "📄 {} (page {})",
            data["title"].as_str().unwrap_or_default(),
            b["id"].as_str().unwrap_or_default()
        ),
        "child_database" => {
            format!(
                "🗂 {} (database {})",
                data["title"].as_str().unwrap_or_default(),
                b["id"].as_str().unwrap_or_default()
            )
        }
        "image" | "file" | "pdf" | "video" | "audio" => {
            let url =
                data["external"]["url"].as_str().or_else(|| data["file"]["url"].as_str()).unwrap_or_default();
            let caption = plain(&data["caption"]);
            format!("[{ty}: {}]({url})", if caption.is_empty() { ty } else { &caption })
        }
        "bookmark" | "embed" | "link_preview" => {
            let url = data["url"].as_str().unwrap_or_default();
            format!("[{url}]({url})")
        }
        "table_row" => {
            let cells: Vec<String> =
                data["cells"].as_array().map(|c| c.iter().map(rich_text).collect()).unwrap_or_default();
            format!("| {} |", cells.join(" | "))
        }
        "table" | "column_list" | "column" | "synced_block" => String::new(),
        other => format!("[unsupported block: {other}]"),
    };
    if !line.is_empty() {
        for l in line.lines() {
            out.push_str(&pad);
            out.push_str(l);
            out.push('\n');
        }
        if !is_list(ty) {
            out.push('\n');
        }
    }
    if let Some(children) = b["children"].as_array() {
        let child_indent = if line.is_empty() { indent } else { indent + 1 };
        render_blocks(children, child_indent, out);
        if ty == "table" {
            out.push('\n');
        }
    }
}

pub(crate) fn render_blocks(blocks: &[Value], indent: usize, out: &mut String) {
    let mut number = 0;
    let mut prev_list = false;
    for b in blocks {
        let ty = b["type"].as_str().unwrap_or_default();
        number = if ty == "numbered_list_item" { number + 1 } else { 0 };
        // A list ends with a blank line before the next non-list block.
        if prev_list && !is_list(ty) && !out.ends_with("\n\n") {
            out.push('\n');
        }
        render_block(b, indent, number.max(1), out);
        prev_list = is_list(ty);
    }
}

fn is_list(ty: &str) -> bool {
    matches!(ty, "bulleted_list_item" | "numbered_list_item" | "to_do" | "toggle" | "table_row")
}

// ------------------------------------------------------------------------------------------
// Markdown → blocks
// ------------------------------------------------------------------------------------------

/// Notion's limit on one rich-text `content`.
const MAX_TEXT: usize = 2000;

/// Inline Markdown → rich text: `**bold**`, `_italic_`/`*italic*`, `` `code` ``, `~~strike~~`,
/// `[text](url)`. Long runs are split to respect the 2000-character limit.
pub(crate) fn inline(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut plain_run = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let flush = |run: &mut String, out: &mut Vec<Value>| {
        if !run.is_empty() {
            push_text(out, run, Style::default(), None);
            run.clear();
        }
    };
    while i < chars.len() {
        let rest: String = chars[i..].iter().collect();
        let styled = [
            ("**", Style { bold: true, ..Style::default() }),
            ("~~", Style { strike: true, ..Style::default() }),
            ("`", Style { code: true, ..Style::default() }),
            ("_", Style { italic: true, ..Style::default() }),
            ("*", Style { italic: true, ..Style::default() }),
        ]
        .into_iter()
        .find_map(|(mark, style)| {
            let inner = rest.strip_prefix(mark)?;
            let end = inner.find(mark)?;
            (end > 0 && !inner.starts_with(' ')).then(|| {
                (inner[..end].to_owned(), mark.chars().count() * 2 + inner[..end].chars().count(), style)
            })
        });
        if let Some((content, consumed, style)) = styled {
            flush(&mut plain_run, &mut out);
            push_text(&mut out, &content, style, None);
            i += consumed;
            continue;
        }
        if chars[i] == '['
            && let Some(close) = rest.find("](")
            && let Some(end) = rest[close + 2..].find(')')
        {
            let label = &rest[1..close];
            let url = &rest[close + 2..close + 2 + end];
            if !label.is_empty()
                && (url.starts_with("http://") || url.starts_with("https://") || url.starts_with("mailto:"))
            {
                flush(&mut plain_run, &mut out);
                push_text(&mut out, label, Style::default(), Some(url));
                i += rest[..close + 2 + end + 1].chars().count();
                continue;
            }
        }
        plain_run.push(chars[i]);
        i += 1;
    }
    flush(&mut plain_run, &mut out);
    out
}

#[derive(Default, Clone, Copy)]
struct Style {
    bold: bool,
    italic: bool,
    code: bool,
    strike: bool,
}

fn push_text(out: &mut Vec<Value>, s: &str, st: Style, link: Option<&str>) {
    let chars: Vec<char> = s.chars().collect();
    for chunk in chars.chunks(MAX_TEXT) {
        let content: String = chunk.iter().collect();
        let mut t = json!({"type": "text", "text": {"content": content}});
        if let Some(url) = link {
            t["text"]["link"] = json!({"url": url});
        }
        if st.bold || st.italic || st.code || st.strike {
            t["annotations"] =
                json!({"bold": st.bold, "italic": st.italic, "code": st.code, "strikethrough": st.strike});
        }
        out.push(t);
    }
}

fn block(ty: &str, body: Value) -> Value {
    json!({"object": "block", "type": ty, ty: body})
}

fn text_block(ty: &str, text: &str) -> Value {
    block(ty, json!({"rich_text": inline(text)}))
}

/// Notion's code-language enum is long; map the common fences and default to plain text.
fn language(tag: &str) -> &'static str {
    match tag.trim().to_ascii_lowercase().as_str() {
        "rust" | "rs" => "rust",
        "python" | "py" => "python",
        "js" | "javascript" => "javascript",
        "ts" | "typescript" => "typescript",
        "json" => "json",
        "bash" | "sh" | "shell" => "shell",
        "sql" => "sql",
        "yaml" | "yml" => "yaml",
        "html" => "html",
        "css" => "css",
        "go" => "go",
        "java" => "java",
        "markdown" | "md" => "markdown",
        _ => "plain text",
    }
}

/// Markdown → top-level blocks (nested lists are flattened to one level).
pub(crate) fn to_blocks(md: &str) -> Vec<Value> {
    let mut blocks = Vec::new();
    let mut para: Vec<String> = Vec::new();
    let mut lines = md.lines().peekable();
    let flush = |para: &mut Vec<String>, blocks: &mut Vec<Value>| {
        if !para.is_empty() {
            blocks.push(text_block("paragraph", &para.join("\n")));
            para.clear();
        }
    };
    while let Some(raw) = lines.next() {
        let line = raw.trim_end();
        let t = line.trim_start();
        if let Some(tag) = t.strip_prefix("```") {
            flush(&mut para, &mut blocks);
            let mut code = Vec::new();
            for l in lines.by_ref() {
                if l.trim_start().starts_with("```") {
                    break;
                }
                code.push(l);
            }
            let body = code.join("\n");
            let rich: Vec<Value> = {
                let mut v = Vec::new();
                push_text(&mut v, &body, Style::default(), None);
                v
            };
            blocks.push(block("code", json!({"rich_text": rich, "language": language(tag)})));
            continue;
        }
        if t.is_empty() {
            flush(&mut para, &mut blocks);
            continue;
        }
        let b = if let Some(r) = t.strip_prefix("### ") {
            Some(text_block("heading_3", r))
        } else if let Some(r) = t.strip_prefix("## ") {
            Some(text_block("heading_2", r))
        } else if let Some(r) = t.strip_prefix("# ") {
            Some(text_block("heading_1", r))
        } else if let Some(r) = t.strip_prefix("- [ ] ").or_else(|| t.strip_prefix("* [ ] ")) {
            Some(block("to_do", json!({"rich_text": inline(r), "checked": false})))
        } else if let Some(r) =
            t.strip_prefix("- [x] ").or_else(|| t.strip_prefix("- [X] ")).or_else(|| t.strip_prefix("* [x] "))
        {
            Some(block("to_do", json!({"rich_text": inline(r), "checked": true})))
        } else if let Some(r) =
            t.strip_prefix("- ").or_else(|| t.strip_prefix("* ")).or_else(|| t.strip_prefix("+ "))
        {
            Some(text_block("bulleted_list_item", r))
        } else if let Some(r) = numbered(t) {
            Some(text_block("numbered_list_item", r))
        } else if let Some(r) = t.strip_prefix("> ").or_else(|| (t == ">").then_some("")) {
            Some(text_block("quote", r))
        } else if t == "---" || t == "***" || t == "___" {
            Some(block("divider", json!({})))
        } else {
            None
        };
        match b {
            Some(b) => {
                flush(&mut para, &mut blocks);
                blocks.push(b);
            }
            None => para.push(t.to_owned()),
        }
    }
    flush(&mut para, &mut blocks);
    blocks
}

fn numbered(t: &str) -> Option<&str> {
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 4 {
        return None;
    }
    t[digits..].strip_prefix(". ").or_else(|| t[digits..].strip_prefix(") "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn markdown_round_trips_through_blocks() {
        let md = "# Plan\n\nSome **bold** and _it_ with [a link](https://x.example).\nSecond line.\n\n- one\n- two\n1. first\n2. second\n- [ ] todo\n- [x] done\n> quoted\n---\n```rust\nfn main() {}\n```";
        let blocks = to_blocks(md);
        let types: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "heading_1",
                "paragraph",
                "bulleted_list_item",
                "bulleted_list_item",
                "numbered_list_item",
                "numbered_list_item",
                "to_do",
                "to_do",
                "quote",
                "divider",
                "code"
            ]
        );
        assert_eq!(blocks[10]["code"]["language"], "rust");
        let mut out = String::new();
        render_blocks(&blocks, 0, &mut out);
        assert!(out.contains("# Plan\n"), "{out}");
        assert!(
            out.contains("Some **bold** and _it_ with [a link](https://x.example).\nSecond line."),
            "{out}"
        );
        assert!(out.contains("- one\n- two\n1. first\n2. second\n- [ ] todo\n- [x] done\n"), "{out}");
        assert!(out.contains("```rust\nfn main() {}\n```"), "{out}");
    }

    #[test]
    fn long_text_is_split() {
        let rt = inline(&"a".repeat(4500));
        assert_eq!(rt.len(), 3);
        assert!(rt.iter().all(|t| t["text"]["content"].as_str().unwrap().chars().count() <= 2000));
    }
}
