// Loading cluster credentials. Authentication and TLS are @kubernetes/client-node's (exec plugins,
// OIDC, client certificates, token files); which source to use is kubeconfig-location.ts's
// decision. An explicit choice that fails is an error; when nothing is found the server runs
// without a cluster and says so.

import { KubeConfig } from '@kubernetes/client-node';
import { locateKubeConfig, type KubeConfigLocation, type KubeConfigLookup } from './kubeconfig-location.js';
import { errorMessage } from '../observability/errors.js';

export { SERVICE_ACCOUNT_DIR, type KubeConfigLookup } from './kubeconfig-location.js';

export interface KubeConfigSource {
  kc: KubeConfig;
  /** Human-readable origin, for logs and /readyz: `--kubeconfig /x`, `KUBECONFIG`, `in-cluster`, `~/.kube/config`. */
  source: string;
  server: string;
}

function fromFiles(files: string[], source: string): KubeConfigSource {
  const kc = new KubeConfig();
  try {
    kc.loadFromFile(files[0]!);
    for (const extra of files.slice(1)) {
      const more = new KubeConfig();
      more.loadFromFile(extra);
      kc.mergeConfig(more, true);
    }
  } catch (err) {
    throw new Error(`cannot load kubeconfig from ${source}: ${errorMessage(err)}`, { cause: err });
  }
  return withServer(kc, source);
}

function withServer(kc: KubeConfig, source: string): KubeConfigSource {
  const cluster = kc.getCurrentCluster();
  if (!cluster?.server) throw new Error(`kubeconfig from ${source} has no current context with a cluster server`);
  return { kc, source, server: cluster.server };
}

/** Load the credentials found by locateKubeConfig; throws naming the source when they cannot be loaded. */
export function loadKubeConfig(location: KubeConfigLocation): KubeConfigSource {
  if (location.kind === 'files') return fromFiles(location.files, location.source);
  const kc = new KubeConfig();
  // loadFromCluster reads the host and port from process.env; its token-file authenticator
  // re-reads the (rotated) projected token, so tokenguard's own token never goes stale.
  kc.loadFromCluster(location.root);
  return withServer(kc, 'in-cluster service account');
}

/**
 * The cluster to talk to, or undefined when none is configured anywhere. Throws when an explicit
 * source (--kubeconfig or KUBECONFIG) cannot be loaded: silently falling back would guard the wrong cluster.
 */
export function findKubeConfig(lookup: KubeConfigLookup = {}): KubeConfigSource | undefined {
  const location = locateKubeConfig(lookup);
  return location && loadKubeConfig(location);
}
