// The gauges of what the cache knows about claims and token refresh: running pods with a claim and
// a projected token on a kubelet with kubernetes#130442 (node-a, v1.31.2, in the captured state;
// node-b runs a fixed v1.33.1), and claims whose deletion was admitted while such pods use them.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { registry } from '../../src/observability/metrics.js';
import { until } from '../helpers/eventually.js';
import { podLike, startCacheRig, type CacheRig } from './helpers.js';

describe('claim and token-refresh gauges', () => {
  let rig: CacheRig;
  before(async () => {
    rig = await startCacheRig();
  });
  after(() => rig.close());

  it('counts only pods on affected kubelets, apart by whether a claim is Terminating', async () => {
    const { fake, cache } = rig;
    const base = cache.claimRisk();
    fake.upsert('pods', podLike('r-affected', { namespace: 'risk', nodeName: 'node-a', claim: 'data' }));
    fake.upsert('pods', podLike('r-fixed', { namespace: 'risk', nodeName: 'node-b', claim: 'data' }));
    fake.upsert('pods', podLike('r-no-token', { namespace: 'risk', nodeName: 'node-a', claim: 'data', token: false }));
    fake.upsert('pods', podLike('r-done', { namespace: 'risk', nodeName: 'node-a', claim: 'data', phase: 'Succeeded' }));
    fake.upsert('pods', podLike('r-pending', { namespace: 'risk', claim: 'data' }));
    fake.upsert('pods', podLike('r-other', { namespace: 'risk', nodeName: 'node-a', claim: 'other' }));
    await until(() => cache.podsUsingClaim('risk', 'data').length === 5 && cache.podsUsingClaim('risk', 'other').length === 1, 'the pods in the cache');

    let risk = cache.claimRisk();
    assert.equal(risk.podsAtRisk.bound - base.podsAtRisk.bound, 2, 'r-affected and r-other');
    assert.equal(risk.podsAtRisk.terminating - base.podsAtRisk.terminating, 0);
    assert.equal(risk.claimsTerminatingInUse - base.claimsTerminatingInUse, 0);

    cache.claimDeleted('risk', 'data');
    cache.claimDeleted('risk', 'unused'); // no pod uses it: nothing Terminating is held
    risk = cache.claimRisk();
    assert.equal(risk.claimsTerminatingInUse - base.claimsTerminatingInUse, 1);
    assert.equal(risk.podsAtRisk.terminating - base.podsAtRisk.terminating, 1, 'r-affected: its token has stopped refreshing');
    assert.equal(risk.podsAtRisk.bound - base.podsAtRisk.bound, 1, 'r-other');
    const text = (await registry.getSingleMetricAsString('tokenguard_pods_token_refresh_at_risk')) + (await registry.getSingleMetricAsString('tokenguard_claims_terminating_in_use'));
    assert.match(text, new RegExp(`tokenguard_pods_token_refresh_at_risk\\{claim="terminating"\\} ${risk.podsAtRisk.terminating}\\b`));
    assert.match(text, new RegExp(`tokenguard_claims_terminating_in_use ${risk.claimsTerminatingInUse}\\b`));

    // The scheduled pods go: the claim is gone too, and forgotten.
    for (const name of ['r-affected', 'r-fixed', 'r-no-token']) fake.remove('pods', 'risk', name);
    await until(() => cache.podsUsingClaim('risk', 'data').length === 2, 'the scheduled pods gone');
    risk = cache.claimRisk();
    assert.equal(risk.claimsTerminatingInUse - base.claimsTerminatingInUse, 0, 'only finished and unscheduled pods remain');
    assert.equal(risk.podsAtRisk.terminating - base.podsAtRisk.terminating, 0);
  });
});
