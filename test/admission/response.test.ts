// The wire format of answers: reviewJson is JSON.stringify of the AdmissionReview, whatever the
// response holds (its template for a plain allow included), and fromDecision's shapes.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { PatchOperation } from '../../src/admission/patch.js';
import { allowed, denied, fromDecision, patchJson, patched, review, reviewJson, withWarnings } from '../../src/admission/response.js';

describe('patchJson', () => {
  it('is exactly JSON.stringify of the operations, whatever their values', () => {
    const cases: PatchOperation[][] = [
      [],
      [{ op: 'add', path: '/metadata/labels/tokenguard.io~1pvc-token-risk', value: 'true' }],
      [{ op: 'add', path: '/metadata/annotations', value: { 'a"b': 'é\n', n: 1, list: [true, null] } }],
      [{ op: 'replace', path: '/spec/x~0y', value: 2 }, { op: 'remove', path: '/metadata/labels/a' }, { op: 'test', path: '/q', value: null }],
      [{ op: 'add', path: '/odd/"quoted"\\', value: 'tab\there \u2028 😀' }],
      [{ op: 'add', path: '/v', value: undefined }],
    ];
    for (const ops of cases) assert.equal(patchJson(ops), JSON.stringify(ops), JSON.stringify(ops));
  });
});

describe('reviewJson', () => {
  it('is exactly JSON.stringify(review(response)), on the plain-allow template and off it', () => {
    const uids = ['a98f1175-d66f-44f4-8fbb-ef70b99ec077', 'odd "uid" \\ with\nescapes é'];
    for (const uid of uids) {
      const shapes = [
        allowed(uid),
        denied(uid, 'no'),
        withWarnings(allowed(uid), ['careful']),
        patched(allowed(uid), [{ op: 'add', path: '/metadata/labels', value: { a: 'b' } }]),
        { ...allowed(uid), auditAnnotations: { 'p.k': 'v' } },
        { uid, allowed: false },
      ];
      for (const r of shapes) assert.equal(reviewJson(r), JSON.stringify(review(r)), JSON.stringify(r));
    }
  });

  it('a plain allow from the engine takes the template and still parses as the AdmissionReview', () => {
    const r = fromDecision('u-1', { allowed: true, warnings: [], auditAnnotations: {}, findings: [], fired: [] });
    assert.deepEqual(JSON.parse(reviewJson(r)), { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: 'u-1', allowed: true } });
  });
});
