// Approvals (policy `ask`): what waits for a person, with allow / deny. A daemon without the
// approvals API (404) gets a note instead of the page, and no count in the navigation.

import { get, post, query } from './api.js';
import { h, put, add, alertBox, busy, select, debounce } from './dom.js';
import { approvalSummary } from './stream.js';

/** Pending approvals the count reads at most (the API's default page). */
export const PENDING_PAGE = 100;

/** `{available, pending}`: whether the daemon has approvals, and how many wait. */
export async function pendingCount() {
  try {
    const pending = await get(`/api/approvals?status=pending&limit=${PENDING_PAGE}`);
    return { available: true, pending: Array.isArray(pending) ? pending.length : 0 };
  } catch (err) {
    if (err.status === 404) return { available: false, pending: 0 };
    throw err;
  }
}

/** Allow / deny controls for a pending approval (nothing when decided or read-only). */
export function approvalButtons(ctx, record, decided, row) {
  if (record.status !== 'pending' || !ctx.canWrite) return null;
  const alert = alertBox();
  const remember = h('input', { type: 'checkbox', name: 'remember' });
  const answer = (decision) => {
    const b = h('button', { type: 'button', class: decision === 'allow' ? 'primary' : 'danger', 'data-decision': decision },
      decision === 'allow' ? '✓ Approve' : '✗ Deny');
    b.addEventListener('click', () => busy(b, alert, async () => {
      const updated = await post(`/api/approvals/${record.id}`, { decision, remember: remember.checked });
      if (row) put(row, approvalSummary(updated));
      decided(updated);
    }));
    return b;
  };
  const always = (record.options || []).some((o) => /always/.test((o && (o.kind || o.optionId)) || ''));
  return h('div', {}, h('div', { class: 'row' }, answer('allow'), answer('deny'),
    always ? h('label', { class: 'inline' }, remember, 'remember for this session') : null), alert);
}

const STATUSES = [['pending', 'pending'], ['allowed', 'allowed'], ['denied', 'denied'], ['expired', 'expired'], ['', 'all']];

export async function approvalsPage(ctx) {
  const status = new URLSearchParams(location.search).get('status') ?? 'pending';
  const body = h('div');
  const picker = select('status', STATUSES, status);
  picker.setAttribute('aria-label', 'Show approvals that are');
  picker.addEventListener('change', () => ctx.navigate(`/approvals${query({ status: picker.value || 'all' })}`));
  put(ctx.main, h('div', { class: 'row' }, h('h1', { class: 'grow' }, 'Approvals'), picker), body);
  const load = async () => {
    let records;
    try {
      records = await get(`/api/approvals${query({ status: status === 'all' ? '' : status })}`);
    } catch (err) {
      if (err.status !== 404) throw err;
      put(body, h('p', { class: 'note' }, 'This daemon has no approvals API: it predates policy "ask", so no session ever waits for a person here.'));
      return false;
    }
    put(body, records.length ? records.map((r) => {
      const card = h('article', { class: 'card', 'data-approval': r.id });
      add(card, approvalSummary(r), h('div', { class: 'hint' }, 'session ', h('a', { href: `/sessions/${r.sessionId}`, class: 'mono' }, r.sessionId)),
        approvalButtons(ctx, r, () => { reload(); ctx.refreshApprovals(); }, null));
      return card;
    }) : h('p', { class: 'muted' }, status === 'pending' ? 'Nothing waits for you.' : 'None.'));
    return true;
  };
  const reload = debounce(() => load().catch(() => {}), 300);
  if (await load()) {
    ctx.onLeave(reload.cancel);
    ctx.listen((msg) => { if (msg.type === 'approval' || msg.type === 'resync') reload(); });
  }
}
