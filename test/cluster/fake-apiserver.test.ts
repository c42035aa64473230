// The fake API server speaks the protocol @kubernetes/client-node expects: checked with the real
// client (its generated API for LIST and GET, its Watch class for WATCH), through the kubeconfig
// the fake writes.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { CoreV1Api, KubeConfig, Watch } from '@kubernetes/client-node';
import { FakeApiServer, loadCapturedClusterState } from '../helpers/fake-apiserver.js';
import { until } from '../helpers/eventually.js';
import { clusterState } from '../helpers/fixtures.js';

let fake: FakeApiServer;
let kc: KubeConfig;

before(async () => {
  fake = await FakeApiServer.start();
  loadCapturedClusterState(fake);
  kc = new KubeConfig();
  kc.loadFromFile(fake.kubeconfigPath);
});
after(() => fake.close());

type Event = { type: string; object: any };

/** Open a watch with the real client; resolves once the response started (or failed). */
async function openWatch(path: string, query: Record<string, string | number | boolean>) {
  const events: Event[] = [];
  let ended: ((err: any) => void) | undefined;
  const done = new Promise<any>((resolve) => (ended = resolve));
  const controller = await new Watch(kc).watch(path, query, (type, object) => events.push({ type, object }), (err) => ended!(err));
  return { events, done, controller };
}

test('LIST serves the captured PodList through the generated client, with its resourceVersion', async () => {
  const api = kc.makeApiClient(CoreV1Api);
  const list = await api.listPodForAllNamespaces();
  const captured = clusterState('pods.json');
  assert.equal(list.items.length, captured.items.length);
  assert.equal(list.metadata?.resourceVersion, captured.metadata.resourceVersion);
  const db1 = list.items.find((p) => p.metadata?.name === 'db-1');
  assert.equal(db1?.spec?.nodeName, 'node-a');
});

test('LIST paginates with limit and continue, and an expired continue token is a 410 Status', async () => {
  const api = kc.makeApiClient(CoreV1Api);
  const first = await api.listPodForAllNamespaces({ limit: 5 });
  assert.equal(first.items.length, 5);
  assert.ok(first.metadata?._continue);
  const second = await api.listPodForAllNamespaces({ limit: 100, _continue: first.metadata._continue });
  assert.equal(first.items.length + second.items.length, clusterState('pods.json').items.length);
  assert.equal(second.metadata?._continue, undefined);

  const again = await api.listPodForAllNamespaces({ limit: 5 });
  fake.upsert('configmaps', { metadata: { name: 'bump', namespace: 'shop' } });
  fake.compact();
  await assert.rejects(api.listPodForAllNamespaces({ limit: 5, _continue: again.metadata!._continue }), (err: any) => {
    assert.equal(err.code, 410);
    assert.match(String(err.body), /"reason":"Expired"/);
    return true;
  });
});

/** A raw GET with the kubeconfig's TLS and (unless `anonymous`) its credentials. */
async function rawGet(path: string, anonymous = false): Promise<{ status: number; type: string; body: string }> {
  const opts: any = {};
  await kc.applyToHTTPSOptions(opts);
  if (anonymous) delete opts.headers.Authorization;
  const { request } = await import('node:https');
  return new Promise((resolve, reject) => {
    request(`${fake.url}${path}`, opts, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body }));
    })
      .on('error', reject)
      .end();
  });
}

test('strict where kube-apiserver v1.26 is (measured): unknown resources and group/versions, anonymous requests', async () => {
  // A resource the server does not have, in a group/version it serves: a NotFound Status.
  const typo = await rawGet('/api/v1/pod');
  assert.equal(typo.status, 404);
  assert.equal(JSON.parse(typo.body).message, 'the server could not find the requested resource');
  // A resource under the wrong group/version, or an unknown group: the mux's plain-text 404.
  for (const path of ['/apis/foo/v9/pods', '/apis/controlplane.cluster.x-k8s.io/v1beta1/kubeadmcontrolplanes']) {
    const r = await rawGet(path);
    assert.deepEqual([r.status, r.body], [404, '404 page not found\n'], path);
  }
  assert.equal((await rawGet('/apis/apps/v1/pods')).status, 404, 'pods are not in apps/v1');
  assert.equal((await rawGet('/api/v1/namespaces/shop/nodes')).status, 404, 'nodes are cluster-scoped');
  // Lists carry their own group/version.
  assert.equal(JSON.parse((await rawGet('/apis/apps/v1/deployments')).body).apiVersion, 'apps/v1');
  // No credentials at all is the anonymous user: 403 (401 is for wrong credentials, below).
  const anonymous = await rawGet('/api/v1/pods', true);
  assert.equal(anonymous.status, 403);
  assert.match(JSON.parse(anonymous.body).message, /User "system:anonymous" cannot get path "\/api\/v1\/pods"/);
  // A missing object names itself in the Status details.
  assert.deepEqual(JSON.parse((await rawGet('/api/v1/namespaces/shop/pods/nope')).body).details, { name: 'nope', kind: 'pods' });
  // Writing a resource the real server would not serve is a mistake in the test itself.
  assert.throws(() => fake.upsert('widgets', { metadata: { name: 'w' } }), /does not serve widgets/);
});

test('requests without the kubeconfig token are refused with a 401 Status', async () => {
  const kc2 = new KubeConfig();
  kc2.loadFromString(fake.kubeconfig().replace(/token: .*/, 'token: wrong'));
  await assert.rejects(kc2.makeApiClient(CoreV1Api).listNamespace(), (err: any) => err.code === 401);
});

test('WATCH replays from a resourceVersion, streams changes, sends bookmarks, and ends at timeoutSeconds', async () => {
  const rv = fake.resourceVersion;
  const w = await openWatch('/api/v1/namespaces/shop/pods', { resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds: 1 });
  await until(() => fake.openWatches('pods') > 0, 'the watch to open', 3000);
  fake.upsert('pods', { metadata: { name: 'new-pod', namespace: 'shop' }, spec: { nodeName: 'node-a' } });
  fake.upsert('pods', { metadata: { name: 'elsewhere', namespace: 'batch-ns' }, spec: {} });
  fake.remove('pods', 'shop', 'new-pod');
  fake.bookmark();
  assert.equal(await w.done, null); // clean end at timeoutSeconds
  assert.deepEqual(
    w.events.map((e) => [e.type, e.object.metadata.name ?? '']),
    [
      ['ADDED', 'new-pod'],
      ['DELETED', 'new-pod'],
      ['BOOKMARK', ''],
    ],
  );
  assert.equal(w.events[2]!.object.metadata.resourceVersion, fake.resourceVersion);
});

test('WATCH from a compacted resourceVersion gets an ERROR event with a 410 Status, or HTTP 410', async () => {
  const old = fake.resourceVersion;
  fake.upsert('pods', { metadata: { name: 'bump', namespace: 'shop' } });
  fake.compact();
  const w = await openWatch('/api/v1/pods', { resourceVersion: old });
  await w.done;
  assert.equal(w.events.length, 1);
  assert.equal(w.events[0]!.type, 'ERROR');
  assert.equal(w.events[0]!.object.code, 410);
  assert.equal(w.events[0]!.object.reason, 'Expired');

  fake.expiredWatch = 'http';
  try {
    const w2 = await openWatch('/api/v1/pods', { resourceVersion: old });
    const err = await w2.done;
    assert.equal(err.statusCode, 410);
  } finally {
    fake.expiredWatch = 'event';
  }
});

test('dropped watches end with an error; down and restart keep the objects and the port', async () => {
  const w = await openWatch('/api/v1/pods', { resourceVersion: fake.resourceVersion });
  await until(() => fake.openWatches('pods') > 0, 'the watch to open', 3000);
  fake.dropWatches();
  await w.done;
  const port = fake.port;
  await fake.down();
  const api = kc.makeApiClient(CoreV1Api);
  await assert.rejects(api.listNode());
  await fake.restart();
  assert.equal(fake.port, port);
  const nodes = await api.listNode();
  assert.deepEqual(nodes.items.map((n) => n.metadata?.name).sort(), ['node-a', 'node-b']);
});

test('extra routes take precedence and see the parsed request', async () => {
  fake.route('GET', /^\/\.well-known\/openid-configuration$/, (_req, res, { fake: f }) =>
    f.sendJson(res, 200, clusterState('openid-configuration.json')),
  );
  const opts: any = {};
  await kc.applyToHTTPSOptions(opts);
  const { request } = await import('node:https');
  const body = await new Promise<string>((resolve, reject) => {
    request(`${fake.url}/.well-known/openid-configuration`, opts, (res) => {
      let s = '';
      res.on('data', (c) => (s += c));
      res.on('end', () => resolve(s));
    })
      .on('error', reject)
      .end();
  });
  assert.equal(JSON.parse(body).issuer, 'https://kubernetes.default.svc');
});

test('writes through the generated client as kube-apiserver answers them: create, 409 AlreadyExists, update, 409 Conflict, delete, 404', async () => {
  const api = kc.makeApiClient(CoreV1Api);
  const body = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'w', namespace: 'shop' }, type: 'Opaque', data: { a: 'YQ==' } };
  const created = await api.createNamespacedSecret({ namespace: 'shop', body });
  assert.ok(created.metadata?.uid && created.metadata.resourceVersion && created.metadata.creationTimestamp);
  /** The refusal's HTTP code and Status (nothing when the call succeeded). */
  const statusOf = async (p: Promise<unknown>): Promise<{ code?: number; reason?: string; message?: string }> =>
    p.then(
      () => ({}),
      (err: { code?: number; body?: string }) => ({ code: err.code, ...(JSON.parse(err.body ?? '{}') as { reason?: string; message?: string }) }),
    );
  const again = await statusOf(api.createNamespacedSecret({ namespace: 'shop', body }));
  assert.deepEqual([again.code, again.reason, again.message], [409, 'AlreadyExists', 'secrets "w" already exists']);

  const updated = await api.replaceNamespacedSecret({ name: 'w', namespace: 'shop', body: { ...created, data: { a: 'Yg==' } } });
  assert.notEqual(updated.metadata?.resourceVersion, created.metadata.resourceVersion);
  assert.equal(updated.metadata?.uid, created.metadata.uid, 'the uid stays');
  // The resourceVersion read before the update is stale now.
  const stale = await statusOf(api.replaceNamespacedSecret({ name: 'w', namespace: 'shop', body: { ...created, data: { a: 'Yw==' } } }));
  assert.deepEqual([stale.code, stale.reason], [409, 'Conflict']);
  assert.match(stale.message ?? '', /^Operation cannot be fulfilled on secrets "w": the object has been modified; please apply your changes to the latest version and try again$/);
  assert.equal(fake.get('secrets', 'shop', 'w')?.data.a, 'Yg==', 'the losing write changed nothing');

  await api.deleteNamespacedSecret({ name: 'w', namespace: 'shop' });
  const gone = await statusOf(api.readNamespacedSecret({ name: 'w', namespace: 'shop' }));
  assert.deepEqual([gone.code, gone.reason], [404, 'NotFound']);
  const missing = await statusOf(api.replaceNamespacedSecret({ name: 'w', namespace: 'shop', body: updated }));
  assert.deepEqual([missing.code, missing.reason], [404, 'NotFound']);
});
