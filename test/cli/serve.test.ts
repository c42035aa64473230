// The real CLI as an operator runs it: `tokenguard serve` with a bad config stops at start-up with
// exit code 1 and the path of the bad field; --help and --version work; a running server answers
// over HTTPS and exits 0 on SIGTERM after finishing what it was doing.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from 'node:https';
import { PROJECT_ROOT } from '../helpers/tls.js';
import { reviewByPrefix } from '../helpers/fixtures.js';
import { httpsCall } from '../helpers/server.js';
import { testCerts } from '../helpers/server.js';
import { tempDir } from '../helpers/temp-dir.js';
import { flagOverrides, isServiceLink } from '../../src/cli/serve.js';
import { buildInfo } from '../../src/observability/build-info.js';

const MAIN = join(PROJECT_ROOT, 'dist', 'src', 'cli', 'main.js');
const dir = tempDir('tokenguard-cli-');

function writeConfig(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

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

  it('an unknown flag is a usage error (exit 2) in one line of our own words, not parseArgs\'', () => {
    const r = run(['serve', '--prot', '1']);
    assert.equal(r.status, 2);
    assert.equal(r.stderr, 'tokenguard serve: unknown flag --prot (see tokenguard serve --help)\n');
    const check = run(['check', '--foo', 'x.yaml']);
    assert.equal(check.status, 2);
    assert.equal(check.stderr, 'tokenguard check: unknown flag --foo (see tokenguard check --help)\n');
    assert.equal(run(['serve', '--port']).stderr, 'tokenguard serve: flag --port needs a value (see tokenguard serve --help)\n');
    assert.equal(run(['serve', '--dev=yes']).stderr, 'tokenguard serve: flag --dev takes no value (see tokenguard serve --help)\n');
    assert.equal(run(['audit', 'extra']).stderr, 'tokenguard audit: unexpected argument "extra": this command takes flags only (see tokenguard audit --help)\n');
  });

  it('npx tokenguard works from a checkout after the build, as the README calls it (tokenguard is on no PATH)', () => {
    const r = spawnSync('npx', ['--no-install', 'tokenguard', '--version'], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^tokenguard \d+\.\d+\.\d+ /);
  });

  it('every command and group answers --help with exit 0', () => {
    for (const args of [['token', '--help'], ['token', '-h'], ['dev', '--help'], ['token', 'inspect', '--help'], ['dev', 'register', '--help'], ['dev', 'unregister', '--help'], ['check', '--help'], ['audit', '--help'], ['serve', '-h']]) {
      const r = run(args);
      assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stdout, /^Usage: tokenguard /, args.join(' '));
    }
    assert.match(run(['token', '--help']).stdout, /^\s+token inspect\s+decode a service-account token/m);
    assert.match(run(['dev', '--help']).stdout, /^\s+dev register\s+.*\n\s+dev unregister\s+/m);
    const missing = run(['dev']);
    assert.equal(missing.status, 2);
    assert.equal(missing.stderr, 'tokenguard dev: missing a subcommand (see tokenguard dev --help)\n');
    assert.equal(run(['token', 'decode']).stderr, 'tokenguard token: unknown subcommand "decode" (see tokenguard token --help)\n');
    assert.equal(run(['frobnicate']).stderr, 'tokenguard: unknown command "frobnicate" (see tokenguard --help)\n');
  });

  it('--kubeconfig /dev/null says it defines no cluster, not client-node\'s TypeError', () => {
    const r = run(['check', '--kubeconfig', '/dev/null', join(PROJECT_ROOT, 'test/fixtures/manifests/check/apps/web.yaml')]);
    assert.equal(r.status, 2);
    assert.equal(r.stderr, 'tokenguard check: cannot load kubeconfig /dev/null: it defines no cluster (is it a kubeconfig? kind and minikube write one to ~/.kube/config)\n');
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

  it('a bad port says the same whether it came from --port or TOKENGUARD_PORT, naming which', () => {
    for (const value of ['99999', 'abc']) {
      const flag = run(['serve', '--no-cluster', '--port', value]);
      const env = run(['serve', '--no-cluster'], { TOKENGUARD_PORT: value });
      assert.equal(flag.status, 2);
      assert.equal(env.status, 2);
      assert.equal(flag.stderr, `tokenguard serve: --port must be a port number from 0 to 65535, got "${value}" (see tokenguard serve --help)\n`);
      assert.equal(env.stderr, `tokenguard serve: TOKENGUARD_PORT must be a port number from 0 to 65535, got "${value}" (see tokenguard serve --help)\n`);
    }
  });

  it('a Kubernetes service link in TOKENGUARD_PORT (a Service named tokenguard) is not a setting: the server starts and says so', async () => {
    const certs = testCerts();
    const link = 'tcp://10.0.0.127:443';
    const child = spawn(process.execPath, [MAIN, 'serve', '--no-cluster', '--address', '127.0.0.1', '--tls-cert', certs.certFile, '--tls-key', certs.keyFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // What enableServiceLinks gives every pod in the namespace of a Service named tokenguard, port 443.
      env: {
        ...process.env,
        TOKENGUARD_PORT: link,
        TOKENGUARD_SERVICE_HOST: '10.0.0.127',
        TOKENGUARD_SERVICE_PORT: '443',
        TOKENGUARD_PORT_443_TCP: link,
        TOKENGUARD_PORT_443_TCP_ADDR: '10.0.0.127',
        TOKENGUARD_PORT_443_TCP_PORT: '443',
        TOKENGUARD_PORT_443_TCP_PROTO: 'tcp',
        // The port comes from the config file instead (as the Deployment's does: 8443 by default).
        TOKENGUARD_CONFIG: writeConfig('service-link.yaml', 'server:\n  port: 0\n'),
      },
    });
    const log = collectLog(child);
    try {
      const ignored = await log.waitFor((e) => e.msg === 'ignored a Kubernetes service link, not a setting');
      assert.deepEqual([ignored.variable, ignored.value], ['TOKENGUARD_PORT', link]);
      const started = await log.waitFor((e) => e.msg === 'tokenguard started');
      assert.notEqual(new URL(started.addresses[0]).port, '443');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('a port given on purpose in TOKENGUARD_PORT is honoured; anything else that is not a service link is still refused', () => {
    const overrides = flagOverrides({}, { TOKENGUARD_PORT: '9443' });
    assert.equal(overrides.server?.port, 9443);
    assert.equal(flagOverrides({ port: '7443' }, { TOKENGUARD_PORT: 'tcp://10.0.0.127:443' }).server?.port, 7443);
    assert.equal(flagOverrides({}, { TOKENGUARD_PORT: 'tcp://10.0.0.127:443' }).server?.port, undefined);
    for (const value of ['tcp://', 'http://10.0.0.1:443/x', '443/tcp']) {
      assert.throws(
        () => flagOverrides({}, { TOKENGUARD_PORT: value }),
        (err: Error) => err.message === `TOKENGUARD_PORT must be a port number from 0 to 65535, got ${JSON.stringify(value)}`,
      );
    }
    // A service link is never a value, even on a flag: --port keeps its own check.
    assert.throws(() => flagOverrides({ port: 'tcp://10.0.0.127:443' }, {}), /--port must be a port number/);
    assert.equal(isServiceLink('udp://[fd00::1]:53'), true);
    assert.equal(isServiceLink('8443'), false);
  });

  it('a bad value in the environment is reported like the file, naming its key', () => {
    const r = run(['serve', '--no-cluster'], { TOKENGUARD_LOG_LEVEL: 'chatty' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /invalid configuration in flags and environment:\n\s+- log\.level: must be one of/);
  });

  it('--mode sets the default mode without a config file; a bad one is a usage error', () => {
    assert.equal(run(['serve', '--mode', 'strict']).stderr, 'tokenguard serve: --mode must be enforce, warn or off, got "strict" (see tokenguard serve --help)\n');
  });

  it('missing certificate files stop start-up with the file named', () => {
    const r = run(['serve', '--no-cluster', '--port', '0', '--tls-cert', join(dir, 'nope.crt'), '--tls-key', join(dir, 'nope.key')]);
    assert.equal(r.status, 1);
    // One line: what was wrong and what to do; no log line of what start-up did meanwhile follows it.
    assert.equal(
      r.stderr,
      `tokenguard serve: cannot read TLS certificate ${join(dir, 'nope.crt')}: no such file; run npx tokenguard serve --dev (it generates development certificates), or pass --tls-cert and --tls-key\n`,
    );
    assert.equal(r.stdout, '', 'no log line after the error');
  });

  it('a port in use: one line naming the address and what to do', async () => {
    const certs = testCerts();
    const first = spawn(process.execPath, [MAIN, 'serve', '--no-cluster', '--address', '127.0.0.1', '--port', '0', '--tls-cert', certs.certFile, '--tls-key', certs.keyFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      const started = await collectLog(first).waitFor((e) => e.msg === 'tokenguard started');
      const port = new URL(started.addresses[0]).port;
      const r = run(['serve', '--no-cluster', '--address', '127.0.0.1', '--port', port, '--tls-cert', certs.certFile, '--tls-key', certs.keyFile]);
      assert.equal(r.status, 1);
      assert.equal(r.stderr, `tokenguard serve: cannot listen on 127.0.0.1:${port}: the address is in use; stop the process using it, or choose another --port\n`);
      assert.equal(r.stdout, '');
    } finally {
      first.kill('SIGKILL');
    }
  });

  it('--dev binds the address it announces: 127.0.0.1 unless --address says otherwise; --mode shows in the banner', async () => {
    const certs = testCerts();
    const child = spawn(process.execPath, [MAIN, 'serve', '--dev', '--no-cluster', '--mode', 'enforce', '--port', '0', '--tls-cert', certs.certFile, '--tls-key', certs.keyFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    try {
      const started = await collectLog(child).waitFor((e) => e.msg === 'tokenguard started');
      assert.equal(started.mode, 'enforce');
      const port = new URL(started.addresses[0]).port;
      assert.deepEqual(started.addresses, [`https://127.0.0.1:${port}`]);
      assert.deepEqual([started.version, started.revision], [buildInfo().version, buildInfo().revision], 'the start-up line says which build runs');
      assert.equal(started.listening, `127.0.0.1:${port} (this machine only)`);
      const deadline = Date.now() + 5000;
      while (!stderr.includes('register with') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.match(stderr, new RegExp(`^tokenguard is serving on https://127\\.0\\.0\\.1:${port} `, 'm'));
      assert.match(stderr, new RegExp(`^  listening:   127\\.0\\.0\\.1:${port} \\(this machine only\\)$`, 'm'));
      assert.match(stderr, /^ {2}mode: {8}enforce$/m);
      assert.match(stderr, new RegExp(`^  register with the cluster of your kubeconfig: npx tokenguard dev register --url https://127\\.0\\.0\\.1:${port}$`, 'm'));
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('serves over HTTPS, then on SIGTERM turns unready, finishes, and exits 0', async () => {
    const certs = testCerts();
    const child = spawn(process.execPath, [MAIN, 'serve', '--no-cluster', '--address', '127.0.0.1', '--port', '0', '--tls-cert', certs.certFile, '--tls-key', certs.keyFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const log = collectLog(child);
    try {
      const started = await log.waitFor((e) => e.msg === 'tokenguard started');
      const port = Number(new URL(started.addresses[0]).port);
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
