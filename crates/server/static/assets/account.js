// Account: who you are, connected accounts, and your own access token (rotate).

import { h, replace, icon, spinner, errorBox, toast, confirmDialog, showSecretOnce } from './dom.js';
import * as api from './api.js';
import { badge, timeEl, dateTime } from './format.js';

/**
 * Rotates a token. When it is the one this browser signed in with, the old session dies with it,
 * so the page signs in again with the new token before showing it once.
 */
export async function rotateToken(ctx, tokenInfo, { who = 'your' } = {}) {
  const own = tokenInfo.id === ctx.me.tokenId;
  const ok = await confirmDialog(
    'Rotate token?',
    own
      ? 'A new token is issued and your current one stops working immediately, everywhere it is used (other browsers, scripts, API clients). This browser stays signed in.'
      : `A new token is issued and ${who} current token ${tokenInfo.display} stops working immediately.`,
    'Rotate',
    true,
  );
  if (!ok) return null;
  const r = await api.post(`/tokens/${api.q(tokenInfo.id)}/rotate`);
  if (own) {
    try {
      await ctx.relogin(r.token);
    } catch (e) {
      toast(`Rotated, but signing in again failed: ${e.message}`, 'bad');
    }
  }
  await showSecretOnce('Your new token', r.token, own ? 'Use it to sign in on other devices and in API clients. The old token no longer works.' : 'Give it to its owner over a private channel. The old token no longer works.');
  return r;
}

/** Starts Google consent again: the gateway answers the consent URL, the browser goes there. */
async function connectGoogle(button, errorEl) {
  button.disabled = true;
  errorEl.hidden = true;
  try {
    const r = await api.post('/me/google/connect');
    if (!r || !r.url) throw new Error('The gateway did not answer a Google sign-in address.');
    window.location.assign(r.url);
  } catch (e) {
    errorEl.textContent = e.message;
    errorEl.hidden = false;
    button.disabled = false;
  }
}

function connectionsSection(me) {
  // GET /me: connections.google = {state: 'not_connected' | 'connected' | 'needs_reconnect', email?, reason?}
  const google = (me.connections && me.connections.google) || { state: 'not_connected' };
  let status;
  let body;
  let label;
  if (google.state === 'connected') {
    status = badge('done', 'Connected');
    body = h('p', { class: 'muted small' }, google.email ? ['Connected as ', h('strong', { 'data-testid': 'google-email' }, google.email), '.'] : 'Connected.');
    label = 'Reconnect Google';
  } else if (google.state === 'needs_reconnect') {
    status = badge('failed', 'Needs reconnect');
    body = h(
      'div',
      null,
      h('p', { class: 'muted small' }, `Google stopped accepting the connection${google.email ? ` of ${google.email}` : ''}, so your agent cannot use Gmail, Calendar, Drive, Docs, Sheets or Contacts. Reconnect it to keep your agent working.`),
      google.reason ? h('p', { class: 'small', 'data-testid': 'google-reason' }, h('span', { class: 'muted' }, 'Reason: '), google.reason) : null,
    );
    label = 'Reconnect Google';
  } else {
    status = badge('revoked', 'Not connected');
    body = h('p', { class: 'muted small' }, 'No Google account is connected to your agent, so it cannot read or write your Gmail, Calendar, Drive, Docs, Sheets or Contacts. Connecting takes you to Google to sign in with the account of your own address and consent; your agent still asks before every e-mail, event or edit.');
    label = 'Connect Google';
  }
  const error = h('p', { class: 'form-error', role: 'alert', hidden: true, 'data-testid': 'google-connect-error' });
  const connect = h('button', {
    class: ['btn', 'btn-small', google.state === 'connected' ? null : 'btn-primary'],
    type: 'button',
    'data-testid': 'google-connect',
    onclick: () => connectGoogle(connect, error),
  }, icon('link'), label);
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'conn-title' },
    h('h2', { id: 'conn-title' }, 'Connected accounts'),
    h(
      'div',
      { class: 'conn-row', 'data-testid': 'google-connection', 'data-state': google.state },
      h('div', { class: 'conn-name' }, h('strong', null, 'Google'), h('span', { class: 'muted small' }, 'Gmail, Calendar, Drive, Docs, Sheets, Contacts'), body, error),
      status,
      connect,
    ),
    h('div', { class: 'conn-row' }, h('div', { class: 'conn-name' }, h('strong', null, 'Notion & Attio'), h('span', { class: 'muted small' }, 'Shared company workspace, set up by your admin')), badge('muted', 'Company-wide')),
  );
}

export function mount(main, ctx) {
  const page = h('div', { class: 'page' });
  main.append(page);
  let disposed = false;

  async function load() {
    replace(page, spinner());
    try {
      const [me, tokens] = await Promise.all([api.get('/me'), api.get('/tokens')]);
      if (disposed) return;
      ctx.me = me;
      const current = (tokens || []).find((t) => t.id === me.tokenId);
      const user = me.user || {};
      const agent = me.agent || {};
      replace(
        page,
        h('header', { class: 'page-head' }, h('div', null, h('h1', null, 'Account'), h('p', { class: 'muted' }, 'Your profile, connections and access token.'))),
        h(
          'section',
          { class: 'card', 'aria-labelledby': 'profile-title' },
          h('h2', { id: 'profile-title' }, 'Profile'),
          h(
            'dl',
            { class: 'fields' },
            h('dt', null, 'Name'),
            h('dd', null, user.name || '—'),
            h('dt', null, 'E-mail'),
            h('dd', null, user.email || '—'),
            h('dt', null, 'Role'),
            h('dd', null, badge(user.role || 'member')),
            h('dt', null, 'Status'),
            h('dd', null, badge(user.status || 'active')),
            h('dt', null, 'Your agent'),
            h('dd', null, agent.name || agent.id || '—', agent.id && agent.name !== agent.id ? h('span', { class: 'muted small' }, ` (${agent.id})`) : null),
            h('dt', null, 'Member since'),
            h('dd', null, dateTime(user.created_at)),
          ),
        ),
        connectionsSection(me),
        h(
          'section',
          { class: 'card', 'aria-labelledby': 'token-title' },
          h('h2', { id: 'token-title' }, 'Access token'),
          h('p', { class: 'muted small' }, 'Your token signs you in here and lets API clients act as you. If it may have leaked, rotate it: the old one stops working at once.'),
          current
            ? h(
                'dl',
                { class: 'fields' },
                h('dt', null, 'Token'),
                h('dd', null, h('code', { 'data-testid': 'token-display' }, current.display)),
                h('dt', null, 'Issued'),
                h('dd', null, timeEl(current.created_at)),
                h('dt', null, 'Last used'),
                h('dd', null, timeEl(current.last_used_at)),
              )
            : h('p', { class: 'muted' }, 'The token of this session is not listed.'),
          h(
            'div',
            { class: 'actions start' },
            h(
              'button',
              {
                class: 'btn btn-danger-ghost',
                type: 'button',
                'data-testid': 'rotate-token',
                onclick: async () => {
                  try {
                    const r = await rotateToken(ctx, current || { id: me.tokenId, display: 'this token' });
                    if (r) load();
                  } catch (e) {
                    toast(e.message, 'bad');
                  }
                },
              },
              icon('refresh'),
              'Rotate token',
            ),
          ),
        ),
      );
    } catch (e) {
      replace(page, errorBox(e, load));
    }
  }
  load();
  return () => {
    disposed = true;
  };
}
