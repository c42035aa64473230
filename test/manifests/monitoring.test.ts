// What ships for operating tokenguard, held to the code: every metric an alert or a dashboard panel
// names is one a real server exports (scraped after real reviews, with its caches synced, a token
// self-test run and caller authentication on), every alert links a runbook section that exists,
// the monitoring component renders onto every overlay with a ServiceMonitor that reaches the
// metrics port over HTTPS, and the audit CronJob overlay runs `audit --report` with read-only
// access plus writes on reports. A rule pointed at a metric that does not exist fails here.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { ApiClient } from '../../src/cluster/client.js';
import { EventRecorder } from '../../src/cluster/events.js';
import { CertController } from '../../src/cluster/cert-controller.js';
import { IssuerMonitor } from '../../src/cluster/issuers.js';
import { TokenSelfTest } from '../../src/cluster/token-selftest.js';
import { TokenObserverService } from '../../src/cluster/token-observer-service.js';
import { DEFAULT_CONFIG } from '../../src/config/schema.js';
import { OBSERVER_SERVICE } from '../../src/k8s/self-managed-tls.js';
import { BUILTIN_POLICIES } from '../../src/policies/index.js';
import { silentLogger } from '../../src/observability/log.js';
import { startCacheRig, type CacheRig } from '../cluster/helpers.js';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { reviewByPrefix } from '../helpers/fixtures.js';
import { serveOidc } from '../helpers/oidc.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeCerts, PROJECT_ROOT } from '../helpers/tls.js';
import { kubectlMissing, MANIFESTS, OVERLAYS, render, renderWith, type K8sObject, type Rendered } from './kustomize.js';

const MONITORING = join(MANIFESTS, 'components', 'monitoring');
const RUNBOOKS = join(PROJECT_ROOT, 'docs', 'runbooks.md');
const RUNBOOK_URL = 'https://github.com/tokenguard/tokenguard/blob/main/docs/runbooks.md#';
/** Series an alert may use that tokenguard does not export: Prometheus's own per-target `up`. */
const NOT_OURS = new Set(['up']);

/** PromQL words that are not metric names. */
const KEYWORDS = new Set(['and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset', 'inf', 'nan']);

/**
 * The metric names a PromQL expression selects: identifiers that are not functions, keywords,
 * label names (inside `{}` or a `by (...)` / `on (...)` list), durations or parts of numbers.
 */
export function metricNames(expr: string): string[] {
  let s = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/'(?:[^'\\]|\\.)*'/g, "''");
  s = s.replace(/\{[^}]*\}/g, ' ').replace(/\[[^\]]*\]/g, ' ');
  s = s.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set<string>();
  for (const m of s.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const before = s[m.index - 1] ?? ' ';
    if (/[0-9.$]/.test(before)) continue; // 1e3, $variables
    if (s.slice(m.index + m[0].length).trimStart().startsWith('(')) continue; // a function call
    if (KEYWORDS.has(m[0].toLowerCase())) continue;
    names.add(m[0]);
  }
  return [...names];
}

/** Names an expression uses that are neither exported (a histogram's _bucket/_sum/_count counting as its family) nor allowed. */
export function unknownMetrics(expr: string, exported: ReadonlySet<string>): string[] {
  const known = (n: string) => exported.has(n) || NOT_OURS.has(n) || (/_(bucket|sum|count)$/.test(n) && exported.has(n.replace(/_(bucket|sum|count)$/, '')));
  return metricNames(expr).filter((n) => !known(n));
}

interface Alert {
  alert: string;
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

const prometheusRule = () => parseYaml(readFileSync(join(MONITORING, 'prometheusrule.yaml'), 'utf8')) as K8sObject;
const alerts = (rule: K8sObject = prometheusRule()): Alert[] => (rule.spec.groups as K8sObject[]).flatMap((g) => g.rules as Alert[]);
const dashboard = () => JSON.parse(readFileSync(join(MONITORING, 'dashboards', 'tokenguard.json'), 'utf8')) as K8sObject;
function panelQueries(d: K8sObject): { panel: string; expr: string }[] {
  const panels = (d.panels as K8sObject[]).flatMap((p) => [p, ...((p.panels as K8sObject[] | undefined) ?? [])]);
  return panels.flatMap((p) => ((p.targets as K8sObject[] | undefined) ?? []).map((t) => ({ panel: p.title as string, expr: t.expr as string })));
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as dashes. */
const anchorOf = (heading: string) => heading.trim().toLowerCase().replace(/[^\w\- ]/g, '').replace(/ /g, '-');

describe('metric names in PromQL', () => {
  it('finds the metrics of an expression, not its functions, keywords, labels or durations', () => {
    assert.deepEqual(
      metricNames('histogram_quantile(0.99, sum by (job, le) (rate(tokenguard_admission_duration_seconds_bucket{job="tokenguard", le="2.5"}[5m]))) > 1e3'),
      ['tokenguard_admission_duration_seconds_bucket'],
    );
    assert.deepEqual(
      metricNames('sum by (job) (rate(a_total{x="rate(b)"}[5m])) > 0 and on (job, instance) b_mode{mode="enforce"} == 1 or absent(up{job="t"} == 1)'),
      ['a_total', 'b_mode', 'up'],
    );
    assert.deepEqual(metricNames('time() - max by (pod) (x_seconds{job="$job"}) / 86400'), ['x_seconds']);
  });

  it('a rule pointed at a metric that does not exist is caught', () => {
    const exported = new Set(['tokenguard_admission_requests_total', 'tokenguard_admission_duration_seconds']);
    const bad = prometheusRule();
    bad.spec.groups[0].rules.push(
      { alert: 'Typo', expr: 'rate(tokenguard_admission_request_total{decision="invalid"}[5m]) > 0', labels: { severity: 'warning' }, annotations: {} },
      { alert: 'NotOurs', expr: 'webhook_errors_total > 0', labels: { severity: 'warning' }, annotations: {} },
      { alert: 'Fine', expr: 'histogram_quantile(0.5, rate(tokenguard_admission_duration_seconds_bucket[5m])) > 1 and tokenguard_admission_requests_total > 0', labels: {}, annotations: {} },
    );
    const problems = alerts(bad)
      .filter((a) => ['Typo', 'NotOurs', 'Fine'].includes(a.alert))
      .map((a) => [a.alert, unknownMetrics(a.expr, exported)]);
    assert.deepEqual(problems, [
      ['Typo', ['tokenguard_admission_request_total']],
      ['NotOurs', ['webhook_errors_total']],
      ['Fine', []],
    ]);
  });
});

describe('alerts and dashboard against the metrics a real server exports', () => {
  let server: TestServer;
  let rig: CacheRig;
  let fake: FakeApiServer;
  /** Every family the server exports (from # TYPE lines: present even before a first sample). */
  let exported: Set<string>;

  before(async () => {
    // Caller authentication in audit (its counters and mode gauge), with a client CA (its expiry).
    const clients = makeCerts();
    server = await startTestServer({ config: { server: { callerAuth: { mode: 'audit', clientCertificate: { caFile: clients.caFile } } } } });
    for (const [prefix, route] of [['006', 'validate'], ['014', 'validate'], ['003', 'mutate']] as const) {
      assert.equal((await server.post(`/${route}`, reviewByPrefix(prefix))).status, 200);
    }
    // The cluster caches, and one token self-test (its gauges join the registry with the first result).
    rig = await startCacheRig();
    // The token refresh observer's gauges, as serve registers them with observer.enabled.
    new TokenObserverService(rig.cache, DEFAULT_CONFIG.observer, silentLogger).start();
    fake = await FakeApiServer.start();
    await serveOidc(fake);
    fake.upsert('serviceaccounts', { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'tokenguard', namespace: 'tokenguard' } });
    const kc = new KubeConfig();
    kc.loadFromFile(fake.kubeconfigPath);
    const events = new EventRecorder({ kc, logger: silentLogger, namespace: 'tokenguard', dedupeSeconds: 0 });
    const issuers = new IssuerMonitor({ client: new ApiClient(kc), logger: silentLogger, events, refreshSeconds: 60 });
    const result = await new TokenSelfTest({
      kc,
      issuers,
      serviceAccount: { namespace: 'tokenguard', name: 'tokenguard' },
      intervalSeconds: 60,
      maxClockSkewSeconds: 30,
      logger: silentLogger,
      events,
    }).run();
    assert.equal(result.ok, true, JSON.stringify(result));
    // Self-managed TLS: a pass of the certificate controller (its counters, the CA's expiry).
    const tls = DEFAULT_CONFIG.server.selfManagedTLS;
    await new CertController({
      client: new ApiClient(kc),
      namespace: 'tokenguard',
      secretName: tls.secretName,
      webhookConfigurations: tls.webhookConfigurations,
      settings: { ...tls, subjectAltNames: ['tokenguard.tokenguard.svc'] },
      checkSeconds: 60,
      logger: silentLogger,
    }).reconcileNow();
    const text = (await server.get('/metrics')).text;
    exported = new Set([...text.matchAll(/^# TYPE (\S+) \S+$/gm)].map((m) => m[1]!));
  });
  after(async () => {
    await rig?.close();
    await fake?.close();
    await server?.shutdown();
  });

  it('the scrape has the families the alerts need, histograms as one family', () => {
    for (const n of [
      'tokenguard_admission_duration_seconds',
      'tokenguard_token_selftest_success',
      'tokenguard_clock_skew_bound_seconds',
      'tokenguard_caller_auth_mode',
      'tokenguard_cache_stale_seconds',
      'tokenguard_tls_renewal_failures_total',
      'tokenguard_tls_rotations_total',
      'tokenguard_pods_token_refresh_at_risk',
      'tokenguard_claims_terminating_in_use',
    ]) {
      assert.ok(exported.has(n), n);
    }
    assert.ok(!exported.has('tokenguard_admission_duration_seconds_bucket'), 'a histogram is one family');
  });

  it('every alert names only metrics the server exports', () => {
    const all = alerts();
    assert.ok(all.length >= 14);
    assert.deepEqual(
      all.map((a) => [a.alert, unknownMetrics(a.expr, exported)]).filter(([, unknown]) => unknown!.length > 0),
      [],
    );
  });

  it('every dashboard query names only metrics the server exports', () => {
    const queries = panelQueries(dashboard());
    assert.ok(queries.length >= 20);
    assert.deepEqual(
      queries.map((q) => [q.panel, unknownMetrics(q.expr, exported)]).filter(([, unknown]) => unknown!.length > 0),
      [],
    );
  });
});

describe('alerts, runbooks and dashboard', () => {
  it('each alert: a severity, a summary, a description, and a runbook link to a section of docs/runbooks.md', () => {
    const headings = [...readFileSync(RUNBOOKS, 'utf8').matchAll(/^## (.+)$/gm)].map((m) => m[1]!);
    const anchors = new Set(headings.map(anchorOf));
    const names = new Set<string>();
    for (const a of alerts()) {
      assert.ok(!names.has(a.alert), `${a.alert}: one alert of that name`);
      names.add(a.alert);
      assert.ok(['critical', 'warning', 'info'].includes(a.labels?.severity ?? ''), `${a.alert}: severity ${a.labels?.severity}`);
      assert.ok(a.annotations?.summary && a.annotations.description, `${a.alert}: summary and description`);
      const url = a.annotations.runbook_url ?? '';
      assert.ok(url.startsWith(RUNBOOK_URL), `${a.alert}: runbook_url ${url}`);
      assert.ok(anchors.has(url.slice(RUNBOOK_URL.length)), `${a.alert}: docs/runbooks.md has a section #${url.slice(RUNBOOK_URL.length)}`);
    }
    // And no runbook for an alert that does not exist.
    assert.deepEqual(headings.filter((h) => !names.has(h)), []);
  });

  it('the alerts the issue asks for, at their thresholds', () => {
    const by = new Map(alerts().map((a) => [a.alert, a]));
    const expect = (name: string, severity: string, expr: RegExp) => {
      const a = by.get(name);
      assert.ok(a, `${name} exists`);
      assert.equal(a.labels.severity, severity, `${name}: severity`);
      assert.match(a.expr.replace(/\s+/g, ' ').trim(), expr, `${name}: expr`);
    };
    expect('TokenguardDown', 'critical', /absent\(up\{job="tokenguard"\} == 1\)/);
    expect('TokenguardNotReady', 'warning', /tokenguard_ready\{job="tokenguard"\} == 0/);
    expect('TokenguardAdmissionLatencyHigh', 'warning', /histogram_quantile\(0\.99, .*tokenguard_admission_duration_seconds_bucket.*\) > 1$/);
    expect('TokenguardAdmissionTimeouts', 'warning', /le="2\.5".* > 0\.01$/);
    expect('TokenguardAdmissionErrors', 'warning', /decision="invalid".* > 0\.05$/);
    expect('TokenguardCertificateExpiresSoon', 'warning', /tokenguard_tls_certificate_not_after_seconds\{job="tokenguard"\} - time\(\) < 14 \* 86400/);
    expect('TokenguardCertificateExpiresIn2Days', 'critical', /- time\(\) < 2 \* 86400/);
    expect('TokenguardCacheStale', 'warning', /tokenguard_cache_stale_seconds\{job="tokenguard"\} > 60/);
    expect('TokenguardTokenSelfTestFailing', 'critical', /tokenguard_token_selftest_success\{job="tokenguard"\} == 0/);
    expect('TokenguardClockSkew', 'warning', /abs\(tokenguard_clock_skew_seconds\{job="tokenguard"\}\) > tokenguard_clock_skew_bound_seconds/);
    expect('TokenguardCallerAuthFailing', 'warning', /result!="ok".* and on \(job, instance\) tokenguard_caller_auth_mode\{job="tokenguard", mode="enforce"\} == 1/);
    expect('TokenguardPVCDeletionDenied', 'info', /policy="pvc-in-use", decision="denied"/);
    expect('TokenguardTokenRefreshStopped', 'critical', /^max by \(job\) \(tokenguard_pods_token_refresh_at_risk\{job="tokenguard", claim="terminating"\}\) > 0$/);
    expect('TokenguardClaimTerminatingInUse', 'warning', /^max by \(job\) \(tokenguard_claims_terminating_in_use\{job="tokenguard"\}\) > 0$/);
    expect('TokenguardCertificateRenewalFailing', 'warning', /increase\(tokenguard_tls_renewal_failures_total\{job="tokenguard"\}\[10m\]\) > 0/);
  });

  it('the dashboard: panels for requests, latency, decisions, warnings, caches, certificates, the self-test; a datasource and a job variable', () => {
    const d = dashboard();
    assert.equal(d.uid, 'tokenguard');
    const variables = (d.templating.list as K8sObject[]).map((v) => v.name);
    assert.deepEqual(variables, ['datasource', 'job']);
    const queries = panelQueries(d).map((q) => q.expr).join('\n');
    for (const m of [
      'tokenguard_admission_requests_total',
      'histogram_quantile(0.5',
      'histogram_quantile(0.99',
      'tokenguard_policy_decisions_total',
      'tokenguard_warnings_emitted_total',
      'tokenguard_cache_stale_seconds',
      'tokenguard_tls_certificate_not_after_seconds',
      'tokenguard_token_selftest_success',
    ]) {
      assert.ok(queries.includes(m), `a panel queries ${m}`);
    }
    const ids = (d.panels as K8sObject[]).map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    for (const q of panelQueries(d)) assert.match(q.expr, /job="\$job"/, `${q.panel}: selects the job variable`);
  });
});

const skip = kubectlMissing();

describe('the monitoring component (kubectl kustomize)', { skip }, () => {
  for (const overlay of OVERLAYS) {
    it(`adds to overlays/${overlay} with one line: a ServiceMonitor that reaches the metrics port over HTTPS, the rules, the dashboard`, async () => {
      const r = await renderWith([`overlays/${overlay}`], ['components/monitoring']);
      const plain = await render(`overlays/${overlay}`);
      const key = (o: K8sObject) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
      const added = r.objects.filter((o) => !plain.objects.some((p) => key(p) === key(o))).map(key).sort();
      assert.deepEqual(added, ['ConfigMap/tokenguard/tokenguard-dashboard', 'PrometheusRule/tokenguard/tokenguard', 'ServiceMonitor/tokenguard/tokenguard']);
      for (const p of plain.objects) assert.deepEqual(r.objects.find((o) => key(o) === key(p)), p, `${key(p)} unchanged`);

      const sm = r.one('ServiceMonitor', 'tokenguard');
      const svc = r.one('Service', 'tokenguard');
      assert.equal(sm.metadata.namespace, svc.metadata.namespace);
      assert.deepEqual(sm.spec.namespaceSelector.matchNames, [svc.metadata.namespace]);
      for (const [k, v] of Object.entries(sm.spec.selector.matchLabels as Record<string, string>)) assert.equal(svc.metadata.labels?.[k], v, `the Service carries ${k}=${v}`);
      const [endpoint] = sm.spec.endpoints as K8sObject[];
      const port = (svc.spec.ports as K8sObject[]).find((p) => p.name === endpoint!.port);
      assert.ok(port, `the Service has a port named ${endpoint!.port}`);
      const container = r.one('Deployment').spec.template.spec.containers[0];
      assert.ok((container.ports as K8sObject[]).some((p) => p.name === port.targetPort), 'the Service port reaches the container port the server listens on');
      assert.deepEqual([endpoint!.scheme, endpoint!.path], ['https', '/metrics']);
      // The CA of the serving certificate, for the name the certificate has: from the Secret the
      // Deployment mounts (cert-manager), or the one tokenguard keeps itself (self-managed TLS).
      const tlsVolume = (r.one('Deployment').spec.template.spec.volumes as K8sObject[]).find((v) => v.name === 'tls');
      const cm0 = r.all('ConfigMap').find((c) => c.metadata.name.startsWith('tokenguard-config'))!;
      const selfManaged = (parseYaml(cm0.data['config.yaml']) as K8sObject).server?.selfManagedTLS;
      const caSecret: string = tlsVolume ? tlsVolume.secret.secretName : (selfManaged?.secretName ?? DEFAULT_CONFIG.server.selfManagedTLS.secretName);
      assert.ok(tlsVolume || selfManaged?.enabled, 'a mounted certificate or a self-managed one');
      assert.equal(endpoint!.tlsConfig.ca.secret.name, caSecret);
      assert.equal(endpoint!.tlsConfig.ca.secret.key, 'ca.crt');
      const names = [`${svc.metadata.name}.${svc.metadata.namespace}.svc`];
      assert.equal(endpoint!.tlsConfig.serverName, names[0]);
      const cert = r.all('Certificate').find((c) => c.spec.secretName === caSecret);
      if (cert) assert.ok((cert.spec.dnsNames as string[]).includes(endpoint!.tlsConfig.serverName), 'cert-manager issues the certificate for that name');
      const secret = r.all('Secret').find((s) => s.metadata.name === caSecret);
      if (secret) {
        assert.ok(secret.data['ca.crt'], 'the generated Secret holds ca.crt');
        const leaf = new X509Certificate(Buffer.from(secret.data['tls.crt'], 'base64'));
        assert.ok(leaf.subjectAltName?.includes(`DNS:${endpoint!.tlsConfig.serverName}`), 'the generated certificate is for that name');
      }

      const rule = r.one('PrometheusRule', 'tokenguard');
      assert.deepEqual(rule.spec, prometheusRule().spec, 'the rules as committed');
      const cm = r.one('ConfigMap', 'tokenguard-dashboard');
      assert.equal(cm.metadata.labels.grafana_dashboard, '1', 'labelled for the Grafana sidecar');
      assert.deepEqual(JSON.parse(cm.data['tokenguard.json']), dashboard());
    });
  }
});

describe('the audit CronJob overlay (kubectl kustomize)', { skip }, () => {
  let r: Rendered;
  let base: Rendered;
  before(async () => {
    r = await render('overlays/audit-reports');
    base = await render('overlays/cert-manager');
  });

  it('is overlays/cert-manager plus the CronJob, its ServiceAccount and its RBAC', () => {
    const key = (o: K8sObject) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
    const added = r.objects.filter((o) => !base.objects.some((b) => key(b) === key(o))).map(key).sort();
    assert.deepEqual(added, [
      'ClusterRole//tokenguard-audit',
      'ClusterRoleBinding//tokenguard-audit',
      'CronJob/tokenguard/tokenguard-audit',
      'Role/tokenguard/tokenguard-audit',
      'RoleBinding/tokenguard/tokenguard-audit',
      'ServiceAccount/tokenguard/tokenguard-audit',
    ]);
    for (const b of base.objects) assert.deepEqual(r.objects.find((o) => key(o) === key(b)), b, `${key(b)} unchanged`);
  });

  it('runs audit --report every 15 minutes, one at a time, with the webhook\'s image and configuration', () => {
    const cj = r.one('CronJob', 'tokenguard-audit');
    assert.equal(cj.spec.schedule, '*/15 * * * *');
    assert.equal(cj.spec.concurrencyPolicy, 'Forbid');
    const pod = cj.spec.jobTemplate.spec.template.spec;
    assert.equal(pod.serviceAccountName, 'tokenguard-audit');
    const [c] = pod.containers as K8sObject[];
    const deployment = r.one('Deployment').spec.template.spec.containers[0];
    assert.equal(c!.image, deployment.image, 'the image the Deployment runs');
    assert.deepEqual(c!.args.slice(0, 1), ['audit']);
    assert.ok(c!.args.includes('--report'));
    const configArg = (c!.args as string[]).find((a) => a.startsWith('--config='));
    const mount = (c!.volumeMounts as K8sObject[]).find((m) => configArg === `--config=${m.mountPath}`);
    assert.ok(mount, 'the --config file is mounted');
    const volume = (pod.volumes as K8sObject[]).find((v) => v.name === mount.name);
    assert.equal(volume?.configMap.name, r.one('ConfigMap').metadata.name, 'the webhook\'s (hashed) config ConfigMap');
    assert.equal(c!.securityContext.readOnlyRootFilesystem, true);
    assert.equal(pod.securityContext.runAsNonRoot, true);
  });

  it('may read what audit lists and write only reports: no Secrets, no wildcards, no other writes', () => {
    const role = r.one('ClusterRole', 'tokenguard-audit');
    const binding = r.one('ClusterRoleBinding', 'tokenguard-audit');
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'tokenguard-audit', namespace: 'tokenguard' }]);
    const grants = new Set<string>();
    for (const rule of role.rules as K8sObject[]) {
      for (const g of rule.apiGroups) for (const res of rule.resources) for (const v of rule.verbs) grants.add(`${g}|${res}|${v}`);
    }
    const reports = new Set(['openreports.io|reports', 'openreports.io|clusterreports', 'wgpolicyk8s.io|policyreports', 'wgpolicyk8s.io|clusterpolicyreports']);
    for (const g of grants) {
      const [group, res, verb] = g.split('|') as [string, string, string];
      assert.ok(!g.includes('*') && res !== 'secrets', `no wildcard or Secret access: ${g}`);
      if (!['get', 'list', 'watch'].includes(verb)) assert.ok(reports.has(`${group}|${res}`), `writes only on reports: ${g}`);
    }
    for (const r2 of reports) for (const v of ['list', 'create', 'update', 'delete']) assert.ok(grants.has(`${r2}|${v}`), `${r2}: ${v}`);
    // What audit reads: the caches, the claims, and every resource a validating policy judges on CREATE.
    const needed = ['|pods|list', '|pods|watch', '|nodes|list', '|nodes|watch', '|namespaces|list', '|namespaces|watch', '|persistentvolumeclaims|list'];
    for (const p of BUILTIN_POLICIES) {
      if (!p.validate) continue;
      for (const rule of p.match) {
        if (!rule.operations.includes('CREATE') || rule.subresources?.some((s) => s !== '')) continue;
        for (const g of rule.groups) for (const res of rule.resources) if (g !== '*' && res !== '*') needed.push(`${g}|${res}|list`);
      }
    }
    assert.deepEqual(needed.filter((n) => !grants.has(n)), []);
    // In tokenguard's namespace: asking the token refresh observer through its Service, nothing else.
    assert.deepEqual(r.one('Role', 'tokenguard-audit').rules, [
      { apiGroups: [''], resources: ['services/proxy'], resourceNames: [`https:${OBSERVER_SERVICE.name}:${OBSERVER_SERVICE.port}`], verbs: ['get'] },
    ]);
    assert.deepEqual(r.one('RoleBinding', 'tokenguard-audit').subjects, [{ kind: 'ServiceAccount', name: 'tokenguard-audit', namespace: 'tokenguard' }]);
  });
});
