// Sign-in page: paste a token; it is exchanged for an HttpOnly session cookie and not kept.

import { h, replace } from './dom.js';
import * as api from './api.js';

export function renderLogin(root, { notice, onLoggedIn }) {
  const input = h('input', {
    id: 'token',
    name: 'token',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'cgu_… or cga_…',
    required: true,
    'aria-describedby': 'token-help',
  });
  const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const button = h('button', { class: 'btn btn-primary btn-block', type: 'submit' }, 'Sign in');
  const show = h('button', {
    class: 'btn btn-ghost btn-small',
    type: 'button',
    'aria-pressed': 'false',
    onclick: () => {
      const visible = input.type === 'password';
      input.type = visible ? 'text' : 'password';
      show.textContent = visible ? 'Hide' : 'Show';
      show.setAttribute('aria-pressed', String(visible));
    },
  }, 'Show');

  const form = h(
    'form',
    {
      class: 'login-form',
      novalidate: true,
      onsubmit: async (e) => {
        e.preventDefault();
        const token = input.value.trim();
        error.hidden = true;
        if (!token) {
          error.textContent = 'Paste your token first.';
          error.hidden = false;
          input.focus();
          return;
        }
        button.disabled = true;
        button.textContent = 'Signing in…';
        try {
          await api.login(token);
          input.value = '';
          await onLoggedIn();
        } catch (err) {
          error.textContent =
            err.status === 401
              ? 'That token was not accepted. It may have been rotated or revoked — ask your admin for a new one.'
              : err.message;
          error.hidden = false;
          button.disabled = false;
          button.textContent = 'Sign in';
          input.select();
        }
      },
    },
    h('label', { for: 'token' }, 'Your access token'),
    h('div', { class: 'input-row' }, input, show),
    h('p', { id: 'token-help', class: 'help' }, 'Paste the token your admin gave you, or open the sign-in link you received. The token is exchanged for a secure session and is not stored in this browser.'),
    error,
    button,
  );

  replace(
    root,
    h(
      'div',
      { class: 'center-page login-page' },
      h(
        'div',
        { class: 'card login-card' },
        h('div', { class: 'login-brand' }, h('span', { class: 'brand-mark big', 'aria-hidden': 'true' }), h('h1', null, 'crewgate')),
        h('p', { class: 'muted login-sub' }, 'Your team’s AI agents, with you in control of every action.'),
        notice ? h('p', { class: 'notice', role: 'status' }, notice) : null,
        form,
      ),
    ),
  );
  input.focus();
}
