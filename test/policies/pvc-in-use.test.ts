// pvc-in-use end to end: captured DELETE reviews over HTTPS to a real tokenguard server whose
// cluster cache (real client-node) follows the fake API server serving the captured cluster state;
// plus the scenarios of the issue and the pure helpers (kubelet versions, message fitting).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { KubeConfig } from '@kubernetes/client-node';
import { ClusterCache } from '../../src/cluster/cache.js';
import { kubeletAffectedBy130442, parseKubeletVersion } from '../../src/k8s/kubelet.js';
import { fitList, pvcInUsePolicy } from '../../src/policies/pvc-in-use.js';
import { MAX_WARNING_CHARS } from '../../src/admission/warnings.js';
import { FakeApiServer, loadCapturedClusterState } from '../helpers/fake-apiserver.js';
import { clusterState, reviewByPrefix } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { podLike, startCacheRig, TEST_TUNING, type CacheRig } from '../cluster/helpers.js';
import { until } from '../helpers/eventually.js';

const POLICIES = [pvcInUsePolicy];

interface Answer {
  allowed: boolean;
  message: string;
  warnings: string[];
  audit: Record<string, string>;
}

async function review(server: TestServer, body: any): Promise<Answer> {
  const res = await server.post('/validate', body);
  assert.equal(res.status, 200, res.text);
  const r = res.json.response;
  assert.equal(r.uid, body.request.uid);
  return { allowed: r.allowed, message: r.status?.message ?? '', warnings: r.warnings ?? [], audit: r.auditAnnotations ?? {} };
}

/** A DELETE review shaped like the captured 054, for another claim. */
function deleteReview(
  namespace: string,
  name: string,
  opts: { annotations?: Record<string, string>; terminating?: boolean; ownerPodUid?: string; user?: string; dryRun?: boolean } = {},
): any {
  const r = reviewByPrefix('054');
  r.request.uid = randomUUID();
  r.request.namespace = namespace;
  r.request.name = name;
  const meta = r.request.oldObject.metadata;
  meta.namespace = namespace;
  meta.name = name;
  meta.annotations = opts.annotations ?? {};
  if (opts.terminating) meta.deletionTimestamp = '2026-11-23T21:48:44Z';
  if (opts.ownerPodUid) meta.ownerReferences = [{ apiVersion: 'v1', kind: 'Pod', name: 'owner', uid: opts.ownerPodUid, controller: true }];
  if (opts.user) r.request.userInfo = { username: opts.user, groups: ['system:serviceaccounts', 'system:authenticated'] };
  if (opts.dryRun) {
    r.request.dryRun = true;
    r.request.options.dryRun = ['All'];
  }
  return r;
}

function nodeLike(name: string, kubeletVersion: string): any {
  const n = structuredClone(clusterState('nodes.json').items[0]);
  n.metadata.name = name;
  n.metadata.uid = `uid-${name}`;
  n.status.nodeInfo.kubeletVersion = kubeletVersion;
  return n;
}

const everyWarningFits = (a: Answer) => assert.ok(a.warnings.every((w) => Array.from(w).length <= MAX_WARNING_CHARS), JSON.stringify(a.warnings));

describe('with the captured cluster state', () => {
  let rig: CacheRig;
  let enforce: TestServer;
  let warn: TestServer;

  before(async () => {
    rig = await startCacheRig();
    enforce = await startTestServer({ policies: POLICIES, cluster: rig.cache, config: { mode: 'enforce' } });
    warn = await startTestServer({ policies: POLICIES, cluster: rig.cache, config: { mode: 'warn' } });
  });
  after(async () => {
    await enforce.shutdown();
    await warn.shutdown();
    await rig.close();
  });

  test('070: a claim used by running pods is denied, naming them, their nodes, and the affected kubelet', async () => {
    const a = await review(enforce, reviewByPrefix('070'));
    assert.equal(a.allowed, false);
    assert.match(a.message, /PVC shop\/shared would hang in Terminating: in use by db-1 \(Running on node-a\), reader-1 \(Running on node-b\)/);
    assert.match(a.message, /db-1 \(no owner, node node-a, Running\)/);
    const tokenWarning = a.warnings.find((w) => w.includes('kubernetes#130442'));
    assert.ok(tokenWarning, JSON.stringify(a.warnings));
    assert.match(tokenWarning, /on node-a \(v1\.31\.2\)$/);
    assert.doesNotMatch(tokenWarning, /node-b/);
    everyWarningFits(a);
  });

  test('070 in warn mode: allowed, with the same text as a warning', async () => {
    const a = await review(warn, reviewByPrefix('070'));
    assert.equal(a.allowed, true);
    // Exactly what kubectl prints in warn mode: the claim, the way out of kubectl's wait, the kubelet bug.
    assert.deepEqual(a.warnings, [
      'PVC shop/shared would hang in Terminating: in use by db-1 (Running on node-a), reader-1 (Running on node-b)',
      'the PVC stays Terminating until those pods stop, and kubectl delete waits for that: pass --wait=false to return at once',
      'projected tokens stop refreshing (kubelet bug kubernetes#130442) on node-a (v1.31.2)',
    ]);
    everyWarningFits(a);
  });

  test('a Pending pod on a node is called Pending, never "running"', async () => {
    rig.fake.upsert('pods', podLike('starting-0', { namespace: 'sc-pending', nodeName: 'node-b', claim: 'data', phase: 'Pending' }));
    await until(() => rig.cache.podsUsingClaim('sc-pending', 'data').length === 1, 'the pod in the cache');
    const a = await review(warn, deleteReview('sc-pending', 'data'));
    assert.equal(a.warnings[0], 'PVC sc-pending/data would hang in Terminating: in use by starting-0 (Pending on node-b)');
    assert.doesNotMatch(JSON.stringify(a), /running/i);
  });

  test('071: a second delete of a Terminating claim is allowed, warning with the pods and, since kubectl waits again, the --wait=false hint', async () => {
    const a = await review(enforce, reviewByPrefix('071'));
    assert.equal(a.allowed, true);
    assert.deepEqual(a.warnings, [
      'PVC shop/shared is already Terminating; still used by db-1 (Running on node-a), reader-1 (Running on node-b)',
      'the PVC stays Terminating until those pods stop, and kubectl delete waits for that: pass --wait=false to return at once',
      'projected tokens stop refreshing (kubelet bug kubernetes#130442) on node-a (v1.31.2)',
    ]);
    everyWarningFits(a);
  });

  test('--dry-run=server (request.dryRun): the hint is about the real delete, since kubectl never waits for a dry run', async () => {
    const dryRun = (prefix: string) => {
      const body = structuredClone(reviewByPrefix(prefix));
      body.request.dryRun = true;
      return body;
    };
    const first = await review(warn, dryRun('070'));
    assert.equal(first.allowed, true);
    assert.deepEqual(first.warnings, [
      'PVC shop/shared would hang in Terminating: in use by db-1 (Running on node-a), reader-1 (Running on node-b)',
      'the PVC would stay Terminating until those pods stop; a real kubectl delete waits for that: pass --wait=false to return at once',
      'projected tokens stop refreshing (kubelet bug kubernetes#130442) on node-a (v1.31.2)',
    ]);
    const again = await review(enforce, dryRun('071'));
    assert.equal(again.warnings[1], 'the PVC stays Terminating until those pods stop; a real kubectl delete waits for that: pass --wait=false to return at once');
    for (const a of [first, again]) {
      everyWarningFits(a);
      assert.ok(!a.warnings.some((w) => w.includes(', and kubectl delete waits')), 'never "kubectl delete waits" for a dry run');
    }
  });

  test('053 (dry-run) and 054: allowed, warning that unscheduled web-0 can never start; the same answer', async () => {
    const dry = await review(enforce, reviewByPrefix('053'));
    const real = await review(enforce, reviewByPrefix('054'));
    assert.equal(real.allowed, true);
    assert.deepEqual(real.warnings, ['unscheduled pods can never start once PVC shop/data is Terminating: web-0']);
    assert.deepEqual(dry, real);
  });

  test('a dry-run of an in-use delete is denied exactly like the real one', async () => {
    const body = reviewByPrefix('070');
    const real = await review(enforce, body);
    body.request.uid = randomUUID();
    body.request.dryRun = true;
    body.request.options.dryRun = ['All'];
    assert.deepEqual(await review(enforce, body), real);
  });

  test('055: break glass is allowed in enforce mode, warns, and audits the override and the pods', async () => {
    const a = await review(enforce, reviewByPrefix('055'));
    assert.equal(a.allowed, true);
    assert.ok(a.warnings.some((w) => w.startsWith('PVC shop/logs deletion allowed by tokenguard.io/allow-delete=true (break glass); 3 pods')));
    const audit = Object.entries(a.audit);
    assert.ok(audit.some(([k, v]) => k.includes('break-glass') && v === 'tokenguard.io/allow-delete=true'), JSON.stringify(a.audit));
    const pods = audit.find(([k]) => k.includes('pods-in-use'))?.[1] ?? '';
    assert.deepEqual(pods.split(',').sort(), ['shop/api-6768cdbbb8-fbs52', 'shop/api-69ddc5895c-2dzgc', 'shop/no-token']);
  });

  test('break glass also lets a claim used by running pods go, with warnings only', async () => {
    const a = await review(enforce, deleteReview('shop', 'shared', { annotations: { 'tokenguard.io/allow-delete': 'true' } }));
    assert.equal(a.allowed, true);
    assert.ok(a.warnings.some((w) => w.includes('would hang in Terminating')));
    assert.ok(Object.values(a.audit).some((v) => v.split(',').includes('shop/db-1')));
  });

  test('056/057 (deletecollection, object by object): claims with no pods are allowed without warnings', async () => {
    for (const prefix of ['056', '057']) {
      const a = await review(enforce, reviewByPrefix(prefix));
      assert.deepEqual(a, { allowed: true, message: '', warnings: [], audit: {} }, prefix);
    }
  });

  test('059/060: the namespace controller and the garbage collector are exempt', async () => {
    for (const prefix of ['059', '060']) {
      const a = await review(enforce, reviewByPrefix(prefix));
      assert.deepEqual(a, { allowed: true, message: '', warnings: [], audit: {} }, prefix);
    }
  });

  test('the StatefulSet controller (PVC retention) is exempt by default; a person is not', async () => {
    const sts = await review(enforce, deleteReview('shop', 'shared', { user: 'system:serviceaccount:kube-system:statefulset-controller' }));
    assert.deepEqual(sts.warnings, []);
    assert.equal(sts.allowed, true);
    assert.equal((await review(enforce, deleteReview('shop', 'shared', { user: 'alice' }))).allowed, false);
  });

  test('a terminal pod: allowed, the claim stays Terminating until the pod object is deleted', async () => {
    rig.fake.upsert('pods', podLike('done-1', { namespace: 'sc-terminal', nodeName: 'node-b', phase: 'Succeeded', claim: 'out' }));
    await until(() => rig.cache.podsUsingClaim('sc-terminal', 'out').length === 1, 'the pod in the cache');
    const a = await review(enforce, deleteReview('sc-terminal', 'out'));
    assert.equal(a.allowed, true);
    assert.deepEqual(a.warnings, ['PVC sc-terminal/out stays Terminating until finished pods are deleted: done-1 (Succeeded on node-b)',
      'the PVC stays Terminating until those pods are deleted, and kubectl delete waits for that: pass --wait=false to return at once']);
  });

  test('a generic ephemeral claim counts only when owned by the pod', async () => {
    rig.fake.upsert('pods', podLike('eph', { namespace: 'sc-eph', nodeName: 'node-b', ephemeral: 'scratch' }));
    await until(() => rig.cache.podsUsingClaim('sc-eph', 'eph-scratch').length === 1, 'the pod in the cache');
    const owned = await review(enforce, deleteReview('sc-eph', 'eph-scratch', { ownerPodUid: 'uid-sc-eph-eph' }));
    assert.equal(owned.allowed, false);
    assert.match(owned.message, /in use by eph \(Running on node-b\)/);
    const notOwned = await review(enforce, deleteReview('sc-eph', 'eph-scratch', { ownerPodUid: 'someone-else' }));
    assert.deepEqual(notOwned.warnings, []);
    assert.equal(notOwned.allowed, true);
  });

  test('a same-named claim in another namespace is not counted', async () => {
    rig.fake.upsert('pods', podLike('elsewhere', { namespace: 'sc-other', nodeName: 'node-a', claim: 'shared' }));
    await until(() => rig.cache.podsUsingClaim('sc-other', 'shared').length === 1, 'the pod in the cache');
    const a = await review(enforce, deleteReview('sc-empty', 'shared'));
    assert.deepEqual(a, { allowed: true, message: '', warnings: [], audit: {} });
    const shop = await review(enforce, reviewByPrefix('070'));
    assert.doesNotMatch(shop.message, /elsewhere/);
  });

  test('many pods: up to 5 named with owner and node, then "and N more"; warnings stay within the limit', async () => {
    for (let i = 0; i < 12; i++) {
      rig.fake.upsert(
        'pods',
        podLike(`web-7d4b9c8f6d-p${String(i).padStart(2, '0')}`, {
          namespace: 'sc-many',
          nodeName: `node-${i % 3}`,
          claim: 'shared-cache',
          owner: { kind: 'ReplicaSet', name: 'web-7d4b9c8f6d' },
          labels: { 'pod-template-hash': '7d4b9c8f6d' },
        }),
      );
    }
    await until(() => rig.cache.podsUsingClaim('sc-many', 'shared-cache').length === 12, 'the 12 pods');
    const denied = await review(enforce, deleteReview('sc-many', 'shared-cache'));
    assert.equal(denied.allowed, false);
    assert.match(denied.message, /12 scheduled pods still use it: .*\(Deployment web, node node-\d, Running\).* and 7 more\./);
    assert.equal(denied.message.match(/\(Deployment web, node/g)?.length, 5);
    const warned = await review(warn, deleteReview('sc-many', 'shared-cache'));
    everyWarningFits(warned);
    assert.ok(warned.warnings.some((w) => /would hang in Terminating: in use by .* and \d+ more$/.test(w)), JSON.stringify(warned.warnings));
  });

  test('one pod: the denial and the break-glass warning say "1 ... pod still uses it"', async () => {
    rig.fake.upsert('pods', podLike('solo-0', { namespace: 'sc-one', nodeName: 'node-1', claim: 'solo' }));
    await until(() => rig.cache.podsUsingClaim('sc-one', 'solo').length === 1, 'the pod');
    const denied = await review(enforce, deleteReview('sc-one', 'solo'));
    assert.equal(denied.allowed, false);
    assert.match(denied.message, /\. 1 scheduled pod still uses it: solo-0 \(/);
    const broken = await review(enforce, deleteReview('sc-one', 'solo', { annotations: { 'tokenguard.io/allow-delete': 'true' } }));
    assert.ok(broken.warnings.includes('PVC sc-one/solo deletion allowed by tokenguard.io/allow-delete=true (break glass); 1 pod still uses it'), JSON.stringify(broken.warnings));
  });

  test('kubelet versions: affected and fixed, with vendor suffixes; pods without a projected token are not flagged', async () => {
    const nodes: [string, string, boolean][] = [
      ['kv-eks', 'v1.31.4-eks-1234abc', true],
      ['kv-k3s', 'v1.30.14+k3s1', false],
      ['kv-gke', 'v1.29.3-gke.1', true],
      ['kv-fixed', 'v1.32.4', false],
      ['kv-new', 'v1.33.0', false],
    ];
    for (const [name, version] of nodes) rig.fake.upsert('nodes', nodeLike(name, version));
    for (const [name] of nodes) rig.fake.upsert('pods', podLike(`p-${name}`, { namespace: 'sc-kv', nodeName: name, claim: 'kv' }));
    rig.fake.upsert('nodes', nodeLike('kv-notoken', 'v1.28.0'));
    rig.fake.upsert('pods', podLike('p-notoken', { namespace: 'sc-kv', nodeName: 'kv-notoken', claim: 'kv', token: false }));
    await until(() => rig.cache.podsUsingClaim('sc-kv', 'kv').length === 6 && !!rig.cache.node('kv-notoken'), 'pods and nodes');
    const a = await review(warn, deleteReview('sc-kv', 'kv'));
    const w = a.warnings.find((x) => x.includes('kubernetes#130442'));
    assert.ok(w, JSON.stringify(a.warnings));
    for (const [name, version, affected] of nodes) {
      assert.equal(w.includes(name), affected, `${name} ${version} in ${w}`);
    }
    assert.doesNotMatch(w, /kv-notoken/);
  });

  test('namespace label tokenguard.io/mode overrides the configured mode', async () => {
    for (const [ns, mode] of [
      ['sc-label-warn', 'warn'],
      ['sc-label-off', 'off'],
      ['sc-label-enforce', 'enforce'],
    ] as const) {
      rig.fake.upsert('namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { 'tokenguard.io/mode': mode } } });
      rig.fake.upsert('pods', podLike('user', { namespace: ns, nodeName: 'node-a', claim: 'c' }));
    }
    await until(
      () => rig.cache.namespaceLabels('sc-label-enforce') !== undefined && rig.cache.podsUsingClaim('sc-label-enforce', 'c').length === 1,
      'labels and pods',
    );
    const w = await review(enforce, deleteReview('sc-label-warn', 'c'));
    assert.equal(w.allowed, true);
    assert.ok(w.warnings.some((x) => x.includes('would hang in Terminating')));
    assert.deepEqual(await review(enforce, deleteReview('sc-label-off', 'c')), { allowed: true, message: '', warnings: [], audit: {} });
    assert.equal((await review(warn, deleteReview('sc-label-enforce', 'c'))).allowed, false);
  });

  test('a watch dropped, then a new pod: seen after the reconnect, and the delete is denied', async () => {
    rig.fake.dropWatches();
    rig.fake.upsert('pods', podLike('late', { namespace: 'sc-late', nodeName: 'node-b', claim: 'c' }));
    // Reconnect bound in these tests: backoff capped at 100 ms.
    await until(() => rig.cache.podsUsingClaim('sc-late', 'c').length === 1, 'the pod after the reconnect', 2000);
    assert.equal((await review(enforce, deleteReview('sc-late', 'c'))).allowed, false);
  });

  test('410 on the watch: the cache relists and the next decision sees the new pod', async () => {
    rig.fake.dropWatches();
    rig.fake.upsert('pods', podLike('after-410', { namespace: 'sc-410', nodeName: 'node-b', claim: 'c' }));
    rig.fake.compact();
    await until(() => rig.cache.podsUsingClaim('sc-410', 'c').length === 1, 'the pod after the relist', 2000);
    assert.equal((await review(enforce, deleteReview('sc-410', 'c'))).allowed, false);
  });
});

describe('when the cache cannot answer', () => {
  test('not synced yet: a live LIST of the namespace decides', async () => {
    const fake = await FakeApiServer.start();
    loadCapturedClusterState(fake);
    // The cluster-wide pod LIST fails (say, a slow or overloaded API server); namespaced LISTs work.
    fake.route('GET', /^\/api\/v1\/pods$/, (_req, res, { fake: f }) =>
      f.sendJson(res, 500, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'etcdserver: request timed out', code: 500 }),
    );
    const kc = new KubeConfig();
    kc.loadFromFile(fake.kubeconfigPath);
    const cache = new ClusterCache({ kc, staleAfterSeconds: 60, ...TEST_TUNING });
    cache.start();
    const server = await startTestServer({ policies: POLICIES, cluster: cache, config: { mode: 'enforce' } });
    try {
      assert.equal(cache.status().synced, false);
      const a = await review(server, reviewByPrefix('070'));
      assert.equal(a.allowed, false);
      assert.match(a.message, /db-1 \(Running on node-a\), reader-1 \(Running on node-b\)/);
      assert.ok(fake.requests.some((r) => r.path === '/api/v1/namespaces/shop/pods'), 'a live namespaced LIST was made');
      assert.equal(cache.status().synced, false);
    } finally {
      await server.shutdown();
      cache.stop();
      await fake.close();
    }
  });

  for (const onLookupFailure of ['allow', 'deny'] as const) {
    test(`API server down, onLookupFailure=${onLookupFailure}`, async () => {
      const fake = await FakeApiServer.start();
      await fake.down();
      const kc = new KubeConfig();
      kc.loadFromFile(fake.kubeconfigPath);
      const cache = new ClusterCache({ kc, staleAfterSeconds: 60, ...TEST_TUNING });
      cache.start();
      const server = await startTestServer({
        policies: POLICIES,
        cluster: cache,
        config: { mode: 'enforce', cluster: { onLookupFailure, lookupTimeoutMs: 300 } },
      });
      try {
        const a = await review(server, reviewByPrefix('070'));
        if (onLookupFailure === 'allow') {
          assert.equal(a.allowed, true);
          assert.deepEqual(a.warnings, ['could not check which pods use PVC shop/shared; deletion not checked']);
        } else {
          assert.equal(a.allowed, false);
          assert.match(a.message, /could not check which pods use PVC shop\/shared; refused \(cluster.onLookupFailure=deny\)/);
          assert.match(a.message, /not synced yet.*live lookup failed: .*ECONNREFUSED/);
          // Break glass still works when the cluster cannot be asked.
          const bg = await review(server, deleteReview('shop', 'shared', { annotations: { 'tokenguard.io/allow-delete': 'true' } }));
          assert.equal(bg.allowed, true);
          assert.ok(Object.values(bg.audit).includes('unknown (lookup failed)'));
        }
      } finally {
        await server.shutdown();
        cache.stop();
        await fake.close();
      }
    });
  }

  test('no cluster configured: allowed, warning that the guard could not check', async () => {
    const server = await startTestServer({ policies: POLICIES, config: { mode: 'enforce', cluster: { onLookupFailure: 'deny' } } });
    try {
      const a = await review(server, reviewByPrefix('070'));
      assert.equal(a.allowed, true);
      assert.deepEqual(a.warnings, ['could not check which pods use PVC shop/shared; deletion not checked']);
    } finally {
      await server.shutdown();
    }
  });
});

describe('pure helpers', () => {
  test('kubelet versions affected by kubernetes#130442', () => {
    const cases: [string, boolean | undefined][] = [
      ['v1.29.15', true],
      ['v1.30.11', true],
      ['v1.30.12', false],
      ['v1.30.14+k3s1', false],
      ['v1.31.0', true],
      ['v1.31.7', true],
      ['v1.31.8', false],
      ['v1.31.4-eks-1234abc', true],
      ['v1.32.0', true],
      ['v1.32.3', true],
      ['v1.32.4', false],
      ['v1.33.0', false],
      ['v1.29.3-gke.1', true],
      ['1.34.1', false],
      ['', undefined],
      ['garbage', undefined],
    ];
    for (const [v, expected] of cases) assert.equal(kubeletAffectedBy130442(v), expected, v);
    assert.deepEqual(parseKubeletVersion('v1.31.4-eks-1234abc'), { major: 1, minor: 31, patch: 4 });
  });

  test('fitList names at most 5 and says how many more', () => {
    const many = Array.from({ length: 9 }, (_, i) => `pod-${i}`);
    assert.equal(fitList(many, 500), 'pod-0, pod-1, pod-2, pod-3, pod-4 and 4 more');
    assert.equal(fitList(many, 24), 'pod-0, pod-1 and 7 more');
    assert.equal(fitList(many, 20), 'pod-0 and 8 more');
    assert.equal(fitList(['a'], 1), 'a');
  });
});
