// The real CLI as an operator runs it: `tokenguard serve` with a bad config stops at start-up with
// exit code 1 and the path of the bad field; --help and --version work; a running server answers
// over HTTPS and exits 0 on SIGTERM after finishing what it was doing.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from 'node:https';
import { PROJECT_ROOT } from '../helpers/tls.js';
import { reviewByPrefix } from '../helpers/fixtures.js';
import { httpsCall } from '../helpers/server.js';
import { testCerts } from '../helpers/server.js';

const MAIN = join(PROJECT_ROOT, 'dist', 'src', 'cli', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'tokenguard-cli-'));

function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 20_000 });
}

describe('tokenguard CLI', () => {
  it('--version prints the package version and the source revision', () => {
    const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8'));
    const r = run(['--version']);
    assert.equal(r.status, 0);
    assert.match(r.stdout, new RegExp(`^tokenguard ${pkg.version.replaceAll('.', '\\.')} \\(revision ([0-9a-f]{40}(-dirty)?|unknown)\\)\n$`));
  });

  it('--help lists serve; serve --help documents every flag', () => {
    const top = run(['--help']);
    assert.equal(top.status, 0);
    assert.match(top.stdout, /^\s+serve\s+serve the admission webhook over HTTPS$/m);
    const serve = run(['serve', '--help']);
    assert.equal(serve.status, 0);
    for (const flag of ['--config', '--address', '--port', '--tls-cert', '--tls-key', '--client-ca', '--kubeconfig', '--no-cluster', '--log-level', '--dev']) {
      assert.match(serve.stdout, new RegExp(`^\\s+${flag}\\b`, 'm'), flag);
    }
  });

  it('an unknown flag is a usage error (exit 2)', () => {
    const r = run(['serve', '--prot', '1']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /Unknown option '--prot'/);
    assert.match(r.stderr, /see tokenguard serve --help/);
  });

  const badConfigs: [string, string, RegExp][] = [
    ['a wrong type', 'server:\n  port: "8443"\n', /^\s+- server\.port: must be integer$/m],
    ['an unknown key', 'servre:\n  port: 1\n', /^\s+- servre: unknown key$/m],
    ['a bad enum', 'mode: strict\n', /^\s+- mode: must be one of \["enforce","warn","off"\]$/m],
    ['a bad override', 'namespaceOverrides:\n  - namespaces: []\n', /^\s+- namespaceOverrides\[0\]\.namespaces: must NOT have fewer than 1 items$/m],
    ['a YAML syntax error', 'server:\n  port: [9443\nmode: warn\n', /^\s+- line \d+, column \d+: /m],
  ];
  for (const [what, yaml, expected] of badConfigs) {
    it(`serve --config with ${what} exits 1 naming the problem`, () => {
      const path = join(dir, 'bad.yaml');
      writeFileSync(path, yaml);
      const r = run(['serve', '--no-cluster', '--config', path]);
      assert.equal(r.status, 1, r.stderr);
      assert.ok(r.stderr.startsWith(`tokenguard serve: invalid configuration in ${path}:\n`), r.stderr);
      assert.match(r.stderr, expected);
    });
  }

  it('a bad value in the environment exits 1 naming the variable\'s key', () => {
    const r = run(['serve', '--no-cluster'], { TOKENGUARD_PORT: '99999' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /invalid configuration in flags and environment:\n\s+- server\.port: must be <= 65535/);
  });

  it('missing certificate files stop start-up with the file named', () => {
    const r = run(['serve', '--no-cluster', '--port', '0', '--tls-cert', join(dir, 'nope.crt'), '--tls-key', join(dir, 'nope.key')]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`cannot read TLS certificate ${join(dir, 'nope.crt').replace(/[.]/g, '\\.')}: ENOENT`));
  });

  it('serves over HTTPS, then on SIGTERM turns unready, finishes, and exits 0', async () => {
    const certs = testCerts();
    const child = spawn(process.execPath, [MAIN, 'serve', '--no-cluster', '--address', '127.0.0.1', '--port', '0', '--tls-cert', certs.certFile, '--tls-key', certs.keyFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const log = collectLog(child);
    try {
      const started = await log.waitFor((e) => e.msg === 'tokenguard started');
      const port = Number(new URL(started.url).port);
      const agent = new Agent({ keepAlive: true, ca: certs.ca });
      const review = reviewByPrefix('004');
      const res = await httpsCall(port, 'POST', '/validate?timeout=10s', JSON.stringify(review), { 'content-type': 'application/json' }, { agent });
      assert.equal(res.status, 200);
      assert.equal(res.json.response.uid, review.request.uid);
      assert.equal((await httpsCall(port, 'GET', '/readyz', undefined, {}, { agent })).status, 200);

      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
      agent.destroy();
      const entries = log.entries();
      assert.ok(entries.some((e) => e.msg === 'signal received' && e.signal === 'SIGTERM'));
      assert.ok(entries.some((e) => e.msg === 'admission decision' && e.uid === review.request.uid));
      await assert.rejects(httpsCall(port, 'GET', '/healthz', undefined, {}, { ca: certs.ca }), /ECONNREFUSED/);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

/** The child's JSON log lines as they arrive. */
function collectLog(child: ChildProcess) {
  const entries: any[] = [];
  let buffered = '';
  let stderr = '';
  const waiters: { match: (e: any) => boolean; resolve: (e: any) => void }[] = [];
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    let nl;
    while ((nl = buffered.indexOf('\n')) !== -1) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      const entry = JSON.parse(line);
      entries.push(entry);
      for (const w of waiters.filter((w) => w.match(entry))) w.resolve(entry);
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  return {
    entries: () => entries,
    waitFor(match: (e: any) => boolean): Promise<any> {
      const found = entries.find(match);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for a log line; stderr: ${stderr}`)), 10_000);
        waiters.push({ match, resolve: (e) => (clearTimeout(timer), resolve(e)) });
        child.once('exit', (code) => reject(new Error(`exited ${code} before the log line; stderr: ${stderr}`)));
      });
    },
  };
}
