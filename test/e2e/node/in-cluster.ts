// What only a cluster that runs tokenguard can show: the API server calls it through its Service,
// the kubelet's probes find it ready at once (no Warning events on a clean install), its RBAC is
// enough (no forbidden call in its logs), the token self-test passes with its own projected token,
// and the PVC guard names a pod that really runs on a real kubelet.

import { before, it } from 'node:test';
import assert from 'node:assert/strict';
import { OBSERVER_SERVICE } from '../../../src/k8s/self-managed-tls.js';
import { eventually } from '../harness/eventually.js';
import { ok, warnings } from '../harness/kubectl.js';
import type { NodeCluster } from '../harness/node.js';
import { boundClaim, runningPod, waitForPhase } from './workloads.js';

export function inClusterScenario(cluster: () => NodeCluster): void {
  const kubectl = (args: string[], input?: string) => cluster().kubectl(args, input);
  const must = async (args: string[], input?: string) => ok(await kubectl(args, input), `kubectl ${args.join(' ')}`);
  let pods: string[] = [];

  before(async () => {
    pods = await cluster().tokenguardPods();
  });

  it('kube-apiserver calls both webhooks through the tokenguard Service, not a URL', async () => {
    for (const kind of ['validatingwebhookconfiguration', 'mutatingwebhookconfiguration']) {
      const r = await must(['get', kind, 'tokenguard', '-o', 'json']);
      for (const w of JSON.parse(r.stdout).webhooks) {
        // The token observer's webhook (components/token-observer, installed by the suite) has a Service of its own.
        const service = w.name === 'observe-tokenrequests.tokenguard.io' ? OBSERVER_SERVICE.name : 'tokenguard';
        assert.deepEqual(w.clientConfig.service && [w.clientConfig.service.namespace, w.clientConfig.service.name], ['tokenguard', service], w.name);
        assert.equal(w.clientConfig.url, undefined, w.name);
      }
    }
    const slices = await must(['-n', 'tokenguard', 'get', 'endpointslices', '-l', 'kubernetes.io/service-name=tokenguard', '-o', 'jsonpath={.items[*].endpoints[*].conditions.ready}']);
    assert.deepEqual(slices.stdout.split(' '), ['true', 'true']);
  });

  it('a clean install leaves no Warning event in the tokenguard namespace', async () => {
    const r = await must(['-n', 'tokenguard', 'get', 'events', '--field-selector=type=Warning', '-o', 'custom-columns=OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message', '--no-headers']);
    assert.equal(r.stdout.trim(), '', `Warning events after install:\n${r.stdout}`);
  });

  it('/readyz, as the readiness probe sees it, answers ok on every replica', async () => {
    const deploy = JSON.parse((await must(['-n', 'tokenguard', 'get', 'deployment', 'tokenguard', '-o', 'json'])).stdout);
    const probe = deploy.spec.template.spec.containers[0].readinessProbe.httpGet;
    assert.deepEqual([probe.scheme, probe.path], ['HTTPS', '/readyz']);
    for (const pod of pods) {
      const r = await must(['get', '--raw', `/api/v1/namespaces/tokenguard/pods/https:${pod}:8443/proxy/readyz`]);
      assert.match(r.stdout, /ok|ready/i, pod);
    }
  });

  it('the token self-test passes with its own projected token (its metric, read through the API server)', async () => {
    for (const pod of pods) {
      const metrics = await eventually(async () => {
        const r = await kubectl(['get', '--raw', `/api/v1/namespaces/tokenguard/pods/https:${pod}:8443/proxy/metrics`]);
        return /^tokenguard_token_selftest_success(\{[^}]*\})? 1$/m.test(r.stdout) && r.stdout;
      }, `tokenguard_token_selftest_success 1 on ${pod}`, 60_000);
      assert.match(metrics, /^tokenguard_token_selftest_last_success_timestamp_seconds(\{[^}]*\})? \d/m);
    }
  });

  it('its RBAC is enough: no call was forbidden in either replica\'s log', async () => {
    const logs = await must(['-n', 'tokenguard', 'logs', '-l', 'app.kubernetes.io/name=tokenguard', '--prefix', '--tail=-1']);
    assert.ok(logs.stdout.includes('tokenguard started'), logs.stdout.slice(0, 2000));
    const forbidden = logs.stdout.split('\n').filter((l) => /forbidden|\b403\b/i.test(l));
    assert.deepEqual(forbidden, []);
  });

  it('enforce: deleting a claim that a Running pod mounts is refused, naming the pod, its node and the real kubelet', async () => {
    const ns = 'enforce-running';
    await must(['create', 'namespace', ns]);
    await must(['label', 'namespace', ns, 'tokenguard.io/mode=enforce']);
    await cluster().apply(boundClaim(cluster(), ns, 'data'));
    await cluster().apply(runningPod(ns, 'db-0', 'data'));
    await waitForPhase(cluster(), ns, 'db-0', 'Running');
    const version = (await must(['get', 'node', cluster().node, '-o', 'jsonpath={.status.nodeInfo.kubeletVersion}'])).stdout;
    assert.match(version, /^v1\.\d+\.\d+/);
    const r = await kubectl(['delete', 'pvc', 'data', '-n', ns]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`^Error from server \\(Forbidden\\): admission webhook "validate\\.tokenguard\\.io" denied the request: \\[pvc-in-use\\] PVC ${ns}/data would hang in Terminating: in use by db-0 \\(Running on ${cluster().node}\\)`, 'm'),
    );
    assert.ok(r.stderr.includes(`db-0 (no owner, node ${cluster().node}, Running)`), r.stderr);
    // The real kubelet is fixed (kubernetes#130442 was fixed in 1.33): no token warning for it.
    assert.ok(!warnings(r).some((w) => w.includes('130442')), r.stderr);
  });
}
