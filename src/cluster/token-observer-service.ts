// The token refresh observer at work next to the cluster caches (started by `serve` with
// `observer.enabled`): records the kubelets' TokenRequests the `observe` route hands it, and every
// `observer.reportSeconds` frees the pods that left the cache and reports the overdue ones: a gauge
// (no per-pod series), a Warning Event per newly overdue pod, a log line. Whether this replica
// observes at all is the leader election's decision (start/stop), or always without it.

import { Counter, Gauge } from 'prom-client';
import type { ObserverConfig } from '../config/schema.js';
import { errorMessage } from '../observability/errors.js';
import type { Logger } from '../observability/log.js';
import { registry } from '../observability/metrics.js';
import type { ApiAccess } from './access.js';
import type { ClusterCache } from './cache.js';
import type { ApiClient } from './client.js';
import type { EventSpec } from './events.js';
import { likelyCauses, podDirectory, TokenRefreshObserver, type LikelyCause, type Outcome, type OverduePod, type PodCacheView, type TokenRequestReview } from './token-observer.js';

let current: TokenRefreshObserver | undefined;

/** The Lease the replicas compete for, in tokenguard's namespace. */
export const OBSERVER_LEASE = 'tokenguard-observer';

export const overduePods = new Gauge({
  name: 'tokenguard_token_refresh_overdue_pods',
  help: 'Running pods whose projected token refresh is overdue, as this replica observes them (0 on a replica that does not observe).',
  registers: [registry],
});

export const observerActive = new Gauge({
  name: 'tokenguard_token_observer_active',
  help: '1 while this replica is the token refresh observer (holds the Lease, or observes without leader election), else 0.',
  registers: [registry],
  collect() {
    this.set(current?.stats().observing ? 1 : 0);
  },
});

export const trackedPods = new Gauge({
  name: 'tokenguard_token_observer_tracked_pods',
  help: 'Pods whose TokenRequests the observer holds in memory (bounded by the pods in the cache).',
  registers: [registry],
  collect() {
    this.set(current?.stats().pods ?? 0);
  },
});

export const tokenRequests = new Counter({
  name: 'tokenguard_token_requests_observed_total',
  help: 'TokenRequests the observe route received, by what the observer did: recorded, or why not (not-a-node, not-observing, ...).',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

/** What the report loop needs besides the observer: where Events go, and a claim's state. */
export interface ReportSinks {
  record?(event: EventSpec): Promise<unknown>;
  /** The pod's claims that are Terminating; rejects when unknown (the cause is then not named). */
  terminatingClaims?(namespace: string, claims: readonly string[]): Promise<string[]>;
}

/** One overdue pod, as a report says it: one line for an Event, a log, kubectl. */
export function describeOverdue(o: OverduePod, causes: readonly LikelyCause[]): string {
  const node = o.node ? ` on node ${o.node}${o.kubeletVersion ? ` (kubelet ${o.kubeletVersion})` : ''}` : '';
  const token =
    o.requestedSeconds === undefined
      ? 'no token refresh seen since this observer began'
      : `token ${o.audiences?.length ? `for ${o.audiences.join(',')}` : 'for the API server'} (${o.requestedSeconds} s) not refreshed since ${new Date(o.lastRefreshMs!).toISOString()}`;
  const cause = causes.length ? `; likely cause: ${causes.map((c) => c.text).join('; ')}` : '';
  return `pod ${o.namespace}/${o.name}${node}: ${token}, ${o.lateSeconds} s past due${cause}`;
}

export class TokenObserverService {
  readonly observer: TokenRefreshObserver;
  private timer?: NodeJS.Timeout;
  /** `uid` + token of each overdue pod already reported: one Event per overdue spell, not per tick. */
  private reported = new Set<string>();
  private lastOverdue: { pod: OverduePod; causes: LikelyCause[] }[] = [];

  constructor(
    private readonly cache: PodCacheView,
    private readonly config: ObserverConfig,
    private readonly logger: Logger,
    private readonly sinks: ReportSinks = {},
    now?: () => number,
  ) {
    this.observer = new TokenRefreshObserver({
      pods: podDirectory(cache),
      marginSeconds: config.marginSeconds,
      syncFrequencySeconds: config.kubeletSyncFrequencySeconds,
      now,
    });
    current = this.observer;
  }

  /** The `observe` route's recorder: synchronous, counted. */
  readonly record = (req: TokenRequestReview): Outcome => {
    const outcome = this.observer.record(req);
    tokenRequests.inc({ outcome });
    return outcome;
  };

  /** Begin observing (leadership acquired, or at start without leader election) and reporting. */
  start(): void {
    this.observer.start();
    this.reported.clear();
    this.lastOverdue = [];
    this.logger.info('token refresh observer: observing', { marginSeconds: this.config.marginSeconds, reportSeconds: this.config.reportSeconds });
    clearInterval(this.timer);
    this.timer = setInterval(() => void this.report(), this.config.reportSeconds * 1000);
    this.timer.unref();
  }

  /** Stop observing and forget (leadership lost, shutdown). */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    if (this.observer.stats().observing) this.logger.info('token refresh observer: stopped observing');
    this.observer.stop();
    this.lastOverdue = [];
    overduePods.set(0);
  }

  /** The overdue pods of the last report, with their likely causes. */
  overdue(): readonly { pod: OverduePod; causes: LikelyCause[] }[] {
    return this.lastOverdue;
  }

  /** One report: free pods gone from the cache, then count, announce and log the overdue ones. Never rejects. */
  async report(): Promise<void> {
    try {
      this.observer.sweep();
      const overdue = this.observer.overdue();
      overduePods.set(overdue.length);
      const still = new Set<string>();
      const out: { pod: OverduePod; causes: LikelyCause[] }[] = [];
      for (const o of overdue) {
        const key = `${o.uid}\0${o.audiences?.join(',') ?? ''}\0${o.requestedSeconds ?? ''}`;
        still.add(key);
        const previous = this.lastOverdue.find((p) => p.pod.uid === o.uid);
        const causes = previous && this.reported.has(key) ? previous.causes : likelyCauses(o, await this.terminatingClaims(o));
        out.push({ pod: o, causes });
        if (this.reported.has(key)) continue;
        this.reported.add(key);
        const message = describeOverdue(o, causes);
        this.logger.warn('token refresh overdue', { namespace: o.namespace, pod: o.name, node: o.node, lateSeconds: o.lateSeconds, message });
        void this.sinks.record?.({ type: 'Warning', reason: 'TokenRefreshOverdue', message, related: { kind: 'Pod', namespace: o.namespace, name: o.name, uid: o.uid } });
      }
      for (const key of this.reported) if (!still.has(key)) this.reported.delete(key);
      this.lastOverdue = out;
    } catch (err) {
      this.logger.error('token refresh report failed', { error: errorMessage(err) });
    }
  }

  private async terminatingClaims(o: OverduePod): Promise<string[]> {
    const claims = this.claimsOf(o);
    if (!claims.length || !this.sinks.terminatingClaims) return [];
    try {
      return await this.sinks.terminatingClaims(o.namespace, claims);
    } catch (err) {
      this.logger.debug('could not read the claims of an overdue pod', { namespace: o.namespace, pod: o.name, error: errorMessage(err) });
      return [];
    }
  }

  private claimsOf(o: OverduePod): readonly string[] {
    return this.cache.pods.items.get(`${o.namespace}/${o.name}`)?.claims ?? [];
  }
}

/** A ReportSinks.terminatingClaims that reads each claim (a GET per claim, for newly overdue pods only). */
export function terminatingClaimsVia(client: Pick<ApiClient, 'getJson'>, timeoutMs: number) {
  return async (namespace: string, claims: readonly string[]): Promise<string[]> => {
    const out: string[] = [];
    for (const claim of claims) {
      const pvc = await client.getJson<{ metadata?: { deletionTimestamp?: string } }>(`/api/v1/namespaces/${encodeURIComponent(namespace)}/persistentvolumeclaims/${encodeURIComponent(claim)}`, { timeoutMs });
      if (pvc?.metadata?.deletionTimestamp) out.push(claim);
    }
    return out;
  };
}

/**
 * The API calls the observer makes beyond the base's (manifests/components/token-observer/rbac.yaml
 * grants exactly these; test/manifests checks it). `namespace: 'own'`: tokenguard's namespace only.
 */
export const OBSERVER_API_ACCESS: readonly (Omit<ApiAccess, 'verbs'> & { verbs: readonly string[]; namespace?: 'own'; resourceName?: string })[] = [
  { group: 'coordination.k8s.io', resource: 'leases', verbs: ['get', 'update'], namespace: 'own', resourceName: OBSERVER_LEASE, why: 'leader election' },
  { group: 'coordination.k8s.io', resource: 'leases', verbs: ['create'], namespace: 'own', why: 'leader election: the Lease, once (create cannot be limited to a name)' },
  { group: '', resource: 'pods', verbs: ['patch'], namespace: 'own', why: 'the observer label on its own pod' },
  { group: '', resource: 'persistentvolumeclaims', verbs: ['get'], why: 'a Terminating claim as the likely cause of an overdue refresh' },
];

/** The label the observer puts on its own pod; the token observer's Service selects it. */
export const OBSERVER_LABEL = 'tokenguard.io/observer';

export interface RunningObserver {
  service: TokenObserverService;
  record: (req: TokenRequestReview) => Outcome;
  stop: () => Promise<void>;
}

/**
 * The observer as `serve` runs it. With `observer.leaderElection` (the default) this replica
 * observes only while it holds the Lease, and labels its own pod `tokenguard.io/observer=true`
 * meanwhile (the label goes when it steps down; a deleted pod takes it along). Without it, it
 * observes from the start: one replica only.
 */
export async function startTokenObserver(cache: ClusterCache, config: ObserverConfig, logger: Logger, env: NodeJS.ProcessEnv = process.env): Promise<RunningObserver> {
  const { EventRecorder } = await import('./events.js');
  const { LeaderElector } = await import('./leader-election.js');
  const kc = cache.client.kc;
  const events = new EventRecorder({ kc, logger });
  const service = new TokenObserverService(cache, config, logger, {
    record: (e) => events.record(e),
    terminatingClaims: terminatingClaimsVia(cache.client, 5000),
  });
  if (!config.leaderElection) {
    service.start();
    return { service, record: service.record, stop: () => Promise.resolve(service.stop()) };
  }
  const namespace = env.POD_NAMESPACE || 'tokenguard';
  const podName = env.POD_NAME;
  if (!podName) throw new Error('observer.leaderElection needs the pod name in POD_NAME (the manifests set it); or set observer.leaderElection: false for one replica');
  const podPath = `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(podName)}`;
  const label = async (value: 'true' | null) => {
    try {
      await cache.client.writeJson('PATCH', podPath, { metadata: { labels: { [OBSERVER_LABEL]: value } } }, { timeoutMs: 5000 });
    } catch (err) {
      logger.warn('token refresh observer: could not label its own pod', { pod: `${namespace}/${podName}`, label: OBSERVER_LABEL, error: errorMessage(err) });
    }
  };
  const elector = new LeaderElector({
    client: cache.client,
    namespace,
    name: OBSERVER_LEASE,
    identity: podName,
    logger,
    onStartedLeading: () => {
      service.start();
      void label('true');
    },
    onStoppedLeading: () => {
      service.stop();
      void label(null);
    },
  });
  // A replica that restarted while labelled must not keep attracting the token webhook's calls.
  await label(null);
  elector.start();
  return {
    service,
    record: service.record,
    stop: async () => {
      const wasLeader = elector.isLeader;
      await elector.stop();
      service.stop();
      if (wasLeader) await label(null);
    },
  };
}
