// `audit --report`: the findings of an audit as OpenReports / wgpolicyk8s.io reports, and their
// writing against a small in-memory API server: a run replaces tokenguard's previous results,
// deletes its reports where nothing is left, and never touches a report of another source.
// (test/e2e/reports.ts runs the same against a real kube-apiserver with the vendored CRDs.)

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { ApiClient } from '../../src/cluster/client.js';
import type { AuditReport } from '../../src/cli/audit.js';
import { auditResults, buildReports, MANAGED_BY, MAX_RESULTS, publishAuditReports, reportApiFlag, REPORT_NAME, writeReports } from '../../src/cli/audit-report.js';

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
    summary: { terminatingClaimsInUse: 0, tokenRefreshStopped: 0, riskPods: 0, unaffectedPods: 0, denyFindings: 0, warnFindings: 0, apiserversRejectingServedIssuer: 0 },
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

/** Just enough of kube-apiserver for reports of one API: LIST (with a label selector), POST, PUT, DELETE. */
class ReportsApi {
  readonly objects = new Map<string, any>(); // key: `${plural}/${namespace}/${name}`
  readonly requests: string[] = [];
  /** Answer this many requests with 429 first (as kube-apiserver does while a new CRD's storage initializes). */
  throttle = 0;
  private server!: Server;
  private rv = 1;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }

  put(plural: string, obj: any): void {
    this.objects.set(`${plural}/${obj.metadata.namespace ?? ''}/${obj.metadata.name}`, { ...obj, metadata: { ...obj.metadata, resourceVersion: String(this.rv++) } });
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', this.url);
      this.requests.push(`${req.method} ${url.pathname}`);
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (this.throttle > 0) {
        this.throttle--;
        return send(429, { kind: 'Status', message: 'storage is (re)initializing', reason: 'TooManyRequests' });
      }
      const m = /^\/apis\/([^/]+\/[^/]+)(?:\/namespaces\/([^/]+))?\/([a-z]+)(?:\/([^/]+))?$/.exec(url.pathname);
      if (!m) return send(404, { kind: 'Status', message: 'the server could not find the requested resource', reason: 'NotFound' });
      const [, group, namespace, plural, name] = m;
      if (group !== 'openreports.io/v1alpha1') return send(404, { kind: 'Status', message: 'the server could not find the requested resource', reason: 'NotFound' });
      const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined;
      const key = `${plural}/${namespace ?? ''}/${name ?? body?.metadata?.name}`;
      switch (req.method) {
        case 'GET': {
          const [k, v] = (url.searchParams.get('labelSelector') ?? '').split('=');
          const items = [...this.objects.entries()].filter(([key2, o]) => key2.startsWith(`${plural}/`) && (!k || o.metadata.labels?.[k] === v)).map(([, o]) => o);
          return send(200, { items });
        }
        case 'POST':
          if (this.objects.has(key)) return send(409, { kind: 'Status', message: `"${body.metadata.name}" already exists`, reason: 'AlreadyExists' });
          this.put(plural!, body);
          return send(201, this.objects.get(key));
        case 'PUT': {
          const cur = this.objects.get(key);
          if (!cur) return send(404, { kind: 'Status', message: 'not found', reason: 'NotFound' });
          if (body.metadata.resourceVersion !== cur.metadata.resourceVersion) return send(409, { kind: 'Status', message: 'conflict', reason: 'Conflict' });
          this.put(plural!, body);
          return send(200, this.objects.get(key));
        }
        case 'DELETE':
          if (!this.objects.delete(key)) return send(404, { kind: 'Status', message: 'not found', reason: 'NotFound' });
          return send(200, { kind: 'Status', status: 'Success' });
      }
      return send(405, {});
    });
  }
}

describe('writing the reports', () => {
  const API = 'openreports.io/v1alpha1' as const;
  let api: ReportsApi;
  let client: ApiClient;
  before(async () => {
    api = new ReportsApi();
    await api.start();
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: api.url, skipTLSVerify: true }],
      users: [{ name: 'u' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    client = new ApiClient(kc);
  });
  after(async () => {
    client.close();
    await api.close();
  });

  it('creates, then replaces and deletes only its own; another source\'s reports are never touched', async () => {
    const foreign = { apiVersion: API, kind: 'Report', metadata: { name: 'kyverno-report', namespace: 'shop', labels: { [MANAGED_BY.key]: 'kyverno' } }, results: [{ policy: 'p' }] };
    api.put('reports', foreign);
    const first = await writeReports(client, API, buildReports(FULL, API, NOW).reports);
    assert.deepEqual(first, { created: ['tokenguard-audit (cluster)', 'jobs/tokenguard-audit', 'kube-system/tokenguard-audit', 'shop/tokenguard-audit'], replaced: [], deleted: [] });
    assert.equal(api.objects.get('reports/shop/tokenguard-audit').results.length, 2);

    // The claim and the risk pod are gone; the CronJob is still flagged.
    const later = audit({ findings: FULL.findings.slice(0, 1) });
    const second = await writeReports(client, API, buildReports(later, API, NOW).reports);
    assert.deepEqual(second, { created: [], replaced: ['jobs/tokenguard-audit'], deleted: ['kube-system/tokenguard-audit', 'shop/tokenguard-audit', 'tokenguard-audit (cluster)'] });
    assert.deepEqual([...api.objects.keys()].sort(), ['reports/jobs/tokenguard-audit', 'reports/shop/kyverno-report']);
    assert.deepEqual(api.objects.get('reports/shop/kyverno-report').results, foreign.results, 'the other source\'s report is as it was');
    assert.ok(!api.requests.some((r) => r.includes('kyverno-report')), 'never read, written or deleted by name');
  });

  it('a report of the same name another tool owns is an error, left alone', async () => {
    api.objects.clear();
    api.put('reports', { apiVersion: API, kind: 'Report', metadata: { name: REPORT_NAME, namespace: 'shop', labels: {} }, results: [] });
    const lines: string[] = [];
    const ok = await publishAuditReports(client, FULL, API, { stderr: (t) => lines.push(t) }, NOW);
    assert.equal(ok, false);
    assert.match(lines.join(''), /reports not written: Report shop\/tokenguard-audit exists but is not tokenguard's \(no app\.kubernetes\.io\/managed-by=tokenguard label\): left alone/);
    assert.deepEqual(api.objects.get('reports/shop/tokenguard-audit').results, []);
  });

  it('an API the cluster does not serve (its CRDs not installed): not written, and the CRDs are named', async () => {
    const lines: string[] = [];
    const ok = await publishAuditReports(client, FULL, 'wgpolicyk8s.io/v1alpha2', { stderr: (t) => lines.push(t) }, NOW);
    assert.equal(ok, false);
    assert.match(lines.join(''), /reports not written: GET \/apis\/wgpolicyk8s\.io\/v1alpha2\/policyreports: 404 .*\(is the wgpolicyk8s\.io CRD installed\? see manifests\/crds\/\)/);
  });

  it('waits out a 429 (a CRD just established, API Priority and Fairness) and writes; gives up after the last retry', async () => {
    api.objects.clear();
    api.throttle = 3;
    const done = await writeReports(client, 'openreports.io/v1alpha1', buildReports(FULL, 'openreports.io/v1alpha1', NOW).reports, [1, 1, 1]);
    assert.equal(done.created.length, 4);
    assert.equal(api.throttle, 0);
    api.throttle = 10;
    await assert.rejects(writeReports(client, 'openreports.io/v1alpha1', [], [1, 1]), /429 storage is \(re\)initializing/);
    api.throttle = 0;
  });

  it('says what it did', async () => {
    api.objects.clear();
    const lines: string[] = [];
    assert.equal(await publishAuditReports(client, FULL, 'openreports.io/v1alpha1', { stderr: (t) => lines.push(t) }, NOW), true);
    assert.equal(
      lines.join(''),
      'tokenguard audit: openreports.io/v1alpha1 reports: 5 result(s); created tokenguard-audit (cluster), jobs/tokenguard-audit, ' +
        'kube-system/tokenguard-audit, shop/tokenguard-audit; replaced none; deleted none\n',
    );
  });
});
