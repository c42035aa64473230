// Where credentials come from: --kubeconfig, then KUBECONFIG, then the in-cluster service
// account, then ~/.kube/config; each one checked by talking to the fake API server with it.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { ApiClient } from '../../src/cluster/client.js';
import { findKubeConfig, SERVICE_ACCOUNT_DIR } from '../../src/cluster/kubeconfig.js';
import { FakeApiServer, loadCapturedClusterState } from '../helpers/fake-apiserver.js';
import { tempDir } from '../helpers/temp-dir.js';

let fake: FakeApiServer;
before(async () => {
  fake = await FakeApiServer.start();
  loadCapturedClusterState(fake);
});
after(() => fake.close());

const emptyHome = () => tempDir('home-');

async function canList(found: ReturnType<typeof findKubeConfig>): Promise<number> {
  assert.ok(found);
  const list = await new ApiClient(found.kc).getJson('/api/v1/nodes');
  return list.items.length;
}

test('--kubeconfig wins over everything else', async () => {
  const found = findKubeConfig({ kubeconfig: fake.kubeconfigPath, env: { KUBECONFIG: '/nonexistent' }, home: emptyHome() });
  assert.equal(found?.source, `--kubeconfig ${fake.kubeconfigPath}`);
  assert.equal(found?.server, fake.url);
  assert.equal(await canList(found), 2);
});

test('an explicit kubeconfig that cannot be read is an error naming it, not a silent fallback', () => {
  assert.throws(() => findKubeConfig({ kubeconfig: '/nonexistent/kubeconfig', env: {}, home: emptyHome() }), /cannot load kubeconfig \/nonexistent\/kubeconfig: no such file \(name a kubeconfig file with --kubeconfig or KUBECONFIG\)$/);
  assert.throws(() => findKubeConfig({ env: { KUBECONFIG: '/nonexistent/a' }, home: emptyHome() }), /cannot load kubeconfig \/nonexistent\/a: no such file/);
});

test('a file that is no kubeconfig (/dev/null, an empty file) says it defines no cluster, not client-node\'s TypeError', () => {
  for (const file of ['/dev/null']) {
    assert.throws(
      () => findKubeConfig({ kubeconfig: file, env: {}, home: emptyHome() }),
      (err: Error) => {
        assert.equal(err.message, `cannot load kubeconfig ${file}: it defines no cluster (is it a kubeconfig? kind and minikube write one to ~/.kube/config)`);
        return true;
      },
    );
  }
});

test('KUBECONFIG: the first file gives the context, later files are merged', async () => {
  const dir = tempDir('kc-');
  const extra = join(dir, 'extra');
  writeFileSync(
    extra,
    'apiVersion: v1\nkind: Config\nclusters: [{name: other, cluster: {server: "https://10.0.0.1"}}]\nusers: [{name: other, user: {token: x}}]\ncontexts: [{name: other, context: {cluster: other, user: other}}]\ncurrent-context: other\n',
  );
  const found = findKubeConfig({ env: { KUBECONFIG: [fake.kubeconfigPath, extra].join(delimiter) }, home: emptyHome() });
  assert.match(found!.source, /^KUBECONFIG /);
  assert.equal(found!.server, fake.url);
  assert.equal(found!.kc.getContexts().length, 2);
  assert.equal(await canList(found), 2);
});

test('in-cluster: service-account token file, CA and KUBERNETES_SERVICE_HOST/PORT', async () => {
  const root = tempDir('sa-');
  const sa = join(root, SERVICE_ACCOUNT_DIR);
  mkdirSync(sa, { recursive: true });
  writeFileSync(join(sa, 'token'), fake.token!);
  writeFileSync(join(sa, 'ca.crt'), fake.certs!.ca);
  writeFileSync(join(sa, 'namespace'), 'tokenguard');
  // client-node's loadFromCluster reads the host and port from process.env.
  const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
  process.env.KUBERNETES_SERVICE_HOST = '127.0.0.1';
  process.env.KUBERNETES_SERVICE_PORT = String(fake.port);
  try {
    const found = findKubeConfig({ env: process.env.KUBECONFIG ? { ...process.env, KUBECONFIG: '' } : process.env, inClusterRoot: root, home: emptyHome() });
    assert.equal(found?.source, 'in-cluster service account');
    assert.equal(found?.server, `https://127.0.0.1:${fake.port}`);
    assert.equal(await canList(found), 2);
  } finally {
    for (const [k, v] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
});

test('~/.kube/config last; nothing configured means no cluster', async () => {
  const home = emptyHome();
  assert.equal(findKubeConfig({ env: {}, home, inClusterRoot: home }), undefined);
  mkdirSync(join(home, '.kube'));
  writeFileSync(join(home, '.kube', 'config'), fake.kubeconfig());
  const found = findKubeConfig({ env: {}, home, inClusterRoot: home });
  assert.equal(found?.source, join(home, '.kube', 'config'));
  assert.equal(await canList(found), 2);
});
