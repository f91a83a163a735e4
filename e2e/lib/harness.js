// Test harness: the real gateway binary on 127.0.0.1 with a temp data dir, the scripted fake LLM
// (crates/testkit `fake-llm`), optionally the fake Notion (crates/testkit `fake-notion`) behind the
// gateway's Notion tools and the fake Google (crates/testkit `fake-google`: OAuth + Gmail & co.)
// behind Google sign-in and the Google tools, people created through the public admin API, and
// headless Chromium.

import { spawn } from 'node:child_process';
import net from 'node:net';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const E2E_DIR = path.resolve(here, '..');
const ROOT = path.resolve(E2E_DIR, '..');
export const SCREENSHOTS = path.join(E2E_DIR, 'screenshots');

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

// Every process we start dies with the test process, whatever happens.
const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

function binary(envName, fallback) {
  let p = process.env[envName] ? path.resolve(process.env[envName]) : path.join(ROOT, fallback);
  // Without its own variable, a fake is next to the fake LLM (same cargo target dir).
  if (!process.env[envName] && envName !== 'FAKE_LLM_BIN' && process.env.FAKE_LLM_BIN) {
    p = path.join(path.dirname(path.resolve(process.env.FAKE_LLM_BIN)), path.basename(fallback));
  }
  if (!existsSync(p)) throw new Error(`${p} not found: build it (cargo build -p crewgate -p crewgate-testkit --bins) or set ${envName}`);
  return p;
}

/** Spawns a process and resolves with it once `ready(line)` returns a value for a stdout line. */
function startProcess(cmd, args, { env = {}, unset = [], ready, name, timeoutMs = 20000 }) {
  return new Promise((resolve, reject) => {
    const fullEnv = { ...process.env, ...env };
    for (const k of unset) delete fullEnv[k];
    const child = spawn(cmd, args, { env: fullEnv, stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(child);
    child.once('exit', () => children.delete(child));
    const stderr = [];
    child.stderr.on('data', (d) => {
      stderr.push(d.toString());
      if (stderr.length > 400) stderr.shift();
    });
    const found = {};
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} did not start within ${timeoutMs} ms:\n${stderr.join('')}`));
    }, timeoutMs);
    const rl = readline.createInterface({ input: child.stdout });
    rl.on('line', (line) => {
      const v = ready(line, found);
      if (v) {
        clearTimeout(timer);
        resolve({ child, value: v, stderr });
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited early (code ${code}, signal ${signal}):\n${stderr.join('')}`));
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

function stopProcess(child, signal = 'SIGTERM') {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill(signal);
  });
}

/** A free loopback port, for a gateway whose public URL must be known before it starts. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** POSTs JSON to a fake's control API; resolves with the parsed answer. */
async function control(url, body, what) {
  const r = await fetch(url, { method: body === undefined ? 'GET' : 'POST', headers: { 'Content-Type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!r.ok) throw new Error(`${what}: ${r.status} ${await r.text()}`);
  return r.json();
}

/** The first stdout line that is JSON with a `baseUrl` (how the fakes announce themselves). */
function jsonReady(line) {
  try {
    const v = JSON.parse(line);
    return v.baseUrl ? v : null;
  } catch {
    return null;
  }
}

/**
 * Starts fake LLM (+ fake Notion) + gateway and creates people. Returns everything a test needs.
 * people: e-mail addresses to create worker agents (and user tokens) for.
 * notion: page titles to seed in a fake Notion shared with the integration; when given, the
 *   gateway offers the Notion tools (company key, `integrations.notion.apiBase` at the fake).
 * google: `{accounts: [email], signIn: email?, allowedDomains: [domain]?}`; when given, a fake
 *   Google runs with those accounts and the gateway gets Google sign-in and the Google tools
 *   (`skills.installed["steipete/gog"]` with the fake's client, `integrations.google` at the
 *   fake, `onboarding.allowedDomains`), and `gateway.publicUrl` is the gateway's own address (its
 *   port chosen up front, as the OAuth redirect URI must be registered at the fake).
 */
export async function startStack({ people = [], notion = null, google = null } = {}) {
  const dir = await mkdtemp(path.join(tmpdir(), 'crewgate-e2e-'));
  const fakes = [];
  const stopFakes = async () => {
    for (const f of fakes.reverse()) {
      f.child.stdin.end();
      await stopProcess(f.child);
    }
  };
  let gw;
  let llmProc;
  let notionProc = null;
  let googleProc = null;
  let bind = '127.0.0.1:0';
  const config = path.join(dir, 'crewgate.jsonc');
  try {
    llmProc = await startProcess(binary('FAKE_LLM_BIN', 'target/debug/fake-llm'), ['--api-key', 'sk-e2e', '--chunk-delay-ms', '15'], {
      name: 'fake-llm',
      ready: jsonReady,
    });
    fakes.push(llmProc);
    const cfg = { llm: { baseUrl: llmProc.value.baseUrl, apiKey: '${E2E_LLM_KEY}', model: 'fake-model' } };
    if (notion) {
      const args = ['--rate-limit', '50'];
      for (const title of notion) args.push('--page', title);
      notionProc = await startProcess(binary('FAKE_NOTION_BIN', 'target/debug/fake-notion'), args, { name: 'fake-notion', ready: jsonReady });
      fakes.push(notionProc);
      cfg.skills = { installed: { notion: { enabled: true, config: { apiKey: '${E2E_NOTION_KEY}' } } } };
      cfg.integrations = { notion: { apiBase: notionProc.value.baseUrl } };
    }
    if (google) {
      const port = await freePort();
      bind = `127.0.0.1:${port}`;
      const publicUrl = `http://${bind}`;
      const args = ['--redirect-uri', `${publicUrl}/oauth/google/callback`];
      for (const a of google.accounts || []) args.push('--account', a);
      if (google.signIn) args.push('--sign-in', google.signIn);
      googleProc = await startProcess(binary('FAKE_GOOGLE_BIN', 'target/debug/fake-google'), args, { name: 'fake-google', ready: jsonReady });
      fakes.push(googleProc);
      const g = googleProc.value;
      cfg.gateway = { publicUrl };
      cfg.skills = cfg.skills || { installed: {} };
      cfg.skills.installed['steipete/gog'] = { enabled: true, config: { clientId: g.clientId, clientSecret: '${E2E_GOOGLE_SECRET}' } };
      cfg.integrations = { ...(cfg.integrations || {}), google: { apiBase: g.baseUrl, authUrl: g.authUrl, tokenUrl: g.tokenUrl } };
      cfg.onboarding = { allowedDomains: google.allowedDomains || ['company.com'] };
    }
    await writeFile(config, JSON.stringify(cfg, null, 2));
    await mkdir(path.join(dir, 'data'));
    gw = await startProcess(
      binary('CREWGATE_BIN', 'target/debug/crewgate'),
      ['gateway', '--data-dir', path.join(dir, 'data'), '--config', config, '--bind', bind],
      {
        name: 'crewgate gateway',
        env: {
          E2E_LLM_KEY: 'sk-e2e',
          E2E_NOTION_KEY: notionProc ? notionProc.value.token : '',
          E2E_GOOGLE_SECRET: googleProc ? googleProc.value.clientSecret : '',
          RUST_LOG: process.env.RUST_LOG || 'warn',
        },
        // The test's own settings win over anything inherited from the developer's shell.
        unset: ['MASTER_KEY', 'CREWGATE_DATA_DIR', 'CREWGATE_CONFIG', 'CREWGATE_BIND', 'DATABASE_URL', 'REDPILL_API_KEY'],
        ready: (line, found) => {
          const t = /^admin token: (\S+)/.exec(line);
          if (t) found.adminToken = t[1];
          const l = /^listening on (http:\/\/\S+)/.exec(line);
          if (l) found.base = l[1];
          return found.base && found.adminToken ? { ...found } : null;
        },
      },
    );
  } catch (e) {
    await stopFakes();
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  const { base, adminToken } = gw.value;
  const { controlUrl } = llmProc.value;

  const stack = {
    base,
    adminToken,
    dir,
    people: {},
    gatewayLog: gw.stderr,
    /** Calls the REST API with a bearer token (Node side, like an API client). */
    async call(method, p, token, body) {
      const resp = await fetch(`${base}${p}`, {
        method,
        headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
        body: body !== undefined ? JSON.stringify(body) : undefined,
      });
      const text = await resp.text();
      let json = null;
      try {
        json = text ? JSON.parse(text) : null;
      } catch {
        json = null;
      }
      return { status: resp.status, json, text, headers: resp.headers };
    },
    llm: {
      /** Queues scripted answers: [{match: {contains}, step: {text} | {toolCalls} | …}]. */
      async push(entries) {
        const r = await fetch(`${controlUrl}/push`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(entries) });
        if (!r.ok) throw new Error(`fake-llm push: ${r.status} ${await r.text()}`);
      },
      async requests() {
        return (await fetch(`${controlUrl}/requests`)).json();
      },
    },
    /** The fake Notion (only with `notion`): seeded page ids by title, and what it received. */
    notion: notionProc && {
      pages: notionProc.value.pages,
      /** {writes, rateLimited, requests: [{method, path, status}], created: [body], appended: [{path, body}]} */
      async state() {
        const r = await fetch(`${notionProc.value.controlUrl}/state`);
        if (!r.ok) throw new Error(`fake-notion state: ${r.status} ${await r.text()}`);
        return r.json();
      },
      /** Adds a page shared with the integration; resolves with its id. */
      async addPage(title, parent) {
        const r = await fetch(`${notionProc.value.controlUrl}/pages`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ title, parent }) });
        if (!r.ok) throw new Error(`fake-notion add page: ${r.status} ${await r.text()}`);
        return (await r.json()).id;
      },
    },
    /** The fake Google (only with `google`): accounts, who is signed in, and what Gmail sent. */
    google: googleProc && {
      ...googleProc.value,
      addAccount: (email) => control(`${googleProc.value.controlUrl}/accounts`, { email }, 'fake-google add account'),
      /** The account signed in to "the browser" at the consent page (null: nobody). */
      signIn: (email) => control(`${googleProc.value.controlUrl}/sign-in`, { email }, 'fake-google sign in'),
      /** The account withdraws the grant: its tokens die and refreshing fails (invalid_grant). */
      revoke: (email) => control(`${googleProc.value.controlUrl}/revoke`, { email }, 'fake-google revoke'),
      addMessage: (email, raw, labels) => control(`${googleProc.value.controlUrl}/messages`, { email, raw, labels }, 'fake-google add message'),
      /** [{id, threadId, from, to, cc, bcc, subject, body, idempotencyKey, inReplyTo}], oldest first. */
      sent: (email) => control(`${googleProc.value.controlUrl}/sent?email=${encodeURIComponent(email)}`, undefined, 'fake-google sent'),
      /** {writes, sent, drafts, apiRequests} of one account. */
      state: (email) => control(`${googleProc.value.controlUrl}/state?email=${encodeURIComponent(email)}`, undefined, 'fake-google state'),
    },
    async stop() {
      await stopProcess(gw.child);
      await stopFakes();
      await rm(dir, { recursive: true, force: true });
    },
  };

  try {
    for (const email of people) {
      const agent = await stack.call('POST', '/api/v1/agents', adminToken, { ownerEmail: email });
      if (agent.status !== 201) throw new Error(`creating the agent of ${email}: ${agent.status} ${agent.text}`);
      const tok = await stack.call('POST', '/api/v1/tokens', adminToken, { kind: 'user', agentId: agent.json.id });
      if (tok.status !== 201) throw new Error(`issuing a token for ${email}: ${tok.status} ${tok.text}`);
      stack.people[email.split('@')[0]] = { email, agentId: agent.json.id, userId: agent.json.owner, token: tok.json.token, tokenId: tok.json.info.id };
    }
  } catch (e) {
    await stack.stop();
    throw e;
  }
  return stack;
}

/** Gateway stack and browser together; if either fails to start, the other is stopped again. */
export async function startAll(opts) {
  const [s, b] = await Promise.allSettled([startStack(opts), launchBrowser()]);
  if (s.status === 'rejected' || b.status === 'rejected') {
    if (s.status === 'fulfilled') await s.value.stop();
    if (b.status === 'fulfilled') await b.value.close();
    throw s.status === 'rejected' ? s.reason : b.reason;
  }
  return { stack: s.value, browser: b.value };
}

const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

export async function launchBrowser() {
  const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
  if (!existsSync(executablePath)) throw new Error(`${executablePath} not found: install Debian's chromium (apt-get install chromium) or set CHROMIUM_PATH`);
  return chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS });
}

/**
 * Follows a page's live channel from the outside: the sessions its WebSocket is subscribed to
 * (the server's `subscribed` answers). Events of a session reach a page only once it is
 * subscribed, so a test that makes something happen in a session another page should show live
 * waits for `subscribedTo` first (waiting for "Live" alone races the subscription under load).
 * Attach before the page navigates.
 */
export function trackLive(page) {
  const live = { subscribed: new Set() };
  page.on('websocket', (ws) =>
    ws.on('framereceived', ({ payload }) => {
      let ev;
      try {
        ev = JSON.parse(String(payload));
      } catch {
        return;
      }
      if (ev && ev.type === 'subscribed' && ev.session) live.subscribed.add(ev.session);
      if (ev && ev.type === 'unsubscribed' && ev.session) live.subscribed.delete(ev.session);
    }),
  );
  return live;
}

/** Waits until the page (tracked with `trackLive`) is subscribed to `session`. */
export function subscribedTo(live, session) {
  return eventually(() => live.subscribed.has(session), { what: `the page to follow session ${session} live` });
}

/**
 * A fresh browser context (own cookies) and page. Collects console errors, page errors and
 * dialogs so tests can assert none happened; `live` tracks its WebSocket subscriptions.
 */
export async function openPage(browser, { viewport = DESKTOP, colorScheme = 'light' } = {}) {
  const context = await browser.newContext({ viewport, colorScheme, isMobile: viewport.width < 500, hasTouch: viewport.width < 500 });
  const page = await context.newPage();
  const problems = { dialogs: [], pageErrors: [], consoleErrors: [], requests: [] };
  page.on('dialog', (d) => {
    problems.dialogs.push(`${d.type()}: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => problems.pageErrors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.consoleErrors.push(m.text());
  });
  page.on('request', (r) => problems.requests.push(r.url()));
  page.setDefaultTimeout(10000);
  const live = trackLive(page);
  return { context, page, problems, live };
}

/** Opens the sign-in link and waits until the app shell is there. */
export async function loginWithLink(page, base, token) {
  await page.goto(`${base}/?token=${encodeURIComponent(token)}`);
  await page.waitForSelector('.shell');
}

export async function shot(page, name) {
  await mkdir(SCREENSHOTS, { recursive: true });
  const vp = page.viewportSize();
  const suffix = vp && vp.width < 500 ? 'phone' : 'desktop';
  // Let animations and fonts settle.
  await page.waitForTimeout(150);
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}-${suffix}.png`) });
}

/** Polls `fn` until it returns a truthy value. */
export async function eventually(fn, { timeoutMs = 10000, what = 'condition' } = {}) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
}

/** Waits until `selector` exists and holds no loading placeholder. */
export async function settled(page, selector) {
  await page.waitForSelector(selector);
  await page.waitForFunction((sel) => {
    const el = document.querySelector(sel);
    return el && !el.querySelector('.loading') && el.childElementCount > 0;
  }, selector);
}
