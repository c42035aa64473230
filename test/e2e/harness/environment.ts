// One end-to-end environment: a real control plane, tokenguard's own manifests applied to it
// (namespace and RBAC, as a user installs them), tokenguard running as its ServiceAccount with a
// token from TokenRequest, and the webhooks of manifests/base/webhooks.yaml registered with
// `clientConfig.url` (the only change from the manifest: there is no Service to route through).

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { freePort } from '../../helpers/ports.js';
import { PROJECT_ROOT } from '../../helpers/tls.js';
import { atLeast, type Assets, type KubeVersion } from './assets.js';
import { ControlPlane, type ControlPlaneOptions } from './control-plane.js';
import { kubectlFor, ok, warnings, type Kubectl } from './kubectl.js';
import { TokenguardProcess } from '../../helpers/tokenguard-process.js';
import type { KubeObject } from '../../../src/k8s/object.js';
import { webhooksAtUrl } from '../../../src/k8s/webhook-manifests.js';

export const MANIFESTS = join(PROJECT_ROOT, 'manifests', 'base');

export interface E2e {
  assets: Assets;
  cp: ControlPlane;
  /** kubectl as cluster admin. */
  kubectl: Kubectl;
  tokenguard: TokenguardProcess;
  /** tokenguard's kubeconfig (its ServiceAccount's token). */
  tokenguardKubeconfig: string;
  stop(): Promise<void>;
}

export interface E2eOptions extends ControlPlaneOptions {
  /** tokenguard config keys over the suite's base (see TokenguardProcess); given its URL. */
  tokenguard?: Record<string, unknown> | ((url: string) => Record<string, unknown>);
  /**
   * Run once tokenguard's namespace and RBAC exist and its URL is known, before it starts: e.g.
   * give kube-apiserver credentials for it (and restart it with them).
   */
  beforeTokenguard?: (ctx: { cp: ControlPlane; kubectl: Kubectl; url: string }) => Promise<void>;
}

/**
 * The webhook configurations of manifests/base/webhooks.yaml as objects. Before v1.30 (`server`),
 * webhooks with matchConditions (the TokenRequest one) are left out: the field does not exist
 * there, and kubectl's strict field validation refuses it.
 */
export function webhookManifests(server?: KubeVersion): KubeObject[] {
  const docs = parseAllDocuments(readFileSync(join(MANIFESTS, 'webhooks.yaml'), 'utf8')).map((d) => d.toJS() as KubeObject);
  if (server && !atLeast(server, 1, 30)) for (const d of docs) d.webhooks = d.webhooks.filter((w: { matchConditions?: unknown }) => !w.matchConditions);
  return docs;
}

/** The webhook configurations of the manifests, each webhook pointed at `url` + its path (as `tokenguard dev register` does). */
export function webhooksFor(url: string, caBundle: string, server?: KubeVersion): string {
  return webhooksAtUrl(webhookManifests(server), url, caBundle)
    .map((d) => stringify(d))
    .join('---\n');
}

/**
 * Namespace `name` (with `labels`) and its `default` ServiceAccount, which pods need. Without
 * kube-controller-manager nobody else creates that account; with it, its serviceaccount controller
 * creates it at the same moment, so a create here may lose that race: AlreadyExists is the success
 * it looks like.
 */
export async function ensureNamespace(kubectl: Kubectl, name: string, labels: Record<string, string> = {}): Promise<void> {
  const metadata = { name, ...(Object.keys(labels).length ? { labels } : {}) };
  ok(await kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata })), `namespace ${name}`);
  const sa = await kubectl(['create', 'serviceaccount', 'default', '-n', name]);
  if (sa.code !== 0 && !/AlreadyExists|already exists/.test(sa.stderr)) ok(sa, `the default ServiceAccount of ${name}`);
}

export async function startE2e(assets: Assets, opts: E2eOptions = {}): Promise<E2e> {
  const cp = await ControlPlane.start(assets, opts);
  let tokenguard: TokenguardProcess | undefined;
  try {
    const kubectl = kubectlFor(assets.kubectl, cp.kubeconfig);
    ok(await kubectl(['apply', '-f', join(MANIFESTS, 'namespace.yaml'), '-f', join(MANIFESTS, 'rbac.yaml')]), 'apply namespace and RBAC');
    const token = ok(await kubectl(['create', 'token', 'tokenguard', '-n', 'tokenguard', '--duration=6h']), 'TokenRequest').stdout.trim();
    const tokenguardKubeconfig = join(cp.dir, 'tokenguard.kubeconfig');
    writeFileSync(tokenguardKubeconfig, cp.kubeconfigFor({ token }), { mode: 0o600 });

    const port = await freePort();
    const url = `https://127.0.0.1:${port}`;
    await opts.beforeTokenguard?.({ cp, kubectl, url });
    const config = typeof opts.tokenguard === 'function' ? opts.tokenguard(url) : opts.tokenguard;
    tokenguard = await TokenguardProcess.start({ dir: cp.dir, kubeconfig: tokenguardKubeconfig, config, port });
    const caBundle = tokenguard.certs.ca.toString('base64');
    ok(await kubectl(['apply', '-f', '-'], webhooksFor(tokenguard.url, caBundle, assets.serverVersion)), 'register the webhooks');
    await untilWebhooksServe(kubectl);
    const tg = tokenguard;
    return {
      assets,
      cp,
      kubectl,
      tokenguard: tg,
      tokenguardKubeconfig,
      stop: async () => {
        await tg.stop();
        await cp.stop();
      },
    };
  } catch (err) {
    await tokenguard?.stop();
    await cp.stop();
    throw err;
  }
}

/**
 * kube-apiserver picks webhook configurations up from a watch, a moment after they are written:
 * wait until both sides answer a server-side dry run (a PersistentVolume's NFS warning for
 * /validate, the pvc-token-risk label on a Pod for /mutate).
 */
async function untilWebhooksServe(kubectl: Kubectl, timeoutMs = 20_000): Promise<void> {
  await ensureNamespace(kubectl, 'e2e-probe');
  const pv = 'apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: e2e-probe}\nspec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteMany], nfs: {server: nfs.example, path: /x}}\n';
  const pod =
    'apiVersion: v1\nkind: Pod\nmetadata: {name: probe, namespace: e2e-probe}\n' +
    'spec: {containers: [{name: c, image: busybox}], volumes: [{name: d, persistentVolumeClaim: {claimName: d}}]}\n';
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await kubectl(['create', '--dry-run=server', '-o', 'name', '-f', '-'], pv);
    const m = await kubectl(['create', '--dry-run=server', '-o', 'jsonpath={.metadata.labels}', '-f', '-'], pod);
    if (warnings(v).length && m.stdout.includes('tokenguard.io/pvc-token-risk')) break;
    if (Date.now() > deadline) throw new Error(`the webhooks did not answer within ${timeoutMs} ms: ${v.stderr} ${m.stdout} ${m.stderr}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  ok(await kubectl(['delete', 'namespace', 'e2e-probe', '--wait=false']), 'delete the probe namespace');
}
