// Leader election against the fake API server (real HTTP, the API server's answers to racing
// writes: 409 AlreadyExists on create, 409 Conflict on a stale resourceVersion): one leader among
// candidates starting at once, a hand-over at once on release, a stale holder taken over only after
// a lease duration on the candidate's own clock, and a leader stepping down when another holds the
// Lease.

import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KubeConfig } from '@kubernetes/client-node';
import { ApiClient } from '../../src/cluster/client.js';
import { LeaderElector } from '../../src/cluster/leader-election.js';
import { silentLogger } from '../../src/observability/log.js';
import { eventually } from '../helpers/eventually.js';
import { FakeApiServer } from '../helpers/fake-apiserver.js';

const NS = 'tokenguard';
const LEASE = 'tokenguard-observer';

describe('LeaderElector on a coordination.k8s.io/v1 Lease', () => {
  let fake: FakeApiServer;
  let client: ApiClient;
  const running: LeaderElector[] = [];
  const leading = new Map<string, boolean>();

  before(async () => {
    fake = await FakeApiServer.start();
    const kc = new KubeConfig();
    kc.loadFromFile(fake.kubeconfigPath);
    client = new ApiClient(kc);
  });
  after(() => fake.close());
  afterEach(async () => {
    await Promise.all(running.splice(0).map((e) => e.stop()));
    fake.remove('leases', NS, LEASE);
    leading.clear();
  });

  const candidate = (identity: string, leaseDurationSeconds = 3) => {
    const e = new LeaderElector({
      client,
      namespace: NS,
      name: LEASE,
      identity,
      leaseDurationSeconds,
      renewDeadlineSeconds: 2,
      retryPeriodSeconds: 0.2,
      logger: silentLogger,
      onStartedLeading: () => leading.set(identity, true),
      onStoppedLeading: () => leading.set(identity, false),
    });
    running.push(e);
    return e;
  };
  const holder = () => (fake.get('leases', NS, LEASE)?.spec as { holderIdentity?: string } | undefined)?.holderIdentity;
  const leaders = () => [...leading].filter(([, on]) => on).map(([id]) => id);

  it('three candidates at once: exactly one leads, and it is the Lease holder', async () => {
    const all = ['a', 'b', 'c'].map((id) => candidate(id));
    all.forEach((e) => e.start());
    const [leader] = await eventually(() => leaders().length === 1 && leaders(), 'one leader', 5000);
    // A few renewals later there is still exactly one, and the Lease names it.
    await new Promise((r) => setTimeout(r, 800));
    assert.deepEqual(leaders(), [leader]);
    assert.equal(holder(), leader);
    assert.deepEqual(all.filter((e) => e.isLeader).length, 1);
    const lease = fake.get('leases', NS, LEASE)!;
    assert.equal((lease.spec as { leaseDurationSeconds: number }).leaseDurationSeconds, 3);
    assert.match((lease.spec as { renewTime: string }).renewTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'a MicroTime');
  });

  it('a leader that stops releases the Lease: another takes over at once, not after the lease duration', async () => {
    const a = candidate('a', 30);
    a.start();
    await eventually(() => a.isLeader, 'a leads', 5000);
    const b = candidate('b', 30);
    b.start();
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(b.isLeader, false, 'b waits while a renews');
    const stopped = Date.now();
    await a.stop();
    assert.equal(leading.get('a'), false);
    await eventually(() => b.isLeader, 'b takes over', 5000);
    assert.ok(Date.now() - stopped < 3000, `hand-over took ${Date.now() - stopped} ms with a 30 s lease`);
    assert.equal(holder(), 'b');
    assert.equal((fake.get('leases', NS, LEASE)!.spec as { leaseTransitions: number }).leaseTransitions, 1);
  });

  it("a holder that stopped renewing is taken over after the lease duration, measured on the candidate's clock", async () => {
    // A record written by another machine, with a renewTime far in the future: never compared.
    fake.upsert('leases', {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: LEASE, namespace: NS },
      spec: { holderIdentity: 'gone', leaseDurationSeconds: 2, renewTime: '2099-01-01T00:00:00.000000Z' },
    });
    const b = candidate('b');
    const started = Date.now();
    b.start();
    await eventually(() => b.isLeader, 'b takes the expired Lease', 6000);
    const waited = Date.now() - started;
    assert.ok(waited >= 2000, `took over after ${waited} ms, before the 2 s lease duration`);
    assert.equal(holder(), 'b');
  });

  it('a leader steps down when another holds the Lease', async () => {
    const a = candidate('a');
    a.start();
    await eventually(() => a.isLeader, 'a leads', 5000);
    const lease = fake.get('leases', NS, LEASE)!;
    fake.upsert('leases', { ...lease, spec: { ...(lease.spec as object), holderIdentity: 'intruder' } });
    await eventually(() => leading.get('a') === false, 'a steps down', 5000);
    assert.equal(a.isLeader, false);
  });
});
