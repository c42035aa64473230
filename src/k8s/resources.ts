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

const r = (group: string, kind: string, resource: string, namespaced = true): KnownResource => ({
  group,
  kind,
  resource,
  namespaced,
});

export const KNOWN_RESOURCES: readonly KnownResource[] = [
  r('', 'Pod', 'pods'),
  r('', 'PodTemplate', 'podtemplates'),
  r('', 'ReplicationController', 'replicationcontrollers'),
  r('', 'ConfigMap', 'configmaps'),
  r('', 'Secret', 'secrets'),
  r('', 'Service', 'services'),
  r('', 'ServiceAccount', 'serviceaccounts'),
  r('', 'Event', 'events'),
  r('', 'PersistentVolumeClaim', 'persistentvolumeclaims'),
  r('', 'PersistentVolume', 'persistentvolumes', false),
  r('', 'Namespace', 'namespaces', false),
  r('', 'Node', 'nodes', false),
  r('apps', 'Deployment', 'deployments'),
  r('apps', 'StatefulSet', 'statefulsets'),
  r('apps', 'DaemonSet', 'daemonsets'),
  r('apps', 'ReplicaSet', 'replicasets'),
  r('batch', 'Job', 'jobs'),
  r('batch', 'CronJob', 'cronjobs'),
  r('policy', 'PodDisruptionBudget', 'poddisruptionbudgets'),
  r('storage.k8s.io', 'StorageClass', 'storageclasses', false),
  r('rbac.authorization.k8s.io', 'Role', 'roles'),
  r('rbac.authorization.k8s.io', 'RoleBinding', 'rolebindings'),
  r('rbac.authorization.k8s.io', 'ClusterRole', 'clusterroles', false),
  r('rbac.authorization.k8s.io', 'ClusterRoleBinding', 'clusterrolebindings', false),
  r('admissionregistration.k8s.io', 'ValidatingWebhookConfiguration', 'validatingwebhookconfigurations', false),
  r('admissionregistration.k8s.io', 'MutatingWebhookConfiguration', 'mutatingwebhookconfigurations', false),
  r('admissionregistration.k8s.io', 'ValidatingAdmissionPolicy', 'validatingadmissionpolicies', false),
  r('admissionregistration.k8s.io', 'ValidatingAdmissionPolicyBinding', 'validatingadmissionpolicybindings', false),
  r('admissionregistration.k8s.io', 'MutatingAdmissionPolicy', 'mutatingadmissionpolicies', false),
  r('admissionregistration.k8s.io', 'MutatingAdmissionPolicyBinding', 'mutatingadmissionpolicybindings', false),
  r('apiextensions.k8s.io', 'CustomResourceDefinition', 'customresourcedefinitions', false),
  r('controlplane.cluster.x-k8s.io', 'KubeadmControlPlane', 'kubeadmcontrolplanes'),
  r('cert-manager.io', 'Issuer', 'issuers'),
  r('cert-manager.io', 'ClusterIssuer', 'clusterissuers', false),
  r('cert-manager.io', 'Certificate', 'certificates'),
];

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
