// `npm run bench`: tokenguard's /validate and /mutate against a bare node:https server, same
// machine, same run, one server core each, HTTPS keep-alive, driven by autocannon.
//
// The servers under test run as child processes pinned to core 0 (`taskset`, when available) with
// their JSON log on /dev/null (still written, as in production, just not kept); the load generator
// is this process, pinned to core 1. Each scenario gets a warm-up, then the scenarios take turns
// in rounds, and the figures add the rounds up.
//
// The Pod CREATE reaches /mutate as the API server sends it, and /validate as the API server sends
// it after the mutating webhooks ran: with tokenguard's risk label and annotation (our own /mutate
// answer, applied). The same pod without them (/mutate skipped or failed open: every answer then
// carries a warning and a logged finding) is measured too, as the worst case. The cost of the
// policies is measured against a second tokenguard server configured with every policy off.
//
// Environment: BENCH_DURATION (seconds per scenario per round, default 4), BENCH_ROUNDS (default 3),
// BENCH_WARMUP (seconds, default 2), BENCH_CONNECTIONS (default 16), BENCH_SKIP_PVC=1 to skip the
// PVC cache benchmark.

import autocannon from 'autocannon';
import fastJsonPatch from 'fast-json-patch';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, pin, untilListening } from './host.js';
import { runPvcCacheBench } from './pvc-cache.js';

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

const DURATION = envNumber('BENCH_DURATION', 4);
const ROUNDS = Math.round(envNumber('BENCH_ROUNDS', 3));
const WARMUP = envNumber('BENCH_WARMUP', 2);
const CONNECTIONS = envNumber('BENCH_CONNECTIONS', 16);
const TARGET_RATIO = 0.7;
/** Issue 4: the policies may cost at most this share of the bare-server ratio. */
const POLICY_COST_BUDGET = 0.1;

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

const SCENARIO = {
  bare: 'bare node:https (Pod review)',
  validate: 'tokenguard /validate (Pod CREATE)',
  policiesOff: 'tokenguard /validate (Pod, policies off)',
};

// --- processes and CPUs --------------------------------------------------------------------

const canPin = (() => {
  try {
    execFileSync('taskset', ['-c', '0', 'true']);
    return Number(execFileSync('nproc').toString().trim()) >= 2;
  } catch {
    return false;
  }
})();

function pinSelfTo(cpuList: string): void {
  if (canPin) pin(process.pid, cpuList);
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

/** One request first: the answer must be a well-formed review for this uid, or the figures mean nothing. */
async function checkAnswer(port: number, path: string, body: string): Promise<any> {
  const { status, text } = await call(port, 'POST', path, body);
  const uid = JSON.parse(body).request.uid;
  const parsed = JSON.parse(text);
  if (status !== 200 || parsed.response?.uid !== uid) throw new Error(`${path} answered ${status}: ${text.slice(0, 300)}`);
  return parsed.response;
}

/** The Pod review as /validate receives it once tokenguard's /mutate answer has been applied. */
async function afterMutation(port: number, podReviewText: string): Promise<string> {
  const response = await checkAnswer(port, '/mutate', podReviewText);
  if (!response.patch) throw new Error('/mutate returned no patch for the benchmark pod: it should be marked at risk');
  const review = JSON.parse(podReviewText);
  const ops = JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8'));
  review.request.object = fastJsonPatch.applyPatch(review.request.object, ops, true, false).newDocument;
  return JSON.stringify(review);
}

// --- measuring -----------------------------------------------------------------------------

interface Scenario {
  name: string;
  port: number;
  path: string;
  body: string;
  pid: number;
}

/** One measured slice of a scenario. */
interface Slice {
  requests: number;
  seconds: number;
  p50: number;
  p99: number;
  cpuSeconds?: number;
  errors: number;
}

interface Figures {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  /** Server CPU seconds per wall-clock second while measured. */
  cpu?: number;
  errors: number;
}

const loadOptions = (s: Scenario) => ({
  url: `https://127.0.0.1:${s.port}${s.path}`,
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: s.body,
  connections: CONNECTIONS,
  pipelining: 1,
});

async function slice(s: Scenario, seconds: number): Promise<Slice> {
  const cpuBefore = cpuSeconds(s.pid);
  const r = await autocannon({ ...loadOptions(s), duration: seconds });
  const cpuAfter = cpuSeconds(s.pid);
  return {
    requests: r.requests.total,
    seconds: r.duration,
    p50: r.latency.p50,
    p99: r.latency.p99,
    cpuSeconds: cpuBefore !== undefined && cpuAfter !== undefined ? cpuAfter - cpuBefore : undefined,
    errors: r.errors + r.timeouts + r.non2xx,
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function combine(name: string, slices: Slice[]): Figures {
  const seconds = slices.reduce((n, s) => n + s.seconds, 0);
  const cpu = slices.every((s) => s.cpuSeconds !== undefined) ? slices.reduce((n, s) => n + s.cpuSeconds!, 0) / seconds : undefined;
  return {
    name,
    rps: slices.reduce((n, s) => n + s.requests, 0) / seconds,
    p50: median(slices.map((s) => s.p50)),
    p99: median(slices.map((s) => s.p99)),
    cpu,
    errors: slices.reduce((n, s) => n + s.errors, 0),
  };
}

/** Server CPU time per request: steadier than req/s on a machine where other work competes. */
const cpuPerRequest = (f: Figures) => (f.cpu === undefined ? undefined : (f.cpu / f.rps) * 1e6);

const header = `${'scenario'.padEnd(44)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'srv CPU'.padStart(8)} ${'CPU us/req'.padStart(11)} ${'errors'.padStart(7)}`;
function row(f: Figures): string {
  const cpu = f.cpu === undefined ? 'n/a' : `${Math.round(f.cpu * 100)}%`;
  const perReq = cpuPerRequest(f)?.toFixed(0) ?? 'n/a';
  return `${f.name.padEnd(44)} ${Math.round(f.rps).toString().padStart(8)} ${f.p50.toFixed(0).padStart(7)} ${f.p99.toFixed(0).padStart(7)} ${cpu.padStart(8)} ${perReq.padStart(11)} ${String(f.errors).padStart(7)}`;
}

async function main(): Promise<void> {
  pinSelfTo('1');
  const certs = mkdtempSync(join(tmpdir(), 'tokenguard-bench-'));
  execFileSync('bash', [join(ROOT, 'certs', 'generate.sh'), certs, '--force']);
  const cert = join(certs, 'tls.crt');
  const key = join(certs, 'tls.key');
  const pod = podReview();
  const deployment = JSON.stringify(JSON.parse(fixture('028')));

  process.stdout.write(
    [
      `tokenguard benchmark: HTTPS keep-alive, ${CONNECTIONS} connections; per scenario ${WARMUP} s warm-up, then ${ROUNDS} rounds of ${DURATION} s, interleaved`,
      canPin ? 'each server pinned to CPU 0, the load generator to CPU 1 (taskset)' : 'taskset or a second CPU unavailable: processes are not pinned',
      `Pod CREATE review: ${pod.length} bytes; Deployment CREATE review: ${deployment.length} bytes`,
      '',
    ].join('\n'),
  );

  // Both servers stay up for the whole run and take turns, so load from anything else on the
  // machine falls on them alike instead of on whichever happened to run at a bad moment.
  const barePort = await freePort();
  const oursPort = await freePort();
  const offPort = await freePort();
  const offConfig = join(certs, 'policies-off.yaml');
  writeFileSync(offConfig, 'mode: "off"\n');
  const serve = (port: number, ...extra: string[]) =>
    startOnCore0([MAIN, 'serve', '--no-cluster', '--address', '127.0.0.1', '--port', String(port), '--tls-cert', cert, '--tls-key', key, '--log-level', 'info', ...extra]);
  const bare = startOnCore0([BARE, String(barePort), cert, key]);
  const ours = serve(oursPort);
  const off = serve(offPort, '--config', offConfig);
  let figures: Figures[];
  try {
    await untilListening(barePort, bare);
    await untilListening(oursPort, ours);
    await untilListening(offPort, off);
    const mutated = await afterMutation(oursPort, pod);
    process.stdout.write(`Pod CREATE review after /mutate (as /validate receives it): ${mutated.length} bytes\n`);
    const scenarios: Scenario[] = [
      { name: SCENARIO.bare, port: barePort, path: '/validate', body: mutated, pid: bare.pid! },
      { name: SCENARIO.validate, port: oursPort, path: '/validate', body: mutated, pid: ours.pid! },
      { name: SCENARIO.policiesOff, port: offPort, path: '/validate', body: mutated, pid: off.pid! },
      { name: 'tokenguard /mutate (Pod CREATE)', port: oursPort, path: '/mutate', body: pod, pid: ours.pid! },
      { name: 'tokenguard /validate (Pod, /mutate skipped)', port: oursPort, path: '/validate', body: pod, pid: ours.pid! },
      { name: 'tokenguard /validate (Deployment CREATE)', port: oursPort, path: '/validate', body: deployment, pid: ours.pid! },
    ];
    for (const s of scenarios) {
      await checkAnswer(s.port, s.path, s.body);
      await autocannon({ ...loadOptions(s), duration: WARMUP });
    }
    const slices = scenarios.map(() => [] as Slice[]);
    for (let round = 1; round <= ROUNDS; round++) {
      for (const [i, s] of scenarios.entries()) slices[i]!.push(await slice(s, DURATION));
      process.stdout.write(`  round ${round}/${ROUNDS} done\n`);
    }
    figures = scenarios.map((s, i) => combine(s.name, slices[i]!));
  } finally {
    await Promise.all([stop(bare), stop(ours), stop(off)]);
    rmSync(certs, { recursive: true, force: true });
  }

  const byName = (name: string) => figures.find((f) => f.name === name)!;
  const bareFigures = byName(SCENARIO.bare);
  const bareCpu = cpuPerRequest(bareFigures);
  const lines = ['', `  ${header}`, ...figures.map((f) => `  ${row(f)}`), ''];
  for (const f of figures) {
    if (f === bareFigures) continue;
    const ratio = f.rps / bareFigures.rps;
    const cpu = cpuPerRequest(f);
    const cpuRatio = bareCpu && cpu ? ` (by server CPU per request: ${(bareCpu / cpu).toFixed(2)})` : '';
    const verdict = f.name === SCENARIO.validate ? `  target >= ${TARGET_RATIO}: ${ratio >= TARGET_RATIO ? 'met' : 'NOT met'}` : '';
    lines.push(`ratio ${f.name.replace('tokenguard ', '')} / bare: ${ratio.toFixed(2)}${cpuRatio}${verdict}`);
  }
  // The policies' share of the ratio: what turning them all off gives back.
  const on = byName(SCENARIO.validate).rps;
  const policiesOff = byName(SCENARIO.policiesOff).rps;
  const cost = 1 - on / policiesOff;
  lines.push(
    `policy cost on /validate (Pod CREATE): ratio ${(on / bareFigures.rps).toFixed(2)} with the policies, ` +
      `${(policiesOff / bareFigures.rps).toFixed(2)} with every policy off: ${(cost * 100).toFixed(1)} % of it` +
      `  target <= ${POLICY_COST_BUDGET * 100} %: ${cost <= POLICY_COST_BUDGET ? 'met' : 'NOT met'}`,
  );
  lines.push('(p50/p99: median over the rounds; latencies in whole milliseconds as autocannon records them)');
  process.stdout.write(lines.join('\n') + '\n');

  if (process.env.BENCH_SKIP_PVC !== '1') {
    // Its own server and fake API server are in this process and a child: give them both cores.
    pinSelfTo('0-1');
    process.stdout.write('\nPVC cache benchmark (bench/pvc-cache.ts)\n');
    await runPvcCacheBench();
  }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exitCode = 1;
});
