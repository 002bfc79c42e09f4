// Custody and versions: where the raw files have verified copies (what `mesh purge` may delete at
// the DAQ, and what it deleted), and per versioned step the done records older than the config
// (what `mesh reprocess` would re-make). Hidden when the config has neither.
import { h, replace, table } from './dom.js';

export function bytesWords(bytes) {
  const units = ['bytes', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return unit === 0 ? `${bytes} bytes` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

function copiesWords(copies) {
  if (copies < 0) return 'a copy disagrees: never deleted';
  if (copies === 0) return 'no verified copy';
  return `${copies} agreeing cop${copies === 1 ? 'y' : 'ies'}`;
}

export function renderCustody(section, snap) {
  const custody = snap.custody;
  const older = snap.older_versions;
  section.hidden = !custody && !older;
  if (section.hidden) return;
  const part = (name) => section.querySelector(`[data-part=${name}]`);
  if (!custody) replace(part('custody'));
  else if ('error' in custody) replace(part('custody'), h('p', { class: 'late' }, `${custody.server}: custody not readable (${custody.error})`));
  else {
    const kept = custody.tally.filter((t) => t.state === 'kept').sort((a, b) => b.copies - a.copies);
    const purged = custody.tally.filter((t) => t.state === 'purged');
    const purgedFiles = purged.reduce((n, t) => n + t.files, 0);
    const purgedBytes = purged.reduce((n, t) => n + t.bytes, 0);
    replace(
      part('custody'),
      h(
        'p',
        { class: 'small', 'data-custody': 'purged' },
        `On ${custody.server} (the DAQ's server): ${purgedFiles} file${purgedFiles === 1 ? '' : 's'} deleted by mesh purge (${bytesWords(purgedBytes)} freed).`,
      ),
      h(
        'table',
        { class: 'stack' },
        table(
          ['files still at the DAQ', 'files', 'bytes'],
          kept.map((t) =>
            h(
              'tr',
              { 'data-custody-copies': String(t.copies) },
              h('td', { class: t.copies < 0 ? 'n-failed' : '' }, copiesWords(t.copies)),
              h('td', { class: 'num' }, t.files),
              h('td', { class: 'num' }, bytesWords(t.bytes)),
            ),
          ),
          { numeric: [1, 2], empty: 'no file kept at the DAQ' },
        ),
      ),
    );
  }
  replace(
    part('versions'),
    Object.entries(older ?? {}).map(([step, o]) =>
      h(
        'p',
        { class: `small${o.older > 0 ? ' late' : ''}`, 'data-older-version': step },
        o.older > 0
          ? `${step} is at version ${o.version}: ${o.older} done record${o.older === 1 ? '' : 's'} on ${o.server} made with an older one (mesh reprocess ${step} counts them; --yes re-makes them)`
          : `${step} is at version ${o.version}: every done record on ${o.server} made with it`,
      ),
    ),
  );
}
