// Live data: the feed of every session's activity (/ui/feed) and one session's event stream
// (the API's SSE), drawn as readable rows. Agent output is appended as text nodes.

import { h, put, badge, ago } from './dom.js';

/** Most agent output one page holds; the rest stays a link away (the events API). */
const OUTPUT_LIMIT = 1_000_000;

/**
 * The daemon-wide feed. `listen(fn)` gets `{sessionId, type}` for each event (and
 * `{type: 'resync'}` whenever the page may have missed some); returns an unsubscribe function.
 */
export function feed() {
  const listeners = new Set();
  let source = null;
  const emit = (msg) => listeners.forEach((fn) => fn(msg));
  const open = () => {
    source = new EventSource('/ui/feed');
    source.addEventListener('ready', () => emit({ type: 'resync' }));
    source.addEventListener('lagged', () => emit({ type: 'resync' }));
    source.addEventListener('activity', (e) => {
      try { emit(JSON.parse(e.data)); } catch { /* a frame we cannot read */ }
    });
  };
  return {
    listen(fn) {
      listeners.add(fn);
      if (!source) open();
      return () => listeners.delete(fn);
    },
    close() { if (source) source.close(); source = null; },
  };
}

function parse(data) {
  try { return JSON.parse(data); } catch { return null; }
}

/**
 * Follows one session's events into `list`; `on.finished()` after done/error, `on.changed()`
 * after anything that changes the session record, `on.approval(record, row)` to draw an
 * approval's controls. Returns a function that stops following.
 */
export function follow(sessionId, list, on) {
  const view = new ActivityView(list, on);
  const source = new EventSource(`/api/sessions/${encodeURIComponent(sessionId)}/events`);
  const handle = (type) => (e) => {
    if (!(e instanceof MessageEvent)) return; // the connection's own error: it retries
    view.add(type, e.data, e.lastEventId);
    if (type === 'done' || type === 'error') {
      source.close();
      on.finished();
    } else if (['status', 'approval', 'publish', 'fetch'].includes(type)) {
      on.changed();
    }
  };
  for (const type of ['output', 'status', 'tool', 'plan', 'approval', 'fetch', 'publish', 'done', 'error']) {
    source.addEventListener(type, handle(type));
  }
  source.addEventListener('error', (e) => {
    if (!(e instanceof MessageEvent) && source.readyState === EventSource.CLOSED) {
      view.note('The live stream stopped (the daemon refused it). Reload the page to try again.');
    }
  });
  return () => source.close();
}

const TOOL_SYMBOL = { pending: '○', in_progress: '…', completed: '✓', failed: '✗' };

/** The rows of one session's activity. */
class ActivityView {
  constructor(list, on) {
    this.list = list;
    this.on = on;
    this.output = null; // the <pre> the next output chunk joins
    this.shown = 0;
    this.tools = new Map();
    this.approvals = new Map();
    this.plan = null;
  }

  row(kind, ...children) {
    this.output = null;
    const row = h('div', { class: `ev ${kind}` }, children);
    this.list.append(row);
    return row;
  }

  note(text) { this.row('info', text); }

  add(type, data, id) {
    switch (type) {
      case 'output': return this.text(data, id);
      case 'tool': return this.tool(parse(data), data);
      case 'plan': return this.planRow(parse(data));
      case 'approval': return this.approval(parse(data), data);
      case 'done': return this.row('done', '✓ done', data ? ` — ${data}` : '');
      case 'error': return this.row('error', '✗ error: ', data);
      case 'fetch': return this.row('info', '⇣ fetch: ', data);
      case 'publish': return this.row('info', '⇡ publish: ', data);
      default: return this.row('info', '· ', data);
    }
  }

  text(chunk, id) {
    if (this.shown >= OUTPUT_LIMIT) return;
    let piece = chunk;
    if (this.shown + piece.length > OUTPUT_LIMIT) {
      piece = piece.slice(0, OUTPUT_LIMIT - this.shown);
      this.shown = OUTPUT_LIMIT;
      this.row('info', `Output cut at ${OUTPUT_LIMIT} characters in this page; the full text is at `,
        h('a', { href: `/api/sessions/${this.on.sessionId}/events?after=${Number(id) - 1}` }, 'the events API'), '.');
    } else {
      this.shown += piece.length;
    }
    if (!this.output) {
      this.output = h('pre', { class: 'output' });
      const row = h('div', { class: 'ev output' }, this.output);
      this.list.append(row);
    }
    this.output.append(document.createTextNode(piece));
    if (this.shown >= OUTPUT_LIMIT) this.output = null;
  }

  tool(call, raw) {
    if (!call || typeof call !== 'object') return this.row('tool', '[tool] ', raw);
    const status = call.status || 'pending';
    const paths = (call.locations || []).map((l) => (l && l.path) || '').filter(Boolean);
    const parts = [
      h('strong', {}, '[tool] '), call.title || call.toolCallId || 'tool call',
      call.kind ? h('span', { class: 'muted' }, ` (${call.kind})`) : null,
      ' — ', h('span', { class: `status st-${status === 'failed' ? 'error' : status === 'completed' ? 'complete' : 'running'}` },
        `${TOOL_SYMBOL[status] || '·'} ${status.replace(/_/g, ' ')}`),
      paths.length ? h('div', { class: 'mono muted' }, paths.join(', ')) : null,
    ];
    const known = call.toolCallId && this.tools.get(call.toolCallId);
    if (known) { put(known, parts); return known; }
    const row = this.row('tool', parts);
    if (call.toolCallId) this.tools.set(call.toolCallId, row);
    return row;
  }

  planRow(entries) {
    const items = Array.isArray(entries) ? entries : (entries && entries.entries) || [];
    const body = [h('strong', {}, 'Plan'), h('ol', {}, items.map((entry) => {
      const status = (entry && entry.status) || 'pending';
      return h('li', {}, `${TOOL_SYMBOL[status] || '·'} [${status.replace(/_/g, ' ')}] `, (entry && entry.content) || '');
    }))];
    if (this.plan) { put(this.plan, body); return this.plan; }
    this.plan = this.row('plan plan', body);
    return this.plan;
  }

  approval(record, raw) {
    if (!record || !record.id) return this.row('approval', '[approval] ', raw);
    const known = this.approvals.get(record.id);
    const row = known || this.row('approval');
    this.approvals.set(record.id, row);
    put(row, approvalSummary(record), this.on.approval(record, row));
    return row;
  }
}

/** What an approval asks, as text. */
export function approvalSummary(record) {
  const call = record.toolCall || {};
  const paths = (call.locations || []).map((l) => (l && l.path) || '').filter(Boolean);
  return [
    h('div', { class: 'row' }, h('strong', {}, '[approval] '), call.title || 'permission request',
      call.kind ? h('span', { class: 'muted' }, ` (${call.kind})`) : null, ' — ', badge(record.status)),
    paths.length ? h('div', { class: 'mono muted' }, paths.join(', ')) : null,
    call.rawInput ? h('details', {}, h('summary', {}, 'Input'), h('pre', {}, call.rawInput)) : null,
    h('div', { class: 'hint' }, 'asked ', ago(record.createdAt),
      record.decidedBy ? ` · decided by ${record.decidedBy}` : ''),
  ];
}

