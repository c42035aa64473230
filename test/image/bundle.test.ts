// The esbuild bundle (dist/bundle/, what the container image runs; npm run build makes it) behaves
// as the tsc build: it serves every captured AdmissionReview with the same answer, reports a bad
// configuration in the same words (its ajv validators are precompiled: hack/ajv-precompile.mjs),
// and carries its version and revision stamped in, wherever it is copied.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { reviewFiles, REVIEWS_DIR } from '../helpers/fixtures.js';
import { makeCerts, PROJECT_ROOT } from '../helpers/tls.js';
import { BUNDLE_CLI, CLI, TokenguardProcess } from '../helpers/tokenguard-process.js';
import { tempDir } from '../helpers/temp-dir.js';

const JSON_TYPE = { 'content-type': 'application/json' };
const run = (cli: string, args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 20_000 });

describe('the bundle', () => {
  let dir: string;
  let bundled: TokenguardProcess;
  let source: TokenguardProcess;

  before(async () => {
    dir = tempDir('tokenguard-bundle-');
    const certs = makeCerts(join(dir, 'certs'));
    [bundled, source] = await Promise.all([
      TokenguardProcess.start({ dir, certs, cli: BUNDLE_CLI, config: { mode: 'warn' } }),
      TokenguardProcess.start({ dir, certs, config: { mode: 'warn' } }),
    ]);
  });

  after(async () => {
    await Promise.all([bundled?.stop(), source?.stop()]);
  });

  it('answers every captured AdmissionReview exactly as the tsc build does', async () => {
    for (const file of reviewFiles()) {
      const route = file.includes('-mutate-') ? '/mutate' : '/validate';
      const review = JSON.parse(readFileSync(join(REVIEWS_DIR, file), 'utf8'));
      const [a, b] = await Promise.all([bundled.review(route, review), source.review(route, review)]);
      assert.equal(a.status, 200, file);
      assert.equal(a.status, b.status, file);
      assert.deepEqual(a.json, b.json, file);
    }
    const [a, b] = await Promise.all([bundled.call('POST', '/validate', '{"x":1}', JSON_TYPE), source.call('POST', '/validate', '{"x":1}', JSON_TYPE)]);
    assert.equal(a.status, 400);
    assert.deepEqual(a.json, b.json);
  });

  it('reports a bad configuration in the same words', () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'server:\n  port: "x"\n  bogus: 1\nmode: strict\npolicies:\n  nope: {}\n  projected-token-lifetime: {minSeconds: -1}\n');
    const [a, b] = [run(BUNDLE_CLI, ['serve', `--config=${bad}`, '--no-cluster']), run(CLI, ['serve', `--config=${bad}`, '--no-cluster'])];
    assert.equal(a.status, 1);
    assert.equal(a.stderr, b.stderr);
    assert.match(a.stderr, /policies\.projected-token-lifetime\.minSeconds: must be >= 600/);
  });

  it('carries its version and revision wherever it is copied (stamped at bundle time)', () => {
    const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8'));
    const here = run(BUNDLE_CLI, ['--version']);
    assert.equal(here.status, 0);
    assert.match(here.stdout, new RegExp(`^tokenguard ${pkg.version.replaceAll('.', '\\.')} \\(revision [^)]+\\)\n$`));
    const elsewhere = join(dir, 'copy');
    cpSync(join(PROJECT_ROOT, 'dist', 'bundle'), elsewhere, { recursive: true });
    const there = run(join(elsewhere, 'cli', 'main.js'), ['--version']);
    assert.equal(there.stdout, here.stdout, 'no package.json or git needed at run time');
  });
});
