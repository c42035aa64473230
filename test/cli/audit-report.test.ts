// `audit --report`: the findings of an audit as OpenReports / wgpolicyk8s.io reports, and their
// writing against the fake API server (test/helpers/fake-apiserver.ts, answering writes as
// kube-apiserver does): a run replaces tokenguard's previous results, deletes its reports where
// nothing is left, and never touches a report of another source; one namespace that refuses its
// report (being deleted, RBAC, 5xx, a lasting conflict) never stops the others.
// (test/e2e/reports.ts runs the same against a real kube-apiserver with the vendored CRDs.)

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KubeConfig } from '@kubernetes/client-node';
import { ApiClient } from '../../src/cluster/client.js';
import type { AuditReport } from '../../src/cli/audit.js';
import { auditResults, buildReports, MANAGED_BY, MAX_RESULTS, publishAuditReports, reportApiFlag, REPORT_NAME, writeReports } from '../../src/cli/audit-report.js';
import { FakeApiServer, statusBody } from '../helpers/fake-apiserver.js';

const NOW = new Date('2026-01-02T03:04:05Z');

function audit(over: Partial<AuditReport> = {}): AuditReport {
  return {
    cluster: 'https://127.0.0.1 (test)',
    terminatingClaims: [],
    riskPods: [],
    unaffectedPods: [],
    findings: [],
    skippedResources: [],
    issuers: { served: 'https://kubernetes.default.svc', accepted: ['https://kubernetes.default.svc'], apiservers: [] },
    tokenRefreshObserved: { asked: 'Service tokenguard/tokenguard-observer (through the API server)', status: 'nothing observes', detail: 'no Service', overdue: [] },
    summary: { terminatingClaimsInUse: 0, tokenRefreshStopped: 0, riskPods: 0, unaffectedPods: 0, denyFindings: 0, warnFindings: 0, apiserversRejectingServedIssuer: 0, tokenRefreshOverdue: 0 },
    ...over,
  };
}

const FULL = audit({
  terminatingClaims: [
    {
      namespace: 'shop',
      claim: 'data',
      deletionTimestamp: '2026-01-02T03:00:00Z',
      finalizers: ['kubernetes.io/pvc-protection'],
      pods: [
        { name: 'db-0', node: 'node-old', phase: 'Running', kubeletVersion: 'v1.31.2', kubeletAffected: true, tokenRefresh: 'stopped' },
        { name: 'db-1', node: 'node-new', phase: 'Running', kubeletVersion: 'v1.33.1', kubeletAffected: false, tokenRefresh: 'refreshing' },
      ],
    },
  ],
  riskPods: [{ namespace: 'shop', name: 'web-0', node: 'node-old', phase: 'Running', kubeletVersion: 'v1.31.2', kubeletAffected: true, claims: ['cache'], tokenVolumes: ['kube-api-access-x'] }],
  findings: [
    { apiVersion: 'batch/v1', kind: 'CronJob', namespace: 'jobs', name: 'nightly', policy: 'projected-token-lifetime', severity: 'deny', message: 'token lifetime too long', path: 'spec.jobTemplate' },
    { apiVersion: 'v1', kind: 'PersistentVolume', name: 'nfs-1', policy: 'nfs-mount-options', severity: 'warn', message: 'NFS without hard' },
  ],
  issuers: {
    served: 'https://kubernetes.default.svc',
    accepted: ['https://kubernetes.default.svc', 'https://old'],
    apiservers: [{ namespace: 'kube-system', name: 'kube-apiserver-cp1', node: 'cp1', issuers: ['https://old'], acceptsServed: false }],
  },
});

describe('audit findings as report results', () => {
  it('one result per finding: the claim with its pods, the risk pod, each flagged object, the apiserver', () => {
    const results = auditResults(FULL, NOW);
    assert.equal(results.length, 5);
    const claim = results[0]!;
    assert.equal(claim.namespace, 'shop');
    assert.deepEqual(
      { policy: claim.result.policy, rule: claim.result.rule, result: claim.result.result, severity: claim.result.severity, source: claim.result.source },
      { policy: 'pvc-in-use', rule: 'terminating-claim-in-use', result: 'fail', severity: 'critical', source: 'tokenguard' },
    );
    assert.deepEqual(claim.result.resources, [
      { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace: 'shop', name: 'data' },
      { apiVersion: 'v1', kind: 'Pod', namespace: 'shop', name: 'db-0' },
      { apiVersion: 'v1', kind: 'Pod', namespace: 'shop', name: 'db-1' },
    ]);
    assert.match(claim.result.message, /PVC shop\/data is Terminating .* db-0 \(Running on node-old, token refresh STOPPED: kubernetes#130442\), db-1 \(Running on node-new\)/);
    assert.deepEqual(claim.result.timestamp, { seconds: NOW.getTime() / 1000, nanos: 0 });
    assert.equal(results[1]!.result.result, 'warn');
    assert.equal(results[1]!.result.policy, 'pvc-token-risk');
    const [deny, warn] = [results[2]!, results[3]!];
    assert.deepEqual([deny.namespace, deny.result.result, deny.result.severity, deny.result.message], ['jobs', 'fail', 'high', 'token lifetime too long (at spec.jobTemplate)']);
    assert.deepEqual([warn.namespace, warn.result.result, warn.result.resources], [undefined, 'warn', [{ apiVersion: 'v1', kind: 'PersistentVolume', name: 'nfs-1' }]]);
    assert.deepEqual([results[4]!.namespace, results[4]!.result.policy, results[4]!.result.result], ['kube-system', 'service-account-issuer', 'fail']);
  });

  it("the observer's overdue pods: one failed result each on the pod, with the Event's line, in both report APIs", () => {
    const message =
      'pod shop/stuck on node node-a (kubelet v1.29.14): token for vault (600 s) not refreshed since 2026-01-02T02:40:00.000Z, 70 s past due; ' +
      "likely cause: claim data Terminating: kubelets without the fix of kubernetes#130442 stop refreshing the pod's tokens";
    const observed = audit({
      tokenRefreshObserved: {
        asked: 'Service tokenguard/tokenguard-observer (through the API server)',
        status: 'observing',
        detail: 'replica tokenguard-abc',
        overdue: [
          {
            namespace: 'shop',
            pod: 'stuck',
            uid: 'u1',
            node: 'node-a',
            kubeletVersion: 'v1.29.14',
            audiences: ['vault'],
            requestedSeconds: 600,
            lastRefresh: '2026-01-02T02:40:00.000Z',
            due: '2026-01-02T02:51:30.000Z',
            lateSeconds: 70,
            likelyCauses: [{ code: 'claim-terminating', text: 'claim data Terminating: ...', issue: 'kubernetes#130442' }],
            message,
          },
          { namespace: 'web', pod: 'new', uid: 'u2', node: '', kubeletVersion: null, audiences: null, requestedSeconds: null, lastRefresh: null, due: '2026-01-02T03:00:00.000Z', lateSeconds: 5, likelyCauses: [], message: 'pod web/new: no token refresh seen since this observer began, 5 s past due' },
        ],
      },
    });
    const results = auditResults(observed, NOW);
    assert.deepEqual(results[0], {
      namespace: 'shop',
      result: {
        source: 'tokenguard',
        timestamp: { seconds: NOW.getTime() / 1000, nanos: 0 },
        policy: 'token-refresh-observed',
        rule: 'refresh-overdue',
        category: 'Service accounts',
        result: 'fail',
        severity: 'critical',
        message,
        resources: [{ apiVersion: 'v1', kind: 'Pod', namespace: 'shop', name: 'stuck' }],
        properties: { node: 'node-a', kubeletVersion: 'v1.29.14', token: 'vault 600 s', lastRefresh: '2026-01-02T02:40:00.000Z', lateSeconds: '70', likelyCauses: 'kubernetes#130442' },
      },
    });
    assert.deepEqual(results[1]!.result.properties, { node: '(unknown)', kubeletVersion: '(unknown)', token: '(no TokenRequest seen)', lastRefresh: '(never seen)', lateSeconds: '5' });
    for (const api of ['openreports.io/v1alpha1', 'wgpolicyk8s.io/v1alpha2'] as const) {
      const { reports } = buildReports(observed, api, NOW);
      assert.deepEqual(
        reports.map((r) => [r.kind.replace('Policy', ''), r.metadata.namespace, r.summary.fail, r.results.map((x) => `${x.policy} ${x.resources[0]!.name}`)]),
        [
          ['Report', 'shop', 1, ['token-refresh-observed stuck']],
          ['Report', 'web', 1, ['token-refresh-observed new']],
        ],
        api,
      );
    }
  });

  it('nothing observes, or the observer could not be asked: no result is made up', () => {
    for (const status of ['nothing observes', 'unknown', 'waiting'] as const) {
      assert.deepEqual(auditResults(audit({ tokenRefreshObserved: { asked: 'x', status, detail: 'y', overdue: [] } }), NOW), [], status);
    }
  });

  it('nothing found: no results, so no reports', () => {
    assert.deepEqual(auditResults(audit(), NOW), []);
    assert.deepEqual(buildReports(audit(), 'openreports.io/v1alpha1', NOW).reports, []);
  });

  it('a report per namespace and one cluster report, labelled, with a summary; OpenReports has a report-level source', () => {
    const { reports } = buildReports(FULL, 'openreports.io/v1alpha1', NOW);
    assert.deepEqual(
      reports.map((r) => [r.kind, r.metadata.namespace ?? '', r.summary.fail, r.summary.warn]),
      [
        ['ClusterReport', '', 0, 1],
        ['Report', 'jobs', 1, 0],
        ['Report', 'kube-system', 1, 0],
        ['Report', 'shop', 1, 1],
      ],
    );
    for (const r of reports) {
      assert.equal(r.apiVersion, 'openreports.io/v1alpha1');
      assert.equal(r.metadata.name, REPORT_NAME);
      assert.deepEqual(r.metadata.labels, { [MANAGED_BY.key]: MANAGED_BY.value });
      assert.equal(r.source, 'tokenguard');
    }
    const old = buildReports(FULL, 'wgpolicyk8s.io/v1alpha2', NOW).reports;
    assert.deepEqual(old.map((r) => r.kind), ['ClusterPolicyReport', 'PolicyReport', 'PolicyReport', 'PolicyReport']);
    assert.ok(old.every((r) => r.source === undefined && r.results.every((x) => x.source === 'tokenguard')), 'v1alpha2: the source is on each result');
  });

  it(`at most ${MAX_RESULTS} results in a report, the rest counted as left out`, () => {
    const many = audit({
      findings: Array.from({ length: MAX_RESULTS + 5 }, (_, i) => ({ apiVersion: 'v1', kind: 'Pod', namespace: 'big', name: `p${i}`, policy: 'x', severity: 'warn', message: 'm' })),
    });
    const { reports, truncated } = buildReports(many, 'openreports.io/v1alpha1', NOW);
    assert.equal(reports[0]!.results.length, MAX_RESULTS);
    assert.equal(reports[0]!.summary.warn, MAX_RESULTS);
    assert.deepEqual(truncated, [{ report: '/apis/openreports.io/v1alpha1/namespaces/big/reports', dropped: 5 }]);
  });

  it('--report and --report-api', () => {
    assert.equal(reportApiFlag(undefined, undefined), undefined);
    assert.equal(reportApiFlag(true, undefined), 'openreports.io/v1alpha1');
    assert.equal(reportApiFlag(true, 'wgpolicyk8s.io/v1alpha2'), 'wgpolicyk8s.io/v1alpha2');
    assert.throws(() => reportApiFlag(true, 'reports.x-k8s.io/v1beta2'), /--report-api must be openreports\.io\/v1alpha1 or wgpolicyk8s\.io\/v1alpha2/);
    assert.throws(() => reportApiFlag(undefined, 'openreports.io/v1alpha1'), /--report-api needs --report/);
  });
});

/** The fake API server holding these namespaces (Active; a create in a missing one is a 404 there, as on the real one), and a client of it. */
async function clusterWith(namespaces: string[]): Promise<{ fake: FakeApiServer; client: ApiClient }> {
  const fake = await FakeApiServer.start();
  for (const name of namespaces) fake.upsert('namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name }, status: { phase: 'Active' } });
  const kc = new KubeConfig();
  kc.loadFromFile(fake.kubeconfigPath);
  return { fake, client: new ApiClient(kc) };
}

async function closeAll(fake: FakeApiServer, client: ApiClient): Promise<void> {
  client.close();
  await fake.close();
}

describe('writing the reports', () => {
  const API = 'openreports.io/v1alpha1' as const;
  let fake: FakeApiServer;
  let client: ApiClient;
  /** Answer this many requests for reports with 429 first (as kube-apiserver does while a new CRD's storage initializes). */
  let throttle = 0;
  before(async () => {
    ({ fake, client } = await clusterWith(['jobs', 'kube-system', 'shop']));
    fake.route('*', /^\/apis\/openreports\.io\//, (_req, res, { fake: f }) => {
      if (throttle <= 0) return 'next';
      throttle--;
      f.sendJson(res, 429, statusBody(429, 'TooManyRequests', 'storage is (re)initializing'));
    });
  });
  after(() => closeAll(fake, client));
  /** Every report the fake holds, as `namespace/name`. */
  const stored = () => fake.list('reports').map((o) => `${o.metadata.namespace}/${o.metadata.name}`).sort();
  const clear = () => {
    for (const o of fake.list('reports')) fake.remove('reports', o.metadata.namespace, o.metadata.name);
    for (const o of fake.list('clusterreports')) fake.remove('clusterreports', undefined, o.metadata.name);
  };

  it('creates, then replaces and deletes only its own; another source\'s reports are never touched', async () => {
    const foreign = { apiVersion: API, kind: 'Report', metadata: { name: 'kyverno-report', namespace: 'shop', labels: { [MANAGED_BY.key]: 'kyverno' } }, results: [{ policy: 'p' }] };
    fake.upsert('reports', foreign);
    const first = await writeReports(client, API, buildReports(FULL, API, NOW).reports);
    assert.deepEqual(first, { created: ['tokenguard-audit (cluster)', 'jobs/tokenguard-audit', 'kube-system/tokenguard-audit', 'shop/tokenguard-audit'], replaced: [], deleted: [], terminating: [], failed: [] });
    assert.equal(fake.get('reports', 'shop', REPORT_NAME)!.results.length, 2);

    // The claim and the risk pod are gone; the CronJob is still flagged.
    const later = audit({ findings: FULL.findings.slice(0, 1) });
    const second = await writeReports(client, API, buildReports(later, API, NOW).reports);
    assert.deepEqual(second, { created: [], replaced: ['jobs/tokenguard-audit'], deleted: ['kube-system/tokenguard-audit', 'shop/tokenguard-audit', 'tokenguard-audit (cluster)'], terminating: [], failed: [] });
    assert.deepEqual(stored(), ['jobs/tokenguard-audit', 'shop/kyverno-report']);
    assert.deepEqual(fake.list('clusterreports'), []);
    assert.deepEqual(fake.get('reports', 'shop', 'kyverno-report')!.results, foreign.results, 'the other source\'s report is as it was');
    assert.ok(!fake.requests.some((r) => r.path.includes('kyverno-report')), 'never read, written or deleted by name');
  });

  it('a report of the same name another tool owns is an error, left alone', async () => {
    clear();
    fake.upsert('reports', { apiVersion: API, kind: 'Report', metadata: { name: REPORT_NAME, namespace: 'shop', labels: {} }, results: [] });
    const lines: string[] = [];
    const outcome = await publishAuditReports(client, FULL, API, { stderr: (t) => lines.push(t) }, NOW);
    assert.equal(outcome, 'partly written', 'the other namespaces are written');
    assert.match(lines.join(''), /Report shop\/tokenguard-audit not written \(namespace shop\): Report shop\/tokenguard-audit exists but is not tokenguard's \(no app\.kubernetes\.io\/managed-by=tokenguard label\): left alone/);
    assert.ok(fake.get('reports', 'jobs', REPORT_NAME));
    assert.deepEqual(fake.get('reports', 'shop', REPORT_NAME)!.results, []);
  });

  it('an API the cluster does not serve (its CRDs not installed): not written, and the CRDs are named', async () => {
    const lines: string[] = [];
    const outcome = await publishAuditReports(client, FULL, 'wgpolicyk8s.io/v1alpha2', { stderr: (t) => lines.push(t) }, NOW);
    assert.equal(outcome, 'not written');
    assert.match(lines.join(''), /reports not written: GET \/apis\/wgpolicyk8s\.io\/v1alpha2\/policyreports: 404 .*\(is the wgpolicyk8s\.io CRD installed\? see manifests\/crds\/\)/);
  });

  it('waits out a 429 (a CRD just established, API Priority and Fairness) and writes; gives up after the last retry', async () => {
    clear();
    throttle = 3;
    const done = await writeReports(client, 'openreports.io/v1alpha1', buildReports(FULL, 'openreports.io/v1alpha1', NOW).reports, [1, 1, 1]);
    assert.equal(done.created.length, 4);
    assert.equal(throttle, 0);
    throttle = 10;
    await assert.rejects(writeReports(client, 'openreports.io/v1alpha1', [], [1, 1]), /429 storage is \(re\)initializing/);
    throttle = 0;
  });

  it('says what it did', async () => {
    clear();
    const lines: string[] = [];
    assert.equal(await publishAuditReports(client, FULL, 'openreports.io/v1alpha1', { stderr: (t) => lines.push(t) }, NOW), 'written');
    assert.equal(
      lines.join(''),
      'tokenguard audit: openreports.io/v1alpha1 reports: 5 result(s); created tokenguard-audit (cluster), jobs/tokenguard-audit, ' +
        'kube-system/tokenguard-audit, shop/tokenguard-audit; replaced none; deleted none\n',
    );
  });
});

describe('one namespace never stops the others (the fake API server answering as kube-apiserver does)', () => {
  const API = 'openreports.io/v1alpha1' as const;
  /** One deny finding in each namespace: a report each. */
  const inEach = (...namespaces: string[]) =>
    audit({ findings: namespaces.map((ns) => ({ apiVersion: 'v1', kind: 'Pod', namespace: ns, name: 'p', policy: 'x', severity: 'deny', message: `m ${ns}` })) });
  const NAMESPACES = ['healthy', 'going', 'locked', 'broken', 'contested'];
  let fake: FakeApiServer;
  let client: ApiClient;
  before(async () => {
    ({ fake, client } = await clusterWith(NAMESPACES));
  });
  after(() => closeAll(fake, client));
  const terminate = (name: string) =>
    fake.upsert('namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name, deletionTimestamp: '2026-01-02T03:00:00Z' }, status: { phase: 'Terminating' } });
  const publish = async (r: AuditReport) => {
    let stderr = '';
    const outcome = await publishAuditReports(client, r, API, { stderr: (t) => (stderr += t) }, NOW);
    return { outcome, stderr };
  };

  it('a namespace being deleted: the create is refused as kube-apiserver refuses it, skipped and named; the healthy namespace is written; exit "written"', async () => {
    terminate('going');
    const { outcome, stderr } = await publish(inEach('healthy', 'going'));
    assert.equal(outcome, 'written', stderr);
    assert.ok(fake.get('reports', 'healthy', REPORT_NAME), 'the healthy namespace has its report');
    assert.equal(fake.get('reports', 'going', REPORT_NAME), undefined);
    const refused = fake.requests.filter((r) => r.method === 'POST' && r.path === '/apis/openreports.io/v1alpha1/namespaces/going/reports');
    assert.equal(refused.length, 1, 'asked once: a Terminating namespace is not retried');
    assert.match(stderr, /^tokenguard audit: namespace going is being deleted: its report skipped$/m);
    assert.match(stderr, /created healthy\/tokenguard-audit; replaced none; deleted none; skipped \(namespace being deleted\) going\n$/);
  });

  it('the fake answers the create as kube-apiserver\'s NamespaceLifecycle does: 403 Forbidden, the real message, cause NamespaceTerminating', async () => {
    terminate('going');
    await assert.rejects(client.writeJson('POST', '/apis/openreports.io/v1alpha1/namespaces/going/reports', { apiVersion: API, kind: 'Report', metadata: { name: REPORT_NAME } }), (err: any) => {
      assert.equal(err.statusCode, 403);
      assert.equal(err.reason, 'Forbidden');
      assert.deepEqual(err.causes, ['NamespaceTerminating']);
      assert.match(err.message, /: 403 reports\.openreports\.io "tokenguard-audit" is forbidden: unable to create new content in namespace going because it is being terminated$/);
      return true;
    });
  });

  it('a 403 from RBAC, a 5xx and a 409 that survives a re-read are each named; every other namespace is still written; exit "partly written"', async () => {
    fake.upsert('namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'going' }, status: { phase: 'Active' } });
    for (const ns of NAMESPACES) fake.remove('reports', ns, REPORT_NAME);
    fake.route('POST', /^\/apis\/openreports\.io\/v1alpha1\/namespaces\/locked\/reports$/, (_req, res, { fake: f }) =>
      f.sendJson(
        res,
        403,
        statusBody(
          403,
          'Forbidden',
          'reports.openreports.io is forbidden: User "system:serviceaccount:tokenguard:tokenguard-audit" cannot create resource "reports" in API group "openreports.io" in the namespace "locked"',
        ),
      ),
    );
    fake.route('POST', /^\/apis\/openreports\.io\/v1alpha1\/namespaces\/broken\/reports$/, (_req, res, { fake: f }) =>
      f.sendJson(res, 500, statusBody(500, 'InternalError', 'Internal error occurred: etcdserver: request timed out')),
    );
    // Another writer keeps changing `contested`'s report between our read and our write.
    fake.upsert('reports', { metadata: { name: REPORT_NAME, namespace: 'contested', labels: { [MANAGED_BY.key]: MANAGED_BY.value } } });
    fake.route('PUT', /^\/apis\/openreports\.io\/v1alpha1\/namespaces\/contested\/reports\/tokenguard-audit$/, (_req, res, { fake: f }) =>
      f.sendJson(res, 409, statusBody(409, 'Conflict', 'Operation cannot be fulfilled on reports.openreports.io "tokenguard-audit": the object has been modified; please apply your changes to the latest version and try again')),
    );
    const { outcome, stderr } = await publish(inEach(...NAMESPACES));
    assert.equal(outcome, 'partly written', stderr);
    assert.ok(fake.get('reports', 'healthy', REPORT_NAME) && fake.get('reports', 'going', REPORT_NAME), 'the other namespaces are written');
    assert.match(stderr, /^tokenguard audit: Report locked\/tokenguard-audit not written \(namespace locked\): POST .*: 403 .*cannot create resource "reports"/m);
    assert.match(stderr, /^tokenguard audit: Report broken\/tokenguard-audit not written \(namespace broken\): POST .*: 500 Internal error occurred: etcdserver: request timed out$/m);
    assert.match(stderr, /^tokenguard audit: Report contested\/tokenguard-audit not written \(namespace contested\): PUT .*: 409 Operation cannot be fulfilled/m);
    const puts = fake.requests.filter((r) => r.method === 'PUT' && r.path.includes('/namespaces/contested/'));
    assert.equal(puts.length, 2, 'a 409 is retried once, after reading the report again');
    assert.match(stderr, /; NOT WRITTEN Report broken\/tokenguard-audit, Report contested\/tokenguard-audit, Report locked\/tokenguard-audit\n$/);
  });

  it('a 409 because another run wrote the report since the LIST: read again and replaced', async () => {
    for (const ns of NAMESPACES) fake.remove('reports', ns, REPORT_NAME);
    // The LIST finds nothing; the report appears before the POST (another run of the CronJob).
    fake.route('GET', /^\/apis\/openreports\.io\/v1alpha1\/reports$/, (_req, res, { fake: f }) => {
      f.upsert('reports', { metadata: { name: REPORT_NAME, namespace: 'healthy', labels: { [MANAGED_BY.key]: MANAGED_BY.value } }, results: [] });
      f.sendJson(res, 200, { kind: 'ReportList', apiVersion: API, metadata: { resourceVersion: f.resourceVersion }, items: [] });
    });
    const done = await writeReports(client, API, buildReports(inEach('healthy'), API, NOW).reports);
    assert.deepEqual(done, { created: [], replaced: ['healthy/tokenguard-audit'], deleted: [], terminating: [], failed: [] });
    assert.equal(fake.get('reports', 'healthy', REPORT_NAME)!.results.length, 1);
  });
});
