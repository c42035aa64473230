// The load generator of both benchmarks (bench/run.ts, bench/pvc-cache.ts), in a process of its own
// pinned to the CPU the servers do not use, so its JIT, heap and collections stay off the server's:
//
//   fork: node dist/bench/load-generator.js
//   <- LoadRequest   -> { kind: 'load-done', ...LoadResult }   (as many runs as it is sent)
//
// It imports nothing of tokenguard (no prom-client with its 10 ms event-loop timer, no client
// library): the process holds the sockets and the timings, nothing else. Both loads write each
// request as precomputed bytes on raw TLS sockets and read each answer only as far as its status
// line, Content-Length and a check of the body for an expected string (node:https's client, its
// agent and streams cost about ten times more per request). Each run reports the generator's own
// CPU time per request beside the figures, so it is plain when the generator, not the server, is
// the bottleneck (autocannon, a Node program too, spent more CPU per request than the server it
// measured).
//
// Two loads:
// - closed (saturated): `connections` keep-alive connections, each sending its next request as
//   soon as the last one is answered; the server is then busy all the time, and the latencies are
//   mostly queueing (requests in flight / throughput). By default the generator busy-polls (its
//   event loop never sleeps in epoll_wait): on these virtual machines, a response written to a
//   client whose vCPU sleeps costs the *server* an inter-processor interrupt to wake it, about
//   10 us of its CPU per response, measured as the bare server's CPU per request falling from
//   about 50 to 39 us when the generator polls. A client on another machine (kube-apiserver)
//   costs the server no such thing, and the tax falls heaviest on the slower server, so it is
//   kept out of the figures. The generator's own work per request (its I/O callbacks) is reported
//   apart from the CPU it burns polling; `poll: 'epoll'` gives the sleeping client instead.
// - paced: an open-loop load for latency. Requests at even intervals, over up to `connections`
//   keep-alive connections, each timed from the moment it was due, whatever the answers do (a
//   stalled server is not hidden by requests that wait to be sent: no coordinated omission).
//   - pacing by spinning the event loop (setImmediate) instead of timers: a timer fires on a 1 ms
//     grid, so requests left in bunches that then queued behind each other at the server. The
//     generator is meant to have a CPU of its own.
//   Its own stalls still reach the figures: while its loop stops (its GC, or the machine giving its
//   CPU to something else), nothing is sent or read, and every request due then looks slow. The
//   spinning loop sees each such stall (a gap over GENERATOR_STALL_MS between two turns), so the
//   paced load also reports each request's latency less the part of it the generator itself
//   stood still: the latency a client that was not stalled would have seen. Both are reported.

import { connect, type TLSSocket } from 'node:tls';
import { performance } from 'node:perf_hooks';

export type LoadRequest = {
  kind: 'load';
  mode: 'closed' | 'paced';
  url: string;
  body: string;
  /** Extra request headers (e.g. `authorization`). */
  headers?: Record<string, string>;
  /** PEM of the CA that signed the server certificate. */
  ca: string;
  connections: number;
  seconds: number;
  /** paced only: requests per second. */
  rate: number;
  /** Seconds of the same load before the measured run (TLS sessions, JIT, heap sizing on both sides). */
  warmupSeconds: number;
  /** closed only: busy-poll (default) or sleep in epoll_wait between answers (see the header). */
  poll?: 'spin' | 'epoll';
  /** paced only: a string every answer's body must contain (e.g. `"allowed":false`); others count as errors. */
  expect: string;
};

export type LoadResult = {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  requests: number;
  rps: number;
  errors: number;
  /** paced only (else NaN): p50/p99 of the latencies less the load generator's own stalls, and those stalls' total. */
  p50LessGeneratorStalls: number;
  p99LessGeneratorStalls: number;
  generatorStallMs: number;
  /** The generator's own CPU time (user + system) per measured request, in microseconds (polling included). */
  generatorCpuMicrosPerRequest: number;
  /** closed only: the generator's work per request, its I/O callbacks (reading an answer, writing the next request). */
  generatorWorkMicrosPerRequest: number;
  /** Measured wall-clock seconds. */
  seconds: number;
};

type Timings = { times: number[]; errors: number; seconds: number; cpuMicros: number; workMicros?: number; lessStalls?: number[]; stallMs?: number };

/** A gap between two turns of the spinning loop longer than this is a stall of the generator. */
const GENERATOR_STALL_MS = 1;

type Connection = { socket: TLSSocket; busy: boolean; dueAt: number; received: Buffer | null };

const HEADER_END = Buffer.from('\r\n\r\n');

/** The whole request, once: head and body as the wire carries them. */
function requestBytes(o: LoadRequest): Buffer {
  const url = new URL(o.url);
  const payload = Buffer.from(o.body);
  const extra = Object.entries(o.headers ?? {})
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  return Buffer.concat([
    Buffer.from(`POST ${url.pathname} HTTP/1.1\r\nhost: ${url.host}\r\ncontent-type: application/json\r\n${extra}content-length: ${payload.length}\r\n\r\n`),
    payload,
  ]);
}

/**
 * One whole answer at the head of `buf`: its end offset and whether it is the expected one;
 * undefined while it is incomplete.
 */
function parseAnswer(buf: Buffer, expect: Buffer): { end: number; ok: boolean } | undefined {
  const headerEnd = buf.indexOf(HEADER_END);
  if (headerEnd < 0) return undefined;
  const head = buf.toString('latin1', 0, headerEnd);
  const length = /\r\ncontent-length: *(\d+)/i.exec(head);
  if (!length) throw new Error(`answer without content-length: ${head}`);
  const end = headerEnd + 4 + Number(length[1]);
  if (buf.length < end) return undefined;
  return { end, ok: head.startsWith('HTTP/1.1 200') && buf.subarray(headerEnd + 4, end).includes(expect) };
}

async function openConnection(o: LoadRequest): Promise<TLSSocket> {
  const url = new URL(o.url);
  const socket = connect({ host: url.hostname, port: Number(url.port), ca: o.ca });
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  return socket;
}

/** CPU microseconds (user + system) this process used since `since`. */
const cpuMicrosSince = (since: NodeJS.CpuUsage) => {
  const d = process.cpuUsage(since);
  return d.user + d.system;
};

/** Closed loop: each connection sends its next request when the last one is answered. */
async function closed(o: LoadRequest): Promise<Timings> {
  const request = requestBytes(o);
  const expect = Buffer.from(o.expect);
  let times: number[] = [];
  let errors = 0;
  let running = true;
  let broken: Error | null = null;
  let inFlight = 0;
  let work = 0; // ms spent in the I/O callbacks
  const loops = (await Promise.all(Array.from({ length: o.connections }, () => openConnection(o)))).map((socket) => {
    let received: Buffer | null = null;
    let sentAt = 0;
    const send = () => {
      inFlight++;
      sentAt = performance.now();
      socket.write(request);
    };
    socket.on('data', (d: Buffer) => {
      const at = performance.now();
      received = received ? Buffer.concat([received, d]) : d;
      const answer = parseAnswer(received, expect);
      if (answer) {
        inFlight--;
        if (answer.ok) times.push(at - sentAt);
        else errors++;
        received = received.length > answer.end ? received.subarray(answer.end) : null;
        if (running) send();
      }
      work += performance.now() - at;
    });
    socket.on('error', (err) => (broken ??= err));
    socket.on('close', () => (broken ??= new Error('the server closed a keep-alive connection')));
    return { socket, send };
  });
  const run = async (seconds: number) => {
    running = true;
    for (const l of loops) l.send();
    const end = performance.now() + seconds * 1000;
    if ((o.poll ?? 'spin') === 'spin') {
      // Never idle: with an immediate pending, libuv polls for I/O without sleeping.
      await new Promise<void>((done) => {
        const spin = () => (performance.now() < end ? setImmediate(spin) : done());
        spin();
      });
    } else await new Promise((r) => setTimeout(r, seconds * 1000));
    running = false;
    while (inFlight > 0 && !broken) await new Promise((r) => setImmediate(r));
    if (broken) throw broken;
  };
  await run(o.warmupSeconds);
  times = [];
  errors = 0;
  work = 0;
  const cpu = process.cpuUsage();
  const started = performance.now();
  await run(o.seconds);
  const seconds = (performance.now() - started) / 1000;
  const cpuMicros = cpuMicrosSince(cpu);
  for (const l of loops) l.socket.removeAllListeners('close').destroy();
  return { times, errors, seconds, cpuMicros, workMicros: work * 1000 };
}

async function paced(o: LoadRequest): Promise<Timings> {
  const request = requestBytes(o);
  const expect = Buffer.from(o.expect);
  let times: number[] = [];
  let spans: number[] = []; // due, answered: a pair per measured answer
  let stalls: number[] = []; // from, to: a pair per stall of the generator's loop
  let errors = 0;
  let broken: Error | null = null; // a connection lost mid-run: its request would never be timed
  const waiting: number[] = []; // due times of requests waiting for a free connection
  const connections: Connection[] = [];

  const sendWaiting = () => {
    for (const c of connections) {
      if (waiting.length === 0) return;
      if (c.busy) continue;
      c.busy = true;
      c.dueAt = waiting.shift()!;
      c.socket.write(request);
    }
  };

  /** Consumes one whole answer from the connection's buffer; false while it is incomplete. */
  const answered = (c: Connection): boolean => {
    const buf = c.received!;
    const answer = parseAnswer(buf, expect);
    if (!answer) return false;
    const { end, ok } = answer;
    if (ok) {
      const now = performance.now();
      times.push(now - c.dueAt);
      spans.push(c.dueAt, now);
    } else errors++;
    c.received = buf.length > end ? buf.subarray(end) : null;
    c.busy = false;
    return true;
  };

  for (let i = 0; i < o.connections; i++) {
    const socket = await openConnection(o);
    const c: Connection = { socket, busy: false, dueAt: 0, received: null };
    socket.on('data', (d: Buffer) => {
      c.received = c.received ? Buffer.concat([c.received, d]) : d;
      if (answered(c)) sendWaiting();
    });
    socket.on('error', (err) => (broken ??= err));
    socket.on('close', () => (broken ??= new Error('the server closed a keep-alive connection')));
    connections.push(c);
  }

  const run = async (seconds: number) => {
    const total = Math.round(o.rate * seconds);
    const interval = 1000 / o.rate;
    const start = performance.now();
    let issued = 0;
    let lastTurn = start;
    await new Promise<void>((done) => {
      const tick = () => {
        const now = performance.now();
        if (now - lastTurn > GENERATOR_STALL_MS) stalls.push(lastTurn, now);
        lastTurn = now;
        const due = Math.min(total, Math.floor((now - start) / interval) + 1);
        for (; issued < due; issued++) waiting.push(start + issued * interval);
        sendWaiting();
        if (issued < total && !broken) setImmediate(tick);
        else done();
      };
      tick();
    });
    while (!broken && (waiting.length > 0 || connections.some((c) => c.busy))) await new Promise((r) => setTimeout(r, 5));
    if (broken) throw broken;
  };

  // Warm-up: TLS sessions, JIT compilation and heap sizing on both sides, not counted.
  await run(o.warmupSeconds);
  times = [];
  spans = [];
  stalls = [];
  errors = 0;
  const cpu = process.cpuUsage();
  await run(o.seconds);
  const cpuMicros = cpuMicrosSince(cpu);
  for (const c of connections) c.socket.removeAllListeners('close').destroy();
  let stallMs = 0;
  for (let i = 0; i < stalls.length; i += 2) stallMs += stalls[i + 1]! - stalls[i]!;
  return { times, errors, seconds: o.seconds, cpuMicros, lessStalls: lessStalls(spans, stalls), stallMs };
}

/** Each span's length less its overlap with the stalls (both flat from, to pairs, stalls in time order). */
function lessStalls(spans: number[], stalls: number[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < spans.length; i += 2) {
    const from = spans[i]!;
    const to = spans[i + 1]!;
    let overlap = 0;
    for (let j = 0; j < stalls.length && stalls[j]! < to; j += 2) overlap += Math.max(0, Math.min(to, stalls[j + 1]!) - Math.max(from, stalls[j]!));
    out.push(to - from - overlap);
  }
  return out;
}

/** The q-quantile of ascending `sorted`. */
const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;

process.on('message', (m: LoadRequest) => void answer(m));

async function answer(m: LoadRequest): Promise<void> {
  const { times, errors, seconds, cpuMicros, workMicros, lessStalls, stallMs } = m.mode === 'closed' ? await closed(m) : await paced(m);
  times.sort((a, b) => a - b);
  lessStalls?.sort((a, b) => a - b);
  const result: LoadResult = {
    p50: quantile(times, 0.5),
    p90: quantile(times, 0.9),
    p99: quantile(times, 0.99),
    max: times.at(-1) ?? NaN,
    requests: times.length,
    rps: times.length / seconds,
    errors,
    p50LessGeneratorStalls: lessStalls ? quantile(lessStalls, 0.5) : NaN,
    p99LessGeneratorStalls: lessStalls ? quantile(lessStalls, 0.99) : NaN,
    generatorStallMs: stallMs ?? NaN,
    generatorCpuMicrosPerRequest: cpuMicros / Math.max(1, times.length + errors),
    generatorWorkMicrosPerRequest: workMicros === undefined ? NaN : workMicros / Math.max(1, times.length + errors),
    seconds,
  };
  process.send!({ kind: 'load-done', ...result });
}
