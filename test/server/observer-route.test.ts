// GET /observer: the token refresh observer's last report as JSON, over real HTTPS. Not behind
// caller authentication (the API server's service proxy forwards no credential of the user): with
// callerAuth enforced, /validate refuses an anonymous caller while /observer answers it. A replica
// that does not observe says so and why.

import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { OBSERVER_STATE_PATH, observerOffState, parseObserverState } from '../../src/cluster/token-observer-state.js';
import { DEFAULT_CONFIG } from '../../src/config/schema.js';
import { observerWithOverduePod } from '../helpers/observer.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const T0 = Date.UTC(2026, 11, 6, 12, 0, 0);

describe(`GET ${OBSERVER_STATE_PATH}`, () => {
  const servers: TestServer[] = [];
  after(async () => {
    for (const s of servers) await s.shutdown();
  });

  it("answers the observer's last report, with no credentials, while caller authentication guards the reviews", async () => {
    const service = await observerWithOverduePod(T0, 900);
    const server = await startTestServer({ config: { server: { callerAuth: { mode: 'enforce' } } }, observerState: () => service.state('tokenguard-abc') });
    servers.push(server);
    assert.equal((await server.post('/validate', { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' })).status, 401);

    const res = await server.get(OBSERVER_STATE_PATH);
    assert.equal(res.status, 200, res.text);
    assert.match(String(res.headers['content-type']), /^application\/json/);
    assert.equal(res.headers['cache-control'], 'no-store');
    const state = parseObserverState(res.json);
    assert.equal(state.observing, true);
    assert.equal(state.replica, 'tokenguard-abc');
    // 600 s token: due at 480 + 90 (1.5 syncs) + 120 (margin) = 690 s; asked at 900 s.
    assert.deepEqual(
      state.overdue.map((o) => [o.namespace, o.pod, o.node, o.audiences, o.requestedSeconds, o.lastRefresh, o.lateSeconds, o.message]),
      [['shop', 'stuck', 'node-a', ['vault'], 600, '2026-12-06T12:00:00.000Z', 210, 'pod shop/stuck on node node-a: token for vault (600 s) not refreshed since 2026-12-06T12:00:00.000Z, 210 s past due']],
    );
    service.stop();
    const after = parseObserverState((await server.get(OBSERVER_STATE_PATH)).json);
    assert.deepEqual([after.observing, after.reason, after.overdue], [false, 'this replica is not the observer', []]);
  });

  it('says so on a replica that runs no observer; without a state the route does not exist', async () => {
    const off = await startTestServer({ observerState: () => observerOffState('tokenguard-xyz', DEFAULT_CONFIG.observer) });
    const none = await startTestServer();
    servers.push(off, none);
    const state = parseObserverState((await off.get(OBSERVER_STATE_PATH)).json);
    assert.equal(state.observing, false);
    assert.match(state.reason!, /^the token refresh observer is off on this replica \(observer\.enabled: false/);
    const missing = await none.get(OBSERVER_STATE_PATH);
    assert.equal(missing.status, 404);
    assert.equal(missing.json.error.message, 'no route GET /observer; routes: POST /validate, POST /mutate, POST /observe, GET /healthz, GET /readyz, GET /metrics');
    const posted = await off.post(OBSERVER_STATE_PATH, {});
    assert.equal(posted.status, 404, 'read-only: GET only');
    assert.match(posted.json.error.message, /, GET \/metrics, GET \/observer$/);
  });
});
