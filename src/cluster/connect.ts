// Attaching the cluster layer to a server: find credentials, start the caches, and report
// readiness. With no cluster configured the server still runs; cluster-backed checks then warn
// that they could not run, and /readyz says so. The cluster modules (and @kubernetes/client-node
// with them, about 75 MiB) are loaded only once credentials are found.

import type { TokenguardConfig } from '../config/schema.js';
import type { Logger } from '../observability/log.js';
import type { ReadinessCheck } from '../observability/readiness.js';
import type { ClusterCache, ClusterCacheOptions } from './cache.js';
import { locateKubeConfig, type KubeConfigLookup } from './kubeconfig-location.js';

export interface ClusterConnection {
  /** The caches, when a cluster is configured. */
  cache?: ClusterCache;
  /** For /readyz: unready until the first sync; says why (not synced, stale, no cluster). */
  readiness: ReadinessCheck;
  stop(): void;
}

export async function connectCluster(
  config: TokenguardConfig,
  logger: Logger,
  lookup: Omit<KubeConfigLookup, 'kubeconfig'> = {},
  tuning: Partial<ClusterCacheOptions> = {},
): Promise<ClusterConnection> {
  const disabled = (reason: string): ClusterConnection => {
    logger.warn('running without a cluster: the PVC guard and other cluster-backed checks warn that they could not run', { reason });
    return { readiness: () => ({ ok: true, reason }), stop: () => {} };
  };
  if (config.cluster.enabled === false) return disabled('cluster access disabled (cluster.enabled: false or --no-cluster)');

  const location = locateKubeConfig({ ...lookup, kubeconfig: config.cluster.kubeconfig });
  if (!location) {
    if (config.cluster.enabled === true) {
      throw new Error('cluster.enabled is true but no kubeconfig (--kubeconfig, KUBECONFIG, ~/.kube/config) or in-cluster service account was found');
    }
    return disabled('no cluster configured: no --kubeconfig, KUBECONFIG, in-cluster service account or ~/.kube/config');
  }
  const [{ ClusterCache }, { loadKubeConfig }] = await Promise.all([import('./cache.js'), import('./kubeconfig.js')]);
  // A kubeconfig that was named but cannot be loaded throws: guarding no cluster silently is worse.
  const found = loadKubeConfig(location);

  const cache = new ClusterCache({
    kc: found.kc,
    staleAfterSeconds: config.cluster.staleAfterSeconds,
    logger,
    source: found.source,
    ...tuning,
  });
  cache.start();
  logger.info('cluster caches starting', { server: found.server, source: found.source });
  return {
    cache,
    readiness: () => {
      const s = cache.status();
      // Stale stays ready: the guard falls back to live lookups, and taking every replica out of
      // the Service during an API outage would turn a degraded guard into a blocked cluster.
      return { ok: s.synced, reason: s.reason };
    },
    stop: () => cache.stop(),
  };
}
