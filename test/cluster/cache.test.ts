// The cluster cache against the fake API server, through the real client: first sync, the claim
// index, watch events (including a real recorded stream), dropped watches, 410 relists, an API
// server that goes down and comes back, staleness, live LISTs and the backoff cap.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Reflector, MAX_BACKOFF_MS } from '../../src/cluster/reflector.js';
import { ApiClient } from '../../src/cluster/client.js';
import { registry } from '../../src/observability/metrics.js';
import { clusterState, reviewByPrefix } from '../helpers/fixtures.js';
import { until } from '../helpers/eventually.js';
import { podLike, startCacheRig, TEST_TUNING } from './helpers.js';
import { ClusterCache } from '../../src/cluster/cache.js';
import { FakeApiServer, loadCapturedClusterState } from '../helpers/fake-apiserver.js';
import { KubeConfig } from '@kubernetes/client-node';

const names = (pods: { name: string }[]) => pods.map((p) => p.name).sort();

test('first sync serves the captured cluster: claim index, nodes, namespace labels', async () => {
  const rig = await startCacheRig();
  try {
    const { cache, fake } = rig;
    assert.deepEqual(cache.status(), { synced: true, stale: false });
    assert.deepEqual(names(cache.podsUsingClaim('shop', 'shared')), ['db-1', 'reader-1']);
    assert.deepEqual(names(cache.podsUsingClaim('shop', 'logs')), ['api-6768cdbbb8-fbs52', 'api-69ddc5895c-2dzgc', 'no-token']);
    assert.deepEqual(names(cache.podsUsingClaim('shop', 'state-kafka-0')), ['kafka-0']);
    assert.deepEqual(cache.podsUsingClaim('batch-ns', 'shared'), [], 'a claim name is only looked up in its own namespace');
    const db1 = cache.podsUsingClaim('shop', 'shared').find((p) => p.name === 'db-1')!;
    assert.equal(db1.nodeName, 'node-a');
    assert.equal(db1.phase, 'Running');
    assert.equal(db1.hasProjectedToken, true);
    const api = cache.podsUsingClaim('shop', 'logs').find((p) => p.name.startsWith('api-'))!;
    assert.deepEqual(api.owner, { kind: 'Deployment', name: 'api' });
    const noToken = cache.podsUsingClaim('shop', 'logs').find((p) => p.name === 'no-token')!;
    assert.equal(noToken.hasProjectedToken, false);
    assert.equal(cache.node('node-a')?.kubeletVersion, 'v1.31.2');
    assert.equal(cache.node('node-b')?.kubeletVersion, 'v1.33.1');
    assert.equal(cache.namespaceLabels('shop')?.['kubernetes.io/metadata.name'], 'shop');
    assert.equal(cache.namespaceLabels('nope'), undefined);
    // The LIST was paginated (page size 4 in tests) and carried the client's token.
    const podLists = fake.requests.filter((r) => r.path === '/api/v1/pods' && !r.query.watch);
    assert.ok(podLists.length > 1 && podLists.slice(1).every((r) => r.query.continue));
    // And then a watch from the list's resourceVersion, with bookmarks.
    await until(() => fake.openWatches('pods') === 1, 'the pod watch');
    const watch = fake.requests.find((r) => r.path === '/api/v1/pods' && r.query.watch === 'true');
    assert.equal(watch?.query.resourceVersion, clusterState('pods.json').metadata.resourceVersion);
    assert.equal(watch?.query.allowWatchBookmarks, 'true');
  } finally {
    await rig.close();
  }
});

test('kube-apiserver mirror pods keep their argv; other pods do not', async () => {
  const rig = await startCacheRig();
  try {
    const kops = reviewByPrefix('045').request.object;
    const kubeadm = reviewByPrefix('043').request.object;
    rig.fake.upsert('pods', kops);
    rig.fake.upsert('pods', kubeadm);
    await until(() => rig.cache.apiserverPods().length === 2, 'both mirror pods');
    const byName = new Map(rig.cache.apiserverPods().map((p) => [p.name, p]));
    const k = byName.get(kops.metadata.name)!;
    assert.equal(k.namespace, 'kube-system');
    assert.ok(k.argv.some((a) => a.includes('service-account-issuer')));
    const c = kops.spec.containers[0];
    assert.deepEqual(k.argv, [...(c.command ?? []), ...(c.args ?? [])]);
    rig.fake.remove('pods', 'kube-system', kops.metadata.name);
    await until(() => rig.cache.apiserverPods().length === 1, 'the deleted mirror pod to leave');
  } finally {
    await rig.close();
  }
});

test('a real recorded watch stream fills an empty cache', async () => {
  const rig = await startCacheRig({ captured: false });
  try {
    assert.equal(rig.cache.pods.items.size, 0);
    for (const event of clusterState('pods-watch-shop.jsonl')) rig.fake.apply('pods', event);
    await until(() => rig.cache.pods.items.size === 13, 'all 13 recorded pods');
    assert.deepEqual(names(rig.cache.podsUsingClaim('shop', 'shared')), ['db-1', 'reader-1']);
  } finally {
    await rig.close();
  }
});

test('watch events keep the claim index current (add, change claims, delete)', async () => {
  const rig = await startCacheRig();
  try {
    const { fake, cache } = rig;
    fake.upsert('pods', podLike('w-1', { nodeName: 'node-a', claim: 'shared' }));
    await until(() => cache.podsUsingClaim('shop', 'shared').length === 3, 'w-1 indexed');
    fake.upsert('pods', podLike('w-1', { nodeName: 'node-a', claim: 'other' }));
    await until(() => cache.podsUsingClaim('shop', 'other').length === 1, 'w-1 moved to claim other');
    assert.deepEqual(names(cache.podsUsingClaim('shop', 'shared')), ['db-1', 'reader-1']);
    fake.remove('pods', 'shop', 'w-1');
    await until(() => cache.podsUsingClaim('shop', 'other').length === 0, 'w-1 removed');
    fake.upsert('pods', podLike('eph', { nodeName: 'node-a', ephemeral: 'scratch' }));
    await until(() => cache.podsUsingClaim('shop', 'eph-scratch').length === 1, 'ephemeral claim <pod>-<volume>');
    assert.deepEqual(cache.podsUsingClaim('shop', 'eph-scratch')[0]!.ephemeralClaims, ['eph-scratch']);
  } finally {
    await rig.close();
  }
});

test('a dropped watch reconnects from its resourceVersion and sees a pod created meanwhile', async () => {
  const rig = await startCacheRig();
  try {
    const { fake, cache } = rig;
    const listsBefore = fake.requests.filter((r) => r.path === '/api/v1/pods' && !r.query.watch).length;
    fake.dropWatches();
    fake.upsert('pods', podLike('late', { nodeName: 'node-b', claim: 'shared' }));
    await until(() => cache.podsUsingClaim('shop', 'shared').length === 3, 'the new pod after reconnect');
    // Resumed from the resourceVersion: no relist needed.
    assert.equal(fake.requests.filter((r) => r.path === '/api/v1/pods' && !r.query.watch).length, listsBefore);
    assert.ok(cache.pods.watchRestarts >= 1);
  } finally {
    await rig.close();
  }
});

for (const expiredWatch of ['event', 'http'] as const) {
  test(`410 Expired (${expiredWatch === 'event' ? 'ERROR event' : 'HTTP status'}) makes the cache relist`, async () => {
    const rig = await startCacheRig({ fake: { expiredWatch } });
    try {
      const { fake, cache } = rig;
      const lists = () => fake.requests.filter((r) => r.path === '/api/v1/pods' && !r.query.watch && !r.query.continue).length;
      const before = lists();
      // The history moves on and is compacted while the watch is cut: resuming is impossible.
      fake.dropWatches();
      fake.remove('pods', 'shop', 'db-1');
      fake.compact();
      await until(() => lists() > before, 'a relist');
      await until(() => names(cache.podsUsingClaim('shop', 'shared')).join() === 'reader-1', 'db-1 gone after the relist');
      const metrics = await registry.getSingleMetricAsString('tokenguard_watch_restarts_total');
      assert.match(metrics, /resource="pods",reason="expired"/);
    } finally {
      await rig.close();
    }
  });
}

test('a continue token that expired between two pages restarts the LIST, which then has the new pod', async () => {
  const fake = await FakeApiServer.start();
  loadCapturedClusterState(fake);
  // Before the first continued page is served, the history moves on and is compacted: the
  // server answers that page 410 Expired, as it does for a continue token that is too old.
  let compacted = false;
  fake.route('GET', /^\/api\/v1\/pods$/, (_req, _res, { url, fake: f }) => {
    if (url.searchParams.has('continue') && !compacted) {
      compacted = true;
      f.upsert('pods', podLike('late', { nodeName: 'node-b', claim: 'shared' }));
      f.compact();
    }
    return 'next';
  });
  const kc = new KubeConfig();
  kc.loadFromFile(fake.kubeconfigPath);
  const cache = new ClusterCache({ kc, staleAfterSeconds: 60, ...TEST_TUNING });
  try {
    cache.start();
    await cache.whenSynced();
    assert.ok(compacted);
    const firstPages = fake.requests.filter((r) => r.path === '/api/v1/pods' && !r.query.watch && !r.query.continue);
    assert.equal(firstPages.length, 2, 'the LIST started over once');
    assert.equal(cache.pods.lastError, undefined, 'started over within the LIST, not failed and retried');
    assert.deepEqual(names(cache.podsUsingClaim('shop', 'shared')), ['db-1', 'late', 'reader-1']);
    assert.equal(cache.pods.items.size, clusterState('pods.json').items.length + 1);
  } finally {
    cache.stop();
    await fake.close();
  }
});

test('API server down: stale after the bound with a reason, fresh again once it is back', async () => {
  const rig = await startCacheRig({ cache: { staleAfterSeconds: 0.2 } });
  try {
    const { fake, cache } = rig;
    await fake.down();
    await until(() => cache.status().stale, 'the cache to turn stale');
    const s = cache.status();
    assert.equal(s.synced, true);
    assert.match(s.reason!, /watch has been down for \d+ s \(more than 0.2 s\)/);
    await assert.rejects(cache.listPodsUsingClaimLive('shop', 'shared', 500), /ECONNREFUSED|socket|connect/);
    // Objects created while it was down are seen after it comes back (within the reconnect bound).
    fake.upsert('pods', podLike('while-down', { nodeName: 'node-a', claim: 'shared' }));
    await fake.restart();
    await until(() => !cache.status().stale && cache.podsUsingClaim('shop', 'shared').length === 3, 'recovery');
    const gauge = await registry.getSingleMetricAsString('tokenguard_cache_synced');
    assert.match(gauge, /tokenguard_cache_synced\{resource="pods"\} 1/);
  } finally {
    await rig.close();
  }
});

test('not synced while the API server is unreachable, with the error; synced once it answers', async () => {
  const fake = await FakeApiServer.start();
  loadCapturedClusterState(fake);
  await fake.down();
  const kc = new KubeConfig();
  kc.loadFromFile(fake.kubeconfigPath);
  const cache = new ClusterCache({ kc, staleAfterSeconds: 60, ...TEST_TUNING });
  cache.start();
  try {
    await until(() => !!cache.status().reason?.includes('last error'), 'a LIST error to be reported');
    const s = cache.status();
    assert.equal(s.synced, false);
    assert.match(s.reason!, /not synced yet: waiting for the first LIST of pods, nodes, namespaces \(last error: .*ECONNREFUSED/);
    await fake.restart();
    await cache.whenSynced();
    assert.deepEqual(cache.status(), { synced: true, stale: false });
  } finally {
    cache.stop();
    await fake.close();
  }
});

test('live LIST finds the namespace pods using a claim, and gives up at its timeout', async () => {
  const rig = await startCacheRig();
  try {
    const { fake, cache } = rig;
    assert.deepEqual(names(await cache.listPodsUsingClaimLive('shop', 'shared', 2000)), ['db-1', 'reader-1']);
    assert.ok(fake.requests.some((r) => r.path === '/api/v1/namespaces/shop/pods'));
    fake.route('GET', /^\/api\/v1\/namespaces\/slow\/pods$/, () => {
      /* never answers */
    });
    await assert.rejects(cache.listPodsUsingClaimLive('slow', 'x', 100), /no answer within 100 ms/);
  } finally {
    await rig.close();
  }
});

test('backoff grows, is jittered, and never exceeds 30 s whatever is configured', () => {
  const kc = new KubeConfig();
  kc.loadFromString('apiVersion: v1\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]\nusers: [{name: u, user: {}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n');
  const r = new Reflector({ resource: 'pods', path: '/api/v1/pods', client: new ApiClient(kc), project: (o) => o, maxBackoffMs: 10 * 60_000 });
  const delays = Array.from({ length: 40 }, () => r.nextBackoffMs());
  assert.ok(delays.every((d) => d > 0 && d <= MAX_BACKOFF_MS), `all delays within (0, 30 s]: ${delays.join(', ')}`);
  assert.ok(delays[0]! <= 500 && delays.at(-1)! >= MAX_BACKOFF_MS / 2, 'starts small, ends near the cap');
  assert.equal(MAX_BACKOFF_MS, 30_000);
});

test('metrics report objects per resource', async () => {
  const rig = await startCacheRig();
  try {
    const text = await registry.getSingleMetricAsString('tokenguard_cache_objects');
    assert.match(text, new RegExp(`tokenguard_cache_objects\\{resource="pods"\\} ${clusterState('pods.json').items.length}`));
    assert.match(text, /tokenguard_cache_objects\{resource="nodes"\} 2/);
    const stale = await registry.getSingleMetricAsString('tokenguard_cache_stale_seconds');
    assert.match(stale, /tokenguard_cache_stale_seconds\{resource="pods"\} 0/);
  } finally {
    await rig.close();
  }
});
