// Running the admission engine on an object outside an API server, as `tokenguard check` (manifests)
// and `tokenguard audit` (objects listed from a live cluster) do: build the CREATE request the API
// server would send, apply what the API server does before calling webhooks, then run the mutating
// and the validating pipeline in the API server's order.

import type { Engine } from '../admission/engine.js';
import { applyPatchCopyOnWrite, type PatchOperation } from '../admission/patch.js';
import { resolveKind } from '../k8s/resources.js';
import type { AdmissionRequest } from '../admission/review.js';
import { limitWarnings } from '../admission/warnings.js';
import type { KubeObject } from '../k8s/object.js';
import type { Decision } from '../admission/policy.js';

/** The user offline requests are attributed to (so user exemptions never match by accident). */
export const OFFLINE_USER = 'tokenguard:offline-check';

export interface SyntheticRequestOptions {
  uid: string;
  /** Namespace for namespaced objects that name none (kubectl's default: `default`). */
  defaultNamespace: string;
}

/** The AdmissionRequest a kube-apiserver would send for `kubectl create` of this object (server dry run). */
export function syntheticCreate(object: KubeObject, opts: SyntheticRequestOptions): AdmissionRequest {
  const metaNamespace = typeof object.metadata?.namespace === 'string' && object.metadata.namespace ? object.metadata.namespace : undefined;
  const kind = resolveKind(String(object.apiVersion ?? ''), String(object.kind ?? ''), metaNamespace !== undefined);
  const namespace = kind.namespaced ? (metaNamespace ?? opts.defaultNamespace) : undefined;
  const name = typeof object.metadata?.name === 'string' ? object.metadata.name : undefined;
  const withNamespace = namespace && !metaNamespace ? { ...object, metadata: { ...object.metadata, namespace } } : object;
  return {
    uid: opts.uid,
    kind: kind.gvk,
    resource: kind.gvr,
    requestKind: kind.gvk,
    requestResource: kind.gvr,
    name,
    namespace,
    operation: 'CREATE',
    userInfo: { username: OFFLINE_USER, groups: ['system:authenticated'] },
    object: withNamespace,
    oldObject: null,
    dryRun: true,
    options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1', dryRun: ['All'] },
  };
}

const SERVICE_ACCOUNT_MOUNT = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * What the ServiceAccount admission plugin adds to a new Pod before any webhook sees it: the
 * `kube-api-access-*` projected volume (3607 s token, kube-root-ca.crt, namespace) mounted in every
 * container. Skipped, as the plugin skips it, when the pod opts out, mounts that path itself, or
 * is a mirror pod. (A ServiceAccount with `automountServiceAccountToken: false` is not visible
 * offline; set it on the pod to get the same result.) Returns the object unchanged when skipped.
 */
export function withInjectedApiAccess(pod: KubeObject): { object: KubeObject; injected?: string } {
  const spec = pod.spec;
  if (!spec || typeof spec !== 'object' || spec.automountServiceAccountToken === false) return { object: pod };
  if (pod.metadata?.annotations?.['kubernetes.io/config.mirror'] !== undefined) return { object: pod };
  const containers = (key: string): KubeObject[] => (Array.isArray(spec[key]) ? spec[key] : []);
  const all = [...containers('initContainers'), ...containers('containers')];
  const mountsPath = (c: KubeObject) => Array.isArray(c.volumeMounts) && c.volumeMounts.some((m: KubeObject) => m?.mountPath === SERVICE_ACCOUNT_MOUNT);
  if (all.some(mountsPath)) return { object: pod };
  const volumes: KubeObject[] = Array.isArray(spec.volumes) ? spec.volumes : [];
  if (volumes.some((v) => typeof v?.name === 'string' && v.name.startsWith('kube-api-access-'))) return { object: pod };

  // The plugin's suffix is random; a fixed one keeps check's output reproducible.
  const name = 'kube-api-access-check';
  const volume = {
    name,
    projected: {
      defaultMode: 420,
      sources: [
        { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
        { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
        { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
      ],
    },
  };
  const mount = { name, readOnly: true, mountPath: SERVICE_ACCOUNT_MOUNT };
  const addMount = (list: KubeObject[]) => list.map((c) => ({ ...c, volumeMounts: [...(Array.isArray(c.volumeMounts) ? c.volumeMounts : []), mount] }));
  const newSpec: KubeObject = { ...spec, volumes: [...volumes, volume], containers: addMount(containers('containers')) };
  if (Array.isArray(spec.initContainers)) newSpec.initContainers = addMount(spec.initContainers);
  return { object: { ...pod, spec: newSpec }, injected: name };
}

export interface Evaluation {
  allowed: boolean;
  /** The validating decision's denial text (what kubectl prints after "denied the request:"). */
  denial?: string;
  /** Warnings of both webhooks, as the API server would relay them (deduplicated, limited). */
  warnings: string[];
  /** The mutating webhook's patch, when it changes the object. */
  patch?: PatchOperation[];
  mutatedBy: string[];
  findings: Decision['findings'];
  /** `kube-api-access-*` volume added as the ServiceAccount plugin would (Pods only). */
  injected?: string;
  /**
   * What the API server itself rejects in this object (API validation, before any validating
   * webhook is called), in its own words: such an object is refused in every mode.
   */
  invalid?: string[];
}

/** Mutate, then validate the mutated object, as the API server calls the two webhooks. */
export async function evaluateCreate(engine: Engine, request: AdmissionRequest): Promise<Evaluation> {
  let req = request;
  let injected: string | undefined;
  if (req.resource.group === '' && req.resource.resource === 'pods' && req.object) {
    const r = withInjectedApiAccess(req.object);
    if (r.injected) {
      req = { ...req, object: r.object };
      injected = r.injected;
    }
  }
  const mutation = engine.mutate(req);
  let object = req.object;
  if (mutation.patch && object) object = applyPatchCopyOnWrite(object, mutation.patch);
  const validation = await engine.validate(object === req.object ? req : { ...req, object });
  const out: Evaluation = {
    allowed: validation.allowed,
    warnings: [...limitWarnings(mutation.warnings), ...limitWarnings(validation.warnings)],
    mutatedBy: mutation.patch ? mutation.fired : [],
    findings: [...mutation.findings, ...validation.findings],
  };
  const invalid = validation.findings.flatMap((f) => (f.apiRejection ? [f.apiRejection] : []));
  if (invalid.length) {
    // The API server refuses it before the validating webhook is called: only the mutating
    // webhook's warnings would reach the user, and kubectl prints the API server's error.
    out.allowed = false;
    out.invalid = invalid;
    out.warnings = limitWarnings(mutation.warnings);
  }
  if (validation.denial) out.denial = validation.denial.message;
  if (mutation.patch) out.patch = mutation.patch;
  if (injected) out.injected = injected;
  return out;
}
