// PVC cache benchmark: 100,000 pods across 1,000 namespaces served by the fake API server, cached
// by the real ClusterCache (real client-node, HTTPS, pagination of 500), then PVC DELETE reviews
// against a real tokenguard HTTPS server over keep-alive connections.
//
// Measured:
// - ready: from ClusterCache.start() to every cache synced (LIST of all pods, nodes, namespaces);
// - memory per cached pod: heap delta (v8 heapUsed after a full GC, before vs after the sync, the
//   cache kept alive) / pods, and RSS delta / pods (RSS also holds freed-but-unreturned memory,
//   so it is an upper bound);
// - review latency, client-side, per request at full precision, p50/p99, at two loads (both made by
//   bench/load-generator.ts, which explains them):
//   - paced: BENCH_PVC_RATE requests per second (default 1000) over up to
//     BENCH_PVC_RATE_CONNECTIONS keep-alive connections (default 8), for BENCH_PVC_PACED_DURATION
//     seconds (default 10) after BENCH_PVC_PACED_WARMUP seconds of warm-up (default 3; 1 s left
//     the JIT and heap sizing of the fresh load-generator process in the figures), each request
//     timed from the moment it was due and its answer checked for the expected decision. PVC
//     deletions are rare: this is the realistic case, still well above any real deletion rate;
//   - saturated: BENCH_PVC_CONNECTIONS keep-alive connections (default 16) for
//     BENCH_PVC_DURATION seconds (default 5), each sending its next request as soon as the last
//     one is answered: a throughput figure whose latencies are mostly queueing.
//   Each load is run with the PVC DELETE review and with a control review that no policy matches
//   (ConfigMap CREATE), on the same server. The paced load also runs against bench/bare-server.ts
//   (parse and answer, nothing else) on the same CPU: the floor this machine gives any review.
//
// Processes: this one holds the cache and the server (what is measured); the fake API server
// (bench/pvc-api-server.ts) and the load generator each run in a child of their own, so their
// objects, CPU and garbage collections are not counted against the cache or the server. The LIST
// runs on all cores; for the load runs this process is pinned to CPU 0 and the children to CPU 1
// (`taskset`, when available with 2 CPUs, as bench/run.ts does), so the server and the load
// generator do not preempt each other, and the fake API server is settled first (a full
// collection, no memory reducer: see its header). The saturated runs come first and warm up the
// server's code for the paced ones (a freshly started server has a JIT-compilation tail for its
// first seconds of traffic).
// Run alone: `node --expose-gc dist/bench/pvc-cache.js` (without --expose-gc the GC is exposed at
// run time through v8.setFlagsFromString).

import { fork, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { exposeGc, freePort, pin, untilListening } from './host.js';
import type { LoadRequest, LoadResult } from './load-generator.js';
import type { ApiServerMsg } from './pvc-api-server.js';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { KubeConfig } from '@kubernetes/client-node';
import { ClusterCache } from '../src/cluster/cache.js';
import { pvcInUsePolicy } from '../src/policies/pvc-in-use.js';
import { reviewByPrefix } from '../test/helpers/fixtures.js';
import { startTestServer } from '../test/helpers/server.js';

const PODS = Number(process.env.BENCH_PVC_PODS ?? 100_000);
const NAMESPACES = Number(process.env.BENCH_PVC_NAMESPACES ?? 1_000);
const NODES = 500;
const DURATION = Number(process.env.BENCH_PVC_DURATION ?? 5);
const CONNECTIONS = Number(process.env.BENCH_PVC_CONNECTIONS ?? 16);
const RATE = Number(process.env.BENCH_PVC_RATE ?? 1000);
const RATE_CONNECTIONS = Number(process.env.BENCH_PVC_RATE_CONNECTIONS ?? 8);
const PACED_DURATION = Number(process.env.BENCH_PVC_PACED_DURATION ?? 10);
const PACED_WARMUP = Number(process.env.BENCH_PVC_PACED_WARMUP ?? 3);

type Msg = ApiServerMsg | ({ kind: 'load-done' } & LoadResult);

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
async function load(mode: LoadRequest['mode'], url: string, body: unknown, expect: string, ca: string, pinned: boolean): Promise<LoadResult> {
  const proc = fork(fileURLToPath(new URL('./load-generator.js', import.meta.url)), {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    // The paced load's spinning loop allocates on every turn: a larger young generation makes the
    // generator's own scavenges (each one a pause in its timings) rarer.
    execArgv: ['--max-semi-space-size=64'],
  });
  try {
    if (pinned) pin(proc.pid!, 1);
    const paced = mode === 'paced';
    proc.send({
      kind: 'load',
      mode,
      url,
      body: JSON.stringify(body),
      ca,
      expect,
      connections: paced ? RATE_CONNECTIONS : CONNECTIONS,
      seconds: paced ? PACED_DURATION : DURATION,
      rate: RATE,
      warmupSeconds: PACED_WARMUP,
    } satisfies LoadRequest);
    return await next(proc, 'load-done');
  } finally {
    if (proc.exitCode === null) proc.kill();
  }
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
    await untilListening(port, bare);
    return await load('paced', `https://127.0.0.1:${port}/validate`, body, ALLOWED, ca, pinned);
  } finally {
    bare.kill();
  }
}

export async function runPvcCacheBench(): Promise<Record<string, number | string>> {
  const gc = exposeGc();
  const proc = fork(fileURLToPath(new URL('./pvc-api-server.js', import.meta.url)), [String(PODS), String(NAMESPACES), String(NODES)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: ['--max-old-space-size=4096', '--expose-gc', '--no-memory-reducer'],
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
    // The fake API server has served its LIST; let it collect now rather than during the loads.
    proc.send({ kind: 'settle' });
    await next(proc, 'settled');
    const pinned = pin(process.pid, 0) && pin(proc.pid!, 1);
    const satControl = await load('closed', url, control, ALLOWED, ca, pinned);
    const sat = await load('closed', url, body, DENIED, ca, pinned);
    const pacedControl = await load('paced', url, control, ALLOWED, ca, pinned);
    const pacedPvc = await load('paced', url, body, DENIED, ca, pinned);
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
      pacedSeconds: PACED_DURATION,
      rateConnections: RATE_CONNECTIONS,
      pinned: String(pinned),
    };
    const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');
    const line = (r: LoadResult) =>
      `p50 ${round3(r.p50)} ms, p90 ${round3(r.p90)} ms, p99 ${round3(r.p99)} ms, max ${round3(r.max)} ms, ${Math.round(r.rps)} req/s, ${r.errors} errors`;
    const lessStalls = (r: LoadResult) =>
      `less the load generator's own stalls (${Math.round(r.generatorStallMs)} ms in all): p50 ${round3(r.p50LessGeneratorStalls)} ms, p99 ${round3(r.p99LessGeneratorStalls)} ms`;
    process.stdout.write(
      [
        `pods cached:            ${cached} across ${NAMESPACES} namespaces (${ready.bytesPerPod} bytes of JSON each)`,
        `ready (LIST+sync):      ${results.readyMs} ms   target < 5000 ms: ${verdict(readyMs < 5000)}`,
        `heap per cached pod:    ${results.heapBytesPerPod} B   target < 1024 B: ${verdict((results.heapBytesPerPod as number) < 1024)}`,
        `RSS per cached pod:     ${results.rssBytesPerPod} B (upper bound)`,
        `PVC DELETE review, paced at ${RATE} req/s over up to ${RATE_CONNECTIONS} keep-alive connections, ${PACED_DURATION} s:`,
        `                        ${line(pacedPvc)}; target p99 < 2 ms: ${verdict(pacedPvc.p99 < 2)}`,
        `                        ${lessStalls(pacedPvc)}; target p99 < 2 ms: ${verdict(pacedPvc.p99LessGeneratorStalls < 2)}`,
        `  control (ConfigMap, no policy), same load: ${line(pacedControl)}`,
        `                        ${lessStalls(pacedControl)}`,
        `  bare node:https server (parse, answer; no cache, no policy), same review and load: ${line(pacedBare)}`,
        `                        ${lessStalls(pacedBare)}`,
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
    [`${prefix}P50LessGeneratorStallsMs`]: round3(r.p50LessGeneratorStalls),
    [`${prefix}P99LessGeneratorStallsMs`]: round3(r.p99LessGeneratorStalls),
    [`${prefix}GeneratorStallMs`]: Math.round(r.generatorStallMs),
  };
}

const ALLOWED = '"allowed":true';
const DENIED = '"allowed":false';
const round3 = (n: number) => Math.round(n * 1000) / 1000;

const invokedDirectly = process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1];
if (invokedDirectly) {
  runPvcCacheBench().then(
    () => process.exit(0),
    (err) => {
      process.stderr.write(`pvc-cache bench failed: ${err?.stack ?? err}\n`);
      process.exit(1);
    },
  );
}
