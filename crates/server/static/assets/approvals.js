// Approvals: the inbox of proposals (pending writes the agent wants to make), their history, and
// autonomy grants. Decisions go through the REST API; live updates arrive over the WebSocket.

import { h, replace, icon, spinner, errorBox, toast, empty, confirmDialog } from './dom.js';
import * as api from './api.js';
import * as live from './live.js';
import { renderMarkdown, markdownToText } from './markdown.js';
import { badge, timeEl, relative, dateTime, humanize, valueText, fieldList, STATE_LABEL } from './format.js';

const NOT_AVAILABLE = 'Approvals are not available on this gateway yet (it was built without the approval API). Writes your agent wants to make cannot run until they are.';

const TOOL_TITLES = {
  gmail_send: 'Send e-mail',
  gmail_draft_create: 'Create e-mail draft',
  calendar_create_event: 'Create calendar event',
  calendar_update_event: 'Update calendar event',
  sheets_append: 'Append to spreadsheet',
  sheets_update: 'Update spreadsheet',
  notion_create_page: 'Create Notion page',
  notion_update_page: 'Update Notion page',
};

export function toolTitle(tool) {
  return TOOL_TITLES[tool] || humanize(tool);
}

function toolIcon(tool) {
  if (tool.startsWith('gmail')) return 'mail';
  if (tool.startsWith('calendar')) return 'list';
  return 'tool';
}

export async function loadProposals(agent, state) {
  const qs = [`agent=${api.q(agent)}`];
  if (state) qs.push(`state=${api.q(state)}`);
  const r = await api.get(`/proposals?${qs.join('&')}`);
  return Array.isArray(r) ? r : r && Array.isArray(r.proposals) ? r.proposals : [];
}

// ---- diff ---------------------------------------------------------------------------------

/** Line diff (longest common subsequence); small inputs only. */
function lineDiff(a, b) {
  const x = String(a ?? '').split('\n').slice(0, 400);
  const y = String(b ?? '').split('\n').slice(0, 400);
  const n = x.length;
  const m = y.length;
  const dp = Array.from({ length: n + 1 }, () => new Uint16Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) dp[i][j] = x[i] === y[j] ? dp[i + 1][j + 1] + 1 : Math.max(dp[i + 1][j], dp[i][j + 1]);
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) {
      out.push([' ', x[i]]);
      i++;
      j++;
    } else if (dp[i + 1][j] >= dp[i][j + 1]) out.push(['-', x[i++]]);
    else out.push(['+', y[j++]]);
  }
  while (i < n) out.push(['-', x[i++]]);
  while (j < m) out.push(['+', y[j++]]);
  return out;
}

function diffView(oldArgs, newArgs) {
  const keys = [...new Set([...Object.keys(oldArgs || {}), ...Object.keys(newArgs || {})])];
  const rows = [];
  for (const k of keys) {
    const a = valueText(oldArgs?.[k], 100000);
    const b = valueText(newArgs?.[k], 100000);
    if (a === b) continue;
    let content;
    if (a.includes('\n') || b.includes('\n')) {
      content = h(
        'div',
        { class: 'diff-lines' },
        lineDiff(a, b).map(([op, line]) => h('div', { class: op === '+' ? 'ins' : op === '-' ? 'del' : 'same' }, h('span', { class: 'diff-op', 'aria-hidden': 'true' }, op), op === '+' ? h('ins', null, line || ' ') : op === '-' ? h('del', null, line || ' ') : line || ' ')),
      );
    } else {
      content = h('div', null, oldArgs?.[k] !== undefined ? h('del', null, a) : null, oldArgs?.[k] !== undefined && newArgs?.[k] !== undefined ? ' → ' : null, newArgs?.[k] !== undefined ? h('ins', null, b) : null);
    }
    rows.push(h('dt', null, humanize(k)), h('dd', null, content));
  }
  if (!rows.length) return h('p', { class: 'muted small' }, 'The arguments did not change.');
  return h('dl', { class: 'fields diff' }, rows);
}

// ---- a proposal card ----------------------------------------------------------------------

const MAIL_KEYS = ['to', 'cc', 'bcc', 'subject', 'body'];

function argsView(tool, args) {
  const a = args && typeof args === 'object' ? args : {};
  const parts = [];
  const hasMail = MAIL_KEYS.some((k) => a[k] !== undefined);
  if (hasMail) {
    const line = (label, key) => (a[key] !== undefined && a[key] !== '' ? h('div', { class: 'mail-line' }, h('span', { class: 'mail-k' }, label), h('span', { class: 'mail-v', 'data-field': key }, valueText(a[key], 2000))) : null);
    parts.push(
      h(
        'div',
        { class: 'mail-preview' },
        line('To', 'to'),
        line('Cc', 'cc'),
        line('Bcc', 'bcc'),
        line('Subject', 'subject'),
        a.body !== undefined ? h('div', { class: 'mail-body pre', 'data-field': 'body' }, String(a.body)) : null,
      ),
    );
  }
  const rest = Object.fromEntries(Object.entries(a).filter(([k]) => !(hasMail && MAIL_KEYS.includes(k))));
  if (Object.keys(rest).length) parts.push(fieldList(rest));
  if (!parts.length) parts.push(h('p', { class: 'muted small' }, 'No details.'));
  return parts;
}

function decisionText(p) {
  const d = p.decision;
  if (!d) return null;
  const by = d.by ? (d.by.startsWith('user:') ? 'the owner' : d.by.startsWith('admin') ? 'an admin' : d.by) : 'someone';
  const via = d.via ? ` via ${{ rest: 'the dashboard or API', ws: 'the dashboard', chat: 'chat' }[d.via] || d.via}` : '';
  switch (d.kind) {
    case 'approved':
      return `Approved by ${by}${via}`;
    case 'rejected':
      return `Rejected by ${by}${via}`;
    case 'edited':
      return `Changes requested by ${by}${via}: “${d.instructions}”`;
    case 'auto':
      return `Ran automatically (autonomy grant ${d.grant_id})`;
    default:
      return humanize(d.kind);
  }
}

function resultView(p) {
  if (p.result === null || p.result === undefined) return null;
  const r = p.result;
  const cls = p.state === 'failed' || p.state === 'unknown' ? 'result result-bad' : 'result';
  if (typeof r === 'string') return h('div', { class: cls }, r);
  if (r && typeof r === 'object' && typeof r.error === 'string') return h('div', { class: 'result result-bad' }, r.error);
  if (r && typeof r === 'object' && typeof r.message === 'string' && Object.keys(r).length === 1) return h('div', { class: cls }, r.message);
  return h('div', { class: cls }, fieldList(r));
}

/**
 * A card for one proposal: what will happen, the agent's summary, and the decision buttons while
 * it is pending. Returns {el, update(p)}.
 */
export function proposalCard(initial, ctx, { compact = false, previous = null, onEdited = null } = {}) {
  let p = initial;
  let prev = previous;
  let busy = null; // 'approve' | 'reject' | 'edit'
  let editing = false;
  const el = h('article', { class: ['proposal', compact ? 'compact' : null], 'data-proposal': p.id, 'aria-label': `Proposal #${p.number}` });

  function render() {
    el.dataset.state = p.state;
    const head = h(
      'header',
      { class: 'proposal-head' },
      h('span', { class: 'proposal-icon', 'aria-hidden': 'true' }, icon(toolIcon(p.tool))),
      h('div', { class: 'proposal-title' }, h('h3', null, toolTitle(p.tool), h('span', { class: 'proposal-num' }, ` #${p.number}`)), h('span', { class: 'muted small' }, h('code', null, p.tool), ' · ', timeEl(p.created_at))),
      busy === 'approve' ? badge('executing', 'Running…') : busy === 'reject' ? badge('rejected', 'Rejecting…') : busy === 'edit' ? badge('approved', 'Revising…') : badge(p.state),
    );
    const body = h('div', { class: 'proposal-body' }, argsView(p.tool, p.args));
    const summary = p.summary
      ? h('details', { class: 'proposal-summary', open: !compact && p.state === 'pending' ? true : null }, h('summary', null, 'How the agent described it'), h('div', { class: 'md' }, renderMarkdown(p.summary)))
      : null;
    const diff = prev ? h('details', { class: 'proposal-diff', open: true }, h('summary', null, `Changed from #${prev.number}`), diffView(prev.args, p.args)) : null;
    const meta = [];
    if (p.state === 'pending' && p.expires_at) meta.push(h('span', null, `Expires ${relative(p.expires_at)}`));
    const dt = decisionText(p);
    if (dt) meta.push(h('span', null, dt));
    if (p.state === 'superseded' && p.superseded_by) meta.push(h('span', null, 'Replaced by a revised proposal'));
    if (p.state === 'unknown') meta.push(h('span', { class: 'bad' }, 'The gateway could not confirm whether this ran. Check the target system before retrying.'));
    if (p.state !== 'pending' && p.updated_at) meta.push(h('span', { title: dateTime(p.updated_at) }, `Updated ${relative(p.updated_at)}`));
    const parts = [head, diff, body, summary, resultView(p), meta.length ? h('p', { class: 'proposal-meta muted small' }, meta.flatMap((m, i) => (i ? [' · ', m] : [m]))) : null];
    if (p.state === 'pending') parts.push(actions());
    replace(el, parts);
  }

  function actions() {
    const disabled = !!busy;
    if (editing) {
      const text = h('textarea', { class: 'edit-input', rows: '3', placeholder: 'e.g. make it shorter and sign it with my first name', 'aria-label': `What should change in proposal #${p.number}?`, 'data-testid': 'edit-instructions' });
      setTimeout(() => text.focus(), 0);
      const submitEdit = async () => {
        const instructions = text.value.trim();
        if (!instructions) {
          text.focus();
          return;
        }
        editing = false;
        await decide('edit', { instructions });
      };
      text.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
          e.preventDefault();
          submitEdit();
        } else if (e.key === 'Escape') {
          e.preventDefault();
          editing = false;
          render();
        }
      });
      return h(
        'form',
        { class: 'proposal-edit', onsubmit: (e) => { e.preventDefault(); submitEdit(); } },
        h('label', null, 'What should change?'),
        text,
        h(
          'div',
          { class: 'actions' },
          h('button', { class: 'btn', type: 'button', onclick: () => { editing = false; render(); } }, 'Cancel'),
          h('button', { class: 'btn btn-primary', type: 'submit', 'data-testid': 'edit-submit' }, 'Ask for changes'),
        ),
      );
    }
    return h(
      'div',
      { class: 'actions proposal-actions' },
      h('button', { class: 'btn btn-danger-ghost', type: 'button', disabled, onclick: () => decide('reject'), 'data-action': 'reject' }, icon('x'), 'Reject'),
      h('button', { class: 'btn', type: 'button', disabled, onclick: () => { editing = true; render(); }, 'data-action': 'edit' }, icon('edit'), 'Edit'),
      h('button', { class: 'btn btn-primary', type: 'button', disabled, onclick: () => decide('approve'), 'data-action': 'approve' }, icon('check'), p.tool === 'gmail_send' ? 'Approve & send' : 'Approve'),
    );
  }

  async function decide(what, body) {
    busy = what;
    render();
    const agentQ = `agent=${api.q(p.agent_id)}`;
    try {
      const r = await api.post(`/proposals/${api.q(p.id)}/${what}?${agentQ}`, body);
      busy = null;
      if (what === 'edit') {
        const next = r && r.proposal ? r.proposal : null;
        p = { ...p, state: 'superseded', superseded_by: next ? next.id : p.superseded_by };
        render();
        if (next && onEdited) onEdited(next, p);
        toast(next ? `Revised as #${next.number}.` : 'Changes requested.');
      } else {
        if (r && r.id) p = r;
        render();
        if (what === 'approve') toast(p.state === 'done' ? 'Approved and done.' : p.state === 'failed' ? 'Approved, but it failed.' : `Approved (${STATE_LABEL[p.state] || p.state}).`, p.state === 'failed' ? 'bad' : 'ok');
        else toast('Rejected. Nothing was done.');
      }
    } catch (e) {
      busy = null;
      toast(e.message, 'bad');
      // Someone else may have decided already; show the real state.
      try {
        const fresh = await api.get(`/proposals/${api.q(p.id)}?${agentQ}`);
        if (fresh && fresh.id) p = fresh;
      } catch {
        // keep what we have
      }
      render();
    }
  }

  render();
  return {
    el,
    get proposal() {
      return p;
    },
    update(next, previousProposal) {
      if (busy && next.state === 'pending') return; // our own request will answer
      p = { ...p, ...next };
      if (previousProposal) prev = previousProposal;
      render();
    },
  };
}

// ---- pending-count badge in the navigation --------------------------------------------------

/** Most recent sessions whose proposal events the page follows (the gateway sends them per session). */
const WATCHED_SESSIONS = 50;
/** Fallback refresh of the pending list, for changes no subscribed session reported. */
export const POLL_MS = 20000;

/**
 * Keeps the navigation badge (pending proposals) current: follows the agent's recent sessions
 * over the WebSocket, re-reads the pending list on reconnect, every POLL_MS and when the tab
 * becomes visible, and shows gateway notices (an expired proposal, …) as toasts.
 */
export function watchBadge(ctx) {
  const pending = new Set();
  const watched = new Set();
  const offs = [];
  const watch = (id) => {
    if (watched.has(id)) return;
    watched.add(id);
    live.subscribe(id, ctx.agentId);
  };
  const refresh = async () => {
    try {
      const list = await loadProposals(ctx.agentId, 'pending');
      pending.clear();
      for (const p of list) if (p.state === 'pending') pending.add(p.id);
      ctx.setBadge('approvals', pending.size);
    } catch {
      // Not available: no badge.
    }
  };
  const follow = async () => {
    try {
      const sessions = await api.get(`/sessions?agent=${api.q(ctx.agentId)}`);
      sessions.sort((a, b) => b.updated_at - a.updated_at);
      for (const s of sessions.slice(0, WATCHED_SESSIONS)) watch(s.id);
    } catch {
      // The chat view shows session errors.
    }
  };
  refresh();
  follow();
  offs.push(
    live.on('proposal', (ev) => {
      const p = ev.proposal;
      if (!p) return;
      if (p.state === 'pending') pending.add(p.id);
      else pending.delete(p.id);
      ctx.setBadge('approvals', pending.size);
    }),
    live.on('session', (ev) => ev.session && ev.session.id && watch(ev.session.id)),
    live.on('ready', refresh),
    live.on('notice', (ev) => {
      const open = document.querySelector(`.session-link[aria-current=page][data-session="${CSS.escape(ev.session || '')}"]`);
      if (!open && ev.message && ev.message.body) toast(markdownToText(ev.message.body).slice(0, 200));
    }),
  );
  const timer = setInterval(refresh, POLL_MS);
  const onVisible = () => document.visibilityState === 'visible' && refresh();
  document.addEventListener('visibilitychange', onVisible);
  return () => {
    clearInterval(timer);
    document.removeEventListener('visibilitychange', onVisible);
    offs.forEach((f) => f());
    for (const id of watched) live.unsubscribe(id);
  };
}

// ---- the inbox view -------------------------------------------------------------------------

export function mount(main, ctx, params) {
  const tab = params[0] === 'history' ? 'history' : 'pending';
  const cards = new Map();
  const offs = [];
  let disposed = false;
  let all = [];

  const tabs = h(
    'div',
    { class: 'tabs', role: 'tablist', 'aria-label': 'Approvals' },
    h('a', { role: 'tab', href: '#/approvals', 'aria-selected': String(tab === 'pending'), class: 'tab' }, 'Waiting for you'),
    h('a', { role: 'tab', href: '#/approvals/history', 'aria-selected': String(tab === 'history'), class: 'tab' }, 'History'),
  );
  const filter = h(
    'select',
    { 'aria-label': 'Filter by state', class: 'select-small', onchange: () => renderHistory() },
    h('option', { value: '' }, 'All decisions'),
    ['done', 'failed', 'rejected', 'superseded', 'expired', 'unknown', 'approved', 'executing'].map((s) => h('option', { value: s }, STATE_LABEL[s])),
  );
  const listEl = h('div', { class: 'proposal-list', 'data-testid': tab === 'pending' ? 'inbox' : 'history' });
  main.append(
    h(
      'div',
      { class: 'page' },
      h(
        'header',
        { class: 'page-head' },
        h('div', null, h('h1', null, 'Approvals'), h('p', { class: 'muted' }, 'Your agent asks before it sends, creates or changes anything. Review each action and decide.')),
        tab === 'history' ? filter : null,
      ),
      tabs,
      listEl,
    ),
  );

  function previousOf(p) {
    return all.find((x) => x.superseded_by === p.id) || null;
  }

  function addCard(p, { top = false } = {}) {
    const card = proposalCard(p, ctx, {
      previous: previousOf(p),
      onEdited: (next, old) => {
        all = all.filter((x) => x.id !== old.id).concat([old, next]);
        const card = cards.get(next.id) || addCard(next, { top: true });
        card.update(next, old);
        card.el.scrollIntoView({ block: 'start', behavior: 'smooth' });
      },
    });
    cards.set(p.id, card);
    const emptyEl = listEl.querySelector('.empty');
    if (emptyEl) emptyEl.remove();
    if (top) listEl.prepend(card.el);
    else listEl.append(card.el);
    return card;
  }

  function renderPending() {
    listEl.replaceChildren();
    cards.clear();
    const pending = all.filter((p) => p.state === 'pending').sort((a, b) => b.created_at - a.created_at);
    if (!pending.length) {
      listEl.append(empty('Nothing is waiting for you.', 'When your agent wants to send an e-mail, create an event or change a record, it shows up here first.', h('a', { href: '#/approvals/history' }, 'See decided actions')));
      return;
    }
    for (const p of pending) addCard(p);
  }

  function renderHistory() {
    listEl.replaceChildren();
    cards.clear();
    const want = filter.value;
    const decided = all.filter((p) => p.state !== 'pending' && (!want || p.state === want)).sort((a, b) => (b.updated_at || b.created_at) - (a.updated_at || a.created_at));
    if (!decided.length) {
      listEl.append(empty(want ? 'No actions in this state.' : 'No decided actions yet.', 'Approved, rejected and expired proposals are kept here.'));
      return;
    }
    for (const p of decided) addCard(p);
  }

  async function load() {
    replace(listEl, spinner());
    try {
      all = await loadProposals(ctx.agentId, null);
      if (disposed) return;
      if (tab === 'pending') renderPending();
      else renderHistory();
    } catch (e) {
      if (api.isMissingRoute(e)) replace(listEl, empty('Approvals are not available yet.', NOT_AVAILABLE));
      else replace(listEl, errorBox(e, load));
    }
  }

  function merge(p) {
    const known = all.find((x) => x.id === p.id);
    if (known && known.state === p.state && known.updated_at === p.updated_at) return;
    onProposal({ proposal: p });
  }
  const poll = setInterval(async () => {
    try {
      const fresh = await loadProposals(ctx.agentId, tab === 'pending' ? 'pending' : null);
      if (!disposed) fresh.forEach(merge);
    } catch {
      // The next poll or the live channel will catch up.
    }
  }, POLL_MS);
  offs.push(() => clearInterval(poll));

  function onProposal(ev) {
    const p = ev.proposal;
    if (!p || p.agent_id !== ctx.agentId) return;
    const i = all.findIndex((x) => x.id === p.id);
    if (i >= 0) all[i] = { ...all[i], ...p };
    else all.push(p);
    const card = cards.get(p.id);
    if (card) card.update(p, previousOf(p));
    else if (tab === 'pending' && p.state === 'pending') addCard(p, { top: true });
    else if (tab === 'history' && p.state !== 'pending' && (!filter.value || filter.value === p.state)) addCard(p, { top: true });
  }
  offs.push(live.on('proposal', onProposal));
  offs.push(live.on('ready', () => !disposed && load()));

  load();
  return () => {
    disposed = true;
    offs.forEach((f) => f());
  };
}

// ---- autonomy grants --------------------------------------------------------------------------

const FAMILIES = [
  ['gmail.send', 'Send e-mail'],
  ['gmail.draft', 'Create e-mail drafts'],
  ['calendar.create', 'Create calendar events'],
  ['calendar.update', 'Update calendar events'],
  ['sheets.append', 'Append to spreadsheets'],
  ['sheets.update', 'Update spreadsheets'],
  ['notion.create', 'Create Notion pages'],
  ['notion.update', 'Update Notion pages'],
  ['attio.create', 'Create CRM records'],
  ['attio.update', 'Update CRM records'],
  ['attio.upsert', 'Create or update CRM records'],
  ['attio.note', 'Add CRM notes'],
  ['attio.task', 'Create CRM tasks'],
];

function familyLabel(action) {
  const f = FAMILIES.find(([k]) => k === action);
  return f ? f[1] : humanize(action);
}

export function mountGrants(main, ctx) {
  const agentQ = `agent=${api.q(ctx.agentId)}`;
  const listEl = h('div', { class: 'grant-list', 'data-testid': 'grants' });
  let disposed = false;

  function grantRow(g) {
    const conds = Object.entries(g.match_args || {}).map(([k, v]) => h('li', null, `${humanize(k)} matches `, h('code', null, valueText(v))));
    const limits = [];
    if (g.daily_cap) limits.push(`at most ${g.daily_cap} per day`);
    limits.push(g.expires_at ? `until ${dateTime(g.expires_at)}` : 'no end date');
    return h(
      'article',
      { class: 'card grant', 'data-grant': g.id },
      h(
        'div',
        { class: 'grant-main' },
        h('h3', null, familyLabel(g.action), ' ', h('code', { class: 'muted small' }, g.action)),
        conds.length ? h('ul', { class: 'grant-conds' }, conds) : h('p', { class: 'small warn-text' }, 'Any arguments — every such action runs without asking.'),
        h('p', { class: 'muted small' }, limits.join(' · '), g.expires_at && g.expires_at < Date.now() ? h('span', null, ' · ', badge('expired')) : null),
      ),
      h(
        'button',
        {
          class: 'btn btn-danger-ghost btn-small',
          type: 'button',
          onclick: async () => {
            const ok = await confirmDialog('Revoke this grant?', `${familyLabel(g.action)} will ask for your approval again, starting now.`, 'Revoke', true);
            if (!ok) return;
            try {
              await api.del(`/grants/${api.q(g.id)}?${agentQ}`);
              toast('Grant revoked.');
              load();
            } catch (e) {
              toast(e.message, 'bad');
            }
          },
        },
        'Revoke',
      ),
    );
  }

  async function load() {
    replace(listEl, spinner());
    try {
      const r = await api.get(`/grants?${agentQ}`);
      if (disposed) return;
      const grants = (Array.isArray(r) ? r : r?.grants || []).filter((g) => !g.revoked_at);
      const level = r && !Array.isArray(r) && r.grants_apply === false
        ? h('p', { class: 'notice', 'data-testid': 'autonomy-level' }, `Your agent is at autonomy level ${r.autonomy_level ?? 1}: it always asks, and grants are kept but not applied until an admin raises the level.`)
        : null;
      if (!grants.length) replace(listEl, level, empty('No grants: your agent always asks.', 'That is the safest setting. Add a grant below for routine actions you trust it with.'));
      else replace(listEl, level, grants.map(grantRow));
    } catch (e) {
      if (api.isMissingRoute(e)) {
        replace(listEl, empty('Autonomy grants are not available yet.', 'This gateway was built without the approval API, so your agent always asks.'));
        form.hidden = true;
      }
      else replace(listEl, errorBox(e, load));
    }
  }

  // Add form.
  const action = h('select', { id: 'grant-action', required: true }, FAMILIES.map(([k, label]) => h('option', { value: k }, `${label} (${k})`)));
  const condRows = h('div', { class: 'cond-rows' });
  const addCond = (key = '', pattern = '') => {
    const k = h('input', { type: 'text', value: key, placeholder: 'argument, e.g. to', 'aria-label': 'Argument name', class: 'cond-key' });
    const v = h('input', { type: 'text', value: pattern, placeholder: 'pattern, e.g. *@company.com', 'aria-label': 'Allowed pattern', class: 'cond-val' });
    const row = h('div', { class: 'cond-row' }, k, v, h('button', { class: 'btn btn-ghost btn-small', type: 'button', 'aria-label': 'Remove condition', onclick: () => row.remove() }, icon('x')));
    condRows.append(row);
  };
  addCond('to', '');
  const expires = h(
    'select',
    { id: 'grant-expires' },
    h('option', { value: '1' }, '1 day'),
    h('option', { value: '7', selected: true }, '7 days'),
    h('option', { value: '30' }, '30 days'),
    h('option', { value: '90' }, '90 days'),
    h('option', { value: '' }, 'No end date'),
  );
  const cap = h('input', { id: 'grant-cap', type: 'number', min: '1', max: '1000', value: '10', inputmode: 'numeric' });
  const formError = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const submitBtn = h('button', { class: 'btn btn-primary', type: 'submit' }, 'Add grant');
  const form = h(
    'form',
    {
      class: 'card form grant-form',
      onsubmit: async (e) => {
        e.preventDefault();
        formError.hidden = true;
        const match_args = {};
        for (const row of condRows.querySelectorAll('.cond-row')) {
          const k = row.querySelector('.cond-key').value.trim();
          const v = row.querySelector('.cond-val').value.trim();
          if (k && v) match_args[k] = v;
        }
        const body = {
          action: action.value,
          match_args,
          expires_at: expires.value ? Date.now() + Number(expires.value) * 864e5 : null,
          daily_cap: cap.value ? Number(cap.value) : null,
        };
        if (!Object.keys(match_args).length) {
          const ok = await confirmDialog('Allow every such action?', `Without a condition, “${familyLabel(body.action)}” runs for any arguments without asking you. Are you sure?`, 'Allow all', true);
          if (!ok) return;
        }
        submitBtn.disabled = true;
        try {
          await api.post(`/grants?${agentQ}`, body);
          toast('Grant added.', 'ok');
          condRows.replaceChildren();
          addCond('to', '');
          load();
        } catch (err) {
          formError.textContent = err.message;
          formError.hidden = false;
        } finally {
          submitBtn.disabled = false;
        }
      },
    },
    h('h2', null, 'Add a grant'),
    h('p', { class: 'muted small' }, 'A grant lets one kind of action run without asking, when every condition matches. It is still recorded and shown in your history. Only you or an admin can add grants — never the agent.'),
    h('div', { class: 'form-row' }, h('label', { for: 'grant-action' }, 'Action'), action),
    h('div', { class: 'form-row' }, h('span', { class: 'label' }, 'Only when'), condRows, h('button', { class: 'btn btn-ghost btn-small', type: 'button', onclick: () => addCond() }, icon('plus'), 'Add condition')),
    h('div', { class: 'form-grid' }, h('div', { class: 'form-row' }, h('label', { for: 'grant-expires' }, 'Valid for'), expires), h('div', { class: 'form-row' }, h('label', { for: 'grant-cap' }, 'Daily limit'), cap)),
    formError,
    h('div', { class: 'actions' }, submitBtn),
  );

  main.append(
    h(
      'div',
      { class: 'page' },
      h('header', { class: 'page-head' }, h('div', null, h('h1', null, 'Autonomy'), h('p', { class: 'muted' }, 'By default your agent asks before every action (level 1). Grants let routine, low-risk actions run on their own.'))),
      h('section', { 'aria-label': 'Active grants' }, h('h2', { class: 'section-title' }, 'Active grants'), listEl),
      form,
    ),
  );
  load();
  return () => {
    disposed = true;
  };
}
