// Token refresh observer benchmark: the memory each tracked pod costs, and the time one
// TokenRequest review takes to record (the webhook answers from memory on the kubelet's path).
//
// BENCH_OBSERVER_PODS pods (default 100,000) are projected into a pod directory the way the pod
// cache holds them; the observer then records one kubelet TokenRequest per pod (the injected
// 3607 s kube-api-access token), and a second one (a 600 s token for `vault`) for every fourth
// pod. Memory per tracked pod: v8 heapUsed after a full GC, with the observer filled vs emptied
// (stop()), divided by the pods. The same directory serves both, so only the observer's own
// memory is counted. Record time: the mean over a second pass of refreshes (the common case).
// Run alone: `node dist/bench/token-observer.js`; `npm run bench` runs it last.

import { performance } from 'node:perf_hooks';
import { Interner, projectPod } from '../src/cluster/projection.js';
import { TokenRefreshObserver, type PodDirectory, type TokenRequestReview } from '../src/cluster/token-observer.js';
import type { PodSummary } from '../src/cluster/view.js';
import { exposeGc } from './host.js';

const PODS = Number(process.env.BENCH_OBSERVER_PODS ?? 100_000);

export interface ObserverBenchResult {
  pods: number;
  tokens: number;
  bytesPerPod: number;
  recordNs: number;
}

function review(ns: string, name: string, uid: string, node: string, expirationSeconds: number, audiences: string[]): TokenRequestReview {
  return {
    namespace: ns,
    userInfo: { username: `system:node:${node}`, groups: ['system:nodes', 'system:authenticated'] },
    object: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences, expirationSeconds, boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name, uid } } },
  };
}

export function runObserverBench(pods = PODS): ObserverBenchResult {
  const gc = exposeGc();
  const interner = new Interner();
  const items = new Map<string, PodSummary>();
  const reviews: TokenRequestReview[] = [];
  for (let i = 0; i < pods; i++) {
    const ns = `ns-${i % 1000}`;
    const name = `app-${i}-7d9f8c6b5-x${(i % 100_000).toString(36)}`;
    const uid = `0b6f0c4e-${(i + 0x10000000).toString(16)}-4c1a-9d4e-3f1b2a5c6d7e`;
    const node = `node-${i % 500}`;
    const pod = projectPod(
      {
        metadata: { namespace: ns, name, uid },
        spec: { nodeName: node, volumes: [{ name: 'kube-api-access-x', projected: { sources: [{ serviceAccountToken: { expirationSeconds: 3607, path: 'token' } }] } }] },
        status: { phase: 'Running' },
      },
      interner,
    )!;
    items.set(`${ns}/${name}`, pod);
    // The API server decodes each review afresh: strings in a review are never the cache's.
    reviews.push(review(ns, `${name}`, `${uid}`, node, 3607, []));
    if (i % 4 === 0) reviews.push(review(ns, `${name}`, `${uid}`, node, 600, ['vault']));
  }
  const directory: PodDirectory = { pod: (ns, name) => items.get(`${ns}/${name}`), node: () => undefined, pods: () => items.values() };
  const observer = new TokenRefreshObserver({ pods: directory, marginSeconds: 120, syncFrequencySeconds: 60 });
  observer.start();
  gc();
  gc();
  const empty = process.memoryUsage().heapUsed;
  for (const r of reviews) observer.record(r);
  gc();
  gc();
  const filled = process.memoryUsage().heapUsed;
  const started = performance.now();
  for (const r of reviews) observer.record(r);
  const recordNs = ((performance.now() - started) * 1e6) / reviews.length;
  const { tokens } = observer.stats();
  observer.stop();
  return { pods, tokens, bytesPerPod: Math.round((filled - empty) / pods), recordNs: Math.round(recordNs) };
}

export function describeObserverBench(r: ObserverBenchResult): string {
  return `${r.pods} pods, ${r.tokens} tokens tracked: ${r.bytesPerPod} bytes of heap per tracked pod; recording a refresh takes ${r.recordNs} ns`;
}

if (import.meta.url === `file://${process.argv[1]}`) process.stdout.write(`token refresh observer: ${describeObserverBench(runObserverBench())}\n`);
