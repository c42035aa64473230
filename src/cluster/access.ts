// Every Kubernetes API call tokenguard makes (the cluster cache, the PVC guard, caller
// authentication, self-managed TLS, Events, the token self-test), declared once: the RBAC manifest
// (manifests/base/rbac.yaml) must grant exactly these, and a test checks it does.

export interface ApiAccess {
  /** API group, '' for the core group. */
  group: string;
  resource: string;
  verbs: readonly ('get' | 'list' | 'watch' | 'create' | 'update' | 'patch')[];
  /** Only these objects (RBAC `resourceNames`); absent: any. */
  resourceNames?: readonly string[];
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
    why: 'Events (core/v1) on the objects tokenguard judges, in their namespaces: a denial, a break-glass deletion (patch: the count of a repeated one), a pod whose token refresh is overdue (token observer); and its own findings on its Deployment',
  },
  {
    group: 'admissionregistration.k8s.io',
    resource: 'validatingwebhookconfigurations',
    verbs: ['get', 'update'],
    resourceNames: ['tokenguard'],
    why: 'self-managed TLS: the CA bundle in its own ValidatingWebhookConfiguration, updated at the resourceVersion read',
  },
  {
    group: 'admissionregistration.k8s.io',
    resource: 'mutatingwebhookconfigurations',
    verbs: ['get', 'update'],
    resourceNames: ['tokenguard'],
    why: 'self-managed TLS: the CA bundle in its own MutatingWebhookConfiguration, updated at the resourceVersion read',
  },
];

/** The calls in tokenguard's own namespace (a Role there). */
export const NAMESPACE_API_ACCESS: readonly ApiAccess[] = [
  { group: '', resource: 'serviceaccounts/token', verbs: ['create'], resourceNames: ['tokenguard'], why: 'the token self-test: a TokenRequest for its own ServiceAccount' },
  { group: '', resource: 'secrets', verbs: ['get', 'update'], resourceNames: ['tokenguard-tls'], why: 'self-managed TLS: its certificate Secret' },
  { group: '', resource: 'secrets', verbs: ['create'], why: 'self-managed TLS: creating its certificate Secret (RBAC cannot limit a create to a name)' },
];
