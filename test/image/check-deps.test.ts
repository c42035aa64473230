// hack/check-deps.mjs, the image build's guard against an `npm ci` that exited 0 with a partial
// node_modules: it names what is missing, and passes a complete tree.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../helpers/tls.js';
import { tempDir } from '../helpers/temp-dir.js';

const CHECK = join(PROJECT_ROOT, 'hack', 'check-deps.mjs');

describe('hack/check-deps.mjs', () => {
  it('fails naming a locked package missing from node_modules, passes once it is there', () => {
    const dir = tempDir('tokenguard-check-deps-');
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'demo', version: '1.0.0', dependencies: { yaml: '2.9.1' } }));
    const lock = {
      name: 'demo',
      version: '1.0.0',
      lockfileVersion: 3,
      requires: true,
      packages: { '': { name: 'demo', version: '1.0.0', dependencies: { yaml: '2.9.1' } }, 'node_modules/yaml': { version: '2.9.1', license: 'ISC' } },
    };
    writeFileSync(join(dir, 'package-lock.json'), JSON.stringify(lock));
    mkdirSync(join(dir, 'node_modules'));
    const missing = spawnSync(process.execPath, [CHECK], { cwd: dir, encoding: 'utf8' });
    assert.equal(missing.status, 1, missing.stderr);
    assert.match(missing.stderr, /^dependency tree incomplete: /);
    assert.match(missing.stderr, /^ {2}missing: yaml@2\.9\.1, required by demo@1\.0\.0$/m);
    cpSync(join(PROJECT_ROOT, 'node_modules', 'yaml'), join(dir, 'node_modules', 'yaml'), { recursive: true });
    const complete = spawnSync(process.execPath, [CHECK], { cwd: dir, encoding: 'utf8' });
    assert.equal(complete.status, 0, complete.stderr);
    assert.equal(complete.stdout, 'dependency tree complete (npm ls --all)\n');
  });
});
