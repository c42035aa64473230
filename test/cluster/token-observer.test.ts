// The token refresh observer: due times from the kubelet's schedule, hand-over (nothing overdue on
// data the observer could not have had), and the memory bound (pods in the cache, freed with them).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Interner, projectNode, projectPod } from '../../src/cluster/projection.js';
import {
  likelyCauses,
  MAX_TOKENS_PER_POD,
  TokenRefreshObserver,
  UNKNOWN_POD_ALLOWANCE,
  type PodDirectory,
  type TokenRequestReview,
} from '../../src/cluster/token-observer.js';
import type { NodeSummary, PodSummary } from '../../src/cluster/view.js';
import type { KubeObject } from '../../src/k8s/object.js';

const MARGIN = 120;
const SYNC = 60;
const T0 = Date.UTC(2026, 11, 6, 12, 0, 0);
const interner = new Interner();

/** A pod as the API server has it, with one projected token of `expirationSeconds` (undefined: the injected 3607 s volume). */
function podObject(name: string, opts: { uid?: string; node?: string; phase?: string; expirationSeconds?: number; deleting?: boolean } = {}): KubeObject {
  const token = opts.expirationSeconds === undefined ? { expirationSeconds: 3607, path: 'token' } : { expirationSeconds: opts.expirationSeconds, path: 'token', audience: 'vault' };
  return {
    metadata: { namespace: 'apps', name, uid: opts.uid ?? `uid-${name}`, ...(opts.deleting ? { deletionTimestamp: '2026-12-06T12:00:00Z' } : {}) },
    spec: { nodeName: opts.node ?? 'node-1', volumes: [{ name: 'kube-api-access-abcde', projected: { sources: [{ serviceAccountToken: token }] } }] },
    status: { phase: opts.phase ?? 'Running' },
  };
}

/** An in-memory pod cache of projected pods and nodes. */
class Directory implements PodDirectory {
  readonly items = new Map<string, PodSummary>();
  readonly nodes = new Map<string, NodeSummary>();
  constructor() {
    this.setNode('node-1', 'v1.36.3', true);
  }
  add(obj: KubeObject): PodSummary {
    const pod = projectPod(obj, interner)!;
    this.items.set(`${pod.namespace}/${pod.name}`, pod);
    return pod;
  }
  remove(name: string): void {
    this.items.delete(`apps/${name}`);
  }
  setNode(name: string, version: string, ready: boolean): void {
    const node = projectNode({ metadata: { name }, status: { nodeInfo: { kubeletVersion: version }, conditions: [{ type: 'Ready', status: ready ? 'True' : 'Unknown' }] } }, interner)!;
    this.nodes.set(name, node);
  }
  pod(namespace: string, name: string) {
    return this.items.get(`${namespace}/${name}`);
  }
  node(name: string) {
    return this.nodes.get(name);
  }
  pods() {
    return this.items.values();
  }
}

/** The AdmissionReview request the API server sends for a kubelet's TokenRequest. */
function kubeletRequest(pod: string, opts: { uid?: string; node?: string; expirationSeconds?: number; audiences?: string[] } = {}): TokenRequestReview {
  const node = opts.node ?? 'node-1';
  return {
    namespace: 'apps',
    userInfo: { username: `system:node:${node}`, groups: ['system:nodes', 'system:authenticated'] },
    object: {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: {
        audiences: opts.audiences ?? [],
        expirationSeconds: opts.expirationSeconds ?? 3607,
        boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: pod, uid: opts.uid ?? `uid-${pod}` },
      },
    },
  };
}

function rig() {
  let now = T0;
  const pods = new Directory();
  const observer = new TokenRefreshObserver({ pods, marginSeconds: MARGIN, syncFrequencySeconds: SYNC, now: () => now });
  observer.start();
  return {
    pods,
    observer,
    at: (seconds: number) => (now = T0 + seconds * 1000),
  };
}

describe('TokenRefreshObserver: due times', () => {
  it('reports a 600 s token overdue only after 480 s + 1.5 pod syncs + the margin without a refresh', () => {
    const { pods, observer, at } = rig();
    pods.add(podObject('short', { expirationSeconds: 600 }));
    assert.equal(observer.record(kubeletRequest('short', { expirationSeconds: 600, audiences: ['vault'] })), 'recorded');
    const due = 480 + 90 + MARGIN;
    at(due);
    assert.deepEqual(observer.overdue(), []);
    at(due + 1);
    const [o, ...rest] = observer.overdue();
    assert.equal(rest.length, 0);
    assert.deepEqual(
      { ...o, dueMs: o!.dueMs - T0 },
      {
        namespace: 'apps',
        name: 'short',
        uid: 'uid-short',
        node: 'node-1',
        kubeletVersion: 'v1.36.3',
        audiences: ['vault'],
        requestedSeconds: 600,
        lastRefreshMs: T0,
        dueMs: due * 1000,
        lateSeconds: 1,
        podTerminating: false,
        nodeNotReady: false,
      },
    );
    // The refresh comes: on time again.
    observer.record(kubeletRequest('short', { expirationSeconds: 600, audiences: ['vault'] }));
    assert.deepEqual(observer.overdue(), []);
  });

  it('expects the extended 3607 s kube-api-access token again after 48 minutes, not a year', () => {
    const { pods, observer, at } = rig();
    pods.add(podObject('web'));
    observer.record(kubeletRequest('web'));
    at(2886 + 90 + MARGIN);
    assert.deepEqual(observer.overdue(), []);
    at(2886 + 90 + MARGIN + 60);
    assert.deepEqual(
      observer.overdue().map((o) => [o.name, o.requestedSeconds, o.audiences, o.lateSeconds]),
      [['web', 3607, [], 60]],
    );
  });

  it('judges only Running pods, and says what the cache shows about the pod and its node', () => {
    const { pods, observer, at } = rig();
    pods.add(podObject('done', { phase: 'Succeeded' }));
    pods.add(podObject('leaving', { deleting: true }));
    pods.add(podObject('orphan', { node: 'node-2' }));
    pods.setNode('node-2', 'v1.29.14', false);
    for (const name of ['done', 'leaving']) observer.record(kubeletRequest(name));
    observer.record(kubeletRequest('orphan', { node: 'node-2' }));
    at(4000);
    const overdue = observer.overdue();
    assert.deepEqual(
      overdue.map((o) => [o.name, o.kubeletVersion, o.podTerminating, o.nodeNotReady]),
      [
        ['leaving', 'v1.36.3', true, false],
        ['orphan', 'v1.29.14', false, true],
      ],
    );
    assert.deepEqual(likelyCauses(overdue[0]!).map((c) => c.code), ['pod-terminating']);
    assert.deepEqual(likelyCauses(overdue[1]!, ['data']).map((c) => c.text), [
      "claim data Terminating: kubelets without the fix of kubernetes#130442 stop refreshing the pod's tokens",
      'node not Ready: its kubelet is down or cannot reach the API server',
    ]);
  });

  it('records nothing but nodes asking for tokens bound to pods', () => {
    const { pods, observer } = rig();
    pods.add(podObject('web'));
    const human = { ...kubeletRequest('web'), userInfo: { username: 'alice', groups: ['system:authenticated'] } };
    assert.equal(observer.record(human), 'not-a-node');
    const nodeNamedOnly = { ...kubeletRequest('web'), userInfo: { username: 'system:node:node-1', groups: [] } };
    assert.equal(observer.record(nodeNamedOnly), 'not-a-node');
    const unbound = kubeletRequest('web');
    delete unbound.object!.spec.boundObjectRef;
    assert.equal(observer.record(unbound), 'not-pod-bound');
    const badLifetime = kubeletRequest('web');
    badLifetime.object!.spec.expirationSeconds = '3600';
    assert.equal(observer.record(badLifetime), 'malformed');
    const badAudiences = kubeletRequest('web');
    badAudiences.object!.spec.audiences = [1];
    assert.equal(observer.record(badAudiences), 'malformed');
    assert.deepEqual({ ...observer.stats(), observingSince: undefined }, { observing: true, observingSince: undefined, pods: 0, tokens: 0 });
  });
});

describe('TokenRefreshObserver: hand-over', () => {
  it('starts empty and reports nothing before a TokenRequest proves the webhook reaches it', () => {
    const { pods, observer, at } = rig();
    pods.add(podObject('web'));
    at(100_000);
    assert.deepEqual(observer.overdue(), [], 'no TokenRequest received yet: not observing anything');
    assert.equal(observer.stats().observingSince, undefined);
  });

  it('judges a pod it never saw only after a whole refresh period of observation', () => {
    const { pods, observer, at } = rig();
    pods.add(podObject('seen'));
    pods.add(podObject('stale'));
    pods.add(podObject('short', { expirationSeconds: 600 }));
    observer.record(kubeletRequest('seen')); // observation begins at T0
    at(480 + 90 + MARGIN);
    assert.deepEqual(observer.overdue(), [], 'the 600 s pod may still refresh');
    at(480 + 90 + MARGIN + 1);
    assert.deepEqual(observer.overdue().map((o) => [o.name, o.lastRefreshMs, o.requestedSeconds]), [['short', undefined, undefined]]);
    pods.remove('short');
    at(2886 + 90 + MARGIN);
    assert.deepEqual(observer.overdue(), [], 'the 3607 s pod it never saw may still refresh');
    at(2886 + 90 + MARGIN + 30);
    assert.deepEqual(observer.overdue().map((o) => o.name).sort(), ['seen', 'stale']);
  });

  it('forgets everything when it stops observing, and a new term starts from nothing', () => {
    const { pods, observer, at } = rig();
    pods.add(podObject('web'));
    observer.record(kubeletRequest('web'));
    at(10_000);
    assert.equal(observer.overdue().length, 1);
    observer.stop();
    assert.deepEqual(observer.stats(), { observing: false, observingSince: undefined, pods: 0, tokens: 0 });
    assert.equal(observer.record(kubeletRequest('web')), 'not-observing');
    assert.deepEqual(observer.overdue(), []);
    observer.start(); // leader again: what it saw in its last term does not count
    assert.deepEqual(observer.overdue(), []);
    at(10_001);
    observer.record(kubeletRequest('other-pod-not-cached'));
    assert.deepEqual(observer.overdue(), [], 'web was not seen in this term, and a whole period has not passed');
  });
});

describe('TokenRefreshObserver: memory bound', () => {
  it('frees a pod when the cache drops it, and a recreated pod of the same name starts afresh', () => {
    const { pods, observer } = rig();
    pods.add(podObject('web'));
    pods.add(podObject('db'));
    observer.record(kubeletRequest('web'));
    observer.record(kubeletRequest('web', { expirationSeconds: 600, audiences: ['vault'] }));
    observer.record(kubeletRequest('db'));
    assert.deepEqual([observer.stats().pods, observer.stats().tokens], [2, 3]);
    pods.remove('web');
    observer.sweep();
    assert.deepEqual([observer.stats().pods, observer.stats().tokens], [2, 3], 'kept through one sweep (the cache may lag)');
    observer.sweep();
    assert.deepEqual([observer.stats().pods, observer.stats().tokens], [1, 1]);
    pods.add(podObject('db', { uid: 'uid-db-2' }));
    observer.sweep();
    assert.deepEqual([observer.stats().pods, observer.stats().tokens], [0, 0], 'another pod under the same name');
    observer.record(kubeletRequest('db', { uid: 'uid-db-2' }));
    assert.deepEqual([observer.stats().pods, observer.stats().tokens], [1, 1]);
  });

  it('keeps pods the cache does not know within an allowance, and a bounded number of tokens per pod', () => {
    const { pods, observer } = rig();
    for (let i = 0; i < UNKNOWN_POD_ALLOWANCE; i++) assert.equal(observer.record(kubeletRequest(`ghost-${i}`)), 'recorded');
    assert.equal(observer.record(kubeletRequest('one-more')), 'over-allowance');
    pods.add(podObject('ghost-0'));
    observer.sweep(); // ghost-0 is known now (one place in the allowance free); the rest are kept one more sweep
    assert.equal(observer.record(kubeletRequest('one-more')), 'recorded');
    assert.equal(observer.record(kubeletRequest('two-more')), 'over-allowance');
    observer.sweep();
    assert.equal(observer.stats().pods, 2, 'ghost-0, and one-more until the next sweep');
    observer.sweep();
    assert.equal(observer.stats().pods, 1);

    pods.add(podObject('many'));
    for (let i = 0; i < MAX_TOKENS_PER_POD; i++) assert.equal(observer.record(kubeletRequest('many', { audiences: [`aud-${i}`] })), 'recorded');
    assert.equal(observer.record(kubeletRequest('many', { audiences: ['one-too-many'] })), 'too-many-tokens');
  });

  it('holds 10,000 pods and frees them all when they go', () => {
    const { pods, observer } = rig();
    for (let i = 0; i < 10_000; i++) {
      pods.add(podObject(`p-${i}`));
      observer.record(kubeletRequest(`p-${i}`));
    }
    assert.deepEqual([observer.stats().pods, observer.stats().tokens], [10_000, 10_000]);
    pods.items.clear();
    observer.sweep();
    observer.sweep();
    assert.deepEqual([observer.stats().pods, observer.stats().tokens], [0, 0]);
  });
});
