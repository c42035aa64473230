// Every AdmissionReview captured from a real kube-apiserver is accepted on both routes, through
// real HTTPS against the started server: 200, the uid echoed, a well-formed response.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REVIEWS_DIR, reviewFiles } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('captured AdmissionReviews over HTTPS', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.shutdown());

  const files = reviewFiles();
  it('has the captured fixtures', () => {
    assert.ok(files.length >= 60, `expected the captured fixtures, found ${files.length}`);
  });

  for (const file of files) {
    for (const route of ['/validate', '/mutate']) {
      it(`${route} ${file}`, async () => {
        const body = readFileSync(join(REVIEWS_DIR, file));
        const uid = JSON.parse(body.toString()).request.uid;
        const res = await server.post(`${route}?timeout=10s`, body);
        assert.equal(res.status, 200, res.text);
        assert.equal(res.json.apiVersion, 'admission.k8s.io/v1');
        assert.equal(res.json.kind, 'AdmissionReview');
        assert.equal(res.json.response.uid, uid);
        assert.equal(typeof res.json.response.allowed, 'boolean');
        if (res.json.response.patch !== undefined) assert.equal(res.json.response.patchType, 'JSONPatch');
      });
    }
  }
});
