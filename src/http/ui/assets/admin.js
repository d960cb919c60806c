// Admin: the daemon's status, key figures and the live actor tree (re-read every 5 s while
// the page is open). Needs the admin scope, like the routes it reads.

import { get } from './api.js';
import { h, put } from './dom.js';

const bytes = (n) => (n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB`
  : `${Math.round((n || 0) / 1024)} KiB`);
const duration = (s) => (s >= 86400 ? `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h` : s >= 3600
  ? `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min` : `${Math.floor(s / 60)} min ${s % 60} s`);

function figures(status) {
  const w = status.workspaces || {};
  const rows = [
    ['Version', status.version], ['Up', duration(status.uptimeSeconds || 0)],
    ['Running sessions', status.runningSessions], ['Queued', status.queueDepth],
    ['Sessions by status', Object.entries(status.sessionsByStatus || {}).map(([k, v]) => `${k} ${v}`).join(' · ') || 'none'],
    ['Active watches', status.activeWatches],
    ['Restarts', `store ${status.storeRestarts} · watches ${status.watchRestarts} · session failures ${status.sessionFailures}`],
    ['Database', `${bytes(status.database && status.database.sizeBytes)} · schema ${status.database && status.database.schemaVersion}`],
    ['Workspaces', `${w.count} (${bytes(w.bytes)}) · archives ${w.archives} (${bytes(w.archiveBytes)}) · mirrors ${w.mirrors} (${bytes(w.mirrorBytes)})`],
  ];
  return h('dl', { class: 'meta' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v ?? '—'))]));
}

function node(actor) {
  const facts = [actor.kind, actor.status, actor.restarts ? `${actor.restarts} restarts` : null,
    actor.mailboxDepth ? `mailbox ${actor.mailboxDepth}` : null,
    actor.messagesHandled != null ? `${actor.messagesHandled} messages` : null].filter(Boolean).join(' · ');
  return h('li', {}, h('span', { class: 'mono' }, actor.name || actor.id), h('span', { class: 'hint' }, ` ${facts}`),
    actor.children && actor.children.length ? h('ul', {}, actor.children.map(node)) : null);
}

export async function adminPage(ctx) {
  if (!ctx.canAdmin) {
    put(ctx.main, h('h1', {}, 'Admin'), h('p', { class: 'note' }, 'This needs the admin token (or the full token when no admin token is set).'));
    return;
  }
  const status = h('section', { class: 'card', 'aria-label': 'Status' });
  const tree = h('section', { class: 'card tree', 'aria-label': 'Actor tree' });
  const stamp = h('div', { class: 'live', 'aria-live': 'polite' });
  put(ctx.main, h('h1', {}, 'Admin'), stamp, h('h2', {}, 'Status'), status, h('h2', {}, 'Actors'), tree,
    h('p', { class: 'hint' }, 'Prometheus metrics: ', h('a', { href: '/metrics' }, '/metrics')));
  const load = async () => {
    const [s, actors] = await Promise.all([get('/admin/status'), get('/admin/actors')]);
    put(status, figures(s));
    put(tree, h('ul', {}, (Array.isArray(actors) ? actors : [actors]).map(node)));
    put(stamp, `● live · updated ${new Date().toLocaleTimeString()}`);
  };
  await load();
  const timer = setInterval(() => load().catch((err) => put(stamp, `✗ ${err.message}`)), 5000);
  ctx.onLeave(() => clearInterval(timer));
}
