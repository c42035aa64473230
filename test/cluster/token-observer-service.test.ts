// The observer's report loop: one Event per overdue spell (not one per tick), the likely cause
// looked up for the claims of the pod, the gauge, and nothing once the refresh comes.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Interner, projectNode, projectPod } from '../../src/cluster/projection.js';
import type { EventSpec } from '../../src/cluster/events.js';
import { describeOverdue, overduePods, TokenObserverService } from '../../src/cluster/token-observer-service.js';
import type { NodeSummary, PodSummary } from '../../src/cluster/view.js';
import { DEFAULT_CONFIG } from '../../src/config/schema.js';
import { silentLogger } from '../../src/observability/log.js';

const T0 = Date.UTC(2026, 11, 6, 12, 0, 0);

function rig() {
  const interner = new Interner();
  const items = new Map<string, PodSummary>();
  const nodes = new Map<string, NodeSummary>();
  nodes.set('node-a', projectNode({ metadata: { name: 'node-a' }, status: { nodeInfo: { kubeletVersion: 'v1.29.14' }, conditions: [{ type: 'Ready', status: 'True' }] } }, interner)!);
  for (const [name, claim] of [
    ['stuck', 'data'],
    ['fine', 'other'],
  ] as const) {
    const pod = projectPod(
      {
        metadata: { namespace: 'shop', name, uid: `uid-${name}` },
        spec: {
          nodeName: 'node-a',
          volumes: [
            { name: 'data', persistentVolumeClaim: { claimName: claim } },
            { name: 'vault-token', projected: { sources: [{ serviceAccountToken: { audience: 'vault', expirationSeconds: 600 } }] } },
          ],
        },
        status: { phase: 'Running' },
      },
      interner,
    )!;
    items.set(`shop/${name}`, pod);
  }
  let now = T0;
  const events: EventSpec[] = [];
  const lookups: string[][] = [];
  const service = new TokenObserverService(
    { pods: { items }, node: (n) => nodes.get(n) },
    { ...DEFAULT_CONFIG.observer, marginSeconds: 60 },
    silentLogger,
    {
      record: (e) => Promise.resolve(events.push(e)),
      terminatingClaims: (_ns, claims) => {
        lookups.push([...claims]);
        return Promise.resolve(claims.filter((c) => c === 'data'));
      },
    },
    () => now,
  );
  const refresh = (name: string) =>
    service.record({
      namespace: 'shop',
      userInfo: { username: 'system:node:node-a', groups: ['system:nodes'] },
      object: { spec: { audiences: ['vault'], expirationSeconds: 600, boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name, uid: `uid-${name}` } } },
    });
  return { service, events, lookups, refresh, at: (s: number) => (now = T0 + s * 1000) };
}

describe('TokenObserverService.report', () => {
  it('announces a newly overdue pod once, naming the Terminating claim as the likely cause', async () => {
    const { service, events, lookups, refresh, at } = rig();
    service.start();
    refresh('stuck');
    refresh('fine');
    at(480 + 90 + 60 + 30); // 30 s past due
    refresh('fine'); // the healthy pod refreshed
    await service.report();
    assert.deepEqual(events, [
      {
        type: 'Warning',
        reason: 'TokenRefreshOverdue',
        message:
          'pod shop/stuck on node node-a (kubelet v1.29.14): token for vault (600 s) not refreshed since 2026-12-06T12:00:00.000Z, 30 s past due; ' +
          "likely cause: claim data Terminating: kubelets without the fix of kubernetes#130442 stop refreshing the pod's tokens",
        related: { kind: 'Pod', namespace: 'shop', name: 'stuck', uid: 'uid-stuck' },
      },
    ]);
    assert.deepEqual(lookups, [['data']]);
    assert.equal((await overduePods.get()).values[0]?.value, 1);
    at(800);
    await service.report();
    assert.equal(events.length, 1, 'still overdue: no second Event');
    assert.equal(service.overdue()[0]?.pod.lateSeconds, 170);
    refresh('stuck');
    await service.report();
    assert.deepEqual(service.overdue(), []);
    assert.equal((await overduePods.get()).values[0]?.value, 0);
    service.stop();
  });

  it('describes a pod never seen since observation began', () => {
    assert.equal(
      describeOverdue({ namespace: 'a', name: 'b', uid: 'u', node: '', dueMs: 0, lateSeconds: 5, podTerminating: true, nodeNotReady: false }, [
        { code: 'pod-terminating', text: 'pod Terminating: the kubelet no longer refreshes its tokens (kubernetes#116481)' },
      ]),
      'pod a/b: no token refresh seen since this observer began, 5 s past due; likely cause: pod Terminating: the kubelet no longer refreshes its tokens (kubernetes#116481)',
    );
  });
});
