// Member flows in real Chromium: sign-in link, streamed chat, safe rendering, isolation between
// people, token rotation, logout.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startAll, openPage, loginWithLink, shot, settled, PHONE } from '../lib/harness.js';

let stack;
let browser;
const shared = {};

before(async () => {
  ({ stack, browser } = await startAll({ people: ['alice@company.com', 'bob@company.com', 'carol@company.com'] }));
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

test('the dashboard is served with strict security headers', async () => {
  for (const p of ['/', '/assets/app.js', '/assets/app.css']) {
    const r = await fetch(`${stack.base}${p}`);
    assert.equal(r.status, 200, p);
    const csp = r.headers.get('content-security-policy');
    assert.match(csp, /default-src 'self'/);
    assert.match(csp, /script-src 'self'(;|$)/, 'no inline or eval script');
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(r.headers.get('referrer-policy'), 'no-referrer');
    assert.equal(r.headers.get('x-frame-options'), 'DENY');
  }
  const js = await fetch(`${stack.base}/assets/app.js`);
  assert.match(js.headers.get('content-type'), /^text\/javascript/);
  assert.equal((await fetch(`${stack.base}/assets/nope.js`)).status, 404);
});

test('sign-in link: the token leaves the address bar at once and becomes an HttpOnly cookie', async () => {
  const { context, page, problems } = await openPage(browser);
  const alice = stack.people.alice;
  await loginWithLink(page, stack.base, alice.token);
  assert.equal(page.url(), `${stack.base}/#/chat`);
  assert.ok(!page.url().includes('token'), page.url());
  assert.ok(!(await page.evaluate(() => location.href)).includes(alice.token));
  assert.equal(await page.evaluate(() => window.__crewgateLinkToken), undefined, 'the token is not kept in the page');
  // Only the first navigation carried the token; no later request did.
  const later = problems.requests.slice(1).filter((u) => u.includes(alice.token));
  assert.deepEqual(later, []);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'crewgate_session');
  assert.ok(session, 'session cookie set');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  assert.ok(!(await page.evaluate(() => document.cookie)).includes('crewgate_session'), 'scripts cannot read the cookie');
  // Reload: the cookie alone signs in.
  await page.reload();
  await page.waitForSelector('.shell');
  await page.waitForSelector('[data-testid=live-status][data-status=online]');
  shared.alice = { context, page, problems };
});

test('chat: a message gets a streamed reply, with tool activity inline', async () => {
  const { page, problems } = shared.alice;
  const answer =
    'Here is your plan for **today**:\n\n1. Review the Q3 numbers\n2. Reply to Dana about the offsite\n3. Prepare the demo for Friday\n\nWant me to draft the reply to Dana?';
  await stack.llm.push([
    { match: { contains: 'plan my day' }, step: { toolCalls: [{ name: 'current_time', arguments: {} }] } },
    { match: { contains: 'plan my day' }, step: { text: answer, chunkDelayMs: 60 } },
  ]);
  await page.click('[data-testid=new-chat]');
  // Send only once the live connection is up, so the streamed reply has a subscriber.
  await page.waitForSelector('[data-testid=live-status][data-status=online]', { state: 'attached' });
  await page.fill('[data-testid=composer]', 'Please plan my day');
  await page.keyboard.press('Enter');
  // The user's message shows at once; the reply streams in pieces before it is final.
  await page.waitForSelector('.msg-user >> text=Please plan my day');
  const partial = await page.waitForSelector('[data-testid=streaming]');
  const firstText = await partial.textContent();
  const final = await page.waitForSelector('.msg-assistant[data-final=true]');
  const finalText = await final.textContent();
  assert.ok(firstText.length < finalText.length, `streamed: first seen ${JSON.stringify(firstText)} then ${JSON.stringify(finalText)}`);
  assert.ok(finalText.includes('Prepare the demo for Friday'));
  assert.equal(await final.$eval('strong', (e) => e.textContent), 'today', 'Markdown is rendered');
  assert.equal(await final.$$eval('ol > li', (l) => l.length), 3);
  const activity = await page.waitForSelector('.activity[data-tool=current_time][data-state=ok]');
  assert.match(await activity.textContent(), /Checked the time/);
  // The new chat is in the session list and in the address.
  await page.waitForSelector('.session-link[aria-current=page]');
  const sessionId = await page.$eval('.session-link[aria-current=page]', (a) => a.dataset.session);
  assert.equal(page.url(), `${stack.base}/#/chat/${sessionId}`);
  shared.aliceSession = sessionId;
  await shot(page, 'chat');
  assert.deepEqual(problems.pageErrors, []);
});

test('model output with <script> and <img onerror> renders as text, never as markup', async () => {
  const { page, problems } = shared.alice;
  const evil =
    'Careful: <script>window.__pwned = 1; alert("xss")</script> and <img src=x onerror="window.__pwned = 2; alert(2)"> ' +
    'and [click](javascript:alert(3)) and <a href="javascript:alert(4)">link</a> and `<b>code</b>` **still bold**';
  await stack.llm.push([{ match: { contains: 'show me html' }, step: { text: evil } }]);
  await page.fill('[data-testid=composer]', 'show me html');
  await page.keyboard.press('Enter');
  const final = await page.waitForSelector('.msg-assistant[data-final=true] >> text=still bold');
  const bubble = await final.evaluateHandle((e) => e.closest('.msg'));
  const text = await bubble.evaluate((e) => e.textContent);
  assert.ok(text.includes('<script>window.__pwned = 1; alert("xss")</script>'), text);
  assert.ok(text.includes('<img src=x onerror="window.__pwned = 2; alert(2)">'), text);
  const counts = await bubble.evaluate((e) => ({
    script: e.querySelectorAll('script').length,
    img: e.querySelectorAll('img').length,
    jsLinks: [...e.querySelectorAll('a')].filter((a) => !/^https?:|^mailto:/.test(a.getAttribute('href') || '')).length,
    b: e.querySelectorAll('b').length,
    strong: e.querySelectorAll('strong').length,
  }));
  assert.deepEqual(counts, { script: 0, img: 0, jsLinks: 0, b: 0, strong: 1 });
  await page.waitForTimeout(200);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.deepEqual(problems.dialogs, []);
  // The stored history renders the same way after a reload.
  await page.reload();
  await page.waitForSelector('.msg-assistant >> text=still bold');
  assert.equal(await page.$$eval('.messages script, .messages img', (l) => l.length), 0);
  assert.deepEqual(problems.dialogs, []);
  assert.deepEqual(problems.pageErrors, []);
});

test("member B cannot see member A's sessions, in the UI or by hand-crafted requests", async () => {
  const { page, problems } = await openPage(browser);
  const { alice, bob } = stack.people;
  // Bob signs in by pasting his token.
  await page.goto(stack.base);
  await page.waitForSelector('.login-card');
  await shot(page, 'login');
  await page.fill('#token', bob.token);
  await page.click('button[type=submit]');
  await page.waitForSelector('.shell');
  await page.waitForSelector('.session-list');
  await page.waitForSelector('.session-list >> text=No chats yet.');
  assert.equal(await page.$$eval('.session-link', (l) => l.length), 0);
  // Opening Alice's chat by address shows "not found".
  await page.goto(`${stack.base}/#/chat/${shared.aliceSession}`);
  await page.waitForSelector('text=Chat not found');
  assert.equal(await page.$$eval('.msg', (l) => l.length), 0);
  // Hand-crafted requests from Bob's page (his cookie, his CSRF token) are all 404.
  const statuses = await page.evaluate(
    async ({ sid, agent }) => {
      const csrf = (await (await fetch('/api/v1/auth/session')).json()).csrf;
      const json = { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf };
      const get = async (u) => (await fetch(u)).status;
      return {
        messages: await get(`/api/v1/sessions/${sid}/messages`),
        messagesAsAlice: await get(`/api/v1/sessions/${sid}/messages?agent=${agent}`),
        session: await get(`/api/v1/sessions/${sid}?agent=${agent}`),
        list: await get(`/api/v1/sessions?agent=${agent}`),
        agent: await get(`/api/v1/agents/${agent}`),
        proposals: await get(`/api/v1/proposals?agent=${agent}`),
        post: (await fetch(`/api/v1/sessions/${sid}/messages?agent=${agent}`, { method: 'POST', headers: json, body: JSON.stringify({ content: 'hi' }) })).status,
      };
    },
    { sid: shared.aliceSession, agent: alice.agentId },
  );
  assert.deepEqual(statuses, { messages: 404, messagesAsAlice: 404, session: 404, list: 404, agent: 404, proposals: 404, post: 404 });
  // Over the WebSocket too: subscribing to Alice's session is refused like a missing one.
  const ws = await page.evaluate(
    (sid) =>
      new Promise((resolve) => {
        const s = new WebSocket(`ws://${location.host}/api/v1/ws`, ['crewgate.v1']);
        s.onmessage = (m) => {
          const ev = JSON.parse(m.data);
          if (ev.type === 'ready') s.send(JSON.stringify({ type: 'subscribe', session: sid, request_id: 1 }));
          else if (ev.request_id === 1) {
            s.close();
            resolve(ev);
          }
        };
        setTimeout(() => resolve({ type: 'timeout' }), 5000);
      }),
    shared.aliceSession,
  );
  assert.equal(ws.type, 'error');
  assert.match(ws.message, /not found/);
  // A cookie-authenticated write without the CSRF header is refused.
  const noCsrf = await page.evaluate(async () => (await fetch('/api/v1/sessions', { method: 'POST' })).status);
  assert.equal(noCsrf, 403);
  assert.deepEqual(problems.pageErrors, []);
  await page.context().close();
});

test('own token rotation shows the new token once and keeps the browser signed in', async () => {
  const { page, context, problems } = await openPage(browser);
  const carol = stack.people.carol;
  await loginWithLink(page, stack.base, carol.token);
  await page.click('a[data-route=account]');
  await page.waitForSelector('[data-testid=token-display]');
  await shot(page, 'account');
  await page.click('[data-testid=rotate-token]');
  await page.click('dialog.modal [data-testid=confirm-yes]');
  const secret = await page.waitForSelector('dialog.modal input.secret');
  const newToken = await secret.inputValue();
  assert.match(newToken, /^cgu_/);
  assert.notEqual(newToken, carol.token);
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: stack.base });
  await page.click('[data-testid=copy-secret]');
  await page.waitForSelector('dialog.modal >> text=Copied.');
  await page.click('dialog.modal [data-testid=secret-done]');
  // The old token is refused at once; the new one works; this browser stays signed in.
  assert.equal((await stack.call('GET', '/api/v1/me', carol.token)).status, 401);
  assert.equal((await stack.call('GET', '/api/v1/me', newToken)).status, 200);
  assert.equal(await page.evaluate(async () => (await fetch('/api/v1/me')).status), 200);
  await page.waitForSelector('[data-testid=token-display]');
  // The secret is not left in the page.
  assert.ok(!(await page.content()).includes(newToken));
  carol.token = newToken;
  assert.deepEqual(problems.pageErrors, []);
  await context.close();
});

test('account: Google is not connected; Connect Google explains when the gateway has no Google sign-in', async () => {
  const { page, context, problems } = await openPage(browser);
  await loginWithLink(page, stack.base, stack.people.bob.token);
  await page.click('a[data-route=account]');
  const conn = await page.waitForSelector('[data-testid=google-connection][data-state=not_connected]');
  assert.match(await conn.textContent(), /Not connected/);
  await page.click('[data-testid=google-connect]');
  const err = await page.waitForSelector('[data-testid=google-connect-error]:not([hidden])');
  assert.match(await err.textContent(), /not configured/);
  // Nothing navigated away, and the button can be tried again.
  assert.equal(page.url(), `${stack.base}/#/account`);
  assert.equal(await page.$eval('[data-testid=google-connect]', (b) => b.disabled), false);
  assert.deepEqual(problems.pageErrors, []);
  await context.close();
});

test('logout ends the session: the old cookie is refused afterwards', async () => {
  const { page, context } = shared.alice;
  const cookie = (await context.cookies()).find((c) => c.name === 'crewgate_session');
  assert.ok(cookie);
  await page.click('[data-testid=logout]');
  await page.waitForSelector('.login-card >> text=You are signed out.');
  assert.equal(await page.evaluate(async () => (await fetch('/api/v1/me')).status), 401);
  // Even replaying the old cookie value by hand is refused.
  const replay = await fetch(`${stack.base}/api/v1/me`, { headers: { Cookie: `crewgate_session=${cookie.value}` } });
  assert.equal(replay.status, 401);
  // The token itself still works (logout ends the browser session, not the token).
  assert.equal((await stack.call('GET', '/api/v1/me', stack.people.alice.token)).status, 200);
  await context.close();
});

test('phone layout: chat, navigation and the session drawer work at 390 px', async () => {
  const { page, context, problems } = await openPage(browser, { viewport: PHONE });
  await loginWithLink(page, stack.base, stack.people.alice.token);
  await page.waitForSelector('.msg-assistant');
  await shot(page, 'chat');
  // Bottom navigation is visible; the session list is a drawer.
  assert.ok(await page.isVisible('.sidenav a[data-route=approvals]'));
  await page.click('button[aria-label="Show chats"]');
  await page.waitForSelector('.chat.drawer-open');
  await page.waitForTimeout(250);
  await shot(page, 'chat-drawer');
  await page.click('.session-link');
  await page.click('a[data-route=account]');
  await page.waitForSelector('[data-testid=token-display]');
  await shot(page, 'account');
  await page.click('a[data-route=autonomy]');
  await settled(page, '[data-testid=grants]');
  await shot(page, 'autonomy');
  await page.click('a[data-route=approvals]');
  await settled(page, '[data-testid=inbox]');
  await shot(page, 'approvals');
  await page.goto(`${stack.base}/`);
  await page.context().clearCookies();
  await page.reload();
  await page.waitForSelector('.login-card');
  await shot(page, 'login');
  assert.deepEqual(problems.pageErrors, []);
  await context.close();
});

test('dark mode follows the system setting', async () => {
  const { page, context } = await openPage(browser, { colorScheme: 'dark' });
  await loginWithLink(page, stack.base, stack.people.alice.token);
  await page.waitForSelector('.msg-assistant');
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(bg, 'rgb(15, 17, 21)');
  await shot(page, 'chat-dark');
  await context.close();
});
