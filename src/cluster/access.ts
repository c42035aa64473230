// Every Kubernetes API call the cluster cache and the PVC guard make, declared once: the RBAC
// manifest (manifests/base/rbac.yaml) must grant exactly these, and a test checks it does.

export interface ApiAccess {
  /** API group, '' for the core group. */
  group: string;
  resource: string;
  verbs: readonly ('get' | 'list' | 'watch' | 'create')[];
  /** Why tokenguard needs it, for the README and the manifest's comments. */
  why: string;
}

export const CLUSTER_API_ACCESS: readonly ApiAccess[] = [
  {
    group: '',
    resource: 'pods',
    verbs: ['list', 'watch'],
    why: 'pod cache (all namespaces): which pods use a claim, their nodes and owners; kube-apiserver mirror pods',
  },
  { group: '', resource: 'nodes', verbs: ['list', 'watch'], why: 'kubelet versions (kubernetes#130442 token refresh bug)' },
  { group: '', resource: 'namespaces', verbs: ['list', 'watch'], why: 'the tokenguard.io/mode namespace label' },
];
