// The session list (the API's filters, keyset pages, live through the feed) and the inbox.

import { get, query } from './api.js';
import { h, put, badge, ago, select, debounce } from './dom.js';

const STATUSES = ['', 'active', 'pending', 'running', 'complete', 'error', 'cancelled'];
const POLICIES = ['', 'locked', 'observe', 'standard', 'ask'];
const FILTERS = ['status', 'agent', 'policy', 'parent', 'lineage'];

/** A table of sessions; rows become cards on a phone (each cell names its column). */
export function sessionTable(rows) {
  const cell = (label, ...content) => h('td', { 'data-label': label }, content);
  return h('table', { class: 'sessions' },
    h('thead', {}, h('tr', {}, ['Status', 'Session', 'Repo', 'Agent', 'Policy', 'Age', 'Outcome']
      .map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows.map((s) => h('tr', { 'data-id': s.id },
      cell('Status', badge(s.status), s.awaitingApproval ? h('div', { class: 'waiting' }, '⚑ awaiting approval') : null,
        s.queuePosition ? h('div', { class: 'hint' }, `queue #${s.queuePosition}`) : null),
      h('td', { class: 'text', 'data-label': 'Session' }, h('a', { href: `/sessions/${s.id}`, class: 'mono' }, s.id),
        s.attempt > 1 ? h('span', { class: 'hint' }, ` attempt ${s.attempt}`) : null,
        h('div', { class: 'hint' }, s.prompt)),
      h('td', { class: 'text mono', 'data-label': 'Repo' }, s.repo),
      cell('Agent', s.agent),
      cell('Policy', s.policyMode),
      cell('Age', ago(s.createdAt)),
      h('td', { class: 'text', 'data-label': 'Outcome' }, s.outcomeHeadline)))));
}

function filterForm(ctx, values) {
  const input = (name) => h('input', { name, value: values[name] || '', placeholder: 'any', autocomplete: 'off' });
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter sessions' },
    h('label', {}, 'Status', select('status', STATUSES, values.status || '')),
    h('label', {}, 'Agent', input('agent')),
    h('label', {}, 'Policy', select('policy', POLICIES, values.policy || '')),
    h('label', {}, 'Parent', input('parent')),
    h('label', {}, 'Lineage of', input('lineage')),
    h('button', { type: 'submit' }, 'Filter'),
    h('a', { href: '/', class: 'button' }, 'Clear'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    ctx.navigate(`/${query(data)}`);
  });
  return form;
}

export async function sessionsPage(ctx) {
  const params = Object.fromEntries(new URLSearchParams(location.search));
  const filters = Object.fromEntries(FILTERS.map((k) => [k, params[k] || '']));
  const before = params.before || '';
  const state = h('div', { class: 'live', 'aria-live': 'polite' });
  const body = h('div');
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  put(ctx.main, h('div', { class: 'row' }, h('h1', { class: 'grow' }, 'Sessions'),
    ctx.canWrite ? h('a', { href: '/new', class: 'button' }, '+ New session') : null),
  filterForm(ctx, filters), state, body, pager);

  const load = async () => {
    const page = await get(`/ui/sessions${query({ ...filters, before, limit: 50 })}`);
    put(body, page.sessions.length ? sessionTable(page.sessions)
      : h('p', { class: 'muted' }, before ? 'No older sessions.' : 'No sessions match.'));
    put(pager,
      before ? h('a', { href: `/${query(filters)}` }, '« Newest') : null,
      page.next ? h('a', { href: `/${query({ ...filters, before: page.next })}`, rel: 'next' }, 'Older »') : null);
    put(state, `● live · updated ${new Date().toLocaleTimeString()}`);
  };
  await load().catch((err) => put(body, h('div', { class: 'alert', role: 'alert' }, err.message)));
  const reload = debounce(() => load().catch((err) => put(state, `✗ ${err.message}`)), 500);
  ctx.onLeave(reload.cancel);
  ctx.listen(reload);
}

/** An outcome as a card (the inbox; the session page has the full one). */
function inboxCard(s) {
  return h('article', { class: 'card' },
    h('div', { class: 'row' }, badge(s.status), h('a', { href: `/sessions/${s.id}`, class: 'mono' }, s.id),
      h('span', { class: 'mono muted grow' }, s.repo), ago(s.finishedAt || s.updatedAt)),
    h('p', { class: 'headline' }, s.outcomeHeadline),
    s.outcomeNext ? h('p', {}, h('strong', {}, 'Next: '), s.outcomeNext) : null);
}

export async function inboxPage(ctx) {
  const body = h('div');
  const state = h('div', { class: 'live', 'aria-live': 'polite' });
  put(ctx.main, h('h1', {}, 'Inbox'), h('p', { class: 'muted' }, 'Finished sessions, most recent first.'), state, body);
  const load = async () => {
    const sessions = await get('/api/inbox?limit=50');
    put(body, sessions.length ? sessions.map(inboxCard) : h('p', { class: 'muted' }, 'Nothing has finished yet.'));
    put(state, `● live · updated ${new Date().toLocaleTimeString()}`);
  };
  await load();
  const reload = debounce(() => load().catch((err) => put(state, `✗ ${err.message}`)), 500);
  ctx.onLeave(reload.cancel);
  ctx.listen((msg) => { if (['done', 'error', 'resync'].includes(msg.type)) reload(); });
}
