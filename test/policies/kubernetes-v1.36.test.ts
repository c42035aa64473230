// The reviews a real Kubernetes v1.36 kube-apiserver sent (test/fixtures/admission-reviews-v1.36),
// through a real tokenguard server whose cache follows the fake API server holding the captured v1.36
// pod. What v1.36 adds — `metadata.generation` on pods, `userInfo.extra` with
// `authentication.kubernetes.io/credential-id` — must change nothing: the same decisions as the
// v1.26 captures of the same scenario (066/067 and 070).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeReview } from '../../src/admission/review.js';
import { BUILTIN_POLICIES } from '../../src/policies/index.js';
import { applyJsonPatch } from '../helpers/json-patch.js';
import { clusterState, FIXTURES } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { startCacheRig, type CacheRig } from '../cluster/helpers.js';
import { until } from '../helpers/eventually.js';

const DIR = join(FIXTURES, 'admission-reviews-v1.36');
const captured = (prefix: string): any => {
  const file = readdirSync(DIR).find((f) => f.startsWith(prefix + '-'));
  if (!file) throw new Error(`no fixture ${prefix}-* in ${DIR}`);
  return JSON.parse(readFileSync(join(DIR, file), 'utf8'));
};

describe('reviews from a real v1.36 kube-apiserver', () => {
  let rig: CacheRig;
  let server: TestServer;

  before(async () => {
    rig = await startCacheRig({ captured: false });
    // The state right after the captures: node-a runs a kubelet affected by kubernetes#130442, and
    // db-1 (the pod of 102, as v1.36 stored it: with metadata.generation) runs there.
    const node = structuredClone(clusterState('nodes.json').items[0]);
    node.metadata = { ...node.metadata, name: 'node-a', uid: 'uid-node-a' };
    node.status.nodeInfo.kubeletVersion = 'v1.31.2';
    rig.fake.upsert('nodes', node);
    const pod = structuredClone(captured('102').request.object);
    pod.metadata.uid = 'uid-db-1';
    pod.status = { phase: 'Running' };
    rig.fake.upsert('pods', pod);
    await until(() => rig.cache.podsUsingClaim('shop', 'shared').length === 1 && !!rig.cache.node('node-a'), 'the pod and its node in the cache');
    server = await startTestServer({ policies: BUILTIN_POLICIES, cluster: rig.cache, config: { mode: 'enforce' } });
  });
  after(async () => {
    await server.shutdown();
    await rig.close();
  });

  it('they carry what v1.36 added, and decode', () => {
    for (const prefix of ['101', '102', '103']) {
      const r = decodeReview(captured(prefix)).request;
      assert.match(r.userInfo.extra?.['authentication.kubernetes.io/credential-id']?.[0] ?? '', /^X509SHA256=[0-9a-f]{64}$/, prefix);
    }
    // The API server sets it between the mutating and the validating webhooks.
    assert.equal(captured('101').request.object.metadata.generation, undefined);
    assert.equal(captured('102').request.object.metadata.generation, 1);
  });

  it('101 /mutate: the pvc-token-risk label and annotation, as for the v1.26 capture 066', async () => {
    const body = captured('101');
    const res = await server.post('/mutate', body);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.response.allowed, true);
    const patched = applyJsonPatch(body.request.object, JSON.parse(Buffer.from(res.json.response.patch, 'base64').toString('utf8')));
    const tokenVolume = body.request.object.spec.volumes.find((v: any) => v.name.startsWith('kube-api-access-')).name;
    assert.equal(patched.metadata.labels['tokenguard.io/pvc-token-risk'], 'true');
    assert.equal(patched.metadata.annotations['tokenguard.io/pvc-token-risk'], `claims=shared;tokens=vault-token,${tokenVolume}`);
  });

  it('102 /validate: the vault token of 600 s passes, as in 067', async () => {
    const res = await server.post('/validate', captured('102'));
    assert.equal(res.status, 200, res.text);
    // /mutate was not called for this copy, so only the re-check of the label speaks.
    assert.deepEqual(res.json.response.warnings, [
      'pod mounts a PVC and a projected token but lacks the tokenguard.io/pvc-token-risk label: was /mutate skipped?',
    ]);
    assert.equal(res.json.response.allowed, true);
  });

  it('103 DELETE of the claim db-1 uses: denied naming the pod, with the kubelet warning, as 070', async () => {
    const res = await server.post('/validate', captured('103'));
    assert.equal(res.status, 200, res.text);
    const r = res.json.response;
    assert.equal(r.allowed, false);
    assert.match(r.status.message, /^\[pvc-in-use\] PVC shop\/shared would hang in Terminating: in use by db-1 \(Running on node-a\)\./);
    assert.deepEqual(r.warnings, ['projected tokens stop refreshing (kubelet bug kubernetes#130442) on node-a (v1.31.2)']);
  });
});
