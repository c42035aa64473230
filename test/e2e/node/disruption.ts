// Nothing lost while tokenguard itself moves. With both webhooks made fail-closed for the test
// (failurePolicy: Fail: a call that does not reach a replica fails the user's request), admissions
// stream through kubectl (server-side dry runs of a pod that both webhooks act on) for the whole
// length of a rollout restart, then of a `kubectl drain` of the node with the PodDisruptionBudget
// in force. Failures are counted: 0 is the bar.

import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { eventually } from '../harness/eventually.js';
import { ok, type KubectlResult } from '../harness/kubectl.js';
import type { NodeCluster } from '../harness/node.js';
import { runningPod } from './workloads.js';

const NS = 'stream';
/** Concurrent kubectl loops: each is one admission (validating and mutating) at a time. */
const WORKERS = 2;

export interface Stream {
  stop(): Promise<{ total: number; failures: string[] }>;
}

/** The namespace the streamed pods are created in (idempotent: each scenario that streams asks). */
export async function streamNamespace(cluster: NodeCluster): Promise<void> {
  await cluster.apply(`apiVersion: v1\nkind: Namespace\nmetadata: {name: ${NS}}\n`);
}

/** Server-side dry-run creates of one pod, from `WORKERS` loops, until stopped. */
export function stream(cluster: NodeCluster): Stream {
  let running = true;
  let total = 0;
  const failures: string[] = [];
  const pod = runningPod(NS, 'probe', 'data');
  const loop = async () => {
    while (running) {
      const r: KubectlResult = await cluster.kubectl(['create', '--dry-run=server', '-o', 'name', '-f', '-'], pod);
      total++;
      if (r.code !== 0) failures.push(`${new Date().toISOString()} ${r.stderr.trim()}`);
    }
  };
  const loops = Array.from({ length: WORKERS }, loop);
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      return { total, failures };
    },
  };
}

export async function setFailurePolicy(cluster: NodeCluster, policy: 'Fail' | 'Ignore'): Promise<void> {
  for (const [kind, count] of [['validatingwebhookconfiguration', 2], ['mutatingwebhookconfiguration', 1]] as const) {
    const patch = JSON.stringify(Array.from({ length: count }, (_, i) => ({ op: 'replace', path: `/webhooks/${i}/failurePolicy`, value: policy })));
    ok(await cluster.kubectl(['patch', kind, 'tokenguard', '--type=json', '-p', patch]), `failurePolicy ${policy} on ${kind}`);
  }
}

async function readyReplicas(cluster: NodeCluster): Promise<number> {
  const r = await cluster.kubectl(['-n', 'tokenguard', 'get', 'deployment', 'tokenguard', '-o', 'jsonpath={.status.readyReplicas}']);
  return Number(r.stdout || 0);
}

export function disruptionScenario(cluster: () => NodeCluster): void {
  before(async () => {
    const c = cluster();
    await streamNamespace(c);
    await setFailurePolicy(c, 'Fail');
    // kube-apiserver picks the change up from its watch: let a few admissions through first.
    await new Promise((r) => setTimeout(r, 2000));
  });
  after(async () => {
    await setFailurePolicy(cluster(), 'Ignore');
  });

  it('kubectl rollout restart deployment/tokenguard: every admission answered', async () => {
    const c = cluster();
    const s = stream(c);
    await new Promise((r) => setTimeout(r, 2000));
    ok(await c.kubectl(['-n', 'tokenguard', 'rollout', 'restart', 'deployment/tokenguard']), 'rollout restart');
    ok(await c.kubectl(['-n', 'tokenguard', 'rollout', 'status', 'deployment/tokenguard', '--timeout=180s'], undefined), 'rollout status');
    // The old pods drain after the new ones are ready: keep streaming until they are gone.
    // A kubectl that fails (the API server busy) is another try, not the end of the wait.
    await eventually(async () => (await c.tokenguardPods().catch(() => [])).length === 2, 'the old replicas gone', 120_000);
    await new Promise((r) => setTimeout(r, 3000));
    const { total, failures } = await s.stop();
    process.stdout.write(`# rollout restart: ${total} admissions, ${failures.length} failed\n`);
    assert.ok(total > 20, `only ${total} admissions were made`);
    assert.deepEqual(failures, []);
  });

  it('kubectl drain of the node: the PodDisruptionBudget keeps one replica serving, every admission answered', async () => {
    const c = cluster();
    const s = stream(c);
    let minReady = Infinity;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        minReady = Math.min(minReady, await readyReplicas(c));
        await new Promise((r) => setTimeout(r, 500));
      }
    })();
    await new Promise((r) => setTimeout(r, 2000));
    // One node: an evicted replica's replacement cannot schedule while the node is cordoned, so the
    // budget refuses the second eviction and the drain times out with one replica left serving.
    const drain = await c.kubectl(
      ['drain', c.node, '--pod-selector=app.kubernetes.io/name=tokenguard', '--ignore-daemonsets', '--delete-emptydir-data', '--timeout=40s'],
      undefined,
    );
    watching = false;
    await watcher;
    const { total, failures } = await s.stop();
    ok(await c.kubectl(['uncordon', c.node]), 'uncordon');
    await eventually(async () => (await readyReplicas(c)) === 2, '2 ready replicas after uncordon', 120_000);
    process.stdout.write(`# drain: ${total} admissions, ${failures.length} failed; fewest ready replicas during the drain: ${minReady}\n`);
    assert.match(drain.stderr + drain.stdout, /evicting pod tokenguard\/tokenguard-/);
    assert.match(drain.stderr + drain.stdout, /Cannot evict pod as it would violate the pod's disruption budget/);
    assert.equal(minReady, 1);
    assert.ok(total > 20, `only ${total} admissions were made`);
    assert.deepEqual(failures, []);
  });
}
