// Loading cluster credentials. Authentication and TLS are @kubernetes/client-node's (exec plugins,
// OIDC, client certificates, token files); which source to use is kubeconfig-location.ts's
// decision. An explicit choice that fails is an error; when nothing is found the server runs
// without a cluster and says so.

import { KubeConfig } from '@kubernetes/client-node';
import { locateKubeConfig, type KubeConfigLocation, type KubeConfigLookup } from './kubeconfig-location.js';
import { errorCode, errorMessage } from '../observability/errors.js';
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';

export { SERVICE_ACCOUNT_DIR, type KubeConfigLookup } from './kubeconfig-location.js';

export interface KubeConfigSource {
  kc: KubeConfig;
  /** Human-readable origin, for logs and /readyz: `--kubeconfig /x`, `KUBECONFIG`, `in-cluster`, `~/.kube/config`. */
  source: string;
  server: string;
}

/** One kubeconfig file, loaded; a file that cannot be read, parsed or holds no cluster is named with why. */
function loadFile(file: string): KubeConfig {
  const fail = (why: string, hint: string) => new Error(`cannot load kubeconfig ${file}: ${why} (${hint})`);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = errorCode(err);
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a folder' : errorMessage(err);
    throw fail(why, 'name a kubeconfig file with --kubeconfig or KUBECONFIG');
  }
  const kc = new KubeConfig();
  try {
    kc.loadFromString(text);
    // As loadFromFile does: certificate and key paths are relative to the file.
    kc.makePathsAbsolute(dirname(file));
  } catch (err) {
    // client-node's own words for an empty or non-kubeconfig file are a TypeError about `clusters`.
    if (err instanceof TypeError || text.trim() === '') throw fail('it defines no cluster', 'is it a kubeconfig? kind and minikube write one to ~/.kube/config');
    throw fail(errorMessage(err).split('\n')[0]!, 'is it a kubeconfig?');
  }
  if (kc.getClusters().length === 0) throw fail('it defines no cluster', 'is it a kubeconfig? kind and minikube write one to ~/.kube/config');
  return kc;
}

function fromFiles(files: string[], source: string): KubeConfigSource {
  const kc = loadFile(files[0]!);
  for (const extra of files.slice(1)) kc.mergeConfig(loadFile(extra), true);
  return withServer(kc, source);
}

function withServer(kc: KubeConfig, source: string): KubeConfigSource {
  const cluster = kc.getCurrentCluster();
  if (!cluster?.server) {
    const context = kc.getCurrentContext();
    throw new Error(
      `kubeconfig from ${source} has no current context with a cluster server ` +
        `(current-context ${context ? JSON.stringify(context) : 'unset'}: pick one with kubectl config use-context)`,
    );
  }
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
