// Admin console: system status, users, agents, tokens, audit log, invites.

import { h, replace, icon, spinner, errorBox, toast, empty, confirmDialog, showSecretOnce, modal, copyText } from './dom.js';
import * as api from './api.js';
import { badge, timeEl, dateTime, duration, humanize, valueText, fieldList, relative } from './format.js';
import { rotateToken } from './account.js';

/** A responsive table: on phones every row becomes a card with labelled cells. */
function table(columns, rows, { caption, rowAttrs } = {}) {
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'table' },
      caption ? h('caption', { class: 'sr-only' }, caption) : null,
      h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col', class: c.cls }, c.label)))),
      h(
        'tbody',
        null,
        rows.map((r) => h('tr', rowAttrs ? rowAttrs(r) : null, columns.map((c) => h('td', { 'data-label': c.label, class: c.cls }, c.cell(r))))),
      ),
    ),
  );
}

function pageHead(title, text, ...actions) {
  return h('header', { class: 'page-head' }, h('div', null, h('h1', null, title), text ? h('p', { class: 'muted' }, text) : null), actions.length ? h('div', { class: 'page-actions' }, actions) : null);
}

/** Mounts a page whose body is (re)built by `build()`, with loading and error states. */
function simplePage(main, title, text, build, actions = () => []) {
  const body = h('div', { class: 'page-body' });
  const refresh = h('button', { class: 'btn btn-ghost btn-small', type: 'button', onclick: () => load() }, icon('refresh'), 'Refresh');
  main.append(h('div', { class: 'page' }, pageHead(title, text, ...actions(() => load()), refresh), body));
  let disposed = false;
  async function load() {
    replace(body, spinner());
    try {
      const content = await build(() => load());
      if (!disposed) replace(body, content);
    } catch (e) {
      if (!disposed) replace(body, errorBox(e, load));
    }
  }
  load();
  return () => {
    disposed = true;
  };
}

// ---- status -------------------------------------------------------------------------------

function stat(label, value, tone, detail) {
  return h('div', { class: ['card', 'stat', tone ? `stat-${tone}` : null] }, h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, value), detail ? h('div', { class: 'stat-detail muted small' }, detail) : null);
}

function backupStat(b) {
  if (!b || b.error) return stat('Backup', 'Not reported', null, b && b.error && !api.isMissingRoute(b.error) ? b.error.message : 'This gateway does not report backup status.');
  if (!b.configured) return stat('Backup', 'Not configured', 'warn', b.note || null);
  const s = b.status || {};
  if (!s.running) return stat('Backup', 'Stopped', 'bad', s.last_error || null);
  if (s.consecutive_failures > 0) return stat('Backup', 'Failing', 'bad', `${s.consecutive_failures} failed attempts — ${s.last_error || 'unknown error'}`);
  const last = s.last_success_at ? `last copy ${relative(s.last_success_at)}` : 'no copy yet';
  const lag = s.pending ? ` · ${Math.round((s.lag_ms || 0) / 100) / 10} s behind` : ' · up to date';
  return stat('Backup', 'Healthy', 'ok', `${last}${lag}`);
}

export function mountStatus(main) {
  return simplePage(main, 'System', 'Health of this gateway and the services it depends on.', async () => {
    const [health, ready, status, backup] = await Promise.all([
      api.probe('/health'),
      api.probe('/ready'),
      api.get('/status').catch((e) => ({ error: e })),
      api.get('/backup/status').catch((e) => ({ error: e })),
    ]);
    const s = status && !status.error ? status : null;
    const llm = s?.llm;
    const cards = [
      stat('Gateway', health.ok ? 'Running' : 'Not answering', health.ok ? 'ok' : 'bad', health.data?.version ? `Version ${health.data.version}` : null),
      stat('Uptime', s ? duration(s.uptimeSecs) : '—', null, s ? `since ${dateTime(Date.now() - s.uptimeSecs * 1000)}` : null),
      stat('Store', ready.ok ? 'Ready' : 'Not ready', ready.ok ? 'ok' : 'bad', ready.data?.store ? ({ sqlite: 'SQLite', postgres: 'PostgreSQL' }[ready.data.store] || humanize(ready.data.store)) : ready.data?.reason || null),
      stat(
        'LLM provider',
        !llm ? '—' : !llm.configured ? 'Not configured' : llm.reachable ? 'Reachable' : 'Unreachable',
        !llm ? null : llm.reachable ? 'ok' : 'bad',
        llm ? [llm.provider, llm.model ? ` · ${llm.model}` : '', llm.reachable && llm.latencyMs !== undefined ? ` · ${llm.latencyMs} ms` : '', llm.error ? ` — ${llm.error}` : ''].join('') : null,
      ),
      backupStat(backup),
      stat('People & agents', s ? `${s.counts.users ?? '—'} / ${s.counts.agents ?? '—'}` : '—', null, 'users / agents'),
    ];
    return h('div', null, status && status.error ? errorBox(status.error) : null, h('div', { class: 'stats', 'data-testid': 'status-cards' }, cards));
  });
}

// ---- users --------------------------------------------------------------------------------

export function mountUsers(main) {
  return simplePage(main, 'Users', 'Everyone with access to this gateway.', async () => {
    const [users, agents] = await Promise.all([api.get('/users'), api.get('/agents')]);
    if (!users.length) return empty('No users yet.', 'Users appear here when an agent is created for them or they accept an invite.');
    const agentsOf = (u) => agents.filter((a) => a.owner === u.id);
    return table(
      [
        { label: 'Person', cell: (u) => h('div', null, h('div', { class: 'strong' }, u.name || u.email), u.name ? h('div', { class: 'muted small' }, u.email) : null) },
        { label: 'Role', cell: (u) => badge(u.role) },
        { label: 'Status', cell: (u) => badge(u.status) },
        { label: 'Agent', cell: (u) => agentsOf(u).map((a) => h('div', null, h('code', null, a.id))) },
        { label: 'Joined', cell: (u) => timeEl(u.created_at) },
      ],
      users.sort((a, b) => a.email.localeCompare(b.email)),
      { caption: 'Users', rowAttrs: (u) => ({ 'data-user': u.email }) },
    );
  });
}

// ---- agents -------------------------------------------------------------------------------

function agentDetails(agent, owner) {
  return modal(agent.name || agent.id, (close) =>
    h(
      'div',
      null,
      h('dl', { class: 'fields' }, h('dt', null, 'Id'), h('dd', null, h('code', null, agent.id)), h('dt', null, 'Kind'), h('dd', null, badge(agent.kind)), h('dt', null, 'Owner'), h('dd', null, owner ? owner.email : '—'), h('dt', null, 'Created'), h('dd', null, dateTime(agent.created_at))),
      agent.settings && Object.keys(agent.settings).length ? [h('h3', null, 'Settings'), fieldList(agent.settings)] : h('p', { class: 'muted' }, 'Default settings.'),
      h('div', { class: 'actions' }, h('button', { class: 'btn', type: 'button', onclick: () => close() }, 'Close')),
    ),
  );
}

export function mountAgents(main) {
  return simplePage(main, 'Agents', 'The orchestrator and one worker agent per person.', async () => {
    const [agents, users] = await Promise.all([api.get('/agents'), api.get('/users')]);
    if (!agents.length) return empty('No agents yet.');
    const ownerOf = (a) => users.find((u) => u.id === a.owner);
    return table(
      [
        { label: 'Agent', cell: (a) => h('button', { class: 'link-btn', type: 'button', onclick: () => agentDetails(a, ownerOf(a)) }, h('span', { class: 'strong' }, a.name || a.id), h('span', { class: 'muted small block' }, a.id)) },
        { label: 'Kind', cell: (a) => badge(a.kind) },
        { label: 'Owner', cell: (a) => ownerOf(a)?.email || h('span', { class: 'muted' }, '—') },
        { label: 'Model', cell: (a) => valueText(a.settings?.model?.primary ?? a.settings?.model ?? null) },
        { label: 'Created', cell: (a) => timeEl(a.created_at) },
      ],
      agents.sort((a, b) => (a.kind === b.kind ? a.id.localeCompare(b.id) : a.kind === 'orchestrator' ? -1 : 1)),
      { caption: 'Agents', rowAttrs: (a) => ({ 'data-agent': a.id }) },
    );
  });
}

// ---- tokens -------------------------------------------------------------------------------

export function mountTokens(main, ctx) {
  let showRevoked = false;
  return simplePage(
    main,
    'Tokens',
    'Access tokens for people, admins and API clients. Secrets are never shown again after they are issued.',
    async (reload) => {
      const [tokens, users] = await Promise.all([api.get('/tokens'), api.get('/users')]);
      const userOf = (t) => users.find((u) => u.id === t.user_id);
      const visible = tokens.filter((t) => showRevoked || !t.revoked_at).sort((a, b) => b.created_at - a.created_at);
      const toggle = h(
        'label',
        { class: 'check' },
        h('input', { type: 'checkbox', checked: showRevoked, onchange: (e) => { showRevoked = e.target.checked; reload(); } }),
        ` Show revoked (${tokens.filter((t) => t.revoked_at).length})`,
      );
      const actionsFor = (t) => {
        if (t.revoked_at) return h('span', { class: 'muted small' }, `revoked ${dateTime(t.revoked_at)}`);
        return h(
          'div',
          { class: 'row-actions' },
          h('button', {
            class: 'btn btn-small',
            type: 'button',
            'data-action': 'rotate',
            onclick: async () => {
              try {
                const r = await rotateToken(ctx, t, { who: 'the' });
                if (r) reload();
              } catch (e) {
                toast(e.message, 'bad');
              }
            },
          }, 'Rotate'),
          h('button', {
            class: 'btn btn-small btn-danger-ghost',
            type: 'button',
            'data-action': 'revoke',
            onclick: async () => {
              const own = t.id === ctx.me.tokenId;
              const ok = await confirmDialog('Revoke token?', own ? 'This is the token you are signed in with: you will be signed out.' : `${t.display} stops working immediately. This cannot be undone.`, 'Revoke', true);
              if (!ok) return;
              try {
                await api.del(`/tokens/${api.q(t.id)}`);
                toast('Token revoked.');
                reload();
              } catch (e) {
                toast(e.message, 'bad');
              }
            },
          }, 'Revoke'),
        );
      };
      return h(
        'div',
        null,
        h('div', { class: 'toolbar' }, toggle),
        visible.length
          ? table(
              [
                { label: 'Token', cell: (t) => h('div', null, h('code', null, t.display), t.id === ctx.me.tokenId ? h('span', { class: 'badge tone-info' }, 'this browser') : null, t.label ? h('div', { class: 'muted small' }, t.label) : null) },
                { label: 'Kind', cell: (t) => badge(t.kind) },
                { label: 'Belongs to', cell: (t) => (t.kind === 'admin' ? h('span', { class: 'muted' }, 'Administrators') : userOf(t)?.email || t.agent_id || '—') },
                { label: 'Issued', cell: (t) => timeEl(t.created_at) },
                { label: 'Last used', cell: (t) => timeEl(t.last_used_at) },
                { label: 'Status', cell: (t) => (t.revoked_at ? badge('revoked', 'Revoked') : badge('active', 'Active')) },
                { label: 'Actions', cell: actionsFor, cls: 'cell-actions' },
              ],
              visible,
              { caption: 'Tokens', rowAttrs: (t) => ({ 'data-token': t.id }) },
            )
          : empty('No tokens to show.'),
      );
    },
    (reload) => [
      h('button', {
        class: 'btn btn-primary btn-small',
        type: 'button',
        onclick: async () => {
          const agents = await api.get('/agents').catch(() => []);
          const chosen = await modal('Issue a token', (close) => {
            const kind = h('select', { id: 'issue-kind' }, h('option', { value: 'user' }, 'User (one person’s agent)'), h('option', { value: 'admin' }, 'Admin (full access)'));
            const agent = h('select', { id: 'issue-agent' }, agents.filter((a) => a.owner).map((a) => h('option', { value: a.id }, a.id)));
            const agentRow = h('div', { class: 'form-row' }, h('label', { for: 'issue-agent' }, 'Agent'), agent);
            kind.addEventListener('change', () => (agentRow.hidden = kind.value !== 'user'));
            return h(
              'form',
              { class: 'form', onsubmit: (e) => { e.preventDefault(); close(kind.value === 'user' ? { kind: 'user', agentId: agent.value } : { kind: 'admin' }); } },
              h('div', { class: 'form-row' }, h('label', { for: 'issue-kind' }, 'Kind'), kind),
              agentRow,
              h('p', { class: 'muted small' }, 'Issuing a user token revokes that person’s previous token.'),
              h('div', { class: 'actions' }, h('button', { class: 'btn', type: 'button', onclick: () => close() }, 'Cancel'), h('button', { class: 'btn btn-primary', type: 'submit' }, 'Issue')),
            );
          });
          if (!chosen) return;
          try {
            const r = await api.post('/tokens', chosen);
            await showSecretOnce('New token', r.token, 'Give it to its owner over a private channel. Anyone with it can act as them.');
            reload();
          } catch (e) {
            toast(e.message, 'bad');
          }
        },
      }, icon('plus'), 'Issue token'),
    ],
  );
}

// ---- audit --------------------------------------------------------------------------------

function actorText(actor, users) {
  const a = String(actor || '');
  if (a === 'system') return 'System';
  if (a.startsWith('admin')) return 'Admin';
  if (a.startsWith('user:')) {
    const u = users.find((x) => x.id === a.slice(5));
    return u ? u.email : 'A removed user';
  }
  return a;
}

function detailText(d) {
  if (d === null || d === undefined) return '';
  if (typeof d !== 'object') return String(d);
  return Object.entries(d)
    .map(([k, v]) => `${k}: ${valueText(v, 120)}`)
    .join(' · ');
}

export function mountAudit(main) {
  const search = h('input', { type: 'search', placeholder: 'Filter by action, actor or detail', 'aria-label': 'Filter the audit log', 'data-shortcut-focus': true, class: 'grow' });
  const agentSel = h('select', { 'aria-label': 'Agent' }, h('option', { value: '' }, 'All agents'));
  const limitSel = h('select', { 'aria-label': 'How many entries' }, [100, 500, 1000].map((n) => h('option', { value: String(n) }, `Last ${n}`)));
  const body = h('div', { class: 'page-body' });
  let entries = [];
  let users = [];
  let disposed = false;

  function renderRows() {
    const needle = search.value.trim().toLowerCase();
    const agent = agentSel.value;
    const rows = entries.filter((e) => (!agent || e.agent_id === agent) && (!needle || `${e.action} ${actorText(e.actor, users)} ${e.agent_id || ''} ${detailText(e.detail)}`.toLowerCase().includes(needle)));
    replace(
      body,
      h('p', { class: 'muted small' }, `${rows.length} of ${entries.length} entries`),
      rows.length
        ? table(
            [
              { label: 'When', cell: (e) => timeEl(e.at), cls: 'nowrap' },
              { label: 'Action', cell: (e) => h('code', null, e.action), cls: 'nowrap' },
              { label: 'Actor', cell: (e) => actorText(e.actor, users) },
              { label: 'Agent', cell: (e) => e.agent_id || h('span', { class: 'muted' }, '—'), cls: 'nowrap' },
              { label: 'Details', cell: (e) => h('span', { class: 'detail' }, detailText(e.detail)), cls: 'cell-wide' },
            ],
            rows,
            { caption: 'Audit log', rowAttrs: (e) => ({ 'data-action': e.action }) },
          )
        : empty('No matching entries.'),
    );
  }

  async function load() {
    replace(body, spinner());
    try {
      [entries, users] = await Promise.all([api.get(`/audit?limit=${limitSel.value}`), api.get('/users')]);
      if (disposed) return;
      const agents = [...new Set(entries.map((e) => e.agent_id).filter(Boolean))].sort();
      const keep = agentSel.value;
      replace(agentSel, h('option', { value: '' }, 'All agents'), agents.map((a) => h('option', { value: a, selected: a === keep }, a)));
      renderRows();
    } catch (e) {
      replace(body, errorBox(e, load));
    }
  }

  let debounce = 0;
  search.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(renderRows, 120);
  });
  agentSel.addEventListener('change', renderRows);
  limitSel.addEventListener('change', load);
  main.append(
    h(
      'div',
      { class: 'page' },
      pageHead('Audit log', 'Every sign-in, token change, chat, proposal and decision — append-only.', h('button', { class: 'btn btn-ghost btn-small', type: 'button', onclick: load }, icon('refresh'), 'Refresh')),
      h('div', { class: 'toolbar filters' }, search, agentSel, limitSel),
      body,
    ),
  );
  load();
  return () => {
    disposed = true;
  };
}

// ---- invites -----------------------------------------------------------------------------

const INVITE_STATUS = {
  pending: ['warn', 'Pending'],
  used: ['ok', 'Accepted'],
  revoked: ['muted', 'Revoked'],
  expired: ['bad', 'Expired'],
};

function inviteBadge(status) {
  const [tone, label] = INVITE_STATUS[status] || ['muted', humanize(status)];
  return h('span', { class: ['badge', `tone-${tone}`], 'data-state': status }, label);
}

/** What happened to the invite e-mail, from a create/resend answer. */
function mailNote(r) {
  if (r.emailed === true) return h('p', { class: 'notice', 'data-testid': 'invite-emailed', 'data-emailed': 'yes' }, `E-mailed to ${r.invite.email}.`);
  if (r.emailed === false)
    return h('p', { class: 'form-error', 'data-testid': 'invite-emailed', 'data-emailed': 'failed' }, `The e-mail to ${r.invite.email} could not be sent${r.emailError ? ` (${r.emailError})` : ''}. Copy the link and send it yourself.`);
  return h('p', { class: 'notice', 'data-testid': 'invite-emailed', 'data-emailed': 'no' }, 'Not e-mailed: this gateway has no mail set up. Copy the link and send it to them over a private channel.');
}

/** Shows an invite link exactly once, with a copy button; nothing keeps it after closing. */
function showInviteLink(title, r) {
  return modal(title, (close) => {
    const input = h('input', { class: 'secret', type: 'text', readonly: true, value: r.link, 'aria-label': 'Invite link', spellcheck: 'false', 'data-testid': 'invite-link' });
    const status = h('span', { class: 'muted small', role: 'status' });
    return h(
      'div',
      { 'data-testid': 'invite-issued' },
      h('p', null, 'The invite for ', h('strong', null, r.invite.email), ' is ready. Their agent will be ', h('code', null, r.invite.agentId), '.'),
      mailNote(r),
      h(
        'div',
        { class: 'secret-row' },
        input,
        h(
          'button',
          {
            class: 'btn btn-primary',
            type: 'button',
            'data-testid': 'copy-link',
            onclick: async () => {
              const ok = await copyText(r.link, input);
              status.textContent = ok ? 'Copied.' : 'Select the link and copy it by hand.';
            },
          },
          icon('copy'),
          'Copy',
        ),
      ),
      status,
      h('p', { class: 'warn' }, `This is the only time the link is shown. It works once and expires ${relative(r.invite.expiresAt)}. Anyone with it can claim the invite — but only with the Google account ${r.invite.email}.`),
      h('div', { class: 'actions' }, h('button', { class: 'btn', type: 'button', onclick: () => close(true), 'data-testid': 'link-done' }, 'Done')),
    );
  });
}

const STATUS_ORDER = { pending: 0, expired: 1, used: 2, revoked: 3 };

export function mountInvites(main) {
  const body = h('div', { class: 'page-body', 'data-testid': 'invites' });
  let disposed = false;
  let loads = 0;

  const email = h('input', { id: 'invite-email', type: 'email', required: true, autocomplete: 'off', placeholder: 'alice@company.com', 'data-testid': 'invite-email', maxlength: '254' });
  const name = h('input', { id: 'invite-name', type: 'text', autocomplete: 'off', placeholder: 'Alice Ng', 'data-testid': 'invite-name', maxlength: '200' });
  const formError = h('p', { class: 'form-error', role: 'alert', hidden: true, 'data-testid': 'invite-error' });
  const submit = h('button', { class: 'btn btn-primary', type: 'submit', 'data-testid': 'invite-create' }, icon('plus'), 'Create invite');
  const form = h(
    'form',
    {
      class: 'card form invite-form',
      onsubmit: async (e) => {
        e.preventDefault();
        formError.hidden = true;
        const address = email.value.trim();
        if (!address) {
          formError.textContent = 'Enter the e-mail address of the person to invite.';
          formError.hidden = false;
          email.focus();
          return;
        }
        submit.disabled = true;
        try {
          const r = await api.post('/invites', { email: address, name: name.value.trim() || null });
          email.value = '';
          name.value = '';
          load();
          await showInviteLink('Invite created', r);
        } catch (err) {
          formError.textContent = err.message;
          formError.hidden = false;
        } finally {
          submit.disabled = false;
        }
      },
    },
    h('h2', null, 'Invite someone'),
    h('p', { class: 'muted small' }, 'They get a single-use link to connect their Google account; that creates their own agent and shows them their dashboard token. The link only works with the invited Google account.'),
    h('div', { class: 'form-grid' }, h('div', { class: 'form-row' }, h('label', { for: 'invite-email' }, 'E-mail'), email), h('div', { class: 'form-row' }, h('label', { for: 'invite-name' }, 'Name ', h('span', { class: 'muted small' }, '(optional)')), name)),
    formError,
    h('div', { class: 'actions' }, submit),
  );

  const resend = async (inv) => {
    const ok = await confirmDialog('Resend invite?', `A new link is issued for ${inv.email} (and e-mailed, if mail is set up). The current link stops working.`, 'Resend');
    if (!ok) return;
    try {
      const r = await api.post(`/invites/${api.q(inv.id)}/resend`);
      load();
      await showInviteLink('New invite link', r);
    } catch (e) {
      toast(e.message, 'bad');
      load();
    }
  };

  const revoke = async (inv) => {
    const ok = await confirmDialog('Revoke invite?', `The link sent to ${inv.email} stops working immediately. You can invite them again later.`, 'Revoke', true);
    if (!ok) return;
    try {
      await api.del(`/invites/${api.q(inv.id)}`);
      toast('Invite revoked.');
    } catch (e) {
      toast(e.message, 'bad');
    }
    load();
  };

  const actionsFor = (inv) => {
    if (inv.status !== 'pending' && inv.status !== 'expired') return h('span', { class: 'muted small' }, '—');
    return h(
      'div',
      { class: 'row-actions' },
      h('button', { class: 'btn btn-small', type: 'button', 'data-action': 'resend', onclick: () => resend(inv) }, icon('mail'), 'Resend'),
      inv.status === 'pending' ? h('button', { class: 'btn btn-small btn-danger-ghost', type: 'button', 'data-action': 'revoke', onclick: () => revoke(inv) }, 'Revoke') : null,
    );
  };

  const whenCell = (inv) => {
    if (inv.status === 'used') return h('span', null, 'accepted ', timeEl(inv.usedAt));
    if (inv.status === 'revoked') return h('span', null, 'revoked ', timeEl(inv.revokedAt));
    if (inv.status === 'expired') return h('span', { class: 'bad' }, 'expired ', timeEl(inv.expiresAt));
    return timeEl(inv.expiresAt);
  };

  async function load() {
    // Reloads after a change keep the current list on screen until the new one is there.
    const mine = ++loads;
    if (!body.childElementCount) replace(body, spinner());
    try {
      const invites = await api.get('/invites');
      if (disposed || mine !== loads) return;
      if (!invites.length) {
        replace(body, empty('No invites yet.', 'Invite someone with the form above; their invite shows here until they accept it.'));
        return;
      }
      invites.sort((a, b) => (STATUS_ORDER[a.status] ?? 9) - (STATUS_ORDER[b.status] ?? 9) || b.createdAt - a.createdAt);
      const pending = invites.filter((i) => i.status === 'pending').length;
      replace(
        body,
        h('p', { class: 'muted small' }, `${pending} pending · ${invites.length} in total`),
        table(
          [
            { label: 'Person', cell: (i) => h('div', null, h('div', { class: 'strong' }, i.name || i.email), i.name ? h('div', { class: 'muted small' }, i.email) : null) },
            { label: 'Agent', cell: (i) => h('code', null, i.agentId), cls: 'nowrap' },
            { label: 'Status', cell: (i) => inviteBadge(i.status) },
            { label: 'Sent', cell: (i) => h('span', { title: i.origin === 'self_service' ? 'Requested on the join page' : `Created by ${i.createdBy === 'system' ? 'the system' : 'an admin'}` }, `${i.sentCount}×`, h('span', { class: 'muted small' }, i.origin === 'self_service' ? ' · join page' : '')), cls: 'nowrap' },
            { label: 'Created', cell: (i) => timeEl(i.createdAt), cls: 'nowrap' },
            { label: 'Expires', cell: whenCell, cls: 'nowrap' },
            { label: 'Actions', cell: actionsFor, cls: 'cell-actions' },
          ],
          invites,
          { caption: 'Invites', rowAttrs: (i) => ({ 'data-invite': i.id, 'data-email': i.email, 'data-status': i.status }) },
        ),
      );
    } catch (e) {
      if (!disposed && mine === loads) replace(body, errorBox(e, () => { body.replaceChildren(); load(); }));
    }
  }

  main.append(
    h(
      'div',
      { class: 'page' },
      pageHead('Invites', 'Invite people by e-mail; they connect their Google account and get their own agent.', h('button', { class: 'btn btn-ghost btn-small', type: 'button', onclick: () => { body.replaceChildren(); load(); } }, icon('refresh'), 'Refresh')),
      form,
      h('section', { 'aria-labelledby': 'invites-title' }, h('h2', { id: 'invites-title', class: 'section-title' }, 'Invites'), body),
    ),
  );
  load();
  return () => {
    disposed = true;
  };
}
