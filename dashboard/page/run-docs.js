// The run documents (archive steps, once per run): counts, the runs not done, and late members
// (files catalogued after their run's step started: not in its archive). Hidden without run steps.
import { h, replace, statusClass, table } from './dom.js';

export function renderRunDocuments(section, snap) {
  const runs = snap.run_documents;
  section.hidden = !runs;
  if (!runs) return;
  const c = runs.counts;
  const late = new Map(runs.late.map((l) => [l.run_name, l.late_members]));
  const rows = [
    ...runs.runs,
    ...runs.late
      .filter((l) => !runs.runs.some((r) => r.run_name === l.run_name))
      .map((l) => ({ run_name: l.run_name, state: 'done', status: 'good', members: null, late_members: l.late_members })),
  ];
  replace(
    section.querySelector('[data-part=counts]'),
    `${c.done} done, ${c.todo} to do, ${c.open} open, ${c.bad} bad (from ${runs.counts_from ?? 'no server'})`,
  );
  replace(
    section.querySelector('[data-part=table]'),
    table(
      ['run', 'state', 'status', 'members', 'late members'],
      rows.map((r) =>
        h(
          'tr',
          { 'data-run-doc': r.run_name },
          h('td', {}, r.run_name),
          h('td', {}, r.state),
          h('td', { class: statusClass(r.status) }, r.state === 'open' ? 'open (not closed yet)' : r.status),
          h('td', { class: 'num' }, r.members ?? ''),
          h('td', { class: `num${late.get(r.run_name) ? ' n-failed' : ''}` }, late.get(r.run_name) ?? 0),
        ),
      ),
      { numeric: [3, 4], empty: 'every run archived, none late' },
    ),
  );
}
