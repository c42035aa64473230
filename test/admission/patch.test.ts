// JSON Pointer escaping and the map helper, checked against an independent RFC 6902 implementation.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fastJsonPatch from 'fast-json-patch';
import { applyPatchCopyOnWrite, jsonEqual, patchChanges, setMapEntries, type PatchOperation } from '../../src/admission/patch.js';
import { escapePointerToken, pointer } from '../../src/k8s/json-pointer.js';

describe('JSON Pointer', () => {
  it('escapes ~ before / (RFC 6901), so `~1` in a key survives a round trip', () => {
    assert.equal(escapePointerToken('a/b'), 'a~1b');
    assert.equal(escapePointerToken('a~b'), 'a~0b');
    assert.equal(escapePointerToken('~1'), '~01');
    assert.equal(pointer(['metadata', 'annotations', 'tokenguard.io/pvc-risk']), '/metadata/annotations/tokenguard.io~1pvc-risk');
    assert.equal(pointer(['spec', 'volumes', 2]), '/spec/volumes/2');
  });

  for (const key of ['a/b', 'a~b', '~1', '~0/~1', 'plain', '']) {
    it(`a pointer to key ${JSON.stringify(key)} resolves to that key in fast-json-patch and in our applier`, () => {
      const doc = { m: { [key]: 'old' } };
      const ops = [{ op: 'replace' as const, path: pointer(['m', key]), value: 'new' }];
      const theirs = fastJsonPatch.applyPatch(structuredClone(doc), ops, true, false).newDocument;
      const ours = applyPatchCopyOnWrite(doc, ops);
      assert.deepEqual(theirs, { m: { [key]: 'new' } });
      assert.deepEqual(ours, theirs);
    });
  }
});

describe('setMapEntries', () => {
  it('creates the whole missing branch in one add', () => {
    const ops = setMapEntries({ spec: {} }, ['metadata', 'labels'], { 'x/y': '1' });
    assert.deepEqual(ops, [{ op: 'add', path: '/metadata', value: { labels: { 'x/y': '1' } } }]);
  });

  it('creates a missing map, and treats null like missing', () => {
    assert.deepEqual(setMapEntries({ metadata: { labels: null } }, ['metadata', 'labels'], { k: 'v' }), [
      { op: 'add', path: '/metadata/labels', value: { k: 'v' } },
    ]);
  });

  it('adds (or overwrites) only the entries that differ, and nothing when all are present', () => {
    const obj = { metadata: { labels: { same: '1', other: 'old' } } };
    assert.deepEqual(setMapEntries(obj, ['metadata', 'labels'], { same: '1', other: 'new', 'n/ew': '2' }), [
      { op: 'add', path: '/metadata/labels/other', value: 'new' },
      { op: 'add', path: '/metadata/labels/n~1ew', value: '2' },
    ]);
    assert.deepEqual(setMapEntries(obj, ['metadata', 'labels'], { same: '1' }), []);
  });

  // Found by the fuzz tests (test/fuzz): a map that is an array or a string got an `add` under it,
  // which no JSON Patch applier accepts, and pvc-token-risk then "could not run".
  it('adds nothing where the map, or an object on its path, is not a JSON object', () => {
    for (const bad of [[], ['a'], 'text', 7, true]) {
      assert.deepEqual(setMapEntries({ metadata: { annotations: bad } }, ['metadata', 'annotations'], { k: 'v' }), [], JSON.stringify(bad));
      assert.deepEqual(setMapEntries({ metadata: bad }, ['metadata', 'annotations'], { k: 'v' }), [], JSON.stringify(bad));
    }
  });
});

describe('applyPatchCopyOnWrite', () => {
  const pod = () => ({
    metadata: { name: 'web-0', labels: { app: 'web' } },
    spec: { containers: [{ name: 'a' }, { name: 'b' }], volumes: [{ name: 'data' }] },
  });

  it('gives what fast-json-patch gives, leaves the input alone, and shares untouched subtrees', () => {
    const doc = pod();
    const before = structuredClone(doc);
    const ops: PatchOperation[] = [
      { op: 'add', path: '/metadata/annotations', value: { 'x/y': '1' } },
      { op: 'replace', path: '/metadata/labels/app', value: 'api' },
      { op: 'add', path: '/spec/containers/1', value: { name: 'inserted' } },
      { op: 'add', path: '/spec/containers/-', value: { name: 'last' } },
      { op: 'remove', path: '/spec/containers/0' },
      { op: 'test', path: '/metadata/name', value: 'web-0' },
    ];
    const ours = applyPatchCopyOnWrite(doc, ops);
    const theirs = fastJsonPatch.applyPatch(structuredClone(doc), ops as any, true, false).newDocument;
    assert.deepEqual(ours, theirs);
    assert.deepEqual(doc, before, 'input unchanged');
    assert.equal(ours.spec.volumes, doc.spec.volumes, 'untouched subtree shared, not copied');
    assert.notEqual(ours.metadata, doc.metadata);
  });

  const failures: [string, PatchOperation, RegExp][] = [
    ['a missing parent', { op: 'add', path: '/status/phase', value: 'x' }, /does not resolve/],
    ['replacing a missing key', { op: 'replace', path: '/metadata/namespace', value: 'x' }, /does not resolve/],
    ['a non-numeric array index', { op: 'replace', path: '/spec/containers/first', value: {} }, /"first" is not an array index/],
    ['an index past the end', { op: 'add', path: '/spec/containers/5', value: {} }, /index 5 is out of bounds/],
    ['removing one past the end', { op: 'remove', path: '/spec/containers/2' }, /index 2 is out of bounds/],
    ['a failing test', { op: 'test', path: '/metadata/name', value: 'other' }, /test at \/metadata\/name failed/],
    ['the root', { op: 'remove', path: '' }, /root is not supported/],
  ];
  for (const [what, op, error] of failures) {
    it(`rejects ${what}, and fast-json-patch rejects it too`, () => {
      const doc = pod();
      assert.throws(() => applyPatchCopyOnWrite(doc, [{ op: 'add', path: '/metadata/labels/new', value: 'v' }, op]), error);
      assert.deepEqual(doc, pod(), 'nothing half-applied to the input');
      if (op.path !== '') assert.throws(() => fastJsonPatch.applyPatch(structuredClone(doc), [op as any], true, false));
    });
  }
});

describe('jsonEqual', () => {
  it('compares structure, not key order or identity', () => {
    assert.equal(jsonEqual({ a: 1, b: [1, { c: null }] }, { b: [1, { c: null }], a: 1 }), true);
    assert.equal(jsonEqual({ a: 1 }, { a: 1, b: 2 }), false);
    assert.equal(jsonEqual({ a: [] }, { a: {} }), false);
    assert.equal(jsonEqual([1, 2], [2, 1]), false);
    assert.equal(jsonEqual(null, {}), false);
    assert.equal(jsonEqual('1', 1), false);
  });
});

describe('patchChanges', () => {
  const pod = () => ({ metadata: { name: 'p', labels: { a: '1' }, annotations: { 'x/y': 'v' } }, spec: { volumes: [{ name: 'v' }] } });
  /** The reference answer: apply with fast-json-patch and compare. */
  const reference = (doc: object, ops: PatchOperation[]) => !jsonEqual(fastJsonPatch.applyPatch(structuredClone(doc), structuredClone(ops) as never, true, false).newDocument, doc);

  it('agrees with applying the patch, on the fast path (object members) and off it (arrays, dependent and repeated paths)', () => {
    const cases: PatchOperation[][] = [
      [{ op: 'add', path: '/metadata/labels/a', value: '1' }], // already so: no change
      [{ op: 'add', path: '/metadata/labels/b', value: '2' }],
      [{ op: 'add', path: '/metadata/annotations/x~1y', value: 'v' }],
      [{ op: 'replace', path: '/metadata/name', value: 'q' }],
      [{ op: 'add', path: '/metadata/labels', value: { a: '1' } }],
      [{ op: 'add', path: '/spec/volumes/-', value: { name: 'w' } }], // array: applied
      [
        { op: 'add', path: '/metadata/owners', value: {} },
        { op: 'add', path: '/metadata/owners/k', value: 'v' }, // its parent comes from the op before
      ],
      [
        { op: 'add', path: '/metadata/labels/a', value: '2' },
        { op: 'add', path: '/metadata/labels/a', value: '1' }, // the same path twice nets to nothing
      ],
      [{ op: 'remove', path: '/metadata/labels/a' }],
    ];
    for (const ops of cases) assert.equal(patchChanges(pod(), ops), reference(pod(), ops), JSON.stringify(ops));
  });

  it('throws, as applying would, when a path does not resolve', () => {
    assert.throws(() => patchChanges(pod(), [{ op: 'replace', path: '/metadata/missing', value: 1 }]), /does not resolve/);
    assert.throws(() => patchChanges(pod(), [{ op: 'add', path: '/nothing/here/x', value: 1 }]), /does not resolve/);
  });
});
