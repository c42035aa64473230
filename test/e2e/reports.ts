// `tokenguard audit --report` against a real kube-apiserver with the vendored report CRDs applied,
// run as the audit CronJob's own ServiceAccount with the RBAC of manifests/components/audit-reports
// (so the test also proves that RBAC is enough): a claim Terminating under a pod shows up as a
// `fail` result naming the claim and the pod; once the pod is gone (deleted with --force: there is
// no kubelet) and audit runs again, the result is gone. Another source's report in the same
// namespace is never touched. Both report APIs: OpenReports (the default) and wgpolicyk8s.io. A
// namespace being deleted (a pod still in it: ordered namespace deletion waits for pods, and there
// is no kubelet to end them) refuses new reports: it is skipped and named, and every other
// namespace's report is still written.

import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { Assets } from './harness/assets.js';
import { ControlPlane } from './harness/control-plane.js';
import { ensureNamespace } from './harness/environment.js';
import { eventually } from './harness/eventually.js';
import { kubectlFor, mustWith, ok, type Kubectl } from './harness/kubectl.js';
import { claim, podOn } from './harness/objects.js';
import { PROJECT_ROOT } from '../helpers/tls.js';
import { tokenguardCli, yaml } from './harness/cli.js';

const NS = 'e2e-reports';
const MANIFESTS = join(PROJECT_ROOT, 'manifests');
const APIS = [
  { api: 'openreports.io/v1alpha1', resource: 'reports.openreports.io', crds: 'crds/openreports.io', flags: [] as string[] },
  { api: 'wgpolicyk8s.io/v1alpha2', resource: 'policyreports.wgpolicyk8s.io', crds: 'crds/wgpolicyk8s.io', flags: ['--report-api', 'wgpolicyk8s.io/v1alpha2'] },
] as const;

export function reportsScenario(assets: Assets): void {
  let cp: ControlPlane;
  let kubectl: Kubectl;
  /** The audit CronJob's ServiceAccount, as a kubeconfig. */
  let auditKubeconfig: string;
  const must = mustWith(() => kubectl);
  const audit = (flags: readonly string[]) => tokenguardCli(['audit', '--kubeconfig', auditKubeconfig, '--report', ...flags], { timeoutMs: 120_000 });
  /** tokenguard's report in the namespace, or undefined when there is none. */
  const ownReport = async (resource: string, namespace = NS) => {
    const r = await kubectl(['get', resource, 'tokenguard-audit', '-n', namespace, '-o', 'json']);
    if (r.code !== 0) {
      assert.match(r.stderr, /NotFound|not found/, r.stderr);
      return undefined;
    }
    return JSON.parse(r.stdout);
  };

  before(async () => {
    cp = await ControlPlane.start(assets, { controllerManager: !!assets.kubeControllerManager });
    kubectl = kubectlFor(assets.kubectl, cp.kubeconfig);
    // The vendored CRDs, as a user applies them; then wait until the API server serves them.
    for (const a of APIS) await must(['apply', '-k', join(MANIFESTS, a.crds)]);
    await must(['wait', '--for=condition=Established', '--timeout=60s', ...APIS.flatMap((a) => [`crd/${a.resource}`, `crd/${a.resource.replace(/^(reports|policyreports)/, (m) => (m === 'reports' ? 'clusterreports' : 'clusterpolicyreports'))}`])]);
    // The audit CronJob's namespace, ServiceAccount and RBAC, from the rendered overlay.
    const rendered = ok(await kubectl(['kustomize', join(MANIFESTS, 'overlays', 'audit-reports')]), 'kubectl kustomize overlays/audit-reports').stdout;
    const objects = parseAllDocuments(rendered).map((d) => d.toJS());
    const wanted = objects.filter(
      (o) =>
        (o.kind === 'Namespace' && o.metadata.name === 'tokenguard') ||
        (['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'].includes(o.kind) && o.metadata.name === 'tokenguard-audit'),
    );
    assert.equal(wanted.length, 6);
    await must(['apply', '-f', '-'], yaml(...wanted));
    const token = (await must(['create', 'token', 'tokenguard-audit', '-n', 'tokenguard', '--duration=1h'])).stdout.trim();
    auditKubeconfig = join(cp.dir, 'tokenguard-audit.kubeconfig');
    writeFileSync(auditKubeconfig, cp.kubeconfigFor({ token }), { mode: 0o600 });

    // A node with a kubelet that stops refreshing tokens under a Terminating claim, and a pod on it
    // that uses the claim (there is no scheduler or kubelet: bound by nodeName, Running by hand).
    await ensureNamespace(kubectl, NS);
    await must(['apply', '-f', '-'], yaml({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-reports' } }));
    await must(['patch', 'node', 'node-reports', '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { nodeInfo: { kubeletVersion: 'v1.31.2' } } })]);
    await must(['apply', '-f', '-'], yaml(claim(NS, 'data'), podOn(NS, 'db-0', 'node-reports', 'data')));
    await must(['patch', 'pod', 'db-0', '-n', NS, '--subresource=status', '--type=merge', '-p', '{"status":{"phase":"Running"}}']);
    // Deleted while the pod uses it: the pvc-protection finalizer keeps it Terminating.
    await must(['delete', 'pvc', 'data', '-n', NS, '--wait=false']);
    const pvc = JSON.parse((await must(['get', 'pvc', 'data', '-n', NS, '-o', 'json'])).stdout);
    assert.ok(pvc.metadata.deletionTimestamp, 'the claim is Terminating');
    // Another source's reports in the same namespace: never to be touched.
    for (const a of APIS) {
      const kind = a.api.startsWith('openreports') ? 'Report' : 'PolicyReport';
      await must(
        ['apply', '-f', '-'],
        yaml({
          apiVersion: a.api,
          kind,
          metadata: { name: 'other-tool', namespace: NS, labels: { 'app.kubernetes.io/managed-by': 'other-tool' } },
          summary: { pass: 1, fail: 0, warn: 0, error: 0, skip: 0 },
          results: [{ policy: 'other-policy', result: 'pass', source: 'other-tool', resources: [{ apiVersion: 'v1', kind: 'Pod', namespace: NS, name: 'db-0' }] }],
        }),
      );
    }
  });

  after(async () => {
    await cp?.stop();
  });

  const othersIntact = async () => {
    for (const a of APIS) {
      const other = JSON.parse((await must(['get', a.resource, 'other-tool', '-n', NS, '-o', 'json'])).stdout);
      assert.deepEqual(other.results.map((r: { policy: string; source: string }) => [r.policy, r.source]), [['other-policy', 'other-tool']], `${a.api}: the other tool's report is as it was`);
      assert.equal(other.metadata.generation, 1, `${a.api}: never written by tokenguard`);
    }
  };

  it('audit --report, as the CronJob\'s ServiceAccount: the claim Terminating under db-0 is a fail result naming both, in each API', async () => {
    for (const a of APIS) {
      const r = await audit(a.flags);
      assert.equal(r.code, 0, `${a.api}: reports written: exit 0\n${r.stdout}${r.stderr}`);
      assert.match(r.stderr, new RegExp(`${a.api.replace(/[./]/g, '\\$&')} reports: \\d+ result\\(s\\); created [^;]*${NS}/tokenguard-audit`), r.stderr);
      // Its Role lets it ask the token refresh observer; no component here, so nothing observes (and no result is made up).
      assert.match(r.stdout, /^== Token refresh \(observed\)\nnothing observes TokenRequests: .*\n {2}\(asked Service tokenguard\/tokenguard-observer \(through the API server\): no Service /m);
      const report = await ownReport(a.resource);
      assert.ok(report, `${a.api}: tokenguard's report in ${NS}`);
      assert.equal(report.metadata.labels['app.kubernetes.io/managed-by'], 'tokenguard');
      const claim = report.results.find((x: { policy: string }) => x.policy === 'pvc-in-use');
      assert.ok(claim, `${a.api}: a pvc-in-use result\n${JSON.stringify(report.results, null, 2)}`);
      assert.equal(claim.result, 'fail');
      assert.equal(claim.source, 'tokenguard');
      assert.equal(claim.severity, 'critical', 'the kubelet stops refreshing the pod\'s token (v1.31.2)');
      assert.deepEqual(
        claim.resources.map((x: { kind: string; name: string; namespace: string }) => `${x.kind} ${x.namespace}/${x.name}`),
        [`PersistentVolumeClaim ${NS}/data`, `Pod ${NS}/db-0`],
      );
      assert.match(claim.message, new RegExp(`PVC ${NS}/data is Terminating .*db-0 \\(Running on node-reports, token refresh STOPPED`));
      assert.ok(report.summary.fail >= 1);
      if (a.api.startsWith('openreports')) assert.equal(report.source, 'tokenguard');
    }
    await othersIntact();
  });

  it('a second run replaces the report in place; once the pod is gone, the next run removes the result', async () => {
    const before = await ownReport(APIS[0].resource);
    const again = await audit(APIS[0].flags);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, new RegExp(`replaced [^;]*${NS}/tokenguard-audit`));
    const replaced = await ownReport(APIS[0].resource);
    assert.equal(replaced.metadata.uid, before.metadata.uid, 'the same object, replaced');

    await must(['delete', 'pod', 'db-0', '-n', NS, '--force', '--grace-period=0']);
    await eventually(async () => (await kubectl(['get', 'pod', 'db-0', '-n', NS])).code !== 0, 'the pod to be gone');
    for (const a of APIS) {
      const r = await audit(a.flags);
      assert.equal(r.code, 0, `${a.api}: ${r.stdout}${r.stderr}`);
      const report = await ownReport(a.resource);
      // Nothing else is wrong in the namespace: tokenguard's report there is deleted with its last result.
      assert.equal(report, undefined, `${a.api}: no tokenguard report left in ${NS}: ${JSON.stringify(report?.results)}`);
      assert.match(r.stderr, new RegExp(`deleted [^;\\n]*${NS}/tokenguard-audit`), r.stderr);
      // And no report of tokenguard's anywhere names the claim.
      const all = JSON.parse((await must(['get', a.resource, '-A', '-l', 'app.kubernetes.io/managed-by=tokenguard', '-o', 'json'])).stdout);
      assert.ok(!JSON.stringify(all).includes(`"name":"data"`), `${a.api}: the claim is in no tokenguard report`);
    }
    await othersIntact();
  });

  it('a namespace being deleted with a pod still in it: skipped and named, exit 0; the healthy namespace\'s Report is written', async () => {
    const going = 'e2e-reports-going';
    const healthy = 'e2e-reports-healthy';
    // In each, a pod that mounts a claim and a projected token: a finding, so a report is wanted.
    for (const ns of [going, healthy]) {
      await ensureNamespace(kubectl, ns);
      await must(['apply', '-f', '-'], yaml(claim(ns, 'data'), podOn(ns, 'app-0', 'node-reports', 'data')));
    }
    await must(['delete', 'namespace', going, '--wait=false']);
    // The namespace controller deletes the pods first and waits for them to be gone; no kubelet ends this one.
    await eventually(async () => {
      const pod = await kubectl(['get', 'pod', 'app-0', '-n', going, '-o', 'jsonpath={.metadata.deletionTimestamp}']);
      return pod.code === 0 && pod.stdout !== '';
    }, `the pod in ${going} to be Terminating`);
    const phase = (await must(['get', 'namespace', going, '-o', 'jsonpath={.status.phase}'])).stdout;
    assert.equal(phase, 'Terminating');

    const r = await audit(APIS[0].flags);
    assert.equal(r.code, 0, `a namespace being deleted is no failure: exit 0\n${r.stderr}`);
    assert.match(r.stderr, new RegExp(`^tokenguard audit: namespace ${going} is being deleted: its report skipped$`, 'm'), r.stderr);
    assert.match(r.stderr, new RegExp(`created [^;]*${healthy}/tokenguard-audit[^;]*;.*; skipped \\(namespace being deleted\\) ${going}$`, 'm'), r.stderr);
    const report = await ownReport(APIS[0].resource, healthy);
    assert.ok(report, `tokenguard's report in ${healthy}`);
    assert.ok(
      report.results.some((x: { policy: string; resources: { name: string }[] }) => x.policy === 'pvc-token-risk' && x.resources[0]?.name === 'app-0'),
      JSON.stringify(report.results),
    );
    assert.equal(await ownReport(APIS[0].resource, going), undefined, `no report in ${going}`);
  });
}
