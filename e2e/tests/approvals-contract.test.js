// The approvals UI against the documented approvals contract (issue 5), with the approvals
// endpoints and the WebSocket "proposal" events played by the test inside the browser
// (page.route / page.routeWebSocket). Everything else — sign-in, cookie, chat — is the real
// gateway. approvals.test.js runs the same flows end to end against the real API.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startAll, openPage, loginWithLink, shot, settled, PHONE } from '../lib/harness.js';

let stack;
let browser;

before(async () => {
  ({ stack, browser } = await startAll({ people: ['alice@company.com'] }));
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

/** A contract-shaped approvals backend for one agent, installed into a page. */
async function fakeApprovals(page, agentId) {
  const state = { proposals: [], grants: [], calls: [], sockets: [], n: 0 };
  const now = () => Date.now();
  state.make = (args, extra = {}) => {
    state.n += 1;
    const p = {
      id: `p${state.n}`,
      number: state.n,
      agent_id: agentId,
      session_id: extra.session_id ?? null,
      tool: 'gmail_send',
      args,
      fingerprint: `fp${state.n}`,
      summary: `📋 **Proposed action: Send email**\n\n**To:** ${args.to.join(', ')}\n**Subject:** ${args.subject}\n\n> ${args.body.split('\n').join('\n> ')}\n\nReply **approved** to send, **edit: …** to change, or **no** to cancel.`,
      state: 'pending',
      decision: null,
      superseded_by: null,
      result: null,
      created_at: now(),
      updated_at: now(),
      expires_at: now() + 24 * 3600e3,
      ...extra,
    };
    state.proposals.push(p);
    return p;
  };
  state.push = (p) => {
    for (const ws of state.sockets) ws.send(JSON.stringify({ type: 'proposal', proposal: p }));
  };
  await page.routeWebSocket('**/api/v1/ws', (ws) => {
    ws.connectToServer();
    state.sockets.push(ws);
  });
  await page.route('**/api/v1/proposals**', async (route) => {
    const req = route.request();
    const url = new URL(req.url());
    state.calls.push(`${req.method()} ${url.pathname}${url.search}`);
    assert.equal(url.searchParams.get('agent'), agentId);
    if (req.method() !== 'GET') assert.ok(req.headers()['x-csrf-token'], 'writes carry the CSRF token');
    const m = /\/api\/v1\/proposals(?:\/([^/]+))?(?:\/(approve|reject|edit))?$/.exec(url.pathname);
    const p = m[1] ? state.proposals.find((x) => x.id === m[1]) : null;
    const json = (body, status = 200) => route.fulfill({ status, contentType: 'application/json', body: JSON.stringify(body) });
    if (!m[1]) {
      const want = url.searchParams.get('state');
      return json(state.proposals.filter((x) => !want || x.state === want));
    }
    if (!p) return json({ error: { code: 'not_found', message: 'proposal not found' } }, 404);
    if (!m[2]) return json(p);
    if (p.state !== 'pending') return json({ error: { code: 'conflict', message: `proposal #${p.number} is ${p.state}` } }, 409);
    const by = { by: 'user:alice', via: 'dashboard' };
    if (m[2] === 'approve') {
      Object.assign(p, { state: 'done', decision: { kind: 'approved', ...by }, result: { message_id: '18c2f0a1', thread_id: '18c2f0a1' }, updated_at: now() });
      state.push(p);
      return json(p);
    }
    if (m[2] === 'reject') {
      Object.assign(p, { state: 'rejected', decision: { kind: 'rejected', ...by }, updated_at: now() });
      state.push(p);
      return json(p);
    }
    const { instructions } = JSON.parse(req.postData() || '{}');
    const next = state.make({ ...p.args, body: `${p.args.body.split('\n')[0]}\n\nShorter, as asked (${instructions}).` }, { session_id: p.session_id });
    Object.assign(p, { state: 'superseded', superseded_by: next.id, decision: { kind: 'edited', ...by, instructions }, updated_at: now() });
    state.push(p);
    state.push(next);
    return json({ proposal: next });
  });
  await page.route('**/api/v1/grants**', async (route) => {
    const req = route.request();
    const url = new URL(req.url());
    state.calls.push(`${req.method()} ${url.pathname}${url.search}`);
    assert.equal(url.searchParams.get('agent'), agentId);
    const json = (body, status = 200) => route.fulfill({ status, contentType: 'application/json', body: JSON.stringify(body) });
    const m = /\/api\/v1\/grants(?:\/([^/]+))?$/.exec(url.pathname);
    // The real API's shape: the agent's autonomy level beside its grants.
    if (req.method() === 'GET') return json({ agent: agentId, autonomy_level: 1, grants_apply: false, grants: state.grants });
    if (req.method() === 'POST') {
      const body = JSON.parse(req.postData());
      const g = { id: `g${state.grants.length + 1}`, agent_id: agentId, ...body };
      state.grants.push(g);
      return json(g, 201);
    }
    if (req.method() === 'DELETE') {
      state.grants = state.grants.filter((g) => g.id !== m[1]);
      return route.fulfill({ status: 204 });
    }
    return json({ error: { code: 'bad_request', message: 'no' } }, 400);
  });
  return state;
}

const mail = (subject, body) => ({ to: ['dana@example.com'], subject, body });

test('inbox: a live proposal shows recipient, subject and body; Approve → done; Edit → diff; Reject → history', async () => {
  const { page, problems } = await openPage(browser);
  const alice = stack.people.alice;
  const fake = await fakeApprovals(page, alice.agentId);
  await loginWithLink(page, stack.base, alice.token);
  await page.click('a[data-route=approvals]');
  await settled(page, '[data-testid=inbox]');
  await page.waitForSelector('[data-testid=inbox] >> text=Nothing is waiting for you.');
  await page.waitForSelector('[data-testid=live-status][data-status=online]');

  // Appears live.
  fake.push(fake.make(mail('Offsite on Friday', 'Hi Dana,\n\nthe offsite is on Friday at 10:00 in the big room.\n\nBest,\nAlice')));
  const card = await page.waitForSelector('article.proposal[data-proposal=p1][data-state=pending]');
  assert.equal(await card.$eval('[data-field=to]', (e) => e.textContent), 'dana@example.com');
  assert.equal(await card.$eval('[data-field=subject]', (e) => e.textContent), 'Offsite on Friday');
  assert.match(await card.$eval('[data-field=body]', (e) => e.textContent), /big room/);
  assert.match(await card.textContent(), /Proposed action: Send email/, 'the summary is rendered');
  await page.waitForSelector('[data-badge=approvals]:not([hidden]) >> text=1');
  fake.push(fake.make(mail('Agenda', 'Hi Dana,\n\nhere is the very long agenda with many details nobody reads.\n\nAlice')));
  fake.push(fake.make(mail('A joke', 'Why did the chicken cross the road?')));
  await page.waitForSelector('[data-badge=approvals] >> text=3');
  await shot(page, 'approvals');

  // Approve.
  await page.click('article[data-proposal=p1] button[data-action=approve]');
  await page.waitForSelector('article[data-proposal=p1][data-state=done]');
  assert.match(await page.textContent('article[data-proposal=p1]'), /Approved by the owner via dashboard/);
  assert.match(await page.textContent('article[data-proposal=p1]'), /18c2f0a1/);
  assert.equal(await page.$$eval('article[data-proposal=p1] button[data-action]', (l) => l.length), 0, 'no buttons on a decided proposal');

  // Edit: instructions → revised proposal with a diff; the old one is superseded.
  await page.click('article[data-proposal=p2] button[data-action=edit]');
  await page.fill('article[data-proposal=p2] [data-testid=edit-instructions]', 'make it shorter');
  await page.keyboard.press('Control+Enter');
  await page.waitForSelector('article[data-proposal=p2][data-state=superseded]');
  const revised = await page.waitForSelector('article[data-proposal=p4][data-state=pending]');
  assert.match(await revised.textContent(), /Changed from #2/);
  assert.equal(await revised.$$eval('.diff del', (l) => l.length) > 0, true);
  assert.match(await revised.$eval('.diff', (e) => e.textContent), /Shorter, as asked/);
  await revised.scrollIntoViewIfNeeded();
  await shot(page, 'approvals-edit');

  // Reject, then the history tab.
  await page.click('article[data-proposal=p3] button[data-action=reject]');
  await page.waitForSelector('article[data-proposal=p3][data-state=rejected]');
  await page.waitForSelector('[data-badge=approvals] >> text=1');
  await page.click('a[role=tab] >> text=History');
  await page.waitForSelector('[data-testid=history] article[data-proposal=p3][data-state=rejected]');
  await page.waitForSelector('[data-testid=history] article[data-proposal=p1][data-state=done]');
  await page.selectOption('select[aria-label="Filter by state"]', 'rejected');
  await page.waitForFunction(() => [...document.querySelectorAll('[data-testid=history] article')].every((a) => a.dataset.state === 'rejected'));
  await page.selectOption('select[aria-label="Filter by state"]', '');
  await shot(page, 'approvals-history');
  assert.ok(fake.calls.includes('POST /api/v1/proposals/p1/approve?agent=' + alice.agentId), fake.calls.join('\n'));
  assert.deepEqual(problems.pageErrors, []);
  await page.context().close();
});

test('chat: a proposal made during a conversation shows inline with its buttons', async () => {
  const { page } = await openPage(browser, { viewport: PHONE });
  const alice = stack.people.alice;
  const fake = await fakeApprovals(page, alice.agentId);
  await stack.llm.push([{ match: { contains: 'write to dana' }, step: { text: 'I drafted it — please approve the e-mail below.' } }]);
  await loginWithLink(page, stack.base, alice.token);
  await page.locator('[data-testid^=new-chat]:visible').first().click();
  await page.fill('[data-testid=composer]', 'write to dana');
  await page.keyboard.press('Enter');
  await page.waitForSelector('.msg-assistant[data-final=true]');
  const session = await page.$eval('.session-link[aria-current=page]', (a) => a.dataset.session);
  fake.push(fake.make(mail('Hello', 'Hi Dana!'), { session_id: session }));
  await page.waitForSelector('.messages article.proposal[data-state=pending]');
  await shot(page, 'chat-proposal');
  await page.click('.messages article.proposal button[data-action=approve]');
  await page.waitForSelector('.messages article.proposal[data-state=done]');
  // A proposal of another chat does not show here.
  fake.push(fake.make(mail('Elsewhere', 'Other chat'), { session_id: 'another-session' }));
  await page.waitForTimeout(300);
  assert.equal(await page.$$eval('.messages article.proposal', (l) => l.length), 1);
  await page.context().close();
});

test('autonomy: add a narrowed grant, see it, revoke it', async () => {
  const { page } = await openPage(browser);
  const alice = stack.people.alice;
  const fake = await fakeApprovals(page, alice.agentId);
  await loginWithLink(page, stack.base, alice.token);
  await page.click('a[data-route=autonomy]');
  await settled(page, '[data-testid=grants]');
  await page.waitForSelector('[data-testid=grants] >> text=No grants');
  assert.match(await page.textContent('[data-testid=autonomy-level]'), /autonomy level 1/);
  await page.selectOption('#grant-action', 'gmail.send');
  await page.fill('.cond-row .cond-val', '*@company.com');
  await page.selectOption('#grant-expires', '30');
  await page.fill('#grant-cap', '5');
  await page.click('.grant-form button[type=submit]');
  await page.waitForSelector('article.grant >> text=*@company.com');
  assert.equal(fake.grants.length, 1);
  const g = fake.grants[0];
  assert.equal(g.action, 'gmail.send');
  assert.deepEqual(g.match_args, { to: '*@company.com' });
  assert.equal(g.daily_cap, 5);
  assert.ok(g.expires_at > Date.now() + 29 * 864e5 && g.expires_at < Date.now() + 31 * 864e5);
  await shot(page, 'autonomy');
  await page.click('article.grant button');
  await page.click('dialog.modal [data-testid=confirm-yes]');
  await page.waitForSelector('[data-testid=grants] >> text=No grants');
  assert.equal(fake.grants.length, 0);
  await page.context().close();
});
