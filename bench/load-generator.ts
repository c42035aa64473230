// The load generator of the PVC cache benchmark (bench/pvc-cache.ts): one load run per process,
// so its own JIT, heap and collections start fresh each time and stay off the server's CPU.
//
//   fork: node dist/bench/load-generator.js
//   <- LoadRequest   -> { kind: 'load-done', ...LoadResult }, then it exits
//
// It imports nothing of tokenguard (no prom-client with its 10 ms event-loop timer, no client
// library): the process holds the sockets and the timings, nothing else.
//
// Two loads:
// - saturated: autocannon, `connections` keep-alive connections, each sending its next request as
//   soon as the last one is answered; the server is then busy all the time and the figures are
//   mostly queueing (requests in flight / throughput).
// - paced: an open-loop load for latency. Requests at even intervals, over up to `connections`
//   keep-alive connections, each timed from the moment it was due, whatever the answers do (a
//   stalled server is not hidden by requests that wait to be sent: no coordinated omission).
//   Built to add as little of its own time as it can, so that the figures are the server's:
//   - raw TLS sockets and a request written as precomputed bytes; the answer is read only as far
//     as its status line, Content-Length and a check of the body (node:https's client, its agent
//     and streams cost about ten times more per request, and that time showed up as latency);
//   - pacing by spinning the event loop (setImmediate) instead of timers: a timer fires on a 1 ms
//     grid, so requests left in bunches that then queued behind each other at the server. The
//     generator is meant to have a CPU of its own.
//   Its own stalls still reach the figures: while its loop stops (its GC, or the machine giving its
//   CPU to something else), nothing is sent or read, and every request due then looks slow. The
//   spinning loop sees each such stall (a gap over GENERATOR_STALL_MS between two turns), so the
//   paced load also reports each request's latency less the part of it the generator itself
//   stood still: the latency a client that was not stalled would have seen. Both are reported.

import autocannon from 'autocannon';
import { connect, type TLSSocket } from 'node:tls';
import { performance } from 'node:perf_hooks';

export type LoadRequest = {
  kind: 'load';
  mode: 'saturated' | 'paced';
  url: string;
  body: string;
  /** PEM of the CA that signed the server certificate. */
  ca: string;
  connections: number;
  seconds: number;
  /** paced only: requests per second, and seconds of warm-up before the measured run. */
  rate: number;
  warmupSeconds: number;
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
};

type Timings = { times: number[]; errors: number; seconds: number; lessStalls?: number[]; stallMs?: number };

/** A gap between two turns of the spinning loop longer than this is a stall of the generator. */
const GENERATOR_STALL_MS = 1;

type Connection = { socket: TLSSocket; busy: boolean; dueAt: number; received: Buffer | null };

const HEADER_END = Buffer.from('\r\n\r\n');

async function paced(o: LoadRequest): Promise<Timings> {
  const url = new URL(o.url);
  const payload = Buffer.from(o.body);
  const requestBytes = Buffer.concat([
    Buffer.from(
      `POST ${url.pathname} HTTP/1.1\r\nhost: ${url.host}\r\ncontent-type: application/json\r\ncontent-length: ${payload.length}\r\n\r\n`,
    ),
    payload,
  ]);
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
      c.socket.write(requestBytes);
    }
  };

  /** Consumes one whole answer from the connection's buffer; false while it is incomplete. */
  const answered = (c: Connection): boolean => {
    const buf = c.received!;
    const headerEnd = buf.indexOf(HEADER_END);
    if (headerEnd < 0) return false;
    const head = buf.toString('latin1', 0, headerEnd);
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (!length) throw new Error(`answer without content-length: ${head}`);
    const end = headerEnd + 4 + Number(length[1]);
    if (buf.length < end) return false;
    const ok = head.startsWith('HTTP/1.1 200') && buf.subarray(headerEnd + 4, end).includes(expect);
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
    const socket = connect({ host: url.hostname, port: Number(url.port), ca: o.ca });
    const c: Connection = { socket, busy: false, dueAt: 0, received: null };
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      c.received = c.received ? Buffer.concat([c.received, d]) : d;
      if (answered(c)) sendWaiting();
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
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
  await run(o.seconds);
  for (const c of connections) c.socket.removeAllListeners('close').destroy();
  let stallMs = 0;
  for (let i = 0; i < stalls.length; i += 2) stallMs += stalls[i + 1]! - stalls[i]!;
  return { times, errors, seconds: o.seconds, lessStalls: lessStalls(spans, stalls), stallMs };
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

/** autocannon: each connection sends its next request when the last is answered. */
async function saturated(o: LoadRequest): Promise<Timings> {
  const times: number[] = [];
  const instance = autocannon({
    url: o.url,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: o.body,
    connections: o.connections,
    duration: o.seconds,
    // The test CA signs the server certificate; trust it for this run only.
    ...({ tlsOptions: { ca: o.ca } } as object),
  } as never) as unknown as Promise<any> & { on: (e: string, f: (...a: any[]) => void) => void };
  // Per request at full precision, not autocannon's whole-millisecond histogram.
  (instance as any).on?.('response', (_c: unknown, status: number, _b: number, ms: number) => {
    if (status === 200) times.push(ms);
  });
  const result = await instance;
  return { times, errors: result.errors + result.non2xx, seconds: o.seconds };
}

/** The q-quantile of ascending `sorted`. */
const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;

process.once('message', async (m: LoadRequest) => {
  const { times, errors, seconds, lessStalls, stallMs } = m.mode === 'saturated' ? await saturated(m) : await paced(m);
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
  };
  process.send!({ kind: 'load-done', ...result }, () => process.exit(0));
});
