// Approval flows in real Chromium against the real approval gate: GET /api/v1/proposals,
// POST /api/v1/proposals/{id}/approve|reject|edit, WS {"type":"proposal"}. The write tool is
// `notion_create_page` (company key, no per-person connection) against the fake Notion process
// (crates/testkit `fake-notion`), which counts the writes it received.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startAll, openPage, loginWithLink, shot, settled, eventually, subscribedTo, PHONE } from '../lib/harness.js';

const PARENT = 'Team notes';

let stack;
let browser;
let alice;
let session;

/** Arguments of notion_create_page: a page under the shared "Team notes" page. */
const notionPage = (title, content) => ({ parent_page_id: stack.notion.pages[PARENT], title, content });

/** Makes the agent propose a Notion page: a chat turn (over REST, like another device) whose model call is notion_create_page. */
async function propose(phrase, args) {
  await stack.llm.push([
    { match: { contains: phrase }, step: { toolCalls: [{ name: 'notion_create_page', arguments: args }] } },
    { match: { contains: phrase }, step: { text: 'I prepared the page. It is waiting for your approval.' } },
  ]);
  const r = await stack.call('POST', `/api/v1/sessions/${session}/messages`, alice.token, { content: phrase });
  assert.equal(r.status, 200, r.text);
}

const notionWrites = async () => (await stack.notion.state()).writes;

before(async () => {
  ({ stack, browser } = await startAll({ people: ['alice@company.com', 'bob@company.com'], notion: [PARENT] }));
  alice = stack.people.alice;
  const s = await stack.call('POST', '/api/v1/sessions', alice.token, { title: 'Offsite' });
  session = s.json.id;
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

test('a proposal appears in the inbox live; Approve runs it once and the card shows done', async () => {
  const { page, context, problems, live } = await openPage(browser);
  await loginWithLink(page, stack.base, alice.token);
  await page.click('a[data-route=approvals]');
  await settled(page, '[data-testid=inbox]');
  await page.waitForSelector('[data-testid=live-status][data-status=online]');
  // Proposals arrive over the WebSocket for the sessions the page follows.
  await subscribedTo(live, session);
  await propose('write the offsite plan', notionPage('Offsite on Friday', 'The offsite is on Friday at 10:00 in the big room.'));
  const card = await page.waitForSelector('article.proposal[data-state=pending]');
  const text = await card.textContent();
  assert.match(text, /Create Notion page/);
  assert.match(text, /Offsite on Friday/);
  assert.match(text, /the big room/);
  assert.equal(await notionWrites(), 0, 'nothing is written before the approval');
  // The navigation badge counts it.
  await page.waitForSelector('[data-badge=approvals]:not([hidden])');
  await shot(page, 'approvals');
  await card.$eval('button[data-action=approve]', (b) => b.click());
  await page.waitForSelector('article.proposal[data-state=done]');
  const notion = await stack.notion.state();
  assert.equal(notion.writes, 1, 'the fake Notion received exactly one write');
  assert.equal(notion.created.length, 1);
  assert.equal(notion.created[0].parent.page_id, stack.notion.pages[PARENT]);
  assert.equal(notion.created[0].properties.title.title.map((t) => t.text.content).join(''), 'Offsite on Friday');
  assert.match(JSON.stringify(notion.created[0].children), /the big room/);
  const proposals = (await stack.call('GET', `/api/v1/proposals?agent=${alice.agentId}`, alice.token)).json;
  assert.equal(proposals.filter((p) => p.state === 'done').length, 1, 'executed exactly once');
  await page.waitForSelector('[data-badge=approvals][hidden]', { state: 'attached' });
  assert.deepEqual(problems.pageErrors, []);
  await context.close();
});

test('Edit asks the agent for changes: a revised proposal with a diff replaces the old one', async () => {
  const { page, context, live } = await openPage(browser);
  await loginWithLink(page, stack.base, alice.token);
  await page.click('a[data-route=approvals]');
  await settled(page, '[data-testid=inbox]');
  // Proposals arrive over the WebSocket: propose once it is connected (and subscribed).
  await page.waitForSelector('[data-testid=live-status][data-status=online]', { state: 'attached' });
  await subscribedTo(live, session);
  await propose('write the agenda page', notionPage('Agenda', 'Here is the long agenda for the offsite with many details.'));
  const card = await page.waitForSelector('article.proposal[data-state=pending]');
  const oldId = await card.getAttribute('data-proposal');
  // The revision: the model answers the edit with a new notion_create_page call.
  await stack.llm.push([
    { step: { toolCalls: [{ name: 'notion_create_page', arguments: notionPage('Agenda', 'Short agenda attached.') }] } },
    { step: { text: 'Here is a shorter version.' } },
  ]);
  await card.$eval('button[data-action=edit]', (b) => b.click());
  await page.fill('[data-testid=edit-instructions]', 'make it shorter');
  await page.click('[data-testid=edit-submit]');
  await page.waitForSelector(`article.proposal[data-proposal="${oldId}"][data-state=superseded]`);
  const revised = await page.waitForSelector(`article.proposal[data-state=pending]:not([data-proposal="${oldId}"])`);
  const newId = await revised.getAttribute('data-proposal');
  // The revision can arrive over the WebSocket before the edit request answers; the diff against
  // the old proposal shows once the card knows both.
  await page.waitForSelector(`article.proposal[data-proposal="${newId}"] .proposal-diff >> text=Changed from #`);
  assert.match(await revised.textContent(), /Short agenda attached/);
  assert.match(await revised.textContent(), /Changed from #/);
  await shot(page, 'approvals-edit');
  // Approving the old one is refused by the gateway.
  const old = await page.evaluate(async (id) => {
    const csrf = (await (await fetch('/api/v1/auth/session')).json()).csrf;
    return (await fetch(`/api/v1/proposals/${id}/approve`, { method: 'POST', headers: { 'X-CSRF-Token': csrf } })).status;
  }, oldId);
  assert.ok(old >= 400, `approving a superseded proposal answered ${old}`);
  assert.equal(await notionWrites(), 1, 'only the first test\'s page was written');
  await context.close();
});

test('Reject: nothing runs, and the decision is in the history', async () => {
  const { page, context, live } = await openPage(browser, { viewport: PHONE });
  await loginWithLink(page, stack.base, alice.token);
  await page.click('a[data-route=approvals]');
  await settled(page, '[data-testid=inbox]');
  await page.waitForSelector('[data-testid=live-status][data-status=online]', { state: 'attached' });
  await subscribedTo(live, session);
  const before = await stack.notion.state();
  await propose('write a joke page', notionPage('Joke', 'Why did the chicken cross the road?'));
  const card = await page.waitForSelector('article.proposal[data-state=pending] >> text=chicken');
  await shot(page, 'approvals');
  const el = await card.evaluateHandle((e) => e.closest('article'));
  const id = await el.evaluate((e) => e.dataset.proposal);
  await el.evaluate((e) => e.querySelector('button[data-action=reject]').click());
  await page.waitForSelector(`article.proposal[data-proposal="${id}"][data-state=rejected]`);
  await page.click('a[role=tab] >> text=History');
  await page.waitForSelector(`[data-testid=history] article.proposal[data-proposal="${id}"][data-state=rejected]`);
  await shot(page, 'approvals-history');
  const p = (await stack.call('GET', `/api/v1/proposals/${id}?agent=${alice.agentId}`, alice.token)).json;
  assert.equal(p.state, 'rejected');
  const afterReject = await stack.notion.state();
  assert.equal(afterReject.writes, before.writes, 'a rejected proposal writes nothing');
  assert.equal(afterReject.requests.length, before.requests.length, 'the fake Notion received nothing');
  await context.close();
});

test("member B cannot see or decide member A's proposals", async () => {
  await propose('write the budget page', notionPage('Budget', 'Numbers attached.'));
  const writes = await notionWrites();
  const pending = await eventually(async () => {
    const r = await stack.call('GET', `/api/v1/proposals?state=pending&agent=${alice.agentId}`, alice.token);
    return r.json && r.json.length ? r.json : null;
  }, { what: "Alice's pending proposal" });
  const { page, context } = await openPage(browser);
  await loginWithLink(page, stack.base, stack.people.bob.token);
  await page.click('a[data-route=approvals]');
  await settled(page, '[data-testid=inbox]');
  assert.equal(await page.$$eval('article.proposal', (l) => l.length), 0);
  const statuses = await page.evaluate(
    async ({ id, agent }) => {
      const csrf = (await (await fetch('/api/v1/auth/session')).json()).csrf;
      const h = { 'X-CSRF-Token': csrf };
      return {
        list: (await fetch(`/api/v1/proposals?agent=${agent}`)).status,
        get: (await fetch(`/api/v1/proposals/${id}`)).status,
        approve: (await fetch(`/api/v1/proposals/${id}/approve`, { method: 'POST', headers: h })).status,
        reject: (await fetch(`/api/v1/proposals/${id}/reject`, { method: 'POST', headers: h })).status,
      };
    },
    { id: pending[0].id, agent: alice.agentId },
  );
  assert.deepEqual(statuses, { list: 404, get: 404, approve: 404, reject: 404 });
  const still = await stack.call('GET', `/api/v1/proposals/${pending[0].id}?agent=${alice.agentId}`, alice.token);
  assert.equal(still.json.state, 'pending');
  assert.equal(await notionWrites(), writes, "Bob's attempts wrote nothing");
  await context.close();
});

test('autonomy grants: add, see and revoke', async () => {
  const { page, context } = await openPage(browser);
  await loginWithLink(page, stack.base, alice.token);
  await page.click('a[data-route=autonomy]');
  await settled(page, '[data-testid=grants]');
  await page.selectOption('#grant-action', 'notion.create');
  await page.fill('.cond-row .cond-key', 'parent_page_id');
  await page.fill('.cond-row .cond-val', `${stack.notion.pages[PARENT]}*`);
  await page.fill('#grant-cap', '5');
  await page.click('.grant-form button[type=submit]');
  const grant = await page.waitForSelector(`article.grant >> text=${stack.notion.pages[PARENT]}*`);
  await shot(page, 'autonomy');
  const { grants } = (await stack.call('GET', `/api/v1/grants?agent=${alice.agentId}`, alice.token)).json;
  assert.equal(grants.length, 1);
  assert.equal(grants[0].action, 'notion.create');
  assert.equal(grants[0].daily_cap, 5);
  await (await grant.evaluateHandle((e) => e.closest('article'))).evaluate((e) => e.querySelector('button').click());
  await page.click('dialog.modal [data-testid=confirm-yes]');
  await page.waitForSelector('[data-testid=grants] >> text=No grants');
  await context.close();
});
