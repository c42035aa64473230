// Where the cluster credentials are, decided from the environment and the file system alone:
// an explicit --kubeconfig, then KUBECONFIG, then the in-cluster service account, then
// ~/.kube/config (controller-runtime's order). Kept apart from loading them (kubeconfig.ts), so a
// server that finds no cluster never loads @kubernetes/client-node (about 75 MiB of its memory).

import { accessSync, constants } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';

/** Where the in-cluster service-account credentials are mounted. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubeConfigLookup {
  /** `cluster.kubeconfig` from config or --kubeconfig. */
  kubeconfig?: string;
  env?: NodeJS.ProcessEnv;
  home?: string;
  /** Root under which `/var/run/secrets/kubernetes.io/serviceaccount` is looked for (tests); default `/`. */
  inClusterRoot?: string;
}

export type KubeConfigLocation =
  /** Kubeconfig files, merged in order; `source` says where they were named. */
  | { kind: 'files'; files: string[]; source: string }
  | { kind: 'in-cluster'; root: string };

function readable(path: string): boolean {
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

/** The credentials to use, or undefined when none are configured anywhere. */
export function locateKubeConfig(lookup: KubeConfigLookup = {}): KubeConfigLocation | undefined {
  const env = lookup.env ?? process.env;
  if (lookup.kubeconfig) return { kind: 'files', files: [lookup.kubeconfig], source: `--kubeconfig ${lookup.kubeconfig}` };
  const fromEnv = (env.KUBECONFIG ?? '').split(delimiter).filter(Boolean);
  if (fromEnv.length) return { kind: 'files', files: fromEnv, source: `KUBECONFIG ${env.KUBECONFIG}` };
  const root = lookup.inClusterRoot ?? '';
  if (env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT && readable(join(root, SERVICE_ACCOUNT_DIR, 'token'))) {
    return { kind: 'in-cluster', root };
  }
  const home = lookup.home ?? homedir();
  const file = join(home, '.kube', 'config');
  if (home && readable(file)) return { kind: 'files', files: [file], source: file };
  return undefined;
}
