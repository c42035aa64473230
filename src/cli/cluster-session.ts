// A short-lived connection to a cluster for one-shot commands (`check --kubeconfig`, `audit`):
// the same caches and issuer discovery the server runs, started, waited on until synced (bounded),
// and stopped.

import { ClusterCache } from '../cluster/cache.js';
import { IssuerMonitor } from '../cluster/issuers.js';
import { findKubeConfig, type KubeConfigSource } from '../cluster/kubeconfig.js';
import type { TokenguardConfig } from '../config/schema.js';
import { silentLogger } from '../observability/log.js';
import type { KubeObject } from '../k8s/object.js';

export interface ClusterSession {
  source: KubeConfigSource;
  /** Synced caches, with `issuers` set: the policies see the cluster as the server's do. */
  cache: ClusterCache;
  /** Discovery read once (its `error` says why when the served issuer is unknown). */
  issuers: IssuerMonitor;
  /** With `keepPods`: the whole pods of the caches' first LIST, for judging them without a second one. */
  pods?: KubeObject[];
  stop(): void;
}

/**
 * Connect with `kubeconfig` (or, when undefined, the usual lookup: KUBECONFIG, in-cluster,
 * ~/.kube/config) and wait for the first LIST of every cache. Throws, naming the reason, when no
 * cluster is found or the caches do not sync within `syncTimeoutSeconds`.
 */
export async function openClusterSession(
  kubeconfig: string | undefined,
  config: TokenguardConfig,
  syncTimeoutSeconds: number,
  opts: { keepPods?: boolean } = {},
): Promise<ClusterSession> {
  const source = findKubeConfig({ kubeconfig });
  if (!source) throw new Error('no cluster found: pass --kubeconfig (or set KUBECONFIG)');
  let pods: KubeObject[] | undefined;
  const cache = new ClusterCache({
    kc: source.kc,
    staleAfterSeconds: config.cluster.staleAfterSeconds,
    source: source.source,
    onPodList: opts.keepPods ? (listed) => (pods ??= listed) : undefined,
  });
  cache.start();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(true), syncTimeoutSeconds * 1000);
  });
  const gaveUp = await Promise.race([cache.whenSynced().then(() => false), timedOut]);
  clearTimeout(timer);
  if (gaveUp) {
    const reason = cache.status().reason ?? 'not synced';
    cache.stop();
    throw new Error(`${source.server} (${source.source}): ${reason}; gave up after ${syncTimeoutSeconds} s`);
  }
  // One read of the served issuer, so the issuer policy judges as it does in the server.
  const issuers = new IssuerMonitor({ client: cache.client, logger: silentLogger, refreshSeconds: config.cluster.issuerRefreshSeconds });
  await issuers.refresh();
  cache.issuers = issuers;
  return { source, cache, issuers, pods, stop: () => cache.stop() };
}
