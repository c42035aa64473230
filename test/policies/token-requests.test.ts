// TokenRequests (`serviceaccounts/token` CREATE) under the token lifetime and audience policies:
// hand-made tokens are judged like projected volumes, in the same modes and words; a node's
// requests for its pods never are. Reviews captured from a real v1.36 API server (104-106).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURES } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const captured = (file: string): any => JSON.parse(readFileSync(join(FIXTURES, 'admission-reviews-v1.36', file), 'utf8'));
const KUBELET_600 = captured('104-kubelet-token-600-observe-CREATE-serviceaccounts-token-default.json');
const KUBELET_3607 = captured('105-kubelet-token-3607-observe-CREATE-serviceaccounts-token-default.json');
const USER_48H = captured('106-create-token-48h-validate-CREATE-serviceaccounts-token-default.json');

/** The captured 48 h request with other spec fields (a fresh uid each time). */
function handMade(spec: Record<string, unknown>, namespace = 'shop'): any {
  const review = structuredClone(USER_48H);
  Object.assign(review.request.object.spec, spec);
  review.request.namespace = namespace;
  review.request.uid = `uid-${Math.random()}`;
  return review;
}

const ABOVE = 'token lifetime 172800 s is above the 86400 s maximum (token for ServiceAccount "default")';

describe('hand-made TokenRequests', () => {
  let enforce: TestServer;
  let warn: TestServer;
  before(async () => {
    const policies = { 'projected-token-lifetime': { namespaces: [{ namespaces: ['ci'], maxSeconds: 3600 }] } };
    enforce = await startTestServer({ config: { mode: 'enforce', policies } });
    warn = await startTestServer({ config: { mode: 'warn', policies } });
  });
  after(async () => {
    await enforce.shutdown();
    await warn.shutdown();
  });

  it('kubectl create token --duration=48h: denied in enforce, with the same words as for a volume', async () => {
    const res = await enforce.post('/validate', USER_48H);
    assert.equal(res.json.response.allowed, false);
    assert.equal(res.json.response.status.code, 403);
    assert.equal(
      res.json.response.status.message,
      `[projected-token-lifetime] ${ABOVE} (at spec.expirationSeconds). kubelet refreshes a projected token at 80 % of its lifetime or after 24 h anyway, ` +
        'so a longer lifetime only lengthens how long a leaked token stays valid. Fix: set expirationSeconds between 600 and 86400',
    );
  });

  it('... and warned in warn mode', async () => {
    const res = await warn.post('/validate', USER_48H);
    assert.deepEqual(res.json.response.warnings, [ABOVE]);
    assert.equal(res.json.response.allowed, true);
  });

  it("the API server's own audience (filled in when none was asked for) passes; an unknown one is named", async () => {
    const plain = handMade({ expirationSeconds: 3600 });
    assert.deepEqual((await enforce.post('/validate', plain)).json.response, { uid: plain.request.uid, allowed: true });
    const res = await warn.post('/validate', handMade({ expirationSeconds: 3600, audiences: ['https://kubernetes.default.svc', 'billing'] }));
    assert.deepEqual(res.json.response.warnings, ['token audience "billing" is not allowed (token for ServiceAccount "default")']);
  });

  it('per namespace: the bounds of a namespace entry apply', async () => {
    const res = await warn.post('/validate', handMade({ expirationSeconds: 7200 }, 'ci'));
    assert.deepEqual(res.json.response.warnings, ['token lifetime 7200 s is above this namespace\'s 3600 s maximum (token for ServiceAccount "default")']);
    assert.deepEqual((await warn.post('/validate', handMade({ expirationSeconds: 7200 }))).json.response.warnings, undefined);
  });

  it("a 3607 s token made by hand is not the injected volume's: no one-year warning", async () => {
    assert.equal((await warn.post('/validate', handMade({ expirationSeconds: 3607 }))).json.response.warnings, undefined);
  });

  it("a node's requests for its pods are never judged, whatever they ask for", async () => {
    for (const review of [KUBELET_600, KUBELET_3607]) {
      const odd = structuredClone(review);
      odd.request.object.spec.expirationSeconds = 172800;
      odd.request.object.spec.audiences = ['not-allowed-anywhere'];
      const res = await enforce.post('/validate', odd);
      assert.deepEqual(res.json.response, { uid: odd.request.uid, allowed: true });
    }
  });
});
