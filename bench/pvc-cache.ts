// PVC cache benchmark: 100,000 pods across 1,000 namespaces served by the fake API server, cached
// by the real ClusterCache (real client-node, HTTPS, pagination of 500), then PVC DELETE reviews
// against a real tokenguard HTTPS server over keep-alive connections.
//
// Measured:
// - ready: from ClusterCache.start() to every cache synced (LIST of all pods, nodes, namespaces);
// - memory per cached pod: heap delta (v8 heapUsed after a full GC, before vs after the sync, the
//   cache kept alive) / pods, and RSS delta / pods (RSS also holds freed-but-unreturned memory,
//   so it is an upper bound);
// - review latency, client-side, per request at full precision (not autocannon's whole-millisecond
//   histogram), p50/p99, at two loads:
//   - saturated: autocannon, 16 keep-alive connections (BENCH_PVC_CONNECTIONS) each sending its
//     next request as soon as the last one is answered, for BENCH_PVC_DURATION seconds (default 5).
//     The one-core server is then busy all the time and the figures are mostly queueing (16 in
//     flight / throughput);
//   - paced: BENCH_PVC_RATE requests per second (default 1000) sent at even intervals, whatever
//     the answers do, over up to BENCH_PVC_RATE_CONNECTIONS keep-alive connections (default 8),
//     after a 1 s warm-up; latency from the moment each request is issued (so a stalled server
//     is not hidden by requests that wait to be sent). PVC deletions are rare: this is the
//     realistic case, still well above any real deletion rate.
//   Each load is run with the PVC DELETE review and with a control review that no policy matches
//   (ConfigMap CREATE), on the same server. The paced load also runs against bench/bare-server.ts
//   (parse and answer, nothing else) on the same CPU: the floor this machine gives any review.
//
// Processes: this one holds the cache and the server (what is measured); the fake API server and
// the load generator each run in a child of their own, so their objects, CPU and garbage
// collections are not counted against the cache or the server, and the load generator's pauses
// do not scale with the 100,000 objects the fake API server holds. The LIST runs on all cores;
// for the load runs this process is pinned to CPU 0 and the children to CPU 1 (`taskset`, when
// available with 2 CPUs, as bench/run.ts does), so the server and the load generator do not
// preempt each other. The saturated runs come first and warm up the server's code for the paced
// ones (a freshly started server has a JIT-compilation tail for its first seconds of traffic).
// Run alone: `node --expose-gc dist/bench/pvc-cache.js` (without --expose-gc the GC is exposed at
// run time through v8.setFlagsFromString).

import autocannon from 'autocannon';
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { createConnection } from 'node:net';
import { cpus, loadavg } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { freePort, pin } from './host.js';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { KubeConfig } from '@kubernetes/client-node';
import { ClusterCache } from '../src/cluster/cache.js';
import { pvcInUsePolicy } from '../src/policies/pvc-in-use.js';
import { FakeApiServer } from '../test/helpers/fake-apiserver.js';
import { clusterState, reviewByPrefix } from '../test/helpers/fixtures.js';
import { startTestServer } from '../test/helpers/server.js';

const PODS = Number(process.env.BENCH_PVC_PODS ?? 100_000);
const NAMESPACES = Number(process.env.BENCH_PVC_NAMESPACES ?? 1_000);
const NODES = 500;
const DURATION = Number(process.env.BENCH_PVC_DURATION ?? 5);
const CONNECTIONS = Number(process.env.BENCH_PVC_CONNECTIONS ?? 16);
const RATE = Number(process.env.BENCH_PVC_RATE ?? 1000);
const RATE_CONNECTIONS = Number(process.env.BENCH_PVC_RATE_CONNECTIONS ?? 8);

type Load = { kind: 'load'; mode: 'saturated' | 'paced'; url: string; body: string; ca: string };
type LoadResult = { p50: number; p90: number; p99: number; max: number; requests: number; rps: number; errors: number };
type Msg = { kind: 'ready'; kubeconfigPath: string; pods: number; bytesPerPod: number } | ({ kind: 'load-done' } & LoadResult);

// ---- child: the fake API server ----------------------------------------------------------------

/** A pod as the real API server returns it (the captured db-1: managedFields, injected token...). */
function podTemplate(): any {
  return clusterState('pods.json').items.find((p: any) => p.metadata.name === 'db-1');
}

async function apiServerChild(): Promise<void> {
  const fake = await FakeApiServer.start();
  const template = JSON.stringify(podTemplate());
  const pods: any[] = [];
  for (let i = 0; i < PODS; i++) {
    const ns = `ns-${String(i % NAMESPACES).padStart(4, '0')}`;
    const p = JSON.parse(template);
    const ord = Math.floor(i / NAMESPACES);
    p.metadata.name = `app-5f7d8c9b4-${i.toString(36).padStart(5, '0')}`;
    p.metadata.namespace = ns;
    p.metadata.uid = `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
    p.metadata.labels = { app: 'app', 'pod-template-hash': '5f7d8c9b4' };
    p.metadata.ownerReferences = [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'app-5f7d8c9b4', uid: 'rs', controller: true, blockOwnerDeletion: true }];
    p.spec.nodeName = `node-${i % NODES}`;
    // Half the pods mount a claim of their own (StatefulSet-like), the rest mount nothing.
    if (ord % 2 === 0) p.spec.volumes[0].persistentVolumeClaim.claimName = `data-${ord}`;
    else p.spec.volumes.shift();
    pods.push(p);
  }
  const bytesPerPod = Math.round(pods.slice(0, 100).reduce((n, p) => n + JSON.stringify(p).length, 0) / 100);
  fake.fill('pods', pods);
  pods.length = 0;
  const node = clusterState('nodes.json').items[0];
  fake.fill(
    'nodes',
    Array.from({ length: NODES }, (_, i) => ({ ...structuredClone(node), metadata: { ...node.metadata, name: `node-${i}`, uid: `n${i}` } })),
  );
  fake.fill(
    'namespaces',
    Array.from({ length: NAMESPACES }, (_, i) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: `ns-${String(i).padStart(4, '0')}`, labels: {} } })),
  );
  process.send!({ kind: 'ready', kubeconfigPath: fake.kubeconfigPath, pods: PODS, bytesPerPod } satisfies Msg);
  // Serves the cache's watches until the parent ends it.
}

// ---- child: the load generator (one per load run) ----------------------------------------------

function loadChild(): void {
  process.once('message', async (m: Load) => {
    const { times, errors, seconds } = m.mode === 'saturated' ? await saturated(m) : await paced(m);
    times.sort((a, b) => a - b);
    const pct = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))] ?? NaN;
    process.send!(
      { kind: 'load-done', p50: pct(0.5), p90: pct(0.9), p99: pct(0.99), max: times.at(-1) ?? NaN, requests: times.length, rps: times.length / seconds, errors } satisfies Msg,
      () => process.exit(0),
    );
  });
}

/** autocannon: CONNECTIONS connections, each sending its next request when the last is answered. */
async function saturated(m: Load): Promise<{ times: number[]; errors: number; seconds: number }> {
  const times: number[] = [];
  const instance = autocannon({
    url: m.url,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: m.body,
    connections: CONNECTIONS,
    duration: DURATION,
    // The test CA signs the server certificate; trust it for this run only.
    ...({ tlsOptions: { ca: m.ca } } as object),
  } as never) as unknown as Promise<any> & { on: (e: string, f: (...a: any[]) => void) => void };
  (instance as any).on?.('response', (_c: unknown, status: number, _b: number, ms: number) => {
    if (status === 200) times.push(ms);
  });
  const result = await instance;
  return { times, errors: result.errors + result.non2xx, seconds: DURATION };
}

/**
 * RATE requests per second at even intervals (open loop: a slow answer does not delay the next
 * request), over an agent of RATE_CONNECTIONS keep-alive connections. A request is timed from
 * the moment it is issued, so time spent waiting for a free connection counts.
 */
async function paced(m: Load): Promise<{ times: number[]; errors: number; seconds: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: RATE_CONNECTIONS, ca: m.ca });
  const url = new URL(m.url);
  const payload = Buffer.from(m.body);
  let times: number[] = [];
  let errors = 0;
  const send = () =>
    new Promise<void>((resolve) => {
      const t0 = performance.now();
      const req = request(
        { host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': payload.length } },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode === 200) times.push(performance.now() - t0);
            else errors++;
            resolve();
          });
        },
      );
      req.on('error', () => {
        errors++;
        resolve();
      });
      req.end(payload);
    });
  const run = async (seconds: number) => {
    const total = Math.round(RATE * seconds);
    const start = performance.now();
    const inflight: Promise<void>[] = [];
    await new Promise<void>((done) => {
      const tick = () => {
        const due = Math.min(total, Math.floor(((performance.now() - start) * RATE) / 1000) + 1);
        while (inflight.length < due) inflight.push(send());
        if (inflight.length < total) setTimeout(tick, Math.max(0, start + (inflight.length * 1000) / RATE - performance.now()));
        else done();
      };
      tick();
    });
    await Promise.all(inflight);
  };
  // Warm-up (TLS handshakes, JIT on both sides), not counted.
  await run(1);
  times = [];
  errors = 0;
  await run(DURATION);
  agent.destroy();
  return { times, errors, seconds: DURATION };
}

// ---- parent: the cache and the tokenguard server ---------------------------------------------

function exposeGc(): () => void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

function next<T extends Msg['kind']>(proc: ChildProcess, kind: T): Promise<Extract<Msg, { kind: T }>> {
  return new Promise((resolve, reject) => {
    const onMsg = (m: Msg) => {
      if (m.kind !== kind) return;
      proc.off('message', onMsg);
      proc.off('exit', onExit);
      resolve(m as Extract<Msg, { kind: T }>);
    };
    const onExit = (code: number | null) => reject(new Error(`bench child exited with ${code}`));
    proc.on('message', onMsg);
    proc.once('exit', onExit);
  });
}

/** One load run in a fresh load-generator process (on CPU 1 when pinning). */
async function load(mode: Load['mode'], url: string, body: unknown, ca: string, pinned: boolean): Promise<LoadResult> {
  const proc = fork(fileURLToPath(import.meta.url), ['--load'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    if (pinned) pin(proc.pid!, 1);
    proc.send({ kind: 'load', mode, url, body: JSON.stringify(body), ca } satisfies Load);
    return await next(proc, 'load-done');
  } finally {
    if (proc.exitCode === null) proc.kill();
  }
}

async function untilListening(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = createConnection(port, '127.0.0.1', () => {
        c.end();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`bare server on port ${port} did not come up`);
}

/**
 * The paced load on bench/bare-server.ts (read, JSON.parse, answer allowed; no framework) with
 * the same review and certificate, on the same CPU: the floor this machine and load generator
 * give any HTTPS review, to read the tokenguard figures against.
 */
async function pacedOnBareServer(body: unknown, certs: { certFile: string; keyFile: string }, ca: string, pinned: boolean): Promise<LoadResult> {
  const port = await freePort();
  const bare = spawn(process.execPath, [fileURLToPath(new URL('./bare-server.js', import.meta.url)), String(port), certs.certFile, certs.keyFile], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  try {
    if (pinned) pin(bare.pid!, 0);
    await untilListening(port);
    return await load('paced', `https://127.0.0.1:${port}/validate`, body, ca, pinned);
  } finally {
    bare.kill();
  }
}

export async function runPvcCacheBench(): Promise<Record<string, number | string>> {
  const gc = exposeGc();
  const proc = fork(fileURLToPath(import.meta.url), ['--api-server'], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: ['--max-old-space-size=4096'],
  });
  try {
    const ready = await next(proc, 'ready');
    const kc = new KubeConfig();
    kc.loadFromFile(ready.kubeconfigPath);

    gc();
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    const rssBefore = process.memoryUsage().rss;
    const t0 = performance.now();
    const cache = new ClusterCache({ kc, staleAfterSeconds: 60 });
    cache.start();
    await cache.whenSynced();
    const readyMs = performance.now() - t0;
    gc();
    gc();
    const heapAfter = process.memoryUsage().heapUsed;
    const rssAfter = process.memoryUsage().rss;
    const cached = cache.pods.items.size;

    const server = await startTestServer({ policies: [pvcInUsePolicy], cluster: cache, config: { mode: 'enforce' } });
    // A claim used by one running pod: the full path (index lookup, classification, node lookup, denial).
    const body = reviewByPrefix('070');
    body.request.namespace = 'ns-0007';
    body.request.name = 'data-2';
    body.request.oldObject.metadata.namespace = 'ns-0007';
    body.request.oldObject.metadata.name = 'data-2';
    delete body.request.oldObject.metadata.deletionTimestamp;
    const probe = await server.post('/validate', body);
    if (probe.json?.response?.allowed !== false) throw new Error(`bench review was not denied as expected: ${probe.text}`);

    // The guard alone, in process, without HTTP and TLS: what the cache lookup and policy cost.
    const engineRuns = 20_000;
    const tEngine = performance.now();
    for (let i = 0; i < engineRuns; i++) await server.engine.validate(body.request);
    const engineMicros = ((performance.now() - tEngine) * 1000) / engineRuns;

    const ca = readFileSync(server.certs.caFile, 'utf8');
    const url = `${server.url}/validate`;
    // Control: the same server and load with a review no policy matches (ConfigMap CREATE), so
    // the PVC figures can be read against what this machine gives any review.
    const control = reviewByPrefix('001');
    const pinned = pin(process.pid, 0) && pin(proc.pid!, 1);
    const satControl = await load('saturated', url, control, ca, pinned);
    const sat = await load('saturated', url, body, ca, pinned);
    const pacedControl = await load('paced', url, control, ca, pinned);
    const pacedPvc = await load('paced', url, body, ca, pinned);
    // While tokenguard sits idle: releasing the cache would start collections on the same CPU.
    const pacedBare = await pacedOnBareServer(body, server.certs, ca, pinned);
    await server.shutdown();
    cache.stop();

    const results: Record<string, number | string> = {
      pods: cached,
      namespaces: NAMESPACES,
      podJsonBytes: ready.bytesPerPod,
      readyMs: Math.round(readyMs),
      heapBytesPerPod: Math.round((heapAfter - heapBefore) / cached),
      rssBytesPerPod: Math.round((rssAfter - rssBefore) / cached),
      memoryMethod: 'heapUsed delta after 2x gc() around the sync, cache alive; RSS delta as an upper bound',
      ...figures('saturated', sat),
      ...figures('saturatedControl', satControl),
      ...figures('paced', pacedPvc),
      ...figures('pacedControl', pacedControl),
      ...figures('pacedBare', pacedBare),
      engineValidateMicros: Math.round(engineMicros * 10) / 10,
      connections: CONNECTIONS,
      rate: RATE,
      rateConnections: RATE_CONNECTIONS,
      pinned: String(pinned),
    };
    const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');
    const line = (r: LoadResult) =>
      `p50 ${round3(r.p50)} ms, p90 ${round3(r.p90)} ms, p99 ${round3(r.p99)} ms, max ${round3(r.max)} ms, ${Math.round(r.rps)} req/s, ${r.errors} errors`;
    process.stdout.write(
      [
        `pods cached:            ${cached} across ${NAMESPACES} namespaces (${ready.bytesPerPod} bytes of JSON each)`,
        `ready (LIST+sync):      ${results.readyMs} ms   target < 5000 ms: ${verdict(readyMs < 5000)}`,
        `heap per cached pod:    ${results.heapBytesPerPod} B   target < 1024 B: ${verdict((results.heapBytesPerPod as number) < 1024)}`,
        `RSS per cached pod:     ${results.rssBytesPerPod} B (upper bound)`,
        `PVC DELETE review, paced at ${RATE} req/s over up to ${RATE_CONNECTIONS} keep-alive connections, ${DURATION} s:`,
        `                        ${line(pacedPvc)}; target p99 < 2 ms: ${verdict(pacedPvc.p99 < 2)}`,
        `  control (ConfigMap, no policy), same load: ${line(pacedControl)}`,
        `  bare node:https server (parse, answer; no cache, no policy), same review and load: ${line(pacedBare)}`,
        `PVC DELETE review, saturated (${CONNECTIONS} keep-alive connections, ${DURATION} s):`,
        `                        ${line(sat)}; target p99 < 2 ms: ${verdict(sat.p99 < 2)}`,
        `  control (ConfigMap, no policy), same load: ${line(satControl)}`,
        `guard in process (engine.validate, no HTTP/TLS): ${results.engineValidateMicros} us per PVC DELETE review`,
        `machine: ${cpus().length} CPUs, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}; ` +
          (pinned ? 'load runs: server on CPU 0, load generator on CPU 1 (taskset)' : 'taskset or a second CPU unavailable: processes not pinned'),
      ].join('\n') + '\n',
    );
    return results;
  } finally {
    if (proc.exitCode === null) proc.kill();
  }
}

function figures(prefix: string, r: LoadResult): Record<string, number> {
  return {
    [`${prefix}P50Ms`]: round3(r.p50),
    [`${prefix}P90Ms`]: round3(r.p90),
    [`${prefix}P99Ms`]: round3(r.p99),
    [`${prefix}MaxMs`]: round3(r.max),
    [`${prefix}Rps`]: Math.round(r.rps),
    [`${prefix}Reviews`]: r.requests,
    [`${prefix}Errors`]: r.errors,
  };
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

const invokedDirectly = process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1];
if (invokedDirectly) {
  if (process.argv.includes('--api-server')) {
    apiServerChild().catch((err) => {
      process.stderr.write(`pvc-cache bench API server failed: ${err?.stack ?? err}\n`);
      process.exit(1);
    });
  } else if (process.argv.includes('--load')) {
    loadChild();
  } else {
    runPvcCacheBench().then(
      () => process.exit(0),
      (err) => {
        process.stderr.write(`pvc-cache bench failed: ${err?.stack ?? err}\n`);
        process.exit(1);
      },
    );
  }
}
