// The new-session form and the login page.

import { post, setCsrf } from './api.js';
import { h, put, alertBox, busy, field, select } from './dom.js';

export async function newSessionPage(ctx) {
  if (!ctx.canWrite) {
    put(ctx.main, h('h1', {}, 'New session'), h('p', { class: 'note' }, 'This login is read-only: it cannot start sessions.'));
    return;
  }
  const alert = alertBox();
  const repo = h('input', { name: 'repo', required: true, autocomplete: 'off', placeholder: '/path/to/repo, owner/name or a git URL' });
  const prompt = h('textarea', { name: 'prompt', required: true, placeholder: 'What should the agent do?' });
  const agent = h('input', { name: 'agent', list: 'agents', autocomplete: 'off', placeholder: ctx.me.defaultAgent });
  const agents = h('datalist', { id: 'agents' }, ctx.me.agents.map((name) => h('option', { value: name })));
  // The policies this daemon takes (`ask` needs the native runtime).
  const policies = ctx.me.policies;
  const policy = select('policy', policies, ctx.me.defaultPolicy);
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Start session');
  const form = h('form', { novalidate: true, 'aria-label': 'New session' },
    field('Repository', repo), field('Prompt', prompt), field('Agent', agent, `Empty: ${ctx.me.defaultAgent}.`), agents,
    field('Policy', policy, 'locked: no permissions, 60 s · observe: reads only · standard: writes in the workspace'
      + (policies.includes('ask') ? ' · ask: a person approves each write' : '')),
    submit, alert);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const missing = [[repo, 'repo'], [prompt, 'prompt']].filter(([input]) => !input.value.trim()).map(([, name]) => `${name} is required`);
    if (missing.length) { put(alert, missing.join('\n')); return; }
    busy(submit, alert, async () => {
      const session = await post('/api/sessions', {
        repo: repo.value.trim(), prompt: prompt.value, agent: agent.value.trim() || undefined, policy: policy.value,
      });
      ctx.navigate(`/sessions/${session.id}`);
    });
  });
  put(ctx.main, h('h1', {}, 'New session'), form);
  repo.focus();
}

export async function loginPage(ctx) {
  const next = new URLSearchParams(location.search).get('next') || '/';
  const target = next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/login') ? next : '/';
  if (await ctx.loggedIn()) { ctx.navigate(target, true); return; }
  const alert = alertBox();
  const token = h('input', { type: 'password', name: 'token', required: true, autocomplete: 'current-password' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Log in');
  const form = h('form', { 'aria-label': 'Log in' }, field('API token', token,
    'A token from TELECODER_API_TOKEN, TELECODER_API_READ_TOKEN or TELECODER_ADMIN_TOKEN. The browser keeps a login cookie, not the token.'),
  submit, alert);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(submit, alert, async () => {
      const login = await post('/ui/login', { token: token.value });
      token.value = '';
      setCsrf(login.csrf);
      await ctx.loggedIn();
      ctx.navigate(target, true);
    });
  });
  put(ctx.main, h('h1', {}, 'Log in'), form);
  token.focus();
}
