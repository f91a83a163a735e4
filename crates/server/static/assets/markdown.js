// A small, safe Markdown renderer for model output and proposal summaries.
//
// Safety: the input is only ever turned into DOM nodes created with createElement and text set
// through text nodes. Raw HTML in the input is shown as text (`<script>` stays the characters
// "<script>"). Links keep only http(s)/mailto targets and open without a referrer.
//
// Supported: paragraphs (single newlines become line breaks), # headings, - * + and 1. lists
// (nested by indentation), > quotes, ``` fenced code, `inline code`, **bold**, *italic*/_italic_,
// ~~strike~~, [links](https://…), <https://…> and bare URLs, --- rules, and | pipe | tables |.

const FENCE = /^\s{0,3}(`{3,}|~{3,})\s*([\w+-]*)/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
const QUOTE = /^\s{0,3}>\s?/;
const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const TABLE_SEP = /^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$/;

function el(tag, cls) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  return e;
}

function isBlockStart(line, next) {
  return (
    FENCE.test(line) ||
    HEADING.test(line) ||
    RULE.test(line) ||
    QUOTE.test(line) ||
    ITEM.test(line) ||
    (line.includes('|') && next !== undefined && TABLE_SEP.test(next) && next.includes('-'))
  );
}

function indentOf(line) {
  const m = /^(\s*)/.exec(line);
  return m ? m[1].replace(/\t/g, '    ').length : 0;
}

/** Renders Markdown text into a DocumentFragment. */
export function renderMarkdown(src) {
  const frag = document.createDocumentFragment();
  const lines = String(src ?? '').replace(/\r\n?/g, '\n').split('\n');
  blocks(lines, frag, 0);
  return frag;
}

function blocks(lines, parent, depth) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      i++;
      continue;
    }
    let m;
    if ((m = FENCE.exec(line))) {
      const fence = m[1];
      const lang = m[2];
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence)) body.push(lines[i++]);
      i++; // closing fence (or end)
      const pre = el('pre', 'md-code');
      const code = el('code');
      if (lang && /^[\w+-]{1,20}$/.test(lang)) code.dataset.lang = lang;
      code.textContent = body.join('\n');
      pre.append(code);
      parent.append(pre);
      continue;
    }
    if ((m = HEADING.exec(line))) {
      const level = Math.min(6, m[1].length + 2);
      const hd = el(`h${level}`, 'md-h');
      inline(m[2], hd);
      parent.append(hd);
      i++;
      continue;
    }
    if (RULE.test(line)) {
      parent.append(el('hr'));
      i++;
      continue;
    }
    if (QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && lines[i].trim() && (QUOTE.test(lines[i]) || !isBlockStart(lines[i], lines[i + 1]))) {
        inner.push(lines[i].replace(QUOTE, ''));
        i++;
      }
      const bq = el('blockquote');
      if (depth < 8) blocks(inner, bq, depth + 1);
      else bq.textContent = inner.join('\n');
      parent.append(bq);
      continue;
    }
    if ((m = ITEM.exec(line))) {
      i = list(lines, i, parent, depth);
      continue;
    }
    if (line.includes('|') && i + 1 < lines.length && TABLE_SEP.test(lines[i + 1]) && lines[i + 1].includes('-')) {
      i = table(lines, i, parent);
      continue;
    }
    // Paragraph.
    const para = [];
    while (i < lines.length && lines[i].trim() && (para.length === 0 || !isBlockStart(lines[i], lines[i + 1]))) {
      para.push(lines[i].trim());
      i++;
    }
    const p = el('p');
    para.forEach((text, n) => {
      if (n > 0) p.append(el('br'));
      inline(text, p);
    });
    parent.append(p);
  }
}

function list(lines, start, parent, depth) {
  const first = ITEM.exec(lines[start]);
  const baseIndent = indentOf(first[1]);
  const ordered = /\d/.test(first[2]);
  const listEl = el(ordered ? 'ol' : 'ul');
  if (ordered) {
    const n = parseInt(first[2], 10);
    if (n !== 1) listEl.setAttribute('start', String(n));
  }
  let i = start;
  while (i < lines.length) {
    const m = ITEM.exec(lines[i]);
    if (!m || indentOf(m[1]) !== baseIndent || /\d/.test(m[2]) !== ordered) break;
    const content = [m[3]];
    const contentIndent = baseIndent + m[2].length + 1;
    i++;
    while (i < lines.length) {
      const l = lines[i];
      if (!l.trim()) {
        // A blank line continues the item only if indented content follows.
        if (i + 1 < lines.length && lines[i + 1].trim() && indentOf(lines[i + 1]) >= contentIndent) {
          content.push('');
          i++;
          continue;
        }
        break;
      }
      const ind = indentOf(l);
      const im = ITEM.exec(l);
      if (im && ind <= baseIndent) break;
      if (ind >= Math.min(contentIndent, baseIndent + 2)) {
        content.push(l.slice(Math.min(ind, contentIndent)));
      } else if (!isBlockStart(l, lines[i + 1])) {
        content.push(l.trim()); // lazy continuation
      } else {
        break;
      }
      i++;
    }
    const li = el('li');
    const simple = content.length === 1 || content.every((c) => !ITEM.test(c) && c.trim() && !isBlockStart(c));
    if (simple) {
      content.forEach((text, n) => {
        if (n > 0) li.append(el('br'));
        inline(text.trim(), li);
      });
    } else if (depth < 8) {
      blocks(content, li, depth + 1);
      // A single paragraph in an item renders without the <p>.
      if (li.firstChild && li.firstChild.nodeName === 'P' && li.firstChild === li.firstElementChild) {
        const p = li.firstChild;
        while (p.firstChild) li.insertBefore(p.firstChild, p);
        p.remove();
      }
    } else {
      li.textContent = content.join('\n');
    }
    listEl.append(li);
    // Skip one blank line between items of the same list.
    if (i < lines.length && !lines[i].trim() && i + 1 < lines.length) {
      const nm = ITEM.exec(lines[i + 1]);
      if (nm && indentOf(nm[1]) === baseIndent && /\d/.test(nm[2]) === ordered) i++;
    }
  }
  parent.append(listEl);
  return i;
}

function cells(line) {
  let s = line.trim();
  if (s.startsWith('|')) s = s.slice(1);
  if (s.endsWith('|') && !s.endsWith('\\|')) s = s.slice(0, -1);
  const out = [];
  let cur = '';
  for (let k = 0; k < s.length; k++) {
    if (s[k] === '\\' && s[k + 1] === '|') {
      cur += '|';
      k++;
    } else if (s[k] === '|') {
      out.push(cur.trim());
      cur = '';
    } else {
      cur += s[k];
    }
  }
  out.push(cur.trim());
  return out;
}

function table(lines, start, parent) {
  const head = cells(lines[start]);
  const align = cells(lines[start + 1]).map((c) => (c.startsWith(':') && c.endsWith(':') ? 'center' : c.endsWith(':') ? 'right' : ''));
  const wrap = el('div', 'md-table');
  const t = el('table');
  const thead = el('thead');
  const tr = el('tr');
  head.forEach((c, n) => {
    const th = el('th');
    if (align[n]) th.className = `al-${align[n]}`;
    inline(c, th);
    tr.append(th);
  });
  thead.append(tr);
  t.append(thead);
  const tbody = el('tbody');
  let i = start + 2;
  while (i < lines.length && lines[i].trim() && lines[i].includes('|')) {
    const row = el('tr');
    const cs = cells(lines[i]);
    head.forEach((_, n) => {
      const td = el('td');
      if (align[n]) td.className = `al-${align[n]}`;
      inline(cs[n] ?? '', td);
      row.append(td);
    });
    tbody.append(row);
    i++;
  }
  t.append(tbody);
  wrap.append(t);
  parent.append(wrap);
  return i;
}

const URL_RE = /^https?:\/\/[^\s<>"'`]+/i;
const ESCAPABLE = '\\`*_{}[]()#+-.!|~<>';

function linkNode(href, children) {
  let ok = false;
  try {
    const u = new URL(href);
    ok = u.protocol === 'http:' || u.protocol === 'https:' || u.protocol === 'mailto:';
  } catch {
    ok = false;
  }
  if (!ok) {
    const span = el('span');
    span.append(...children);
    return span;
  }
  const a = el('a');
  a.setAttribute('href', href);
  a.setAttribute('target', '_blank');
  a.setAttribute('rel', 'noopener noreferrer nofollow');
  a.append(...children);
  return a;
}

function wordChar(c) {
  return c !== undefined && /[\p{L}\p{N}]/u.test(c);
}

/** Appends the inline content of `text` to `parent`. */
export function inline(text, parent, depth = 0) {
  let buf = '';
  const flush = () => {
    if (buf) parent.append(document.createTextNode(buf));
    buf = '';
  };
  const sub = (tag, inner) => {
    flush();
    const e = el(tag);
    if (depth < 10) inline(inner, e, depth + 1);
    else e.textContent = inner;
    parent.append(e);
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    const rest = text.slice(i);
    // Backslash escape.
    if (c === '\\' && i + 1 < text.length && ESCAPABLE.includes(text[i + 1])) {
      buf += text[i + 1];
      i += 2;
      continue;
    }
    // Code span.
    if (c === '`') {
      const run = /^`+/.exec(rest)[0];
      const end = text.indexOf(run, i + run.length);
      if (end > i) {
        flush();
        const code = el('code');
        code.textContent = text.slice(i + run.length, end).replace(/^ (.*) $/, '$1');
        parent.append(code);
        i = end + run.length;
        continue;
      }
      buf += run;
      i += run.length;
      continue;
    }
    // Strong / strike.
    if ((rest.startsWith('**') || rest.startsWith('__') || rest.startsWith('~~')) && text[i + 2] && text[i + 2] !== ' ') {
      const d = rest.slice(0, 2);
      const end = text.indexOf(d, i + 2);
      const leftOk = d !== '__' || !wordChar(text[i - 1]);
      const rightOk = d !== '__' || !wordChar(text[end + 2]);
      if (end > i + 2 && leftOk && rightOk && text[end - 1] !== ' ') {
        sub(d === '~~' ? 'del' : 'strong', text.slice(i + 2, end));
        i = end + 2;
        continue;
      }
    }
    // Emphasis.
    if ((c === '*' || c === '_') && text[i + 1] && text[i + 1] !== ' ' && text[i + 1] !== c) {
      const leftOk = c === '*' || !wordChar(text[i - 1]);
      let end = i + 1;
      let found = -1;
      while ((end = text.indexOf(c, end)) !== -1) {
        const rightOk = c === '*' || !wordChar(text[end + 1]);
        if (text[end - 1] !== ' ' && text[end + 1] !== c && rightOk) {
          found = end;
          break;
        }
        end++;
      }
      if (leftOk && found > i + 1) {
        sub('em', text.slice(i + 1, found));
        i = found + 1;
        continue;
      }
    }
    // [text](url)
    if (c === '[') {
      const m = /^\[([^\]\n]{1,500})\]\(\s*<?((?:[^\s()<>]|\([^\s()<>]*\))+)>?(?:\s+"[^"]*")?\s*\)/.exec(rest);
      if (m) {
        flush();
        const label = document.createDocumentFragment();
        if (depth < 10) inline(m[1], label, depth + 1);
        else label.append(document.createTextNode(m[1]));
        parent.append(linkNode(m[2], [label]));
        i += m[0].length;
        continue;
      }
    }
    // <https://…> autolink.
    if (c === '<') {
      const m = /^<(https?:\/\/[^\s<>]+|mailto:[^\s<>]+)>/i.exec(rest);
      if (m) {
        flush();
        parent.append(linkNode(m[1], [document.createTextNode(m[1].replace(/^mailto:/i, ''))]));
        i += m[0].length;
        continue;
      }
    }
    // Bare URL.
    if ((c === 'h' || c === 'H') && !wordChar(text[i - 1])) {
      const m = URL_RE.exec(rest);
      if (m) {
        let url = m[0];
        // Trailing punctuation belongs to the sentence, and an unbalanced ")" to the text.
        while (/[.,;:!?'"\]]$/.test(url) || (url.endsWith(')') && (url.match(/\(/g) || []).length < (url.match(/\)/g) || []).length)) {
          url = url.slice(0, -1);
        }
        flush();
        parent.append(linkNode(url, [document.createTextNode(url)]));
        i += url.length;
        continue;
      }
    }
    buf += c;
    i++;
  }
  flush();
  return parent;
}

/** Plain text of Markdown (for previews and titles): the rendered text content, collapsed. */
export function markdownToText(src) {
  const div = document.createElement('div');
  div.append(renderMarkdown(src));
  return div.textContent.replace(/\s+/g, ' ').trim();
}
