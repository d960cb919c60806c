// The dashboard: who is asking (/ui/whoami), the navigation with the pending approvals count,
// and a router over the History API. Each page module draws into <main> and registers what
// to stop (streams, timers) when the page changes.

import { get, post, setCsrf, onUnauthorized } from './api.js';
import { h, put, debounce } from './dom.js';
import { feed } from './stream.js';
import { sessionsPage, inboxPage } from './sessions.js';
import { sessionPage } from './session.js';
import { approvalsPage, pendingCount, PENDING_PAGE } from './approvals.js';
import { watchesPage, watchPage } from './watches.js';
import { newSessionPage, loginPage } from './forms.js';
import { adminPage } from './admin.js';

const ROUTES = [
  [/^\/(sessions\/?)?$/, sessionsPage],
  [/^\/sessions\/([0-9a-f]{8})\/?$/, sessionPage],
  [/^\/inbox\/?$/, inboxPage],
  [/^\/approvals\/?$/, approvalsPage],
  [/^\/watches\/?$/, watchesPage],
  [/^\/watches\/([0-9a-f]{8})\/?$/, watchPage],
  [/^\/new\/?$/, newSessionPage],
  [/^\/admin\/?$/, adminPage],
  [/^\/login\/?$/, loginPage],
];

const NAV = [
  ['/', 'Sessions'], ['/inbox', 'Inbox'], ['/approvals', 'Approvals'], ['/watches', 'Watches'],
  ['/new', 'New session'], ['/admin', 'Admin'],
];

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const live = feed();
let me = null; // the answer of /ui/whoami, or null when a login is needed
let approvals = { pending: 0 };
let stops = [];

function navigate(path, replace = false) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  render();
}

async function refreshApprovals() {
  if (!me) return approvals;
  approvals = await pendingCount();
  drawNav();
  return approvals;
}
const refreshApprovalsSoon = debounce(() => refreshApprovals().catch(() => {}), 400);

function drawNav() {
  const here = location.pathname.replace(/\/$/, '') || '/';
  const current = (path) => (path === '/' ? here === '/' || here.startsWith('/sessions') : here.startsWith(path));
  if (!me) { put(nav); return; }
  const links = NAV.filter(([path]) => path !== '/admin' || me.scope === 'admin')
    .filter(([path]) => path !== '/new' || me.scope !== 'read')
    .map(([path, label]) => {
      // The count reads one page of the API (at most PENDING_PAGE).
      const shown = approvals.pending >= PENDING_PAGE ? `${PENDING_PAGE}+` : String(approvals.pending);
      const count = path === '/approvals' && approvals.pending > 0
        ? h('span', { class: 'count', 'aria-label': `${shown} pending` }, shown) : null;
      return h('a', { href: path, 'aria-current': current(path) ? 'page' : null }, label, count);
    });
  const who = me.auth === 'open' ? 'local, no token' : `${me.scope === 'read' ? 'read-only' : me.scope} ${me.auth === 'login' ? 'login' : 'token'}`;
  put(nav, links, h('span', { class: 'who' }, who),
    me.auth === 'login' ? h('button', { type: 'button', id: 'logout', onclick: logout }, 'Log out') : null);
}

async function logout() {
  try { await post('/ui/logout'); } catch { /* logged out either way */ }
  me = null;
  setCsrf(null);
  live.close();
  navigate('/login');
}

const onFeed = (msg) => { if (msg.type === 'approval' || msg.type === 'resync') refreshApprovalsSoon(); };

/** Learns who is asking; once logged in (or open), follows the feed for the approvals count. */
async function begin() {
  await whoami();
  if (!me) return;
  live.listen(onFeed);
  refreshApprovals().catch(() => {});
}

/** What a page gets. */
function context() {
  return {
    me,
    canWrite: me.scope !== 'read',
    canAdmin: me.scope === 'admin',
    navigate,
    /** Stops `fn` (a function) when the page changes. */
    onLeave(fn) { stops.push(fn); },
    /** Subscribes to the daemon-wide feed for as long as the page is shown. */
    listen(fn) { stops.push(live.listen(fn)); },
    /** Re-reads the pending approvals count now. */
    refreshApprovals,
    loggedIn: async () => me,
  };
}

async function whoami() {
  try {
    me = await get('/ui/whoami');
    setCsrf(me.csrf);
  } catch (err) {
    if (err.status !== 401) throw err;
    me = null;
  }
}

async function render() {
  stops.forEach((stop) => { try { stop(); } catch { /* already stopped */ } });
  stops = [];
  const path = location.pathname;
  if (!me && !/^\/login\/?$/.test(path)) {
    navigate(`/login?next=${encodeURIComponent(path + location.search)}`, true);
    return;
  }
  drawNav();
  const [pattern, page] = ROUTES.find(([re]) => re.test(path)) || [];
  if (!page) { put(main, h('h1', {}, 'Not found'), h('p', {}, 'No page here. ', h('a', { href: '/' }, 'Sessions'))); return; }
  const params = path.match(pattern).slice(1);
  // Each page draws into its own element: one still loading when the next page starts draws
  // into a detached element, never over the new page.
  const view = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  put(main, view);
  try {
    const ctx = me ? { ...context(), main: view }
      : { main: view, navigate, loggedIn: async () => { await begin(); drawNav(); return me; } };
    await page(ctx, ...params);
  } catch (err) {
    if (err.status !== 401) {
      put(view, h('h1', {}, 'Something went wrong'), h('div', { class: 'alert', role: 'alert' }, err.message || String(err)));
    }
  }
  if (document.activeElement === document.body) main.focus({ preventScroll: true });
}

document.addEventListener('click', (e) => {
  const a = e.target.closest('a[href]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  if (a.origin !== location.origin || a.target || a.hasAttribute('download')) return;
  if (/^\/(api|assets|ui|admin\/|metrics)/.test(a.pathname)) return;
  e.preventDefault();
  if (a.pathname + a.search !== location.pathname + location.search) navigate(a.pathname + a.search);
});
window.addEventListener('popstate', render);
onUnauthorized(() => {
  if (!me) return;
  me = null;
  live.close();
  navigate(`/login?next=${encodeURIComponent(location.pathname + location.search)}`, true);
});

async function start() {
  try {
    await begin();
  } catch (err) {
    put(main, h('h1', {}, 'The daemon cannot be reached'), h('div', { class: 'alert', role: 'alert' }, err.message));
    return;
  }
  render();
}

start();
