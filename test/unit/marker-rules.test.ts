/**
 * The replication marker (store/markers.ts) under the write rules: core/write-rules.ts and the
 * generated validate_doc_update agree that only the coordinator's role (a server admin holds its
 * powers; the embedded server's admin party holds every power) may write or carry one.
 */
import assert from 'node:assert/strict';
import type { UserContext } from '../../core/roles.js';
import { writeProblems } from '../../core/write-rules.js';
import { designDocument, writePolicy } from '../../couchapp/design.js';
import { MARKER_TYPE, markerId } from '../../store/markers.js';
import { siteFixture as site } from '../support/records.js';

const input = {
  doc_type: 'daqdocument',
  steps: [{ name: 'proc0', site: 'modane', run: [], out: '', timeout_s: 1, max_attempts: 2, lease_s: 60, executor: 'command' as const }],
  sites: { modane: site('modane', ['proc0']), kit: site('kit', []) },
  ingest: { site: 'modane', pattern: '', quiet_s: 1 },
};
const policy = writePolicy(input);
const vdu = new Function(`return (${designDocument(input).validate_doc_update});`)() as (n: unknown, o: unknown, u: unknown, s: unknown) => void;

function verdict(newDoc: unknown, oldDoc: unknown, user: UserContext): string {
  const mine = writeProblems(newDoc, oldDoc, user, policy).join('; ');
  let server = '';
  try {
    vdu(structuredClone(newDoc), oldDoc === null ? null : structuredClone(oldDoc), structuredClone(user), {});
  } catch (error) {
    server = String((error as { forbidden?: unknown }).forbidden);
  }
  assert.equal(server, mine, 'validate_doc_update and core/write-rules disagree');
  return mine;
}

const marker = (n: number) => ({
  _id: markerId('modane'),
  type: MARKER_TYPE,
  site: 'modane',
  n,
  written: '2026-12-01T12:00:00.000Z',
  since: '2026-12-01T11:00:00.000Z',
  interval_s: 30,
  by: 'coordinator/modane',
});

describe('replication markers under the write rules', () => {
  it("the coordinator's role, a server admin and the admin party write and rewrite markers", () => {
    for (const user of [
      { name: 'coord', roles: ['mesh-coordinator'] },
      { name: 'admin', roles: ['_admin'] },
      { name: null, roles: ['_admin'] },
    ]) {
      assert.equal(verdict(marker(1), null, user), '', JSON.stringify(user));
      assert.equal(verdict(marker(2), marker(1), user), '', JSON.stringify(user));
    }
  });

  it('agents (of any site), operators and readers may not, new or rewritten', () => {
    const refused = /may not write "mesh-marker" documents: the coordinator does/;
    for (const user of [
      { name: 'modane-agent', roles: ['mesh-agent:modane'] },
      { name: 'kit-agent', roles: ['mesh-agent:kit'] },
      { name: 'op', roles: ['mesh-operator'] },
      { name: 'reader', roles: ['mesh-reader'] },
      { name: 'nobody', roles: [] },
    ]) {
      assert.match(verdict(marker(1), null, user), refused, JSON.stringify(user));
      assert.match(verdict(marker(9), marker(1), user), refused, JSON.stringify(user));
    }
  });

  it('a marker cannot turn into another type, nor another document into a marker', () => {
    const coord = { name: 'coord', roles: ['mesh-coordinator'] };
    assert.match(verdict({ ...marker(2), type: 'mesh-assignment' }, marker(1), coord), /type cannot change/);
    assert.match(verdict(marker(1), { _id: markerId('modane'), type: 'mesh-note' }, coord), /type cannot change/);
  });
});
