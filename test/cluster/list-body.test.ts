// Reading LIST bodies before JSON.parse: managedFields cut out of the bytes, the continue token read
// from the head. Checked on the captured API server output and on JSON built to trip a scanner
// (brackets, quotes and the key itself inside strings, multi-byte characters, truncation).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { ApiClient } from '../../src/cluster/client.js';
import { peekContinue, withoutManagedFields } from '../../src/cluster/list-body.js';
import { FakeApiServer, loadCapturedClusterState } from '../helpers/fake-apiserver.js';
import { CLUSTER_STATE_DIR } from '../helpers/fixtures.js';

/** What JSON.parse gives once every `managedFields` member is deleted, at any depth. */
function parsedWithout(text: string): unknown {
  return JSON.parse(text, function (this: any, key, value) {
    return key === 'managedFields' && !Array.isArray(this) ? undefined : value;
  });
}

const cut = (text: string) => withoutManagedFields(Buffer.from(text)).toString('utf8');

for (const file of ['pods.json', 'nodes.json', 'namespaces.json']) {
  test(`captured ${file}: the same objects as JSON.parse, without managedFields`, () => {
    const raw = readFileSync(join(CLUSTER_STATE_DIR, file));
    const text = raw.toString('utf8');
    const out = withoutManagedFields(raw);
    assert.deepEqual(JSON.parse(out.toString('utf8')), parsedWithout(text));
    if (text.includes('"managedFields":[')) assert.ok(out.length < raw.length, 'something was cut');
    assert.doesNotMatch(out.toString('utf8'), /"managedFields"/);
  });
}

test('managedFields as first, middle, last and only member', () => {
  const mf = '"managedFields":[{"manager":"m","fieldsV1":{"f:spec":{"k:{\\"name\\":\\"db\\"}":{".":{}}}}}]';
  for (const text of [
    `{"metadata":{${mf},"name":"a"}}`,
    `{"metadata":{"name":"a",${mf},"uid":"u"}}`,
    `{"metadata":{"name":"a",${mf}}}`,
    `{"metadata":{${mf}}}`,
    `{"items":[{"metadata":{${mf}}},{"metadata":{"name":"b",${mf}}}]}`,
  ]) {
    assert.deepEqual(JSON.parse(cut(text)), parsedWithout(text), text);
  }
});

test('brackets, quotes, backslashes and the key itself inside strings do not confuse the scan', () => {
  const tricky = {
    metadata: {
      name: 'x',
      annotations: {
        // The key and an opening bracket as annotation text: escaped quotes, so not a member.
        note: '"managedFields":[ is not a member here',
        ends: 'a backslash at the end \\',
        brackets: ']]}}{{[[',
        unicode: 'żółć ✓ 日本',
      },
      managedFields: [
        { manager: 'a"]}', fieldsV1: { 'f:data': { 'k:{"x":"]}"}': {} }, 'f:\\': {} } },
        { manager: '\\"', time: 'é]' },
      ],
      labels: { after: 'kept' },
    },
  };
  const text = JSON.stringify(tricky);
  const out = JSON.parse(cut(text)) as typeof tricky;
  assert.deepEqual(out, parsedWithout(text));
  assert.equal(out.metadata.annotations.note, '"managedFields":[ is not a member here');
  assert.deepEqual(out.metadata.labels, { after: 'kept' });
});

test('a body without managedFields is returned as it is; a truncated one is left for JSON.parse to reject', () => {
  const plain = Buffer.from('{"items":[{"metadata":{"name":"a"}}]}');
  assert.equal(withoutManagedFields(plain), plain);
  const truncated = Buffer.from('{"items":[{"metadata":{"name":"a","managedFields":[{"manager":"m"');
  assert.equal(withoutManagedFields(truncated), truncated);
  assert.throws(() => JSON.parse(withoutManagedFields(truncated).toString('utf8')));
});

test('peekContinue reads the token from the head as the API server writes it, and only then', () => {
  const head = '{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"556","continue":"eyJydiI6NTU2fQ","remainingItemCount":12},"items":[';
  assert.equal(peekContinue(Buffer.from(head + '{"metadata":{"name":"a"}}]}')), 'eyJydiI6NTU2fQ');
  // The last page has no token.
  assert.equal(peekContinue(Buffer.from('{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"556"},"items":[]}')), undefined);
  // Anything else is left to the full parse: whitespace, another order, a nested object, not a list.
  for (const other of [
    '{ "kind": "PodList", "metadata": {"continue": "t"}, "items": [] }',
    '{"items":[],"metadata":{"continue":"t"}}',
    '{"kind":"PodList","metadata":{"continue":"t","x":{}},"items":[]}',
    '{"kind":"Status","apiVersion":"v1","status":"Failure","code":410}',
    'not json',
  ]) {
    assert.equal(peekContinue(Buffer.from(other)), undefined, other);
  }
});

test('peekContinue agrees with the parsed page on the fake API server paging the captured pods', async () => {
  const fake = await FakeApiServer.start();
  try {
    loadCapturedClusterState(fake);
    const kc = new KubeConfig();
    kc.loadFromFile(fake.kubeconfigPath);
    const client = new ApiClient(kc);
    let cont = '';
    let pages = 0;
    do {
      const body = await client.getBody(`/api/v1/pods?limit=3${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`);
      const parsed = JSON.parse(body.toString('utf8'));
      cont = parsed.metadata.continue ?? '';
      assert.equal(peekContinue(body), parsed.metadata.continue);
      pages++;
    } while (cont);
    assert.ok(pages > 2, 'several pages');
    client.close();
  } finally {
    await fake.close();
  }
});
