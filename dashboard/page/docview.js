// One document as the page shows it, in words: what each step did, its history with failed
// attempts shown as failures, its copies on every server.
import { clock, when } from './clock.js';
import { h, progressClass, statusClass, table } from './dom.js';

const FIELDS_IN_WORDS = new Set([
  'attempts',
  'uncounted',
  'account',
  'ok',
  'site',
  'agent',
  'host',
  'started',
  'finished',
  'lease_until',
  'retry_after',
  'exit_code',
  'signal',
  'duration_s',
  'file',
  'checksum',
  'stdout',
  'stderr',
  'reason',
  'stderr_tail',
  'batch',
  'batchjob',
  'file_size',
  'date',
  'processname',
  'hostname',
  'past_attempts',
  'run',
]);

/** How a run ended, in words. */
export function endedWords(r) {
  if (r.signal) return `killed by signal ${r.signal}`;
  if (typeof r.exit_code === 'number') return r.exit_code === 0 ? 'exited normally (status 0)' : `exited with status ${r.exit_code}`;
  return undefined;
}

/** A reason that only repeats the exit status ("exited with 4") is not said twice. */
function sameAsEnded(r) {
  return (
    typeof r.reason === 'string' && (r.signal ? r.reason.includes(r.signal) : typeof r.exit_code === 'number' && r.reason === `exited with ${r.exit_code}`)
  );
}

function seconds(value) {
  if (typeof value !== 'number') return undefined;
  return value < 10 ? `${value.toFixed(1)} s` : value < 120 ? `${Math.round(value)} s` : `${(value / 60).toFixed(1)} min`;
}

/** `attempt 2 of 3`; after an operator's retry, `attempt 4 (1 of 3 counted)`. */
function attemptWords(r, limit) {
  if (!r.attempts) return undefined;
  if (!limit) return `attempt ${r.attempts}`;
  return r.uncounted ? `attempt ${r.attempts} (${r.attempts - r.uncounted} of ${limit} counted)` : `attempt ${r.attempts} of ${limit}`;
}

/** What a step is at, in one phrase: the heading of its card. */
function outcome(step, r, doc) {
  if (!r) return { text: 'not run yet', kind: 'none' };
  if (doc[step] && typeof doc[step] === 'object' && doc[step].ok !== false) return { text: 'done', kind: 'ok' };
  if (doc.status === `${step} failed`) return { text: 'failed for good: an operator may retry it', kind: 'failed' };
  if (doc.status === `${step} in progress`) return { text: 'running', kind: 'running' };
  if (doc.status === `${step} queued`) return { text: 'queued (batch job)', kind: 'running' };
  if (r.ok === false && r.retry_after) return { text: `attempt failed, next try at ${clock(r.retry_after)}`, kind: 'failed' };
  if (r.ok === false && r.reason) return { text: `last attempt ended badly (${r.reason}), waiting to run again`, kind: 'failed' };
  return { text: 'ready to run', kind: 'none' };
}

function facts(pairs) {
  return h(
    'dl',
    { class: 'facts' },
    pairs.filter(([, value]) => value !== undefined && value !== null && value !== '').map(([label, value]) => [h('dt', {}, label), h('dd', {}, value)]),
  );
}

function recordCard(step, r, doc, limit) {
  const state = outcome(step, r, doc);
  const head = h('div', { class: 'record-head' }, h('strong', {}, step), ' ', h('span', { class: `outcome o-${state.kind}` }, state.text));
  if (!r) return h('div', { class: 'record', 'data-record': step }, head);
  const output =
    typeof r.file === 'string'
      ? [
          r.file,
          typeof r.file_size === 'number' ? ` (${r.file_size.toLocaleString('en')} bytes)` : '',
          r.checksum?.sha256 ? h('span', { class: 'muted', title: r.checksum.sha256 }, ` sha256 ${r.checksum.sha256.slice(0, 12)}…`) : '',
        ]
      : undefined;
  const others = Object.entries(r).filter(([k]) => !FIELDS_IN_WORDS.has(k));
  const past = Array.isArray(r.past_attempts) ? r.past_attempts : [];
  return h(
    'div',
    { class: `record ${state.kind === 'ok' ? 'ok' : state.kind === 'failed' ? 'failed' : ''}`, 'data-record': step },
    head,
    facts([
      ['attempt', attemptWords(r, limit)],
      ['ran on', r.site && r.agent ? `${r.site}/${r.agent}${r.host ? ` on host ${r.host}` : ''}` : r.hostname],
      ['as account', r.account],
      ['program', r.processname],
      ['started', r.started ? when(r.started) : undefined],
      ['finished', r.finished ? when(r.finished) : r.date ? when(r.date) : undefined],
      ['took', seconds(r.duration_s)],
      ['ended', endedWords(r)],
      ['why', (r.ok === false || doc.status === `${step} failed`) && !sameAsEnded(r) ? r.reason : undefined],
      ['claim held until', doc.status.startsWith(`${step} `) && r.lease_until ? when(r.lease_until) : undefined],
      ['next try', r.retry_after ? when(r.retry_after) : undefined],
      [
        'batch job',
        r.batch
          ? `${r.batch.system} job ${r.batch.id ?? '(not submitted yet)'}${r.batch.submitted ? `, submitted ${clock(r.batch.submitted)}` : ''}`
          : r.batchjob,
      ],
      ['output', output],
      [
        'logs',
        r.stdout || r.stderr
          ? h('span', { class: 'small' }, r.stdout ? `stdout ${r.stdout}` : '', r.stdout && r.stderr ? h('br') : '', r.stderr ? `stderr ${r.stderr}` : '')
          : undefined,
      ],
      ['last lines of stderr', r.stderr_tail ? h('pre', {}, String(r.stderr_tail)) : undefined],
      ...others.map(([k, v]) => [k.replace(/_/g, ' '), typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)]),
    ]),
    past.length === 0
      ? ''
      : h(
          'details',
          { class: 'past' },
          h('summary', {}, `${past.length} earlier attempt${past.length === 1 ? '' : 's'}`),
          h(
            'table',
            { class: 'stack' },
            table(
              ['attempt', 'started', 'how it ended', 'on'],
              [...past]
                .reverse()
                .map((a) =>
                  h(
                    'tr',
                    {},
                    h('td', {}, a.attempt ?? '?'),
                    h('td', {}, a.started ? clock(a.started) : ''),
                    h(
                      'td',
                      { class: a.ok === true ? 'st-good' : 'st-failed' },
                      a.ok === true
                        ? 'done'
                        : ['failed', a.reason ? `: ${a.reason}` : '', endedWords(a) && endedWords(a) !== a.reason ? ` (${endedWords(a)})` : ''],
                    ),
                    h('td', {}, a.site && a.agent ? `${a.site}/${a.agent}` : ''),
                  ),
                ),
            ),
          ),
        ),
  );
}

const CLAIMED = / (queued|in progress)$/;
const READY = new Set(['closed', 'good']);

/** A history entry in words and how to colour it: a failed attempt is a failure, whatever status it led to. */
export function historyWords(e) {
  const step = (e.from ?? '').replace(CLAIMED, '');
  const note = e.note ?? '';
  if (e.from === null || e.from === undefined) return { text: `catalogued (${e.to})`, kind: 'none' };
  if (typeof e.reprocess === 'string') return { text: `${e.reprocess} to be made again${note ? `: ${note}` : ''} (its records superseded)`, kind: 'running' };
  if (e.to === 'bad') return { text: `marked bad${note ? `: ${note}` : ''}`, kind: 'failed' };
  if (e.to.endsWith(' failed')) return { text: `${e.to.slice(0, -7)} failed for good${note ? `: ${note}` : ''}`, kind: 'failed' };
  if (CLAIMED.test(e.from) && READY.has(e.to)) {
    if (/^attempt \d+ failed/.test(note))
      return { text: `${step} ${note.replace(/, retry after (.*)$/, (_, at) => `; next try at ${clock(at)}`)}`, kind: 'failed' };
    if (note === 'released') return { text: `${step} released (the attempt does not count)`, kind: 'none' };
    if (note) return { text: `${step} claim ended: ${note}`, kind: 'failed' };
    return { text: `${step} done`, kind: 'ok' };
  }
  if (e.from.endsWith(' failed') && READY.has(e.to)) return { text: `${e.from.slice(0, -7)} ${note || 'retry requested'}`, kind: 'running' };
  if (e.to.endsWith(' queued')) return { text: `${e.to.slice(0, -7)} claimed, queued for a batch job${note ? ` (${note})` : ''}`, kind: 'running' };
  if (e.to.endsWith(' in progress')) return { text: `${e.to.slice(0, -12)} started${note ? ` (${note})` : ''}`, kind: 'running' };
  return { text: `${e.from} → ${e.to}${note ? ` (${note})` : ''}`, kind: 'none' };
}

/** The verified copies of the raw file (`custody[]`) and its deletion at the DAQ (`purged`). */
function custodyParts(doc) {
  const copies = Array.isArray(doc.custody) ? doc.custody : [];
  const parts = [];
  if (doc.purged && typeof doc.purged === 'object') {
    const p = doc.purged;
    const relied = Array.isArray(p.custody) ? p.custody.map((c) => c.site).join(', ') : '';
    parts.push(
      h(
        'p',
        { class: 'state-line', 'data-purged': p.site ?? '' },
        `Deleted from the DAQ buffer at ${p.site ?? '?'} `,
        when(p.at) || '?',
        ` by ${p.by ?? '?'} (account ${p.user ?? '?'})${relied ? `, relying on the copies at ${relied}` : ''}.`,
      ),
    );
  }
  if (copies.length === 0) return parts;
  const catalogued = doc.checksum?.sha256;
  parts.push(
    h('h3', {}, `Verified copies (${copies.length})`),
    h(
      'table',
      { class: 'stack' },
      table(
        ['site', 'step', 'copy', 'agrees with the DAQ file', 'verified', 'by account'],
        copies.map((c) => {
          const agrees = catalogued !== undefined && c.sha256 === catalogued && c.size_in_bytes === doc.size_in_bytes;
          return h(
            'tr',
            { 'data-custody': c.site },
            h('td', {}, c.site),
            h('td', {}, c.step),
            h('td', { class: 'small' }, c.file ?? ''),
            h(
              'td',
              { class: agrees ? 'st-good' : 'st-failed', title: c.sha256 },
              agrees ? 'yes (sha256 and size)' : `no: sha256 ${String(c.sha256).slice(0, 12)}…, ${c.size_in_bytes} bytes`,
            ),
            h('td', {}, c.verified_at ? clock(c.verified_at) : ''),
            h('td', {}, c.account ?? ''),
          );
        }),
      ),
    ),
  );
  return parts;
}

/** The records `mesh reprocess` replaced, kept whole with who replaced them and why. */
function supersededParts(doc) {
  const superseded = Array.isArray(doc.superseded) ? doc.superseded : [];
  if (superseded.length === 0) return [];
  return [
    h('h3', {}, `Superseded records (${superseded.length}, replaced by a reprocess)`),
    h(
      'table',
      { class: 'stack' },
      table(
        ['step', 'made with version', 'its output', 'replaced', 'by', 'why'],
        superseded.map((s) =>
          h(
            'tr',
            { 'data-superseded': s.step },
            h('td', {}, s.step),
            h('td', {}, s.record?.version ?? '(none)'),
            h('td', { class: 'small', title: s.record?.checksum?.sha256 ?? '' }, s.record?.file ?? ''),
            h('td', {}, s.at ? clock(s.at) : ''),
            h('td', {}, `${s.by ?? ''}${s.user ? ` (${s.user})` : ''}`),
            h('td', {}, s.why ?? ''),
          ),
        ),
      ),
    ),
  ];
}

export function documentBody(view, pipeline) {
  const doc = view.doc;
  const parts = [];
  if (doc) {
    parts.push(
      h('p', { class: `state-line ${progressClass(view.state?.kind)}`, id: 'doc-state' }, view.state?.text ?? ''),
      h(
        'p',
        { class: 'muted' },
        `run ${doc.run_name} · file ${doc.file_number} · ${doc.file} · closed `,
        when(doc.date_closed) || '?',
        `${doc.daq_host ? ` on ${doc.daq_host}` : ''} · read from ${view.read_from}`,
      ),
    );
    // A step's record: at the top level once done (the original scripts' have no ok flag), under pending until then.
    const recordOf = (step) => (doc[step] && typeof doc[step] === 'object' ? { ...doc[step], ok: doc[step].ok ?? true } : doc.pending?.[step]);
    parts.push(
      h('h3', {}, 'Steps'),
      h(
        'div',
        { class: 'records' },
        pipeline.map((p) => recordCard(p.name, recordOf(p.name), doc, p.max_attempts)),
      ),
    );
    const duplicates = Array.isArray(doc.duplicates) ? doc.duplicates : [];
    if (duplicates.length > 0) {
      parts.push(
        h('h3', {}, `Duplicate runs, double claims resolved (${duplicates.length})`),
        h(
          'table',
          { class: 'stack' },
          table(
            ['step', 'ran on', 'started', 'how it ended', 'losing revision'],
            duplicates.map((d) =>
              h(
                'tr',
                {},
                h('td', {}, d.step),
                h('td', {}, `${d.site}/${d.agent}`),
                h('td', {}, d.started ? clock(d.started) : ''),
                h(
                  'td',
                  {},
                  d.result?.ok === true ? 'done' : d.result?.ok === false ? `failed${endedWords(d.result) ? ` (${endedWords(d.result)})` : ''}` : 'unknown',
                ),
                h('td', { class: 'small' }, d.rev),
              ),
            ),
          ),
        ),
      );
    }
    parts.push(...custodyParts(doc), ...supersededParts(doc));
    const history = [...(doc.history ?? [])].reverse();
    parts.push(
      h('h3', {}, `History (${history.length}, newest first)`),
      h(
        'table',
        { class: 'stack history' },
        table(
          ['at', 'what happened', 'by'],
          history.map((e) => {
            const words = historyWords(e);
            return h(
              'tr',
              { 'data-history': words.kind },
              h('td', {}, when(e.at)),
              h('td', {}, h('span', { class: `outcome o-${words.kind}` }, words.text), h('div', { class: 'muted small' }, `${e.from ?? '(new)'} → ${e.to}`)),
              h('td', {}, e.by),
            );
          }),
        ),
      ),
    );
  }
  parts.push(
    h('h3', {}, 'Copies on each server'),
    h(
      'table',
      { class: 'stack' },
      table(
        ['server', 'copy', 'status', 'conflicting revisions', 'revision'],
        view.servers.map((s) =>
          h(
            'tr',
            { 'data-copy': s.site },
            h('td', {}, s.site),
            h('td', { class: s.reachable ? '' : 'late' }, s.reachable ? (s.found ? 'present' : 'absent') : `server unreachable: ${s.error ?? ''}`),
            h('td', { class: statusClass(s.status) }, s.status ?? ''),
            h('td', { class: s.conflicts?.length ? 'late' : '' }, s.conflicts?.length ? s.conflicts.join(' ') : 'none'),
            h('td', { class: 'small', title: (s.revs_info ?? []).map((r) => `${r.rev} ${r.status}`).join('\n') }, s.rev ?? ''),
          ),
        ),
      ),
    ),
  );
  return parts;
}
