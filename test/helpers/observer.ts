// A token refresh observer (TokenObserverService) holding one overdue pod, for the tests of what
// reads its state: `shop/stuck` on node-a, Running, with a 600 s token for `vault` refreshed once at
// `lastRefreshMs` and reported `reportAfterSeconds` later (due 690 s after: 480 + 90 + the 120 s margin).

import { Interner, projectPod } from '../../src/cluster/projection.js';
import { TokenObserverService } from '../../src/cluster/token-observer-service.js';
import type { PodSummary } from '../../src/cluster/view.js';
import { DEFAULT_CONFIG } from '../../src/config/schema.js';
import { silentLogger } from '../../src/observability/log.js';

export async function observerWithOverduePod(lastRefreshMs: number, reportAfterSeconds: number): Promise<TokenObserverService> {
  const pod = projectPod(
    {
      metadata: { namespace: 'shop', name: 'stuck', uid: 'uid-stuck' },
      spec: { nodeName: 'node-a', volumes: [{ name: 't', projected: { sources: [{ serviceAccountToken: { audience: 'vault', expirationSeconds: 600 } }] } }] },
      status: { phase: 'Running' },
    },
    new Interner(),
  )!;
  let now = lastRefreshMs;
  const cache = { pods: { items: new Map<string, PodSummary>([['shop/stuck', pod]]) }, node: () => undefined };
  const service = new TokenObserverService(cache, DEFAULT_CONFIG.observer, silentLogger, {}, () => now);
  service.start();
  service.record({
    namespace: 'shop',
    userInfo: { username: 'system:node:node-a', groups: ['system:nodes'] },
    object: { spec: { audiences: ['vault'], expirationSeconds: 600, boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: 'stuck', uid: 'uid-stuck' } } },
  });
  now = lastRefreshMs + reportAfterSeconds * 1000;
  await service.report();
  return service;
}
