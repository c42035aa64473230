// tokenguard installed as users install it: `kubectl apply -k` of an overlay of manifests/, with
// only the image changed the documented way (an `images:` entry for ghcr.io/tokenguard/tokenguard in
// a kustomization of one's own), on a node that really runs it.

import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../helpers/tls.js';
import { eventually } from '../harness/eventually.js';
import { ok, warnings } from '../harness/kubectl.js';
import type { NodeCluster } from '../harness/node.js';

/** The image every manifest names; users (and this suite) change it with a kustomize `images:` entry. */
export const PUBLISHED_IMAGE = 'ghcr.io/tokenguard/tokenguard';

/** `registry/name:tag` as kustomize's newName and newTag. */
export function splitImage(image: string): { newName: string; newTag: string } {
  const at = image.lastIndexOf(':');
  if (at <= image.lastIndexOf('/')) return { newName: image, newTag: 'latest' };
  return { newName: image.slice(0, at), newTag: image.slice(at + 1) };
}

/**
 * A kustomization of one's own over `overlay` (a folder under manifests/overlays), as
 * docs/installation.md writes it for a private registry: the manifests are copied beside it, as a
 * user's clone has them.
 */
export function ownKustomization(overlay: string, image: string, extra: (dir: string) => string = () => ''): string {
  const dir = mkdtempSync(join(tmpdir(), 'tokenguard-install-'));
  cpSync(join(PROJECT_ROOT, 'manifests'), join(dir, 'manifests'), { recursive: true });
  const { newName, newTag } = splitImage(image);
  writeFileSync(
    join(dir, 'kustomization.yaml'),
    [
      'apiVersion: kustomize.config.k8s.io/v1beta1',
      'kind: Kustomization',
      'resources:',
      `  - manifests/overlays/${overlay}`,
      'images:',
      `  - name: ${PUBLISHED_IMAGE}`,
      `    newName: ${newName}`,
      `    newTag: "${newTag}"`,
      extra(dir),
    ].join('\n'),
  );
  return dir;
}

/**
 * Wait until kube-apiserver calls tokenguard through its Service for both webhooks: a server-side
 * dry run of a PersistentVolume gets the NFS warning (validating), a Pod gets the pvc-token-risk
 * label (mutating).
 */
export async function untilWebhooksServe(cluster: NodeCluster, timeoutMs = 60_000): Promise<void> {
  const pv = 'apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: probe}\nspec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteMany], nfs: {server: nfs.example, path: /x}}\n';
  const pod =
    'apiVersion: v1\nkind: Pod\nmetadata: {name: probe, namespace: default}\n' +
    'spec: {containers: [{name: c, image: busybox}], volumes: [{name: d, persistentVolumeClaim: {claimName: d}}]}\n';
  await eventually(
    async () => {
      const v = await cluster.kubectl(['create', '--dry-run=server', '-o', 'name', '-f', '-'], pv);
      const m = await cluster.kubectl(['create', '--dry-run=server', '-o', 'jsonpath={.metadata.labels}', '-f', '-'], pod);
      return warnings(v).length > 0 && m.stdout.includes('tokenguard.io/pvc-token-risk');
    },
    'kube-apiserver calling tokenguard through its Service',
    timeoutMs,
  );
}

/** `kubectl apply -k` of `dir`, then the Deployment Available with every replica. */
export async function install(cluster: NodeCluster, dir: string, replicas = 2): Promise<void> {
  ok(await cluster.kubectl(['apply', '-k', dir]), 'kubectl apply -k');
  await untilServing(cluster, replicas);
}

/** The Deployment rolled out with `replicas` Available, and kube-apiserver calling both webhooks. */
export async function untilServing(cluster: NodeCluster, replicas: number): Promise<void> {
  ok(await cluster.kubectl(['-n', 'tokenguard', 'rollout', 'status', 'deployment/tokenguard', '--timeout=120s']), 'rollout status');
  await eventually(async () => {
    const r = await cluster.kubectl(['-n', 'tokenguard', 'get', 'deployment', 'tokenguard', '-o', 'jsonpath={.status.availableReplicas}']);
    return r.stdout === String(replicas);
  }, `${replicas}/${replicas} Available`, 60_000);
  await untilWebhooksServe(cluster);
}
