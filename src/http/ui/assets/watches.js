// Watches: the list (pause / resume / delete), one watch with its runs, and a create form that
// checks what the API checks before sending (the API's own message is shown when it refuses).

import { get, post, api, query } from './api.js';
import { h, put, badge, ago, alertBox, busy, field, select } from './dom.js';

const KINDS = [['ci_failure', 'CI failure'], ['pr_review', 'PR review'], ['schedule', 'schedule']];

function filters(w) {
  return [
    w.workflowName && `workflow ${w.workflowName}`, w.branchName && `branch ${w.branchName}`,
    w.baseBranch && `base ${w.baseBranch}`, w.headBranch && `head ${w.headBranch}`,
    w.schedule && `cron "${w.schedule}" ${w.timezone || ''}`, w.skipDrafts && 'skips drafts',
  ].filter(Boolean).join(' · ');
}

/** Pause / resume / delete, for writers. */
function controls(ctx, w, changed) {
  if (!ctx.canWrite) return null;
  const alert = alertBox();
  const toggle = h('button', { type: 'button', 'data-action': w.status === 'active' ? 'pause' : 'resume' },
    w.status === 'active' ? '‖ Pause' : '▶ Resume');
  toggle.addEventListener('click', () => busy(toggle, alert, async () => {
    await api('PATCH', `/api/watches/${w.id}`, { status: w.status === 'active' ? 'paused' : 'active' });
    changed();
  }));
  const remove = h('button', { type: 'button', class: 'danger', 'data-action': 'delete' }, 'Delete');
  remove.addEventListener('click', () => {
    if (!window.confirm(`Delete watch ${w.id} on ${w.repo}? Its runs stay in the database.`)) return;
    busy(remove, alert, async () => { await api('DELETE', `/api/watches/${w.id}`); changed(true); });
  });
  return h('div', {}, h('div', { class: 'row' }, toggle, remove), alert);
}

function watchCard(ctx, w, changed) {
  return h('article', { class: 'card', 'data-watch': w.id },
    h('div', { class: 'row' }, badge(w.status), h('strong', {}, (KINDS.find(([k]) => k === w.kind) || [0, w.kind])[1]),
      h('a', { href: `/watches/${w.id}`, class: 'mono' }, w.id), h('span', { class: 'mono muted grow' }, w.repo)),
    w.pausedReason ? h('p', { class: 'note' }, `Paused by the daemon: ${w.pausedReason}`) : null,
    h('p', {}, w.instructions),
    h('div', { class: 'hint' }, `${w.agent} · ${w.policyMode}`, filters(w) ? ` · ${filters(w)}` : '', ` · at most ${w.maxRunsPerHour}/h · created `, ago(w.createdAt)),
    controls(ctx, w, changed));
}

/** The create form: required fields, the kind's own fields, the API's limits. */
function createForm(ctx, done) {
  const alert = alertBox();
  const kind = select('kind', KINDS, 'ci_failure');
  const text = (name, placeholder) => h('input', { name, placeholder: placeholder || '', autocomplete: 'off' });
  const repo = text('repo', 'owner/name, a URL or a local path');
  const instructions = h('textarea', { name: 'instructions', placeholder: 'What the agent should do when this fires' });
  const agent = text('agent', ctx.me.defaultAgent);
  // The policies this daemon takes (`ask` needs the native runtime).
  const policy = select('policy', ctx.me.policies, 'observe');
  const workflow = text('workflow', 'any');
  const branch = text('branch', 'any');
  const base = text('base', 'any');
  const head = text('head', 'any');
  const schedule = text('schedule', '0 9 * * 1-5');
  const timezone = text('timezone', 'UTC');
  const rate = h('input', { name: 'maxRunsPerHour', type: 'number', min: 1, max: ctx.me.maxRunsPerHourLimit, placeholder: 'default' });
  const drafts = h('input', { type: 'checkbox', name: 'skipDrafts' });
  const groups = {
    ci_failure: h('div', {}, field('Workflow', workflow), field('Branch', branch)),
    pr_review: h('div', {}, field('Base branch', base), field('Head branch', head), h('label', { class: 'inline' }, drafts, 'Skip draft PRs')),
    schedule: h('div', {}, field('Schedule (cron)', schedule), field('Time zone', timezone)),
  };
  const showKind = () => Object.entries(groups).forEach(([k, g]) => { g.hidden = k !== kind.value; });
  kind.addEventListener('change', showKind);
  showKind();
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create watch');
  const form = h('form', { novalidate: true }, field('Kind', kind), field('Repository', repo), field('Instructions', instructions),
    Object.values(groups), field('Agent', agent), field('Policy', policy, 'Watches act while nobody looks: observe by default.'),
    field('Most runs per hour', rate), submit, alert);
  const problems = () => {
    const out = [];
    if (!repo.value.trim()) out.push('repo is required');
    if (!instructions.value.trim()) out.push('instructions is required');
    if (kind.value === 'schedule' && !schedule.value.trim()) out.push('schedule (a cron expression) is required for a schedule watch');
    const n = rate.value.trim();
    const limit = ctx.me.maxRunsPerHourLimit;
    if (n && !(/^\d+$/.test(n) && Number(n) >= 1 && Number(n) <= limit)) out.push(`maxRunsPerHour must be between 1 and ${limit} (got ${n})`);
    return out;
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const wrong = problems();
    if (wrong.length) { put(alert, wrong.join('\n')); return; }
    const k = kind.value;
    const opt = (input) => input.value.trim() || undefined;
    const body = {
      kind: k, repo: repo.value.trim(), instructions: instructions.value, agent: opt(agent), policy: policy.value,
      maxRunsPerHour: rate.value.trim() ? Number(rate.value) : undefined,
      ...(k === 'ci_failure' ? { workflow: opt(workflow), branch: opt(branch) } : {}),
      ...(k === 'pr_review' ? { base: opt(base), head: opt(head), skipDrafts: drafts.checked || undefined } : {}),
      ...(k === 'schedule' ? { schedule: schedule.value.trim(), timezone: opt(timezone) } : {}),
    };
    busy(submit, alert, async () => { const w = await post('/api/watches', body); done(w); });
  });
  return form;
}

export async function watchesPage(ctx) {
  const params = new URLSearchParams(location.search);
  const list = h('div');
  const create = ctx.canWrite ? h('details', {}, h('summary', {}, '+ New watch')) : null;
  put(ctx.main, h('h1', {}, 'Watches'), create, list);
  const load = async () => {
    const watches = await get(`/api/watches${query({ kind: params.get('kind'), status: params.get('status'), repo: params.get('repo') })}`);
    put(list, watches.length ? watches.map((w) => watchCard(ctx, w, load)) : h('p', { class: 'muted' }, 'No watches yet.'));
  };
  if (create) create.append(createForm(ctx, (w) => ctx.navigate(`/watches/${w.id}`)));
  await load();
}

function runCard(run) {
  return h('article', { class: 'card' },
    h('div', { class: 'row' }, h('strong', {}, `Run ${run.id}`), run.sessionId ? h('a', { href: `/sessions/${run.sessionId}`, class: 'mono' }, run.sessionId) : null,
      h('span', { class: 'muted grow' }, run.eventKey), ago(run.createdAt)),
    h('p', {}, run.triggerSummary),
    run.skippedReason ? h('p', { class: 'note' }, `Skipped: ${run.skippedReason}`) : null,
    run.resultSummary ? h('p', { class: 'headline' }, run.resultSummary) : null,
    run.returnSummary ? h('pre', {}, run.returnSummary) : (!run.skippedReason ? h('p', { class: 'muted' }, 'Running — the summary comes when the session finishes.') : null));
}

export async function watchPage(ctx, id) {
  const top = h('div');
  const runs = h('div');
  put(ctx.main, top, h('h2', {}, 'Runs'), runs);
  const load = async () => {
    const [w, list] = await Promise.all([get(`/api/watches/${id}`), get(`/api/watches/${id}/runs`)]);
    put(top, h('h1', {}, 'Watch ', h('span', { class: 'mono' }, w.id)),
      watchCard(ctx, w, (deleted) => (deleted ? ctx.navigate('/watches') : load())));
    put(runs, list.length ? list.map(runCard) : h('p', { class: 'muted' }, 'No runs yet.'));
  };
  await load();
  ctx.listen((msg) => { if (['done', 'error'].includes(msg.type)) load().catch(() => {}); });
}
