// PVC cache benchmark: 100,000 pods across 1,000 namespaces served by the fake API server, cached
// by the real ClusterCache (real client-node, HTTPS, pagination of 500), then PVC DELETE reviews
// against a real tokenguard HTTPS server under keep-alive load.
//
// Measured:
// - ready: from ClusterCache.start() to every cache synced (LIST of all pods, nodes, namespaces);
// - memory per cached pod: heap delta (v8 heapUsed after a full GC, before vs after the sync, the
//   cache kept alive) / pods, and RSS delta / pods (RSS also holds freed-but-unreturned memory,
//   so it is an upper bound);
// - review latency: client-side, per request (process.hrtime in autocannon, recorded at full
//   precision here rather than autocannon's whole-millisecond histogram), p50/p99, 16 keep-alive
//   connections (BENCH_PVC_CONNECTIONS, default 16) for BENCH_PVC_DURATION seconds (default 5).
//
// The fake API server and the load generator run in a child process, so their objects and CPU
// are not counted against the cache or the server. Run alone: `node --expose-gc dist/bench/pvc-cache.js`
// (without --expose-gc the GC is exposed at run time through v8.setFlagsFromString).

import autocannon from 'autocannon';
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
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

type Msg =
  | { kind: 'ready'; kubeconfigPath: string; pods: number; bytesPerPod: number }
  | { kind: 'load-done'; p50: number; p90: number; p99: number; max: number; requests: number; rps: number; non2xx: number; errors: number };

// ---- child: the fake API server and the load generator ---------------------------------------

/** A pod as the real API server returns it (the captured db-1: managedFields, injected token...). */
function podTemplate(): any {
  return clusterState('pods.json').items.find((p: any) => p.metadata.name === 'db-1');
}

async function child(): Promise<void> {
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

  process.on('message', async (m: { kind: 'load'; url: string; body: string; ca: string; last?: boolean }) => {
    if (m.kind !== 'load') return;
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
    times.sort((a, b) => a - b);
    const pct = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))] ?? NaN;
    process.send!({
      kind: 'load-done',
      p50: pct(0.5),
      p90: pct(0.9),
      p99: pct(0.99),
      max: times.at(-1) ?? NaN,
      requests: times.length,
      rps: result.requests.average,
      non2xx: result.non2xx,
      errors: result.errors,
    } satisfies Msg);
    if (!m.last) return;
    await fake.close();
    process.exit(0);
  });
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
      resolve(m as Extract<Msg, { kind: T }>);
    };
    proc.on('message', onMsg);
    const onExit = (code: number | null) => reject(new Error(`bench child exited with ${code}`));
    proc.once('exit', onExit);
    proc.on('message', (m: Msg) => m.kind === kind && proc.off('exit', onExit));
  });
}

export async function runPvcCacheBench(): Promise<Record<string, number | string>> {
  const gc = exposeGc();
  const proc = fork(fileURLToPath(import.meta.url), ['--child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: ['--max-old-space-size=4096'] });
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
    // Control: the same server and load with a review no policy matches (ConfigMap CREATE), so
    // the PVC figures can be read against what this machine gives any review.
    proc.send({ kind: 'load', url: `${server.url}/validate`, body: JSON.stringify(reviewByPrefix('001')), ca });
    const control = await next(proc, 'load-done');
    proc.send({ kind: 'load', url: `${server.url}/validate`, body: JSON.stringify(body), ca, last: true });
    const load = await next(proc, 'load-done');
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
      reviewP50Ms: round3(load.p50),
      reviewP90Ms: round3(load.p90),
      reviewP99Ms: round3(load.p99),
      reviewMaxMs: round3(load.max),
      reviewRps: Math.round(load.rps),
      reviews: load.requests,
      reviewErrors: load.errors + load.non2xx,
      controlP50Ms: round3(control.p50),
      controlP99Ms: round3(control.p99),
      controlRps: Math.round(control.rps),
      engineValidateMicros: Math.round(engineMicros * 10) / 10,
      connections: CONNECTIONS,
    };
    const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');
    process.stdout.write(
      [
        `pods cached:            ${cached} across ${NAMESPACES} namespaces (${ready.bytesPerPod} bytes of JSON each)`,
        `ready (LIST+sync):      ${results.readyMs} ms   target < 5000 ms: ${verdict(readyMs < 5000)}`,
        `heap per cached pod:    ${results.heapBytesPerPod} B   target < 1024 B: ${verdict((results.heapBytesPerPod as number) < 1024)}`,
        `RSS per cached pod:     ${results.rssBytesPerPod} B (upper bound)`,
        `PVC DELETE review:      p50 ${results.reviewP50Ms} ms, p90 ${results.reviewP90Ms} ms, p99 ${results.reviewP99Ms} ms, max ${results.reviewMaxMs} ms`,
        `                        ${results.reviewRps} req/s, ${CONNECTIONS} keep-alive connections, ${DURATION} s, ${results.reviewErrors} errors; target p99 < 2 ms: ${verdict(load.p99 < 2)}`,
        `control (ConfigMap, no policy): p50 ${results.controlP50Ms} ms, p99 ${results.controlP99Ms} ms, ${results.controlRps} req/s (same server, same load)`,
        `guard in process (engine.validate, no HTTP/TLS): ${results.engineValidateMicros} us per PVC DELETE review`,
        `machine: ${cpus().length} CPUs, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`,
      ].join('\n') + '\n',
    );
    return results;
  } finally {
    if (proc.exitCode === null) proc.kill();
  }
}

const round3 = (n: number) => Math.round(n * 1000) / 1000;

const invokedDirectly = process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1];
if (invokedDirectly) {
  if (process.argv.includes('--child')) {
    child().catch((err) => {
      process.stderr.write(`pvc-cache bench child failed: ${err?.stack ?? err}\n`);
      process.exit(1);
    });
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
