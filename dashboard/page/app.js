// The live status page: one WebSocket for snapshots, a few JSON calls for the rest. No reload, ever.
import { api, retryStep } from './api.js';
import { completedChart, latencyBars, STEP_COLOURS } from './charts.js';
import { age, ago, clock } from './clock.js';
import { documentBody } from './docview.js';
import { docLink, duration, h, progressClass, replace, statusClass, table } from './dom.js';
import { renderProblems } from './problems.js';
import { renderRunDocuments } from './run-docs.js';
import { renderCustody } from './custody.js';
import { renderControls } from './controls.js';

const $ = (id) => document.getElementById(id);
// `retried`: the answer to this page's last retry, kept while the document stays at the revision the retry wrote.
const state = {
  snapshot: null,
  receivedAt: 0,
  doc: null,
  user: null,
  windowS: 3600,
  flow: null,
  retried: null,
  notices: [],
  connection: { kind: 'connecting' },
};
const COUNTS = ['done', 'ready', 'queued', 'in_progress', 'failed'];
/** The server pushes at least every 5 s while the page watches: older data is stale even on an open connection. */
const STALE_AFTER_S = 15;
const NOTICE_MS = 20_000;

// ---- live connection, reconnecting with backoff ---------------------------------------------
let attempts = 0;
function connect() {
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/live`);
  setConnection({ kind: 'connecting' });
  ws.addEventListener('open', () => {
    attempts = 0;
    setConnection({ kind: 'live' });
  });
  ws.addEventListener('message', (event) => {
    const message = JSON.parse(event.data);
    if (message.type === 'snapshot') onSnapshot(message.snapshot);
  });
  ws.addEventListener('close', () => {
    attempts += 1;
    const delay = Math.min(15000, 500 * 2 ** Math.min(attempts, 6)) * (0.7 + Math.random() * 0.6);
    setConnection({ kind: 'offline', reconnectAt: Date.now() + delay });
    setTimeout(connect, delay);
  });
}

function setConnection(connection) {
  state.connection = connection;
  freshness();
}

/** The connection pill, the age of the data, the stale banner and the tab title: called on every change and every second. */
function freshness() {
  const { kind, reconnectAt } = state.connection;
  const pill = $('connection');
  pill.dataset.state = kind;
  pill.className = `pill ${kind === 'live' ? 'pill-ok' : kind === 'offline' ? 'pill-bad' : 'pill-wait'}`;
  const retryIn = reconnectAt ? Math.max(0, Math.round((reconnectAt - Date.now()) / 1000)) : 0;
  pill.textContent = kind === 'live' ? 'live' : kind === 'offline' ? `disconnected, retrying in ${retryIn} s` : 'connecting…';
  const snap = state.snapshot;
  if (!snap) return;
  const ageS = (Date.now() - state.receivedAt) / 1000;
  const stale = kind !== 'live' || ageS > STALE_AFTER_S;
  document.body.classList.toggle('stale', stale);
  $('generated').textContent = `data of ${clock(snap.generated)}, ${ago(state.receivedAt)}`;
  const banner = $('stale');
  banner.hidden = !stale;
  if (stale) {
    const why =
      kind === 'live' ? 'no update from the dashboard' : kind === 'offline' ? `the live connection is gone (retrying in ${retryIn} s)` : 'reconnecting';
    banner.textContent = `data ${age(ageS)} old: ${why}. What is below is how it was at ${clock(snap.generated)}.`;
  }
  document.title = `${stale ? `data ${age(ageS)} old · ` : ''}${snap.summary?.text ?? ''} · CouchMesh ${snap.database}`;
}

function onSnapshot(snapshot) {
  state.snapshot = snapshot;
  state.receivedAt = Date.now();
  render();
  freshness();
  if (state.windowS !== 3600) void loadFlow();
  if (state.doc) void openDocument(state.doc.id, { quiet: true });
}

// ---- overview -------------------------------------------------------------------------------
function render() {
  const snap = state.snapshot;
  if (!snap) return;
  $('database').textContent = `· ${snap.database}`;
  $('summary').textContent = snap.summary?.text ?? '';
  $('summary').dataset.level = snap.summary?.level ?? 'ok';
  renderAlerts(snap.alerts ?? []);
  renderServers(snap);
  renderSteps(snap);
  replace(
    $('runs'),
    table(
      ['DAQ host', 'run', 'files', 'failed', 'latest file', 'its state'],
      snap.runs.map((r) =>
        h(
          'tr',
          { 'data-run': r.run },
          h('td', {}, r.daq_host),
          h('td', {}, h('a', { onclick: () => jumpToRun(r.run) }, r.run)),
          h('td', { class: 'num' }, r.files),
          h('td', { class: `num${r.failed ? ' n-failed' : ''}` }, `${r.failed ?? '?'}${snap.failed_capped && r.failed ? '+' : ''}`),
          h('td', { class: 'num' }, r.latest ? docLink(r.latest.doc, r.latest_file) : r.latest_file),
          h(
            'td',
            { class: r.latest?.state ? progressClass(r.latest.state.kind) : statusClass(r.latest?.status) },
            r.latest?.state?.text ?? r.latest?.status ?? '?',
          ),
        ),
      ),
      { numeric: [2, 3, 4], empty: 'no files catalogued yet' },
    ),
  );
  renderRunDocuments($('run-docs'), snap);
  renderCustody($('custody'), snap);
  renderFlow(state.windowS === 3600 ? snap.flow : (state.flow ?? snap.flow), snap.flow_error);
  state.notices = state.notices.filter((n) => Date.now() - n.at < NOTICE_MS);
  replace(
    $('notices'),
    state.notices.map((n) => h('p', { class: 'notice' }, n.text)),
  );
  renderControls($('controls'), snap, {
    user: state.user,
    onDone: (text) => {
      state.notices.push({ text, at: Date.now() });
      replace(
        $('notices'),
        state.notices.map((n) => h('p', { class: 'notice' }, n.text)),
      );
    },
  });
  renderProblems($('problems'), snap, {
    user: state.user,
    onRetried: (text) => {
      state.notices.push({ text, at: Date.now() });
      replace(
        $('notices'),
        state.notices.map((n) => h('p', { class: 'notice' }, n.text)),
      );
    },
  });
  replace(
    $('in-flight'),
    table(
      ['in flight', 'step', 'on', 'by', 'attempt', 'for'],
      snap.in_flight.map((f) =>
        h(
          'tr',
          { 'data-in-flight': f.doc },
          h('td', {}, docLink(f.doc)),
          h('td', {}, f.step),
          h('td', {}, (f.servers ?? [f.server]).join(', ')),
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
        h(
          'tr',
          {},
          h('td', {}, `${a.site}/${a.agent}`),
          h('td', {}, a.host),
          h('td', {}, a.last_run ? `${a.state} (${lastRun(a.last_run)})` : a.state),
          h('td', { class: 'num' }, `${age(a.age_s)} ago`),
        ),
      ),
      { numeric: [3], empty: 'no agent has reported' },
    ),
  );
}

/** A site's `--once` runs on one host are one agent: which run it shows, and how that run ended. */
function lastRun(run) {
  if (!run.outcome) return `run ${run.agent} not finished`;
  const took = (Date.parse(run.finished) - Date.parse(run.started)) / 1000;
  const after = !Number.isFinite(took) ? '' : ` after ${took < 90 ? `${took.toFixed(1)} s` : duration(took)}`;
  return `last run ${run.agent}: ${run.outcome}${after}`;
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
          { 'data-alert': a.kind, 'data-alert-key': a.key },
          h('strong', {}, a.kind.replace(/_/g, ' ')),
          ' ',
          a.message,
          h('span', { class: 'muted' }, ` since ${clock(a.since)} (${ago(a.since)})`),
          a.action ? h('div', { class: 'small', 'data-action': '' }, `What to do: ${a.action}`) : '',
        ),
      ),
    ),
  );
}

function renderServers(snap) {
  const differences = snap.files?.differences ?? [];
  replace(
    $('servers'),
    snap.servers.map((s) =>
      h(
        'div',
        { class: `card${s.reachable ? '' : ' down'}`, 'data-server': s.site },
        h('strong', {}, s.site),
        ' ',
        h('span', { class: `pill ${s.reachable ? 'pill-ok' : 'pill-bad'}` }, s.reachable ? 'reachable' : unreadableWords(s)),
        h('div', { class: 'muted small' }, s.url),
        s.reachable
          ? h('div', {}, `${s.doc_count} documents`, s.conflicts ? h('span', { class: 'n-failed' }, ` · ${s.conflicts} conflicts`) : '')
          : h('div', { class: 'small late' }, s.error ?? ''),
        differences.filter((d) => d.server === s.site).map((d) => h('div', { class: 'small warn', 'data-difference': d.direction }, d.text)),
      ),
    ),
  );
}

/** Why a server could not be read, named right (coordinator/summary.ts says the same). */
function unreadableWords(s) {
  return s.not_authorised ? 'not authorised' : s.unreachable ? 'unreachable' : 'could not be read';
}

function countCells(c) {
  return COUNTS.map((k) => h('td', { class: `num${k === 'failed' && c?.[k] > 0 ? ' n-failed' : ''}`, 'data-count': k }, c?.[k] ?? 0));
}

const sameCounts = (a, b) => COUNTS.every((k) => (a?.[k] ?? 0) === (b?.[k] ?? 0));

/** Per step one row of files, each once (from the step's own server); a row per other server only where its copy differs. */
function renderSteps(snap) {
  const rows = [];
  const own = new Map((snap.pipeline ?? []).map((p) => [p.name, p.server]));
  for (const step of snap.steps) {
    const from = snap.totals_from?.[step];
    const stoodIn = from && own.get(step) && own.get(step) !== from ? snap.servers.find((s) => s.site === own.get(step)) : undefined;
    const fallback = stoodIn ? ` (${stoodIn.site} ${unreadableWords(stoodIn)})` : '';
    rows.push(
      h(
        'tr',
        { class: 'total', 'data-step': step },
        h('td', {}, step, h('div', { class: 'muted small' }, from ? `from ${from}${fallback}` : 'no server read')),
        countCells(snap.totals[step]),
      ),
    );
    for (const s of snap.servers) {
      if (s.site === from || !s.reachable || sameCounts(s.steps[step], snap.totals[step])) continue;
      rows.push(h('tr', { class: 'sub', 'data-step': step, 'data-server': s.site }, h('td', {}, `${s.site}'s copy`), countCells(s.steps[step])));
    }
  }
  replace($('steps'), table(['step', 'done', 'ready', 'queued', 'in progress', 'failed'], rows, { numeric: [1, 2, 3, 4, 5] }));
  const unreadable = snap.servers.filter((s) => !s.reachable).map((s) => `${s.site} ${unreadableWords(s)}`);
  replace(
    $('steps-note'),
    `${snap.files?.count ?? '?'} files, each counted once: a step's numbers come from the server its agents claim on.`,
    unreadable.length
      ? h('span', { class: 'late' }, ` ${unreadable.join(', ')}: what only ${unreadable.length === 1 ? 'it knows' : 'they know'} is not in these numbers.`)
      : '',
    (snap.files?.differences ?? []).map((d) => h('span', { class: 'warn', 'data-difference': d.direction }, ` ${d.text}.`)),
  );
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
          h('td', { class: 'bar' }, bar(l)),
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
  // "complete" (every step done) is not "good" (one step done, waiting for the next): the status is in the tooltip.
  $('doc-status').textContent = view.state?.kind === 'complete' ? 'complete' : status;
  $('doc-status').title = `status: ${status}`;
  $('doc-status').className = view.state?.kind === 'complete' ? progressClass('complete') : statusClass(status);
  for (const button of panel.querySelectorAll('[data-nav]')) button.disabled = !view.nav[button.dataset.nav];
  renderActions(view);
  replace($('doc-body'), documentBody(view, state.snapshot?.pipeline ?? (state.snapshot?.steps ?? []).map((name) => ({ name }))));
  if (!quiet) panel.scrollIntoView({ behavior: 'smooth', block: 'start' });
}

function showDocError(id, message) {
  $('document').hidden = false;
  $('doc-title').textContent = id;
  $('doc-status').textContent = '';
  replace($('doc-actions'));
  replace($('doc-body'), h('p', { class: 'late' }, message));
}

function renderActions(view) {
  const doc = view.doc;
  // A retry's confirmation lasts while the document is at the revision the retry wrote: once the
  // step moved on, it goes. Not its status: a file completed after the retry is `good` again, as
  // the retry left it, and the answer may come after the page has already shown later revisions.
  if (state.retried && (state.retried.doc !== doc?._id || state.retried.rev !== doc?._rev)) state.retried = null;
  const failed = typeof doc?.status === 'string' && doc.status.endsWith(' failed');
  if (!failed)
    return state.retried ? replace($('doc-actions'), h('span', { id: 'retry-message', class: 'muted' }, ` ${state.retried.text}`)) : replace($('doc-actions'));
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
          const result = await retryStep(doc._id, step);
          state.retried = { doc: doc._id, rev: result.rev, text: result.text };
          message.textContent = ` ${result.text}`;
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
  render();
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
      $('login-message').textContent = '';
      setUser(result.user, result.servers);
    } catch (error) {
      // The server's words: "not accepted by kit: …" or "the server of kit is unreachable …".
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
  // Ages and the stale banner move on even when nothing arrives.
  window.setInterval(freshness, 1000);
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
