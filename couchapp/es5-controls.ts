/**
 * ES5 port of the server's rule in core/operator-controls.ts (`controlsProblems` and its
 * helpers), line by line, for the generated validate_doc_update. It expects, next to it, the
 * constants `CONTROLS_ID`, `CONTROLS_TYPE`, `CONTROL_ACTIONS` and the functions of COMMON_ES5,
 * INVARIANTS_ES5 (`show`, `ISO_DATE`) and PROVENANCE_ES5 (`sameValue`).
 */
export const CONTROLS_ES5 = String.raw`
  function controlMarkProblems(field, before, after, user) {
    var problems = [];
    if (after === undefined) return problems;
    if (!isObject(after)) return [field + ' is ' + show(after) + ', expected an object'];
    var old = isObject(before) ? before : {};
    for (var key in after) {
      if (!Object.prototype.hasOwnProperty.call(after, key) || sameValue(old[key], after[key])) continue;
      var mark = after[key];
      if (!isObject(mark)) problems.push(field + '.' + key + ' is ' + show(mark) + ', expected an object');
      else if (mark.user !== user.name) problems.push(field + '.' + key + ' of account ' + show(mark.user) + ' written by ' + show(user.name));
      else if (typeof mark.why !== 'string' || mark.why.length === 0) problems.push(field + '.' + key + ' says no why');
    }
    return problems;
  }
  function controlEntryProblems(entry, user) {
    if (!isObject(entry)) return ['controls history entry ' + show(entry) + ' is not an object'];
    if (entry.user !== user.name) return ['controls history entry of account ' + show(entry.user) + ' written by ' + show(user.name)];
    if (CONTROL_ACTIONS.indexOf(entry.action) < 0) return ['controls history action ' + show(entry.action) + ' is unknown'];
    if (typeof entry.at !== 'string' || !ISO_DATE.test(entry.at)) return ['controls history entry at is ' + show(entry.at) + ', expected an ISO date'];
    if (typeof entry.why !== 'string' || entry.why.length === 0) return ['controls history entry says no why'];
    return [];
  }
  function controlsProblems(newDoc, previous, user, trusted, operator) {
    if (newDoc._id !== CONTROLS_ID) return [show(CONTROLS_TYPE) + ' is the type of ' + show(CONTROLS_ID) + ' only'];
    if (!trusted && !operator) return [show(user.name) + ' may not pause steps or drain sites: operators do'];
    if (!Array.isArray(newDoc.history)) return ['controls history is missing'];
    var old = previous !== null && Array.isArray(previous.history) ? previous.history : [];
    if (newDoc.history.length < old.length) return ['controls history entries cannot be removed'];
    var i;
    for (i = 0; i < old.length; i++) if (!sameValue(old[i], newDoc.history[i])) return ['controls history entry ' + i + ' cannot change'];
    if (trusted) return [];
    var problems = [];
    var appended = newDoc.history.slice(old.length);
    for (i = 0; i < appended.length; i++) problems = problems.concat(controlEntryProblems(appended[i], user));
    var fields = ['paused', 'drained'];
    var changed = false;
    for (i = 0; i < fields.length; i++) {
      var before = previous === null ? undefined : previous[fields[i]];
      problems = problems.concat(controlMarkProblems(fields[i], before, newDoc[fields[i]], user));
      if (!sameValue(before, newDoc[fields[i]])) changed = true;
    }
    if (changed && appended.length === 0) problems.push('paused and drained cannot change without a controls history entry');
    return problems;
  }
`;
