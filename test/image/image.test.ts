// The container image (TOKENGUARD_IMAGE, built by hack/image.sh) as the Deployment runs it: uid
// 65532, read-only root, every capability dropped, no privilege escalation, config and TLS mounted
// read-only, no cluster. Checks what is in it (labels, user, SBOM; no shell, no package manager,
// no node_modules), its size above the base, its start time beside a bare node:http server in the
// same base, that it answers every captured AdmissionReview exactly as the tsc build does, and that
// SIGTERM drains and exits 0. Skips, saying why, without an image or a container engine.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { reviewFiles, REVIEWS_DIR } from '../helpers/fixtures.js';
import { Container, deploymentContainer, engineRun, imageUnderTest, inspectImage, podFiles, removeArgs } from '../helpers/container.js';
import { freePort } from '../helpers/ports.js';
import { makeCerts, PROJECT_ROOT, type CertSet } from '../helpers/tls.js';
import { TokenguardProcess } from '../helpers/tokenguard-process.js';
import { tempDir } from '../helpers/temp-dir.js';

/** Issue 18's targets. */
const MAX_ABOVE_BASE_BYTES = 20e6;
const MAX_START_OVER_BARE_MS = 700;
/** Measured rounds, after one warm-up round (the first runs of an image pay for mounting its layers and a cold page cache). */
const START_ROUNDS = 7;
/** Measurements at most, when the machine's load spoiled the previous one. */
const START_ATTEMPTS = 3;

const found = imageUnderTest();
const rootful = process.getuid?.() === 0;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** GET until 200; resolves with the ms since `t0`. */
async function untilOk(get: () => Promise<number>, t0: number, timeoutMs = 30_000): Promise<number> {
  for (;;) {
    if ((await get().catch(() => 0)) === 200) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) throw new Error(`no 200 within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function httpStatus(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the container image', { skip: 'skip' in found ? found.skip : false }, () => {
  if ('skip' in found) return;
  const { engine, image } = found;
  const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8'));
  const name = `tokenguard-image-test-${process.pid}`;
  let dir: string;
  let certs: CertSet;
  let files: { configFile: string; tlsDir: string };
  let reference: TokenguardProcess;
  let c: Container;
  const network = rootful ? 'bridge' : 'host';

  /** A container of the image, on a fresh host port, as the Deployment runs it. */
  const startContainer = async (containerName: string, extraFlags: string[] = []): Promise<{ container: Container; t0: number }> => {
    const port = await freePort();
    // Rootless podman has no bridge network here: the server then listens on the host port itself.
    const f = network === 'host' ? podFiles(join(dir, `pod-${port}`), certs, { server: { port }, cluster: { enabled: false } }) : files;
    const t0 = performance.now();
    const container = await Container.start({ engine, image, name: containerName, port, ca: certs.ca, network, configFile: f.configFile, tlsDir: f.tlsDir, extraFlags });
    return { container, t0 };
  };

  before(async () => {
    dir = tempDir('tokenguard-image-');
    certs = makeCerts(join(dir, 'certs'));
    files = podFiles(join(dir, 'pod'), certs, { cluster: { enabled: false } });
    reference = await TokenguardProcess.start({ dir, certs, config: { mode: 'warn' } });
    ({ container: c } = await startContainer(name));
    await c.untilReady();
  });

  after(async () => {
    await reference?.stop();
    await c?.remove();
  });

  it('is labelled with version and revision, runs as 65532, and says the same with --version', async () => {
    const { Config } = inspectImage(engine, image);
    const labels = Config.Labels;
    assert.equal(labels['org.opencontainers.image.version'], pkg.version);
    assert.match(labels['org.opencontainers.image.revision']!, /^[0-9a-f]{40}(-dirty)?$/);
    assert.equal(labels['org.opencontainers.image.licenses'], pkg.license);
    assert.equal(labels['org.opencontainers.image.title'], 'tokenguard');
    assert.equal(labels['org.opencontainers.image.description'], pkg.description);
    assert.match(labels['org.opencontainers.image.source']!, /^https:\/\//);
    assert.equal(Config.User, '65532:65532');
    const v = await engineRun(engine, ['run', '--rm', image, '--version']);
    assert.equal(v.code, 0, v.stderr);
    assert.equal(v.stdout, `tokenguard ${pkg.version} (revision ${labels['org.opencontainers.image.revision']})\n`);
  });

  it('holds the bundle, its notices and the SBOM: no shell, no package manager, no node_modules', async () => {
    const script = `
      const fs = require('node:fs');
      const walk = (d) => fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => e.isDirectory() ? walk(d + '/' + e.name) : [d + '/' + e.name]);
      const present = ['/bin/sh', '/bin/bash', '/usr/bin/sh', '/usr/bin/apt-get', '/usr/bin/dpkg', '/usr/local/bin/npm', '/usr/bin/npm', '/app/node_modules'].filter((p) => fs.existsSync(p));
      const sbom = JSON.parse(fs.readFileSync('/app/sbom.cdx.json', 'utf8'));
      console.log(JSON.stringify({ present, app: walk('/app'), sbom: { format: sbom.bomFormat, spec: sbom.specVersion, component: sbom.metadata.component.name + '@' + sbom.metadata.component.version, components: sbom.components.map((c) => c.name + '@' + c.version) } }));`;
    const r = await engineRun(engine, ['run', '--rm', '--entrypoint=/nodejs/bin/node', image, '-e', script]);
    assert.equal(r.code, 0, r.stderr);
    const seen = JSON.parse(r.stdout);
    assert.deepEqual(seen.present, [], 'no shell, no package manager, no node_modules');
    assert.ok(seen.app.includes('/app/dist/bundle/cli/main.js'));
    assert.ok(seen.app.includes('/app/dist/bundle/THIRD-PARTY-NOTICES.txt'));
    assert.deepEqual(seen.app.filter((f: string) => !/^\/app\/dist\/bundle\/(cli\/[\w-]+\.js|THIRD-PARTY-NOTICES\.txt)$/.test(f) && f !== '/app/sbom.cdx.json'), [], 'nothing else in /app');
    assert.equal(seen.sbom.format, 'CycloneDX');
    assert.equal(seen.sbom.component, `${pkg.name}@${pkg.version}`);
    for (const [dep, version] of Object.entries(pkg.dependencies as Record<string, string>)) {
      assert.ok(seen.sbom.components.includes(`${dep}@${version}`), `SBOM lists ${dep}@${version}`);
    }
    assert.ok(!seen.sbom.components.some((x: string) => x.startsWith('typescript@') || x.startsWith('esbuild@')), 'no dev dependency in the SBOM');
    // A shell entrypoint cannot even start.
    const sh = await engineRun(engine, ['run', '--rm', '--entrypoint=/bin/sh', image, '-c', 'true']);
    assert.notEqual(sh.code, 0);
  });

  it(`adds at most ${MAX_ABOVE_BASE_BYTES / 1e6} MB to its base`, async (t) => {
    const { imageSize, RECORDED_ABOVE_BASE_MB, RECORDED_TOLERANCE } = await import(pathToFileURL(join(PROJECT_ROOT, 'hack', 'image-size.mjs')).href);
    const s = imageSize(engine, image);
    t.diagnostic(`layers above ${s.base}: ${(s.aboveBaseBytes / 1e6).toFixed(2)} MB (image ${(s.imageBytes / 1e6).toFixed(1)} MB, base ${(s.baseBytes / 1e6).toFixed(1)} MB)`);
    process.stdout.write(`image size above the base: ${(s.aboveBaseBytes / 1e6).toFixed(2)} MB (target <= ${MAX_ABOVE_BASE_BYTES / 1e6} MB)\n`);
    assert.ok(s.aboveBaseBytes <= MAX_ABOVE_BASE_BYTES, `${s.aboveBaseBytes} bytes above the base`);
    // The figure the docs state (docs/installation.md, held to RECORDED_ABOVE_BASE_MB by test/docs.test.ts).
    const off = Math.abs(s.aboveBaseBytes / 1e6 - RECORDED_ABOVE_BASE_MB) / RECORDED_ABOVE_BASE_MB;
    assert.ok(
      off <= RECORDED_TOLERANCE,
      `${(s.aboveBaseBytes / 1e6).toFixed(2)} MB above the base, ${(off * 100).toFixed(0)} % off the recorded ${RECORDED_ABOVE_BASE_MB} MB: update RECORDED_ABOVE_BASE_MB in hack/image-size.mjs and docs/installation.md`,
    );
  });

  it('answers /healthz and /readyz', async () => {
    const health = await c.call('GET', '/healthz');
    assert.equal(health.status, 200);
    assert.deepEqual(health.json, { ok: true });
    const ready = await c.call('GET', '/readyz');
    assert.equal(ready.status, 200);
    assert.equal(ready.json.ready, true);
    assert.equal(ready.json.checks.cluster.reason, 'cluster access disabled (cluster.enabled: false or --no-cluster)');
    assert.deepEqual(Object.keys(ready.json.checks).sort(), ['cluster', 'config', 'shutdown', 'tls']);
  });

  it('answers /validate and /mutate as expected, and every captured AdmissionReview exactly as the tsc build does', async () => {
    const post = (target: Container | TokenguardProcess, route: string, body: string) =>
      target.call('POST', route, body, { 'content-type': 'application/json' });
    const fixture = (prefix: string) => readFileSync(join(REVIEWS_DIR, reviewFiles().find((f) => f.startsWith(prefix + '-'))!), 'utf8');
    // The expected bodies (test/fixtures/README.md, default policy, mode warn, no cluster).
    const sa = await post(c, '/validate', fixture('012'));
    assert.equal(sa.status, 200);
    assert.deepEqual(sa.json, {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: { uid: JSON.parse(fixture('012')).request.uid, allowed: true, warnings: ['token audience "api" is not allowed (volume "token-vol")'] },
    });
    const web = await post(c, '/mutate', fixture('003'));
    assert.equal(web.status, 200);
    assert.equal(web.json.response.patchType, 'JSONPatch');
    assert.deepEqual(JSON.parse(Buffer.from(web.json.response.patch, 'base64').toString('utf8')), [
      { op: 'add', path: '/metadata/labels/tokenguard.io~1pvc-token-risk', value: 'true' },
      { op: 'add', path: '/metadata/annotations/tokenguard.io~1pvc-token-risk', value: 'claims=data;tokens=istio-token,kube-api-access-9zkc8' },
    ]);
    const bad = await post(c, '/validate', '{"x":1}');
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.message, "invalid AdmissionReview: apiVersion: must have required property 'apiVersion'");
    // The same answers as the tsc build, review by review.
    for (const file of reviewFiles()) {
      const route = file.includes('-mutate-') ? '/mutate' : '/validate';
      const body = readFileSync(join(REVIEWS_DIR, file), 'utf8');
      const [fromImage, fromSource] = await Promise.all([post(c, route, body), post(reference, route, body)]);
      assert.equal(fromImage.status, fromSource.status, file);
      assert.deepEqual(fromImage.json, fromSource.json, file);
    }
  });

  it(`starts (podman run to the first /readyz 200, no cluster) within ${MAX_START_OVER_BARE_MS} ms of a bare node:http server in the same base`, async (t) => {
    const { runtimeBase } = await import(pathToFileURL(join(PROJECT_ROOT, 'hack', 'image-size.mjs')).href);
    const base: string = runtimeBase();
    const d = deploymentContainer();
    const bare = async (i: number): Promise<number> => {
      const port = await freePort();
      const cname = `${name}-bare-${i}`;
      await engineRun(engine, removeArgs(engine, cname));
      const listen = network === 'host' ? port : d.containerPort;
      const net = network === 'host' ? ['--network=host'] : [`--publish=127.0.0.1:${port}:${d.containerPort}`];
      const t0 = performance.now();
      const r = await engineRun(engine, ['run', '-d', `--name=${cname}`, ...net, ...d.flags, '--entrypoint=/nodejs/bin/node', base, '-e', `require('node:http').createServer((q, s) => s.end('ok')).listen(${listen})`]);
      try {
        if (r.code !== 0) throw new Error(`bare server: ${r.stderr}`);
        return await untilOk(() => httpStatus(port), t0);
      } finally {
        await engineRun(engine, removeArgs(engine, cname));
      }
    };
    const ours = async (i: number): Promise<number> => {
      const { container, t0 } = await startContainer(`${name}-start-${i}`);
      try {
        return await untilOk(async () => (await container.call('GET', '/readyz')).status, t0);
      } finally {
        await container.remove();
      }
    };
    type Round = { image: number; bare: number };
    const best = (rounds: Round[], f: (r: Round) => number) => Math.min(...rounds.map(f));
    const measure = async (attempt: number): Promise<{ over: number; lines: string[] }> => {
      await ours(-1);
      await bare(-1);
      const rounds: Round[] = [];
      for (let i = 0; i < START_ROUNDS; i++) {
        // Alternate which goes first, so a slow spell of the shared machine falls on both alike.
        rounds.push(i % 2 ? { bare: await bare(i), image: await ours(i) } : { image: await ours(i), bare: await bare(i) });
      }
      // Best against best: on this shared machine another tenant's load stretches some runs of
      // either by seconds; the fastest of 7 is each one's own cost. The medians are printed beside.
      const over = best(rounds, (r) => r.image) - best(rounds, (r) => r.bare);
      const row = (label: string, f: (r: Round) => number) =>
        `  ${label.padEnd(16)} ${rounds.map((r) => f(r).toFixed(0).padStart(5)).join(' ')} ms   best ${best(rounds, f).toFixed(0).padStart(5)} ms   median ${median(rounds.map(f)).toFixed(0).padStart(5)} ms`;
      return {
        over,
        lines: [
          `start to first 200, ${engine} run (${network} network), image /readyz (no cluster) vs bare node:http in ${base}; ${START_ROUNDS} rounds after a warm-up (attempt ${attempt}):`,
          row('image', (r) => r.image),
          row('bare node:http', (r) => r.bare),
          row('image - bare', (r) => r.image - r.bare),
          `  image best - bare best: ${over.toFixed(0)} ms (target <= ${MAX_START_OVER_BARE_MS} ms); median image - median bare: ${(median(rounds.map((r) => r.image)) - median(rounds.map((r) => r.bare))).toFixed(0)} ms`,
          `  machine: ${cpus().length} CPUs, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`,
        ],
      };
    };
    // When even the best runs were slowed (the machine busy throughout), measure again, after a
    // pause, up to START_ATTEMPTS times: every attempt is printed, the best one decides.
    const attempts: number[] = [];
    for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
      if (attempt > 1) await new Promise((r) => setTimeout(r, 10_000));
      const { over, lines } = await measure(attempt);
      for (const l of lines) t.diagnostic(l);
      process.stdout.write(lines.join('\n') + '\n');
      attempts.push(over);
      if (over <= MAX_START_OVER_BARE_MS) break;
    }
    const over = Math.min(...attempts);
    assert.ok(over <= MAX_START_OVER_BARE_MS, `the image's best start took ${over.toFixed(0)} ms longer than the bare server's best (attempts: ${attempts.map((a) => a.toFixed(0)).join(', ')} ms)`);
  });

  it('SIGTERM: unready at once, still answering during shutdownDelaySeconds, drained, exit 0', async () => {
    const config = readFileSync(files.configFile, 'utf8');
    const delaySeconds = Number(/shutdownDelaySeconds: (\d+)/.exec(config)![1]);
    const t0 = performance.now();
    await c.signal('SIGTERM');
    const unready = await untilOk(async () => ((await c.call('GET', '/readyz')).status === 503 ? 200 : 0), t0, 5000);
    assert.ok(unready < 2000, `unready ${unready.toFixed(0)} ms after SIGTERM`);
    const review = readFileSync(join(REVIEWS_DIR, reviewFiles().find((f) => f.startsWith('012-'))!), 'utf8');
    const during = await c.call('POST', '/validate', review, { 'content-type': 'application/json' });
    assert.equal(during.status, 200, 'reviews are still answered while unready');
    assert.equal(during.headers.connection, 'close', 'and the client is told to close its connection');
    assert.equal(await c.exitCode(), 0);
    const took = performance.now() - t0;
    assert.ok(took >= delaySeconds * 1000 - 500, `exited after ${took.toFixed(0)} ms, shutdownDelaySeconds is ${delaySeconds}`);
    const msgs = (await c.logLines()).map((l) => l.msg);
    for (const m of ['signal received', 'shutting down: unready', 'closing the listener, draining connections', 'drained: every connection closed']) {
      assert.ok(msgs.includes(m), `logged "${m}": ${msgs.join(' | ')}`);
    }
  });
});
