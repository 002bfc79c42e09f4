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
    if (history.length === 0) problems = problems.concat(chainProblems(oldDoc.status, newDoc.status, appendedEntries(oldDoc, newDoc)));
    return problems;
  }
  function creationProblems(newDoc) {
    if (!Array.isArray(newDoc.history)) return ['history is missing: a document starts with its entry from null to "closed"'];
    return chainProblems(null, newDoc.status, newDoc.history);
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
    if (kind === 'foreign') {
      return p.all || p.relay ? [] : [show(user.name) + ' may not write documents other than ' + show(DOC_TYPE) + ' and mesh control documents'];
    }
    if (kind === 'control') return controlProblems(newDoc, previous, user, p);
    var problems = statusProblems(newDoc);
    if (previous === null) problems = problems.concat(creationProblems(newDoc));
    else problems = problems.concat(editProblems(previous, newDoc), provenanceProblems(previous, newDoc));
    if (p.all || p.relay) return problems;
    return problems.concat(authorityProblems(newDoc, previous, user, p));
  }
`;
