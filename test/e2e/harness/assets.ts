// Where the end-to-end suite finds a real control plane: the envtest convention. A directory named
// by KUBEBUILDER_ASSETS holds `etcd` and `kube-apiserver` (and, optionally, `kube-controller-manager`
// and `kubectl`), as `setup-envtest use -p path <version>` prints it. Unset: the suite skips.

import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

export interface Assets {
  dir: string;
  etcd: string;
  kubeApiserver: string;
  /** Absent in plain envtest assets: the scenarios that need it skip, saying why. */
  kubeControllerManager?: string;
  kubectl: string;
}

export const HOW_TO_ENABLE =
  'set KUBEBUILDER_ASSETS to a directory holding etcd and kube-apiserver, e.g. ' +
  'KUBEBUILDER_ASSETS=$(setup-envtest use -p path 1.31) npm test';

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `name` on PATH, or undefined. */
function onPath(name: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir && executable(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/**
 * The assets, or why the suite cannot run: `skip` when KUBEBUILDER_ASSETS is unset (a user's clone
 * without a control plane passes `npm test`). A directory that is named but lacks a binary is an
 * error, not a skip: CI pointed at the wrong place must not go green by running nothing.
 */
export function findAssets(env: NodeJS.ProcessEnv = process.env): { assets: Assets } | { skip: string } {
  const dir = env.KUBEBUILDER_ASSETS;
  if (!dir) return { skip: `end-to-end suite skipped: KUBEBUILDER_ASSETS is unset; ${HOW_TO_ENABLE}` };
  const required = (name: string) => {
    const path = join(dir, name);
    if (!executable(path)) throw new Error(`KUBEBUILDER_ASSETS=${dir} has no executable ${name}`);
    return path;
  };
  const etcd = required('etcd');
  const kubeApiserver = required('kube-apiserver');
  const kcm = join(dir, 'kube-controller-manager');
  // envtest ships kubectl beside the binaries; else the machine's own.
  const kubectl = env.KUBECTL ?? (executable(join(dir, 'kubectl')) ? join(dir, 'kubectl') : onPath('kubectl', env));
  if (!kubectl) return { skip: `end-to-end suite skipped: no kubectl in KUBEBUILDER_ASSETS=${dir} or on PATH (or set KUBECTL)` };
  return { assets: { dir, etcd, kubeApiserver, kubeControllerManager: executable(kcm) ? kcm : undefined, kubectl } };
}
