// Finding cluster credentials. Loading, authentication and TLS are @kubernetes/client-node's
// (exec plugins, OIDC, client certificates, token files); this module only decides which source
// to use, in the order controller-runtime uses: an explicit --kubeconfig, then KUBECONFIG, then the
// in-cluster service account, then ~/.kube/config. An explicit choice that fails is an error; when
// nothing is found the server runs without a cluster and says so.

import { accessSync, constants } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';

/** Where the in-cluster service-account credentials are mounted. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubeConfigSource {
  kc: KubeConfig;
  /** Human-readable origin, for logs and /readyz: `--kubeconfig /x`, `KUBECONFIG`, `in-cluster`, `~/.kube/config`. */
  source: string;
  server: string;
}

export interface KubeConfigLookup {
  /** `cluster.kubeconfig` from config or --kubeconfig. */
  kubeconfig?: string;
  env?: NodeJS.ProcessEnv;
  home?: string;
  /** Root under which `/var/run/secrets/kubernetes.io/serviceaccount` is looked for (tests); default `/`. */
  inClusterRoot?: string;
}

function readable(path: string): boolean {
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
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
    throw new Error(`cannot load kubeconfig from ${source}: ${(err as Error).message}`);
  }
  return withServer(kc, source);
}

function withServer(kc: KubeConfig, source: string): KubeConfigSource {
  const cluster = kc.getCurrentCluster();
  if (!cluster?.server) throw new Error(`kubeconfig from ${source} has no current context with a cluster server`);
  return { kc, source, server: cluster.server };
}

/**
 * The cluster to talk to, or undefined when none is configured anywhere. Throws when an explicit
 * source (--kubeconfig or KUBECONFIG) cannot be loaded: silently falling back would guard the wrong cluster.
 */
export function findKubeConfig(lookup: KubeConfigLookup = {}): KubeConfigSource | undefined {
  const env = lookup.env ?? process.env;
  if (lookup.kubeconfig) return fromFiles([lookup.kubeconfig], `--kubeconfig ${lookup.kubeconfig}`);
  const fromEnv = (env.KUBECONFIG ?? '').split(delimiter).filter(Boolean);
  if (fromEnv.length) return fromFiles(fromEnv, `KUBECONFIG ${env.KUBECONFIG}`);

  const root = lookup.inClusterRoot ?? '';
  if (env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT && readable(join(root, SERVICE_ACCOUNT_DIR, 'token'))) {
    const kc = new KubeConfig();
    // loadFromCluster reads the host and port from process.env; its token-file authenticator
    // re-reads the (rotated) projected token, so tokenguard's own token never goes stale.
    kc.loadFromCluster(root);
    return withServer(kc, 'in-cluster service account');
  }

  const home = lookup.home ?? homedir();
  const file = join(home, '.kube', 'config');
  if (home && readable(file)) return fromFiles([file], file);
  return undefined;
}
