// JSON Pointer escaping and the map helper, checked against an independent RFC 6902 implementation.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fastJsonPatch from 'fast-json-patch';
import { applyPatchInPlace, escapePointerToken, pointer, setMapEntries } from '../../src/admission/patch.js';

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
      const ours = structuredClone(doc);
      applyPatchInPlace(ours, ops);
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
});
