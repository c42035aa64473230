// The cluster layer behind `ClusterView`: list+watch caches of Pods (all namespaces), Nodes and
// Namespaces holding compact projections, an index (namespace, claim) -> pods, and a live LIST
// for when the cache cannot be trusted (not synced yet, or its watch down for too long).

import type { Logger } from '../observability/log.js';
import { ApiClient } from './client.js';
import { kubeletAffectedBy130442 } from '../k8s/kubelet.js';
import { liveLookups, observeReflectorEvent, trackClaimRisk, trackReflector, type ClaimRisk } from './metrics.js';
import { Interner, projectNamespace, projectNode, projectPod, type CachedPod } from './projection.js';
import { Reflector, type ReflectorEvent, type ReflectorOptions } from './reflector.js';
import type { ApiserverPod, CacheStatus, ClusterView, IssuerView, NodeSummary, PodSummary } from './view.js';
import type { KubeConfig } from '@kubernetes/client-node';
import type { KubeObject } from '../k8s/object.js';

export interface ClusterCacheOptions {
  kc: KubeConfig;
  /** A watch down for longer than this makes the cache stale (config `cluster.staleAfterSeconds`). */
  staleAfterSeconds: number;
  logger?: Logger;
  /** Where the credentials came from, for /readyz and logs. */
  source?: string;
  /** Given the whole pods of each complete LIST (see ReflectorOptions.listed); for `audit`. */
  onPodList?: (pods: KubeObject[]) => void;
  /** Tuning, mostly for tests: backoff bounds (the cap never exceeds 30 s), page size, watch timeout. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  pageSize?: number;
  watchTimeoutSeconds?: number;
  now?: () => number;
}

type Labels = Record<string, string>;

/** Admitted claim deletions remembered for the gauges (each forgotten once no scheduled pod uses the claim). */
const MAX_DELETED_CLAIMS = 10_000;

/** A pod that keeps a claim from going (as the pvc-protection controller counts): scheduled, not finished. */
const scheduledAndRunning = (p: PodSummary) => !!p.nodeName && p.phase !== 'Succeeded' && p.phase !== 'Failed';

export class ClusterCache implements ClusterView {
  readonly client: ApiClient;
  readonly pods: Reflector<CachedPod>;
  readonly nodes: Reflector<NodeSummary>;
  readonly namespaces: Reflector<Labels>;
  /** Set by the issuer discovery, when enabled. */
  issuers?: IssuerView;

  /** namespace -> claim -> pods using it (only pods that use a claim are indexed). */
  private readonly claimIndex = new Map<string, Map<string, CachedPod[]>>();
  /** Keys of cached kube-apiserver mirror pods. */
  private readonly apiserverKeys = new Set<string>();
  private readonly interner = new Interner();
  private readonly now: () => number;
  private readonly untrack: (() => void)[] = [];
  /** `namespace/claim` of deletions admitted while pods used the claim (see claimDeleted). */
  private readonly deletedClaims = new Set<string>();

  constructor(private readonly opts: ClusterCacheOptions) {
    this.client = new ApiClient(opts.kc);
    this.now = opts.now ?? Date.now;
    const common = {
      client: this.client,
      initialBackoffMs: opts.initialBackoffMs,
      maxBackoffMs: opts.maxBackoffMs,
      pageSize: opts.pageSize,
      watchTimeoutSeconds: opts.watchTimeoutSeconds,
      now: this.now,
      onEvent: (e: ReflectorEvent) => this.onReflectorEvent(e),
    } satisfies Partial<ReflectorOptions<unknown>>;
    this.pods = new Reflector<CachedPod>({
      ...common,
      resource: 'pods',
      path: '/api/v1/pods',
      project: (o) => projectPod(o, this.interner),
      listed: opts.onPodList,
      listener: {
        replaced: (items) => this.reindex(items),
        upserted: (key, pod, previous) => {
          if (previous) this.unindex(key, previous);
          this.index(key, pod);
        },
        deleted: (key, previous) => this.unindex(key, previous),
      },
    });
    this.nodes = new Reflector<NodeSummary>({ ...common, resource: 'nodes', path: '/api/v1/nodes', project: (o) => projectNode(o, this.interner) });
    this.namespaces = new Reflector<Labels>({ ...common, resource: 'namespaces', path: '/api/v1/namespaces', project: projectNamespace });
  }

  private get reflectors(): Reflector<unknown>[] {
    return [this.pods, this.nodes, this.namespaces] as Reflector<unknown>[];
  }

  start(): void {
    for (const r of this.reflectors) {
      this.untrack.push(trackReflector(r));
      r.start();
    }
    this.untrack.push(trackClaimRisk(() => this.claimRisk()));
  }

  /**
   * A deletion of claim `namespace/claim` was admitted (not a dry run): it is Terminating for as
   * long as scheduled pods use it. Only deletions this process admitted are known (the cache does
   * not watch claims): `tokenguard audit` lists them all.
   */
  claimDeleted(namespace: string, claim: string): void {
    if (!this.podsUsingClaim(namespace, claim).some(scheduledAndRunning)) return;
    if (this.deletedClaims.size >= MAX_DELETED_CLAIMS) this.deletedClaims.delete(this.deletedClaims.values().next().value!);
    this.deletedClaims.add(`${namespace}/${claim}`);
  }

  /**
   * What the gauges report, from the caches at scrape time (O(pods)): claims Terminating while
   * scheduled pods use them, and running pods with a claim and a projected token on kubelets with
   * kubernetes#130442, split by whether their refresh has stopped (a claim Terminating) or would
   * stop if a claim were deleted.
   */
  claimRisk(): ClaimRisk {
    let claimsTerminatingInUse = 0;
    for (const key of this.deletedClaims) {
      const slash = key.indexOf('/');
      if (this.podsUsingClaim(key.slice(0, slash), key.slice(slash + 1)).some(scheduledAndRunning)) claimsTerminatingInUse++;
      else this.deletedClaims.delete(key); // gone: nothing holds it any more
    }
    const risk: ClaimRisk = { claimsTerminatingInUse, podsAtRisk: { terminating: 0, bound: 0 } };
    for (const p of this.pods.items.values()) {
      if (!p.hasProjectedToken || p.claims.length === 0 || !scheduledAndRunning(p)) continue;
      if (kubeletAffectedBy130442(this.node(p.nodeName)?.kubeletVersion) !== true) continue;
      const terminating = p.claims.some((c) => this.deletedClaims.has(`${p.namespace}/${c}`));
      risk.podsAtRisk[terminating ? 'terminating' : 'bound']++;
    }
    return risk;
  }

  stop(): void {
    for (const r of this.reflectors) r.stop();
    for (const u of this.untrack.splice(0)) u();
    this.client.close();
  }

  /** Resolves when every cache completed its first LIST (never rejects; races it with a timeout if needed). */
  async whenSynced(): Promise<void> {
    await Promise.all(this.reflectors.map((r) => r.whenSynced()));
  }

  status(): CacheStatus {
    const pending = this.reflectors.filter((r) => !r.synced);
    if (pending.length) {
      const errors = pending.map((r) => r.lastError).filter(Boolean);
      return {
        synced: false,
        stale: false,
        reason:
          `cluster cache not synced yet: waiting for the first LIST of ${pending.map((r) => r.resource).join(', ')}` +
          (errors.length ? ` (last error: ${errors[0]})` : ''),
      };
    }
    const now = this.now();
    const boundMs = this.opts.staleAfterSeconds * 1000;
    const stale = this.reflectors.filter((r) => r.downSince !== undefined && now - r.downSince > boundMs);
    if (stale.length) {
      const r = stale[0]!;
      const down = Math.round((now - r.downSince!) / 1000);
      return {
        synced: true,
        stale: true,
        reason:
          `cluster cache stale: the ${stale.map((s) => s.resource).join(', ')} watch has been down for ${down} s ` +
          `(more than ${this.opts.staleAfterSeconds} s)${r.lastError ? `; last error: ${r.lastError}` : ''}`,
      };
    }
    return { synced: true, stale: false };
  }

  podsUsingClaim(namespace: string, claim: string): PodSummary[] {
    return this.claimIndex.get(namespace)?.get(claim)?.slice() ?? [];
  }

  async listPodsUsingClaimLive(namespace: string, claim: string, timeoutMs: number): Promise<PodSummary[]> {
    const deadline = this.now() + timeoutMs;
    const found: PodSummary[] = [];
    let cont = '';
    try {
      do {
        const left = deadline - this.now();
        if (left <= 0) throw new Error(`live LIST of pods in ${namespace} took longer than ${timeoutMs} ms`);
        const q = new URLSearchParams({ limit: '500' });
        if (cont) q.set('continue', cont);
        const page = await this.client.getJson(`/api/v1/namespaces/${encodeURIComponent(namespace)}/pods?${q.toString()}`, { timeoutMs: left });
        for (const obj of Array.isArray(page.items) ? page.items : []) {
          const pod = projectPod(obj, this.interner);
          if (pod?.claims.includes(claim)) found.push(pod);
        }
        cont = page.metadata?.continue ?? '';
      } while (cont);
    } catch (err) {
      liveLookups.inc({ outcome: 'failed' });
      throw err;
    }
    liveLookups.inc({ outcome: 'ok' });
    return found;
  }

  namespaceLabels(name: string): Record<string, string> | undefined {
    return this.namespaces.items.get(name);
  }

  node(name: string): NodeSummary | undefined {
    return this.nodes.items.get(name);
  }

  apiserverPods(): ApiserverPod[] {
    const out: ApiserverPod[] = [];
    for (const key of this.apiserverKeys) {
      const p = this.pods.items.get(key);
      if (p?.apiserverArgv) out.push({ namespace: p.namespace, name: p.name, nodeName: p.nodeName, argv: p.apiserverArgv.slice() });
    }
    return out;
  }

  /** Approximate count of interned strings and owners (for the benchmark's memory accounting). */
  get internedCount(): number {
    return this.interner.size;
  }

  private reindex(items: ReadonlyMap<string, CachedPod>): void {
    this.claimIndex.clear();
    this.apiserverKeys.clear();
    for (const [key, pod] of items) this.index(key, pod);
  }

  private index(key: string, pod: CachedPod): void {
    if (pod.apiserverArgv) this.apiserverKeys.add(key);
    if (!pod.claims.length) return;
    let byClaim = this.claimIndex.get(pod.namespace);
    if (!byClaim) this.claimIndex.set(pod.namespace, (byClaim = new Map()));
    for (const claim of pod.claims) {
      const list = byClaim.get(claim);
      if (list) list.push(pod);
      else byClaim.set(claim, [pod]);
    }
  }

  private unindex(key: string, pod: CachedPod): void {
    this.apiserverKeys.delete(key);
    const byClaim = this.claimIndex.get(pod.namespace);
    if (!byClaim) return;
    for (const claim of pod.claims) {
      const list = byClaim.get(claim);
      if (!list) continue;
      const rest = list.filter((p) => p !== pod);
      if (rest.length) byClaim.set(claim, rest);
      else byClaim.delete(claim);
    }
    if (!byClaim.size) this.claimIndex.delete(pod.namespace);
  }

  private onReflectorEvent(e: ReflectorEvent): void {
    observeReflectorEvent(e, this.opts.logger, this.opts.source);
  }
}
