// Metrics of the cluster caches, read from the live caches at scrape time.

import { Counter, Gauge } from 'prom-client';
import type { Logger } from '../observability/log.js';
import { registry } from '../observability/metrics.js';
import type { Reflector, ReflectorEvent } from './reflector.js';

const live = new Set<Reflector<unknown>>();

/** Caches report their gauges while registered (from start to stop). */
export function trackReflector(r: Reflector<unknown>): () => void {
  live.add(r);
  return () => live.delete(r);
}

/** A gauge per resource, read from every live cache at scrape time. */
function perResource(name: string, help: string, value: (r: Reflector<unknown>, now: number) => number): Gauge<'resource'> {
  return new Gauge({
    name,
    help,
    labelNames: ['resource'] as const,
    registers: [registry],
    collect() {
      this.reset();
      const now = Date.now();
      for (const r of live) this.set({ resource: r.resource }, value(r, now));
    },
  });
}

export const cacheObjects = perResource('tokenguard_cache_objects', 'Objects held in the cluster cache, by resource.', (r) => r.items.size);

export const cacheSynced = perResource('tokenguard_cache_synced', '1 once the cache of this resource completed its first LIST, else 0.', (r) => (r.synced ? 1 : 0));

export const cacheStaleSeconds = perResource(
  'tokenguard_cache_stale_seconds',
  'Seconds since the watch of this resource went down (0 while it is open); past cluster.staleAfterSeconds the cache is not trusted.',
  (r, now) => (r.downSince === undefined ? 0 : (now - r.downSince) / 1000),
);

/** What the cluster cache knows of claims and token refresh at risk (ClusterCache.claimRisk). */
export interface ClaimRisk {
  claimsTerminatingInUse: number;
  /** Running pods with a claim and a projected token on a kubelet with kubernetes#130442. */
  podsAtRisk: { terminating: number; bound: number };
}

const riskSources = new Set<() => ClaimRisk>();

/** A cache reports the claim gauges while registered (from start to stop). */
export function trackClaimRisk(source: () => ClaimRisk): () => void {
  riskSources.add(source);
  return () => riskSources.delete(source);
}

/** The first live cache's view (a process has one). */
function claimRisk(): ClaimRisk | undefined {
  for (const source of riskSources) return source();
  return undefined;
}

export const claimsTerminatingInUse = new Gauge({
  name: 'tokenguard_claims_terminating_in_use',
  help: 'PersistentVolumeClaims whose deletion this replica admitted and that scheduled pods still use (Terminating behind kubernetes.io/pvc-protection).',
  registers: [registry],
  collect() {
    this.set(claimRisk()?.claimsTerminatingInUse ?? 0);
  },
});

export const podsTokenRefreshAtRisk = new Gauge({
  name: 'tokenguard_pods_token_refresh_at_risk',
  help:
    'Running pods with a claim and a projected service-account token on a kubelet with kubernetes#130442, by claim: ' +
    'terminating (one of their claims is being deleted: the token has stopped refreshing) or bound (it would stop if one were).',
  labelNames: ['claim'] as const,
  registers: [registry],
  collect() {
    const risk = claimRisk();
    this.set({ claim: 'terminating' }, risk?.podsAtRisk.terminating ?? 0);
    this.set({ claim: 'bound' }, risk?.podsAtRisk.bound ?? 0);
  },
});

export const eventsRecorded = new Counter({
  name: 'tokenguard_events_total',
  help: 'Writes of admission Events (a denial, a break-glass deletion) by outcome: written (created or count patched), failed, dropped (queue full).',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

export const watchRestarts = new Counter({
  name: 'tokenguard_watch_restarts_total',
  help: 'Watch restarts by resource and reason: closed (routine server timeout), error (dropped, refused), expired (410: relisted).',
  labelNames: ['resource', 'reason'] as const,
  registers: [registry],
});

export const liveLookups = new Counter({
  name: 'tokenguard_cluster_live_lookups_total',
  help: 'Live LISTs made because the cache could not answer (not synced or stale), by outcome (ok, failed).',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

/** A cache's reflector event, logged (a sync, a failed LIST, a watch that ended) and counted. */
export function observeReflectorEvent(e: ReflectorEvent, log: Logger | undefined, source?: string): void {
  switch (e.kind) {
    case 'synced':
      log?.info('cluster cache synced', { resource: e.resource, objects: e.objects, ms: e.ms, source });
      return;
    case 'list-failed':
      log?.warn('cluster LIST failed; retrying', { resource: e.resource, error: e.error, retryInMs: e.retryInMs });
      return;
    case 'watch-restart':
      watchRestarts.inc({ resource: e.resource, reason: e.reason });
      if (e.reason === 'closed') log?.debug('watch closed by the server; reconnecting', { resource: e.resource });
      else log?.warn('watch ended; reconnecting', { resource: e.resource, reason: e.reason, error: e.error, retryInMs: e.retryInMs });
      return;
  }
}
