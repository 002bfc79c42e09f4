/**
 * The quoting of config words in the files `mesh deploy` writes (systemd.service(5) command lines,
 * environment files, crontab lines, authorized_keys options), the outputs root of a step, and the
 * environment file reader `mesh doctor --env-file` uses. A real shell decodes the shell forms.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { authorizedKeysCommand, cronCommandLine, doubleQuoted, envFileValue, systemdCommandLine } from '../../cli/deploy/quote.js';
import { outRoot } from '../../cli/doctor/scope.js';
import { parseEnvFile } from '../../config/env-file.js';
import { isMeshError } from '../../core/errors.js';

describe('deploy quoting', () => {
  it('writes systemd command lines whose words reach the program as written', () => {
    assert.equal(
      systemdCommandLine(['/usr/local/bin/mesh', '--config', '/etc/couchmesh/mesh.json', 'agent']),
      '/usr/local/bin/mesh --config /etc/couchmesh/mesh.json agent',
    );
    // Spaces and quotes in double quotes; % (specifiers) and $ (variables) doubled.
    assert.equal(systemdCommandLine(['/opt/my mesh', '50%', '$HOME', 'a"b\\c']), '"/opt/my mesh" "50%%" "$$HOME" "a\\"b\\\\c"');
    assert.throws(
      () => systemdCommandLine(['a\nb']),
      (e: unknown) => isMeshError(e, 'CONFIG_INVALID'),
    );
  });

  it('refuses what an environment file or a crontab line cannot carry as written', () => {
    assert.equal(envFileValue('MESH_KIT_USER', 'lyon-agent'), 'MESH_KIT_USER=lyon-agent');
    assert.throws(() => envFileValue('MESH_KIT_PASSWORD_FILE', '/a b'), /cannot go into an environment file/);
    assert.throws(() => cronCommandLine(['/bin/echo', '100%']), /contains %/);
  });

  it('double-quotes for a POSIX shell, and authorized_keys escapes only the double quote', () => {
    for (const text of [`it's "quoted" $HOME \`id\` \\n`, "'a' 'b'"])
      assert.equal(execFileSync('/bin/sh', ['-c', `printf %s ${doubleQuoted(text)}`], { encoding: 'utf8' }), text);
    assert.equal(authorizedKeysCommand('echo "x" \\y'), 'command="echo \\"x\\" \\y"');
  });

  it('finds the folder under which a step writes its outputs', () => {
    assert.equal(outRoot('/sps/edelweis/raw/{run_name}/{run_name}_{file_number}'), '/sps/edelweis/raw');
    assert.equal(outRoot('/data/out/run_{run_name}.root'), '/data/out');
    assert.equal(outRoot('/data/fixed'), '/data');
    assert.equal(outRoot('out/{run_name}'), undefined, 'relative: nothing to check here');
  });

  it('reads environment files as systemd does their simple form, never showing a value in an error', () => {
    assert.deepEqual(parseEnvFile('# c\n; c\n\nA=1\nB="two words"\nC=\'x\'\n', 'f'), { A: '1', B: 'two words', C: 'x' });
    assert.throws(
      () => parseEnvFile('A=1\nexport SECRET=hunter2\n', 'f'),
      (e: unknown) => isMeshError(e, 'CONFIG_INVALID') && /line 2/.test(String(e)) && !String(e).includes('hunter2'),
    );
  });
});
