// `tokenguard audit` through the real client against the fake API server serving the captured
// cluster state (test/fixtures/cluster-state: `shop/shared` Terminating while db-1 runs on node-a,
// kubelet v1.31.2, and reader-1 on node-b, v1.33.1), plus the captured kube-apiserver mirror pods
// and CronJob, and OIDC discovery serving `https://kubernetes.default.svc`.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { runAudit, type AuditReport } from '../../src/cli/audit.js';
import { FakeApiServer, loadCapturedClusterState } from '../helpers/fake-apiserver.js';
import { reviewByPrefix } from '../helpers/fixtures.js';
import { serveOidc } from '../helpers/oidc.js';
import { tempDir } from '../helpers/temp-dir.js';
import { makeCerts } from '../helpers/tls.js';

const SERVED = 'https://kubernetes.default.svc';

async function audit(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runAudit(args, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  return { code, stdout, stderr };
}

describe('tokenguard audit', () => {
  let fake: FakeApiServer;
  let report: AuditReport;
  let code: number;

  before(async () => {
    fake = await FakeApiServer.start();
    loadCapturedClusterState(fake);
    await serveOidc(fake, SERVED);
    // The kubeadm (043) and kOps (045) kube-apiserver mirror pods, and the CronJob with a bad token (032).
    fake.upsert('pods', reviewByPrefix('043').request.object);
    fake.upsert('pods', reviewByPrefix('045').request.object);
    fake.upsert('cronjobs', reviewByPrefix('032').request.object);
    const r = await audit(['--kubeconfig', fake.kubeconfigPath, '-o', 'json']);
    assert.equal(r.stderr, '');
    code = r.code;
    report = JSON.parse(r.stdout);
  });
  after(() => fake.close());

  it('finds shop/shared Terminating while db-1 and reader-1 run on it, token refresh stopped on node-a only', () => {
    assert.equal(report.terminatingClaims.length, 1);
    const c = report.terminatingClaims[0]!;
    assert.equal(`${c.namespace}/${c.claim}`, 'shop/shared');
    assert.deepEqual(c.finalizers, ['kubernetes.io/pvc-protection']);
    assert.ok(!Number.isNaN(Date.parse(c.deletionTimestamp)));
    const pods = Object.fromEntries(c.pods.map((p) => [p.name, p]));
    assert.deepEqual(Object.keys(pods).sort(), ['db-1', 'reader-1']);
    assert.deepEqual(pods['db-1'], { name: 'db-1', node: 'node-a', phase: 'Running', kubeletVersion: 'v1.31.2', kubeletAffected: true, tokenRefresh: 'stopped' });
    assert.deepEqual(pods['reader-1'], { name: 'reader-1', node: 'node-b', phase: 'Running', kubeletVersion: 'v1.33.1', kubeletAffected: false, tokenRefresh: 'refreshing' });
    assert.equal(report.summary.tokenRefreshStopped, 1);
  });

  it('lists the pods once: the caches\' LIST is judged whole, not followed by a second LIST', () => {
    const podLists = fake.requests.filter((r) => r.path === '/api/v1/pods' && !r.query.watch && !r.query.continue);
    assert.equal(podLists.length, 1, JSON.stringify(podLists));
    // The pods judged are whole ones (their volumes), as the next test's risk pods show.
  });

  it('lists the pods that mount a claim and a projected token, and not the one without a token', () => {
    // From the fixtures README: web-0, kafka-0, the api Deployment's pods, db-1 and reader-1 combine
    // the two; no-token does not. reader-1 runs on node-b (kubelet v1.33.1, fixed): its token keeps
    // refreshing, so it is listed apart, not counted as at risk (the summary once said "6 pod(s) at
    // risk" while the Terminating-claim table said reader-1 was "refreshing").
    assert.deepEqual(report.riskPods.map((p) => p.name).sort(), ['api-6768cdbbb8-fbs52', 'api-69ddc5895c-2dzgc', 'db-1', 'kafka-0', 'web-0']);
    assert.deepEqual(report.unaffectedPods.map((p) => [p.name, p.kubeletVersion, p.kubeletAffected]), [['reader-1', 'v1.33.1', false]]);
    assert.equal(report.summary.riskPods, 5);
    assert.equal(report.summary.unaffectedPods, 1);
    const web = report.riskPods.find((p) => p.name === 'web-0')!;
    assert.deepEqual(web.claims, ['data']);
    assert.deepEqual(web.tokenVolumes, ['istio-token', 'kube-api-access-9zkc8']);
    assert.equal(web.node, '', 'web-0 is not scheduled');
    const db1 = report.riskPods.find((p) => p.name === 'db-1')!;
    assert.equal(db1.kubeletAffected, true);
  });

  it('runs the registered policies over existing objects: the decisions the fixtures README expects', () => {
    const of = (name: string) => report.findings.filter((f) => f.name === name);
    // 032 CronJob nightly: two denials at the token source.
    const nightly = of('nightly');
    assert.equal(nightly.filter((f) => f.severity === 'deny').length, 2);
    assert.ok(nightly.every((f) => f.kind === 'CronJob' && f.path?.startsWith('spec.jobTemplate.spec.template.spec.volumes[0].projected.sources[0].serviceAccountToken')));
    // long-token: volume t (172800 s) denied, volume u (user-written 3607 s) warned, kube-api-access never flagged.
    const long = of('long-token');
    assert.ok(long.some((f) => f.severity === 'deny' && f.path?.includes('volumes[0]')), JSON.stringify(long));
    assert.ok(long.some((f) => f.severity === 'warn' && f.path?.includes('volumes[1]')), JSON.stringify(long));
    assert.ok(!long.some((f) => f.path?.includes('volumes[2]')), 'the injected kube-api-access volume is never flagged');
    // sa-token-test: audience "api" denied.
    assert.ok(of('sa-token-test').some((f) => f.severity === 'deny' && f.message.includes('"api"')));
    // nfs-inline: inline NFS warning.
    assert.ok(of('nfs-inline').some((f) => f.severity === 'warn' && /NFS/.test(f.message)));
    // The kubeadm mirror pod does not accept the served issuer: a warning, never a denial.
    const mirror = of('kube-apiserver-cp-1');
    assert.ok(mirror.length > 0 && mirror.every((f) => f.severity === 'warn'), JSON.stringify(mirror));
    // Clean objects stay clean.
    for (const clean of ['plain', 'no-token', 'reader-1']) assert.deepEqual(of(clean), [], clean);
  });

  it('says which matched resources the cluster does not serve', () => {
    assert.ok(report.skippedResources.some((s) => s.resource === 'kubeadmcontrolplanes.controlplane.cluster.x-k8s.io' && s.reason === 'not served by this cluster'));
  });

  it('reports the served issuer and what each kube-apiserver accepts', () => {
    assert.equal(report.issuers.served, SERVED);
    const byName = Object.fromEntries(report.issuers.apiservers.map((a) => [a.name, a]));
    assert.deepEqual(byName['kube-apiserver-cp-1']?.issuers, ['https://kubernetes.default.svc.cluster.local']);
    assert.deepEqual(byName['kube-apiserver-ip-172-20-40-10.ec2.internal']?.issuers, ['https://api.internal.prod.example.com', 'https://master.prod.example.com']);
    assert.ok(report.issuers.apiservers.every((a) => a.acceptsServed === false));
    assert.deepEqual(report.issuers.accepted, [SERVED, 'https://kubernetes.default.svc.cluster.local', 'https://api.internal.prod.example.com', 'https://master.prod.example.com']);
    assert.equal(report.summary.apiserversRejectingServedIssuer, 2);
  });

  it('exits 1 when something is wrong', () => {
    assert.equal(code, 1);
  });

  it('prints kubectl-style tables', async () => {
    const { code: c, stdout } = await audit(['--kubeconfig', fake.kubeconfigPath]);
    assert.equal(c, 1);
    const lines = stdout.split('\n');
    const header = lines.findIndex((l) => l.startsWith('NAMESPACE') && l.includes('TOKEN REFRESH'));
    assert.ok(header > 0, stdout);
    const rows = lines.slice(header + 1, header + 3);
    const cols = (l: string) => l.split(/\s{3,}/);
    assert.deepEqual(cols(rows.find((l) => l.includes('db-1'))!).slice(3), ['db-1', 'Running', 'node-a', 'v1.31.2 (affected)', 'not refreshed (kubernetes#130442)']);
    assert.deepEqual(cols(rows.find((l) => l.includes('reader-1'))!).slice(3), ['reader-1', 'Running', 'node-b', 'v1.33.1', 'refreshing']);
    // Every column starts at the same offset on every row of a table.
    const start = (l: string, text: string) => l.indexOf(text);
    assert.equal(start(rows[0]!, 'Running'), start(rows[1]!, 'Running'));
    assert.equal(start(lines[header]!, 'PHASE'), start(rows[0]!, 'Running'));
    assert.match(stdout, new RegExp(`^Served issuer: ${SERVED}$`, 'm'));
    assert.match(stdout, /^Not checked: kubeadmcontrolplanes\.controlplane\.cluster\.x-k8s\.io: not served by this cluster$/m);
    assert.match(stdout, /^Summary: 1 Terminating claim\(s\) in use \(1 pod\(s\) with token refresh stopped\), 5 pod\(s\) at risk \(1 more on kubelets whose token refresh works\), \d+ deny and \d+ warn finding\(s\), 2 kube-apiserver\(s\) not accepting the served issuer, token refresh not observed\.$/m);
  });

  it('exits 0 on a cluster with nothing to report', async () => {
    const clean = await FakeApiServer.start();
    try {
      await serveOidc(clean, SERVED);
      for (const n of ['node-a', 'node-b']) clean.upsert('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: n }, status: { nodeInfo: { kubeletVersion: 'v1.33.1' } } });
      clean.upsert('namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } });
      const r = await audit(['--kubeconfig', clean.kubeconfigPath, '-o', 'json']);
      assert.equal(r.code, 0, r.stdout);
      const rep: AuditReport = JSON.parse(r.stdout);
      assert.deepEqual([rep.terminatingClaims, rep.riskPods, rep.unaffectedPods, rep.findings, rep.issuers.apiservers], [[], [], [], [], []]);
      assert.equal(rep.issuers.served, SERVED);
    } finally {
      await clean.close();
    }
  });

  it('an API server that refuses connections: exits 2 at once (well within 10 s), naming it', async () => {
    const gone = await FakeApiServer.start();
    const kubeconfig = gone.kubeconfigPath;
    await gone.close();
    const started = Date.now();
    const r = await audit(['--kubeconfig', kubeconfig]);
    assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /^tokenguard audit: cannot reach the API server https:\/\/127\.0\.0\.1:\d+ \(--kubeconfig .*\): connection refused \(is the API server running, and is this its address\?\)\n$/,
    );
    await assert.rejects(audit(['-o', 'yaml']), /--output must be table or json/);
    await assert.rejects(audit(['--timeout', '0']), /--timeout must be a positive number of seconds/);
  });

  it('an API server that never answers: exits 2 after --timeout, naming it', async () => {
    // Accepts the connection and says nothing (not even the TLS handshake).
    const silent = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as AddressInfo).port;
    const dir = tempDir('tokenguard-audit-');
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(
      kubeconfig,
      `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:${port}", insecure-skip-tls-verify: true}}]\n` +
        'users: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n',
    );
    try {
      const started = Date.now();
      const r = await audit(['--kubeconfig', kubeconfig, '--timeout', '1']);
      assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
      assert.equal(r.code, 2);
      assert.equal(r.stderr, `tokenguard audit: cannot reach the API server https://127.0.0.1:${port} (--kubeconfig ${kubeconfig}): no answer within 1 s (raise it with --timeout)\n`);
    } finally {
      silent.close();
    }
  });

  it('an API server whose certificate is signed by a CA the kubeconfig does not trust: says so as kubectl does, with the fix', async () => {
    // A real TLS server (the fake API server, its own CA); the kubeconfig trusts another CA.
    const kubeconfig = join(tempDir('tokenguard-audit-'), 'kubeconfig');
    writeFileSync(kubeconfig, fake.kubeconfig().replace(/certificate-authority-data: \S+/, `certificate-authority-data: ${makeCerts().ca.toString('base64')}`));
    const r = await audit(['--kubeconfig', kubeconfig]);
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr,
      `tokenguard audit: the API server ${fake.url} (--kubeconfig ${kubeconfig}) was reached, but its certificate did not verify: ` +
        'x509: certificate signed by unknown authority: the kubeconfig does not trust the CA that signed the API server\'s certificate ' +
        '(fix: set the cluster\'s certificate-authority-data to that CA, e.g. kubectl config set-cluster NAME --certificate-authority=ca.crt --embed-certs; kubeadm: /etc/kubernetes/pki/ca.crt)\n',
    );
    assert.doesNotMatch(r.stderr, /cannot reach|unable to verify the first certificate/);
  });
});
