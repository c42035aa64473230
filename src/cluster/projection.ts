// The compact projections the caches keep: a few fields per object, read with the same pod-spec
// helpers the policies use. Repeated strings (namespaces, nodes, phases, owners) are interned so
// 100,000 pods share one copy of each.

import { apiserverArgv, isApiserverMirrorPod } from '../k8s/apiserver-flags.js';
import type { KubeObject } from '../k8s/object.js';
import { claimRefs, volumeAt, volumesOf } from '../k8s/pod-spec.js';
import { refreshThresholdSeconds } from '../k8s/token-refresh-schedule.js';
import type { NodeSummary, OwnerRef, PodSummary } from './view.js';

/** A cached pod; kube-apiserver mirror pods also keep their kube-apiserver argv (and only they do). */
export interface CachedPod extends PodSummary {
  apiserverArgv?: string[];
}

const NO_CLAIMS: string[] = [];
Object.freeze(NO_CLAIMS);

export class Interner {
  private readonly strings = new Map<string, string>();
  private readonly owners = new Map<string, OwnerRef>();

  str(s: unknown): string {
    if (typeof s !== 'string' || s === '') return '';
    let v = this.strings.get(s);
    if (v === undefined) this.strings.set(s, (v = s));
    return v;
  }

  owner(kind: string, name: string): OwnerRef {
    const key = `${kind}/${name}`;
    let v = this.owners.get(key);
    if (v === undefined) this.owners.set(key, (v = Object.freeze({ kind: this.str(kind), name })));
    return v;
  }

  get size(): number {
    return this.strings.size + this.owners.size;
  }
}

/**
 * The top owner of a pod: its controller reference, lifted from a ReplicaSet to its Deployment
 * by the naming convention `<deployment>-<pod-template-hash>` (the hash is the pod's
 * `pod-template-hash` label when present). StatefulSet, DaemonSet and Job owners are direct.
 */
export function topOwner(meta: KubeObject | undefined, interner?: Interner): OwnerRef | undefined {
  const refs: KubeObject[] = Array.isArray(meta?.ownerReferences) ? meta.ownerReferences : [];
  const ref = refs.find((r) => r?.controller === true) ?? refs[0];
  if (!ref || typeof ref.kind !== 'string' || typeof ref.name !== 'string') return undefined;
  let kind: string = ref.kind;
  let name: string = ref.name;
  if (kind === 'ReplicaSet') {
    const hash = meta?.labels?.['pod-template-hash'];
    if (typeof hash === 'string' && hash && name.endsWith(`-${hash}`)) {
      kind = 'Deployment';
      name = name.slice(0, -hash.length - 1);
    } else if (/-[a-z0-9]{6,10}$/.test(name)) {
      kind = 'Deployment';
      name = name.replace(/-[a-z0-9]{6,10}$/, '');
    }
  }
  return interner ? interner.owner(kind, name) : { kind, name };
}

export function projectPod(obj: KubeObject, interner: Interner): CachedPod | undefined {
  const meta = obj?.metadata;
  if (!meta || typeof meta.name !== 'string') return undefined;
  const spec = obj.spec && typeof obj.spec === 'object' ? obj.spec : {};
  const refs = claimRefs(spec, meta.name);
  let claims = NO_CLAIMS;
  let ephemeralClaims: string[] | undefined;
  if (refs.length) {
    claims = [];
    for (const r of refs) {
      if (!r.claim) continue;
      if (!claims.includes(r.claim)) claims.push(r.claim);
      if (r.source === 'ephemeral') (ephemeralClaims ??= []).push(r.claim);
    }
  }
  const pod: CachedPod = {
    namespace: interner.str(meta.namespace),
    name: meta.name,
    uid: typeof meta.uid === 'string' ? meta.uid : '',
    nodeName: interner.str(spec.nodeName),
    phase: interner.str(obj.status?.phase),
    owner: topOwner(meta, interner),
    claims,
    hasProjectedToken: false,
  };
  const refresh = longestRefreshSeconds(spec);
  if (refresh !== undefined) {
    pod.hasProjectedToken = true;
    pod.tokenRefreshSeconds = refresh;
  }
  if (meta.deletionTimestamp) pod.deleting = true;
  if (ephemeralClaims) pod.ephemeralClaims = ephemeralClaims;
  if (isApiserverMirrorPod(obj)) pod.apiserverArgv = apiserverArgv(obj);
  return pod;
}

/**
 * The longest refresh threshold among a pod spec's projected tokens (a lifetime the API server
 * would refuse counts as its 3600 s default: such a pod never runs), or undefined without one.
 */
function longestRefreshSeconds(spec: KubeObject): number | undefined {
  // A plain loop, not tokenProjections(): this runs for every pod of every LIST and watch event.
  let longest: number | undefined;
  const volumes = volumesOf(spec);
  for (let i = 0; i < volumes.length; i++) {
    const sources = volumeAt(volumes, i)?.projected?.sources;
    if (!Array.isArray(sources)) continue;
    for (const s of sources) {
      const t = s?.serviceAccountToken;
      if (!t || typeof t !== 'object') continue;
      const requested = Number.isInteger(t.expirationSeconds) && t.expirationSeconds >= 1 ? (t.expirationSeconds as number) : 3600;
      longest = Math.max(longest ?? 0, refreshThresholdSeconds(requested));
    }
  }
  return longest;
}

export function projectNode(obj: KubeObject, interner: Interner): NodeSummary | undefined {
  const name = obj?.metadata?.name;
  if (typeof name !== 'string') return undefined;
  const node: NodeSummary = { name, kubeletVersion: interner.str(obj.status?.nodeInfo?.kubeletVersion) };
  const conditions: unknown = obj.status?.conditions;
  const ready = Array.isArray(conditions) ? conditions.find((c: KubeObject) => c?.type === 'Ready') : undefined;
  if (ready?.status !== 'True') node.notReady = true;
  return node;
}

/** A Namespace is kept as its labels (the `tokenguard.io/mode` label lives there). */
export function projectNamespace(obj: KubeObject): Record<string, string> | undefined {
  if (typeof obj?.metadata?.name !== 'string') return undefined;
  const labels = obj.metadata.labels;
  return labels && typeof labels === 'object' ? labels : {};
}
