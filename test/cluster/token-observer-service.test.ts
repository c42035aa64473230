// The observer's report loop: one Event per overdue spell (not one per tick), on the pod itself
// (written through the real EventRecorder to the fake API server as a real one takes it), the likely
// cause looked up for the claims of the pod, the gauge, the state `GET /observer` answers, and
// nothing once the refresh comes.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KubeConfig } from '@kubernetes/client-node';
import { Interner, projectNode, projectPod } from '../../src/cluster/projection.js';
import { EventRecorder, type ObjectEventSpec } from '../../src/cluster/events.js';
import { describeOverdue, overduePods, TokenObserverService, type ReportSinks } from '../../src/cluster/token-observer-service.js';
import { parseObserverState } from '../../src/cluster/token-observer-state.js';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import type { NodeSummary, PodSummary } from '../../src/cluster/view.js';
import { DEFAULT_CONFIG } from '../../src/config/schema.js';
import { silentLogger } from '../../src/observability/log.js';

const T0 = Date.UTC(2026, 11, 6, 12, 0, 0);

function rig(sinks: Pick<ReportSinks, 'event'> = {}) {
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
  const events: ObjectEventSpec[] = [];
  const lookups: string[][] = [];
  const service = new TokenObserverService(
    { pods: { items }, node: (n) => nodes.get(n) },
    { ...DEFAULT_CONFIG.observer, marginSeconds: 60 },
    silentLogger,
    {
      event: (e) => {
        events.push(e);
        sinks.event?.(e);
      },
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
        regarding: { kind: 'Pod', namespace: 'shop', name: 'stuck', uid: 'uid-stuck' },
      },
    ]);
    assert.deepEqual(lookups, [['data']]);
    assert.equal((await overduePods.get()).values[0]?.value, 1);
    at(800);
    await service.report();
    assert.equal(events.length, 1, 'still overdue: no second Event');
    assert.equal(service.overdue()[0]?.pod.lateSeconds, 170);
    assert.match(service.overdue()[0]!.message, /, 170 s past due; likely cause: claim data Terminating/);
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

  it('records the Event on the overdue pod, in its namespace, as the API server takes it, once per overdue spell', async () => {
    const fake = await FakeApiServer.start();
    try {
      const kc = new KubeConfig();
      kc.loadFromString(fake.kubeconfig());
      const recorder = new EventRecorder({ kc, logger: silentLogger, namespace: 'tokenguard' });
      const { service, refresh, at } = rig({ event: (e) => recorder.emit(e) });
      service.start();
      refresh('stuck');
      refresh('fine');
      at(700);
      refresh('fine');
      await service.report();
      at(760);
      await service.report(); // still overdue: no second write
      await recorder.flushed();
      assert.deepEqual(fake.list('events', 'tokenguard'), [], 'not on the tokenguard Deployment');
      const [event, ...more] = fake.list('events', 'shop');
      assert.deepEqual(more, []);
      assert.deepEqual(event!.involvedObject, { apiVersion: 'v1', kind: 'Pod', namespace: 'shop', name: 'stuck', uid: 'uid-stuck' });
      assert.equal(event!.metadata.namespace, 'shop');
      assert.match(event!.metadata.name, /^stuck\./);
      assert.deepEqual([event!.type, event!.reason, event!.count, event!.source], ['Warning', 'TokenRefreshOverdue', 1, { component: 'tokenguard' }]);
      // The line of the report that found it (70 s late then); the state says how late it is now.
      assert.equal(event!.message, service.overdue()[0]!.message.replace(', 130 s past due', ', 70 s past due'));
      service.stop();
    } finally {
      await fake.close();
    }
  });
});

describe('TokenObserverService.state (GET /observer)', () => {
  it('says what the last report found: every field of each overdue pod, the same line as the Event', async () => {
    const { service, refresh, at, events } = rig();
    service.start();
    refresh('stuck');
    refresh('fine');
    at(700);
    refresh('fine');
    const before = service.state('tokenguard-abc');
    assert.deepEqual(
      { ...before, overdue: before.overdue.length },
      {
        replica: 'tokenguard-abc',
        observing: true,
        since: '2026-12-06T12:00:00.000Z',
        observingSince: '2026-12-06T12:00:00.000Z',
        reportedAt: null,
        reportSeconds: 30,
        marginSeconds: 60,
        trackedPods: 2,
        trackedTokens: 2,
        overdue: 0,
      },
      'nothing judged before the first report',
    );
    await service.report();
    const state = service.state('tokenguard-abc');
    assert.equal(state.reportedAt, '2026-12-06T12:11:40.000Z');
    assert.deepEqual(state.overdue, [
      {
        namespace: 'shop',
        pod: 'stuck',
        uid: 'uid-stuck',
        node: 'node-a',
        kubeletVersion: 'v1.29.14',
        audiences: ['vault'],
        requestedSeconds: 600,
        lastRefresh: '2026-12-06T12:00:00.000Z',
        due: '2026-12-06T12:10:30.000Z',
        lateSeconds: 70,
        likelyCauses: [
          { code: 'claim-terminating', text: "claim data Terminating: kubelets without the fix of kubernetes#130442 stop refreshing the pod's tokens", issue: 'kubernetes#130442' },
        ],
        message: events[0]!.message,
      },
    ]);
    assert.deepEqual(parseObserverState(JSON.parse(JSON.stringify(state))), state, 'what audit reads back');
    service.stop();
    const stopped = service.state('tokenguard-abc', 'not the observer: tokenguard-def holds the Lease tokenguard-observer');
    assert.deepEqual([stopped.observing, stopped.reason, stopped.since, stopped.overdue], [false, 'not the observer: tokenguard-def holds the Lease tokenguard-observer', null, []]);
  });
});
