// `tokenguard audit --report`: what audit finds, written to the cluster as policy reports, so Policy
// Reporter, Kyverno's tooling and other report UIs show tokenguard's findings beside everyone else's.
//
// Two APIs: OpenReports (`openreports.io/v1alpha1`: Report per namespace, ClusterReport for
// cluster-scoped findings), the default, and the policy WG's older `wgpolicyk8s.io/v1alpha2`
// (PolicyReport, ClusterPolicyReport), which Policy Reporter and Kyverno before OpenReports read.
// tokenguard writes one report per namespace with findings (and one cluster report), named
// `tokenguard-audit` and labelled `app.kubernetes.io/managed-by: tokenguard`. A run replaces the
// results of the reports it owns (found by that label), deletes its reports where nothing is left,
// and never reads or writes a report without the label: other sources' reports stay as they are,
// and a report of that name another tool owns is an error, not overwritten.

import { ApiError, type ApiClient } from '../cluster/client.js';
import { errorMessage } from '../observability/errors.js';
import type { AuditReport } from './audit.js';

export const REPORT_APIS = ['openreports.io/v1alpha1', 'wgpolicyk8s.io/v1alpha2'] as const;
export type ReportApi = (typeof REPORT_APIS)[number];
export const DEFAULT_REPORT_API: ReportApi = 'openreports.io/v1alpha1';

/** The name of every report tokenguard writes, and the label that marks them as tokenguard's. */
export const REPORT_NAME = 'tokenguard-audit';
export const MANAGED_BY = { key: 'app.kubernetes.io/managed-by', value: 'tokenguard' } as const;
export const SOURCE = 'tokenguard';
/**
 * At most this many results in one report: an object in etcd is limited to about 1.5 MiB, and a
 * result is a few hundred bytes. The summary counts what the report holds; the rest are named on
 * stderr.
 */
export const MAX_RESULTS = 1000;

/** Kinds and plural resource names of each API. */
const KINDS: Record<ReportApi, { namespaced: { kind: string; plural: string }; cluster: { kind: string; plural: string } }> = {
  'openreports.io/v1alpha1': { namespaced: { kind: 'Report', plural: 'reports' }, cluster: { kind: 'ClusterReport', plural: 'clusterreports' } },
  'wgpolicyk8s.io/v1alpha2': {
    namespaced: { kind: 'PolicyReport', plural: 'policyreports' },
    cluster: { kind: 'ClusterPolicyReport', plural: 'clusterpolicyreports' },
  },
};

export type ResultStatus = 'pass' | 'fail' | 'warn' | 'error' | 'skip';
/** Both CRDs as vendored accept these (wgpolicyk8s.io's first schema had only high, medium, low). */
export type ResultSeverity = 'critical' | 'high' | 'medium' | 'low' | 'info';

export interface ObjectRef {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
}

/** One result, as both APIs write it. */
export interface ReportResult {
  source: string;
  policy: string;
  rule: string;
  category: string;
  result: ResultStatus;
  severity: ResultSeverity;
  message: string;
  timestamp: { seconds: number; nanos: number };
  resources: ObjectRef[];
  properties?: Record<string, string>;
}

export interface PolicyReportObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels: Record<string, string>; resourceVersion?: string };
  source?: string;
  configuration?: { limits: { maxResults: number } };
  summary: Record<ResultStatus, number>;
  results: ReportResult[];
}

/** Every finding of an audit as report results, each with the namespace its report lives in (undefined: the cluster report). */
export function auditResults(r: AuditReport, now: Date): { namespace?: string; result: ReportResult }[] {
  const timestamp = { seconds: Math.floor(now.getTime() / 1000), nanos: 0 };
  const out: { namespace?: string; result: ReportResult }[] = [];
  const add = (namespace: string | undefined, result: Omit<ReportResult, 'source' | 'timestamp'>) =>
    out.push({ namespace: namespace || undefined, result: { source: SOURCE, timestamp, ...result } });

  // 1. A claim Terminating while scheduled pods use it: the outage in progress.
  for (const c of r.terminatingClaims) {
    const stopped = c.pods.filter((p) => p.tokenRefresh === 'stopped');
    const pods = c.pods.map((p) => `${p.name} (${p.phase || 'unknown phase'} on ${p.node}${p.tokenRefresh === 'stopped' ? ', token refresh STOPPED: kubernetes#130442' : ''})`);
    add(c.namespace, {
      policy: 'pvc-in-use',
      rule: 'terminating-claim-in-use',
      category: 'Volumes',
      result: 'fail',
      severity: stopped.length ? 'critical' : 'high',
      message:
        `PVC ${c.namespace}/${c.claim} is Terminating (deleted at ${c.deletionTimestamp}) while scheduled pods still use it: ${pods.join(', ')}. ` +
        'It stays Terminating until they are gone; on kubelets before 1.33.0, 1.32.4, 1.31.8, 1.30.12 their projected tokens stop refreshing meanwhile.',
      resources: [
        { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace: c.namespace, name: c.claim },
        ...c.pods.map((p) => ({ apiVersion: 'v1', kind: 'Pod', namespace: c.namespace, name: p.name })),
      ],
      properties: { deletionTimestamp: c.deletionTimestamp, pods: c.pods.map((p) => p.name).join(','), tokenRefreshStopped: stopped.map((p) => p.name).join(',') },
    });
  }

  // 2. Pods whose claim would hang if deleted under them, and (on affected kubelets) whose token refresh would stop.
  for (const p of [...r.riskPods, ...r.unaffectedPods]) {
    add(p.namespace, {
      policy: 'pvc-token-risk',
      rule: 'claim-and-projected-token',
      category: 'Volumes',
      result: 'warn',
      severity: p.kubeletAffected ? 'medium' : 'low',
      message:
        `Pod ${p.namespace}/${p.name} mounts claim(s) ${p.claims.join(', ')} and projected token volume(s) ${p.tokenVolumes.join(', ')}: ` +
        `deleting a claim while it runs leaves the claim Terminating${p.kubeletAffected ? ` and stops its token refresh (kubelet ${p.kubeletVersion}, kubernetes#130442)` : ''}.`,
      resources: [{ apiVersion: 'v1', kind: 'Pod', namespace: p.namespace, name: p.name }],
      properties: { node: p.node || '(unscheduled)', claims: p.claims.join(','), tokenVolumes: p.tokenVolumes.join(',') },
    });
  }

  // 3. Existing objects the policies would flag if they were created now.
  for (const f of r.findings) {
    add(f.namespace, {
      policy: f.policy,
      rule: f.severity === 'deny' ? 'would-deny-on-create' : 'would-warn-on-create',
      category: 'Admission',
      result: f.severity === 'deny' ? 'fail' : 'warn',
      severity: f.severity === 'deny' ? 'high' : 'medium',
      message: f.path && !f.message.includes(f.path) ? `${f.message} (at ${f.path})` : f.message,
      resources: [{ apiVersion: f.apiVersion, kind: f.kind, ...(f.namespace ? { namespace: f.namespace } : {}), name: f.name }],
      ...(f.path ? { properties: { path: f.path } } : {}),
    });
  }

  // 4. kube-apiservers that do not accept the issuer the cluster serves: new tokens fail there.
  const served = r.issuers.served;
  for (const a of r.issuers.apiservers) {
    if (a.acceptsServed !== false || !served) continue;
    add(a.namespace, {
      policy: 'service-account-issuer',
      rule: 'served-issuer-accepted',
      category: 'Service accounts',
      result: 'fail',
      severity: 'critical',
      message:
        `kube-apiserver ${a.namespace}/${a.name} on ${a.node} does not accept the served issuer ${served} ` +
        `(it accepts ${a.issuers.join(', ') || 'none'}): tokens it is asked to verify are rejected (kops#16488).`,
      resources: [{ apiVersion: 'v1', kind: 'Pod', namespace: a.namespace, name: a.name }],
      properties: { servedIssuer: served, acceptedIssuers: a.issuers.join(',') },
    });
  }

  // 5. Running pods whose token refresh the observer reports overdue (none when nothing observes:
  //    no result is made up). The message is the Event's line.
  for (const o of r.tokenRefreshObserved.overdue) {
    add(o.namespace, {
      policy: 'token-refresh-observed',
      rule: 'refresh-overdue',
      category: 'Service accounts',
      result: 'fail',
      severity: 'critical',
      message: o.message,
      resources: [{ apiVersion: 'v1', kind: 'Pod', namespace: o.namespace, name: o.pod }],
      properties: {
        node: o.node || '(unknown)',
        kubeletVersion: o.kubeletVersion ?? '(unknown)',
        token: o.requestedSeconds === null ? '(no TokenRequest seen)' : `${o.audiences?.join(',') || '(API server)'} ${o.requestedSeconds} s`,
        lastRefresh: o.lastRefresh ?? '(never seen)',
        lateSeconds: String(o.lateSeconds),
        ...(o.likelyCauses.length ? { likelyCauses: o.likelyCauses.map((c) => c.issue ?? c.code).join(',') } : {}),
      },
    });
  }
  return out;
}

/** The reports an audit makes: one per namespace with results, and the cluster report when it has any. */
export function buildReports(r: AuditReport, api: ReportApi, now: Date): { reports: PolicyReportObject[]; truncated: { report: string; dropped: number }[] } {
  const byNamespace = new Map<string | undefined, ReportResult[]>();
  for (const { namespace, result } of auditResults(r, now)) {
    let list = byNamespace.get(namespace);
    if (!list) byNamespace.set(namespace, (list = []));
    list.push(result);
  }
  const reports: PolicyReportObject[] = [];
  const truncated: { report: string; dropped: number }[] = [];
  for (const [namespace, all] of [...byNamespace].sort(([a], [b]) => (a ?? '').localeCompare(b ?? ''))) {
    const results = all.slice(0, MAX_RESULTS);
    if (all.length > results.length) truncated.push({ report: reportPath(api, namespace), dropped: all.length - results.length });
    const summary: Record<ResultStatus, number> = { pass: 0, fail: 0, warn: 0, error: 0, skip: 0 };
    for (const x of results) summary[x.result]++;
    const { kind } = KINDS[api][namespace ? 'namespaced' : 'cluster'];
    const report: PolicyReportObject = {
      apiVersion: api,
      kind,
      metadata: { name: REPORT_NAME, ...(namespace ? { namespace } : {}), labels: { [MANAGED_BY.key]: MANAGED_BY.value } },
      summary,
      results,
    };
    // OpenReports has a report-level source and limits; wgpolicyk8s.io v1alpha2 has neither (its
    // schema would prune them): there each result names its source.
    if (api === 'openreports.io/v1alpha1') {
      report.source = SOURCE;
      report.configuration = { limits: { maxResults: MAX_RESULTS } };
    }
    reports.push(report);
  }
  return { reports, truncated };
}

function reportPath(api: ReportApi, namespace: string | undefined): string {
  const { plural } = KINDS[api][namespace ? 'namespaced' : 'cluster'];
  return namespace ? `/apis/${api}/namespaces/${namespace}/${plural}` : `/apis/${api}/${plural}`;
}

export interface ReportWriteResult {
  created: string[];
  replaced: string[];
  deleted: string[];
  /** Namespaces being deleted: a report cannot be created there, and need not be (their objects are going). */
  terminating: string[];
  /** Reports that could not be written or deleted, each with the reason; every other report still was. */
  failed: { report: string; namespace?: string; error: string }[];
}

const where = (ns: string | undefined) => (ns ? `${ns}/${REPORT_NAME}` : `${REPORT_NAME} (cluster)`);
const bounds = { timeoutMs: 30_000 };

/** Waits before each retry of a request the API server answered with 429 or 503. */
export const RETRY_DELAYS_MS = [500, 1000, 2000, 4000, 8000];

/**
 * `request`, again after a pause while the API server answers 429 (API Priority and Fairness
 * throttling; "storage is (re)initializing" for a resource whose CRD was just established) or 503.
 */
async function retrying<T>(request: () => Promise<T>, delays: readonly number[] = RETRY_DELAYS_MS): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await request();
    } catch (err) {
      const transient = err instanceof ApiError && (err.statusCode === 429 || err.statusCode === 503);
      if (!transient || attempt >= delays.length) throw err;
      await new Promise((resolve) => setTimeout(resolve, delays[attempt]));
    }
  }
}

/**
 * The NamespaceLifecycle admission plugin refused a create because the namespace is being deleted
 * (403 Forbidden with the cause `NamespaceTerminating`: "unable to create new content in namespace
 * X because it is being terminated").
 */
export function isNamespaceTerminating(err: unknown): boolean {
  return err instanceof ApiError && err.statusCode === 403 && (err.causes.includes('NamespaceTerminating') || /because it is being terminated/.test(err.message));
}

type ExistingReport = { metadata?: { name?: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string> } };
const isOurs = (o: ExistingReport) => o.metadata?.labels?.[MANAGED_BY.key] === MANAGED_BY.value;

/**
 * Make the cluster's tokenguard reports those of `reports`: create or replace each, and delete
 * every report of tokenguard's (by its label) that is no longer wanted. Reports without the label
 * are never listed, replaced or deleted. One report that cannot be written never stops the others:
 * a namespace being deleted is named in `terminating`, any other failure in `failed`. Throws only
 * when tokenguard's reports cannot be listed at all (the API not served, no permission to list).
 */
export async function writeReports(
  client: ApiClient,
  api: ReportApi,
  reports: PolicyReportObject[],
  retryDelaysMs: readonly number[] = RETRY_DELAYS_MS,
): Promise<ReportWriteResult> {
  const send = <T>(request: () => Promise<T>) => retrying(request, retryDelaysMs);
  const selector = `labelSelector=${encodeURIComponent(`${MANAGED_BY.key}=${MANAGED_BY.value}`)}`;
  const existing = new Map<string, { namespace?: string; resourceVersion?: string }>();
  for (const scope of ['namespaced', 'cluster'] as const) {
    const list = await send(() => client.getJson<{ items?: ExistingReport[] }>(`/apis/${api}/${KINDS[api][scope].plural}?${selector}`, bounds));
    for (const item of list.items ?? []) {
      if (item.metadata?.name !== REPORT_NAME) continue; // ours by label, not by name: left alone
      existing.set(`${scope}/${item.metadata.namespace ?? ''}`, { namespace: item.metadata.namespace, resourceVersion: item.metadata.resourceVersion });
    }
  }
  const out: ReportWriteResult = { created: [], replaced: [], deleted: [], terminating: [], failed: [] };

  /** Create or replace one report. A 409 (written since the LIST: another run) is retried once on what is there now. */
  const writeOne = async (report: PolicyReportObject, current: { resourceVersion?: string } | undefined): Promise<'created' | 'replaced'> => {
    const namespace = report.metadata.namespace;
    const collection = reportPath(api, namespace);
    for (let attempt = 0; ; attempt++) {
      try {
        if (current) {
          const body = { ...report, metadata: { ...report.metadata, resourceVersion: current.resourceVersion } };
          await send(() => client.writeJson('PUT', `${collection}/${REPORT_NAME}`, body, bounds));
          return 'replaced';
        }
        await send(() => client.writeJson('POST', collection, report, bounds));
        return 'created';
      } catch (err) {
        if (!(err instanceof ApiError && err.statusCode === 409) || attempt > 0) throw err;
        let now: ExistingReport | undefined;
        try {
          now = await send(() => client.getJson<ExistingReport>(`${collection}/${REPORT_NAME}`, bounds));
        } catch (readErr) {
          if (!(readErr instanceof ApiError && readErr.statusCode === 404)) throw readErr;
        }
        if (now && !isOurs(now)) {
          throw new Error(`${report.kind} ${where(namespace)} exists but is not tokenguard's (no ${MANAGED_BY.key}=${MANAGED_BY.value} label): left alone`, { cause: err });
        }
        current = now && { resourceVersion: now.metadata?.resourceVersion };
      }
    }
  };

  const wanted = new Set<string>();
  for (const report of reports) {
    const namespace = report.metadata.namespace;
    const key = `${namespace ? 'namespaced' : 'cluster'}/${namespace ?? ''}`;
    wanted.add(key);
    try {
      out[await writeOne(report, existing.get(key))].push(where(namespace));
    } catch (err) {
      if (namespace && isNamespaceTerminating(err)) out.terminating.push(namespace);
      else out.failed.push({ report: `${report.kind} ${where(namespace)}`, ...(namespace ? { namespace } : {}), error: errorMessage(err) });
    }
  }
  for (const [key, current] of existing) {
    if (wanted.has(key)) continue;
    const scope = key.startsWith('cluster/') ? 'cluster' : 'namespaced';
    const path = `${reportPath(api, scope === 'cluster' ? undefined : current.namespace)}/${REPORT_NAME}`;
    try {
      await send(() => client.writeJson('DELETE', path, undefined, bounds));
      out.deleted.push(where(current.namespace));
    } catch (err) {
      if (err instanceof ApiError && err.statusCode === 404) out.deleted.push(where(current.namespace));
      else out.failed.push({ report: `${KINDS[api][scope].kind} ${where(current.namespace)} (stale)`, ...(current.namespace ? { namespace: current.namespace } : {}), error: `deleting: ${errorMessage(err)}` });
    }
  }
  return out;
}

/** `--report` and `--report-api`: the API to write to, or undefined without `--report`. Throws a message for a usage error. */
export function reportApiFlag(report: boolean | undefined, api: string | undefined): ReportApi | undefined {
  if (api !== undefined && !(REPORT_APIS as readonly string[]).includes(api)) {
    throw new Error(`--report-api must be ${REPORT_APIS.join(' or ')}, got ${JSON.stringify(api)}`);
  }
  if (!report) {
    if (api !== undefined) throw new Error('--report-api needs --report');
    return undefined;
  }
  return (api as ReportApi | undefined) ?? DEFAULT_REPORT_API;
}

/** How `audit --report` went: every report written, some not (each named), or none (the reports could not even be listed). */
export type PublishOutcome = 'written' | 'partly written' | 'not written';

/**
 * Write the audit's reports and say what was done on stderr: one line per namespace being deleted
 * (skipped) and per report that could not be written, then a summary line.
 */
export async function publishAuditReports(
  client: ApiClient,
  r: AuditReport,
  api: ReportApi,
  io: { stderr(text: string): void },
  now = new Date(),
): Promise<PublishOutcome> {
  const { reports, truncated } = buildReports(r, api, now);
  let done: ReportWriteResult;
  try {
    done = await writeReports(client, api, reports);
  } catch (err) {
    const notServed = err instanceof ApiError && err.statusCode === 404 ? ` (is the ${api.split('/')[0]} CRD installed? see manifests/crds/)` : '';
    io.stderr(`tokenguard audit: reports not written: ${errorMessage(err)}${notServed}\n`);
    return 'not written';
  }
  for (const t of truncated) io.stderr(`tokenguard audit: ${t.report}: ${t.dropped} result(s) beyond the first ${MAX_RESULTS} left out\n`);
  for (const ns of done.terminating) io.stderr(`tokenguard audit: namespace ${ns} is being deleted: its report skipped\n`);
  for (const f of done.failed) io.stderr(`tokenguard audit: ${f.report} not written${f.namespace ? ` (namespace ${f.namespace})` : ''}: ${f.error}\n`);
  const names = (list: string[]) => (list.length ? list.join(', ') : 'none');
  io.stderr(
    `tokenguard audit: ${api} reports: ${reports.reduce((n, x) => n + x.results.length, 0)} result(s); ` +
      `created ${names(done.created)}; replaced ${names(done.replaced)}; deleted ${names(done.deleted)}` +
      (done.terminating.length ? `; skipped (namespace being deleted) ${done.terminating.join(', ')}` : '') +
      (done.failed.length ? `; NOT WRITTEN ${done.failed.map((f) => f.report).join(', ')}` : '') +
      '\n',
  );
  return done.failed.length ? 'partly written' : 'written';
}
