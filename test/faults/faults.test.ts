// The fault suite: tokenguard as users run it (the CLI, in its own process) under a paced
// keep-alive load of valid reviews, as kube-apiserver drives it, while a fault is injected. Every
// request of the load is counted (ok, bad, refused, lost, timeout: see helpers/paced-load.ts) and
// each scenario asserts that nothing was lost, nothing timed out and nothing crashed, and prints
// its counts. (The API outage scenario needs a real kube-apiserver: it is in the end-to-end suite.)

import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, renameSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { reviewByPrefix } from '../helpers/fixtures.js';
import { PacedLoad, type LoadCounts } from '../helpers/paced-load.js';
import { makeCerts } from '../helpers/tls.js';
import { TokenguardProcess } from '../helpers/tokenguard-process.js';
import { tempDir } from '../helpers/temp-dir.js';

const REVIEW = JSON.stringify(reviewByPrefix('006')); // a plain Pod: allowed, no findings
const RATE = 250;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const workdir = () => tempDir('tokenguard-faults-');

function paced(tg: TokenguardProcess, opts: { rate?: number; maxConnections?: number; ca?: Buffer } = {}): PacedLoad {
  const load = new PacedLoad({
    port: tg.port,
    ca: opts.ca ?? tg.certs.ca,
    path: '/validate',
    body: REVIEW,
    rate: opts.rate ?? RATE,
    maxConnections: opts.maxConnections,
    expect: '"allowed":true',
  });
  load.start();
  return load;
}

/** Nothing lost, nothing timed out, every answer the expected one; the counts go to the report. */
function assertNothingLost(t: TestContext, name: string, c: LoadCounts, opts: { refusedAllowed?: boolean } = {}): void {
  t.diagnostic(`${name}: ok ${c.ok}, bad ${c.bad}, refused ${c.refused}, lost ${c.lost}, timeout ${c.timeout} (${c.connections} connections)`);
  const detail = JSON.stringify(c);
  assert.equal(c.lost, 0, `lost: ${detail}`);
  assert.equal(c.timeout, 0, `timeouts: ${detail}`);
  assert.equal(c.bad, 0, `bad answers: ${detail}`);
  if (!opts.refusedAllowed) assert.equal(c.refused, 0, `refused: ${detail}`);
  assert.ok(c.ok > 0, detail);
}

async function assertAlive(tg: TokenguardProcess): Promise<void> {
  assert.equal(tg.child.exitCode, null, `tokenguard exited: ${tg.stderr}`);
  assert.equal((await tg.call('GET', '/healthz')).status, 200);
}

/** Resident set of a process, in bytes (Linux). */
function rss(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(kb![1]) * 1024;
}

/** One raw request on its own TLS connection; resolves with the status line, or how the connection ended without one. */
function rawRequest(port: number, ca: Buffer, send: (s: TLSSocket) => void): Promise<{ status: string; saw100: boolean }> {
  return new Promise((resolve) => {
    let received = '';
    const socket = connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => send(socket));
    const settle = (why: string) => {
      const lines = received.split('\r\n').filter((l) => l.startsWith('HTTP/1.1 '));
      const final = lines.find((l) => !l.startsWith('HTTP/1.1 100'));
      resolve({ status: final ?? `no answer (${why})`, saw100: lines.some((l) => l.startsWith('HTTP/1.1 100')) });
      socket.destroy();
    };
    socket.on('data', (d: Buffer) => {
      received += d.toString('latin1');
      // The whole answer is in: headers and the declared body.
      const end = received.indexOf('\r\n\r\n', received.lastIndexOf('HTTP/1.1 '));
      const length = /content-length: *(\d+)/i.exec(received.slice(received.lastIndexOf('HTTP/1.1 ')));
      if (end >= 0 && length && !received.slice(received.lastIndexOf('HTTP/1.1 ')).startsWith('HTTP/1.1 100') && received.length >= end + 4 + Number(length[1])) settle('answered');
    });
    socket.on('error', (err: NodeJS.ErrnoException) => settle(err.code ?? err.message));
    socket.on('close', () => settle('closed'));
  });
}

describe('fault suite: paced keep-alive load while faults are injected', () => {
  it('certificate rotation by a Secret volume ..data symlink swap: nothing lost, new connections get the new certificate', async (t) => {
    // The layout kubelet gives a mounted Secret: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>.
    const dir = workdir();
    const mount = join(dir, 'tls');
    const first = makeCerts(join(mount, '..2026_12_01_00_00_00.1'));
    symlinkSync('..2026_12_01_00_00_00.1', join(mount, '..data'));
    for (const f of ['tls.crt', 'tls.key']) symlinkSync(join('..data', f), join(mount, f));
    const second = makeCerts(join(dir, 'next'));
    // The client trusts both CAs, as a caBundle does while a CA rotates.
    const ca = Buffer.concat([first.ca, second.ca]);
    const tg = await TokenguardProcess.start({
      dir,
      certs: { ...first, certFile: join(mount, 'tls.crt'), keyFile: join(mount, 'tls.key') },
      config: { server: { tlsReloadSeconds: 0.2 } },
    });
    try {
      const load = paced(tg, { ca });
      await sleep(1000);
      // kubelet's atomic update: the new version in its own folder, then ..data swapped by rename.
      renameSync(join(dir, 'next'), join(mount, '..2026_12_01_01_00_00.2'));
      symlinkSync('..2026_12_01_01_00_00.2', join(mount, '..data_tmp'));
      renameSync(join(mount, '..data_tmp'), join(mount, '..data'));
      await sleep(1500);
      const counts = await load.stop();
      assertNothingLost(t, 'certificate rotation', counts);
      const served = await new Promise<string>((resolve, reject) => {
        const s = connect({ host: '127.0.0.1', port: tg.port, ca, servername: 'localhost' }, () => {
          resolve(s.getPeerX509Certificate()!.fingerprint256);
          s.destroy();
        });
        s.on('error', reject);
      });
      const { X509Certificate } = await import('node:crypto');
      assert.equal(served, new X509Certificate(readFileSync(join(mount, 'tls.crt'))).fingerprint256, 'a new connection gets the new certificate');
      assert.notEqual(served, new X509Certificate(readFileSync(first.certFile)).fingerprint256);
      assert.ok(tg.logs.some((l) => l.msg === 'TLS certificate reloaded'));
      await assertAlive(tg);
    } finally {
      await tg.stop();
    }
  });

  it('SIGTERM during load: nothing lost; refused only once the listener is closed; the drain is logged and the exit clean', async (t) => {
    const tg = await TokenguardProcess.start({ dir: workdir(), config: { server: { shutdownDelaySeconds: 1, shutdownGraceSeconds: 5 } } });
    const busy = paced(tg);
    // A client that sends rarely keeps idle keep-alive connections that may never be told to close.
    const sparse = paced(tg, { rate: 0.7, maxConnections: 2 });
    await sleep(1500);
    const signalled = Date.now();
    const exited = tg.stop();
    // A pool that dials ahead (Go's transport does, and parks the spare connection): connections
    // opened before the listener closes, whose first request comes only after it has closed.
    await sleep(800);
    const request = Buffer.from(`POST /validate HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(REVIEW)}\r\n\r\n${REVIEW}`);
    const dialedAhead = await Promise.all(
      Array.from({ length: 4 }, () => rawRequest(tg.port, tg.certs.ca, (socket) => setTimeout(() => socket.write(request), 400))),
    );
    const code = await exited;
    const exitedAfter = Date.now() - signalled;
    t.diagnostic(`dialed ahead: ${dialedAhead.map((r) => r.status).join(', ')}`);
    await sleep(300); // requests due after the exit are refused: counted, allowed
    const counts = await busy.stop();
    const sparseCounts = await sparse.stop();
    assertNothingLost(t, 'SIGTERM (250 req/s)', counts, { refusedAllowed: true });
    t.diagnostic(`SIGTERM (sparse client): ok ${sparseCounts.ok}, lost ${sparseCounts.lost}, refused ${sparseCounts.refused}`);
    assert.equal(sparseCounts.lost + sparseCounts.timeout + sparseCounts.bad, 0, JSON.stringify(sparseCounts));
    assert.deepEqual(
      dialedAhead.map((r) => r.status),
      Array(4).fill('HTTP/1.1 200 OK'),
      'a connection accepted before the listener closed keeps its first request',
    );
    assert.equal(code, 0, tg.stderr);
    const start = tg.logs.find((l) => l.msg === 'closing the listener, draining connections');
    const end = tg.logs.find((l) => l.msg === 'drained: every connection closed');
    assert.ok(start && typeof start.connections === 'number' && typeof start.requestsInFlight === 'number', tg.logTail());
    assert.ok(end, tg.logTail());
    assert.deepEqual([end.cutConnections, end.cutRequests], [0, 0]);
    t.diagnostic(`drain: ${start.connections} connections and ${start.requestsInFlight} requests at its start, all closed in ${end.ms} ms; exit ${exitedAfter} ms after SIGTERM`);
  });

  it('300 slowloris connections trickling headers: every review still answered', async (t) => {
    const tg = await TokenguardProcess.start({ dir: workdir() });
    const slow: TLSSocket[] = [];
    try {
      await Promise.all(
        Array.from({ length: 300 }, () =>
          new Promise<void>((resolve, reject) => {
            const s = connect({ host: '127.0.0.1', port: tg.port, ca: tg.certs.ca, servername: 'localhost' }, () => {
              s.write('POST /validate HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nx-slow: ');
              resolve();
            });
            s.on('error', reject);
            slow.push(s);
          }),
        ),
      );
      const trickle = setInterval(() => {
        for (const s of slow) if (!s.destroyed) s.write('a');
      }, 500);
      const load = paced(tg);
      await sleep(3000);
      clearInterval(trickle);
      const counts = await load.stop();
      assertNothingLost(t, 'slowloris (300 connections)', counts);
      await assertAlive(tg);
    } finally {
      for (const s of slow) s.destroy();
      await tg.stop();
    }
  });

  it('oversized and chunked-oversized bodies: a readable 413 each, nothing lost, memory bounded', async (t) => {
    const tg = await TokenguardProcess.start({ dir: workdir() });
    try {
      const load = paced(tg);
      await sleep(300);
      const body = Buffer.alloc(9 * 1024 * 1024, 'a');
      const head = (extra: string) => `POST /validate HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n${extra}\r\n`;
      const before = rss(tg.child.pid!);
      const statuses: string[] = [];
      for (let i = 0; i < 20; i++) {
        // Content-Length: the whole body written at once, before the answer is read (a Go client does so).
        const declared = await rawRequest(tg.port, tg.certs.ca, (s) => s.write(Buffer.concat([Buffer.from(head(`content-length: ${body.length}\r\n`)), body])));
        statuses.push(declared.status);
      }
      const grown = rss(tg.child.pid!) - before;
      for (let i = 0; i < 3; i++) {
        // Chunked, crossing the limit part-way.
        const chunked = await rawRequest(tg.port, tg.certs.ca, (s) => {
          s.write(head('transfer-encoding: chunked\r\n'));
          for (let o = 0; o < body.length; o += 1 << 16) s.write(`10000\r\n${body.toString('latin1', o, o + (1 << 16))}\r\n`);
          s.end('0\r\n\r\n');
        });
        statuses.push(chunked.status);
      }
      // Expect: 100-continue: refused at once, without a 100 Continue (the body need not be sent).
      const expect = await rawRequest(tg.port, tg.certs.ca, (s) => s.write(head(`content-length: ${body.length}\r\nexpect: 100-continue\r\n`)));
      assert.equal(expect.saw100, false, 'no 100 Continue for a body that will be refused');
      statuses.push(expect.status);
      const counts = await load.stop();
      assert.deepEqual([...new Set(statuses)], ['HTTP/1.1 413 Payload Too Large'], statuses.join('\n'));
      t.diagnostic(`oversized: 20 x 9 MiB with Content-Length, 3 chunked, 1 with Expect: all 413; RSS grew ${(grown / 2 ** 20).toFixed(1)} MiB over the 20`);
      assert.ok(grown < 100 * 2 ** 20, `RSS grew ${grown} bytes`);
      assertNothingLost(t, 'oversized bodies', counts);
      await assertAlive(tg);
    } finally {
      await tg.stop();
    }
  });

  it('10,000 malformed requests mixed into valid ones: each gets a 4xx, the valid ones are all answered', async (t) => {
    const tg = await TokenguardProcess.start({ dir: workdir() });
    try {
      const load = paced(tg);
      const review = reviewByPrefix('006');
      const bodies: [string, string][] = [
        ['not JSON', '{"apiVersion":'],
        ['empty', ''],
        ['a JSON string', '"hello"'],
        ['wrong kind', JSON.stringify({ ...review, kind: 'Pod' })],
        ['no request', JSON.stringify({ apiVersion: review.apiVersion, kind: review.kind })],
        ['request without uid', JSON.stringify({ ...review, request: { ...review.request, uid: undefined } })],
        ['bad operation', JSON.stringify({ ...review, request: { ...review.request, operation: 'EXPLODE' } })],
        ['deeply nested', '['.repeat(5000) + ']'.repeat(5000)],
      ];
      const statusByKind = new Map<string, Set<number>>();
      let answered = 0;
      const N = 10_000;
      const workers = 8;
      await Promise.all(
        Array.from({ length: workers }, async (_, w) => {
          for (let i = w; i < N; i += workers) {
            const [kind, body] = bodies[i % bodies.length]!;
            const contentType = i % 17 === 0 ? 'text/plain' : 'application/json';
            const r = await tg.call('POST', '/validate', body, { 'content-type': contentType });
            const key = contentType === 'text/plain' ? 'wrong content type' : kind;
            if (!statusByKind.has(key)) statusByKind.set(key, new Set());
            statusByKind.get(key)!.add(r.status);
            if (r.status >= 400 && r.status < 500 && typeof r.json?.error?.message === 'string') answered++;
          }
        }),
      );
      const counts = await load.stop();
      t.diagnostic(`malformed: ${answered} of ${N} answered 4xx with a message (${[...statusByKind].map(([k, s]) => `${k}: ${[...s].join('/')}`).join(', ')})`);
      assert.equal(answered, N);
      assertNothingLost(t, 'valid reviews among the malformed ones', counts);
      await assertAlive(tg);
    } finally {
      await tg.stop();
    }
  });
});
