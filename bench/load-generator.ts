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

export type LoadResult = { p50: number; p90: number; p99: number; max: number; requests: number; rps: number; errors: number };

type Timings = { times: number[]; errors: number; seconds: number };

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
    if (ok) times.push(performance.now() - c.dueAt);
    else errors++;
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
    await new Promise<void>((done) => {
      const tick = () => {
        const due = Math.min(total, Math.floor((performance.now() - start) / interval) + 1);
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
  errors = 0;
  await run(o.seconds);
  for (const c of connections) c.socket.removeAllListeners('close').destroy();
  return { times, errors, seconds: o.seconds };
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

process.once('message', async (m: LoadRequest) => {
  const { times, errors, seconds } = m.mode === 'saturated' ? await saturated(m) : await paced(m);
  times.sort((a, b) => a - b);
  const pct = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))] ?? NaN;
  const result: LoadResult = { p50: pct(0.5), p90: pct(0.9), p99: pct(0.99), max: times.at(-1) ?? NaN, requests: times.length, rps: times.length / seconds, errors };
  process.send!({ kind: 'load-done', ...result }, () => process.exit(0));
});
