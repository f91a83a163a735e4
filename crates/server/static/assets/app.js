// crewgate dashboard: boot, sign-in, the app shell and hash routing.

// A sign-in link's `?token=…` was already removed from the address bar by boot.js (a classic
// script that runs before anything renders) and handed over in memory; take it and forget it.
const linkToken = window.__crewgateLinkToken || new URLSearchParams(location.search).get('token');
delete window.__crewgateLinkToken;
if (location.search) history.replaceState(null, '', location.pathname + location.hash);

import { h, replace, icon, modal, toast, spinner, errorBox } from './dom.js';
import * as api from './api.js';
import * as live from './live.js';
import { renderLogin } from './login.js';
import * as chat from './chat.js';
import * as approvals from './approvals.js';
import * as account from './account.js';
import * as admin from './admin.js';

const root = document.getElementById('app');

const MEMBER_ROUTES = [
  { id: 'chat', label: 'Chat', icon: 'chat', view: chat.mount },
  { id: 'approvals', label: 'Approvals', icon: 'inbox', view: approvals.mount },
  { id: 'autonomy', label: 'Autonomy', icon: 'shield', view: approvals.mountGrants },
  { id: 'account', label: 'Account', icon: 'user', view: account.mount },
];

const ADMIN_ROUTES = [
  { id: 'status', label: 'System', icon: 'pulse', view: admin.mountStatus },
  { id: 'users', label: 'Users', icon: 'users', view: admin.mountUsers },
  { id: 'agents', label: 'Agents', icon: 'bot', view: admin.mountAgents },
  { id: 'tokens', label: 'Tokens', icon: 'key', view: admin.mountTokens },
  { id: 'audit', label: 'Audit log', icon: 'list', view: admin.mountAudit },
  { id: 'invites', label: 'Invites', icon: 'ticket', view: admin.mountInvites },
];

let ctx = null;
let cleanup = null;
let offLive = [];

function parseHash() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  return { route: parts[0] || '', params: parts.slice(1) };
}

export function navigate(route, ...params) {
  const hash = `#/${[route, ...params].map(encodeURIComponent).join('/')}`;
  if (location.hash !== hash) location.hash = hash;
  else render();
}

/** Changes the address without re-rendering the view (e.g. a new chat got its session id). */
export function setHashQuietly(route, ...params) {
  history.replaceState(null, '', `#/${[route, ...params].map(encodeURIComponent).join('/')}`);
}

async function boot() {
  api.setUnauthorizedHandler(() => signedOut('Your session has ended. Sign in again with your token.'));
  replace(root, spinner(linkToken ? 'Signing you in…' : 'Loading…'));
  try {
    if (linkToken) {
      try {
        await api.login(linkToken);
      } catch (e) {
        showLogin(e instanceof api.ApiError && e.status === 401 ? 'That sign-in link is no longer valid. Ask your admin for a new one, or paste a token.' : e.message);
        return;
      }
    } else {
      const s = await api.currentSession();
      if (!s) {
        showLogin();
        return;
      }
    }
    await start();
  } catch (e) {
    replace(root, h('div', { class: 'center-page' }, errorBox(e, () => boot())));
  }
}

function showLogin(notice) {
  teardown();
  document.title = 'Sign in · crewgate';
  renderLogin(root, {
    notice,
    onLoggedIn: async () => {
      try {
        await start();
      } catch (e) {
        showLogin(e.message);
      }
    },
  });
}

async function start() {
  const me = await api.get('/me');
  ctx = {
    me,
    kind: me.kind,
    agentId: me.kind === 'user' && me.agent ? me.agent.id : null,
    agent: me.agent || null,
    navigate,
    setHashQuietly,
    badges: {},
    setBadge(route, n) {
      ctx.badges[route] = n;
      const b = document.querySelector(`[data-badge="${route}"]`);
      if (b) {
        b.textContent = n ? String(n) : '';
        b.hidden = !n;
      }
    },
    /** After the signed-in token was rotated: sign in again with the new one (old session died). */
    async relogin(token) {
      await api.login(token);
      live.disconnect();
      live.connect();
      ctx.me = await api.get('/me');
    },
  };
  renderShell();
  live.connect();
  offLive.push(live.on('unauthorized', () => signedOut('Your session has ended. Sign in again with your token.')));
  if (ctx.kind === 'user') offLive.push(approvals.watchBadge(ctx));
  window.addEventListener('hashchange', render);
  render();
}

function routes() {
  return ctx && ctx.kind === 'admin' ? ADMIN_ROUTES : MEMBER_ROUTES;
}

function teardown() {
  window.removeEventListener('hashchange', render);
  if (cleanup) cleanup();
  cleanup = null;
  offLive.forEach((f) => f());
  offLive = [];
  live.disconnect();
  ctx = null;
}

function signedOut(notice) {
  if (!ctx) return;
  teardown();
  showLogin(notice);
}

async function signOut() {
  try {
    await api.logout();
  } catch {
    // The cookie is cleared or already dead either way.
  }
  teardown();
  showLogin('You are signed out.');
}

function liveIndicator() {
  const dot = h('span', { class: 'live-dot', 'aria-hidden': 'true' });
  const label = h('span', { class: 'live-label' });
  const el = h('span', { class: 'live', 'data-testid': 'live-status', title: 'Live updates' }, dot, label);
  const set = ({ status }) => {
    el.dataset.status = status;
    label.textContent = { online: 'Live', connecting: 'Connecting…', reconnecting: 'Reconnecting…', offline: 'Offline' }[status] || status;
  };
  set({ status: live.liveStatus() });
  offLive.push(live.on('status', set));
  return el;
}

function renderShell() {
  const me = ctx.me;
  const who =
    ctx.kind === 'admin'
      ? h('span', { class: 'who' }, h('span', { class: 'badge tone-accent' }, 'Admin'))
      : h('span', { class: 'who' }, h('span', { class: 'who-name', title: me.user?.email || '' }, me.user?.name || me.user?.email || 'You'));
  const nav = h(
    'nav',
    { class: 'sidenav', 'aria-label': 'Main' },
    h(
      'ul',
      null,
      routes().map((r, n) =>
        h(
          'li',
          null,
          h(
            'a',
            { href: `#/${r.id}`, 'data-route': r.id, title: `${r.label} (Alt+${n + 1})` },
            icon(r.icon),
            h('span', { class: 'nav-label' }, r.label),
            h('span', { class: 'nav-badge', 'data-badge': r.id, hidden: !ctx.badges[r.id] }, ctx.badges[r.id] || ''),
          ),
        ),
      ),
    ),
  );
  const agentChip =
    ctx.kind === 'user' && ctx.agent
      ? h('span', { class: 'agent-chip', title: `Your agent: ${ctx.agent.id}` }, icon('bot'), ctx.agent.name || ctx.agent.id)
      : null;
  replace(
    root,
    h('a', { class: 'skip', href: '#main', onclick: (e) => { e.preventDefault(); document.getElementById('main')?.focus(); } }, 'Skip to content'),
    h(
      'div',
      { class: ['shell', `shell-${ctx.kind}`] },
      h(
        'header',
        { class: 'topbar' },
        h('a', { class: 'brand', href: '#/' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), 'crewgate'),
        agentChip,
        h('span', { class: 'spacer' }),
        liveIndicator(),
        who,
        h('button', { class: 'btn btn-ghost', type: 'button', onclick: signOut, 'data-testid': 'logout' }, icon('logout'), h('span', { class: 'hide-sm' }, 'Sign out')),
      ),
      nav,
      h('main', { id: 'main', class: 'main', tabindex: '-1' }),
    ),
  );
}

function render() {
  if (!ctx) return;
  const { route, params } = parseHash();
  const all = routes();
  const r = all.find((x) => x.id === route) || all[0];
  if (r.id !== route) {
    history.replaceState(null, '', `#/${r.id}`);
  }
  for (const a of document.querySelectorAll('.sidenav a')) {
    if (a.dataset.route === r.id) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${r.label} · crewgate`;
  if (cleanup) cleanup();
  cleanup = null;
  const main = document.getElementById('main');
  main.replaceChildren();
  main.dataset.view = r.id;
  try {
    cleanup = r.view(main, ctx, params) || null;
  } catch (e) {
    replace(main, errorBox(e));
  }
}

function shortcutsHelp() {
  const rows = [
    ['Alt + 1…6', 'Go to a section'],
    ['/', 'Focus the message box or search'],
    ['Enter', 'Send the message'],
    ['Shift + Enter', 'New line in a message'],
    ['Alt + N', 'New chat'],
    ['Esc', 'Close a dialog'],
    ['?', 'This help'],
  ];
  modal('Keyboard shortcuts', (close) =>
    h(
      'div',
      null,
      h('dl', { class: 'shortcuts' }, rows.map(([k, v]) => [h('dt', null, h('kbd', null, k)), h('dd', null, v)])),
      h('div', { class: 'actions' }, h('button', { class: 'btn', type: 'button', onclick: () => close() }, 'Close')),
    ),
  );
}

document.addEventListener('keydown', (e) => {
  if (!ctx || e.defaultPrevented) return;
  const typing = e.target instanceof HTMLElement && (e.target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName));
  if (e.altKey && !e.ctrlKey && !e.metaKey && /^Digit[1-9]$/.test(e.code)) {
    const r = routes()[Number(e.code.slice(5)) - 1];
    if (r) {
      e.preventDefault();
      navigate(r.id);
    }
    return;
  }
  if (e.altKey && e.code === 'KeyN' && ctx.kind === 'user') {
    e.preventDefault();
    navigate('chat', 'new');
    return;
  }
  if (typing || document.querySelector('dialog[open]')) return;
  if (e.key === '/') {
    const target = document.querySelector('[data-shortcut-focus]');
    if (target) {
      e.preventDefault();
      target.focus();
    }
  } else if (e.key === '?') {
    e.preventDefault();
    shortcutsHelp();
  }
});

window.addEventListener('unhandledrejection', (e) => {
  if (e.reason instanceof api.ApiError && e.reason.status === 401) return;
  toast(e.reason && e.reason.message ? e.reason.message : 'Something went wrong.', 'bad');
});

boot();
