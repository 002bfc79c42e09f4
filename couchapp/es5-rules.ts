/**
 * ES5 ports of core/provenance.ts and core/write-rules.ts, line by line, for the generated
 * validate_doc_update (see es5.ts for the dialect). They expect, next to them, the constants
 * `STEPS`, `NEXT` (core/invariants.ts `statusSuccessors`), `STEP_SITES`, `INGEST_SITES`,
 * `DOC_TYPE`, `CATALOGUE`, `AGENT_PREFIX`, `COORDINATOR_ROLE`, `OPERATOR_ROLE`, `HEARTBEAT_TYPE`, `TRIGGER_TYPE`,
 * and the functions of COMMON_ES5 and INVARIANTS_ES5. test/unit/design.test.ts checks that
 * both sides give the same messages.
 */

/** Port of core/provenance.ts. */
export const PROVENANCE_ES5 = String.raw`
  function sameValue(a, b) {
    if (a === b) return true;
    if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
    if (Array.isArray(a) !== Array.isArray(b)) return false;
    var i, key;
    if (Array.isArray(a)) {
      if (a.length !== b.length) return false;
      for (i = 0; i < a.length; i++) if (!sameValue(a[i], b[i])) return false;
      return true;
    }
    var count = 0;
    for (key in a) {
      if (!Object.prototype.hasOwnProperty.call(a, key)) continue;
      if (a[key] === undefined) continue;
      count++;
      if (!Object.prototype.hasOwnProperty.call(b, key) || !sameValue(a[key], b[key])) return false;
    }
    for (key in b) if (Object.prototype.hasOwnProperty.call(b, key) && b[key] !== undefined) count--;
    return count === 0;
  }
  function listOf(value) {
    return Array.isArray(value) ? value : [];
  }
  function chainProblems(from, to, entries) {
    if (entries.length === 0) return from === to ? [] : ['status changed from ' + show(from) + ' to ' + show(to) + ' without a history entry'];
    var at = from;
    for (var i = 0; i < entries.length; i++) {
      var entry = entries[i];
      if (!isObject(entry)) return ['history entry ' + show(entry) + ' is not an object'];
      if (entry.from !== at) return ['history entry from ' + show(entry.from) + ' does not follow ' + show(at)];
      var legal = at === null ? entry.to === 'closed' : typeof at === 'string' && Object.prototype.hasOwnProperty.call(NEXT, at) && NEXT[at].indexOf(entry.to) >= 0;
      if (!legal) return ['history cannot go from ' + show(at) + ' to ' + show(entry.to)];
      if (typeof entry.at !== 'string' || !ISO_DATE.test(entry.at)) return ['history entry at is ' + show(entry.at) + ', expected an ISO date'];
      if (typeof entry.by !== 'string' || entry.by.length === 0) return ['history entry by is ' + show(entry.by)];
      at = entry.to;
    }
    return at === to ? [] : ['history ends at ' + show(at) + ' but status is ' + show(to)];
  }
  function appendOnly(name, before, after) {
    if (before === undefined) return [];
    if (!Array.isArray(after)) return [name + ' cannot be removed'];
    var old = listOf(before);
    if (after.length < old.length) return [name + ' entries cannot be removed'];
    for (var i = 0; i < old.length; i++) if (!sameValue(old[i], after[i])) return [name + ' entry ' + i + ' cannot change'];
    return [];
  }
  function appendedEntries(oldDoc, newDoc) {
    return listOf(newDoc.history).slice(oldDoc === null ? 0 : listOf(oldDoc.history).length);
  }
  function provenanceProblems(oldDoc, newDoc) {
    var problems = [];
    var i, c;
    for (i = 0; i < CATALOGUE.length; i++) {
      var field = CATALOGUE[i];
      if (oldDoc[field] !== undefined && !sameValue(oldDoc[field], newDoc[field])) problems.push(field + ' cannot change once catalogued');
    }
    for (i = 0; i < STEPS.length; i++) {
      var step = STEPS[i];
      var done = oldDoc[step];
      if (isObject(done)) {
        if (supersededHere(oldDoc, newDoc, step)) continue;
        if (!isObject(newDoc[step])) problems.push(step + ' cannot be removed');
        else if (!sameValue(done, newDoc[step])) problems.push(step + ' is done and cannot change');
        continue;
      }
      var before = pendingRecord(oldDoc, step);
      if (before === undefined) continue;
      var after = pendingRecord(newDoc, step);
      if (after === undefined && isObject(newDoc[step])) after = newDoc[step];
      if (after === undefined) {
        problems.push('pending.' + step + ' cannot be removed before ' + step + ' is done');
        continue;
      }
      var counters = ['attempts', 'uncounted'];
      for (c = 0; c < counters.length; c++) {
        var was = before[counters[c]];
        var now = after[counters[c]];
        if (typeof was === 'number' && !(typeof now === 'number' && now >= was)) problems.push(step + '.' + counters[c] + ' cannot go down from ' + show(was) + ' to ' + show(now));
      }
    }
    var history = appendOnly('history', Array.isArray(oldDoc.history) ? oldDoc.history : undefined, newDoc.history);
    problems = problems.concat(history, appendOnly('duplicates', oldDoc.duplicates, newDoc.duplicates), appendOnly('batchJob', oldDoc.batchJob, newDoc.batchJob));
    problems = problems.concat(supersedeProblems(oldDoc, newDoc));
    if (history.length === 0) problems = problems.concat(chainProblems(oldDoc.status, newDoc.status, appendedEntries(oldDoc, newDoc)));
    return problems;
  }
  function creationProblems(newDoc) {
    if (!Array.isArray(newDoc.history)) return ['history is missing: a document starts with its entry from null to "closed"'];
    return chainProblems(null, newDoc.status, newDoc.history);
  }
`;

/** Port of core/supersede.ts (it uses sameValue and listOf of PROVENANCE_ES5). */
export const SUPERSEDE_ES5 = String.raw`
  function readyOf(index) {
    return index === 0 ? 'closed' : 'good';
  }
  function reprocessOnlyEdge(from, to) {
    if (from === 'good') return to === 'good' || to === 'closed';
    var parsed = parseStatus(from);
    return parsed !== null && parsed.kind === 'failed' && to === 'closed' && parsed.step !== STEPS[0];
  }
  function appendedHistory(oldDoc, newDoc) {
    return listOf(newDoc.history).slice(listOf(oldDoc.history).length);
  }
  function earliestReprocessed(oldDoc, newDoc) {
    var entries = appendedHistory(oldDoc, newDoc);
    var earliest = -1;
    for (var i = 0; i < entries.length; i++) {
      var entry = entries[i];
      if (!isObject(entry) || typeof entry.reprocess !== 'string') continue;
      var index = STEPS.indexOf(entry.reprocess);
      if (index >= 0 && (earliest < 0 || index < earliest)) earliest = index;
    }
    return earliest;
  }
  function supersededHere(oldDoc, newDoc, step) {
    var earliest = earliestReprocessed(oldDoc, newDoc);
    if (earliest < 0 || earliest > STEPS.indexOf(step)) return false;
    var added = listOf(newDoc.superseded).slice(listOf(oldDoc.superseded).length);
    for (var i = 0; i < added.length; i++) {
      var entry = added[i];
      if (isObject(entry) && entry.step === step && sameValue(entry.record, oldDoc[step])) return true;
    }
    return false;
  }
  function supersedeProblems(oldDoc, newDoc) {
    var before = oldDoc.superseded;
    var after = newDoc.superseded;
    if (before !== undefined && !Array.isArray(after)) return ['superseded cannot be removed'];
    if (after !== undefined && !Array.isArray(after)) return ['superseded is ' + show(after) + ', expected a list of superseded records'];
    var old = listOf(before);
    var list = listOf(after);
    var i, entry, index, step;
    if (list.length < old.length) return ['superseded entries cannot be removed'];
    for (i = 0; i < old.length; i++) if (!sameValue(old[i], list[i])) return ['superseded entry ' + i + ' cannot change'];
    var problems = [];
    var entries = appendedHistory(oldDoc, newDoc);
    for (i = 0; i < entries.length; i++) {
      entry = entries[i];
      if (!isObject(entry)) continue;
      if (entry.reprocess === undefined) {
        if (reprocessOnlyEdge(entry.from, entry.to)) problems.push('history entry from ' + show(entry.from) + ' to ' + show(entry.to) + ' is a reprocess: it must name the step it reprocesses');
        continue;
      }
      index = typeof entry.reprocess === 'string' ? STEPS.indexOf(entry.reprocess) : -1;
      if (index < 0) {
        problems.push('history entry reprocesses ' + show(entry.reprocess) + ', which is not a step');
        continue;
      }
      if (entry.to !== readyOf(index)) problems.push('history entry reprocessing ' + entry.reprocess + ' goes to ' + show(entry.to) + ', not ' + show(readyOf(index)));
      if (typeof entry.note !== 'string' || entry.note.length === 0) problems.push('history entry reprocessing ' + entry.reprocess + ' has no note saying why');
    }
    var earliest = earliestReprocessed(oldDoc, newDoc);
    for (i = old.length; i < list.length; i++) {
      entry = list[i];
      if (!isObject(entry) || typeof entry.step !== 'string' || STEPS.indexOf(entry.step) < 0 || !isObject(entry.record)) {
        problems.push('superseded entry ' + i + ' is not { step, record, at, by, user, why, version } of a step');
        continue;
      }
      step = entry.step;
      if (typeof entry.at !== 'string' || !ISO_DATE.test(entry.at)) problems.push('superseded entry ' + i + ' (' + step + ') at is ' + show(entry.at) + ', expected an ISO date');
      if (typeof entry.by !== 'string' || entry.by.length === 0 || typeof entry.why !== 'string' || entry.why.length === 0) problems.push('superseded entry ' + i + ' (' + step + ') must say by whom and why');
      if (earliest < 0 || earliest > STEPS.indexOf(step)) problems.push('superseded entry ' + i + ' (' + step + ') comes with no reprocess of ' + step + ' or a step before it');
    }
    return problems;
  }
`;

/** Port of core/write-rules.ts. */
export const WRITE_RULES_ES5 = String.raw`
  function has(list, value) {
    return Array.isArray(list) && list.indexOf(value) >= 0;
  }
  function powersOf(user) {
    var roles = isObject(user) && Array.isArray(user.roles) ? user.roles : [];
    var name = isObject(user) ? user.name : null;
    var admin = has(roles, '_admin');
    var sites = [];
    for (var i = 0; i < roles.length; i++) {
      var role = roles[i];
      if (typeof role === 'string' && role.indexOf(AGENT_PREFIX) === 0) sites.push(role.slice(AGENT_PREFIX.length));
    }
    var relay = has(roles, COORDINATOR_ROLE);
    return { all: admin && name === null, relay: relay, coordinator: relay || admin, operator: admin || has(roles, OPERATOR_ROLE), sites: sites };
  }
  function kindOf(doc) {
    if (doc.type === DOC_TYPE) return 'data';
    if (typeof doc.type === 'string' && doc.type.indexOf('mesh-') === 0 && typeof doc._id === 'string' && doc._id.indexOf('mesh') === 0) return 'control';
    return 'foreign';
  }
  function siteOf(by) {
    if (typeof by !== 'string') return null;
    var slash = by.indexOf('/');
    return slash > 0 ? by.slice(0, slash) : null;
  }
  function claimedStep(status) {
    var parsed = parseStatus(status);
    return parsed && (parsed.kind === 'queued' || parsed.kind === 'in_progress') ? parsed.step : null;
  }
  function entryProblems(entry, user, p) {
    var who = show(user.name);
    var problems = [];
    if (entry.user !== user.name) problems.push('history entry of account ' + show(entry.user) + ' written by ' + who);
    var site = siteOf(entry.by);
    if (entry.from === null) {
      if (!(has(p.sites, site) && has(INGEST_SITES, site))) problems.push(who + ' may not catalogue files as ' + show(entry.by));
      return problems;
    }
    if (entry.reprocess !== undefined) {
      if (!p.operator) problems.push(who + ' may not reprocess ' + show(entry.reprocess) + ': operators do');
      return problems;
    }
    if (entry.to === 'bad') {
      if (!p.operator && p.sites.length === 0) problems.push(who + ' may not mark documents bad');
      return problems;
    }
    var from = parseStatus(entry.from);
    if (from && from.kind === 'failed') {
      if (entry.to !== entry.from && !p.operator) problems.push(who + ' may not retry ' + from.step + ': operators do');
      return problems;
    }
    var to = parseStatus(entry.to);
    var step = from && from.step !== null ? from.step : to ? to.step : null;
    if (step !== null && !(has(p.sites, site) && has(STEP_SITES[step], site))) problems.push(who + ' may not run ' + step + ' as ' + show(entry.by));
    return problems;
  }
  function authorityProblems(newDoc, previous, user, p) {
    var who = show(user.name);
    if (!p.operator && !p.coordinator && p.sites.length === 0) return [who + ' may not write: no mesh role allows it'];
    var problems = [];
    var i;
    if (previous === null) {
      var records = newDoc.pending === undefined ? 0 : 1;
      for (i = 0; i < STEPS.length; i++) if (newDoc[STEPS[i]] !== undefined) records++;
      if (newDoc.status !== 'closed' || records > 0) problems.push('a new document starts closed, with no step record');
    }
    var entries = appendedEntries(previous, newDoc);
    for (i = 0; i < entries.length; i++) {
      if (isObject(entries[i])) problems = problems.concat(entryProblems(entries[i], user, p));
    }
    var claimedBefore = previous === null ? null : claimedStep(previous.status);
    var claimedNow = claimedStep(newDoc.status);
    for (i = 0; i < STEPS.length; i++) {
      var step = STEPS[i];
      var before = previous === null ? undefined : pendingRecord(previous, step);
      var after = pendingRecord(newDoc, step);
      var done = newDoc[step];
      if (isObject(done) && !sameValue(previous === null ? undefined : previous[step], done)) {
        if (!(claimedBefore === step && before !== undefined && before.account === user.name)) problems.push(step + ' may be recorded done only by the account that claimed it');
      }
      if (after === undefined || sameValue(before, after)) continue;
      if (claimedNow === step) {
        if (after.account !== user.name) problems.push('pending.' + step + '.account is ' + show(after.account) + ' but the writer is ' + who);
        else if (!(has(p.sites, after.site) && has(STEP_SITES[step], after.site))) problems.push('pending.' + step + '.site is ' + show(after.site) + ': ' + who + ' may not run ' + step + ' there');
      } else if (entries.length === 0) {
        problems.push('pending.' + step + ' cannot change without a status change');
      }
    }
    var jobsBefore = previous !== null && Array.isArray(previous.batchJob) ? previous.batchJob.length : 0;
    if (Array.isArray(newDoc.batchJob) && newDoc.batchJob.length > jobsBefore && p.sites.length === 0) problems.push(who + ' may not record batch jobs: agents do');
    problems = problems.concat(custodyAuthorityProblems(previous, newDoc, user.name, p.sites));
    return problems;
  }
  function controlProblems(newDoc, previous, user, p) {
    if (newDoc.type === CONTROLS_TYPE) return controlsProblems(newDoc, previous, user, p.all || p.relay, p.operator);
    if (p.all || p.relay) return [];
    if (newDoc.type === HEARTBEAT_TYPE || newDoc.type === TRIGGER_TYPE) {
      if (has(p.sites, newDoc.site) && (previous === null || previous.site === newDoc.site)) return [];
      return [show(user.name) + ' may not write the ' + (newDoc.type === HEARTBEAT_TYPE ? 'heartbeat' : 'trigger record') + ' of site ' + show(newDoc.site)];
    }
    if (p.coordinator) return [];
    return [show(user.name) + ' may not write ' + show(newDoc.type) + ' documents: the coordinator does'];
  }
  function writeProblems(newDoc, oldDoc, user) {
    if (!isObject(newDoc)) return ['not a JSON object'];
    if (typeof newDoc._id === 'string' && newDoc._id.indexOf('_design/') === 0) return [];
    var p = powersOf(user);
    var previous = isObject(oldDoc) && oldDoc._deleted !== true ? oldDoc : null;
    if (newDoc._deleted === true) {
      return p.all || p.coordinator || p.operator ? [] : [show(user.name) + ' may not delete documents: the coordinator and operators do'];
    }
    if (previous !== null && previous.type !== newDoc.type) return ['type cannot change from ' + show(previous.type) + ' to ' + show(newDoc.type)];
    var kind = kindOf(newDoc);
    if (kind === 'foreign' && newDoc.type === RUN_DOC_TYPE && RUN_STEPS.length > 0) {
      return RUN_WRITE_PROBLEMS(newDoc, oldDoc, user).concat(runFieldProblems(newDoc, previous, user, p, INGEST_SITES, RUN_STEPS));
    }
    if (kind === 'foreign') {
      return p.all || p.relay ? [] : [show(user.name) + ' may not write documents other than ' + show(DOC_TYPE) + ' and mesh control documents'];
    }
    if (kind === 'control') return controlProblems(newDoc, previous, user, p);
    var problems = statusProblems(newDoc);
    if (previous === null) problems = problems.concat(creationProblems(newDoc));
    else problems = problems.concat(editProblems(previous, newDoc), provenanceProblems(previous, newDoc));
    problems = problems.concat(custodyProblems(previous, newDoc));
    if (p.all || p.relay) return problems;
    return problems.concat(authorityProblems(newDoc, previous, user, p));
  }
`;

/** Port of core/custody-rules.ts (uses `has` of WRITE_RULES_ES5, `listOf`, `appendOnly`, `sameValue` of PROVENANCE_ES5). */
export const CUSTODY_RULES_ES5 = String.raw`
  var SHA256 = /^[0-9a-f]{64}$/;
  function custodyRecordProblems(record, index) {
    if (!isObject(record)) return ['custody entry ' + index + ' is ' + show(record) + ', expected a record object'];
    var problems = [];
    if (typeof record.site !== 'string' || record.site.length === 0) problems.push('custody entry ' + index + ' site is ' + show(record.site));
    if (typeof record.step !== 'string' || record.step.length === 0) problems.push('custody entry ' + index + ' step is ' + show(record.step));
    if (typeof record.sha256 !== 'string' || !SHA256.test(record.sha256)) problems.push('custody entry ' + index + ' sha256 is ' + show(record.sha256) + ', expected 64 hex digits');
    if (typeof record.size_in_bytes !== 'number' || record.size_in_bytes < 0 || record.size_in_bytes % 1 !== 0) problems.push('custody entry ' + index + ' size_in_bytes is ' + show(record.size_in_bytes));
    return problems;
  }
  function custodyProblems(previous, newDoc) {
    if (newDoc.custody !== undefined && !Array.isArray(newDoc.custody)) return ['custody is ' + show(newDoc.custody) + ', expected a list of records'];
    var problems = previous === null ? [] : appendOnly('custody', previous.custody, newDoc.custody);
    if (problems.length > 0) return problems;
    var list = listOf(newDoc.custody);
    for (var i = previous === null ? 0 : listOf(previous.custody).length; i < list.length; i++) problems = problems.concat(custodyRecordProblems(list[i], i));
    if (previous !== null && previous.purged !== undefined && !sameValue(previous.purged, newDoc.purged)) problems.push('purged is written once and cannot change');
    if (newDoc.purged !== undefined && !isObject(newDoc.purged)) problems.push('purged is ' + show(newDoc.purged) + ', expected a record object');
    return problems;
  }
  function custodyAuthorityProblems(previous, newDoc, name, sites) {
    var who = show(name);
    var problems = [];
    var list = listOf(newDoc.custody);
    for (var i = previous === null ? 0 : listOf(previous.custody).length; i < list.length; i++) {
      var record = list[i];
      if (!isObject(record)) continue;
      if (!has(sites, record.site)) problems.push(who + ' may not record custody for site ' + show(record.site) + ': its agents do');
      else if (record.account !== name) problems.push('custody entry ' + i + ' of account ' + show(record.account) + ' written by ' + who);
    }
    var purged = newDoc.purged;
    if (isObject(purged) && (previous === null || previous.purged === undefined)) {
      if (!(has(sites, purged.site) && has(INGEST_SITES, purged.site))) problems.push(who + ' may not record a purge at ' + show(purged.site) + ': the agents of the ingest site do');
      else if (purged.user !== name) problems.push('purged.user is ' + show(purged.user) + ' but the writer is ' + who);
    }
    return problems;
  }
`;

/**
 * Port of core/run-rules.ts. Next to it, the generated function defines `RUN_DOC_TYPE`,
 * `RUN_ID_PREFIX`, `RUN_STEPS`, `RUN_CATALOGUE` and `RUN_WRITE_PROBLEMS`: writeProblems of the
 * fragments above compiled again in a scope where `STEPS`, `CLOSURE`, `NEXT` and `DOC_TYPE` are
 * the run pipeline's (couchapp/design.ts runRulesBlock), as core/write-rules.ts calls itself
 * with the run policy.
 */
export const RUN_RULES_ES5 = String.raw`
  function runStarted(doc, runSteps) {
    for (var i = 0; i < runSteps.length; i++) if (doc[runSteps[i]] !== undefined || pendingRecord(doc, runSteps[i]) !== undefined) return true;
    return false;
  }
  function memberProblems(name, before, after) {
    var list = listOf(after);
    var problems = [];
    for (var i = listOf(before).length; i < list.length; i++) {
      var m = list[i];
      if (!isObject(m) || typeof m.doc_id !== 'string' || typeof m.file !== 'string' || typeof m.sha256 !== 'string' || typeof m.size_in_bytes !== 'number')
        problems.push(name + ' entry ' + i + ' is ' + show(m) + ', expected { doc_id, file, size_in_bytes, sha256 }');
    }
    return problems;
  }
  function runFieldProblems(newDoc, previous, user, p, ingestSites, runSteps) {
    var problems = [];
    var i;
    if (typeof newDoc.run_name !== 'string' || newDoc._id !== RUN_ID_PREFIX + newDoc.run_name)
      problems.push("a run document's _id is " + show(RUN_ID_PREFIX) + ' and its run_name, not ' + show(newDoc._id));
    if (!Array.isArray(newDoc.members)) problems.push('members is ' + show(newDoc.members) + ', expected a list');
    var old = previous === null ? {} : previous;
    problems = problems.concat(
      appendOnly('members', old.members, newDoc.members),
      appendOnly('late_members', old.late_members, newDoc.late_members),
      appendOnly('custody', old.custody, newDoc.custody),
      memberProblems('members', old.members, newDoc.members),
      memberProblems('late_members', old.late_members, newDoc.late_members)
    );
    if (previous !== null && runStarted(previous, runSteps) && listOf(newDoc.members).length > listOf(previous.members).length)
      problems.push('members cannot grow once a run step started: a later file is a late member');
    var once = ['closed_at', 'closed_by'];
    for (i = 0; i < once.length; i++) {
      if (old[once[i]] !== undefined && !sameValue(old[once[i]], newDoc[once[i]])) problems.push(once[i] + ' cannot change once written');
    }
    if (newDoc.closed_at !== undefined) {
      if (typeof newDoc.closed_at !== 'string' || !ISO_DATE.test(newDoc.closed_at)) problems.push('closed_at is ' + show(newDoc.closed_at) + ', expected an ISO date');
      if (newDoc.closed_by !== 'quiet' && newDoc.closed_by !== 'marker') problems.push('closed_by is ' + show(newDoc.closed_by) + ', expected "quiet" or "marker"');
    }
    if (p.all || p.relay) return problems;
    var who = show(user.name);
    var changed = [];
    for (i = 0; i < RUN_CATALOGUE.length; i++) {
      var field = RUN_CATALOGUE[i];
      if (!sameValue(old[field], newDoc[field])) changed.push(field);
    }
    var ingest = false;
    for (i = 0; i < ingestSites.length; i++) if (p.sites.indexOf(ingestSites[i]) >= 0) ingest = true;
    if (changed.length > 0 && !ingest) problems.push(who + ' may not write ' + changed.join(', ') + ' of a run document: the ingest site does');
    var custody = listOf(newDoc.custody);
    for (i = listOf(old.custody).length; i < custody.length; i++) {
      var c = custody[i];
      if (!isObject(c) || p.sites.indexOf(c.site) < 0 || c.account !== user.name) problems.push('custody entry ' + i + " must name the writer's site and account (" + who + ')');
    }
    return problems;
  }
`;
