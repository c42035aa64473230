// `runServer` with the cluster layer: /readyz is unready until the caches sync (and says why),
// the PVC guard decides from the cache, shutdown stops the watches; without a cluster the server
// still runs and the guard warns that it could not check.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from 'node:https';
import { resolveConfig } from '../../src/config/load.js';
import { BUILTIN_POLICIES } from '../../src/policies/index.js';
import { runServer } from '../../src/cli/serve.js';
import { silentLogger } from '../../src/observability/log.js';
import { FakeApiServer, loadCapturedClusterState } from '../helpers/fake-apiserver.js';
import { reviewByPrefix } from '../helpers/fixtures.js';
import { httpsCall, testCerts } from '../helpers/server.js';
import { until } from '../helpers/eventually.js';

function configFor(cluster: object) {
  const certs = testCerts();
  return resolveConfig({ mode: 'enforce', server: { address: '127.0.0.1', port: 0, tlsCertFile: certs.certFile, tlsKeyFile: certs.keyFile }, cluster }, 'test', BUILTIN_POLICIES);
}

async function call(port: number, method: string, path: string, body?: unknown) {
  const certs = testCerts();
  const agent = new Agent({ ca: certs.ca });
  try {
    return await httpsCall(port, method, path, body === undefined ? undefined : JSON.stringify(body), body === undefined ? {} : { 'content-type': 'application/json' }, { agent, ca: certs.ca });
  } finally {
    agent.destroy();
  }
}

test('with a kubeconfig: unready (saying why) until the first sync, then the guard uses the cache', async () => {
  const fake = await FakeApiServer.start();
  loadCapturedClusterState(fake);
  await fake.down();
  const running = await runServer(configFor({ kubeconfig: fake.kubeconfigPath }), silentLogger);
  let shutDown = false;
  try {
    const before = await call(running.port, 'GET', '/readyz');
    assert.equal(before.status, 503);
    assert.equal(before.json.checks.cluster.ok, false);
    assert.match(before.json.checks.cluster.reason, /cluster cache not synced yet: waiting for the first LIST of pods, nodes, namespaces/);

    await fake.restart();
    // The first retry comes within the (jittered) initial backoff; never more than 30 s.
    // Pods, nodes and namespaces sync independently: wait for all three, not just the pod watch.
    let after = await call(running.port, 'GET', '/readyz');
    await until(async () => {
      after = await call(running.port, 'GET', '/readyz');
      return after.json.checks.cluster.ok === true;
    }, 'the cluster cache to sync', 15_000);
    assert.equal(after.json.checks.cluster.ok, true, JSON.stringify(after.json));
    // Ready means the first LIST is in; the watch that follows it opens a moment later.
    await until(() => fake.openWatches('pods') === 1, 'the pod watch to open after the first LIST');

    const review = await call(running.port, 'POST', '/validate', reviewByPrefix('070'));
    assert.equal(review.json.response.allowed, false);
    assert.match(review.json.response.status.message, /db-1 \(Running on node-a\), reader-1 \(Running on node-b\)/);
    await running.shutdown();
    shutDown = true;
    await until(() => fake.openWatches() === 0, 'the watches to close after shutdown');
  } finally {
    // Always release the server and the fake API server, or a failed assertion hangs the run.
    if (!shutDown) await running.shutdown();
    await fake.close();
  }
});

test('without a cluster: ready, /readyz says why, and the PVC guard warns it could not check', async () => {
  const running = await runServer(configFor({ enabled: false }), silentLogger);
  try {
    const ready = await call(running.port, 'GET', '/readyz');
    assert.equal(ready.status, 200);
    assert.match(ready.json.checks.cluster.reason, /cluster access disabled/);
    const review = await call(running.port, 'POST', '/validate', reviewByPrefix('070'));
    assert.equal(review.json.response.allowed, true);
    assert.ok(review.json.response.warnings.includes('could not check which pods use PVC shop/shared; deletion not checked'));
  } finally {
    await running.shutdown();
  }
});
