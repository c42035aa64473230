// The staging overlay's settings on the node, applied over the running install as an admin moves a
// cluster from the default to staging: enforce everywhere and validation failing closed outside
// kube-system, with nothing but the image changed.

import { it } from 'node:test';
import assert from 'node:assert/strict';
import { ok } from '../harness/kubectl.js';
import type { NodeCluster } from '../harness/node.js';
import { install, ownKustomization } from './install.js';
import { observedInstall } from './observer.js';
import { boundClaim, runningPod, waitForPhase } from './workloads.js';

export function stagingScenario(cluster: () => NodeCluster, image: string): void {
  it('kubectl apply -k of the staging overlay: 2/2 Available, validation fails closed, an unlabelled namespace is enforced', async () => {
    const c = cluster();
    // The overlay's settings, but the suite's TLS lifetimes: under the defaults' longer overlap, the
    // 120 s CA in flight would expire mid-rotation and be replaced outright (seen: one fail-closed
    // call refused as "certificate signed by unknown authority" before the new CA was injected).
    // The token observer stays, as an admin's components do.
    await install(c, ownKustomization('staging', image, observedInstall('overlays/staging')));
    const v = JSON.parse(ok(await c.kubectl(['get', 'validatingwebhookconfiguration', 'tokenguard', '-o', 'json']), 'webhooks').stdout);
    const policies = Object.fromEntries(v.webhooks.map((w: { name: string; failurePolicy: string }) => [w.name, w.failurePolicy]));
    // Only the main validating webhook fails closed: kube-system's and the TokenRequests' always fail open.
    assert.deepEqual(
      Object.entries(policies).filter(([, p]) => p === 'Fail').map(([n]) => n),
      ['validate.tokenguard.io'],
    );
    assert.equal(policies['validate-kube-system.tokenguard.io'], 'Ignore');
    const ns = 'staging-enforced';
    ok(await c.kubectl(['create', 'namespace', ns]), ns);
    await c.apply(boundClaim(c, ns, 'data') + '---\n' + runningPod(ns, 'app', 'data'));
    await waitForPhase(c, ns, 'app', 'Running');
    const r = await c.kubectl(['delete', 'pvc', 'data', '-n', ns]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`denied the request: \\[pvc-in-use\\] PVC ${ns}/data would hang in Terminating: in use by app \\(Running on ${c.node}\\)`));
  });
}
