/**
 * ES5 source text that runs inside CouchDB's JavaScript engine (CouchDB 3 may still embed
 * SpiderMonkey 1.8.5): no arrow functions, no let/const, no template literals, no
 * `includes`/`startsWith`/`endsWith`/`Number.isInteger`. Each fragment is a list of function
 * declarations meant to be pasted inside a generated function body, next to the constants
 * `STEPS` (the step names, in order) and `CLOSURE` (see core/invariants.ts).
 *
 * INVARIANTS_ES5 is a line-by-line port of `statusProblems` and `editProblems` in
 * core/invariants.ts (es5-rules.ts ports the rest of the write rules); test/unit/design.test.ts
 * checks that both give the same messages on every document the state machine produces and on
 * many illegal edits.
 */
import { ISO_DATE } from '../core/invariants.js';

/** Shared by the validate function and the views. */
export const COMMON_ES5 = String.raw`
  function isObject(value) {
    return value !== null && typeof value === 'object' && !Array.isArray(value);
  }
  function isDone(doc, step) {
    var record = doc[step];
    return isObject(record) && record.ok !== false;
  }
  function pendingRecord(doc, step) {
    var pending = doc.pending;
    return isObject(pending) && isObject(pending[step]) ? pending[step] : undefined;
  }
  function parseStatus(status) {
    if (typeof status !== 'string') return null;
    if (status === 'closed' || status === 'good' || status === 'bad') return { kind: status, step: null };
    var suffixes = [[' queued', 'queued'], [' in progress', 'in_progress'], [' failed', 'failed']];
    for (var i = 0; i < suffixes.length; i++) {
      var suffix = suffixes[i][0];
      if (status.length >= suffix.length && status.slice(status.length - suffix.length) === suffix) {
        var step = status.slice(0, status.length - suffix.length);
        return STEPS.indexOf(step) >= 0 ? { kind: suffixes[i][1], step: step } : null;
      }
    }
    return null;
  }
`;

/** Port of core/invariants.ts. */
export const INVARIANTS_ES5 = String.raw`
  var ISO_DATE = ${ISO_DATE.toString()};
  function show(value) {
    return value === undefined ? 'missing' : String(JSON.stringify(value)).slice(0, 80);
  }
  function statusProblems(doc) {
    if (!isObject(doc)) return ['not a JSON object'];
    var parsed = parseStatus(doc.status);
    if (!parsed) return ['status ' + show(doc.status) + ' is unknown'];
    var problems = [];
    var i, step, record, waiting;
    var pending = doc.pending;
    if (pending !== undefined && !isObject(pending)) problems.push('pending is ' + show(pending) + ', expected an object of step records');
    for (i = 0; i < STEPS.length; i++) {
      step = STEPS[i];
      record = doc[step];
      if (record !== undefined) {
        if (!isObject(record)) problems.push(step + ' is ' + show(record) + ', expected a record object');
        else if (record.ok !== undefined && record.ok !== true) problems.push(step + '.ok is ' + show(record.ok) + ": a step record at the top level is a success, an unfinished step's is pending." + step);
      }
      waiting = isObject(pending) ? pending[step] : undefined;
      if (waiting === undefined) continue;
      if (!isObject(waiting)) problems.push('pending.' + step + ' is ' + show(waiting) + ', expected a record object');
      else if (waiting.ok !== undefined && waiting.ok !== false) problems.push('pending.' + step + '.ok is ' + show(waiting.ok) + ': a success is recorded as ' + step);
      else if (record !== undefined) problems.push(step + ' is done and pending at once');
    }
    var status = doc.status;
    var first = STEPS[0];
    if (parsed.kind === 'closed') {
      if (isDone(doc, first)) problems.push('status closed but ' + first + ' is done');
    } else if (parsed.kind === 'good') {
      if (!isDone(doc, first)) problems.push('status good but ' + first + ' is not done');
      var gap = null;
      for (i = 0; i < STEPS.length; i++) {
        var done = isDone(doc, STEPS[i]);
        if (!done && gap === null) gap = STEPS[i];
        else if (done && gap !== null) problems.push(STEPS[i] + ' is done but ' + gap + ' before it is not');
      }
    } else if (parsed.kind !== 'bad') {
      step = parsed.step;
      for (i = 0; i < STEPS.indexOf(step); i++) {
        if (!isDone(doc, STEPS[i])) problems.push('status ' + status + ' but ' + STEPS[i] + ' is not done');
      }
      record = pendingRecord(doc, step);
      if (doc[step] !== undefined) {
        problems.push('status ' + status + ' but ' + step + ' is already done');
      } else if (record === undefined) {
        problems.push('status ' + status + ' but pending.' + step + ' is missing');
      } else if (parsed.kind === 'failed') {
        if (record.ok !== false) problems.push('status ' + status + ' but pending.' + step + '.ok is not false');
      } else {
        if (typeof record.agent !== 'string' || record.agent.length === 0) problems.push('status ' + status + ' but pending.' + step + '.agent is ' + show(record.agent));
        if (typeof record.lease_until !== 'string' || !ISO_DATE.test(record.lease_until)) problems.push('status ' + status + ' but pending.' + step + '.lease_until is ' + show(record.lease_until));
        var attempts = record.attempts;
        if (typeof attempts !== 'number' || attempts % 1 !== 0 || attempts < 1) problems.push('status ' + status + ' but pending.' + step + '.attempts is ' + show(attempts));
      }
    }
    return problems;
  }
  function editProblems(oldDoc, newDoc) {
    if (!isObject(oldDoc) || !isObject(newDoc)) return ['not a JSON object'];
    var problems = [];
    var from = oldDoc.status;
    var to = newDoc.status;
    var has = Object.prototype.hasOwnProperty;
    if (typeof from === 'string' && typeof to === 'string' && has.call(CLOSURE, from) && has.call(CLOSURE, to) && CLOSURE[from].indexOf(to) < 0) {
      problems.push('status cannot go from ' + show(from) + ' to ' + show(to));
    }
    return problems;
  }
`;

/** Readiness for the views: `readyFor` of core/state.ts without the clock; dates as core/dates.ts reads them. */
export const READY_ES5 = String.raw`
  function value(x) {
    return x === undefined ? null : x;
  }
  // Port of core/dates.ts originalDateIso: the original scripts' dates as ISO 8601, or null.
  function isoDate(x) {
    var at;
    if (typeof x === 'number') {
      if (!isFinite(x) || x <= 0) return null;
      at = Math.round(x < 1e11 ? x * 1000 : x);
    } else if (typeof x === 'string') {
      var m = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:?\d{2})?$/.exec(x);
      if (!m) return null;
      var year = Number(m[1]), month = Number(m[2]), day = Number(m[3]), hour = Number(m[4]), minute = Number(m[5]);
      var second = m[6] ? Number(m[6]) : 0;
      if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return null;
      var ms = m[7] ? Number((m[7] + '00').slice(0, 3)) : 0;
      at = Date.UTC(year, month - 1, day, hour, minute, second, ms);
      if (new Date(at).getUTCDate() !== day) return null;
      var zone = m[8];
      if (zone && zone !== 'Z') {
        var digits = zone.replace(':', '');
        var minutes = Number(digits.slice(1, 3)) * 60 + Number(digits.slice(3, 5));
        at -= (digits.charAt(0) === '-' ? -1 : 1) * minutes * 60000;
      }
    } else {
      return null;
    }
    return new Date(at).toISOString();
  }
  // When a done step finished: CouchMesh's finished, or the original scripts' date.
  function finishedOf(r) {
    return isoDate(r.finished !== undefined ? r.finished : r.date);
  }
  function readyStep(doc) {
    for (var i = 0; i < STEPS.length; i++) {
      if (!isDone(doc, STEPS[i])) return doc.status === (i === 0 ? 'closed' : 'good') ? STEPS[i] : null;
    }
    return null;
  }
  // The step's record wherever it is (core/document.ts stepRecord), or {}.
  function record(doc, step) {
    if (isDone(doc, step)) return doc[step];
    return pendingRecord(doc, step) || {};
  }
`;
