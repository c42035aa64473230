// Kind <-> resource mapping for the kinds tokenguard reasons about offline (`tokenguard check`
// builds AdmissionRequests from manifests) and in the manifest tests (which rules are namespaced).
// The API server knows this from discovery; without a cluster we need it written down, once.

import type { GroupVersionKind, GroupVersionResource } from './object.js';

export interface KnownResource {
  group: string;
  kind: string;
  /** The plural resource name, as in webhook rules and RBAC. */
  resource: string;
  namespaced: boolean;
}

/** The kinds tokenguard knows, by API group; their resource names follow the regular plural rules. */
const KINDS_BY_GROUP: Record<string, readonly string[]> = {
  '': ['Pod', 'PodTemplate', 'ReplicationController', 'ConfigMap', 'Secret', 'Service', 'ServiceAccount', 'Event', 'PersistentVolumeClaim', 'PersistentVolume', 'Namespace', 'Node'],
  apps: ['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet'],
  batch: ['Job', 'CronJob'],
  policy: ['PodDisruptionBudget'],
  'storage.k8s.io': ['StorageClass'],
  'rbac.authorization.k8s.io': ['Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding'],
  'admissionregistration.k8s.io': [
    'ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration',
    'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding', 'MutatingAdmissionPolicy', 'MutatingAdmissionPolicyBinding',
  ],
  'apiextensions.k8s.io': ['CustomResourceDefinition'],
  'controlplane.cluster.x-k8s.io': ['KubeadmControlPlane'],
  'cert-manager.io': ['Issuer', 'ClusterIssuer', 'Certificate'],
};

/** The known kinds that are cluster-scoped; every other known kind is namespaced. */
const CLUSTER_SCOPED = new Set([
  'PersistentVolume', 'Namespace', 'Node', 'StorageClass', 'ClusterRole', 'ClusterRoleBinding',
  'ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration', 'CustomResourceDefinition', 'ClusterIssuer',
  'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding', 'MutatingAdmissionPolicy', 'MutatingAdmissionPolicyBinding',
]);

export const KNOWN_RESOURCES: readonly KnownResource[] = Object.entries(KINDS_BY_GROUP).flatMap(([group, kinds]) =>
  kinds.map((kind) => ({ group, kind, resource: guessResource(kind), namespaced: !CLUSTER_SCOPED.has(kind) })),
);

const byKind = new Map(KNOWN_RESOURCES.map((k) => [`${k.group}/${k.kind}`, k]));
const byResource = new Map(KNOWN_RESOURCES.map((k) => [`${k.group}/${k.resource}`, k]));

/** `apps/v1` -> { group: 'apps', version: 'v1' }; `v1` -> core group. */
export function splitApiVersion(apiVersion: string): { group: string; version: string } {
  const slash = apiVersion.indexOf('/');
  return slash === -1 ? { group: '', version: apiVersion } : { group: apiVersion.slice(0, slash), version: apiVersion.slice(slash + 1) };
}

/**
 * kubectl's guess for kinds it has no discovery for (`UnsafeGuessKindToResource`): lower-case,
 * then the English plural rules the API machinery uses.
 */
export function guessResource(kind: string): string {
  const lower = kind.toLowerCase();
  if (lower === '') return '';
  if (/(s|x|z|ch|sh)$/.test(lower)) return lower + 'es';
  if (/[^aeiou]y$/.test(lower)) return lower.slice(0, -1) + 'ies';
  return lower + 's';
}

export interface ResolvedKind {
  gvk: GroupVersionKind;
  gvr: GroupVersionResource;
  /** Known kinds say; for guessed ones, whether the object names a namespace. */
  namespaced: boolean;
  /** False when the resource name was guessed (a kind not in KNOWN_RESOURCES). */
  known: boolean;
}

/** The group/version/kind and group/version/resource of an object with `apiVersion` and `kind`. */
export function resolveKind(apiVersion: string, kind: string, hasNamespace: boolean): ResolvedKind {
  const { group, version } = splitApiVersion(apiVersion);
  const known = byKind.get(`${group}/${kind}`);
  return {
    gvk: { group, version, kind },
    gvr: { group, version, resource: known?.resource ?? guessResource(kind) },
    namespaced: known ? known.namespaced : hasNamespace,
    known: !!known,
  };
}

/** Whether a resource is namespaced; undefined for resources not in KNOWN_RESOURCES. */
export function isNamespaced(group: string, resource: string): boolean | undefined {
  return byResource.get(`${group}/${resource}`)?.namespaced;
}
