// Admin console in real Chromium: status, users, agents, tokens (rotate, revoke), audit filters,
// the (empty) invites page; a member cannot open any of it. Creating, resending and revoking
// invites is in onboarding.test.js.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startAll, openPage, loginWithLink, shot, settled, DESKTOP, PHONE } from '../lib/harness.js';

let stack;
let browser;

before(async () => {
  ({ stack, browser } = await startAll({ people: ['alice@company.com', 'bob@company.com', 'dave@company.com'] }));
  // Some activity for the audit log.
  const s = await stack.call('POST', '/api/v1/sessions', stack.people.alice.token, { title: 'Quarterly planning' });
  assert.equal(s.status, 201);
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

test('admin sees system status, users, agents, tokens and the audit log', async () => {
  const { page, problems, context } = await openPage(browser);
  await loginWithLink(page, stack.base, stack.adminToken);
  assert.ok(!page.url().includes('token'));
  // System status (the admin's landing page).
  await settled(page, '.page-body');
  const stats = await page.textContent('[data-testid=status-cards]');
  assert.match(stats, /Running/);
  assert.match(stats, /Version \d+\.\d+\.\d+/);
  assert.match(stats, /Ready/);
  assert.match(stats, /Reachable/, 'the fake LLM answers the model list');
  await shot(page, 'admin-status');

  await page.click('a[data-route=users]');
  await settled(page, '.page-body');
  for (const who of ['alice', 'bob', 'dave']) {
    const row = await page.waitForSelector(`tr[data-user="${who}@company.com"]`);
    assert.match(await row.textContent(), /active/i);
    assert.match(await row.textContent(), new RegExp(stack.people[who].agentId));
  }
  await shot(page, 'admin-users');

  await page.click('a[data-route=agents]');
  await settled(page, '.page-body');
  await page.waitForSelector(`tr[data-agent="${stack.people.alice.agentId}"]`);
  await page.click(`tr[data-agent="${stack.people.alice.agentId}"] .link-btn`);
  await page.waitForSelector('dialog.modal >> text=alice@company.com');
  await page.keyboard.press('Escape');
  await page.waitForSelector('dialog.modal', { state: 'detached' });
  await shot(page, 'admin-agents');

  await page.click('a[data-route=tokens]');
  await settled(page, '.page-body');
  const dave = stack.people.dave;
  await page.waitForSelector(`tr[data-token="${dave.tokenId}"] >> text=dave@company.com`);
  await shot(page, 'admin-tokens');
  // Rotate Dave's token: shown once, old one refused.
  await page.click(`tr[data-token="${dave.tokenId}"] button[data-action=rotate]`);
  await page.click('dialog.modal [data-testid=confirm-yes]');
  const newToken = await (await page.waitForSelector('dialog.modal input.secret')).inputValue();
  assert.match(newToken, /^cgu_/);
  await page.click('dialog.modal [data-testid=secret-done]');
  assert.equal((await stack.call('GET', '/api/v1/me', dave.token)).status, 401);
  assert.equal((await stack.call('GET', '/api/v1/me', newToken)).status, 200);
  // Revoke it.
  const me = await stack.call('GET', '/api/v1/me', newToken);
  await page.waitForSelector(`tr[data-token="${me.json.tokenId}"]`);
  await page.click(`tr[data-token="${me.json.tokenId}"] button[data-action=revoke]`);
  await page.click('dialog.modal [data-testid=confirm-yes]');
  await page.waitForSelector(`tr[data-token="${me.json.tokenId}"]`, { state: 'detached' });
  assert.equal((await stack.call('GET', '/api/v1/me', newToken)).status, 401);

  // Audit log with filters.
  await page.click('a[data-route=audit]');
  await settled(page, '.page-body');
  await page.waitForSelector('tr[data-action="session.create"]');
  await page.waitForSelector('tr[data-action="token.revoke"], tr[data-action^="token."]');
  await shot(page, 'admin-audit');
  await page.fill('input[type=search]', 'session.create');
  await page.waitForFunction(() => [...document.querySelectorAll('tbody tr')].every((r) => r.dataset.action === 'session.create'));
  const rows = await page.$$eval('tbody tr', (l) => l.length);
  assert.ok(rows >= 1);
  await page.fill('input[type=search]', '');
  await page.selectOption('select[aria-label=Agent]', stack.people.alice.agentId);
  await page.waitForFunction((a) => [...document.querySelectorAll('tbody tr td[data-label=Agent]')].every((td) => td.textContent === a), stack.people.alice.agentId);

  // Invites: none yet (this gateway has no Google sign-in; onboarding.test.js covers the flows).
  await page.click('a[data-route=invites]');
  await settled(page, '[data-testid=invites]');
  await page.waitForSelector('[data-testid=invites] >> text=No invites yet.');
  await page.waitForSelector('form.invite-form [data-testid=invite-email]');

  // No raw JSON anywhere in the admin pages.
  for (const route of ['status', 'users', 'agents', 'tokens', 'audit', 'invites']) {
    await page.click(`a[data-route=${route}]`);
    await settled(page, '.page-body');
    const text = await page.textContent('main');
    assert.ok(!/[{[]\s*"\w+"\s*:/.test(text), `${route} shows raw JSON: ${text.slice(0, 300)}`);
  }
  assert.deepEqual(problems.pageErrors, []);
  await context.close();
});

test('admin pages at phone width', async () => {
  const { page, problems, context } = await openPage(browser, { viewport: PHONE });
  await loginWithLink(page, stack.base, stack.adminToken);
  for (const route of ['status', 'users', 'agents', 'tokens', 'audit']) {
    await page.click(`a[data-route=${route}]`);
    await settled(page, '.page-body');
    await shot(page, `admin-${route}`);
  }
  await page.click('a[data-route=invites]');
  await settled(page, '[data-testid=invites]');
  // No horizontal overflow on a phone.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 1, `page is ${overflow}px wider than the phone`);
  assert.deepEqual(problems.pageErrors, []);
  await context.close();
});

test('a member cannot use the admin console', async () => {
  const { page, context } = await openPage(browser, { viewport: DESKTOP });
  await loginWithLink(page, stack.base, stack.people.bob.token);
  await page.goto(`${stack.base}/#/users`);
  // Members have no admin routes: they land on their chat.
  await page.waitForSelector('main[data-view=chat]');
  assert.equal(await page.$$eval('a[data-route=users]', (l) => l.length), 0);
  const statuses = await page.evaluate(async () => ({
    users: (await fetch('/api/v1/users')).status,
    status: (await fetch('/api/v1/status')).status,
  }));
  assert.deepEqual(statuses, { users: 403, status: 403 });
  await context.close();
});
