// Where the end-to-end suite finds a real control plane: the envtest convention. A directory named
// by KUBEBUILDER_ASSETS holds `etcd` and `kube-apiserver` (and, optionally, `kube-controller-manager`
// and `kubectl`), as `setup-envtest use -p path <version>` prints it. Unset: the suite skips.

import { execFileSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** A Kubernetes version as a binary reports it (`v1.36.3`, `v1.32.4-dispatcher`). */
export interface KubeVersion {
  gitVersion: string;
  major: number;
  minor: number;
}

export interface Assets {
  dir: string;
  etcd: string;
  kubeApiserver: string;
  /** What `kube-apiserver --version` reports: scenarios that differ by version branch on it. */
  serverVersion: KubeVersion;
  /** Absent in plain envtest assets: the scenarios that need it skip, saying why. */
  kubeControllerManager?: string;
  kubectl: string;
  /** kubectl's own version: what it prints differs between releases (e.g. `deleted from <ns> namespace` from 1.33). */
  kubectlVersion: KubeVersion;
}

export const HOW_TO_ENABLE =
  'set KUBEBUILDER_ASSETS to a directory holding etcd and kube-apiserver, e.g. ' +
  'KUBEBUILDER_ASSETS=$(setup-envtest use -p path 1.35) npm test';

/** Whether `path` is a file this process may run. */
export function executable(path: string): boolean {
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

/** `v1.36.3` (anywhere in `text`) as numbers; throws naming the text when there is none. */
export function parseKubeVersion(text: string, what: string): KubeVersion {
  const m = /\bv(\d+)\.(\d+)\.\d+[^\s"]*/.exec(text);
  if (!m) throw new Error(`cannot read a Kubernetes version from ${what}: ${JSON.stringify(text.slice(0, 200))}`);
  return { gitVersion: m[0], major: Number(m[1]), minor: Number(m[2]) };
}

/** Whether `v` is at least `major.minor`. */
export function atLeast(v: KubeVersion, major: number, minor: number): boolean {
  return v.major > major || (v.major === major && v.minor >= minor);
}

function versionOf(binary: string, args: string[]): KubeVersion {
  return parseKubeVersion(execFileSync(binary, args, { encoding: 'utf8', timeout: 10_000 }), `${binary} ${args.join(' ')}`);
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
  return {
    assets: {
      dir,
      etcd,
      kubeApiserver,
      serverVersion: versionOf(kubeApiserver, ['--version']),
      kubeControllerManager: executable(kcm) ? kcm : undefined,
      kubectl,
      kubectlVersion: versionOf(kubectl, ['version', '--client', '-o', 'json']),
    },
  };
}
