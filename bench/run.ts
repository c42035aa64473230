// `npm run bench`: tokenguard's /validate and /mutate against a bare node:https server, same
// machine, same run, one server core, HTTPS keep-alive, 16 connections in a closed loop.
//
// Processes and CPUs: every server under test is a child process pinned to CPU 0 (`taskset`, when
// available) with its JSON log on /dev/null (still written, as in production, just not kept). The
// load generator (bench/load-generator.ts: raw TLS, precomputed requests) is a child pinned to
// CPU 1. It busy-polls, so that answering it never costs a server the wakeup of an idle vCPU (an
// artifact of these virtual machines: see its header; BENCH_GENERATOR=epoll measures with it);
// its work per request is printed beside the server's CPU per request, and the server's CPU use
// beside both: a server near 100 % is the bottleneck, not the generator. A yardstick (bench/calibrate.ts) on CPU 0 times a fixed piece of CPU work before
// and after every measured run, while the servers are idle: a run next to a slow spell of the
// machine (more than SLOW_SPELL x the yardstick's best time) is flagged, and every ratio is also
// given over the clean rounds.
//
// Each ratio compares two scenarios measured in the same round with the same body: tokenguard
// against the bare server reading the same review (its req/s, and the bare server's CPU per
// request over its own), and caller authentication on against off. Rounds alternate the scenarios,
// so other load on the machine falls on all of them alike; the figure is the median over the rounds.
//
// The Pod CREATE reaches /mutate as the API server sends it, and /validate as the API server sends
// it after the mutating webhooks ran: with tokenguard's risk label and annotation (our own /mutate
// answer, applied). The same pod without them (/mutate skipped or failed open: every answer then
// carries a warning and a logged finding) is measured too, as the worst case; a second tokenguard
// with every policy off gives the policies' share.
//
// Environment: BENCH_DURATION (seconds per scenario per round, default 3), BENCH_ROUNDS (default 5),
// BENCH_WARMUP (seconds, default 2), BENCH_CONNECTIONS (default 16), BENCH_SKIP_PVC=1 to skip the
// PVC cache benchmark, BENCH_ONLY (comma-separated scenario keys, with their references),
// BENCH_GENERATOR=epoll (the load generator sleeps between answers instead of busy-polling),
// BENCH_TARGET=bundle (the servers run the esbuild bundle, dist/bundle/cli/main.js, as the image
// does, instead of the tsc build; the PVC cache benchmark runs in-process and is the same either way).

import fastJsonPatch from 'fast-json-patch';
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, pin, untilListening } from './host.js';
import type { LoadRequest, LoadResult } from './load-generator.js';
import type { OidcApiServerMsg } from './oidc-api-server.js';
import { runPvcCacheBench } from './pvc-cache.js';
import { describeObserverBench, runObserverBench } from './token-observer.js';

const HERE = dirname(fileURLToPath(import.meta.url)); // dist/bench
const ROOT = resolve(HERE, '../..');
/** The CLI under test: the tsc build, or with BENCH_TARGET=bundle the esbuild bundle the container image runs. */
const TARGET = process.env.BENCH_TARGET ?? 'tsc';
if (TARGET !== 'tsc' && TARGET !== 'bundle') throw new Error(`BENCH_TARGET must be tsc or bundle, got ${JSON.stringify(TARGET)}`);
const MAIN = TARGET === 'bundle' ? join(ROOT, 'dist', 'bundle', 'cli', 'main.js') : join(ROOT, 'dist', 'src', 'cli', 'main.js');
const REVIEWS = join(ROOT, 'test', 'fixtures', 'admission-reviews');

function envNumber(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got ${JSON.stringify(v)}`);
  return n;
}

const DURATION = envNumber('BENCH_DURATION', 3);
const ROUNDS = Math.round(envNumber('BENCH_ROUNDS', 5));
const WARMUP = envNumber('BENCH_WARMUP', 2);
const CONNECTIONS = envNumber('BENCH_CONNECTIONS', 16);
/** How the load generator waits for answers (bench/load-generator.ts says why it busy-polls by default). */
const POLL = process.env.BENCH_GENERATOR === 'epoll' ? 'epoll' : 'spin';
/** A run whose yardstick took more than this times its best is next to a slow spell. */
const SLOW_SPELL = 1.3;
/** Issue 4: the policies may cost at most this share of the /validate ratio. */
const POLICY_COST_BUDGET = 0.1;
const ALLOWED = '"allowed":true';

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
    return cpus().length >= 2;
  } catch {
    return false;
  }
})();

/** A server process on CPU 0, its output discarded. */
function startOnCore0(args: string[]): ChildProcess {
  const [cmd, ...rest] = canPin ? ['taskset', '-c', '0', process.execPath, ...args] : [process.execPath, ...args];
  return spawn(cmd, rest, { stdio: ['ignore', 'ignore', 'inherit'] });
}

/** A helper child (load generator, yardstick, fake API server) on `cpu`, talking over IPC. */
function forkOn(script: string, cpu: number): ChildProcess {
  const child = fork(join(HERE, script), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  if (canPin) pin(child.pid!, cpu);
  return child;
}

function ask<T>(child: ChildProcess, message: object, reply: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: { kind: string }) => {
      if (m.kind !== reply) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(m as T);
    };
    const onExit = (code: number | null) => reject(new Error(`bench child ${child.pid} exited with ${code}`));
    child.on('message', onMessage);
    child.once('exit', onExit);
    if (Object.keys(message).length) child.send(message);
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** CPU seconds used so far by a process (user + system), from /proc. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, USER_HZ 100
}

function rssMiB(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(kb![1]) / 1024;
}

// --- HTTPS ---------------------------------------------------------------------------------

function call(port: number, path: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  return new Promise((res, rej) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port, method: 'POST', path, rejectUnauthorized: false, agent: false, headers: { 'content-type': 'application/json', ...headers } },
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

/** The answer must be a well-formed review for this uid, or the figures mean nothing (retried while a server warms up). */
async function checkAnswer(port: number, path: string, body: string, headers?: Record<string, string>): Promise<any> {
  const uid = JSON.parse(body).request.uid;
  let last = '';
  for (let i = 0; i < 100; i++) {
    const { status, text } = await call(port, path, body, headers);
    if (status === 200 && JSON.parse(text).response?.uid === uid) return JSON.parse(text).response;
    last = `${status}: ${text.slice(0, 300)}`;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${path} on port ${port} answered ${last}`);
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

// --- scenarios and measuring ---------------------------------------------------------------

interface Server {
  port: number;
  pid: number;
}

interface Scenario {
  key: string;
  name: string;
  server: Server;
  path: string;
  body: string;
  headers?: Record<string, string>;
  /** The scenario it is compared with (same round, same body). */
  reference?: string;
  /** Targets on the ratios to the reference: throughput (and CPU per request), p99 (at most this many times the reference's). */
  target?: { rps?: number; p99?: number };
}

/** One measured run of a scenario. */
interface Slice {
  rps: number;
  p50: number;
  p99: number;
  serverMicrosPerRequest: number;
  /** Share of one CPU the server used while measured. */
  serverBusy: number;
  generatorWorkMicrosPerRequest: number;
  generatorMicrosPerRequest: number;
  errors: number;
  /** The yardstick's time just before and just after, ms. */
  yardstick: [number, number];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  if (canPin) pin(process.pid, 1);
  const dir = mkdtempSync(join(tmpdir(), 'tokenguard-bench-'));
  execFileSync('bash', [join(ROOT, 'certs', 'generate.sh'), dir, '--force']);
  const cert = join(dir, 'tls.crt');
  const key = join(dir, 'tls.key');
  const ca = readFileSync(join(dir, 'ca.crt'), 'utf8');
  const pod = podReview();
  const deployment = JSON.stringify(JSON.parse(fixture('028')));

  process.stdout.write(
    [
      `tokenguard benchmark: HTTPS keep-alive, ${CONNECTIONS} connections in a closed loop (raw TLS, precomputed requests);`,
      `per scenario ${WARMUP} s warm-up, then ${ROUNDS} rounds of ${DURATION} s, interleaved; yardstick before and after each run`,
      POLL === 'spin' ? 'the load generator busy-polls (BENCH_GENERATOR=epoll: it sleeps between answers)' : 'the load generator sleeps in epoll_wait between answers',
      canPin ? 'servers and yardstick pinned to CPU 0, the load generator to CPU 1 (taskset)' : 'taskset or a second CPU unavailable: processes are not pinned',
      `Pod CREATE review: ${pod.length} bytes; Deployment CREATE review: ${deployment.length} bytes`,
      `tokenguard under test: ${relative(ROOT, MAIN)} (BENCH_TARGET=${TARGET})`,
      '',
    ].join('\n'),
  );

  const children: ChildProcess[] = [];
  const keep = <T extends ChildProcess>(c: T) => (children.push(c), c);
  try {
    const generator = keep(forkOn('load-generator.js', 1));
    const yardstick = keep(forkOn('calibrate.js', 0));
    const oidc = keep(forkOn('oidc-api-server.js', 1));
    const api = await ask<OidcApiServerMsg>(oidc, {}, 'ready');

    const serve = async (name: string, config: string): Promise<Server> => {
      const port = await freePort();
      const file = join(dir, `${name}.yaml`);
      writeFileSync(file, config);
      const child = keep(startOnCore0([MAIN, 'serve', '--config', file, '--address', '127.0.0.1', '--port', String(port), '--tls-cert', cert, '--tls-key', key]));
      await untilListening(port, child);
      return { port, pid: child.pid! };
    };
    const barePort = await freePort();
    const bareChild = keep(startOnCore0([join(HERE, 'bare-server.js'), String(barePort), cert, key]));
    await untilListening(barePort, bareChild);
    const bare: Server = { port: barePort, pid: bareChild.pid! };
    const ours = await serve('default', 'cluster: {enabled: false}\n');
    const off = await serve('policies-off', 'mode: "off"\ncluster: {enabled: false}\n');
    const withCluster = `cluster: {enabled: true, kubeconfig: ${JSON.stringify(api.kubeconfigPath)}}\n`;
    const authOff = await serve('auth-off', withCluster);
    const authOn = await serve('auth-enforce', withCluster + 'server: {callerAuth: {mode: enforce}}\n');
    await new Promise((r) => setTimeout(r, 1000)); // settle after start-up before measuring memory
    const idle = { bare: rssMiB(bare.pid), ours: rssMiB(ours.pid) };

    const mutated = await afterMutation(ours.port, pod);
    const bearer = { authorization: `Bearer ${api.token}` };
    const all: Scenario[] = [
      { key: 'bare-validate', name: 'bare node:https, Pod as /validate gets it', server: bare, path: '/validate', body: mutated },
      { key: 'bare-mutate', name: 'bare node:https, Pod as /mutate gets it', server: bare, path: '/validate', body: pod },
      { key: 'bare-deployment', name: 'bare node:https, Deployment', server: bare, path: '/validate', body: deployment },
      { key: 'validate', name: 'tokenguard /validate Pod CREATE', server: ours, path: '/validate', body: mutated, reference: 'bare-validate', target: { rps: 0.85, p99: 1.5 } },
      { key: 'mutate', name: 'tokenguard /mutate Pod CREATE', server: ours, path: '/mutate', body: pod, reference: 'bare-mutate', target: { rps: 0.8, p99: 1.5 } },
      { key: 'deployment', name: 'tokenguard /validate Deployment CREATE', server: ours, path: '/validate', body: deployment, reference: 'bare-deployment', target: { rps: 0.85, p99: 1.5 } },
      { key: 'policies-off', name: 'tokenguard /validate Pod, every policy off', server: off, path: '/validate', body: mutated, reference: 'bare-validate' },
      { key: 'unmarked', name: 'tokenguard /validate Pod, /mutate skipped', server: ours, path: '/validate', body: pod, reference: 'bare-mutate' },
      { key: 'auth-off', name: 'tokenguard /validate Pod, callerAuth off', server: authOff, path: '/validate', body: mutated },
      { key: 'auth-enforce', name: 'tokenguard /validate Pod, enforce + token', server: authOn, path: '/validate', body: mutated, headers: bearer, reference: 'auth-off', target: { rps: 0.95 } },
    ];
    const only = process.env.BENCH_ONLY?.split(',').filter(Boolean);
    const scenarios = only ? all.filter((s) => only.includes(s.key) || all.some((o) => only.includes(o.key) && o.reference === s.key)) : all;

    const request = (s: Scenario, seconds: number, warmupSeconds: number): LoadRequest => ({
      kind: 'load',
      mode: 'closed',
      url: `https://127.0.0.1:${s.server.port}${s.path}`,
      body: s.body,
      headers: s.headers,
      ca,
      expect: ALLOWED,
      connections: CONNECTIONS,
      seconds,
      rate: 0,
      warmupSeconds,
      poll: POLL,
    });
    const measure = async (s: Scenario): Promise<Slice> => {
      const before = (await ask<{ ms: number }>(yardstick, { kind: 'time' }, 'timed')).ms;
      const cpu0 = cpuSeconds(s.server.pid);
      const r = await ask<LoadResult>(generator, request(s, DURATION, 0), 'load-done');
      const serverSeconds = cpuSeconds(s.server.pid) - cpu0;
      const after = (await ask<{ ms: number }>(yardstick, { kind: 'time' }, 'timed')).ms;
      return {
        rps: r.rps,
        p50: r.p50,
        p99: r.p99,
        serverMicrosPerRequest: (serverSeconds * 1e6) / Math.max(1, r.requests + r.errors),
        serverBusy: serverSeconds / r.seconds,
        generatorWorkMicrosPerRequest: r.generatorWorkMicrosPerRequest,
        generatorMicrosPerRequest: r.generatorCpuMicrosPerRequest,
        errors: r.errors,
        yardstick: [before, after],
      };
    };

    for (const s of scenarios) {
      await checkAnswer(s.server.port, s.path, s.body, s.headers);
      await ask<LoadResult>(generator, request(s, WARMUP, 0), 'load-done');
    }
    const slices = new Map<string, Slice[]>(scenarios.map((s) => [s.key, []]));
    for (let round = 1; round <= ROUNDS; round++) {
      for (const s of scenarios) slices.get(s.key)!.push(await measure(s));
      process.stdout.write(`  round ${round}/${ROUNDS} done\n`);
    }
    report(scenarios, slices, idle);
  } finally {
    await Promise.all(children.map(stop));
    rmSync(dir, { recursive: true, force: true });
  }

  if (process.env.BENCH_SKIP_PVC !== '1' && !process.env.BENCH_ONLY) {
    // Its own server and fake API server are in this process and a child: give them both cores.
    if (canPin) pin(process.pid, '0-1');
    process.stdout.write('\nPVC cache benchmark (bench/pvc-cache.ts)\n');
    await runPvcCacheBench();
  }
  if (!process.env.BENCH_ONLY) {
    process.stdout.write('\nToken refresh observer (bench/token-observer.ts)\n');
    process.stdout.write(`  ${describeObserverBench(runObserverBench())}\n`);
  }
}

function report(scenarios: Scenario[], slices: Map<string, Slice[]>, idle: { bare: number; ours: number }): void {
  const best = Math.min(...[...slices.values()].flat().flatMap((s) => s.yardstick));
  const slow = (s: Slice) => Math.max(...s.yardstick) > SLOW_SPELL * best;
  const lines: string[] = [];
  const pad = (v: string, n: number) => v.padStart(n);
  lines.push('');
  lines.push(
    `  ${'scenario'.padEnd(44)} ${pad('req/s', 7)} ${pad('p50 ms', 7)} ${pad('p99 ms', 7)} ${pad('srv us/req', 10)} ${pad('srv CPU', 7)} ` +
      `${pad('gen work us/req', 15)} ${pad('gen CPU us/req', 14)} ${pad('errors', 6)}  slow rounds`,
  );
  for (const s of scenarios) {
    const xs = slices.get(s.key)!;
    const m = (f: (x: Slice) => number, digits = 0) => median(xs.map(f)).toFixed(digits);
    lines.push(
      `  ${s.name.padEnd(44)} ${pad(m((x) => x.rps), 7)} ${pad(m((x) => x.p50, 2), 7)} ${pad(m((x) => x.p99, 2), 7)} ` +
        `${pad(m((x) => x.serverMicrosPerRequest), 10)} ${pad(m((x) => x.serverBusy * 100) + '%', 7)} ` +
        `${pad(m((x) => x.generatorWorkMicrosPerRequest), 15)} ${pad(m((x) => x.generatorMicrosPerRequest), 14)} ` +
        `${pad(String(xs.reduce((n, x) => n + x.errors, 0)), 6)}  ` +
        (xs.map((x, i) => (slow(x) ? String(i + 1) : '')).filter(Boolean).join(',') || '-'),
    );
  }
  const generatorShare = Math.max(
    ...scenarios.map((s) => median(slices.get(s.key)!.map((x) => x.generatorWorkMicrosPerRequest / x.serverMicrosPerRequest))),
  );
  const leastBusy = Math.min(...scenarios.map((s) => median(slices.get(s.key)!.map((x) => x.serverBusy))));
  lines.push('');
  lines.push(
    `load generator: its work is at most ${(generatorShare * 100).toFixed(0)} % of the server's CPU per request, and every server ran at ` +
      `${(leastBusy * 100).toFixed(0)} % or more of its CPU: the servers are the bottleneck` +
      (POLL === 'spin' ? ' (gen CPU includes its polling: it uses its whole CPU by design)' : ''),
  );
  lines.push(`yardstick: best ${best.toFixed(1)} ms; a round is slow when it took over ${SLOW_SPELL}x that before or after a run`);
  lines.push('');
  lines.push('ratios, each the median over the rounds of (scenario / its reference in the same round); [clean rounds only]:');
  const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');
  const ratios = new Map<string, number>();
  for (const s of scenarios) {
    if (!s.reference || !slices.has(s.reference)) continue;
    const mine = slices.get(s.key)!;
    const ref = slices.get(s.reference)!;
    const rounds = mine.map((m, i) => ({ m, r: ref[i]!, clean: !slow(m) && !slow(ref[i]!) }));
    const of = (f: (x: { m: Slice; r: Slice }) => number, clean: boolean) => {
      const pick = rounds.filter((x) => !clean || x.clean);
      return pick.length ? median(pick.map(f)) : NaN;
    };
    const byRps = (x: { m: Slice; r: Slice }) => x.m.rps / x.r.rps;
    const byCpu = (x: { m: Slice; r: Slice }) => x.r.serverMicrosPerRequest / x.m.serverMicrosPerRequest;
    const p99 = (x: { m: Slice; r: Slice }) => x.m.p99 / x.r.p99;
    const cleanCount = rounds.filter((x) => x.clean).length;
    const show = (f: (x: { m: Slice; r: Slice }) => number) => `${of(f, false).toFixed(2)} [${cleanCount ? of(f, true).toFixed(2) : 'none clean'}]`;
    const reference = scenarios.find((o) => o.key === s.reference)!;
    let line = `  ${s.name} / ${reference.name}: req/s ${show(byRps)}, by CPU per request ${show(byCpu)}, p99 ${show(p99)}`;
    if (s.target?.rps) line += `; target >= ${s.target.rps}: ${verdict(of(byRps, false) >= s.target.rps)}`;
    if (s.target?.p99) line += `; p99 target <= ${s.target.p99}x: ${verdict(of(p99, false) <= s.target.p99)}`;
    lines.push(line);
    ratios.set(s.key, of(byRps, false));
  }
  if (ratios.has('validate') && ratios.has('policies-off')) {
    const cost = 1 - ratios.get('validate')! / ratios.get('policies-off')!;
    lines.push(`  policy cost on /validate (Pod CREATE): ${(cost * 100).toFixed(1)} % of the ratio; target <= ${POLICY_COST_BUDGET * 100} %: ${verdict(cost <= POLICY_COST_BUDGET)}`);
  }
  lines.push('');
  lines.push(`idle RSS, no cluster: tokenguard ${idle.ours.toFixed(0)} MiB, bare node:https ${idle.bare.toFixed(0)} MiB; target <= 90 MiB: ${verdict(idle.ours <= 90)}`);
  lines.push(`machine: ${cpus().length} CPUs, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  process.stdout.write(lines.join('\n') + '\n');
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exitCode = 1;
});
