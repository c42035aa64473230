// Every cluster-wide Kubernetes API call tokenguard makes (the cluster cache, the PVC guard, caller
// authentication, Events on the objects it judges), declared once: the RBAC manifest (manifests/base/rbac.yaml) must grant exactly
// these, and a test checks it does.

export interface ApiAccess {
  /** API group, '' for the core group. */
  group: string;
  resource: string;
  verbs: readonly ('get' | 'list' | 'watch' | 'create' | 'patch')[];
  /** Why tokenguard needs it, for the docs and the manifest's comments. */
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
  {
    group: 'admissionregistration.k8s.io',
    resource: 'validatingwebhookconfigurations',
    verbs: ['list', 'watch'],
    why: 'caller authentication: the live uid a KEP-6060 token bound to a ValidatingWebhookConfiguration must match',
  },
  {
    group: 'admissionregistration.k8s.io',
    resource: 'mutatingwebhookconfigurations',
    verbs: ['list', 'watch'],
    why: 'caller authentication: the live uid a KEP-6060 token bound to a MutatingWebhookConfiguration must match',
  },
  {
    group: '',
    resource: 'events',
    verbs: ['create', 'patch'],
    why: 'Events (core/v1) on the objects tokenguard judges, in their namespaces: a denial, a break-glass deletion (patch: the count of a repeated one); and its own findings on its Deployment',
  },
];
