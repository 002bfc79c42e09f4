import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { publicUrl } from '../../dashboard/databases.js';
import { checkDocumentId } from '../../dashboard/document.js';
import { crossSiteReason, serialise } from '../../dashboard/http.js';
import { sessionCookie, tokenFrom } from '../../dashboard/sessions.js';

const request = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;

describe('dashboard helpers', () => {
  it('shows server URLs without user-info or query', () => {
    assert.equal(publicUrl('http://admin:secret@couch.example:5984/'), 'http://couch.example:5984');
    assert.equal(publicUrl('https://couch.example/db?password=x'), 'https://couch.example/db');
    assert.equal(serialise({ url: 'see http://u:p@host:1/x' }), '{"url":"see http://host:1/x"}');
  });

  it('accepts data document ids only', () => {
    assert.equal(checkDocumentId('run_lg23b002_000'), 'run_lg23b002_000');
    for (const bad of ['_design/mesh', '_local/x', '', 'x'.repeat(600), 42, undefined]) assert.throws(() => checkDocumentId(bad), /document id/);
  });

  it('reads the session token from the cookie header, and sets it HttpOnly and SameSite=Strict', () => {
    assert.equal(tokenFrom('a=1; mesh_session=abc-_1; b=2'), 'abc-_1');
    assert.equal(tokenFrom('mesh_sessionx=1'), undefined);
    assert.equal(tokenFrom(undefined), undefined);
    assert.match(sessionCookie('t', false), /^mesh_session=t; HttpOnly; SameSite=Strict; Path=\/; Max-Age=\d+$/);
    assert.match(sessionCookie('t', true), /; Secure$/);
  });

  it('refuses state changes without the custom header or from another origin', () => {
    assert.equal(crossSiteReason(request({ host: 'h:1', 'x-mesh-dashboard': '1' }), true), undefined);
    assert.equal(crossSiteReason(request({ host: 'h:1', 'x-mesh-dashboard': '1', origin: 'http://h:1' }), true), undefined);
    assert.match(crossSiteReason(request({ host: 'h:1' }), true) ?? '', /x-mesh-dashboard/);
    assert.match(crossSiteReason(request({ host: 'h:1', 'x-mesh-dashboard': '1', origin: 'http://evil:1' }), true) ?? '', /not this dashboard/);
    assert.match(crossSiteReason(request({ host: 'h:1', origin: 'nonsense' }), false) ?? '', /malformed/);
    assert.equal(crossSiteReason(request({ host: 'h:1' }), false), undefined);
  });
});
