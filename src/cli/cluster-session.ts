// A short-lived connection to a cluster for one-shot commands (`check --kubeconfig`, `audit`):
// the same caches and issuer discovery the server runs, started, waited on until synced (bounded),
// and stopped.

import { ClusterCache } from '../cluster/cache.js';
import { IssuerMonitor } from '../cluster/issuers.js';
import { ApiClient, ApiError } from '../cluster/client.js';
import { findKubeConfig, type KubeConfigSource } from '../cluster/kubeconfig.js';
import { serverCertificateProblem } from '../cluster/server-certificate.js';
import { errorCode, errorMessage } from '../observability/errors.js';
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
  opts: { keepPods?: boolean; connectTimeoutSeconds?: number } = {},
): Promise<ClusterSession> {
  const source = findKubeConfig({ kubeconfig });
  if (!source) throw new Error('no cluster found: pass --kubeconfig (or set KUBECONFIG)');
  // One quick request first: an API server that refuses or never answers is named within the
  // connect timeout, not after the caches gave up syncing.
  await probe(source, opts.connectTimeoutSeconds ?? 10);
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

/** Why a connection failed, in words: the system error codes people meet. */
function connectionProblem(err: unknown): string {
  const code = errorCode(err) ?? errorCode((err as { cause?: unknown } | undefined)?.cause);
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused (is the API server running, and is this its address?)';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'host not found (check the server address in the kubeconfig)';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'host unreachable';
    case 'ECONNRESET':
      return 'connection reset';
    default:
      return errorMessage(err).replace(/^GET \/version: /, '');
  }
}

/** GET /version within `timeoutSeconds`; throws naming the API server and why it cannot be used. */
export async function probe(source: KubeConfigSource, timeoutSeconds: number): Promise<void> {
  const client = new ApiClient(source.kc);
  try {
    await client.getJson('/version', { timeoutMs: timeoutSeconds * 1000 });
  } catch (err) {
    if (err instanceof ApiError && err.statusCode !== 401 && err.statusCode !== 403) return; // it answered
    const certificate = serverCertificateProblem(err);
    if (certificate) throw new Error(`the API server ${source.server} (${source.source}) was reached, but its certificate did not verify: ${certificate}`, { cause: err });
    const why =
      err instanceof ApiError
        ? `it refused these credentials (${err.statusCode}${err.statusCode === 401 ? ' Unauthorized' : ' Forbidden'})`
        : /no answer within/.test(errorMessage(err))
          ? `no answer within ${timeoutSeconds} s (raise it with --timeout)`
          : connectionProblem(err);
    throw new Error(`cannot reach the API server ${source.server} (${source.source}): ${why}`, { cause: err });
  } finally {
    client.close();
  }
}
