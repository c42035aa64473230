// What the API server measures: the latency tokenguard's webhooks add to real pod creates, as
// kube-apiserver itself records it (apiserver_admission_webhook_admission_duration_seconds), with
// tokenguard installed in-cluster from manifests/ on a real node, next to the same creates with the
// webhooks removed (apiserver_request_duration_seconds for POST pods, both ways). A benchmark, not a
// test: it prints figures and asserts nothing.
//
//   TOKENGUARD_IMAGE=localhost/tokenguard:ci KUBEBUILDER_ASSETS=... TOKENGUARD_NODE_ASSETS=... \
//   TOKENGUARD_NODE_DEPS=... npm run bench:apiserver [-- N]        (root; N pod creates, default 300)
//
// The pods are never scheduled (a nodeSelector no node has): each create is the API request alone,
// with both tokenguard webhooks called (the pod mounts a claim and has a projected token).

import { findNodeAssets, NodeCluster } from '../test/e2e/harness/node.js';
import { install, ownKustomization } from '../test/e2e/node/install.js';
import { ok } from '../test/e2e/harness/kubectl.js';
import { yaml } from '../test/e2e/harness/cli.js';
import { histogram, minus, quantile } from '../test/e2e/harness/apiserver-metrics.js';

const ms = (s: number) => `${(s * 1000).toFixed(1)} ms`;

async function createPods(cluster: NodeCluster, ns: string, n: number): Promise<number> {
  const pods = Array.from({ length: n }, (_, i) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `p${i}`, namespace: ns },
    spec: {
      nodeSelector: { 'tokenguard.io/bench': 'nowhere' },
      containers: [{ name: 'c', image: 'local/busybox:1' }],
      volumes: [
        { name: 'data', persistentVolumeClaim: { claimName: 'data' } },
        { name: 't', projected: { sources: [{ serviceAccountToken: { path: 'token', expirationSeconds: 3600, audience: 'vault' } }] } },
      ],
    },
  }));
  const started = Date.now();
  ok(await cluster.kubectl(['create', '-f', '-', '-o', 'name'], yaml(...pods)), `create ${n} pods in ${ns}`);
  return Date.now() - started;
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 300);
  const found = findNodeAssets();
  if ('skip' in found) throw new Error(found.skip);
  const cluster = await NodeCluster.start(found.assets);
  try {
    await install(cluster, ownKustomization('default', found.assets.image));
    const metrics = async () => ok(await cluster.kubectl(['get', '--raw', '/metrics'], undefined), 'GET /metrics').stdout;
    const requests = (text: string) => histogram(text, 'apiserver_request_duration_seconds', { verb: 'POST', resource: 'pods', subresource: '' });
    for (const ns of ['bench-with', 'bench-without']) ok(await cluster.kubectl(['create', 'namespace', ns]), ns);
    // Warm-up: connections from kube-apiserver to the Service, JIT in tokenguard.
    await createPods(cluster, 'bench-with', 20);
    ok(await cluster.kubectl(['delete', 'pods', '--all', '-n', 'bench-with', '--wait=false']), 'clean up the warm-up');

    const before = await metrics();
    const withMs = await createPods(cluster, 'bench-with', n);
    const after = await metrics();
    const webhooks = ['validate.tokenguard.io', 'mutate.tokenguard.io'].map((name) => {
      const type = name.startsWith('validate') ? 'validating' : 'admit';
      const h = minus(histogram(after, 'apiserver_admission_webhook_admission_duration_seconds', { name, operation: 'CREATE', type }), histogram(before, 'apiserver_admission_webhook_admission_duration_seconds', { name, operation: 'CREATE', type }));
      return { name, type, calls: h.get(Infinity) ?? 0, p50: quantile(h, 0.5), p99: quantile(h, 0.99) };
    });
    const withRequests = minus(requests(after), requests(before));

    for (const kind of ['validatingwebhookconfiguration', 'mutatingwebhookconfiguration']) ok(await cluster.kubectl(['delete', kind, 'tokenguard']), `delete ${kind}`);
    await new Promise((r) => setTimeout(r, 3000));
    const before2 = await metrics();
    const withoutMs = await createPods(cluster, 'bench-without', n);
    const withoutRequests = minus(requests(await metrics()), requests(before2));

    console.log(`kube-apiserver's own measurements, ${n} pod creates each way (tokenguard: 2 replicas in-cluster, warn mode)`);
    for (const w of webhooks) console.log(`  ${w.name} (${w.type}): ${w.calls} calls, p50 ${ms(w.p50)}, p99 ${ms(w.p99)}  [apiserver_admission_webhook_admission_duration_seconds]`);
    console.log(`  POST pods with tokenguard:    p50 ${ms(quantile(withRequests, 0.5))}, p99 ${ms(quantile(withRequests, 0.99))}; ${n} creates in ${withMs} ms  [apiserver_request_duration_seconds]`);
    console.log(`  POST pods without webhooks:   p50 ${ms(quantile(withoutRequests, 0.5))}, p99 ${ms(quantile(withoutRequests, 0.99))}; ${n} creates in ${withoutMs} ms`);
    console.log('  (bucket bounds limit the precision: Prometheus-style linear interpolation within a bucket)');
  } finally {
    await cluster.stop();
  }
}

await main();
