// pvc-token-risk: which pods are at risk, the exact object after applying the patch with an
// independent JSON Patch implementation (fast-json-patch), idempotence, creating missing maps,
// `/` escaped as `~1`, controller pods without a name, stale markers, and the validating re-check.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { applyJsonPatch, markedAtRisk } from '../helpers/json-patch.js';
import { Engine } from '../../src/admission/engine.js';
import type { AdmissionRequest } from '../../src/admission/review.js';
import { resolveConfig } from '../../src/config/load.js';
import { pvcTokenRiskPolicy, POLICY, RISK_ANNOTATION, RISK_LABEL } from '../../src/policies/pvc-token-risk.js';
import { reviewByPrefix } from '../helpers/fixtures.js';
import { expectedManifests, manifest, requestFor } from './manifest-reviews.js';
import type { KubeObject } from '../../src/k8s/object.js';

const engine = new Engine({
  config: resolveConfig({ mode: 'enforce' }, 'test', [pvcTokenRiskPolicy]),
  policies: [pvcTokenRiskPolicy],
});

function mutateTwice(req: AdmissionRequest): { patched: KubeObject; ops: unknown[] } {
  const first = engine.mutate(req);
  assert.ok(first.patch, 'expected a patch');
  const patched = applyJsonPatch(req.object!, first.patch);
  const second = engine.mutate({ ...req, object: structuredClone(patched) });
  assert.equal(second.patch, undefined, 'reinvocation must not patch again');
  return { patched, ops: first.patch };
}

describe('pvc-token-risk: captured Pod CREATEs', () => {
  const cases: [string, string][] = [
    ['003', 'claims=data;tokens=istio-token,kube-api-access-9zkc8'],
    ['009', 'claims=scratch-scratch;tokens=kube-api-access-q76rc'],
    ['015', 'claims=data;tokens=kube-api-access-ncsc2'],
    ['020', 'claims=state-kafka-0;tokens=aws,kube-api-access-zqp42'],
    ['030', 'claims=logs;tokens=vault-token,kube-api-access-xlvh6'],
    ['035', 'claims=logs;tokens=vault-token,kube-api-access-l8nsf'],
    ['066', 'claims=shared;tokens=kube-api-access-24qx2'],
    ['068', 'claims=shared;tokens=kube-api-access-wdsl6'],
  ];
  for (const [prefix, annotation] of cases) {
    it(`${prefix}: label and annotation, exactly, and a second call is a no-op`, () => {
      const req = reviewByPrefix(prefix).request;
      const { patched } = mutateTwice(req);
      assert.deepEqual(patched, markedAtRisk(req.object, annotation));
    });
  }

  it('escapes the `/` of the keys as ~1 and keeps existing labels and annotations (003)', () => {
    const req = reviewByPrefix('003').request;
    assert.deepEqual(engine.mutate(req).patch, [
      { op: 'add', path: '/metadata/labels/tokenguard.io~1pvc-token-risk', value: 'true' },
      { op: 'add', path: '/metadata/annotations/tokenguard.io~1pvc-token-risk', value: 'claims=data;tokens=istio-token,kube-api-access-9zkc8' },
    ]);
  });

  it('creates the maps when the pod has neither labels nor annotations', () => {
    const req = reviewByPrefix('009').request;
    delete req.object.metadata.annotations;
    assert.equal(req.object.metadata.labels, undefined);
    const { patched, ops } = mutateTwice(req);
    assert.deepEqual(ops, [
      { op: 'add', path: '/metadata/labels', value: { [RISK_LABEL]: 'true' } },
      { op: 'add', path: '/metadata/annotations', value: { [RISK_ANNOTATION]: 'claims=scratch-scratch;tokens=kube-api-access-q76rc' } },
    ]);
    assert.deepEqual(patched, markedAtRisk(req.object, 'claims=scratch-scratch;tokens=kube-api-access-q76rc'));
  });

  it('creates metadata itself when it is missing', () => {
    const req = reviewByPrefix('015').request;
    delete req.object.metadata;
    const { patched } = mutateTwice(req);
    assert.deepEqual(patched.metadata, {
      labels: { [RISK_LABEL]: 'true' },
      annotations: { [RISK_ANNOTATION]: 'claims=data;tokens=kube-api-access-ncsc2' },
    });
  });

  for (const prefix of ['005', '007', '011', '013', '024', '040', '061', '063']) {
    it(`${prefix}: not at risk, no patch`, () => {
      assert.equal(engine.mutate(reviewByPrefix(prefix).request).patch, undefined);
    });
  }

  it('a Pod UPDATE is not ours (017)', () => {
    assert.deepEqual(engine.matchingPolicies(reviewByPrefix('017').request, 'mutate'), []);
  });
});

describe('pvc-token-risk: names, duplicates and stale markers', () => {
  it('a controller pod without a name lists its generic ephemeral claim as <pod>-<volume>', () => {
    const req = reviewByPrefix('009').request;
    req.object.metadata = { generateName: 'batch-7f9c-', namespace: 'shop' };
    delete req.name;
    const { patched } = mutateTwice(req);
    assert.equal(patched.metadata.annotations[RISK_ANNOTATION], 'claims=<pod>-scratch;tokens=kube-api-access-q76rc');
  });

  it('lists a claim mounted by two volumes once, and token volumes in volume order', () => {
    const req = reviewByPrefix('003').request;
    req.object.spec.volumes.unshift({ name: 'data-again', persistentVolumeClaim: { claimName: 'data', readOnly: true } });
    assert.equal(mutateTwice(req).patched.metadata.annotations[RISK_ANNOTATION], 'claims=data;tokens=istio-token,kube-api-access-9zkc8');
  });

  it('corrects a wrong value copied from another pod', () => {
    const req = reviewByPrefix('003').request;
    req.object.metadata.labels[RISK_LABEL] = 'false';
    req.object.metadata.annotations[RISK_ANNOTATION] = 'claims=old;tokens=old';
    const { patched } = mutateTwice(req);
    assert.equal(patched.metadata.labels[RISK_LABEL], 'true');
    assert.equal(patched.metadata.annotations[RISK_ANNOTATION], 'claims=data;tokens=istio-token,kube-api-access-9zkc8');
  });

  it('removes the markers from a pod that is not at risk (copied YAML), so the selector stays honest', () => {
    const req = reviewByPrefix('005').request;
    req.object.metadata.labels = { app: 'plain', [RISK_LABEL]: 'true' };
    req.object.metadata.annotations[RISK_ANNOTATION] = 'claims=data;tokens=x';
    const { patched } = mutateTwice(req);
    const want = structuredClone(req.object);
    delete want.metadata.labels[RISK_LABEL];
    delete want.metadata.annotations[RISK_ANNOTATION];
    assert.deepEqual(patched, want);
  });

  it('the hand-written Pod manifest (pod.yaml)', () => {
    const object = manifest('pod.yaml');
    const { patched } = mutateTwice(requestFor(object));
    assert.deepEqual(patched, markedAtRisk(object, expectedManifests().podRiskAnnotation));
  });
});

describe('pvc-token-risk: the validating re-check', () => {
  it('warns (never denies, even in enforce) about a risk pod that arrives without the label', async () => {
    const d = await engine.validate(reviewByPrefix('004').request);
    assert.equal(d.allowed, true);
    assert.deepEqual(d.findings.map(({ policy, severity, message, path }) => ({ policy, severity, message, path })), [
      {
        policy: POLICY,
        severity: 'warn',
        message: 'pod mounts a PVC and a projected token but lacks the tokenguard.io/pvc-token-risk label: was /mutate skipped?',
        path: 'metadata.labels',
      },
    ]);
    assert.match(d.findings[0]!.detail!, /claims=data;tokens=istio-token,kube-api-access-9zkc8/);
    assert.ok(d.warnings[0]!.length <= 120);
  });

  it('is quiet once the mutating side did its work', async () => {
    const req = reviewByPrefix('004').request;
    const patch = engine.mutate(reviewByPrefix('003').request).patch;
    const d = await engine.validate({ ...req, object: applyJsonPatch(req.object, patch) });
    assert.deepEqual(d.findings, []);
  });

  for (const prefix of ['006', '008', '012', '025', '041', '062']) {
    it(`${prefix}: not at risk, no warning`, async () => {
      assert.deepEqual((await engine.validate(reviewByPrefix(prefix).request)).findings, []);
    });
  }
});
