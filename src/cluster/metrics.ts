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
