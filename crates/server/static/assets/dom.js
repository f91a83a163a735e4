// Tiny DOM helpers. Everything the dashboard shows is built from nodes and text nodes; no code
// path assigns HTML strings (no innerHTML/outerHTML/insertAdjacentHTML), so text from the API or
// the model can never become markup.

/**
 * h('button', {class: 'btn', onclick: fn, 'aria-label': 'x'}, 'text', childNode, [more])
 * Attribute values are set with setAttribute (or as properties for `value`/`checked`/`disabled`);
 * `on*` keys add event listeners; children may be strings, numbers, nodes, arrays, null/false.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') {
        el.addEventListener(k.slice(2), v);
      } else if (k === 'class') {
        el.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
      } else if (k === 'dataset') {
        for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = dv;
      } else if (k === 'value' || k === 'checked' || k === 'disabled' || k === 'selected') {
        el[k] = v;
      } else if (k === 'href') {
        el.setAttribute('href', safeHref(String(v)));
      } else {
        el.setAttribute(k, v === true ? '' : String(v));
      }
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false || c === true) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Only http(s), mailto and same-document/same-origin relative links; anything else is inert. */
export function safeHref(href) {
  const s = href.trim();
  if (s.startsWith('#') || (s.startsWith('/') && !s.startsWith('//'))) return s;
  try {
    const u = new URL(s, location.origin);
    if (u.protocol === 'http:' || u.protocol === 'https:' || u.protocol === 'mailto:') return u.href;
  } catch {
    // fall through
  }
  return '#';
}

/** An inline SVG icon from a fixed set of path data (created with the SVG namespace). */
const ICONS = {
  chat: 'M4 5h16v10H8l-4 4z',
  inbox: 'M4 4h16v16H4zM4 13h5l1 2h4l1-2h5',
  shield: 'M12 3l8 3v6c0 5-3.5 8-8 9-4.5-1-8-4-8-9V6z',
  user: 'M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM4 21c0-4 4-6 8-6s8 2 8 6',
  users: 'M9 11a3.5 3.5 0 1 0 0-7 3.5 3.5 0 0 0 0 7zM2 20c0-3.5 3-5.5 7-5.5s7 2 7 5.5M16 4.5a3.5 3.5 0 0 1 0 6.5M18 14.5c2.5.6 4 2.5 4 5.5',
  bot: 'M5 8h14v11H5zM12 4v4M9 13h.01M15 13h.01M9 16h6',
  key: 'M14 10a4 4 0 1 0-1.2 2.8L21 21M17 17l2-2M15 15l2-2',
  list: 'M8 6h12M8 12h12M8 18h12M4 6h.01M4 12h.01M4 18h.01',
  pulse: 'M3 12h4l3-7 4 14 3-7h4',
  mail: 'M3 6h18v12H3zM3 7l9 6 9-6',
  plus: 'M12 5v14M5 12h14',
  logout: 'M15 4h4v16h-4M10 8l-4 4 4 4M6 12h10',
  menu: 'M4 7h16M4 12h16M4 17h16',
  send: 'M4 12l16-8-6 16-2-6z',
  copy: 'M8 8h11v12H8zM5 16V4h11',
  tool: 'M14 6a4 4 0 0 0 5 5l-8 8-3-3 8-8a4 4 0 0 0-2-2z',
  refresh: 'M20 11a8 8 0 1 0-2 6M20 5v6h-6',
  check: 'M5 12l5 5 9-10',
  x: 'M6 6l12 12M18 6L6 18',
  trash: 'M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3',
  edit: 'M4 20h4L19 9l-4-4L4 16zM13 7l4 4',
  ticket: 'M4 7h16v3a2 2 0 0 0 0 4v3H4v-3a2 2 0 0 0 0-4z',
  link: 'M10 14a4 4 0 0 0 6 0l3-3a4 4 0 0 0-6-6l-1 1M14 10a4 4 0 0 0-6 0l-3 3a4 4 0 0 0 6 6l1-1',
};

export function icon(name, label) {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', 'icon');
  if (label) {
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', label);
  } else {
    svg.setAttribute('aria-hidden', 'true');
  }
  const path = document.createElementNS(NS, 'path');
  path.setAttribute('d', ICONS[name] || ICONS.list);
  svg.append(path);
  return svg;
}

/** A transient message in the corner (role=status, announced by screen readers). */
export function toast(message, kind = 'info') {
  let region = document.getElementById('toasts');
  if (!region) {
    region = h('div', { id: 'toasts', class: 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.append(region);
  }
  const t = h('div', { class: ['toast', `toast-${kind}`] }, message);
  region.append(t);
  setTimeout(() => t.classList.add('toast-out'), 3800);
  setTimeout(() => t.remove(), 4300);
}

/** Loading placeholder. */
export function spinner(text = 'Loading…') {
  return h('div', { class: 'loading', role: 'status' }, h('span', { class: 'spin', 'aria-hidden': 'true' }), text);
}

/** An error box with an optional retry button. */
export function errorBox(err, retry) {
  return h(
    'div',
    { class: 'error-box', role: 'alert' },
    h('strong', null, 'Something went wrong. '),
    h('span', null, err && err.message ? err.message : String(err)),
    retry ? h('button', { class: 'btn btn-small', type: 'button', onclick: retry }, 'Try again') : null,
  );
}

/** An empty-state panel. */
export function empty(title, text, ...extra) {
  return h('div', { class: 'empty' }, h('p', { class: 'empty-title' }, title), text ? h('p', null, text) : null, extra);
}

/**
 * A modal dialog (native <dialog>: focus is trapped, Esc closes). `build(close)` returns the
 * body; resolves with what `close(value)` was called with (undefined on Esc).
 */
export function modal(title, build) {
  return new Promise((resolve) => {
    const dlg = h('dialog', { class: 'modal', 'aria-labelledby': 'modal-title' });
    let done = false;
    const close = (value) => {
      if (done) return;
      done = true;
      dlg.close();
      dlg.remove();
      resolve(value);
    };
    dlg.addEventListener('cancel', (e) => {
      e.preventDefault();
      close(undefined);
    });
    replace(dlg, h('h2', { id: 'modal-title' }, title), build(close));
    document.body.append(dlg);
    dlg.showModal();
  });
}

/** Asks a yes/no question; resolves true for yes. */
export function confirmDialog(title, text, yes = 'Confirm', danger = false) {
  return modal(title, (close) =>
    h(
      'div',
      null,
      h('p', null, text),
      h(
        'div',
        { class: 'actions' },
        h('button', { class: 'btn', type: 'button', onclick: () => close(false) }, 'Cancel'),
        h(
          'button',
          { class: ['btn', danger ? 'btn-danger' : 'btn-primary'], type: 'button', onclick: () => close(true), autofocus: true, 'data-testid': 'confirm-yes' },
          yes,
        ),
      ),
    ),
  ).then(Boolean);
}

/** Copies text to the clipboard; falls back to selecting it in `fallbackInput`. */
export async function copyText(text, fallbackInput) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    if (fallbackInput) {
      fallbackInput.focus();
      fallbackInput.select();
      try {
        return document.execCommand('copy');
      } catch {
        return false;
      }
    }
    return false;
  }
}

/**
 * Shows a secret exactly once with a copy button. Nothing keeps it after the dialog closes.
 */
export function showSecretOnce(title, secret, note) {
  return modal(title, (close) => {
    const input = h('input', { class: 'secret', type: 'text', readonly: true, value: secret, 'aria-label': 'New token', spellcheck: 'false' });
    const status = h('span', { class: 'muted', role: 'status' });
    return h(
      'div',
      null,
      h('p', null, note),
      h(
        'div',
        { class: 'secret-row' },
        input,
        h(
          'button',
          {
            class: 'btn btn-primary',
            type: 'button',
            'data-testid': 'copy-secret',
            onclick: async () => {
              const ok = await copyText(secret, input);
              status.textContent = ok ? 'Copied.' : 'Select the text and copy it by hand.';
            },
          },
          icon('copy'),
          'Copy',
        ),
      ),
      status,
      h('p', { class: 'warn' }, 'This is the only time it is shown. Store it somewhere safe, like a password manager.'),
      h('div', { class: 'actions' }, h('button', { class: 'btn', type: 'button', onclick: () => close(true), 'data-testid': 'secret-done' }, 'Done')),
    );
  });
}
