// One session: its record, the actions its state allows (decided by the daemon for this
// caller), the outcome, the live activity, the diff and the lineage.

import { get, post, api } from './api.js';
import { h, put, badge, ago, alertBox, busy, field, debounce } from './dom.js';
import { follow } from './stream.js';
import { sessionTable } from './sessions.js';
import { approvalButtons } from './approvals.js';

/** Most diff text one page shows. */
const DIFF_LIMIT = 500_000;

function meta(s) {
  const rows = [
    ['Repo', h('span', { class: 'mono' }, s.repo)],
    ['Agent', s.agent],
    ['Policy', `${s.policyMode} (${s.effectivePermissionMode}, workspace ${s.workspaceWritePolicy})`],
    ['Attempt', String(s.attempt)],
    s.parentSessionId ? [s.continuedFrom ? 'Continues' : 'Rerun of', h('a', { href: `/sessions/${s.parentSessionId}`, class: 'mono' }, s.parentSessionId)] : null,
    s.branch ? ['Branch', h('span', { class: 'mono' }, s.branch)] : null,
    s.workspaceState ? ['Workspace', s.workspaceState] : null,
    ['Created', ago(s.createdAt)],
    s.startedAt ? ['Started', ago(s.startedAt)] : null,
    s.finishedAt ? ['Finished', ago(s.finishedAt)] : null,
    s.queuePosition ? ['Queue', `#${s.queuePosition}`] : null,
    s.pullRequestUrl ? ['Pull request', h('a', { href: s.pullRequestUrl, rel: 'noopener noreferrer', target: '_blank' }, `#${s.pullRequestNumber}`)] : null,
    s.fetchedAt ? ['Fetched', ago(s.fetchedAt)] : null,
    s.tokenUsage && s.tokenUsage.totalTokens ? ['Tokens', String(s.tokenUsage.totalTokens)] : null,
  ].filter(Boolean);
  return h('dl', { class: 'meta' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function outcome(s) {
  if (!['complete', 'error', 'cancelled'].includes(s.status)) return null;
  const part = (title, text) => (text ? [h('h3', {}, title), h('p', {}, text)] : null);
  return h('section', { class: 'card outcome', 'aria-label': 'Outcome' },
    h('div', { class: 'row' }, badge(s.status), s.failureKind ? h('span', { class: 'muted' }, s.failureKind.replace(/_/g, ' ')) : null),
    h('p', { class: 'headline' }, s.outcomeHeadline),
    part('Changed', s.outcomeChanged), part('Verified', s.outcomeVerified),
    part('Uncertain', s.outcomeUncertain), part('Next', s.outcomeNext),
    s.error && s.status !== 'complete' ? part('Error', s.error) : null);
}

/** The action buttons and forms the daemon allows for this session and caller. */
function actions(ctx, s, allowed, reload) {
  const alert = alertBox();
  const done = h('div', { class: 'ok-note', role: 'status', hidden: true });
  const say = (...text) => { put(done, text); done.hidden = false; };
  const button = (label, cls, run) => {
    const b = h('button', { type: 'button', class: cls, 'data-action': label.toLowerCase() }, label);
    b.addEventListener('click', () => busy(b, alert, run));
    return b;
  };
  const buttons = [];
  const forms = [];
  if (allowed.cancel) buttons.push(button('Cancel', 'danger', async () => { await post(`/api/sessions/${s.id}/cancel`); reload(); }));
  if (allowed.rerun) buttons.push(button('Rerun', '', async () => {
    const next = await post(`/api/sessions/${s.id}/rerun`);
    ctx.navigate(`/sessions/${next.id}`);
  }));
  if (allowed.fetch) buttons.push(button('Fetch', '', async () => {
    const f = await api('POST', `/api/sessions/${s.id}/fetch`);
    say(f.updated ? `Fetched ${f.branch} into ${f.repo} at ${String(f.commit).slice(0, 12)}.` : `${f.branch} in ${f.repo} is already up to date.`);
    reload();
  }));
  if (allowed.publish) forms.push(publishForm(s, alert, say, reload));
  if (allowed.continue) forms.push(continueForm(ctx, s, alert));
  if (!buttons.length && !forms.length) return null;
  return h('section', { class: 'card', 'aria-label': 'Actions' }, h('div', { class: 'row' }, buttons), forms, alert, done);
}

function publishForm(s, alert, say, reload) {
  const base = h('input', { name: 'base', value: 'main', required: true });
  const title = h('input', { name: 'title', placeholder: 'from the outcome' });
  const body = h('textarea', { name: 'body', placeholder: 'from the outcome', rows: 3 });
  const submit = h('button', { type: 'submit' }, 'Publish');
  const form = h('form', {}, field('Base branch', base), field('Title', title), field('Body', body), submit);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(submit, alert, async () => {
      const pr = await post(`/api/sessions/${s.id}/publish`, { base: base.value.trim(), title: title.value || undefined, body: body.value || undefined });
      say('Published as ', h('a', { href: pr.pullRequestUrl, rel: 'noopener noreferrer', target: '_blank' }, `pull request #${pr.pullRequestNumber}`), '.');
      reload();
    });
  });
  return h('details', {}, h('summary', {}, 'Publish as a pull request'), form);
}

function continueForm(ctx, s, alert) {
  const prompt = h('textarea', { name: 'prompt', required: true, placeholder: 'What should the agent do next, in the same workspace?' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Continue');
  // The page checks the prompt itself and says so in its alert (no browser bubble).
  const form = h('form', { novalidate: true, 'aria-label': 'Continue this session' }, field('Continue with', prompt), submit);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!prompt.value.trim()) { put(alert, 'prompt is required'); return; }
    busy(submit, alert, async () => {
      const next = await post(`/api/sessions/${s.id}/continue`, { prompt: prompt.value });
      ctx.navigate(`/sessions/${next.id}`);
    });
  });
  return form;
}

function diffView(text) {
  const shown = text.length > DIFF_LIMIT ? text.slice(0, DIFF_LIMIT) : text;
  const pre = h('pre', { class: 'diff' });
  for (const line of shown.split('\n')) {
    const cls = line.startsWith('+') && !line.startsWith('+++') ? 'add'
      : line.startsWith('-') && !line.startsWith('---') ? 'del' : line.startsWith('@@') ? 'hunk' : null;
    pre.append(cls ? h('span', { class: cls }, line) : `${line}\n`);
  }
  return [pre, text.length > DIFF_LIMIT ? h('p', { class: 'note' }, 'Diff cut in this page; the whole patch is at ',
    h('a', { href: location.pathname.replace(/^\/sessions/, '/api/sessions') + '/diff' }, 'the diff API'), '.') : null];
}

function diffSection(s) {
  const body = h('div');
  const show = h('button', { type: 'button' }, 'Show diff');
  show.addEventListener('click', () => busy(show, body, async () => {
    const diff = await api('GET', `/api/sessions/${s.id}/diff`, undefined, 'application/json');
    const files = (diff.files || []).map((f) => h('li', { class: 'mono' }, `${f.status}: ${f.path} (+${f.additions} −${f.deletions})`));
    put(body, files.length ? h('ul', {}, files) : h('p', { class: 'muted' }, 'No changes.'), diff.patch ? diffView(diff.patch) : null);
    show.hidden = true;
  }));
  return h('section', { 'aria-label': 'Diff' }, h('h2', {}, 'Diff'), show, body);
}

async function lineageSection(s) {
  const family = await get(`/api/sessions/${s.id}/lineage`);
  if (family.length < 2) return null;
  const table = sessionTable(family);
  const mine = table.querySelector(`tr[data-id="${s.id}"]`);
  if (mine) mine.setAttribute('aria-current', 'true');
  return h('section', { 'aria-label': 'Lineage' }, h('h2', {}, 'Lineage and turns'), table);
}

export async function sessionPage(ctx, id) {
  let shown = await get(`/ui/sessions/${id}`);
  const head = h('div');
  const body = h('div');
  const list = h('div', { class: 'stream', 'aria-live': 'off' });
  const lineage = h('div');
  put(ctx.main, head, body,
    h('details', {}, h('summary', {}, 'Prompt'), h('pre', {}, shown.session.prompt)),
    h('section', { 'aria-label': 'Activity' }, h('h2', {}, 'Activity'), list),
    h('div', { id: 'diff' }), lineage);

  // The actions card is rebuilt only when what it offers changes: a redraw for a later event
  // must not wipe what the person is typing (a continue prompt, a PR title) or the alert
  // they are reading.
  const actionsBox = h('div');
  const outcomeBox = h('div');
  put(body, actionsBox, outcomeBox);
  let offered = null;
  const draw = () => {
    const s = shown.session;
    put(head, h('div', { class: 'row' }, h('h1', { class: 'grow' }, 'Session ', h('span', { class: 'mono' }, s.id)), h('div', { id: 'session-status' }, badge(s.status))),
      s.awaitingApproval ? h('p', { class: 'waiting', role: 'status' }, '⚑ Waiting for an approval below') : null,
      h('section', { class: 'card' }, meta(s)));
    const offer = JSON.stringify(shown.actions);
    if (offer !== offered) {
      offered = offer;
      put(actionsBox, actions(ctx, s, shown.actions, reload));
    }
    put(outcomeBox, outcome(s));
    const diff = ctx.main.querySelector('#diff');
    if (shown.actions.diff && !diff.firstChild) put(diff, diffSection(s));
  };
  const reload = debounce(async () => {
    try { shown = await get(`/ui/sessions/${id}`); draw(); } catch { /* keep what is shown */ }
  }, 250);
  ctx.onLeave(reload.cancel);
  draw();
  const stop = follow(id, list, {
    sessionId: id,
    finished: () => { reload(); lineageSection(shown.session).then((l) => put(lineage, l)).catch(() => {}); },
    changed: reload,
    approval: (record, row) => approvalButtons(ctx, record, () => { reload(); ctx.refreshApprovals(); }, row),
  });
  ctx.onLeave(stop);
  lineageSection(shown.session).then((l) => put(lineage, l)).catch(() => {});
  ctx.listen((msg) => { if (msg.sessionId === id || msg.type === 'resync') reload(); });
}
