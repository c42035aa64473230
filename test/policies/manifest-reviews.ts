// AdmissionReviews for the hand-written manifests in test/fixtures/manifests/, built the way the
// API server builds them (group/version/resource from the kind, CREATE with `object`, UPDATE with
// `oldObject` too), and the token/NFS policies of the built-in registry.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import type { AdmissionRequest } from '../../src/admission/review.js';
import { BUILTIN_POLICIES } from '../../src/policies/index.js';
import type { AnyPolicy } from '../../src/admission/policy.js';
import { FIXTURES } from '../helpers/fixtures.js';
import type { KubeObject, Operation } from '../../src/k8s/object.js';

export const MANIFESTS_DIR = join(FIXTURES, 'manifests');

export const TOKEN_POLICY_NAMES = [
  'projected-token-lifetime',
  'projected-token-audience',
  'pvc-token-risk',
  'nfs-mount-options',
] as const;

/** The four policies of this area, taken from the registry (so the test also proves they are registered). */
export function tokenPolicies(): AnyPolicy[] {
  const found = BUILTIN_POLICIES.filter((p) => (TOKEN_POLICY_NAMES as readonly string[]).includes(p.name));
  if (found.length !== TOKEN_POLICY_NAMES.length) throw new Error(`registry lacks some of ${TOKEN_POLICY_NAMES.join(', ')}`);
  return found;
}

const RESOURCES: Record<string, { group: string; version: string; resource: string; namespaced: boolean }> = {
  Pod: { group: '', version: 'v1', resource: 'pods', namespaced: true },
  PodTemplate: { group: '', version: 'v1', resource: 'podtemplates', namespaced: true },
  ReplicationController: { group: '', version: 'v1', resource: 'replicationcontrollers', namespaced: true },
  Deployment: { group: 'apps', version: 'v1', resource: 'deployments', namespaced: true },
  StatefulSet: { group: 'apps', version: 'v1', resource: 'statefulsets', namespaced: true },
  DaemonSet: { group: 'apps', version: 'v1', resource: 'daemonsets', namespaced: true },
  ReplicaSet: { group: 'apps', version: 'v1', resource: 'replicasets', namespaced: true },
  Job: { group: 'batch', version: 'v1', resource: 'jobs', namespaced: true },
  CronJob: { group: 'batch', version: 'v1', resource: 'cronjobs', namespaced: true },
  PersistentVolume: { group: '', version: 'v1', resource: 'persistentvolumes', namespaced: false },
  StorageClass: { group: 'storage.k8s.io', version: 'v1', resource: 'storageclasses', namespaced: false },
};

let uidCounter = 0;

export function requestFor(object: KubeObject, operation: Operation = 'CREATE', oldObject?: KubeObject): AdmissionRequest {
  const r = RESOURCES[object.kind];
  if (!r) throw new Error(`no resource mapping for kind ${object.kind}`);
  const req: AdmissionRequest = {
    uid: `manifest-${++uidCounter}`,
    kind: { group: r.group, version: r.version, kind: object.kind },
    resource: { group: r.group, version: r.version, resource: r.resource },
    requestKind: { group: r.group, version: r.version, kind: object.kind },
    requestResource: { group: r.group, version: r.version, resource: r.resource },
    name: object.metadata?.name,
    operation,
    userInfo: { username: 'kubernetes-admin', groups: ['kubeadm:cluster-admins', 'system:authenticated'] },
    object,
    oldObject: oldObject ?? null,
    dryRun: false,
  };
  if (r.namespaced) req.namespace = object.metadata?.namespace ?? 'default';
  return req;
}

export function reviewFor(object: KubeObject, operation: Operation = 'CREATE', oldObject?: KubeObject) {
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: requestFor(object, operation, oldObject) };
}

/** Every document of a manifest file, parsed fresh each call. */
export function manifestDocs(file: string): KubeObject[] {
  const text = readFileSync(join(MANIFESTS_DIR, file), 'utf8');
  return parseAllDocuments(text).map((d) => {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0]!.message}`);
    return d.toJS() as KubeObject;
  });
}

export function manifest(file: string): KubeObject {
  return manifestDocs(file)[0]!;
}

export interface ExpectedFinding {
  policy: string;
  severity: 'deny' | 'warn';
  path: string;
  message: string;
}

export interface ExpectedManifests {
  podSpecs: Record<string, { kind: string; podSpecPath: string }>;
  podSpecFindings: ExpectedFinding[];
  podRiskAnnotation: string;
  storage: Record<string, { path: string; message: string }[]>;
}

export function expectedManifests(): ExpectedManifests {
  return parseYaml(readFileSync(join(MANIFESTS_DIR, 'expected.yaml'), 'utf8'));
}
