// Finding pod specs in Pods and workload templates, and reading their volumes. Shared by the
// policies and by the cluster cache's pod projection, so "uses a claim" and "has a projected
// token" mean the same thing everywhere.

import type { KubeObject, ResourceRule } from './object.js';

export interface PodSpecLocation {
  /** Dotted path of the pod spec inside the object, e.g. `spec.template.spec`. */
  path: string;
  /** JSON Pointer tokens of the same location, for patches. */
  tokens: string[];
  spec: KubeObject;
}

/** Where each kind keeps its pod spec (all in the core or apps/batch groups). */
export const POD_SPEC_TOKENS: Readonly<Record<string, string[]>> = {
  Pod: ['spec'],
  PodTemplate: ['template', 'spec'],
  Deployment: ['spec', 'template', 'spec'],
  StatefulSet: ['spec', 'template', 'spec'],
  DaemonSet: ['spec', 'template', 'spec'],
  ReplicaSet: ['spec', 'template', 'spec'],
  ReplicationController: ['spec', 'template', 'spec'],
  Job: ['spec', 'template', 'spec'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template', 'spec'],
};

/**
 * Webhook rules for everything that carries a pod spec: Pods on CREATE (their volumes cannot
 * change afterwards) and the pod templates of workloads on CREATE and UPDATE. The templates matter
 * most: a warning on a Pod that a ReplicaSet created reaches nobody.
 */
export const POD_SPEC_RULES: readonly ResourceRule[] = [
  { groups: [''], versions: ['v1'], resources: ['pods'], operations: ['CREATE'] },
  { groups: [''], versions: ['v1'], resources: ['podtemplates', 'replicationcontrollers'], operations: ['CREATE', 'UPDATE'] },
  {
    groups: ['apps'],
    versions: ['v1'],
    resources: ['deployments', 'statefulsets', 'daemonsets', 'replicasets'],
    operations: ['CREATE', 'UPDATE'],
  },
  { groups: ['batch'], versions: ['v1'], resources: ['jobs', 'cronjobs'], operations: ['CREATE', 'UPDATE'] },
];

/** The pod spec of a Pod or workload object, or undefined for other kinds or a missing spec. */
export function podSpecOf(kind: string, object: KubeObject | null | undefined): PodSpecLocation | undefined {
  const tokens = POD_SPEC_TOKENS[kind];
  if (!tokens || !object) return undefined;
  let cur: any = object;
  for (const t of tokens) {
    cur = cur?.[t];
    if (cur === undefined || cur === null) return undefined;
  }
  if (typeof cur !== 'object' || Array.isArray(cur)) return undefined;
  return { path: tokens.join('.'), tokens, spec: cur };
}

/**
 * The pod spec's volumes, indexed as written (so paths name the right entry); entries that are not
 * objects come back as undefined for the caller to skip.
 */
export function volumeAt(volumes: unknown[], i: number): KubeObject | undefined {
  const v = volumes[i];
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v) : undefined;
}

export function volumesOf(spec: KubeObject): unknown[] {
  return Array.isArray(spec.volumes) ? spec.volumes : [];
}

export interface ClaimRef {
  claim: string;
  volume: string;
  volumeIndex: number;
  /** `persistentVolumeClaim` or `ephemeral` (generic ephemeral volume, claim `<pod>-<volume>`). */
  source: 'persistentVolumeClaim' | 'ephemeral';
}

/**
 * Claims a pod uses. Generic ephemeral volumes create a claim named `<pod>-<volume>`; for a pod
 * template (no pod name yet) those are reported with `claim` empty.
 */
export function claimRefs(spec: KubeObject, podName: string): ClaimRef[] {
  const out: ClaimRef[] = [];
  const volumes = volumesOf(spec);
  for (let volumeIndex = 0; volumeIndex < volumes.length; volumeIndex++) {
    const v = volumeAt(volumes, volumeIndex);
    if (!v) continue;
    const name = typeof v.name === 'string' ? v.name : '';
    const pvc = v.persistentVolumeClaim?.claimName;
    if (typeof pvc === 'string' && pvc) out.push({ claim: pvc, volume: name, volumeIndex, source: 'persistentVolumeClaim' });
    else if (v.ephemeral && typeof v.ephemeral === 'object') {
      out.push({ claim: podName ? `${podName}-${name}` : '', volume: name, volumeIndex, source: 'ephemeral' });
    }
  }
  return out;
}

export interface TokenProjection {
  volume: string;
  volumeIndex: number;
  sourceIndex: number;
  /** Dotted path relative to the pod spec: `volumes[2].projected.sources[0].serviceAccountToken`. */
  relPath: string;
  /** `expirationSeconds` as written (undefined when missing: the API defaults it to 3600). */
  expirationSeconds: unknown;
  /** `audience` as written (undefined or '' means the API server's audiences). */
  audience: unknown;
  tokenPath: unknown;
  /** The volume the ServiceAccount admission plugin injects (`kube-api-access-*`). */
  injected: boolean;
}

const INJECTED_VOLUME = /^kube-api-access-[a-z0-9]+$/;

/**
 * Whether a projected volume is the one the ServiceAccount admission plugin injects: named
 * `kube-api-access-<suffix>`, a `token` path with 3607 s and no audience, plus kube-root-ca.crt.
 */
export function isInjectedApiAccessVolume(volume: KubeObject): boolean {
  if (typeof volume.name !== 'string' || !INJECTED_VOLUME.test(volume.name)) return false;
  const sources: unknown[] = Array.isArray(volume.projected?.sources) ? volume.projected.sources : [];
  let token: any;
  let tokens = 0;
  let hasRootCA = false;
  for (const s of sources as any[]) {
    if (s?.serviceAccountToken) {
      token = s.serviceAccountToken;
      tokens++;
    }
    if (s?.configMap?.name === 'kube-root-ca.crt') hasRootCA = true;
  }
  return tokens === 1 && token.path === 'token' && token.expirationSeconds === 3607 && !token.audience && hasRootCA;
}

// Three policies read the projections of the same pod spec in one review. Decoded objects are
// never modified (patches are applied copy-on-write, so a changed spec is a new object), so the
// spec object itself identifies the answer. One entry is enough (the policies of a review run
// one after another), and unlike a WeakMap it costs nothing per review: a WeakMap entry for
// every short-lived spec measurably slowed the collector.
let lastSpec: KubeObject | undefined;
let lastProjections: readonly TokenProjection[] = [];

export function tokenProjections(spec: KubeObject): readonly TokenProjection[] {
  if (spec !== lastSpec) {
    lastProjections = readTokenProjections(spec);
    lastSpec = spec;
  }
  return lastProjections;
}

function readTokenProjections(spec: KubeObject): TokenProjection[] {
  const out: TokenProjection[] = [];
  const volumes = volumesOf(spec);
  for (let volumeIndex = 0; volumeIndex < volumes.length; volumeIndex++) {
    const v = volumeAt(volumes, volumeIndex);
    const sources = v?.projected?.sources;
    if (!v || !Array.isArray(sources)) continue;
    let injected: boolean | undefined;
    for (let sourceIndex = 0; sourceIndex < sources.length; sourceIndex++) {
      const t = sources[sourceIndex]?.serviceAccountToken;
      if (!t || typeof t !== 'object') continue;
      injected ??= isInjectedApiAccessVolume(v);
      out.push({
        volume: typeof v.name === 'string' ? v.name : '',
        volumeIndex,
        sourceIndex,
        relPath: `volumes[${volumeIndex}].projected.sources[${sourceIndex}].serviceAccountToken`,
        expirationSeconds: t.expirationSeconds,
        audience: t.audience,
        tokenPath: t.path,
        injected,
      });
    }
  }
  return out;
}

export function hasProjectedToken(spec: KubeObject): boolean {
  const volumes = volumesOf(spec);
  for (let i = 0; i < volumes.length; i++) {
    const sources = volumeAt(volumes, i)?.projected?.sources;
    if (!Array.isArray(sources)) continue;
    for (const s of sources) if (s?.serviceAccountToken) return true;
  }
  return false;
}

/** The ServiceAccount the ServiceAccount admission plugin gives a pod that names none. */
export const DEFAULT_SERVICE_ACCOUNT = 'default';

/**
 * The ServiceAccount whose tokens a pod spec's pods get: `serviceAccountName`, else the deprecated
 * alias `serviceAccount` (the API server copies one to the other when converting a pod spec, so
 * objects reaching admission carry both; `tokenguard check` may see either), else `default`.
 */
export function podServiceAccount(spec: KubeObject): string {
  for (const field of ['serviceAccountName', 'serviceAccount']) {
    const name: unknown = spec[field];
    if (typeof name === 'string' && name !== '') return name;
  }
  return DEFAULT_SERVICE_ACCOUNT;
}
