// The build info (`tokenguard --version`, and what a build_info metric reports): the tsc build reads
// package.json and asks git lazily; outside a git checkout the revision is `unknown`.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildInfo, fromCheckout, gitRevision, UNKNOWN_REVISION, versionText } from '../../src/observability/build-info.js';
import { PROJECT_ROOT } from '../helpers/tls.js';
import { tempDir } from '../helpers/temp-dir.js';

const REVISION = /^[0-9a-f]{40}(-dirty)?$/;

function git(dir: string, ...args: string[]): string {
  return execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args], { cwd: dir, encoding: 'utf8' }).trim();
}

describe('build info', () => {
  it('the tsc build: the version of package.json and the revision of this checkout', () => {
    const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8'));
    const info = buildInfo();
    assert.equal(info.version, pkg.version);
    if (existsSync(join(PROJECT_ROOT, '.git'))) assert.match(info.revision, REVISION);
    else assert.equal(info.revision, UNKNOWN_REVISION);
    assert.equal(buildInfo(), info, 'computed once');
  });

  it('the revision is the commit, -dirty with uncommitted changes, unknown outside a git checkout', () => {
    const dir = tempDir('tokenguard-build-info-');
    writeFileSync(join(dir, 'package.json'), '{"name":"x","version":"9.8.7"}\n');
    assert.deepEqual(fromCheckout(dir), { version: '9.8.7', revision: UNKNOWN_REVISION });
    git(dir, 'init', '-q');
    git(dir, 'add', 'package.json');
    git(dir, 'commit', '-q', '-m', 'one');
    const head = git(dir, 'rev-parse', 'HEAD');
    assert.equal(gitRevision(dir), head);
    writeFileSync(join(dir, 'package.json'), '{"name":"x","version":"9.8.8"}\n');
    assert.deepEqual(fromCheckout(dir), { version: '9.8.8', revision: `${head}-dirty` });
    // A folder inside some other checkout is not that checkout: no .git of its own, unknown.
    const sub = join(dir, 'sub');
    mkdirSync(sub);
    assert.equal(gitRevision(sub), UNKNOWN_REVISION);
  });

  it('--version names the revision, and says when it is unknown rather than printing an empty one', () => {
    const commit = '0123456789abcdef0123456789abcdef01234567';
    assert.equal(versionText({ version: '0.1.0', revision: commit }), `tokenguard 0.1.0 (revision ${commit})`);
    assert.equal(versionText({ version: '0.1.0', revision: `${commit}-dirty` }), `tokenguard 0.1.0 (revision ${commit}-dirty)`);
    for (const revision of [UNKNOWN_REVISION, '', ' '])
      assert.equal(versionText({ version: '0.1.0', revision }), 'tokenguard 0.1.0 (revision unknown: built without a source revision)', JSON.stringify(revision));
  });

  it('a plain `docker build .`: the Dockerfile\'s VERSION defaults to package.json\'s, REVISION to unknown', () => {
    const dockerfile = readFileSync(join(PROJECT_ROOT, 'Dockerfile'), 'utf8');
    const defaults = Object.fromEntries([...dockerfile.matchAll(/^ARG (\w+)=(\S+)$/gm)].map((m) => [m[1], m[2]]));
    const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8'));
    assert.equal(defaults.VERSION, pkg.version, 'bump the Dockerfile\'s ARG VERSION with package.json');
    assert.equal(defaults.REVISION, UNKNOWN_REVISION);
    // The stages take them over (an ARG with a value inside a stage would shadow the default).
    assert.deepEqual([...dockerfile.matchAll(/^ARG (VERSION|REVISION)\b.*$/gm)].map((m) => m[0]), ['ARG VERSION=0.1.0', 'ARG REVISION=unknown', 'ARG VERSION', 'ARG REVISION', 'ARG VERSION', 'ARG REVISION'].map((l) => l.replace('0.1.0', pkg.version)));
  });
});
