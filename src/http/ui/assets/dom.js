// Building the page. Everything that came from an agent, a repository, a PR or the API is
// inserted as text (text nodes, textContent, setAttribute): never parsed as markup. Links get
// only same-origin paths or http(s) URLs.

/** An element: h('a', {href: '/x', class: 'y', onclick: fn}, 'text', child, [more]). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value == null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'href') el.setAttribute('href', safeHref(value));
    else if (key === 'value') el.value = value;
    else if (key === 'checked') el.checked = !!value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  add(el, children);
  return el;
}

/** Appends children (nodes, or anything else as text). */
export function add(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replaces an element's children. */
export function put(el, ...children) {
  el.replaceChildren();
  return add(el, children);
}

/** A link target that cannot run script: a local path, or an http(s) URL. */
export function safeHref(value) {
  const text = String(value);
  if (text.startsWith('/') && !text.startsWith('//')) return text;
  try {
    const url = new URL(text);
    if (url.protocol === 'http:' || url.protocol === 'https:') return url.href;
  } catch { /* not a URL */ }
  return '#';
}

const SYMBOLS = {
  pending: '○', running: '●', complete: '✓', error: '✗', cancelled: '⊘',
  active: '●', paused: '‖', allowed: '✓', denied: '✗', expired: '⌛',
  completed: '✓', in_progress: '…', failed: '✗',
};

/** A state as a symbol and a word (readable without colour), coloured as a bonus. */
export function badge(state) {
  const word = String(state || 'unknown');
  return h('span', { class: `status st-${word.replace(/[^a-z_]/g, '')}` },
    `${SYMBOLS[word] || '·'} ${word.replace(/_/g, ' ')}`);
}

/** "3 min ago", with the exact time as a tooltip. */
export function ago(stamp) {
  if (!stamp) return h('span', { class: 'muted' }, '—');
  const then = Date.parse(stamp);
  if (Number.isNaN(then)) return h('span', {}, stamp);
  const s = Math.max(0, Math.round((Date.now() - then) / 1000));
  const text = s < 60 ? `${s} s ago` : s < 3600 ? `${Math.floor(s / 60)} min ago`
    : s < 86400 ? `${Math.floor(s / 3600)} h ago` : `${Math.floor(s / 86400)} d ago`;
  return h('time', { datetime: stamp, title: stamp }, text);
}

/** A region where an action's failure is shown (the API's own message). */
export function alertBox() {
  return h('div', { class: 'alert', role: 'alert', 'aria-live': 'assertive' });
}

/** Runs `work` with `button` disabled; shows a failure's message in `alert`. */
export async function busy(button, alert, work) {
  if (alert) put(alert);
  if (button) button.disabled = true;
  try {
    return await work();
  } catch (err) {
    if (alert) put(alert, err.message || String(err));
    else throw err;
  } finally {
    if (button) button.disabled = false;
  }
}

/** A labelled form field. */
export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), control,
    hint ? h('div', { class: 'hint' }, hint) : null);
}

/** A select of `options` ([value, label] or value). */
export function select(name, options, value) {
  return h('select', { name }, options.map((o) => {
    const [v, label] = Array.isArray(o) ? o : [o, o || 'any'];
    return h('option', { value: v, selected: v === value }, label);
  }));
}

/** Calls `fn` at most once per `ms`, with the latest arguments. */
export function debounce(fn, ms) {
  let timer = null;
  const run = () => { timer = null; fn(); };
  const call = () => { if (!timer) timer = setTimeout(run, ms); };
  call.cancel = () => { clearTimeout(timer); timer = null; };
  return call;
}
