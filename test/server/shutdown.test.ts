// Graceful shutdown: /readyz turns unready first, then the listener closes (new connections are
// refused) while a slow in-flight review still completes; the grace period bounds the wait.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from 'node:https';
import { connect } from 'node:tls';
import { Engine } from '../../src/admission/engine.js';
import { resolveConfig } from '../../src/config/load.js';
import type { AnyPolicy } from '../../src/admission/policy.js';
import { createLogger } from '../../src/observability/log.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import { reviewByPrefix } from '../helpers/fixtures.js';
import { httpsCall, testCerts, type HttpResult } from '../helpers/server.js';
import { slowPolicy } from '../admission/test-policies.js';

async function start(policy: AnyPolicy, shutdownDelaySeconds: number, shutdownGraceSeconds: number, lines: string[]) {
  const certs = testCerts();
  const config = resolveConfig(undefined, 'test', [policy]);
  const engine = new Engine({ config, policies: [policy] });
  const running = await startServer({
    address: '127.0.0.1',
    port: 0,
    tls: { certFile: certs.certFile, keyFile: certs.keyFile },
    tlsReloadSeconds: 10,
    maxBodyBytes: config.server.maxBodyBytes,
    shutdownGraceSeconds,
    shutdownDelaySeconds,
    logger: createLogger('info', (l) => lines.push(l)),
    engine: () => engine,
  });
  return { running, ca: certs.ca };
}

const fresh = (s: RunningServer, ca: Buffer, path: string) => httpsCall(s.port, 'GET', path, undefined, {}, { ca, agent: false as never });

describe('graceful shutdown', () => {
  it('unready first, then no new connections, while the slow in-flight review completes', async () => {
    let gatherStarted!: () => void;
    const started = new Promise<void>((r) => (gatherStarted = r));
    const lines: string[] = [];
    const { running, ca } = await start(slowPolicy('slow', 800, () => gatherStarted()), 0.3, 10, lines);
    const agent = new Agent({ keepAlive: true, ca });
    const review = reviewByPrefix('004');

    assert.equal((await fresh(running, ca, '/readyz')).status, 200);
    const inFlight: Promise<HttpResult> = httpsCall(running.port, 'POST', '/validate', JSON.stringify(review), { 'content-type': 'application/json' }, { agent });
    await started;
    const stopped = running.shutdown();

    // During the delay the listener still accepts, and says it is not ready.
    const ready = await fresh(running, ca, '/readyz');
    assert.equal(ready.status, 503);
    assert.equal(ready.json.ready, false);
    assert.deepEqual(ready.json.checks.shutdown, { ok: false, reason: 'shutting down' });
    assert.equal(ready.headers.connection, 'close');

    // Then the listener closes: new connections are refused while the review is still running.
    for (let i = 0; ; i++) {
      const refused = await fresh(running, ca, '/healthz').then(
        () => false,
        (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED',
      );
      if (refused) break;
      assert.ok(i < 200, 'the listener never closed');
      await new Promise((r) => setTimeout(r, 20));
    }

    const res = await inFlight;
    assert.equal(res.status, 200);
    assert.equal(res.json.response.uid, review.request.uid);
    assert.deepEqual(res.json.response.warnings, ['slow waited 800 ms']);
    assert.equal(res.headers.connection, 'close', 'the client is told not to reuse the connection');
    await stopped;
    agent.destroy();

    const msgs = lines.map((l) => JSON.parse(l).msg);
    assert.ok(msgs.indexOf('shutting down: unready') < msgs.indexOf('closing the listener, draining connections'));
    assert.ok(msgs.indexOf('closing the listener, draining connections') < msgs.indexOf('admission decision'));
  });

  it('an idle keep-alive connection never told to close is closed last, once the review in flight is answered', async () => {
    let gatherStarted!: () => void;
    const started = new Promise<void>((r) => (gatherStarted = r));
    const lines: string[] = [];
    const { running, ca } = await start(slowPolicy('slow', 600, () => gatherStarted()), 0, 5, lines);
    // A: one request before the shutdown, then idle on its keep-alive connection.
    const idle = connect({ host: '127.0.0.1', port: running.port, ca, servername: 'localhost' });
    await new Promise<void>((resolve) => {
      idle.once('secureConnect', () => idle.write('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n'));
      idle.once('data', () => resolve());
    });
    let idleClosedAt = 0;
    idle.on('close', () => (idleClosedAt = Date.now()));
    idle.on('error', () => {});
    // B: a slow review in flight when the shutdown begins.
    let answeredAt = 0;
    const inFlight = httpsCall(running.port, 'POST', '/validate', JSON.stringify(reviewByPrefix('004')), { 'content-type': 'application/json' }, { ca, agent: false as never }).then((r) => {
      answeredAt = Date.now();
      return r;
    });
    await started;
    const stopped = running.shutdown();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(idleClosedAt, 0, 'not closed while a review is in flight (its client may still use it)');
    assert.equal((await inFlight).status, 200);
    await stopped;
    assert.ok(idleClosedAt >= answeredAt, `closed at ${idleClosedAt}, the review answered at ${answeredAt}`);
    const drained = lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'drained: every connection closed');
    assert.deepEqual([drained?.cutConnections, drained?.cutRequests], [0, 0]);
    const begun = lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'closing the listener, draining connections');
    assert.deepEqual([begun?.connections, begun?.requestsInFlight], [2, 1]);
  });

  it('the grace period bounds the wait: a review slower than it is cut off', async () => {
    let gatherStarted!: () => void;
    const started = new Promise<void>((r) => (gatherStarted = r));
    const lines: string[] = [];
    const { running, ca } = await start(slowPolicy('stuck', 3000, () => gatherStarted()), 0, 0.2, lines);
    const inFlight = httpsCall(running.port, 'POST', '/validate', JSON.stringify(reviewByPrefix('004')), { 'content-type': 'application/json' }, { ca, agent: false as never });
    await started;
    await running.shutdown();
    await assert.rejects(inFlight, /socket hang up|ECONNRESET/);
    assert.ok(lines.some((l) => l.includes('grace period over')));
  });

  it('shutdown is idempotent: a second signal waits for the same drain', async () => {
    const { running } = await start(slowPolicy('quick', 1), 0, 1, []);
    const first = running.shutdown();
    assert.equal(running.shutdown(), first);
    await first;
  });
});
