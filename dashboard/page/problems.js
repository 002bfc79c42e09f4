// The Problems section: each heading says what is below it and how many; a failed file has its own Retry.
import { retryStep } from './api.js';
import { clock } from './clock.js';
import { docLink, duration, h, replace, statusClass, table } from './dom.js';

/** A table of `items`, one row each: `cells(item)` gives the cells (strings or nodes). */
export function grid(headers, items, cells, options = {}) {
  // Nothing to list: one line, not an empty table.
  if (items.length === 0) return h('p', { class: 'muted none' }, options.empty ?? 'none');
  const rows = items.map((item) =>
    h(
      'tr',
      options.rowAttrs?.(item) ?? {},
      cells(item).map((cell) => (cell instanceof Node && cell.tagName === 'TD' ? cell : h('td', {}, cell))),
    ),
  );
  return h('table', { class: options.class ?? 'stack' }, table(headers, rows, options));
}

const num = (value, extra = '') => h('td', { class: `num ${extra}` }, value);

/** `Failed files (4)`: how many of what is below, red when something is wrong, and a few words after it. */
function heading(title, count, words = '', bad = count > 0) {
  return h(
    'h3',
    {},
    `${title} `,
    h('span', { class: bad ? 'n-failed' : 'muted' }, `(${count})`),
    words ? h('span', { class: `small ${bad ? 'late' : 'muted'}` }, ` ${words}`) : '',
  );
}

function retryCell(f, { user, onRetried }) {
  const message = h('span', { class: 'muted small retry-result' });
  const button = h(
    'button',
    {
      type: 'button',
      class: 'primary small-button',
      'data-retry': `${f.doc}:${f.step}`,
      disabled: !user,
      title: user ? `make ${f.step} of ${f.doc} ready again` : 'read-only: log in as an operator to retry',
      onclick: async () => {
        button.disabled = true;
        message.textContent = ' retrying…';
        try {
          const { text } = await retryStep(f.doc, f.step);
          message.textContent = ` ${text}`;
          onRetried?.(`${f.doc}: ${text}`);
        } catch (error) {
          message.textContent = ` ${error.message}`;
          button.disabled = false;
        }
      },
    },
    `Retry ${f.step}`,
  );
  return h('td', { class: 'actions' }, button, message);
}

export function renderProblems(el, snap, ctx) {
  const p = snap.problems;
  const failedTotal = Object.values(snap.totals).reduce((sum, c) => sum + c.failed, 0);
  const replicationBad = p.replication.filter((r) => r.state !== 'running' || r.stalled);
  const stalled = p.replication.filter((r) => r.stalled).length;
  const replicationWords =
    p.replication.length === 0
      ? ''
      : replicationBad.length === 0
        ? 'all running'
        : [
            `${p.replication.length - replicationBad.length} running`,
            stalled ? `${stalled} stalled` : '',
            replicationBad.length - stalled ? `${replicationBad.length - stalled} not running` : '',
          ]
            .filter(Boolean)
            .join(', ');
  replace(
    el,
    heading(
      'Failed files',
      failedTotal,
      failedTotal > p.failed.length ? `the first ${p.failed.length} listed` : 'one row per file, with the servers holding it failed',
    ),
    grid(
      ['document', 'step', 'on', 'reason', 'exit', 'stderr (last lines)', ''],
      p.failed,
      (f) => [
        docLink(f.doc),
        f.step,
        (f.servers ?? [f.server]).join(', '),
        f.reason,
        num(f.exit_code ?? '–'),
        f.stderr_tail ? h('pre', {}, f.stderr_tail) : '',
        retryCell(f, ctx),
      ],
      { empty: 'no failed file', rowAttrs: (f) => ({ 'data-failed': f.doc, 'data-servers': (f.servers ?? [f.server]).join(' ') }) },
    ),
    heading('Stale claims, lease expired', p.stale_claims.length),
    grid(
      ['document', 'step', 'claimed by', 'lease ended', 'age', 'on'],
      p.stale_claims,
      (c) => [docLink(c.doc), c.step, `${c.site}/${c.agent}`, clock(c.lease_until), num(duration(c.lease_age_s)), (c.servers ?? [c.server]).join(', ')],
      { empty: 'no expired claim' },
    ),
    heading('Lost batch jobs', p.lost_jobs.length),
    grid(
      ['document', 'step', 'job', 'reason', 'now'],
      p.lost_jobs,
      (j) => [docLink(j.doc), j.step, `${j.system ?? '?'} ${j.job ?? '(no id)'}`, j.reason, h('td', { class: statusClass(j.status) }, j.status)],
      { empty: 'no lost job' },
    ),
    heading('Replication jobs', p.replication.length, replicationWords, replicationBad.length > 0),
    grid(
      ['from', 'to', 'job on', 'state', 'behind', 'reason'],
      p.replication,
      (r) => [
        r.from,
        r.to,
        r.on,
        h('td', { class: r.state === 'running' && !r.stalled ? 'st-good' : 'late' }, r.stalled ? `${r.state}, stalled` : r.state),
        num(r.behind_s === null || r.behind_s === undefined ? 'unknown' : `${r.to} is ${duration(r.behind_s)} behind`, r.stalled ? 'late' : ''),
        r.reason ?? '',
      ],
      { empty: 'no replication job', rowAttrs: (r) => ({ 'data-replication': `${r.from}>${r.to}` }) },
    ),
    heading(
      'Double claims',
      p.double_claims.detected,
      `${p.double_claims.resolved} resolved; ${p.conflicts} document${p.conflicts === 1 ? '' : 's'} in conflict now`,
    ),
    p.resolutions.length === 0
      ? ''
      : grid(['document', 'server', 'kept', 'duplicates', 'at'], p.resolutions, (r) => [docLink(r.doc), r.server, r.kept, num(r.duplicates), clock(r.at)]),
    heading('Silent agents', p.silent_agents.length),
    grid(['agent', 'host', 'last state', 'silent for'], p.silent_agents, (a) => [`${a.site}/${a.agent}`, a.host, a.state, num(duration(a.age_s), 'late')], {
      empty: 'every agent that has not stopped is beating',
    }),
  );
}
