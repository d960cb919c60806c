// Approvals (policy `ask`): what waits for a person, with allow / deny; the list and the count
// in the navigation follow the daemon's feed.

import { get, post, query } from './api.js';
import { h, put, alertBox, busy, select, debounce } from './dom.js';
import { approvalSummary } from './stream.js';

/** Pending approvals the count reads at most (the API's default page). */
export const PENDING_PAGE = 100;

/** `{pending}`: how many approvals wait. */
export async function pendingCount() {
  const pending = await get(`/api/approvals?status=pending&limit=${PENDING_PAGE}`);
  return { pending: Array.isArray(pending) ? pending.length : 0 };
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
    const records = await get(`/api/approvals${query({ status: status === 'all' ? '' : status })}`);
    put(body, records.length ? records.map((r) => h('article', { class: 'card', 'data-approval': r.id }, approvalSummary(r),
      h('div', { class: 'hint' }, 'session ', h('a', { href: `/sessions/${r.sessionId}`, class: 'mono' }, r.sessionId)),
      approvalButtons(ctx, r, () => { reload(); ctx.refreshApprovals(); }, null)))
      : h('p', { class: 'muted' }, status === 'pending' ? 'Nothing waits for you.' : 'None.'));
  };
  const reload = debounce(() => load().catch(() => {}), 300);
  await load();
  ctx.onLeave(reload.cancel);
  ctx.listen((msg) => { if (msg.type === 'approval' || msg.type === 'resync') reload(); });
}
