import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { credentialFileEnv } from '../../cli/credential-files.js';
import { credentialsFor } from '../../config/credentials.js';
import { testFolder } from '../support/folders.js';

describe('credentials forwarded to a remote process (lyon over SSH)', function () {
  it('turns a password from the environment into a 0600 file; what is forwarded names the file, never the password', async function () {
    const dir = join(testFolder('mesh-credfiles-'), 'secrets');
    const env = { MESH_KIT_USER: 'lyon-agent', MESH_KIT_PASSWORD: 'kit-secret-Zz9' };
    const forwarded = await credentialFileEnv(['kit'], env, dir);
    assert.deepEqual(Object.keys(forwarded).sort(), ['MESH_KIT_PASSWORD_FILE', 'MESH_KIT_USER']);
    assert.ok(!JSON.stringify(forwarded).includes('kit-secret-Zz9'));
    assert.equal(statSync(forwarded.MESH_KIT_PASSWORD_FILE).mode & 0o777, 0o600);
    assert.deepEqual(credentialsFor('kit', forwarded), { user: 'lyon-agent', password: 'kit-secret-Zz9' });
  });

  it('forwards an existing password file as it is, and nothing for a site without a user', async function () {
    const dir = testFolder('mesh-credfiles-');
    const file = join(dir, 'given.pw');
    writeFileSync(file, 'given\n', { mode: 0o600 });
    const forwarded = await credentialFileEnv(['kit', 'modane'], { MESH_KIT_USER: 'u', MESH_KIT_PASSWORD_FILE: file }, join(dir, 'secrets'));
    assert.deepEqual(forwarded, { MESH_KIT_USER: 'u', MESH_KIT_PASSWORD_FILE: file });
  });
});
