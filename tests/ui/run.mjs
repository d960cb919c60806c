// Browser scenarios for the dashboard, run by tests/it/dashboard.rs against a real daemon:
//
//   UI_URL=http://127.0.0.1:PORT UI_ARGS='{"...":...}' UI_SHOTS=dir node tests/ui/run.mjs SCENARIO
//
// Drives Debian's chromium through playwright-core (pinned in package.json; it never downloads
// a browser): headless, a fresh user-data directory per run, no network beyond the daemon.
// Prints `RESULT <json>` on success; any failure exits non-zero with the reason. The Rust test
// gives the profile directory (UI_PROFILE), starts this in its own process group and, however
// the test ends, kills that group and every process naming the profile, so no browser outlives
// a failed test. Every wait is bounded (WAIT); nothing sleeps.

import { createRequire } from 'node:module';
import { createServer } from 'node:http';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

export const CHROMIUM = process.env.UI_CHROMIUM || '/usr/bin/chromium';
const URL_BASE = process.env.UI_URL;
const ARGS = JSON.parse(process.env.UI_ARGS || '{}');
const SHOTS = process.env.UI_SHOTS || 'target/ui-screenshots';
/** Bounded waits: generous, because the suite runs on a busy 2-core machine. */
const WAIT = 30_000;

const scenarios = {};

/** Opens the dashboard in a fresh profile; `pageErrors` fail the scenario at the end. */
async function withBrowser(run) {
  const own = !process.env.UI_PROFILE;
  const profile = process.env.UI_PROFILE || mkdtempSync(join(tmpdir(), 'telecoder-ui-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--no-first-run', '--disable-sync', '--disable-dev-shm-usage'],
    viewport: { width: 1280, height: 900 },
  });
  context.setDefaultTimeout(WAIT);
  const problems = [];
  const dialogs = [];
  context.on('page', (page) => watch(page, problems, dialogs));
  const page = context.pages()[0] || await context.newPage();
  watch(page, problems, dialogs);
  try {
    const result = await run({ context, page, dialogs });
    assert.deepEqual(problems, [], `the page reported errors: ${problems.join('; ')}`);
    return result;
  } catch (err) {
    // What each tab showed when the scenario failed, for the test's failure message.
    for (const open of context.pages()) {
      const shown = await open.evaluate(() => document.body.outerHTML).catch((e) => `(unreadable: ${e.message})`);
      console.error(`--- ${open.url()} (problems: ${problems.join('; ') || 'none'})\n${shown.slice(0, 6000)}`);
    }
    throw err;
  } finally {
    await context.close().catch(() => {});
    if (own) rmSync(profile, { recursive: true, force: true });
  }
}

function watch(page, problems, dialogs) {
  if (page.__watched) return;
  page.__watched = true;
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('dialog', async (dialog) => {
    dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    if (dialog.type() === 'confirm') await dialog.accept();
    else await dialog.dismiss();
  });
}

const go = (page, path) => page.goto(`${URL_BASE}${path}`, { waitUntil: 'domcontentloaded' });
const main = (page) => page.locator('main');

/** Two animation frames: the layout for the new viewport has been painted. */
const settled = (page) => page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));

async function shoot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  const shots = [];
  for (const [width, label] of [[375, 'phone'], [1280, 'desktop']]) {
    await page.setViewportSize({ width, height: width === 375 ? 812 : 900 });
    await settled(page);
    const path = join(SHOTS, `${name}-${label}.png`);
    await page.screenshot({ path, fullPage: true });
    shots.push(path);
  }
  await page.setViewportSize({ width: 1280, height: 900 });
  return shots;
}

/** The form creates a session; its output arrives on the open page while it runs. */
scenarios.create = async () => withBrowser(async ({ page }) => {
  await go(page, '/new');
  await page.getByLabel('Repository').fill(ARGS.repo);
  await page.getByLabel('Prompt').fill(ARGS.prompt);
  await page.getByRole('button', { name: 'Start session' }).click();
  await page.waitForURL(/\/sessions\/[0-9a-f]{8}$/);
  const id = page.url().split('/').pop();
  const output = page.locator('.ev.output pre');
  // Live: an early chunk is on the page while the last one is not, then the last one comes,
  // all without a reload.
  await output.filter({ hasText: 'chunk 1' }).first().waitFor();
  const early = await main(page).textContent();
  const beforeDone = !early.includes(ARGS.last) && (await page.locator('.ev.done').count()) === 0;
  const navigations = [];
  page.on('framenavigated', (frame) => { if (frame === page.mainFrame()) navigations.push(frame.url()); });
  await page.locator('.ev.done').waitFor();
  await page.locator('main .outcome').waitFor();
  const late = await main(page).textContent();
  assert.ok(beforeDone, 'an early chunk was shown before the session finished');
  assert.ok(late.includes(ARGS.last), 'the last chunk arrived on the same page');
  assert.deepEqual(navigations, [], 'no reload while the output arrived');
  await go(page, '/');
  await page.locator(`main tr[data-id="${id}"]`).waitFor();
  return { id };
});

/** The session page with tool calls and an outcome, at phone and desktop width. */
scenarios.screenshots = async () => withBrowser(async ({ page }) => {
  await go(page, `/sessions/${ARGS.id}`);
  await page.locator('.ev.done').waitFor();
  await page.locator('.ev.tool').first().waitFor();
  await page.locator('main .outcome').waitFor();
  const shots = await shoot(page, 'session');
  // Keyboard: every action is reachable with Tab.
  const reached = [];
  for (let i = 0; i < 40; i += 1) {
    await page.keyboard.press('Tab');
    reached.push(await page.evaluate(() => (document.activeElement && document.activeElement.textContent || '').trim()));
  }
  assert.ok(reached.includes('Rerun'), `Rerun is reachable with the keyboard (reached ${reached.join(' | ')})`);
  return { shots };
});

/** Cancel from the session page stops a running agent. */
scenarios.cancel = async () => withBrowser(async ({ page }) => {
  await go(page, `/sessions/${ARGS.id}`);
  await page.locator('.ev.output pre', { hasText: 'hanging' }).waitFor();
  await page.locator('button[data-action="cancel"]').click();
  await page.locator('#session-status', { hasText: 'cancelled' }).waitFor();
  assert.equal(await page.locator('button[data-action="cancel"]').count(), 0, 'no cancel button once cancelled');
  await page.locator('button[data-action="rerun"]').waitFor();
  return {};
});

/** Pause from the watch list; the create form refuses what the API refuses. */
scenarios.watch = async () => withBrowser(async ({ page }) => {
  await go(page, '/watches');
  const card = page.locator(`[data-watch="${ARGS.id}"]`);
  await card.locator('button[data-action="pause"]').click();
  await card.locator('.status', { hasText: 'paused' }).waitFor();
  await card.locator('button[data-action="resume"]').waitFor();
  // The create form: client-side checks first, then the API's own message.
  await page.getByText('+ New watch').click();
  await page.getByLabel('Repository').fill(ARGS.repo);
  await page.getByRole('button', { name: 'Create watch' }).click();
  await page.locator('main .alert', { hasText: 'instructions is required' }).waitFor();
  await page.getByLabel('Instructions').fill('look at the failure');
  await page.getByLabel('Kind').selectOption('schedule');
  await page.getByLabel('Schedule (cron)').fill('not a cron line');
  await page.getByRole('button', { name: 'Create watch' }).click();
  const refused = page.locator('main form .alert');
  await refused.filter({ hasText: /\S/ }).waitFor();
  const message = (await refused.textContent()).trim();
  assert.ok(!/instructions is required/.test(message), `the API's own refusal is shown: ${message}`);
  return { message };
});

async function login(page, token) {
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Log in' }).click();
}

/** Log in with a token, use it, log out. */
scenarios.login = async () => withBrowser(async ({ page, context }) => {
  await go(page, '/');
  await page.waitForURL(/\/login\?next=/);
  await login(page, 'not-the-token-0123456789');
  await page.locator('main .alert', { hasText: 'invalid token' }).waitFor();
  await login(page, ARGS.token);
  await page.waitForURL(`${URL_BASE}/`);
  await page.locator('main h1', { hasText: 'Sessions' }).waitFor();
  const cookies = await context.cookies();
  const cookie = cookies.find((c) => c.name === 'telecoder_login');
  assert.ok(cookie, 'a login cookie was set');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Strict');
  assert.notEqual(cookie.value, ARGS.token, 'the cookie is not the token');
  assert.ok(!cookie.value.includes(ARGS.token));
  assert.equal(await page.evaluate(() => document.cookie), '', 'scripts cannot read the login');
  // A write through the login (CSRF token sent by the page).
  await go(page, '/new');
  await page.getByLabel('Repository').fill(ARGS.repo);
  await page.getByLabel('Prompt').fill('@mock say logged in');
  await page.getByRole('button', { name: 'Start session' }).click();
  await page.waitForURL(/\/sessions\/[0-9a-f]{8}$/);
  const created = page.url().split('/').pop();
  await page.locator('.ev.done').waitFor();
  await page.locator('#logout').click();
  await page.waitForURL(/\/login/);
  await go(page, `/sessions/${created}`);
  await page.waitForURL(/\/login\?next=/);
  return { cookie: cookie.value, created };
});

/** A read-only login shows no action anywhere, and the API refuses the actions anyway. */
scenarios.readonly = async () => withBrowser(async ({ page }) => {
  await go(page, '/login');
  await login(page, ARGS.token);
  await page.waitForURL(`${URL_BASE}/`);
  await page.locator(`main tr[data-id="${ARGS.finished}"]`).waitFor();
  const nav = await page.locator('#nav').textContent();
  assert.ok(nav.includes('read-only'), 'the page says it is read-only');
  assert.ok(!nav.includes('New session'), 'no New session link');
  for (const id of [ARGS.finished, ARGS.running]) {
    await go(page, `/sessions/${id}`);
    await page.locator('.ev').first().waitFor();
    await page.locator('main .card dl').waitFor();
    if (id === ARGS.running) await page.locator('.ev.approval', { hasText: 'pending' }).waitFor();
    assert.equal(await page.locator('main [data-action], main form, main [data-decision]').count(), 0, `no actions on ${id}`);
  }
  await go(page, '/approvals');
  await page.locator(`[data-approval="${ARGS.approval}"]`).waitFor();
  assert.equal(await page.locator('main [data-decision]').count(), 0, 'no allow/deny for a read-only login');
  await go(page, '/watches');
  await page.locator(`[data-watch="${ARGS.watch}"]`).waitFor();
  assert.equal(await page.locator('main button, main form').count(), 0, 'no watch controls');
  // What a page script could still try: the API refuses it.
  const statuses = await page.evaluate(async ({ finished, running, watch, approval }) => {
    const who = await (await fetch('/ui/whoami')).json();
    const send = async (method, path, body) => (await fetch(path, {
      method, headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': who.csrf },
      body: body && JSON.stringify(body),
    })).status;
    return {
      rerun: await send('POST', `/api/sessions/${finished}/rerun`),
      cancel: await send('POST', `/api/sessions/${running}/cancel`),
      create: await send('POST', '/api/sessions', { repo: '/tmp', prompt: 'x' }),
      pause: await send('PATCH', `/api/watches/${watch}`, { status: 'paused' }),
      approve: await send('POST', `/api/approvals/${approval}`, { decision: 'allow' }),
      continue: await send('POST', `/api/sessions/${finished}/continue`, { prompt: 'x' }),
    };
  }, ARGS);
  return { statuses };
});

/** Markup from an agent, a PR title and a prompt is shown as text and never runs. */
scenarios.xss = async () => withBrowser(async ({ page, dialogs }) => {
  const response = await go(page, `/sessions/${ARGS.session}`);
  const csp = response.headers()['content-security-policy'] || '';
  assert.ok(csp.includes("script-src 'self'") && !csp.includes('unsafe-inline'), `CSP: ${csp}`);
  await page.locator('.ev.done').waitFor();
  const seen = {};
  for (const [path, marker] of Object.entries(ARGS.markers)) {
    await go(page, path);
    await page.locator('main h1').waitFor();
    await page.waitForFunction((text) => document.querySelector('main').textContent.includes(text), marker);
    seen[path] = {
      shownAsText: (await main(page).textContent()).includes(marker),
      elements: await page.locator('main img, main script, main iframe, main b, main [onerror]').count(),
      pwned: await page.evaluate(() => window.__pwned ?? null),
    };
  }
  return { seen, dialogs };
});

/**
 * Cross-site request forgery from a real page on another origin (another port of 127.0.0.1:
 * the same *site*, so even a SameSite=Strict cookie is sent). The browser is logged in to the
 * daemon at UI_URL; the page attacks it and the open daemon at ARGS.open with what a page can
 * send without CORS: a text/plain form (a top-level POST), a no-cors fetch with credentials,
 * and a JSON fetch (preflighted). Returns the status of each request that reached a daemon.
 */
scenarios.crosssite = async () => withBrowser(async ({ page }) => {
  await go(page, '/login');
  await login(page, ARGS.token);
  await page.waitForURL(`${URL_BASE}/`);
  const before = await page.evaluate(async () => (await fetch('/ui/whoami')).json());
  assert.equal(before.auth, 'login', 'the browser holds a live login the attack could ride on');
  const body = JSON.stringify({ repo: ARGS.repo, prompt: '@mock say forged' });
  // `name=value` of a text/plain form: `{"repo":…,"pad":"` + `=` + `"}` is valid JSON.
  const [name, value] = [`${body.slice(0, -1)},"pad":"`, '"}'];
  const evil = createServer((req, res) => {
    const target = new URL(req.url, 'http://x').searchParams.get('target') || '';
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>evil</title>
<form id="f" method="POST" enctype="text/plain" action="${target}/api/sessions"><input id="i" type="hidden"></form>
<form id="out" method="POST" enctype="text/plain" action="${target}/ui/logout"><input name="x" value="y"></form>`);
  });
  await new Promise((ready) => evil.listen(0, '127.0.0.1', ready));
  const evilBase = `http://127.0.0.1:${evil.address().port}`;
  const reached = [];
  const looked = [];
  const onResponse = (response) => {
    const url = response.url();
    const request = response.request();
    if (request.method() !== 'GET' && !url.startsWith(evilBase)) {
      const entry = { attack: request.__attack, method: request.method(), url, status: response.status() };
      reached.push(entry);
      // Whether the browser sent the login along (it does: same site), so the daemon's own
      // checks, not the browser, refused the request.
      looked.push(request.allHeaders().then((headers) => { entry.withLogin = /telecoder_login=/.test(headers.cookie || ''); }));
    }
  };
  page.on('response', onResponse);
  let attack = '';
  page.on('request', (request) => { request.__attack = attack; });
  try {
    for (const target of [URL_BASE, ARGS.open]) {
      await page.goto(`${evilBase}/?target=${encodeURIComponent(target)}`);
      await page.evaluate(([n, v]) => { const i = document.getElementById('i'); i.name = n; i.value = v; }, [name, value]);
      attack = 'text/plain form';
      await Promise.all([page.waitForURL(`${target}/api/sessions`), page.evaluate(() => document.getElementById('f').submit())]);
      await page.goto(`${evilBase}/?target=${encodeURIComponent(target)}`);
      attack = 'logout form';
      await Promise.all([page.waitForURL(`${target}/ui/logout`), page.evaluate(() => document.getElementById('out').submit())]);
      await page.goto(`${evilBase}/?target=${encodeURIComponent(target)}`);
      attack = 'no-cors fetch';
      const sent = page.waitForResponse((r) => r.url() === `${target}/api/sessions` && r.request().method() === 'POST');
      await page.evaluate(([url, b]) => fetch(url, { method: 'POST', mode: 'no-cors', credentials: 'include', headers: { 'Content-Type': 'text/plain' }, body: b }).catch(() => null), [`${target}/api/sessions`, body]);
      await sent;
      attack = 'JSON fetch';
      const blocked = await page.evaluate(([url, b]) => fetch(url, { method: 'POST', credentials: 'include', headers: { 'Content-Type': 'application/json' }, body: b })
        .then((r) => `read ${r.status}`, (e) => `blocked: ${e.message}`), [`${target}/api/sessions`, body]);
      reached.push({ attack, url: target, readable: blocked });
    }
  } finally {
    page.off('response', onResponse);
    evil.close();
  }
  await Promise.all(looked);
  // Still logged in: the forged logout did nothing either.
  await go(page, '/');
  const after = await page.evaluate(async () => (await fetch('/ui/whoami')).json());
  return { reached, after: after.auth };
});

/** The number the navigation shows beside Approvals ('' when none wait). */
const pendingShown = (page) => page.locator('#nav a[href="/approvals"] .count').textContent({ timeout: 1000 }).catch(() => '');

async function startSession(page, prompt, policy) {
  await go(page, '/new');
  await page.getByLabel('Repository').fill(ARGS.repo);
  await page.getByLabel('Prompt').fill(prompt);
  await page.getByLabel('Policy').selectOption(policy);
  await page.getByRole('button', { name: 'Start session' }).click();
  await page.waitForURL(/\/sessions\/[0-9a-f]{8}$/);
  return page.url().split('/').pop();
}

/**
 * Policy `ask`, logged in with a token: two sessions started from the form (a second tab) wait
 * for a person. On the Approvals page (open before they exist) both cards and the count arrive
 * without a reload; one is denied there, the other approved on its session page, and both
 * pages follow.
 */
scenarios.approve = async () => withBrowser(async ({ context, page }) => {
  await go(page, '/login');
  await login(page, ARGS.token);
  await page.waitForURL(`${URL_BASE}/`);
  await go(page, '/approvals');
  await main(page).getByText('Nothing waits for you.').waitFor();
  const tab = await context.newPage();
  const allowed = await startSession(tab, ARGS.allowPrompt, 'ask');
  await tab.locator('.ev.approval [data-decision="allow"]').waitFor();
  await tab.locator('[role="status"]', { hasText: 'Waiting for an approval' }).waitFor();
  const denied = await startSession(tab, ARGS.denyPrompt, 'ask');
  await tab.locator('.ev.approval [data-decision="deny"]').waitFor();
  // The list that was open all along shows both, and the count says 2.
  const cards = page.locator('main [data-approval]');
  await page.waitForFunction(() => document.querySelectorAll('main [data-approval]').length === 2);
  await page.locator('#nav a[href="/approvals"] .count', { hasText: '2' }).waitFor();
  const navigations = [];
  page.on('framenavigated', (frame) => { if (frame === page.mainFrame()) navigations.push(frame.url()); });
  // Deny one from the list.
  const card = cards.filter({ has: page.locator(`a[href="/sessions/${denied}"]`) });
  await card.locator('[data-decision="deny"]').click();
  await page.waitForFunction(() => document.querySelectorAll('main [data-approval]').length === 1);
  await page.locator('#nav a[href="/approvals"] .count', { hasText: '1' }).waitFor();
  // Its session page (the other tab) shows the answer and the agent going on without it.
  await tab.locator('.ev.approval .status', { hasText: 'denied' }).waitFor();
  await tab.locator('.ev.done, .ev.error').first().waitFor();
  const deniedText = await main(tab).textContent();
  // Approve the other on its own page; the list empties and the count goes.
  await go(tab, `/sessions/${allowed}`);
  await tab.locator('.ev.approval [data-decision="allow"]').click();
  await tab.locator('.ev.approval .status', { hasText: 'allowed' }).waitFor();
  await tab.locator('.ev.done').waitFor();
  await tab.locator('main .outcome').waitFor();
  assert.equal(await tab.locator('.ev.approval [data-decision]').count(), 0, 'no buttons once answered');
  assert.equal(await tab.locator('[role="status"]', { hasText: 'Waiting for an approval' }).count(), 0);
  await main(page).getByText('Nothing waits for you.').waitFor();
  await page.waitForFunction(() => !document.querySelector('#nav a[href="/approvals"] .count'));
  assert.deepEqual(navigations, [], 'the Approvals page followed without a reload');
  return {
    allowed, denied, deniedText, allowedText: await main(tab).textContent(), count: await pendingShown(page),
  };
});

/**
 * Continue a finished session from its page: the box is there, the next turn starts and its
 * output arrives live, the lineage lists both turns, and the first turn offers no second
 * continuation. A running session shows no box.
 */
scenarios.continue = async () => withBrowser(async ({ page }) => {
  await go(page, `/sessions/${ARGS.running}`);
  await page.locator('.ev.output pre', { hasText: 'hanging' }).waitFor();
  await page.locator('button[data-action="cancel"]').waitFor();
  assert.equal(await page.getByLabel('Continue with').count(), 0, 'no continue box while running');
  await go(page, `/sessions/${ARGS.id}`);
  await page.locator('.ev.done').waitFor();
  const box = page.getByLabel('Continue with');
  // An empty prompt is refused on the page.
  const submit = page.getByRole('button', { name: 'Continue', exact: true });
  await submit.click();
  await page.locator('main .alert', { hasText: 'prompt is required' }).waitFor();
  await box.fill(ARGS.prompt);
  await submit.click();
  await page.waitForURL((url) => /\/sessions\/[0-9a-f]{8}$/.test(url.pathname) && !url.pathname.endsWith(ARGS.id));
  const next = page.url().split('/').pop();
  await page.locator('main dd a', { hasText: ARGS.id }).waitFor();
  await page.locator('.ev.output pre', { hasText: ARGS.expect }).waitFor();
  await page.locator('.ev.done').waitFor();
  await page.locator(`main section[aria-label="Lineage"] tr[data-id="${ARGS.id}"]`).waitFor();
  await page.locator(`main section[aria-label="Lineage"] tr[data-id="${next}"]`).waitFor();
  // The first turn was continued: its page offers no second continuation.
  await go(page, `/sessions/${ARGS.id}`);
  await page.locator('.ev.done').waitFor();
  await page.locator('main section[aria-label="Actions"]').waitFor();
  assert.equal(await page.getByLabel('Continue with').count(), 0, 'a continued turn cannot be continued again');
  return { next };
});

/** A scenario that never finishes (tests/it/dashboard.rs checks that its browser is killed). */
scenarios.hang = async () => withBrowser(async ({ page }) => {
  await go(page, '/');
  await page.locator('main h1').waitFor();
  console.log('UP');
  await new Promise(() => {});
});

const name = process.argv[2];
// The test keeps our stdin open while it runs: EOF means it died, so close the browser and go.
process.stdin.on('end', () => { console.error('the test went away'); process.exit(4); });
process.stdin.resume();
const timer = setTimeout(() => { console.error(`scenario ${name} timed out`); process.exit(3); }, 240_000);
try {
  if (!scenarios[name]) throw new Error(`unknown scenario ${name}`);
  const result = await scenarios[name]();
  console.log(`RESULT ${JSON.stringify(result)}`);
  clearTimeout(timer);
  process.exit(0);
} catch (err) {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
}
