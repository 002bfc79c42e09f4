import assert from 'node:assert/strict';
import { documentPath, excerpt, requestUrl } from '../../store/http.js';
import { documentProblems } from '../../core/document.js';

describe('couch-http', () => {
  const transport = { url: 'http://127.0.0.1:5984', database: 'datadb', headers: {}, timeoutMs: 1000, maxBytes: 1000 };
  it('encodes document ids; only a leading _design/ or _local/ keeps its slash', () => {
    assert.equal(documentPath('_design/mesh'), '_design/mesh');
    assert.equal(documentPath('_local/mesh-changes-a'), '_local/mesh-changes-a');
    // nano left any id holding "_local" unencoded: "x_local/../../_config" reached another URL.
    assert.equal(documentPath('x_local/../../_config'), 'x_local%2F..%2F..%2F_config');
    assert.equal(documentPath('a b?rev=1#f'), 'a%20b%3Frev%3D1%23f');
    assert.equal(documentPath('_local/a/b'), '_local/a%2Fb');
  });
  it('sends view keys as JSON and leaves out undefined parameters', () => {
    const url = new URL(requestUrl(transport, { path: '_design/mesh/_view/ready', qs: { startkey: ['proc0', ''], limit: 5, skip: undefined } }));
    assert.equal(url.pathname, '/datadb/_design/mesh/_view/ready');
    assert.equal(url.searchParams.get('startkey'), '["proc0",""]');
    assert.equal(url.searchParams.get('limit'), '5');
    assert.equal(url.searchParams.has('skip'), false);
    assert.equal(requestUrl({ ...transport, database: '' }, { path: '_scheduler/docs' }), 'http://127.0.0.1:5984/_scheduler/docs');
  });
  it('shows an answer briefly: no tags, no control characters, no megabytes', () => {
    assert.equal(excerpt('<h1>Bad\tGateway</h1>\r\n\u001b[2J'), 'Bad Gateway [2J');
    assert.equal(excerpt('x'.repeat(1000), 10), `${'x'.repeat(10)}…`);
  });
});

describe('documentProblems on values the agent reads', () => {
  const base = { _id: 'a', type: 'daqdocument', run_name: 'lg23b002', file_number: 1, file: '/data/x', status: 'closed', history: [] };
  it('accepts a well-formed document', () =>
    assert.deepEqual(documentProblems({ ...base, size_in_bytes: 3, checksum: { sha256: 'a'.repeat(64) } }, ['proc0']), []));
  it('names each bad field', () => {
    assert.deepEqual(documentProblems({ ...base, size_in_bytes: -1 }, ['proc0']), ['size_in_bytes is a number, expected a non-negative integer']);
    assert.deepEqual(documentProblems({ ...base, checksum: 'abc' }, ['proc0']), ['checksum is a string, expected { "sha256": 64 hex digits }']);
    assert.deepEqual(documentProblems({ ...base, file_number: 1e300 }, ['proc0']), ['file_number is a number, expected an integer']);
  });
  it('refuses nesting deeper than 64 levels without overflowing the stack', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    assert.deepEqual(documentProblems({ ...base, extra: deep }, ['proc0']), ['nested deeper than 64 levels']);
  });
});
