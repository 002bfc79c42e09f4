// The live status page: one WebSocket for snapshots, a few JSON calls for the rest. No reload, ever.
import { completedChart, latencyBars, STEP_COLOURS } from './charts.js';
import { duration, h, replace, statusClass, table } from './dom.js';

const $ = (id) => document.getElementById(id);
// `retried`: the answer to this page's last retry, kept so the live re-render of that document does not hide it.
const state = { snapshot: null, doc: null, user: null, windowS: 3600, flow: null, retried: null };
const COUNTS = ['done', 'ready', 'queued', 'in_progress', 'failed'];

// ---- server calls -------------------------------------------------------------------------
async function api(path, options = {}) {
  const init = { method: options.method ?? 'GET', credentials: 'same-origin', headers: {} };
  if (options.body !== undefined) {
    init.body = JSON.stringify(options.body);
    init.headers['Content-Type'] = 'application/json';
  }
  // The dashboard refuses state changes without this header (cross-site requests cannot set it).
  if (init.method !== 'GET') init.headers['X-Mesh-Dashboard'] = '1';
  const res = await fetch(path, init);
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.reason ?? `${res.status} ${res.statusText}`);
  return body;
}

// ---- live connection, reconnecting with backoff ---------------------------------------------
let attempts = 0;
function connect() {
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/live`);
  setConnection('connecting', 'connecting…');
  ws.addEventListener('open', () => {
    attempts = 0;
    setConnection('live', 'live');
  });
  ws.addEventListener('message', (event) => {
    const message = JSON.parse(event.data);
    if (message.type === 'snapshot') onSnapshot(message.snapshot);
  });
  ws.addEventListener('close', () => {
    attempts += 1;
    const delay = Math.min(15000, 500 * 2 ** Math.min(attempts, 6)) * (0.7 + Math.random() * 0.6);
    setConnection('offline', `disconnected, retrying in ${Math.round(delay / 1000)} s`);
    setTimeout(connect, delay);
  });
}

function setConnection(kind, text) {
  const el = $('connection');
  el.dataset.state = kind;
  el.className = `pill ${kind === 'live' ? 'pill-ok' : kind === 'offline' ? 'pill-bad' : 'pill-wait'}`;
  el.textContent = text;
}

function onSnapshot(snapshot) {
  state.snapshot = snapshot;
  render();
  if (state.windowS !== 3600) void loadFlow();
  if (state.doc) void openDocument(state.doc.id, { quiet: true });
}

// ---- overview -------------------------------------------------------------------------------
function docLink(id, text = id) {
  return h('a', { href: `#doc=${encodeURIComponent(id)}`, 'data-doc': id }, text);
}

function render() {
  const snap = state.snapshot;
  if (!snap) return;
  $('database').textContent = `· ${snap.database}`;
  $('generated').textContent = `updated ${new Date(snap.generated).toLocaleTimeString()}`;
  renderAlerts(snap.alerts ?? []);
  replace(
    $('servers'),
    snap.servers.map((s) =>
      h(
        'div',
        { class: `card${s.reachable ? '' : ' down'}`, 'data-server': s.site },
        h('strong', {}, s.site),
        ' ',
        h('span', { class: `pill ${s.reachable ? 'pill-ok' : 'pill-bad'}` }, s.reachable ? 'reachable' : s.not_authorised ? 'not authorised' : 'unreachable'),
        h('div', { class: 'muted small' }, s.url),
        s.reachable
          ? h('div', {}, `${s.doc_count} documents`, s.conflicts ? h('span', { class: 'n-failed' }, ` · ${s.conflicts} conflicts`) : '')
          : h('div', { class: 'small late' }, s.error ?? ''),
      ),
    ),
  );
  renderSteps(snap);
  replace(
    $('runs'),
    table(
      ['DAQ host', 'run', 'files', 'latest file', 'state'],
      snap.runs.map((r) =>
        h(
          'tr',
          {},
          h('td', {}, r.daq_host),
          h('td', {}, h('a', { onclick: () => jumpToRun(r.run) }, r.run)),
          h('td', { class: 'num' }, r.files),
          h('td', { class: 'num' }, r.latest ? docLink(r.latest.doc, r.latest_file) : r.latest_file),
          h('td', { class: statusClass(r.latest?.status) }, r.latest?.status ?? '?'),
        ),
      ),
      { numeric: [2, 3], empty: 'no files catalogued yet' },
    ),
  );
  renderFlow(state.windowS === 3600 ? snap.flow : (state.flow ?? snap.flow), snap.flow_error);
  renderProblems(snap);
  replace(
    $('in-flight'),
    table(
      ['in flight', 'step', 'server', 'by', 'attempt', 'for'],
      snap.in_flight.map((f) =>
        h(
          'tr',
          {},
          h('td', {}, docLink(f.doc)),
          h('td', {}, f.step),
          h('td', {}, f.server),
          h('td', {}, `${f.site}/${f.agent}`),
          h('td', { class: 'num' }, f.attempts),
          h('td', { class: 'num' }, duration(f.lease_age_s)),
        ),
      ),
      { numeric: [4, 5], empty: 'nothing running' },
    ),
  );
  replace(
    $('agents'),
    table(
      ['agent', 'host', 'state', 'last seen'],
      snap.agents.map((a) =>
        h('tr', {}, h('td', {}, `${a.site}/${a.agent}`), h('td', {}, a.host), h('td', {}, a.state), h('td', { class: 'num' }, `${duration(a.age_s)} ago`)),
      ),
      { numeric: [3], empty: 'no agent has reported' },
    ),
  );
}

function renderAlerts(alerts) {
  $('alerts').hidden = alerts.length === 0;
  replace(
    $('alerts'),
    h('h2', {}, `Alerts (${alerts.length})`),
    h(
      'ul',
      {},
      alerts.map((a) =>
        h(
          'li',
          { 'data-alert': a.kind, 'data-key': a.key },
          h('strong', {}, a.kind),
          ' ',
          a.message,
          h('span', { class: 'muted' }, ` since ${new Date(a.since).toLocaleString()}`),
          a.action ? h('div', { class: 'small', 'data-action': '' }, `What to do: ${a.action}`) : '',
        ),
      ),
    ),
  );
}

function countCells(c) {
  return COUNTS.map((k) => h('td', { class: `num${k === 'failed' && c?.[k] > 0 ? ' n-failed' : ''}`, 'data-count': k }, c?.[k] ?? 0));
}

function renderSteps(snap) {
  const rows = [];
  for (const step of snap.steps) {
    rows.push(h('tr', { class: 'total', 'data-step': step }, h('td', {}, step), h('td', {}, 'all servers'), countCells(snap.totals[step])));
    for (const s of snap.servers) {
      rows.push(
        h(
          'tr',
          { class: 'sub', 'data-step': step, 'data-server': s.site },
          h('td', {}, ''),
          h('td', {}, s.site),
          s.reachable ? countCells(s.steps[step]) : h('td', { colspan: 5, class: 'late' }, s.not_authorised ? 'not authorised' : 'unreachable'),
        ),
      );
    }
  }
  replace($('steps'), table(['step', 'server', 'done', 'ready', 'queued', 'in progress', 'failed'], rows, { numeric: [2, 3, 4, 5, 6] }));
}

function renderFlow(flow, error) {
  const steps = state.snapshot.steps;
  if (!flow) {
    replace($('flow-chart'), h('p', { class: 'muted' }, error ? `flow unavailable: ${error}` : 'no flow data'));
    replace($('latency'), []);
    return;
  }
  replace(
    $('flow-chart'),
    completedChart(flow.completed ?? {}, steps),
    h(
      'div',
      { class: 'legend' },
      steps.map((step, i) => h('span', {}, h('span', { class: 'swatch', style: `background:${STEP_COLOURS[i % STEP_COLOURS.length]}` }), step)),
    ),
  );
  const bar = latencyBars(flow.latency ?? []);
  replace(
    $('latency'),
    table(
      ['stage', 'from', 'p50', 'p95', 'since DAQ close p50', 'p95', 'target', 'files', '', 'late files'],
      (flow.latency ?? []).map((l) =>
        h(
          'tr',
          {},
          h('td', {}, l.stage),
          h('td', { class: 'muted' }, l.from),
          h('td', { class: 'num' }, duration(l.p50_s)),
          h('td', { class: 'num' }, duration(l.p95_s)),
          h('td', { class: 'num' }, duration(l.close_p50_s ?? null)),
          h(
            'td',
            { class: `num${l.target_s !== null && l.close_p95_s != null && l.close_p95_s > l.target_s ? ' late' : ''}` },
            duration(l.close_p95_s ?? null),
          ),
          h('td', { class: 'num' }, l.target_s === null ? '–' : duration(l.target_s)),
          h('td', { class: 'num' }, l.count),
          h('td', {}, bar(l)),
          h(
            'td',
            {},
            l.late.length === 0
              ? h('span', { class: 'muted' }, 'none')
              : l.late
                  .slice(0, 10)
                  .map((f) =>
                    h('div', { class: 'late' }, docLink(f.doc, `${f.run} #${f.file}`), ` ${duration(f.latency_s)}${f.done ? '' : ' (still running)'}`),
                  ),
          ),
        ),
      ),
      { numeric: [2, 3, 4, 5, 6, 7], empty: 'no stage timed in this window' },
    ),
  );
}

/** A table of `items`, one row each: `cells(item)` gives the cells (strings or nodes). */
function grid(headers, items, cells, options = {}) {
  const rows = items.map((item) =>
    h(
      'tr',
      options.rowAttrs?.(item) ?? {},
      cells(item).map((cell) => (cell instanceof Node && cell.tagName === 'TD' ? cell : h('td', {}, cell))),
    ),
  );
  return h('table', {}, table(headers, rows, options));
}

function renderProblems(snap) {
  const p = snap.problems;
  const section = (title, count, content) => [h('h3', {}, `${title} `, h('span', { class: count > 0 ? 'n-failed' : 'muted' }, `(${count})`)), content];
  const num = (value, extra = '') => h('td', { class: `num ${extra}` }, value);
  replace(
    $('problems'),
    section(
      'Failed documents',
      p.failed.length,
      grid(
        ['document', 'step', 'server', 'reason', 'exit', 'stderr (tail)'],
        p.failed,
        (f) => [docLink(f.doc), f.step, f.server, f.reason, num(f.exit_code ?? '–'), f.stderr_tail ? h('pre', {}, f.stderr_tail) : ''],
        { empty: 'no failed document', rowAttrs: (f) => ({ 'data-failed': f.doc }) },
      ),
    ),
    section(
      'Stale claims (lease expired)',
      p.stale_claims.length,
      grid(['document', 'step', 'claimed by', 'lease until', 'age'], p.stale_claims, (c) => [
        docLink(c.doc),
        c.step,
        `${c.site}/${c.agent}`,
        c.lease_until,
        num(duration(c.lease_age_s)),
      ]),
    ),
    section(
      'Lost batch jobs',
      p.lost_jobs.length,
      grid(['document', 'step', 'job', 'reason', 'now'], p.lost_jobs, (j) => [
        docLink(j.doc),
        j.step,
        `${j.system ?? '?'} ${j.job ?? '(no id)'}`,
        j.reason,
        h('td', { class: statusClass(j.status) }, j.status),
      ]),
    ),
    section(
      'Replication not running or stalled',
      p.replication.filter((r) => r.state !== 'running' || r.stalled).length,
      grid(
        ['from', 'to', 'job on', 'state', 'behind', 'reason'],
        p.replication,
        (r) => [
          r.from,
          r.to,
          r.on,
          h('td', { class: r.state === 'running' ? 'st-good' : 'late' }, r.state),
          num(r.behind_s === null || r.behind_s === undefined ? '?' : `${r.to} is ${duration(r.behind_s)} behind`, r.stalled ? 'late' : ''),
          r.reason ?? '',
        ],
        { empty: 'no replication job', rowAttrs: (r) => ({ 'data-replication': `${r.from}>${r.to}` }) },
      ),
    ),
    section('Double claims', p.double_claims.detected, [
      h('p', {}, `${p.double_claims.detected} detected, ${p.double_claims.resolved} resolved; ${p.conflicts} documents in conflict now`),
      p.resolutions.length === 0
        ? ''
        : grid(['document', 'server', 'kept', 'duplicates', 'at'], p.resolutions, (r) => [docLink(r.doc), r.server, r.kept, num(r.duplicates), r.at]),
    ]),
    section(
      'Silent agents',
      p.silent_agents.length,
      grid(['agent', 'host', 'last state', 'silent for'], p.silent_agents, (a) => [`${a.site}/${a.agent}`, a.host, a.state, num(duration(a.age_s), 'late')], {
        empty: 'every agent that has not stopped is beating',
      }),
    ),
  );
}

async function loadFlow() {
  try {
    state.flow = (await api(`/api/flow?window=${state.windowS}`)).flow;
    renderFlow(state.flow, undefined);
  } catch (error) {
    renderFlow(null, error.message);
  }
}

// ---- one document ---------------------------------------------------------------------------
async function openDocument(id, { quiet = false } = {}) {
  let view;
  try {
    view = await api(`/api/doc?id=${encodeURIComponent(id)}`);
  } catch (error) {
    if (!quiet) showDocError(id, error.message);
    return;
  }
  state.doc = view;
  const panel = $('document');
  panel.hidden = false;
  $('doc-title').textContent = view.id;
  const status = view.doc?.status ?? 'not found';
  $('doc-status').textContent = status;
  $('doc-status').className = statusClass(status);
  for (const button of panel.querySelectorAll('[data-nav]')) button.disabled = !view.nav[button.dataset.nav];
  renderActions(view);
  replace($('doc-body'), documentBody(view));
  if (!quiet) panel.scrollIntoView({ behavior: 'smooth', block: 'start' });
}

function showDocError(id, message) {
  $('document').hidden = false;
  $('doc-title').textContent = id;
  $('doc-status').textContent = '';
  replace($('doc-actions'));
  replace($('doc-body'), h('p', { class: 'late' }, message));
}

function kv(object) {
  return h(
    'table',
    {},
    h(
      'tbody',
      {},
      Object.entries(object)
        .filter(([k]) => k !== 'batch')
        .map(([k, v]) =>
          h(
            'tr',
            {},
            h('td', {}, k),
            h(
              'td',
              {},
              typeof v === 'object' && v !== null ? h('pre', {}, JSON.stringify(v, null, 1)) : k === 'stderr_tail' ? h('pre', {}, String(v)) : String(v),
            ),
          ),
        ),
    ),
  );
}

function documentBody(view) {
  const doc = view.doc;
  const steps = state.snapshot?.steps ?? [];
  const parts = [];
  if (doc) {
    parts.push(
      h(
        'p',
        { class: 'muted' },
        `run ${doc.run_name} · file ${doc.file_number} · ${doc.file} · closed ${doc.date_closed ?? '?'}${doc.daq_host ? ` on ${doc.daq_host}` : ''} · read from ${view.read_from}`,
      ),
    );
    // A step's record: at the top level once done (the original scripts' have no ok flag), under pending until then.
    const recordOf = (step) => (doc[step] && typeof doc[step] === 'object' ? { ...doc[step], ok: doc[step].ok ?? true } : doc.pending?.[step]);
    parts.push(
      h('h3', {}, 'Steps'),
      h(
        'div',
        { class: 'records' },
        steps.map((step) => {
          const r = recordOf(step);
          if (!r) return h('div', { class: 'record' }, h('strong', {}, step), h('p', { class: 'muted' }, 'not run yet'));
          return h('div', { class: `record ${r.ok === true ? 'ok' : r.ok === false ? 'failed' : ''}`, 'data-record': step }, h('strong', {}, step), kv(r));
        }),
      ),
    );
    const jobs = steps.filter((step) => recordOf(step)?.batch).map((step) => ({ step, ...recordOf(step).batch }));
    parts.push(
      h('h3', {}, 'Batch jobs'),
      jobs.length === 0
        ? h('p', { class: 'muted' }, 'none')
        : h(
            'table',
            {},
            table(
              ['step', 'system', 'id', 'submitted', 'stdout', 'stderr'],
              jobs.map((j) =>
                h(
                  'tr',
                  {},
                  h('td', {}, j.step),
                  h('td', {}, j.system),
                  h('td', {}, j.id ?? '(not yet)'),
                  h('td', {}, j.submitted ?? ''),
                  h('td', {}, j.stdout ?? ''),
                  h('td', {}, j.stderr ?? ''),
                ),
              ),
            ),
          ),
    );
    const duplicates = Array.isArray(doc.duplicates) ? doc.duplicates : [];
    parts.push(
      h('h3', {}, 'Duplicate runs (double claims resolved)'),
      duplicates.length === 0
        ? h('p', { class: 'muted' }, 'none')
        : h(
            'table',
            {},
            table(
              ['step', 'site/agent', 'started', 'ok', 'exit', 'losing revision'],
              duplicates.map((d) =>
                h(
                  'tr',
                  {},
                  h('td', {}, d.step),
                  h('td', {}, `${d.site}/${d.agent}`),
                  h('td', {}, d.started ?? ''),
                  h('td', {}, String(d.result?.ok)),
                  h('td', {}, d.result?.exit_code ?? '–'),
                  h('td', {}, d.rev),
                ),
              ),
            ),
          ),
    );
    parts.push(
      h('h3', {}, 'History'),
      h(
        'table',
        {},
        table(
          ['at', 'from', 'to', 'by', 'note'],
          [...(doc.history ?? [])]
            .reverse()
            .map((e) =>
              h(
                'tr',
                {},
                h('td', {}, e.at),
                h('td', { class: statusClass(e.from) }, e.from ?? ''),
                h('td', { class: statusClass(e.to) }, e.to),
                h('td', {}, e.by),
                h('td', {}, e.note ?? ''),
              ),
            ),
        ),
      ),
    );
  }
  parts.push(
    h('h3', {}, 'Revisions on each server'),
    h(
      'table',
      {},
      table(
        ['server', 'state', 'revision', 'status', 'conflicts', 'revisions (newest first)'],
        view.servers.map((s) =>
          h(
            'tr',
            { 'data-copy': s.site },
            h('td', {}, s.site),
            h('td', { class: s.reachable ? '' : 'late' }, s.reachable ? (s.found ? 'present' : 'absent') : `unreachable: ${s.error ?? ''}`),
            h('td', {}, s.rev ?? ''),
            h('td', { class: statusClass(s.status) }, s.status ?? ''),
            h('td', { class: s.conflicts?.length ? 'late' : '' }, (s.conflicts ?? []).join(' ') || 'none'),
            h('td', { class: 'small' }, (s.revs_info ?? []).map((r) => `${r.rev.slice(0, 12)}… ${r.status}`).join(', ')),
          ),
        ),
      ),
    ),
  );
  return parts;
}

function renderActions(view) {
  const doc = view.doc;
  const failed = typeof doc?.status === 'string' && doc.status.endsWith(' failed');
  const retried = state.retried?.doc === doc?._id ? ` ${state.retried.text}` : '';
  if (!failed) return retried ? replace($('doc-actions'), h('span', { id: 'retry-message', class: 'muted' }, retried)) : replace($('doc-actions'));
  const step = doc.status.slice(0, -' failed'.length);
  const message = h('span', { id: 'retry-message', class: 'muted' }, state.user ? '' : ' read-only: log in as an operator to retry');
  const button = h(
    'button',
    {
      id: 'retry',
      class: 'primary',
      type: 'button',
      disabled: !state.user,
      onclick: async () => {
        button.disabled = true;
        message.textContent = ' retrying…';
        try {
          const result = await api('/api/retry', { method: 'POST', body: { doc: doc._id, step } });
          state.retried = { doc: doc._id, text: `${result.step} is ready again (${result.status}) on ${result.server}` };
          message.textContent = ` ${state.retried.text}`;
        } catch (error) {
          message.textContent = ` ${error.message}`;
          button.disabled = false;
        }
      },
    },
    `Retry ${step}`,
  );
  replace($('doc-actions'), button, message);
}

// ---- navigation -------------------------------------------------------------------------------
function route() {
  const match = /^#doc=(.+)$/.exec(location.hash);
  if (match) void openDocument(decodeURIComponent(match[1]));
  else {
    state.doc = null;
    $('document').hidden = true;
  }
}

function go(id) {
  if (id) location.hash = `doc=${encodeURIComponent(id)}`;
}

async function jumpToRun(run) {
  try {
    const { doc } = await api(`/api/run?run=${encodeURIComponent(run)}`);
    if (doc) go(doc);
    else showDocError(run, `no file of run ${run}`);
  } catch (error) {
    showDocError(run, error.message);
  }
}

// ---- operator login ------------------------------------------------------------------------
function setUser(user, servers = []) {
  state.user = user;
  $('login-form').hidden = Boolean(user);
  $('login-state').hidden = !user;
  $('login-user-name').textContent = user ? `operator ${user} (${servers.join(', ')})` : '';
  if (state.doc) renderActions(state.doc);
}

function wire() {
  $('login-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    $('login-message').textContent = 'checking…';
    try {
      const result = await api('/api/login', {
        method: 'POST',
        body: { user: $('login-user').value, password: $('login-password').value, site: $('login-site').value },
      });
      $('login-password').value = '';
      $('login-message').textContent = result.refused.length ? `not accepted by ${result.refused.map((r) => r.site).join(', ')}` : '';
      setUser(result.user, result.servers);
    } catch (error) {
      $('login-message').textContent = error.message;
    }
  });
  $('logout').addEventListener('click', async () => {
    await api('/api/logout', { method: 'POST', body: {} }).catch(() => {});
    setUser(null);
  });
  $('search-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const list = $('search-results');
    const q = $('search').value.trim();
    if (!q) return;
    try {
      const { results } = await api(`/api/search?q=${encodeURIComponent(q)}`);
      replace(
        list,
        results.length === 0 ? h('li', { class: 'muted' }, `no file name starts with ${q}`) : results.map((r) => h('li', {}, docLink(r.doc, r.name))),
      );
    } catch (error) {
      replace(list, h('li', { class: 'late' }, error.message));
    }
    list.hidden = false;
  });
  document.addEventListener('click', (event) => {
    if (!event.target.closest('#search-results, #search-form')) $('search-results').hidden = true;
  });
  $('run-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const run = $('run').value.trim();
    if (run) void jumpToRun(run);
  });
  for (const button of document.querySelectorAll('[data-nav]')) button.addEventListener('click', () => go(state.doc?.nav?.[button.dataset.nav]));
  $('doc-close').addEventListener('click', () => {
    history.pushState(null, '', location.pathname);
    route();
  });
  $('window').addEventListener('change', (event) => {
    state.windowS = Number(event.target.value);
    void loadFlow();
  });
  window.addEventListener('hashchange', route);
}

wire();
api('/api/session').then(
  (s) => {
    // The password goes to the chosen server only: a wrong try elsewhere would count towards its lockout.
    $('login-site').replaceChildren(...(s.login_sites ?? []).map((site) => h('option', { value: site }, site)));
    setUser(s.user, s.servers ?? []);
  },
  () => {},
);
connect();
route();
