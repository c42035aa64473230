// Denials and break-glass deletions leave an Event on the object involved; dry runs, warn-mode
// findings and plain allows leave none. Driven through the real request listener (supertest) with
// the real pvc-in-use policy and captured PVC DELETE reviews; the sink records what it is given.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import supertest from 'supertest';
import { Engine } from '../../src/admission/engine.js';
import type { PodSummary } from '../../src/admission/policy.js';
import type { ObjectEventSpec } from '../../src/cluster/events.js';
import { resolveConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/observability/log.js';
import { Readiness } from '../../src/observability/readiness.js';
import { pvcInUsePolicy } from '../../src/policies/pvc-in-use.js';
import { projectedTokenLifetimePolicy } from '../../src/policies/projected-token-lifetime.js';
import { BREAK_GLASS_REASON, decisionEvents, DENIED_REASON } from '../../src/server/decision-events.js';
import { createRequestListener } from '../../src/server/server.js';
import { fakeCluster } from '../admission/test-policies.js';
import { reviewByPrefix } from '../helpers/fixtures.js';

const running: PodSummary = { namespace: 'shop', name: 'db-0', uid: 'p1', nodeName: 'node-a', phase: 'Running', claims: [], hasProjectedToken: true };

function rig(mode: 'enforce' | 'warn') {
  const cluster = { ...fakeCluster({}), podsUsingClaim: (ns: string, claim: string) => [{ ...running, namespace: ns, claims: [claim] }] };
  const policies = [pvcInUsePolicy];
  const engine = new Engine({ config: resolveConfig({ mode }, 'test', policies), policies, cluster });
  const emitted: ObjectEventSpec[] = [];
  const deleted: string[] = [];
  const listener = createRequestListener({
    engine: () => engine,
    logger: silentLogger,
    maxBodyBytes: 3 << 20,
    readiness: new Readiness(),
    outcomes: { events: { emit: (e) => emitted.push(e) }, claims: { claimDeleted: (ns, claim) => deleted.push(`${ns}/${claim}`) } },
  });
  const send = async (review: any, path = '/validate') => {
    const res = await supertest(listener).post(path).set('content-type', 'application/json').send(JSON.stringify(review));
    assert.equal(res.status, 200);
    return res.body.response;
  };
  return { emitted, deleted, send };
}

describe('Events for admission decisions', () => {
  it('a denial: one Warning Event on the PVC, with the policy, the reason and who asked', async () => {
    const { emitted, deleted, send } = rig('enforce');
    const review = reviewByPrefix('054'); // DELETE shop/data by admin
    const response = await send(review);
    assert.equal(response.allowed, false);
    assert.deepEqual(deleted, [], 'the claim was not deleted');
    assert.equal(emitted.length, 1);
    const [e] = emitted;
    assert.deepEqual(e!.regarding, { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace: 'shop', name: 'data', uid: review.request.oldObject.metadata.uid });
    assert.equal(e!.type, 'Warning');
    assert.equal(e!.reason, DENIED_REASON);
    assert.match(e!.message, /^DELETE by admin denied: \[pvc-in-use\] PVC shop\/data would hang in Terminating: in use by db-0/);
  });

  it('a break-glass deletion: one Event naming the annotation and the pods still using the claim', async () => {
    const { emitted, deleted, send } = rig('enforce');
    const review = reviewByPrefix('055'); // annotated tokenguard.io/allow-delete=true
    const response = await send(review);
    assert.equal(response.allowed, true);
    assert.deepEqual(deleted, [`${review.request.namespace}/${review.request.name}`], 'the cache learns the claim is Terminating');
    assert.equal(emitted.length, 1);
    assert.equal(emitted[0]!.reason, BREAK_GLASS_REASON);
    assert.equal(emitted[0]!.regarding.name, review.request.name);
    assert.match(emitted[0]!.message, /^\[pvc-in-use\] DELETE by \S+: PVC \S+ deletion allowed by tokenguard\.io\/allow-delete=true \(break glass\); 1 pod still uses it\. Pods using it: db-0/);
  });

  it('none under --dry-run=server, none in warn mode, none from /mutate', async () => {
    const enforce = rig('enforce');
    const dry = reviewByPrefix('054');
    dry.request.dryRun = true;
    assert.equal((await enforce.send(dry)).allowed, false, 'still denied');
    const glass = reviewByPrefix('055');
    glass.request.dryRun = true;
    await enforce.send(glass);
    assert.deepEqual(enforce.emitted, []);
    assert.deepEqual(enforce.deleted, []);

    const warn = rig('warn');
    assert.equal((await warn.send(reviewByPrefix('054'))).allowed, true);
    assert.deepEqual(warn.emitted, []);
    assert.deepEqual(warn.deleted, ['shop/data'], 'allowed in warn mode: Terminating now');
    await enforce.send(reviewByPrefix('054'), '/mutate');
    assert.deepEqual(enforce.emitted, []);
  });
});

describe('Events for a denied workload', () => {
  it('a Deployment CREATE denied in enforce: the Event names the Deployment, with the uid the API server gave it before admission', async () => {
    const policies = [projectedTokenLifetimePolicy];
    const engine = new Engine({ config: resolveConfig({ mode: 'enforce', policies: { 'projected-token-lifetime': { maxSeconds: 3600 } } }, 'test', policies), policies });
    const review = reviewByPrefix('028'); // Deployment shop/api with a projected token
    review.request.object.spec.template.spec.volumes = [
      { name: 't', projected: { sources: [{ serviceAccountToken: { path: 'token', expirationSeconds: 86400 } }] } },
    ];
    const decision = await engine.validate(review.request);
    assert.equal(decision.allowed, false);
    const events = decisionEvents(review.request, decision);
    assert.equal(events.length, 1);
    const { namespace, name, object } = review.request;
    assert.deepEqual(events[0]!.regarding, { apiVersion: 'apps/v1', kind: 'Deployment', namespace, name, uid: object.metadata.uid });
    assert.match(events[0]!.message, /^CREATE by \S+ denied: \[projected-token-lifetime\] token lifetime 86400 s is above the 3600 s maximum/);
  });
});
