// Shared by the cluster and pvc-in-use tests: a real ClusterCache (real client-node) against the
// fake API server, pods built from a captured one.

import { KubeConfig } from '@kubernetes/client-node';
import { ClusterCache, type ClusterCacheOptions } from '../../src/cluster/cache.js';
import { FakeApiServer, loadCapturedClusterState, type FakeApiServerOptions } from '../helpers/fake-apiserver.js';
import { until } from '../helpers/eventually.js';
import { clusterState } from '../helpers/fixtures.js';

export interface CacheRig {
  fake: FakeApiServer;
  cache: ClusterCache;
  close(): Promise<void>;
}

/** Fast reconnects for tests; the 30 s cap itself is checked separately. */
export const TEST_TUNING = { initialBackoffMs: 20, maxBackoffMs: 100, pageSize: 4 } satisfies Partial<ClusterCacheOptions>;

export async function startCacheRig(
  opts: { captured?: boolean; fake?: FakeApiServerOptions; cache?: Partial<ClusterCacheOptions>; waitForSync?: boolean } = {},
): Promise<CacheRig> {
  const fake = await FakeApiServer.start(opts.fake);
  if (opts.captured !== false) loadCapturedClusterState(fake);
  const kc = new KubeConfig();
  kc.loadFromFile(fake.kubeconfigPath);
  const cache = new ClusterCache({ kc, staleAfterSeconds: 60, ...TEST_TUNING, ...opts.cache });
  cache.start();
  if (opts.waitForSync !== false) {
    await cache.whenSynced();
    await until(() => fake.openWatches() === 3, 'the pods, nodes and namespaces watches to open');
  }
  return {
    fake,
    cache,
    close: async () => {
      cache.stop();
      await fake.close();
    },
  };
}

/** A pod shaped like the captured `db-1` (real API output), renamed and adjusted. */
export function podLike(
  name: string,
  opts: {
    namespace?: string;
    nodeName?: string;
    phase?: string;
    claim?: string;
    ephemeral?: string;
    owner?: { kind: string; name: string };
    labels?: Record<string, string>;
    token?: boolean;
  } = {},
): any {
  const base = structuredClone(clusterState('pods.json').items.find((p: any) => p.metadata.name === 'db-1'));
  base.metadata.name = name;
  base.metadata.namespace = opts.namespace ?? 'shop';
  base.metadata.uid = `uid-${base.metadata.namespace}-${name}`;
  base.metadata.labels = opts.labels ?? {};
  if (opts.owner) base.metadata.ownerReferences = [{ apiVersion: 'apps/v1', kind: opts.owner.kind, name: opts.owner.name, uid: 'x', controller: true }];
  if (opts.nodeName) base.spec.nodeName = opts.nodeName;
  else delete base.spec.nodeName;
  base.status = { phase: opts.phase ?? (opts.nodeName ? 'Running' : 'Pending') };
  const volumes: any[] = [];
  if (opts.claim) volumes.push({ name: 'data', persistentVolumeClaim: { claimName: opts.claim } });
  if (opts.ephemeral) {
    volumes.push({
      name: opts.ephemeral,
      ephemeral: { volumeClaimTemplate: { spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } } } },
    });
  }
  if (opts.token !== false) volumes.push(base.spec.volumes.find((v: any) => v.name.startsWith('kube-api-access-')));
  base.spec.volumes = volumes;
  return base;
}
