// A synced cluster view for the fuzz tests: the pods it reports for any claim, and kubelets whose
// versions come from the case itself, so every branch of the cluster-backed policies is reached.

import type { ClusterView, PodSummary } from '../../src/cluster/view.js';
import fc from 'fast-check';
import { nastyString } from './fuzz-support.js';

/** What the view reports, set by each case before it runs. */
export interface FuzzClusterState {
  pods: PodSummary[];
  kubeletVersion: string;
}

export function fuzzCluster(state: FuzzClusterState): ClusterView {
  return {
    status: () => ({ synced: true, stale: false }),
    podsUsingClaim: (namespace, claim) => state.pods.map((p) => ({ ...p, namespace, claims: [...p.claims, claim] })),
    listPodsUsingClaimLive: async () => state.pods,
    namespaceLabels: () => undefined,
    node: (name) => ({ name, kubeletVersion: state.kubeletVersion }),
    apiserverPods: () => [],
    issuers: { servedIssuer: 'https://kubernetes.default.svc', reportIssuerRisk: () => {} },
  };
}

const podName = fc.oneof(fc.stringMatching(/^[a-z][a-z0-9-]{0,30}$/), fc.constant('p'.repeat(253)), nastyString);

/** Pods that use a claim, in every phase, scheduled or not, with and without a projected token. */
export const podsUsingClaims: fc.Arbitrary<PodSummary[]> = fc.array(
  fc.record({
    namespace: fc.constant('ns'),
    name: podName,
    uid: fc.uuid(),
    nodeName: fc.oneof(fc.constant(''), podName),
    phase: fc.constantFrom('', 'Pending', 'Running', 'Succeeded', 'Failed', 'Unknown'),
    claims: fc.array(podName, { maxLength: 2 }),
    ephemeralClaims: fc.option(fc.array(podName, { maxLength: 1 }), { nil: undefined }),
    hasProjectedToken: fc.boolean(),
    owner: fc.option(fc.record({ kind: fc.constantFrom('StatefulSet', 'Deployment', ''), name: podName }), { nil: undefined }),
  }),
  { maxLength: 8 },
);

export const kubeletVersions = fc.oneof(fc.constantFrom('v1.31.2', 'v1.33.0', 'v1.30.12', '', 'garbage', 'v2.0.0', 'v0.9.9'), nastyString);
