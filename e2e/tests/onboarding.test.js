// Onboarding in real Chromium, end to end: the admin's Invites page (create, copy the link shown
// once, resend, revoke), the invited person's browser through the invite portal, the fake
// Google's consent (authorization code + PKCE, crates/testkit `fake-google`) and the ready page to
// their own dashboard, a chat whose `gmail_send` proposal is approved and reaches the fake Gmail
// exactly once, and the account page's Google connection (connected, needs reconnect, reconnect).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startAll, openPage, loginWithLink, shot, settled, eventually, trackLive, subscribedTo, PHONE } from '../lib/harness.js';

const ALICE = 'alice@company.com';
const CAROL = 'carol@company.com';

let stack;
let browser;
const shared = {};

before(async () => {
  ({ stack, browser } = await startAll({ google: { accounts: [ALICE], signIn: ALICE, allowedDomains: ['company.com'] } }));
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

/** The invite row of `email` on the Invites page. */
const row = (email) => `tr[data-email="${email}"]`;

/** Reads the link of the open "shown once" dialog, checks the copy button, and closes it. */
async function takeLink(page) {
  const input = await page.waitForSelector('dialog.modal [data-testid=invite-link]');
  const link = await input.inputValue();
  assert.match(link, new RegExp(`^${stack.base}/invite/cgi_[A-Za-z0-9_-]+$`));
  await page.click('dialog.modal [data-testid=copy-link]');
  await page.waitForSelector('dialog.modal >> text=Copied.');
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), link);
  return link;
}

test('admin: create an invite (link shown once), resend it, revoke another', async () => {
  const { page, context, problems } = await openPage(browser);
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: stack.base });
  await loginWithLink(page, stack.base, stack.adminToken);
  await page.click('a[data-route=invites]');
  await settled(page, '[data-testid=invites]');
  await page.waitForSelector('[data-testid=invites] >> text=No invites yet.');

  // A refused address shows the gateway's reason in the form, and nothing is created.
  await page.fill('[data-testid=invite-email]', 'mallory@elsewhere.org');
  await page.click('[data-testid=invite-create]');
  const refused = await page.waitForSelector('[data-testid=invite-error]:not([hidden])');
  assert.match(await refused.textContent(), /not in an allowed domain/);
  assert.equal((await stack.call('GET', '/api/v1/invites', stack.adminToken)).json.length, 0);

  // Alice's invite: the link is shown once, with whether it was e-mailed (no mail set up here).
  await page.fill('[data-testid=invite-email]', ALICE);
  await page.fill('[data-testid=invite-name]', 'Alice Ng');
  await page.click('[data-testid=invite-create]');
  await page.waitForSelector('dialog.modal >> text=Invite created');
  const emailed = await page.waitForSelector('dialog.modal [data-testid=invite-emailed]');
  assert.equal(await emailed.getAttribute('data-emailed'), 'no');
  assert.match(await emailed.textContent(), /Not e-mailed/);
  const first = await takeLink(page);
  await shot(page, 'admin-invite-link');
  await page.click('dialog.modal [data-testid=link-done]');
  await page.waitForSelector('dialog.modal', { state: 'detached' });
  const alice = await page.waitForSelector(`${row(ALICE)}[data-status=pending]`);
  const text = await alice.textContent();
  assert.match(text, /Alice Ng/);
  assert.match(text, /alice-company-com/);
  assert.match(text, /Pending/);
  assert.match(text, /1×/);
  // Shown once: the link is nowhere in the page any more.
  assert.ok(!(await page.content()).includes(first.split('/invite/')[1]));
  // The form was cleared for the next invite.
  assert.equal(await page.inputValue('[data-testid=invite-email]'), '');

  // Resend: a new link (shown once) replaces the old one, which stops working.
  await page.click(`${row(ALICE)} button[data-action=resend]`);
  await page.click('dialog.modal [data-testid=confirm-yes]');
  await page.waitForSelector('dialog.modal >> text=New invite link');
  const second = await takeLink(page);
  assert.notEqual(second, first);
  await page.click('dialog.modal [data-testid=link-done]');
  await page.waitForSelector(`${row(ALICE)}[data-status=pending] >> text=2×`);
  assert.equal((await fetch(first)).status, 404, 'the old link is dead');
  assert.equal((await fetch(second)).status, 200, 'the new link works');
  shared.aliceLink = second;

  // A second invite, revoked after a confirmation.
  await page.fill('[data-testid=invite-email]', CAROL);
  await page.keyboard.press('Enter');
  const carolLink = await takeLink(page);
  await page.click('dialog.modal [data-testid=link-done]');
  await page.waitForSelector(`${row(CAROL)}[data-status=pending]`);
  await page.click(`${row(CAROL)} button[data-action=revoke]`);
  await page.waitForSelector('dialog.modal >> text=Revoke invite?');
  await page.click('dialog.modal [data-testid=confirm-yes]');
  const revoked = await page.waitForSelector(`${row(CAROL)}[data-status=revoked]`);
  assert.match(await revoked.textContent(), /Revoked/);
  assert.equal(await revoked.$$eval('button', (b) => b.length), 0, 'a revoked invite has no actions');
  assert.equal((await fetch(carolLink)).status, 410, 'the revoked link is dead');
  const listed = (await stack.call('GET', '/api/v1/invites', stack.adminToken)).json;
  assert.deepEqual(Object.fromEntries(listed.map((i) => [i.email, i.status])), { [ALICE]: 'pending', [CAROL]: 'revoked' });
  await shot(page, 'admin-invites');
  // No raw JSON on the page.
  assert.ok(!/[{[]\s*"\w+"\s*:/.test(await page.textContent('main')));
  assert.deepEqual(problems.pageErrors, []);
  await context.close();
});

test('admin: the Invites page at phone width', async () => {
  const { page, context, problems } = await openPage(browser, { viewport: PHONE });
  await loginWithLink(page, stack.base, stack.adminToken);
  await page.click('a[data-route=invites]');
  await settled(page, '[data-testid=invites]');
  await page.waitForSelector(`${row(ALICE)}[data-status=pending]`);
  // The list is below the form on a phone.
  await page.$eval('#invites-title', (e) => e.scrollIntoView());
  await shot(page, 'admin-invites');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 1, `page is ${overflow}px wider than the phone`);
  assert.deepEqual(problems.pageErrors, []);
  await context.close();
});

test('Alice: invite link → Connect Google → ready page → dashboard → approved gmail_send reaches Gmail once', async () => {
  assert.ok(shared.aliceLink, 'the admin test issued the link');
  // The portal page at phone width first (only looking does not use the invite).
  {
    const { page, context } = await openPage(browser, { viewport: PHONE });
    await page.goto(shared.aliceLink);
    await page.waitForSelector('[data-testid=connect-google]');
    await shot(page, 'invite-portal');
    await context.close();
  }
  const { page, context, problems } = await openPage(browser);
  await page.goto(shared.aliceLink);
  assert.equal(await page.textContent('[data-testid=invite-email]'), ALICE);
  const portal = await page.textContent('main');
  assert.match(portal, /alice-company-com/);
  assert.match(portal, /Gmail/);
  await shot(page, 'invite-portal');

  // Connect Google: the browser goes to the fake Google (signed in as Alice, who consents) and back.
  await page.click('[data-testid=connect-google]');
  const tokenEl = await page.waitForSelector('[data-testid=user-token]');
  const token = (await tokenEl.textContent()).trim();
  assert.match(token, /^cgu_/);
  assert.ok(page.url().startsWith(`${stack.base}/oauth/google/callback?`), page.url());
  assert.ok(problems.requests.some((u) => u.startsWith(stack.google.authUrl)), 'the browser visited the Google consent page');
  assert.equal(await page.textContent('[data-testid=agent-id]'), 'alice-company-com');
  await shot(page, 'invite-ready');
  // The invite is used up: the link now explains that, and the admin sees it accepted.
  const again = await fetch(shared.aliceLink);
  assert.equal(again.status, 410);
  assert.match(await again.text(), /already used/);
  const invites = (await stack.call('GET', '/api/v1/invites', stack.adminToken)).json;
  assert.equal(invites.find((i) => i.email === ALICE).status, 'used');

  // Open my dashboard: the sign-in link's token leaves the address bar at once.
  await page.click('[data-testid=dashboard-link]');
  await page.waitForSelector('.shell');
  await page.waitForSelector('main[data-view=chat]');
  assert.equal(page.url(), `${stack.base}/#/chat`);
  assert.ok(!(await page.evaluate(() => location.href)).includes(token));
  const me = (await stack.call('GET', '/api/v1/me', token)).json;
  assert.equal(me.agent.id, 'alice-company-com');
  assert.deepEqual(me.connections.google, { state: 'connected', email: ALICE });
  shared.alice = { token, agentId: me.agent.id };

  // A first message: the reply streams in.
  await stack.llm.push([
    { match: { contains: 'who are you' }, step: { text: 'I am **your assistant**. I can read your mail, calendar and documents, and I ask before I send or change anything.', chunkDelayMs: 40 } },
  ]);
  await page.click('[data-testid=new-chat]');
  // Send only once the live connection is up, so the streamed reply has a subscriber.
  await page.waitForSelector('[data-testid=live-status][data-status=online]', { state: 'attached' });
  await page.fill('[data-testid=composer]', 'Hi, who are you?');
  await page.keyboard.press('Enter');
  await page.waitForSelector('.msg-user >> text=Hi, who are you?');
  const partial = await page.waitForSelector('[data-testid=streaming]');
  const firstText = await partial.textContent();
  const final = await page.waitForSelector('.msg-assistant[data-final=true] >> text=before I send');
  const finalText = await final.textContent();
  assert.ok(firstText.length < finalText.length, `streamed: first seen ${JSON.stringify(firstText)} then ${JSON.stringify(finalText)}`);
  assert.equal(await final.$eval('strong', (e) => e.textContent), 'your assistant');
  await page.waitForSelector('.session-link[aria-current=page]');
  const session = await page.$eval('.session-link[aria-current=page]', (a) => a.dataset.session);

  // The approvals inbox in a second tab: it follows Alice's chats over its own WebSocket.
  const inbox = await context.newPage();
  inbox.on('pageerror', (e) => problems.pageErrors.push(String(e)));
  const inboxLive = trackLive(inbox);
  await inbox.goto(`${stack.base}/#/approvals`);
  await settled(inbox, '[data-testid=inbox]');
  await inbox.waitForSelector('[data-testid=live-status][data-status=online]', { state: 'attached' });
  await subscribedTo(inboxLive, session);
  assert.equal(await inbox.$$eval('article.proposal', (l) => l.length), 0);

  // Asked to write an e-mail, the model proposes gmail_send; nothing is sent yet.
  const phrase = 'email Bob about the offsite';
  const mail = { to: ['bob@partner.com'], subject: 'Offsite on Friday', body: 'Hi Bob,\n\nthe offsite is on Friday at 10:00 in the big room.\n\nAlice' };
  await stack.llm.push([
    { match: { contains: phrase }, step: { toolCalls: [{ name: 'gmail_send', arguments: mail }] } },
    { match: { contains: phrase }, step: { text: 'I drafted the e-mail to Bob. It is waiting for your approval.' } },
  ]);
  await page.fill('[data-testid=composer]', `Please ${phrase}`);
  await page.keyboard.press('Enter');
  // The proposal shows in the chat …
  await page.waitForSelector('.messages article.proposal[data-state=pending]');
  await page.waitForSelector('.msg-assistant[data-final=true] >> text=waiting for your approval');

  // … and in the open inbox, live (no reload).
  const card = await inbox.waitForSelector('article.proposal[data-state=pending]');
  const cardText = await card.textContent();
  assert.match(cardText, /Send email/);
  assert.match(cardText, /bob@partner\.com/);
  assert.match(cardText, /Offsite on Friday/);
  assert.match(cardText, /the big room/);
  assert.deepEqual(await stack.google.sent(ALICE), [], 'nothing is sent before the approval');

  await card.$eval('button[data-action=approve]', (b) => b.click());
  await inbox.waitForSelector('article.proposal[data-state=done]');
  const sent = await stack.google.sent(ALICE);
  assert.equal(sent.length, 1, 'the fake Gmail received exactly one message');
  assert.deepEqual(sent[0].to, ['bob@partner.com']);
  assert.equal(sent[0].subject, 'Offsite on Friday');
  assert.match(sent[0].body, /the big room/);
  assert.ok(sent[0].idempotencyKey, 'sent with an idempotency key');
  const state = await stack.google.state(ALICE);
  assert.equal(state.sent, 1);
  // The chat tab follows too; the badge clears. It stays at one sent message.
  await page.waitForSelector('.messages article.proposal[data-state=done]');
  await inbox.waitForSelector('[data-badge=approvals][hidden]', { state: 'attached' });
  assert.equal((await stack.google.sent(ALICE)).length, 1);
  const proposals = (await stack.call('GET', `/api/v1/proposals?agent=${shared.alice.agentId}`, token)).json;
  assert.equal(proposals.filter((p) => p.state === 'done').length, 1, 'executed exactly once');
  assert.deepEqual(problems.pageErrors, []);
  await context.close();
});

test('Alice: the account page shows Google connected, needs reconnect after a revoke, and reconnects', async () => {
  assert.ok(shared.alice, 'Alice was onboarded');
  const { page, context, problems } = await openPage(browser);
  await loginWithLink(page, stack.base, shared.alice.token);
  await page.click('a[data-route=account]');
  const conn = await page.waitForSelector('[data-testid=google-connection][data-state=connected]');
  assert.match(await conn.textContent(), /Connected/);
  assert.equal(await page.textContent('[data-testid=google-email]'), ALICE);
  assert.match(await page.textContent('[data-testid=google-connect]'), /Reconnect Google/);
  await shot(page, 'account-google');

  // Alice withdraws the grant at Google; the agent's next Google call finds out.
  await stack.google.revoke(ALICE);
  await stack.llm.push([
    { match: { contains: 'any new mail' }, step: { toolCalls: [{ name: 'gmail_search', arguments: { query: 'in:inbox' } }] } },
    { match: { contains: 'any new mail' }, step: { text: 'I could not reach your Gmail.' } },
  ]);
  const s = await stack.call('POST', '/api/v1/sessions', shared.alice.token, { title: 'Mail check' });
  assert.equal(s.status, 201, s.text);
  const turn = await stack.call('POST', `/api/v1/sessions/${s.json.id}/messages`, shared.alice.token, { content: 'any new mail?' });
  assert.equal(turn.status, 200, turn.text);
  await eventually(async () => (await stack.call('GET', '/api/v1/me', shared.alice.token)).json.connections.google.state === 'needs_reconnect', { what: 'needs_reconnect' });
  await page.reload();
  await page.waitForSelector('[data-testid=google-connection][data-state=needs_reconnect]');
  assert.match(await page.textContent('[data-testid=google-connection]'), /Needs reconnect/);
  await page.waitForSelector('[data-testid=google-reason]');
  await shot(page, 'account-google-reconnect');

  // Reconnect: the button starts consent at the gateway and the browser goes to Google and back.
  await page.click('[data-testid=google-connect]');
  await page.waitForSelector('[data-testid=portal-message] >> text=Google reconnected');
  assert.ok(page.url().startsWith(`${stack.base}/oauth/google/callback?`), page.url());
  assert.ok(problems.requests.some((u) => u.startsWith(stack.google.authUrl)), 'the browser visited the Google consent page');
  await page.goto(`${stack.base}/#/account`);
  await page.waitForSelector('[data-testid=google-connection][data-state=connected]');
  assert.equal(await page.textContent('[data-testid=google-email]'), ALICE);
  assert.deepEqual(problems.pageErrors, []);
  await context.close();
});
