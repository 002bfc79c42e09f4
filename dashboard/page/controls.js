// Operator controls: each step (running or paused, who, why, since; Pause/Resume; Retry all its
// failed files, the count shown before confirming) and each site (taking claims or drained).
import { retryFailed, setControl } from './api.js';
import { clock } from './clock.js';
import { h, replace } from './dom.js';

const held = (mark) => `since ${clock(mark.since)} by ${mark.by}${mark.user ? ` (${mark.user})` : ''}: ${mark.why}`;

/** Asks why (the browser's own prompt); null when the operator cancels or gives none. */
function askWhy(question) {
  const why = window.prompt(`${question}\nWhy? (kept with your name and the time)`);
  return why && why.trim() ? why.trim() : null;
}

function actionButton(label, attrs, ctx, act) {
  const button = h(
    'button',
    {
      type: 'button',
      class: 'small-button',
      disabled: !ctx.user,
      title: ctx.user ? label : 'read-only: log in as an operator',
      ...attrs,
      onclick: async () => {
        button.disabled = true;
        try {
          const text = await act();
          if (text) ctx.onDone?.(text);
        } catch (error) {
          ctx.onDone?.(`${label}: ${error.message}`);
        } finally {
          button.disabled = !ctx.user;
        }
      },
    },
    label,
  );
  return button;
}

function control(action, target, ctx) {
  return actionButton(`${action[0].toUpperCase()}${action.slice(1)} ${target}`, { 'data-control': `${action}:${target}` }, ctx, async () => {
    const why = askWhy(`${action} ${target}?`);
    if (!why) return null;
    const r = await setControl(action, target, why);
    return `${target}: ${r.changed ? `${action} recorded` : 'already so, nothing written'} on ${r.server}`;
  });
}

function retryAll(step, failed, ctx) {
  return actionButton(`Retry failed ${step}`, { 'data-retry-failed': step, disabled: !ctx.user || failed === 0 }, ctx, async () => {
    const dry = await retryFailed(step, { dryRun: true });
    if (dry.matched === 0) return `no failed ${step} document to retry`;
    const why = askWhy(`retry ${dry.matched} failed ${step} documents?`);
    if (!why) return null;
    const r = await retryFailed(step, { dryRun: false, why });
    return `retried ${r.retried} of ${r.matched} failed ${step} documents${r.moved_on ? ` (${r.moved_on} had moved on)` : ''}${r.errors.length ? `; ${r.errors.length} errors: ${r.errors[0].error}` : ''}`;
  });
}

export function renderControls(el, snap, ctx) {
  const paused = new Map(snap.controls.paused.map((m) => [m.target, m]));
  const drained = new Map(snap.controls.drained.map((m) => [m.target, m]));
  const sites = [...new Set(snap.pipeline.map((s) => s.site))];
  const count = paused.size + drained.size;
  replace(
    el,
    h('h3', {}, 'Operator controls ', h('span', { class: count > 0 ? 'late' : 'muted' }, `(${paused.size} paused, ${drained.size} drained)`)),
    h(
      'table',
      { class: 'stack', id: 'control-steps' },
      h('tr', {}, h('th', {}, 'step'), h('th', {}, 'claims'), h('th', {}, '')),
      snap.pipeline.map((s) => {
        const mark = paused.get(s.name);
        const failed = snap.totals[s.name]?.failed ?? 0;
        return h(
          'tr',
          { 'data-step-control': s.name, 'data-paused': mark ? 'yes' : 'no' },
          h('td', {}, s.name),
          h('td', { class: mark ? 'late' : 'muted' }, mark ? `paused ${held(mark)}` : 'claimed as usual'),
          h('td', { class: 'actions' }, control(mark ? 'resume' : 'pause', s.name, ctx), ' ', retryAll(s.name, failed, ctx)),
        );
      }),
    ),
    h(
      'table',
      { class: 'stack', id: 'control-sites' },
      h('tr', {}, h('th', {}, 'site'), h('th', {}, 'claims'), h('th', {}, '')),
      sites.map((site) => {
        const mark = drained.get(site);
        return h(
          'tr',
          { 'data-site-control': site, 'data-drained': mark ? 'yes' : 'no' },
          h('td', {}, site),
          h('td', { class: mark ? 'late' : 'muted' }, mark ? `drained ${held(mark)}` : 'takes new claims'),
          h('td', { class: 'actions' }, control(mark ? 'undrain' : 'drain', site, ctx)),
        );
      }),
    ),
  );
}
