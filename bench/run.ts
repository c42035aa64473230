// `npm run bench`: tokenguard's /validate and /mutate against a bare node:https server, same
// machine, same run, one server core each, HTTPS keep-alive, driven by autocannon.
//
// The server under test runs as a child process pinned to core 0 (`taskset`, when available) with
// its JSON log on /dev/null (still written, as in production, just not kept); the load generator
// is this process, pinned to core 1. Each scenario gets a warm-up, then a measured run.
//
// Environment: BENCH_DURATION (seconds per measured run, default 10), BENCH_WARMUP (default 2),
// BENCH_CONNECTIONS (default 16), BENCH_SKIP_PVC=1 to skip the PVC cache benchmark.

import autocannon from 'autocannon';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url)); // dist/bench
const ROOT = resolve(HERE, '../..');
const MAIN = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const BARE = join(HERE, 'bare-server.js');
const REVIEWS = join(ROOT, 'test', 'fixtures', 'admission-reviews');

function envNumber(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got ${JSON.stringify(v)}`);
  return n;
}

const DURATION = envNumber('BENCH_DURATION', 10);
const WARMUP = envNumber('BENCH_WARMUP', 2);
const CONNECTIONS = envNumber('BENCH_CONNECTIONS', 16);
const TARGET_RATIO = 0.7;

function fixture(prefix: string): string {
  const file = execFileSync('ls', [REVIEWS]).toString().split('\n').find((f) => f.startsWith(prefix + '-'));
  if (!file) throw new Error(`fixture ${prefix}-* missing under ${REVIEWS}`);
  return readFileSync(join(REVIEWS, file), 'utf8');
}

/**
 * The realistic Pod CREATE: `shop/web-0` as the real API server sent it (three volumes: a PVC,
 * an istio-token projection and the injected kube-api-access-*), with two more containers so it
 * looks like a pod with sidecars. Re-serialised compactly, as the API server sends it.
 */
function podReview(): string {
  const review = JSON.parse(fixture('004'));
  const pod = review.request.object;
  const main = pod.spec.containers[0];
  pod.spec.containers.push(
    { ...structuredClone(main), name: 'istio-proxy', image: 'docker.io/istio/proxyv2:1.22.1', args: ['proxy', 'sidecar', '--domain', '$(POD_NAMESPACE).svc.cluster.local'] },
    { ...structuredClone(main), name: 'log-shipper', image: 'fluent/fluent-bit:3.0', args: ['--config', '/fluent-bit/etc/fluent-bit.conf'] },
  );
  return JSON.stringify(review);
}

// --- processes and CPUs --------------------------------------------------------------------

const canPin = (() => {
  try {
    execFileSync('taskset', ['-c', '0', 'true']);
    return Number(execFileSync('nproc').toString().trim()) >= 2;
  } catch {
    return false;
  }
})();

function pinSelfTo(cpu: number): void {
  if (canPin) execFileSync('taskset', ['-a', '-cp', String(cpu), String(process.pid)], { stdio: 'ignore' });
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

/** A server process on core 0, its output discarded. */
function startOnCore0(args: string[]): ChildProcess {
  const [cmd, ...rest] = canPin ? ['taskset', '-c', '0', process.execPath, ...args] : [process.execPath, ...args];
  return spawn(cmd!, rest, { stdio: ['ignore', 'ignore', 'inherit'] });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** CPU seconds used so far by a process (user + system), from /proc. */
function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime
    return ticks / 100; // USER_HZ is 100 on Linux
  } catch {
    return undefined;
  }
}

// --- HTTPS ---------------------------------------------------------------------------------

function call(port: number, method: string, path: string, body?: string): Promise<{ status: number; text: string }> {
  return new Promise((res, rej) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port, method, path, rejectUnauthorized: false, agent: false, headers: body ? { 'content-type': 'application/json' } : {} },
      (r) => {
        let text = '';
        r.setEncoding('utf8').on('data', (c) => (text += c));
        r.on('end', () => res({ status: r.statusCode ?? 0, text }));
      },
    );
    req.on('error', rej);
    req.end(body);
  });
}

async function waitUntilServing(port: number, child: ChildProcess, path: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`server exited with code ${child.exitCode}`);
    const ok = await call(port, 'GET', path).then(
      (r) => r.status < 500,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server on port ${port} did not come up`);
}

/** One request first: the answer must be a well-formed review for this uid, or the figures mean nothing. */
async function checkAnswer(port: number, path: string, body: string): Promise<void> {
  const { status, text } = await call(port, 'POST', path, body);
  const uid = JSON.parse(body).request.uid;
  const parsed = JSON.parse(text);
  if (status !== 200 || parsed.response?.uid !== uid) throw new Error(`${path} answered ${status}: ${text.slice(0, 300)}`);
}

// --- measuring -----------------------------------------------------------------------------

interface Figures {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  cpu?: number;
  errors: number;
}

async function measure(name: string, port: number, path: string, body: string, pid: number): Promise<Figures> {
  await checkAnswer(port, path, body);
  const opts = {
    url: `https://127.0.0.1:${port}${path}`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    connections: CONNECTIONS,
    pipelining: 1,
  };
  await autocannon({ ...opts, duration: WARMUP });
  const cpuBefore = cpuSeconds(pid);
  const r = await autocannon({ ...opts, duration: DURATION });
  const cpuAfter = cpuSeconds(pid);
  const figures: Figures = {
    name,
    rps: r.requests.total / r.duration,
    p50: r.latency.p50,
    p99: r.latency.p99,
    cpu: cpuBefore !== undefined && cpuAfter !== undefined ? (cpuAfter - cpuBefore) / r.duration : undefined,
    errors: r.errors + r.timeouts + r.non2xx,
  };
  process.stdout.write(`  ${row(figures)}\n`);
  return figures;
}

/** Server CPU time per request: robust against a busy machine, where req/s alone swings. */
const cpuPerRequest = (f: Figures) => (f.cpu === undefined ? undefined : (f.cpu / f.rps) * 1e6);

const header = `${'scenario'.padEnd(44)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'srv CPU'.padStart(8)} ${'CPU us/req'.padStart(11)} ${'errors'.padStart(7)}`;
function row(f: Figures): string {
  const cpu = f.cpu === undefined ? 'n/a' : `${Math.round(f.cpu * 100)}%`;
  const perReq = cpuPerRequest(f)?.toFixed(0) ?? 'n/a';
  return `${f.name.padEnd(44)} ${Math.round(f.rps).toString().padStart(8)} ${f.p50.toFixed(0).padStart(7)} ${f.p99.toFixed(0).padStart(7)} ${cpu.padStart(8)} ${perReq.padStart(11)} ${String(f.errors).padStart(7)}`;
}

async function runBare(label: string, certs: string, pod: string): Promise<Figures> {
  const port = await freePort();
  const bare = startOnCore0([BARE, String(port), join(certs, 'tls.crt'), join(certs, 'tls.key')]);
  try {
    await waitUntilServing(port, bare, '/');
    return await measure(label, port, '/validate', pod, bare.pid!);
  } finally {
    await stop(bare);
  }
}

async function main(): Promise<void> {
  pinSelfTo(1);
  const certs = mkdtempSync(join(tmpdir(), 'tokenguard-bench-'));
  execFileSync('bash', [join(ROOT, 'certs', 'generate.sh'), certs, '--force']);
  const pod = podReview();
  const deployment = JSON.stringify(JSON.parse(fixture('028')));

  process.stdout.write(
    [
      `tokenguard benchmark: HTTPS keep-alive, ${CONNECTIONS} connections, ${WARMUP} s warm-up + ${DURATION} s per scenario`,
      canPin ? 'server pinned to CPU 0, load generator to CPU 1 (taskset)' : 'taskset or a second CPU unavailable: processes are not pinned',
      `Pod CREATE review: ${pod.length} bytes; Deployment CREATE review: ${deployment.length} bytes`,
      '',
      `  ${header}`,
      '',
    ].join('\n'),
  );

  const results: Figures[] = [];
  try {
    results.push(await runBare('bare node:https (Pod review)', certs, pod));

    const port = await freePort();
    const ours = startOnCore0([MAIN, 'serve', '--no-cluster', '--address', '127.0.0.1', '--port', String(port), '--tls-cert', join(certs, 'tls.crt'), '--tls-key', join(certs, 'tls.key'), '--log-level', 'info']);
    try {
      await waitUntilServing(port, ours, '/healthz');
      results.push(await measure('tokenguard /validate (Pod CREATE)', port, '/validate', pod, ours.pid!));
      results.push(await measure('tokenguard /mutate (Pod CREATE)', port, '/mutate', pod, ours.pid!));
      results.push(await measure('tokenguard /validate (Deployment CREATE)', port, '/validate', deployment, ours.pid!));
    } finally {
      await stop(ours);
    }
    // The bare server again, so drift over the run (thermal, neighbours) shows and averages out.
    results.push(await runBare('bare node:https again (Pod review)', certs, pod));
  } finally {
    rmSync(certs, { recursive: true, force: true });
  }

  const bareRuns = [results[0]!, results[4]!];
  const bare = (bareRuns[0]!.rps + bareRuns[1]!.rps) / 2;
  const bareCpu = bareRuns.map(cpuPerRequest);
  const bareCpuMean = bareCpu.every((c) => c !== undefined) ? (bareCpu[0]! + bareCpu[1]!) / 2 : undefined;
  const lines = ['', `bare node:https, mean of both runs: ${Math.round(bare)} req/s${bareCpuMean ? `, ${bareCpuMean.toFixed(0)} us CPU per request` : ''}`];
  for (const f of results.slice(1, 4)) {
    const ratio = f.rps / bare;
    const cpu = cpuPerRequest(f);
    const cpuRatio = bareCpuMean && cpu ? ` (by server CPU per request: ${(bareCpuMean / cpu).toFixed(2)})` : '';
    const verdict = f.name.includes('/validate (Pod') ? `  target >= ${TARGET_RATIO}: ${ratio >= TARGET_RATIO ? 'met' : 'NOT met'}` : '';
    lines.push(`ratio ${f.name.replace('tokenguard ', '')} / bare: ${ratio.toFixed(2)}${cpuRatio}${verdict}`);
  }
  process.stdout.write(lines.join('\n') + '\n');

  await runPvcCacheBench();
}

/** The PVC cache benchmark (bench/pvc-cache.ts, from the PVC guard work), when it is built. */
async function runPvcCacheBench(): Promise<void> {
  if (process.env.BENCH_SKIP_PVC === '1') return;
  const path = join(HERE, 'pvc-cache.js');
  if (!existsSync(path)) return;
  process.stdout.write('\nPVC cache benchmark (bench/pvc-cache.ts)\n');
  const mod = (await import(path)) as { runPvcCacheBench?: () => Promise<void> };
  if (typeof mod.runPvcCacheBench !== 'function') throw new Error(`${path} does not export runPvcCacheBench()`);
  await mod.runPvcCacheBench();
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exitCode = 1;
});
