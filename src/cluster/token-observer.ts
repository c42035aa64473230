// The token refresh observer: what it has seen of the kubelets' TokenRequests, and which running
// pods have missed a refresh the kubelet should have made (k8s/token-refresh-schedule.ts).
//
// Every projected token a kubelet fetches is a TokenRequest (`serviceaccounts/token` CREATE) bound
// to the pod, and validating admission sees it with the audiences, the requested lifetime and the
// bound pod (never the token: the API server clears the status before admission and mints the
// token after). The observing webhook records each one here; the state answers from memory.
//
// Rules that keep a report honest:
// - Only what this observer saw counts. A new observer (a new leader, a restart) starts empty, and
//   a pod is judged only once this observer has seen one of its TokenRequests, or once it has been
//   observing (since the first TokenRequest it received: proof that the webhook reaches it) for a
//   whole refresh period of the pod's longest-lived token, in which a healthy kubelet must have
//   fetched at least once. No pod is ever overdue on data the observer could not have had.
// - Memory is bounded by the pods in the cluster: only nodes' requests are recorded, each pod
//   keeps at most MAX_TOKENS_PER_POD entries, a pod the pod cache does not know is kept only
//   within a small allowance (the cache may lag the kubelet by a moment), and `sweep` frees every
//   pod the cache no longer has (deleted, or a new pod with the same name).

import type { KubeObject } from '../k8s/object.js';
import { RESYNC_JITTER_FACTOR, refreshThresholdSeconds } from '../k8s/token-refresh-schedule.js';
import { requestingNode } from '../k8s/token-request.js';
import type { NodeSummary, PodSummary } from './view.js';

/** A pod has one TokenRequest key per projected token volume (audiences and lifetime); more is not a kubelet. */
export const MAX_TOKENS_PER_POD = 16;
/** Pods the pod cache does not know yet, kept until the next sweep (beyond that: not recorded). */
export const UNKNOWN_POD_ALLOWANCE = 1024;

/** What the observer reads of the cluster: the pod cache's pods and nodes. */
export interface PodDirectory {
  pod(namespace: string, name: string): PodSummary | undefined;
  node(name: string): NodeSummary | undefined;
  /** Every cached pod (the candidates of a report). */
  pods(): Iterable<PodSummary>;
}

/** What the observer reads of an admission request (admission/review.ts's AdmissionRequest has it). */
export interface TokenRequestReview {
  namespace?: string;
  userInfo: { username?: string; groups?: string[] };
  object?: KubeObject | null;
}

export interface ObserverOptions {
  pods: PodDirectory;
  /** Seconds a refresh may be later than the kubelet's latest before the pod is overdue (config `observer.marginSeconds`). */
  marginSeconds: number;
  /** The kubelets' `syncFrequency` (config `observer.kubeletSyncFrequencySeconds`, default 60). */
  syncFrequencySeconds: number;
  now?: () => number;
}

/** One token of a pod: the last TokenRequest seen for it. */
interface TokenEntry {
  /** The requested audiences joined with `,` (empty: the API server's own), interned. */
  readonly audiences: string;
  readonly requestedSeconds: number;
  /** When the last TokenRequest for it was seen (ms epoch): the issue time, to the observer's clock. */
  lastMs: number;
}

interface TrackedPod {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly node: string;
  readonly tokens: TokenEntry[];
  /** A sweep did not find it in the pod cache: the next sweep that does not either drops it. */
  missedSweep: boolean;
}

/** Why a TokenRequest was not recorded (counted by the caller). */
export type Outcome = 'recorded' | 'not-a-node' | 'not-pod-bound' | 'not-observing' | 'over-allowance' | 'too-many-tokens' | 'malformed';

export interface OverduePod {
  namespace: string;
  name: string;
  uid: string;
  node: string;
  kubeletVersion?: string;
  /** The token's audiences (empty: the API server's own) and requested lifetime; absent when no TokenRequest of the pod was ever seen. */
  audiences?: string[];
  requestedSeconds?: number;
  /** When its last TokenRequest was seen (absent: never, since `observingSince`). */
  lastRefreshMs?: number;
  /** When the refresh was due at the latest (margin included). */
  dueMs: number;
  lateSeconds: number;
  /** What the cache already shows: the pod Terminating, its node not Ready (claims need a lookup: see likelyCauses). */
  podTerminating: boolean;
  nodeNotReady: boolean;
}

export interface ObserverStats {
  observing: boolean;
  /** ms epoch of the first TokenRequest received since observing began; undefined before. */
  observingSince?: number;
  pods: number;
  tokens: number;
}

export class TokenRefreshObserver {
  private readonly tracked = new Map<string, TrackedPod>();
  private readonly audienceStrings = new Map<string, string>();
  private readonly now: () => number;
  private observing = false;
  private observingSince: number | undefined;
  private unknownPods = 0;
  private tokenCount = 0;

  constructor(private readonly opts: ObserverOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** Become the observer (elected leader): start empty, judge nothing until a TokenRequest arrives. */
  start(): void {
    this.clear();
    this.observing = true;
  }

  /** Stop observing (leadership lost, shutdown): forget everything, another observer takes over. */
  stop(): void {
    this.clear();
    this.observing = false;
  }

  private clear(): void {
    this.tracked.clear();
    this.audienceStrings.clear();
    this.observingSince = undefined;
    this.unknownPods = 0;
    this.tokenCount = 0;
  }

  /** Record a `serviceaccounts/token` CREATE: synchronous, no I/O, never throws on what a request holds. */
  record(req: TokenRequestReview): Outcome {
    if (!this.observing) return 'not-observing';
    const now = this.now();
    // Any TokenRequest that reaches us proves the webhook routes here: observation has begun.
    this.observingSince ??= now;
    const node = requestingNode(req.userInfo);
    if (!node) return 'not-a-node';
    const read = readTokenRequest(req);
    if (typeof read === 'string') return read;
    const { namespace, podName, podUid, requested } = read;
    const audiences = this.audiencesKey(read.audiences);
    if (audiences === undefined) return 'malformed';

    const key = `${namespace}/${podName}`;
    let pod = this.tracked.get(key);
    if (pod && pod.uid !== podUid) {
      this.forget(key, pod); // a new pod with the same name: the old one's tokens are gone with it
      pod = undefined;
    }
    if (!pod) {
      const cached = this.opts.pods.pod(namespace, podName);
      if (cached?.uid === podUid) {
        // The cache's strings: one copy of each name in memory.
        pod = { namespace: cached.namespace, name: cached.name, uid: cached.uid, node: cached.nodeName || node, tokens: [], missedSweep: false };
      } else {
        if (this.unknownPods >= UNKNOWN_POD_ALLOWANCE) return 'over-allowance';
        pod = { namespace, name: podName, uid: podUid, node, tokens: [], missedSweep: false };
        this.unknownPods++;
      }
      this.tracked.set(key, pod);
    }
    const token = pod.tokens.find((t) => t.audiences === audiences && t.requestedSeconds === requested);
    if (token) {
      token.lastMs = now;
      return 'recorded';
    }
    if (pod.tokens.length >= MAX_TOKENS_PER_POD) return 'too-many-tokens';
    pod.tokens.push({ audiences, requestedSeconds: requested, lastMs: now });
    this.tokenCount++;
    return 'recorded';
  }

  /** Free every pod the pod cache no longer has (or has under another uid); unknown pods it now knows stop counting against the allowance. */
  sweep(): void {
    let unknown = 0;
    for (const [key, pod] of this.tracked) {
      const cached = this.opts.pods.pod(pod.namespace, pod.name);
      if (cached !== undefined && cached.uid !== pod.uid) this.forget(key, pod);
      else if (cached !== undefined) pod.missedSweep = false;
      else if (pod.missedSweep) this.forget(key, pod); // deleted, or recorded before the cache had it and never there since
      else {
        pod.missedSweep = true;
        unknown++;
      }
    }
    this.unknownPods = unknown;
  }

  private forget(key: string, pod: TrackedPod): void {
    this.tracked.delete(key);
    this.tokenCount -= pod.tokens.length;
  }

  /** Audiences as one interned string (a kubelet asks for the same list each time), or undefined when malformed. */
  private audiencesKey(value: unknown): string | undefined {
    if (value === undefined || value === null) return '';
    if (!Array.isArray(value) || !value.every((a) => typeof a === 'string')) return undefined;
    const joined = value.join(',');
    let interned = this.audienceStrings.get(joined);
    if (interned === undefined) {
      // Distinct audience lists are few (one per consumer); a flood of new ones is not interned.
      if (this.audienceStrings.size >= 4096) return joined;
      this.audienceStrings.set(joined, (interned = joined));
    }
    return interned;
  }

  /** The latest a healthy kubelet refreshes a token requested for `requestedSeconds`, plus the margin, in ms. */
  private dueAfterMs(thresholdSeconds: number): number {
    return (thresholdSeconds + this.opts.syncFrequencySeconds * (1 + RESYNC_JITTER_FACTOR) + this.opts.marginSeconds) * 1000;
  }

  /** Running pods whose refresh is overdue now, most late first. */
  overdue(): OverduePod[] {
    const out: OverduePod[] = [];
    if (!this.observing || this.observingSince === undefined) return out;
    const now = this.now();
    const since = this.observingSince;
    for (const cached of this.opts.pods.pods()) {
      if (cached.phase !== 'Running' || cached.tokenRefreshSeconds === undefined) continue;
      const tracked = this.tracked.get(`${cached.namespace}/${cached.name}`);
      const base = {
        namespace: cached.namespace,
        name: cached.name,
        uid: cached.uid,
        node: cached.nodeName,
        podTerminating: cached.deleting === true,
        nodeNotReady: false,
        kubeletVersion: undefined as string | undefined,
      };
      if (tracked && tracked.uid === cached.uid && tracked.tokens.length > 0) {
        for (const t of tracked.tokens) {
          const due = t.lastMs + this.dueAfterMs(refreshThresholdSeconds(t.requestedSeconds));
          if (now > due) out.push({ ...base, audiences: t.audiences ? t.audiences.split(',') : [], requestedSeconds: t.requestedSeconds, lastRefreshMs: t.lastMs, dueMs: due, lateSeconds: Math.floor((now - due) / 1000) });
        }
      } else {
        // Never seen by this observer: overdue only once a whole period has passed since it began observing.
        const due = since + this.dueAfterMs(cached.tokenRefreshSeconds);
        if (now > due) out.push({ ...base, dueMs: due, lateSeconds: Math.floor((now - due) / 1000) });
      }
    }
    for (const o of out) {
      const node = o.node ? this.opts.pods.node(o.node) : undefined;
      o.kubeletVersion = node?.kubeletVersion || undefined;
      o.nodeNotReady = node?.notReady === true;
    }
    return out.sort((a, b) => b.lateSeconds - a.lateSeconds);
  }

  stats(): ObserverStats {
    return { observing: this.observing, observingSince: this.observingSince, pods: this.tracked.size, tokens: this.tokenCount };
  }
}

/** The fields of a TokenRequest the observer keeps, or why it keeps none. */
function readTokenRequest(req: TokenRequestReview): { namespace: string; podName: string; podUid: string; requested: number; audiences: unknown } | Outcome {
  const spec = (req.object as { spec?: Record<string, unknown> } | null | undefined)?.spec;
  const ref = spec?.boundObjectRef as Record<string, unknown> | undefined;
  if (!ref || ref.kind !== 'Pod' || (ref.apiVersion !== undefined && ref.apiVersion !== 'v1')) return 'not-pod-bound';
  const { name, uid } = ref;
  const requested = spec!.expirationSeconds ?? 3600;
  if (typeof name !== 'string' || !name || typeof uid !== 'string' || !uid || !req.namespace) return 'malformed';
  if (typeof requested !== 'number' || !Number.isInteger(requested) || requested < 1) return 'malformed';
  return { namespace: req.namespace, podName: name, podUid: uid, requested, audiences: spec!.audiences };
}

/** A known reason why a kubelet stops refreshing a pod's token, with the upstream issue. */
export interface LikelyCause {
  code: 'claim-terminating' | 'pod-terminating' | 'node-not-ready';
  text: string;
  /** The upstream issue, when there is one. */
  issue?: string;
}

/**
 * The likely causes of an overdue refresh, from what the cache shows and the claims of the pod
 * that are Terminating (the caller looks those up: the observer keeps no claims).
 */
export function likelyCauses(o: Pick<OverduePod, 'podTerminating' | 'nodeNotReady'>, terminatingClaims: readonly string[] = []): LikelyCause[] {
  const causes: LikelyCause[] = [];
  if (terminatingClaims.length) {
    causes.push({
      code: 'claim-terminating',
      text: `claim ${terminatingClaims.join(', ')} Terminating: kubelets without the fix of kubernetes#130442 stop refreshing the pod's tokens`,
      issue: 'kubernetes#130442',
    });
  }
  if (o.podTerminating) causes.push({ code: 'pod-terminating', text: 'pod Terminating: the kubelet no longer refreshes its tokens (kubernetes#116481)', issue: 'kubernetes#116481' });
  if (o.nodeNotReady) causes.push({ code: 'node-not-ready', text: "node not Ready: its kubelet is down or cannot reach the API server" });
  return causes;
}

/** What a PodDirectory is made of: the pod cache's pods (by `namespace/name`) and nodes (ClusterCache has both). */
export interface PodCacheView {
  readonly pods: { readonly items: ReadonlyMap<string, PodSummary> };
  node(name: string): NodeSummary | undefined;
}

/** The pod cache as a PodDirectory. */
export function podDirectory(cache: PodCacheView): PodDirectory {
  return {
    pod: (namespace, name) => cache.pods.items.get(`${namespace}/${name}`),
    node: (name) => cache.node(name),
    pods: () => cache.pods.items.values(),
  };
}
