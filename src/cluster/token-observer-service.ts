// The token refresh observer at work next to the cluster caches (started by `serve` with
// `observer.enabled`): records the kubelets' TokenRequests the `observe` route hands it, and every
// `observer.reportSeconds` frees the pods that left the cache and reports the overdue ones: a gauge
// (no per-pod series), a Warning Event on each newly overdue pod, a log line, and the state
// `GET /observer` answers with (token-observer-state.ts). Whether this replica observes at all is the
// leader election's decision (start/stop), or always without it.

import { hostname } from 'node:os';
import { Counter, Gauge } from 'prom-client';
import type { ObserverConfig } from '../config/schema.js';
import { errorMessage } from '../observability/errors.js';
import type { Logger } from '../observability/log.js';
import { registry } from '../observability/metrics.js';
import type { ApiAccess } from './access.js';
import type { ClusterCache } from './cache.js';
import type { ApiClient } from './client.js';
import type { ObjectEventSpec } from './events.js';
import { likelyCauses, podDirectory, TokenRefreshObserver, type LikelyCause, type Outcome, type OverduePod, type PodCacheView, type TokenRequestReview } from './token-observer.js';
import type { ObservedOverduePod, ObserverState } from './token-observer-state.js';

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
  /** Queue an Event on the object it is about (EventRecorder.emit: aggregated, rate-limited per object, never blocks). */
  event?(event: ObjectEventSpec): void;
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
  private lastOverdue: ReportedOverdue[] = [];
  /** When this replica began observing, and when its last report ran (ms epoch). */
  private startedMs?: number;
  private reportedMs?: number;
  private readonly now: () => number;

  constructor(
    private readonly cache: PodCacheView,
    private readonly config: ObserverConfig,
    private readonly logger: Logger,
    private readonly sinks: ReportSinks = {},
    now?: () => number,
  ) {
    this.now = now ?? Date.now;
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
    this.startedMs = this.now();
    this.reportedMs = undefined;
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
    this.startedMs = this.reportedMs = undefined;
    overduePods.set(0);
  }

  /** The overdue pods of the last report, with their likely causes and the line that describes each. */
  overdue(): readonly ReportedOverdue[] {
    return this.lastOverdue;
  }

  /**
   * What `GET /observer` answers: the last report as it stands, from memory (no I/O, no new
   * judgement: cheap enough for any caller). `replica` names the answering pod; `notObserving`
   * says why it does not observe, when it does not.
   */
  state(replica: string, notObserving = 'this replica is not the observer'): ObserverState {
    const stats = this.observer.stats();
    const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());
    return {
      replica,
      observing: stats.observing,
      ...(stats.observing ? {} : { reason: notObserving }),
      since: iso(this.startedMs),
      observingSince: iso(stats.observingSince),
      reportedAt: iso(this.reportedMs),
      reportSeconds: this.config.reportSeconds,
      marginSeconds: this.config.marginSeconds,
      trackedPods: stats.pods,
      trackedTokens: stats.tokens,
      overdue: this.lastOverdue.map(observedOverdue),
    };
  }

  /** One report: free pods gone from the cache, then count, announce and log the overdue ones. Never rejects. */
  async report(): Promise<void> {
    try {
      this.observer.sweep();
      const overdue = this.observer.overdue();
      overduePods.set(overdue.length);
      const still = new Set<string>();
      const out: ReportedOverdue[] = [];
      for (const o of overdue) {
        const key = `${o.uid}\0${o.audiences?.join(',') ?? ''}\0${o.requestedSeconds ?? ''}`;
        still.add(key);
        const previous = this.lastOverdue.find((p) => p.pod.uid === o.uid);
        const causes = previous && this.reported.has(key) ? previous.causes : likelyCauses(o, await this.terminatingClaims(o));
        const message = describeOverdue(o, causes);
        out.push({ pod: o, causes, message });
        if (this.reported.has(key)) continue;
        this.reported.add(key);
        this.logger.warn('token refresh overdue', { namespace: o.namespace, pod: o.name, node: o.node, lateSeconds: o.lateSeconds, message });
        // On the pod itself: `kubectl describe pod` and `kubectl get events -n <ns>` show it where its owners look.
        this.sinks.event?.({ type: 'Warning', reason: 'TokenRefreshOverdue', message, regarding: { kind: 'Pod', namespace: o.namespace, name: o.name, uid: o.uid } });
      }
      for (const key of this.reported) if (!still.has(key)) this.reported.delete(key);
      this.lastOverdue = out;
      this.reportedMs = this.now();
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

/** One overdue token of the last report: the pod, its likely causes, and the line the Event and the log carry. */
export interface ReportedOverdue {
  pod: OverduePod;
  causes: LikelyCause[];
  message: string;
}

/** A reported overdue pod as `GET /observer` says it. */
function observedOverdue({ pod: o, causes, message }: ReportedOverdue): ObservedOverduePod {
  return {
    namespace: o.namespace,
    pod: o.name,
    uid: o.uid,
    node: o.node,
    kubeletVersion: o.kubeletVersion ?? null,
    audiences: o.audiences ?? null,
    requestedSeconds: o.requestedSeconds ?? null,
    lastRefresh: o.lastRefreshMs === undefined ? null : new Date(o.lastRefreshMs).toISOString(),
    due: new Date(o.dueMs).toISOString(),
    lateSeconds: o.lateSeconds,
    likelyCauses: causes.map((c) => ({ code: c.code, text: c.text, ...(c.issue ? { issue: c.issue } : {}) })),
    message,
  };
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

/**
 * Set on the observer's pod beside its label: a scale-down (`kubectl scale`, an autoscaler) removes
 * another replica first, so the observer keeps what it has seen (a new one starts empty).
 */
export const OBSERVER_DELETION_COST = { annotation: 'controller.kubernetes.io/pod-deletion-cost', value: '1000' } as const;

export interface RunningObserver {
  service: TokenObserverService;
  record: (req: TokenRequestReview) => Outcome;
  /** What `GET /observer` answers on this replica. */
  state: () => ObserverState;
  stop: () => Promise<void>;
}

/**
 * The observer as `serve` runs it. With `observer.leaderElection` (the default) this replica
 * observes only while it holds the Lease, and labels its own pod `tokenguard.io/observer=true`
 * meanwhile, with a pod deletion cost (both go when it steps down; a deleted pod takes them along). Without it, it
 * observes from the start: one replica only.
 */
export async function startTokenObserver(cache: ClusterCache, config: ObserverConfig, logger: Logger, env: NodeJS.ProcessEnv = process.env): Promise<RunningObserver> {
  const { EventRecorder } = await import('./events.js');
  const { LeaderElector } = await import('./leader-election.js');
  const kc = cache.client.kc;
  const events = new EventRecorder({ kc, logger });
  const service = new TokenObserverService(cache, config, logger, {
    event: (e) => events.emit(e),
    terminatingClaims: terminatingClaimsVia(cache.client, 5000),
  });
  const replica = env.POD_NAME || hostname();
  if (!config.leaderElection) {
    service.start();
    return { service, record: service.record, state: () => service.state(replica), stop: () => Promise.resolve(service.stop()) };
  }
  const namespace = env.POD_NAMESPACE || 'tokenguard';
  const podName = env.POD_NAME;
  if (!podName) throw new Error('observer.leaderElection needs the pod name in POD_NAME (the manifests set it); or set observer.leaderElection: false for one replica');
  const podPath = `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(podName)}`;
  const label = async (observing: boolean) => {
    const metadata = {
      labels: { [OBSERVER_LABEL]: observing ? 'true' : null },
      annotations: { [OBSERVER_DELETION_COST.annotation]: observing ? OBSERVER_DELETION_COST.value : null },
    };
    try {
      await cache.client.writeJson('PATCH', podPath, { metadata }, { timeoutMs: 5000 });
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
      void label(true);
    },
    onStoppedLeading: () => {
      service.stop();
      void label(false);
    },
  });
  // A replica that restarted while labelled must not keep attracting the token webhook's calls.
  await label(false);
  elector.start();
  return {
    service,
    record: service.record,
    state: () =>
      service.state(
        replica,
        elector.holder && elector.holder !== podName
          ? `not the observer: ${elector.holder} holds the Lease ${OBSERVER_LEASE}`
          : `not the observer: it does not hold the Lease ${OBSERVER_LEASE} (nobody does yet, or it is being handed over)`,
      ),
    stop: async () => {
      const wasLeader = elector.isLeader;
      await elector.stop();
      service.stop();
      if (wasLeader) await label(false);
    },
  };
}
