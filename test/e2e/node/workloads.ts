// Workloads on the real node: busybox pods that really run, and claims bound to hostPath
// PersistentVolumes made for them (there is no provisioner), so a pod that mounts one starts.

import { join } from 'node:path';
import { yaml } from '../harness/cli.js';
import { eventually } from '../harness/eventually.js';
import { BUSYBOX, type NodeCluster } from '../harness/node.js';

/**
 * A claim `name` in `namespace`, and a PersistentVolume (hostPath under the cluster's folder)
 * reserved for it by claimRef, so the two bind at once. `claimName` differs from `name` only for a
 * generic ephemeral volume's claim, which the pod's controller creates: then only the volume is made.
 */
export function boundClaim(cluster: NodeCluster, namespace: string, name: string, opts: { volumeOnly?: boolean } = {}): string {
  const pv = `pv-${namespace}-${name}`;
  const volume = {
    apiVersion: 'v1',
    kind: 'PersistentVolume',
    metadata: { name: pv },
    spec: {
      capacity: { storage: '1Gi' },
      accessModes: ['ReadWriteOnce'],
      storageClassName: 'manual',
      persistentVolumeReclaimPolicy: 'Retain',
      claimRef: { namespace, name },
      hostPath: { path: join(cluster.dir, 'pv', pv), type: 'DirectoryOrCreate' },
    },
  };
  const claim = {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name, namespace },
    spec: { accessModes: ['ReadWriteOnce'], storageClassName: 'manual', volumeName: pv, resources: { requests: { storage: '1Gi' } } },
  };
  return opts.volumeOnly ? yaml(volume) : yaml(volume, claim);
}

export interface PodOptions {
  /** The container's shell command (busybox sh -c); default: sleep for an hour. */
  command?: string;
  restartPolicy?: 'Always' | 'Never';
  terminationGracePeriodSeconds?: number;
  nodeSelector?: Record<string, string>;
  /** Volumes beyond the claim's (e.g. a generic ephemeral volume instead). */
  volumes?: object[];
  labels?: Record<string, string>;
}

/** A busybox pod that mounts claim `claimName` (when given) at /data. */
export function runningPod(namespace: string, name: string, claimName: string | undefined, opts: PodOptions = {}): string {
  const volumes = [...(claimName ? [{ name: 'data', persistentVolumeClaim: { claimName } }] : []), ...(opts.volumes ?? [])];
  return yaml({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, ...(opts.labels ? { labels: opts.labels } : {}) },
    spec: {
      restartPolicy: opts.restartPolicy ?? 'Always',
      terminationGracePeriodSeconds: opts.terminationGracePeriodSeconds ?? 1,
      ...(opts.nodeSelector ? { nodeSelector: opts.nodeSelector } : {}),
      containers: [
        {
          name: 'app',
          image: BUSYBOX,
          imagePullPolicy: 'Never',
          command: ['/bin/busybox', 'sh', '-c', opts.command ?? 'exec /bin/busybox sleep 3600'],
          volumeMounts: volumes.map((v) => ({ name: (v as { name: string }).name, mountPath: `/${(v as { name: string }).name}` })),
        },
      ],
      volumes,
    },
  });
}

/** Wait until the pod's phase is `phase`; returns the pod. */
export async function waitForPhase(cluster: NodeCluster, namespace: string, name: string, phase: string, timeoutMs = 90_000): Promise<Record<string, any>> {
  return eventually(async () => {
    const r = await cluster.kubectl(['get', 'pod', name, '-n', namespace, '-o', 'json']);
    if (r.code !== 0) return false;
    const pod = JSON.parse(r.stdout);
    return pod.status?.phase === phase && pod;
  }, `pod ${namespace}/${name} ${phase}`, timeoutMs);
}
