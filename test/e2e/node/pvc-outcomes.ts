// Prediction equals outcome. The question a user asks the PVC guard is "will this claim hang?".
// In warn mode, for each state a pod that mounts the claim can be in, delete the claim with
// --wait=false, read what tokenguard said, then look whether Kubernetes (the pvc-protection
// controller, acting on the real pod) left the claim Terminating. Every mismatch is a product bug.

import { before, it } from 'node:test';
import assert from 'node:assert/strict';
import { eventually } from '../harness/eventually.js';
import { ok, warnings } from '../harness/kubectl.js';
import type { NodeCluster } from '../harness/node.js';
import { boundClaim, runningPod, waitForPhase } from './workloads.js';

/** How long the pvc-protection controller is given to remove an unused claim's finalizer (it acts within a second or two). */
const SETTLE_MS = 15_000;

interface Case {
  state: string;
  /** Make the claim and the pod in that state; returns the claim to delete. */
  setup(cluster: NodeCluster, ns: string): Promise<string>;
}

const CASES: Case[] = [
  {
    state: 'Running',
    async setup(c, ns) {
      await c.apply(boundClaim(c, ns, 'data') + '---\n' + runningPod(ns, 'app', 'data'));
      await waitForPhase(c, ns, 'app', 'Running');
      return 'data';
    },
  },
  {
    state: 'Succeeded',
    async setup(c, ns) {
      await c.apply(boundClaim(c, ns, 'data') + '---\n' + runningPod(ns, 'app', 'data', { command: 'true', restartPolicy: 'Never' }));
      await waitForPhase(c, ns, 'app', 'Succeeded');
      return 'data';
    },
  },
  {
    state: 'Failed',
    async setup(c, ns) {
      await c.apply(boundClaim(c, ns, 'data') + '---\n' + runningPod(ns, 'app', 'data', { command: 'exit 3', restartPolicy: 'Never' }));
      await waitForPhase(c, ns, 'app', 'Failed');
      return 'data';
    },
  },
  {
    state: 'Pending, unscheduled',
    async setup(c, ns) {
      await c.apply(boundClaim(c, ns, 'data') + '---\n' + runningPod(ns, 'app', 'data', { nodeSelector: { 'tokenguard.io/no-such-node': 'true' } }));
      await eventually(async () => {
        const r = await c.kubectl(['get', 'pod', 'app', '-n', ns, '-o', 'jsonpath={.status.conditions[?(@.type=="PodScheduled")].reason}']);
        return r.stdout === 'Unschedulable';
      }, `${ns}/app Unschedulable`);
      return 'data';
    },
  },
  {
    state: 'Terminating (grace period 600 s)',
    async setup(c, ns) {
      // The container ignores SIGTERM: the pod stays Terminating for its whole grace period.
      await c.apply(
        boundClaim(c, ns, 'data') + '---\n' + runningPod(ns, 'app', 'data', { command: "trap '' TERM; while :; do /bin/busybox sleep 1; done", terminationGracePeriodSeconds: 600 }),
      );
      await waitForPhase(c, ns, 'app', 'Running');
      ok(await c.kubectl(['delete', 'pod', 'app', '-n', ns, '--wait=false']), 'delete pod');
      await eventually(async () => (await c.kubectl(['get', 'pod', 'app', '-n', ns, '-o', 'jsonpath={.metadata.deletionTimestamp}'])).stdout !== '', `${ns}/app Terminating`);
      return 'data';
    },
  },
  {
    state: 'force-deleted (--grace-period=0 --force)',
    async setup(c, ns) {
      await c.apply(boundClaim(c, ns, 'data') + '---\n' + runningPod(ns, 'app', 'data'));
      await waitForPhase(c, ns, 'app', 'Running');
      await c.kubectl(['delete', 'pod', 'app', '-n', ns, '--grace-period=0', '--force']);
      await eventually(async () => (await c.kubectl(['get', 'pod', 'app', '-n', ns])).code !== 0, `${ns}/app gone from the API`);
      return 'data';
    },
  },
  {
    state: 'generic ephemeral volume, pod Running',
    setup: (c, ns) => ephemeralPod(c, ns, 'exec /bin/busybox sleep 3600', 'Always', 'Running'),
  },
  {
    // The pvc-protection controller counts a shut-down pod's ephemeral claim as unused (its own
    // claims differ from a named claim here).
    state: 'generic ephemeral volume, pod Succeeded',
    setup: (c, ns) => ephemeralPod(c, ns, 'true', 'Never', 'Succeeded'),
  },
  {
    state: 'no pod at all',
    async setup(c, ns) {
      await c.apply(boundClaim(c, ns, 'data'));
      await eventually(async () => (await c.kubectl(['get', 'pvc', 'data', '-n', ns, '-o', 'jsonpath={.status.phase}'])).stdout === 'Bound', `${ns}/data Bound`);
      return 'data';
    },
  },
];

/** A pod with a generic ephemeral volume `scratch` (claim app-scratch, which its controller creates), in `phase`. */
async function ephemeralPod(c: NodeCluster, ns: string, command: string, restartPolicy: 'Always' | 'Never', phase: string): Promise<string> {
  const ephemeral = {
    name: 'scratch',
    ephemeral: { volumeClaimTemplate: { spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'manual', resources: { requests: { storage: '1Gi' } } } } },
  };
  await c.apply(boundClaim(c, ns, 'app-scratch', { volumeOnly: true }) + '---\n' + runningPod(ns, 'app', undefined, { volumes: [ephemeral], command, restartPolicy }));
  await waitForPhase(c, ns, 'app', phase);
  return 'app-scratch';
}

/** What tokenguard's warnings say about the claim's fate. */
function predictsHang(lines: string[]): boolean {
  return lines.some((l) => /would hang in Terminating|stays Terminating/.test(l));
}

export function outcomeScenario(cluster: () => NodeCluster): void {
  const rows: { state: string; predicted: boolean; hung: boolean; said: string[] }[] = [];

  /** The gauge summed over the replicas (each counts the deletions it admitted). */
  const terminatingInUse = async (c: NodeCluster): Promise<number> => {
    let sum = 0;
    for (const pod of await c.tokenguardPods()) {
      const text = await c.tokenguardMetrics(pod);
      sum += Number(/^tokenguard_claims_terminating_in_use (\d+)$/m.exec(text)?.[1] ?? NaN);
    }
    return sum;
  };
  /** Claims other scenarios left Terminating under running pods (the observer's frozen one). */
  let leftByOthers = 0;

  before(async () => {
    const c = cluster();
    leftByOthers = await terminatingInUse(c);
    await Promise.all(
      CASES.map(async (kase, i) => {
        const ns = `outcome-${i}`;
        ok(await c.kubectl(['create', 'namespace', ns]), `namespace ${ns}`);
        const claimName = await kase.setup(c, ns);
        // tokenguard's cache sees what the API server has (a watch event away): give it a moment.
        await new Promise((r) => setTimeout(r, 1000));
        const r = ok(await c.kubectl(['delete', 'pvc', claimName, '-n', ns, '--wait=false']), `delete pvc ${ns}/${claimName}`);
        await new Promise((r) => setTimeout(r, SETTLE_MS));
        const still = await c.kubectl(['get', 'pvc', claimName, '-n', ns, '-o', 'jsonpath={.metadata.deletionTimestamp}']);
        rows[i] = { state: kase.state, predicted: predictsHang(warnings(r)), hung: still.code === 0, said: warnings(r) };
      }),
    );
    process.stdout.write('# pod state | tokenguard says | claim after 15 s\n');
    for (const row of rows) {
      process.stdout.write(`# ${row.state} | ${row.predicted ? 'would hang' : 'no hang'} | ${row.hung ? 'still Terminating' : 'gone'}\n`);
    }
  });

  it('the gauge tokenguard_claims_terminating_in_use, summed over the replicas, counts the claims left Terminating under running pods', async () => {
    const c = cluster();
    // Each replica counts the deletions it admitted; a claim held only by finished pods is not "in use".
    const running = new Set(['Running', 'Terminating (grace period 600 s)', 'generic ephemeral volume, pod Running']);
    const expected = rows.filter((r) => r.hung && running.has(r.state)).length;
    assert.equal((await terminatingInUse(c)) - leftByOthers, expected);
  });

  for (const [i, kase] of CASES.entries()) {
    it(`${kase.state}: tokenguard's answer matches what Kubernetes did`, () => {
      const row = rows[i]!;
      assert.equal(row.predicted, row.hung, `${row.state}: tokenguard ${row.predicted ? 'predicted a hang' : 'predicted no hang'}, the claim was ${row.hung ? 'still Terminating' : 'gone'}; it said:\n${row.said.join('\n')}`);
    });
  }
}
