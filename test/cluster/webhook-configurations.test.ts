// The live uids of the webhook configurations (caller authentication's check of KEP-6060 bindings),
// through the real list+watch against the fake API server: unknown before the first LIST, the uid
// or null once synced, following deletions and re-creations, unknown again (with why) once the
// watch has been down longer than staleAfterSeconds, and fresh again when the API server is back.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KubeConfig } from '@kubernetes/client-node';
import { ApiClient } from '../../src/cluster/client.js';
import { cacheStaleSeconds } from '../../src/cluster/metrics.js';
import { WebhookConfigurations } from '../../src/cluster/webhook-configurations.js';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { eventually } from '../helpers/eventually.js';

describe('WebhookConfigurations against the fake API server', () => {
  let fake: FakeApiServer;
  let webhooks: WebhookConfigurations;
  /** The clock the cache judges staleness by: real time plus what a test adds. */
  let skewMs = 0;

  before(async () => {
    fake = await FakeApiServer.start();
    fake.upsert('validatingwebhookconfigurations', { metadata: { name: 'tokenguard', uid: 'v-1' } });
    fake.upsert('mutatingwebhookconfigurations', { metadata: { name: 'tokenguard', uid: 'm-1' } });
    const kc = new KubeConfig();
    kc.loadFromFile(fake.kubeconfigPath);
    webhooks = new WebhookConfigurations({
      client: new ApiClient(kc),
      staleAfterSeconds: 60,
      initialBackoffMs: 20,
      maxBackoffMs: 100,
      now: () => Date.now() + skewMs,
    });
  });
  after(async () => {
    webhooks.stop();
    await fake.close();
  });

  it('unknown until listed; then the uid of each kind, or null for a name that does not exist', async () => {
    assert.deepEqual(webhooks.liveUid('validating', 'tokenguard'), { unknown: 'validatingwebhookconfigurations not listed yet' });
    webhooks.start();
    await webhooks.whenSynced();
    assert.equal(webhooks.liveUid('validating', 'tokenguard'), 'v-1');
    assert.equal(webhooks.liveUid('mutating', 'tokenguard'), 'm-1');
    assert.equal(webhooks.liveUid('validating', 'kyverno'), null);
    // Listed, then watched, under admissionregistration.k8s.io/v1.
    await eventually(() => fake.openWatches('validatingwebhookconfigurations') === 1 && fake.openWatches('mutatingwebhookconfigurations') === 1, 'both watches open');
    assert.ok(fake.requests.some((r) => r.path === '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations' && r.query.limit === '500'));
  });

  it('follows a deletion and a re-creation under the same name (a new uid)', async () => {
    fake.remove('validatingwebhookconfigurations', undefined, 'tokenguard');
    await eventually(() => webhooks.liveUid('validating', 'tokenguard') === null, 'the deletion');
    fake.upsert('validatingwebhookconfigurations', { metadata: { name: 'tokenguard', uid: 'v-2' } });
    await eventually(() => webhooks.liveUid('validating', 'tokenguard') === 'v-2', 'the re-creation');
  });

  it('a watch down longer than staleAfterSeconds makes the uid unknown, saying why; fresh again once the API server is back', async () => {
    await fake.down();
    try {
      // Down (tokenguard_cache_stale_seconds > 0), but not for long: still trusted.
      const downSeconds = async () => (await cacheStaleSeconds.get()).values.find((v) => v.labels.resource === 'validatingwebhookconfigurations')?.value ?? 0;
      await eventually(async () => (await downSeconds()) > 0, 'the watch to be seen down');
      assert.equal(webhooks.liveUid('validating', 'tokenguard'), 'v-2');
      skewMs = 75_000;
      const stale = webhooks.liveUid('validating', 'tokenguard');
      assert.ok(typeof stale === 'object' && stale !== null, JSON.stringify(stale));
      assert.match(stale.unknown, /^the watch of validatingwebhookconfigurations has been down for 7\d s$/);
    } finally {
      await fake.restart();
    }
    await eventually(() => webhooks.liveUid('validating', 'tokenguard') === 'v-2' && webhooks.liveUid('mutating', 'tokenguard') === 'm-1', 'the watches to reopen', 10_000);
    skewMs = 0;
  });
});
