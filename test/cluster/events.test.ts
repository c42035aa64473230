// EventRecorder.emit against the fake API server (which takes Event creates and patches as
// kube-apiserver does): Events land on the object involved, in its namespace; repeats aggregate
// into one Event whose count rises; each object's writes are rate-limited; the queue is bounded;
// and emit never waits for the API server.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KubeConfig } from '@kubernetes/client-node';
import { EventRecorder, type ObjectEventSpec } from '../../src/cluster/events.js';
import { eventsRecorded } from '../../src/cluster/metrics.js';
import { createLogger } from '../../src/observability/log.js';
import { until } from '../helpers/eventually.js';
import { FakeApiServer, statusBody } from '../helpers/fake-apiserver.js';

const pvc = (name: string, message = 'DELETE by admin denied: [pvc-in-use] in use'): ObjectEventSpec => ({
  regarding: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace: 'shop', name, uid: `uid-${name}` },
  type: 'Warning',
  reason: 'PolicyViolation',
  message,
});

describe('EventRecorder.emit', () => {
  let fake: FakeApiServer;
  let kc: KubeConfig;
  const lines: any[] = [];
  const logger = createLogger('debug', (l) => lines.push(JSON.parse(l)));
  before(async () => {
    fake = await FakeApiServer.start();
    kc = new KubeConfig();
    kc.loadFromString(fake.kubeconfig());
  });
  after(() => fake.close());

  const writes = (name: string) => fake.requests.filter((r) => r.path.startsWith('/api/v1/namespaces/shop/events') && (r.method === 'POST' || r.method === 'PATCH') && eventFor(name, r.path));
  const eventFor = (name: string, path: string) => {
    const last = path.split('/').pop()!;
    return last === 'events' || last.startsWith(`${name}.`);
  };
  const eventsOf = (name: string) => fake.list('events', 'shop').filter((e) => e.involvedObject.name === name);

  it('records the Event on the object involved, in its namespace, as kubectl describe finds it', async () => {
    const rec = new EventRecorder({ kc, logger, namespace: 'tokenguard' });
    rec.emit(pvc('data'));
    await rec.flushed();
    const [e] = eventsOf('data');
    assert.ok(e, 'created');
    assert.deepEqual(e.involvedObject, { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace: 'shop', name: 'data', uid: 'uid-data' });
    assert.equal(e.metadata.namespace, 'shop');
    assert.match(e.metadata.name, /^data\./);
    assert.equal(e.reason, 'PolicyViolation');
    assert.equal(e.type, 'Warning');
    assert.equal(e.count, 1);
    assert.equal(e.source.component, 'tokenguard');
  });

  it('50 repeats are one Event with count 50, written a few times, not 50', async () => {
    const rec = new EventRecorder({ kc, logger, namespace: 'tokenguard', burst: 3, refillMs: 50 });
    const before = writes('loop').length;
    for (let i = 0; i < 50; i++) {
      rec.emit(pvc('loop'));
      if (i % 10 === 0) await new Promise((r) => setTimeout(r, 15));
    }
    await rec.flushed();
    const events = eventsOf('loop');
    assert.equal(events.length, 1, 'one Event');
    assert.equal(events[0]!.count, 50);
    assert.ok(Date.parse(events[0]!.lastTimestamp) >= Date.parse(events[0]!.firstTimestamp));
    const n = writes('loop').length - before;
    assert.ok(n >= 2 && n <= 8, `${n} writes for 50 occurrences`);
  });

  it('a full bucket holds the rest back until it refills; other objects are not held back', async () => {
    const rec = new EventRecorder({ kc, logger, namespace: 'tokenguard', burst: 1, refillMs: 400 });
    rec.emit(pvc('slow', 'first'));
    rec.emit(pvc('slow', 'second'));
    rec.emit(pvc('other'));
    await until(() => eventsOf('other').length === 1 && eventsOf('slow').length === 1, 'the first Event of each object');
    assert.deepEqual(eventsOf('slow').map((e) => e.message), ['first'], 'the second waits for a token');
    await rec.flushed();
    assert.deepEqual(eventsOf('slow').map((e) => e.message).sort(), ['first', 'second']);
  });

  it('never waits for the API server, and drops (counting) what a full queue cannot hold', async () => {
    let held = 0;
    fake.route('POST', /^\/api\/v1\/namespaces\/stuck\/events$/, () => {
      held++;
      return new Promise(() => {}); // never answers
    });
    const rec = new EventRecorder({ kc, logger, namespace: 'tokenguard', burst: 1, refillMs: 60_000 });
    const started = performance.now();
    for (let i = 0; i < 1500; i++) rec.emit({ ...pvc(`p${i}`), regarding: { kind: 'Pod', namespace: 'stuck', name: `p${i}` } });
    assert.ok(performance.now() - started < 500, 'emit only queues');
    assert.equal(rec.dropped, 1500 - 1000 - 4, 'the queue holds 1000 beyond the 4 writes in flight');
    await until(() => held === 4, 'four writes in flight');
  });

  it('failed writes are counted, and logged once a minute with how many, not once each', async () => {
    fake.route('POST', /^\/api\/v1\/namespaces\/forbidden\/events$/, (_req, res, { fake: f }) =>
      f.sendJson(res, 403, statusBody(403, 'Forbidden', 'events is forbidden: User "system:serviceaccount:tokenguard:tokenguard" cannot create resource "events"')),
    );
    const failed = async () => (await eventsRecorded.get()).values.find((v) => v.labels.outcome === 'failed')?.value ?? 0;
    const before = await failed();
    const logged = lines.length;
    const rec = new EventRecorder({ kc, logger, namespace: 'tokenguard' });
    for (let i = 0; i < 10; i++) rec.emit({ ...pvc(`f${i}`), regarding: { kind: 'Pod', namespace: 'forbidden', name: `f${i}` } });
    await rec.flushed();
    assert.equal((await failed()) - before, 10);
    const said = lines.slice(logged).filter((l) => l.msg === 'could not record Event');
    assert.equal(said.length, 1, JSON.stringify(said));
    assert.match(said[0].error, /^HTTP 403: events is forbidden/);
  });

  it('an expired Event (404 on patch) is created anew', async () => {
    const rec = new EventRecorder({ kc, logger, namespace: 'tokenguard', burst: 10, refillMs: 10 });
    rec.emit(pvc('gone'));
    await rec.flushed();
    const [first] = eventsOf('gone');
    fake.remove('events', 'shop', first!.metadata.name);
    rec.emit(pvc('gone'));
    await rec.flushed();
    const now = eventsOf('gone');
    assert.equal(now.length, 1);
    assert.notEqual(now[0]!.metadata.name, first!.metadata.name);
    assert.equal(now[0]!.count, 2);
  });
});
