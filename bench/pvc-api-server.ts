// The fake API server of the PVC cache benchmark (bench/pvc-cache.ts), in a process of its own
// so that its 100,000 objects and their garbage collections are not counted against the cache.
//
//   fork: node --expose-gc --no-memory-reducer dist/bench/pvc-api-server.js PODS NAMESPACES NODES
//   -> { kind: 'ready', kubeconfigPath, pods, bytesPerPod } once the objects are served
//   <- { kind: 'settle' } once the cache has listed them: a full collection now, then
//   -> { kind: 'settled' }; from then on the process only holds the cache's idle watches.
//
// Why settle, and why no memory reducer: after the LIST this process sits on a heap of about
// 900 MB. V8's memory reducer then marks it again and again in steps of up to 30 ms, on the CPU
// the load generator has, and every such step showed up as a 20 to 30 ms stall of the measured
// requests, every half second, whichever server was measured.

import { FakeApiServer } from '../test/helpers/fake-apiserver.js';
import { clusterState } from '../test/helpers/fixtures.js';

export type ApiServerMsg = { kind: 'ready'; kubeconfigPath: string; pods: number; bytesPerPod: number } | { kind: 'settled' };

/** A pod as the real API server returns it (the captured db-1: managedFields, injected token...). */
function podTemplate(): any {
  return clusterState('pods.json').items.find((p: any) => p.metadata.name === 'db-1');
}

async function main(podCount: number, namespaceCount: number, nodeCount: number): Promise<void> {
  const fake = await FakeApiServer.start();
  const template = JSON.stringify(podTemplate());
  const pods: any[] = [];
  for (let i = 0; i < podCount; i++) {
    const ns = `ns-${String(i % namespaceCount).padStart(4, '0')}`;
    const p = JSON.parse(template);
    const ord = Math.floor(i / namespaceCount);
    p.metadata.name = `app-5f7d8c9b4-${i.toString(36).padStart(5, '0')}`;
    p.metadata.namespace = ns;
    p.metadata.uid = `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
    p.metadata.labels = { app: 'app', 'pod-template-hash': '5f7d8c9b4' };
    p.metadata.ownerReferences = [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'app-5f7d8c9b4', uid: 'rs', controller: true, blockOwnerDeletion: true }];
    p.spec.nodeName = `node-${i % nodeCount}`;
    // Half the pods mount a claim of their own (StatefulSet-like), the rest mount nothing.
    if (ord % 2 === 0) p.spec.volumes[0].persistentVolumeClaim.claimName = `data-${ord}`;
    else p.spec.volumes.shift();
    pods.push(p);
  }
  const bytesPerPod = Math.round(pods.slice(0, 100).reduce((n, p) => n + JSON.stringify(p).length, 0) / 100);
  fake.fill('pods', pods);
  pods.length = 0;
  const node = clusterState('nodes.json').items[0];
  fake.fill(
    'nodes',
    Array.from({ length: nodeCount }, (_, i) => ({ ...structuredClone(node), metadata: { ...node.metadata, name: `node-${i}`, uid: `n${i}` } })),
  );
  fake.fill(
    'namespaces',
    Array.from({ length: namespaceCount }, (_, i) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: `ns-${String(i).padStart(4, '0')}`, labels: {} } })),
  );
  process.on('message', (m: { kind: string }) => {
    if (m.kind !== 'settle') return;
    const gc = (globalThis as { gc?: () => void }).gc;
    if (!gc) throw new Error('pvc-api-server needs --expose-gc');
    gc();
    process.send!({ kind: 'settled' } satisfies ApiServerMsg);
  });
  process.send!({ kind: 'ready', kubeconfigPath: fake.kubeconfigPath, pods: podCount, bytesPerPod } satisfies ApiServerMsg);
  // Serves the cache's watches until the parent ends it.
}

const [pods, namespaces, nodes] = process.argv.slice(2).map(Number);
main(pods!, namespaces!, nodes!).catch((err) => {
  process.stderr.write(`pvc-cache bench API server failed: ${err?.stack ?? err}\n`);
  process.exit(1);
});
