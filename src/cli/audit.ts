// `tokenguard audit`: what is wrong in a live cluster right now, with the same code the webhook
// runs. Four questions:
// 1. Which claims are Terminating while scheduled pods still use them (the outage in progress),
//    and on which kubelets has token refresh stopped (kubernetes#130442)?
// 2. Which pods mount a claim and a projected token (the pods such a deletion would hit)?
// 3. Which existing objects would the registered policies flag if they were created today?
// 4. Which issuer does the API server serve, and which issuers do the kube-apiserver mirror pods
//    accept (an issuer dropped without keeping the old one: kops#16488)?
// 5. Which running pods missed a token refresh, as the token refresh observer saw it
//    (audit-observed.ts), or that nothing observes?

import { Engine } from '../admission/engine.js';
import { ApiError, type ApiClient } from '../cluster/client.js';
import { acceptedIssuers } from '../cluster/token-selftest.js';
import { ConfigError, loadConfig } from '../config/load.js';
import type { TokenguardConfig } from '../config/schema.js';
import { issuerFlags, parseArgv } from '../k8s/apiserver-flags.js';
import { BUILTIN_POLICIES } from '../policies/index.js';
import { kubeletAffectedBy130442 } from '../k8s/kubelet.js';
import { pvcTokenRisk } from '../policies/pvc-token-risk.js';
import { openClusterSession, type ClusterSession } from './cluster-session.js';
import { parseFlags, UsageError, type Command } from './command.js';
import { evaluateCreate, syntheticCreate } from './evaluate.js';
import type { KubeObject } from '../k8s/object.js';
import { errorMessage } from '../observability/errors.js';
import { publishAuditReports, reportApiFlag, type PublishOutcome, type ReportApi } from './audit-report.js';
import { askObserver, renderObserved, type ObservedTokenRefresh, type ObserverSource } from './audit-observed.js';

const HELP = `Usage: tokenguard audit [flags]

Audit a live cluster with tokenguard's own checks (read-only: LIST and GET only):
  1. claims Terminating right now while scheduled pods still use them, and the kubelets where those
     pods' projected tokens stopped refreshing (kubernetes#130442: before 1.33.0, 1.32.4, 1.31.8, 1.30.12);
  2. pods that mount a claim and a projected token: at risk (their token stops refreshing if the claim
     is deleted) on kubelets with kubernetes#130442 or not scheduled yet, listed apart from those on
     kubelets whose token refresh works;
  3. existing objects the registered policies would flag if they were created now;
  4. the served service-account issuer, and the issuers each kube-apiserver mirror pod accepts;
  5. token refresh (observed): running pods whose projected token refresh is overdue, as the token
     refresh observer saw them (manifests/components/token-observer), asked through the API server
     (get services/proxy on tokenguard-observer in config observer.namespace), or that nothing observes.

Flags:
  --kubeconfig FILE        cluster to audit (else KUBECONFIG, in-cluster, ~/.kube/config)
  --config FILE            tokenguard configuration (policy settings, exemptions, modes) as deployed
  -o, --output FORMAT      table (default) or json
  --timeout SECONDS        how long to wait for the API server to answer at all (default 10)
  --sync-timeout SECONDS   how long to wait for the first LIST of pods, nodes and namespaces (default 60)
  --report                 also write the findings to the cluster as policy reports (one per namespace,
                           and a cluster report), replacing tokenguard's previous ones; exit 0 once written
  --report-api API         openreports.io/v1alpha1 (default: Report, ClusterReport) or
                           wgpolicyk8s.io/v1alpha2 (PolicyReport, ClusterPolicyReport)
  --observer-url URL       ask the token refresh observer at this address (https://HOST:PORT) rather
                           than through the API server
  --observer-ca FILE       the CA that signed that observer's certificate (else the system's)

Exit status: 0 nothing found, 1 a claim is Terminating while in use, a policy would deny an
existing object, a kube-apiserver does not accept the served issuer, or the observer reports a pod
whose token refresh is overdue; 2 usage or connection error.
With --report: 0 when the reports were written (the findings are in them; a namespace being
deleted is skipped and named), 3 when some could not be (each named), 2 when none could be.
`;

export interface AuditIO {
  stdout(text: string): void;
  stderr(text: string): void;
}

/** How a pod's projected token fares while its claim is Terminating. */
export type TokenRefresh = 'stopped' | 'refreshing' | 'unknown kubelet' | 'no token';

export interface TerminatingClaim {
  namespace: string;
  claim: string;
  deletionTimestamp: string;
  finalizers: string[];
  pods: { name: string; node: string; phase: string; kubeletVersion?: string; kubeletAffected?: boolean; tokenRefresh: TokenRefresh }[];
}

export interface RiskPod {
  namespace: string;
  name: string;
  node: string;
  phase: string;
  kubeletVersion?: string;
  kubeletAffected?: boolean;
  claims: string[];
  tokenVolumes: string[];
}

export interface ObjectFinding {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
  policy: string;
  severity: string;
  message: string;
  path?: string;
}

export interface AuditReport {
  cluster: string;
  terminatingClaims: TerminatingClaim[];
  /** Pods with a claim and a projected token on a kubelet with kubernetes#130442, or whose kubelet is unknown (not scheduled, version unreadable). */
  riskPods: RiskPod[];
  /** The same combination on kubelets whose token refresh works: a deleted claim still hangs, the token does not stop. */
  unaffectedPods: RiskPod[];
  findings: ObjectFinding[];
  /** Resources the policies match that could not be listed (not served, forbidden). */
  skippedResources: { resource: string; reason: string }[];
  issuers: {
    served?: string;
    discoveryError?: string;
    /** Every issuer accepted somewhere: the served one, then the mirror pods' flags. */
    accepted: string[];
    apiservers: { namespace: string; name: string; node: string; issuers: string[]; acceptsServed?: boolean }[];
  };
  /** What the token refresh observer reports, or why it could not say. */
  tokenRefreshObserved: ObservedTokenRefresh;
  summary: {
    terminatingClaimsInUse: number;
    tokenRefreshStopped: number;
    riskPods: number;
    unaffectedPods: number;
    denyFindings: number;
    warnFindings: number;
    apiserversRejectingServedIssuer: number;
    /** Overdue tokens the observer reports (0 when nothing observes: `tokenRefreshObserved.status` says). */
    tokenRefreshOverdue: number;
  };
}

const processIO: AuditIO = { stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t) };

export const AUDIT_FLAGS = {
  kubeconfig: { type: 'string' },
  config: { type: 'string' },
  output: { type: 'string', short: 'o' },
  timeout: { type: 'string' },
  'sync-timeout': { type: 'string' },
  report: { type: 'boolean' },
  'report-api': { type: 'string' },
  'observer-url': { type: 'string' },
  'observer-ca': { type: 'string' },
} as const;

export const auditCommand: Command = {
  name: 'audit',
  help: HELP,
  flags: AUDIT_FLAGS,
  run: (args) => runAudit(args, processIO),
};

/**
 * `audit --report`'s exit code: 0 when every report was written (a namespace being deleted is
 * skipped, not a failure), 3 when some were not (each named on stderr), 2 when none could be.
 */
export const REPORT_EXIT_CODES: Record<PublishOutcome, number> = { written: 0, 'partly written': 3, 'not written': 2 };

export async function runAudit(args: string[], io: AuditIO): Promise<number> {
  const { values } = parseFlags(args, AUDIT_FLAGS);
  const timeout = Number(values.timeout ?? 10);
  if (!(timeout > 0)) throw new UsageError(`--timeout must be a positive number of seconds, got ${JSON.stringify(values.timeout)}`);
  const output = values.output ?? 'table';
  if (output !== 'table' && output !== 'json') throw new UsageError(`--output must be table or json, got ${JSON.stringify(output)}`);
  const syncTimeout = Number(values['sync-timeout'] ?? 60);
  if (!(syncTimeout > 0)) throw new UsageError(`--sync-timeout must be a positive number of seconds, got ${JSON.stringify(values['sync-timeout'])}`);

  let reportApi: ReportApi | undefined;
  try {
    reportApi = reportApiFlag(values.report, values['report-api']);
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }

  const observerUrl = values['observer-url'];
  if (observerUrl !== undefined && !/^https:\/\/[^/]+/.test(observerUrl)) throw new UsageError(`--observer-url must be https://HOST:PORT (tokenguard serves HTTPS only), got ${JSON.stringify(observerUrl)}`);
  if (values['observer-ca'] !== undefined && observerUrl === undefined) throw new UsageError('--observer-ca needs --observer-url');

  let config: TokenguardConfig;
  try {
    config = loadConfig(values.config, BUILTIN_POLICIES);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr(`tokenguard audit: ${err.message}\n`);
    return 2;
  }
  let session: ClusterSession;
  try {
    session = await openClusterSession(values.kubeconfig, config, syncTimeout, { keepPods: true, connectTimeoutSeconds: timeout });
  } catch (err) {
    io.stderr(`tokenguard audit: ${errorMessage(err)}\n`);
    return 2;
  }
  try {
    const observer: ObserverSource = observerUrl ? { url: observerUrl, caFile: values['observer-ca'] } : { namespace: config.observer.namespace };
    const report = await audit(session, config, { observer, timeoutMs: timeout * 1000 });
    io.stdout(output === 'json' ? JSON.stringify(report, null, 2) + '\n' : renderTables(report));
    if (reportApi) return REPORT_EXIT_CODES[await publishAuditReports(session.cache.client, report, reportApi, io)];
    const s = report.summary;
    return s.terminatingClaimsInUse > 0 || s.denyFindings > 0 || s.apiserversRejectingServedIssuer > 0 || s.tokenRefreshOverdue > 0 ? 1 : 0;
  } catch (err) {
    io.stderr(`tokenguard audit: ${errorMessage(err)}\n`);
    return 2;
  } finally {
    session.stop();
  }
}

const PAGE = 500;

/** Every object of a LIST, page by page, each given the apiVersion and kind LIST items lack. */
async function listAll(client: ApiClient, path: string, apiVersion: string): Promise<KubeObject[]> {
  const out: KubeObject[] = [];
  let cont = '';
  do {
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (cont) q.set('continue', cont);
    const page = await client.getJson(`${path}?${q.toString()}`, { timeoutMs: 30_000 });
    const kind = typeof page.kind === 'string' ? page.kind.replace(/List$/, '') : '';
    for (const item of Array.isArray(page.items) ? page.items : []) out.push({ apiVersion, kind, ...item });
    cont = page.metadata?.continue ?? '';
  } while (cont);
  return out;
}

/** The group/version to list a resource in: the policy's version, else the group's preferred one. */
async function servedGroupVersion(client: ApiClient, group: string, versions: string[] | undefined): Promise<string> {
  const version = versions?.find((v) => v !== '*');
  if (group === '') return version ?? 'v1';
  if (version) return `${group}/${version}`;
  const discovery = await client.getJson(`/apis/${group}`, { timeoutMs: 10_000 });
  const preferred = discovery?.preferredVersion?.groupVersion;
  if (typeof preferred !== 'string') throw new Error(`/apis/${group} names no preferred version`);
  return preferred;
}

/** Resources the validating policies match on CREATE, once each, from the registry. */
function policyResources(): { group: string; resource: string; versions?: string[] }[] {
  const seen = new Map<string, { group: string; resource: string; versions?: string[] }>();
  for (const p of BUILTIN_POLICIES) {
    if (!p.validate) continue;
    for (const rule of p.match) {
      if (!rule.operations.includes('CREATE') || rule.subresources?.some((s) => s !== '')) continue;
      for (const group of rule.groups)
        for (const resource of rule.resources) {
          if (group === '*' || resource === '*') continue; // never list everything
          const key = `${group}/${resource}`;
          if (!seen.has(key)) seen.set(key, { group, resource, versions: rule.versions });
        }
    }
  }
  return [...seen.values()];
}

/** Where audit asks the token refresh observer (default: through the API server, in config `observer.namespace`). */
export interface AuditOptions {
  observer?: ObserverSource;
  timeoutMs?: number;
}

export async function audit(session: ClusterSession, config: TokenguardConfig, opts: AuditOptions = {}): Promise<AuditReport> {
  const { cache, issuers: monitor } = session;
  const client = cache.client;

  const nodeInfo = (node: string) => {
    const kubeletVersion = node ? cache.node(node)?.kubeletVersion : undefined;
    return { kubeletVersion, kubeletAffected: kubeletVersion ? kubeletAffectedBy130442(kubeletVersion) : undefined };
  };

  // 1. Terminating claims with scheduled users (the pvc-protection controller's notion of "in use").
  const terminatingClaims: TerminatingClaim[] = [];
  for (const pvc of await listAll(client, '/api/v1/persistentvolumeclaims', 'v1')) {
    const meta = pvc.metadata ?? {};
    if (!meta.deletionTimestamp) continue;
    const users = cache.podsUsingClaim(meta.namespace, meta.name).filter((p) => p.nodeName);
    if (users.length === 0) continue;
    terminatingClaims.push({
      namespace: meta.namespace,
      claim: meta.name,
      deletionTimestamp: meta.deletionTimestamp,
      finalizers: Array.isArray(meta.finalizers) ? meta.finalizers : [],
      pods: users.map((p) => {
        const k = nodeInfo(p.nodeName);
        const tokenRefresh: TokenRefresh = !p.hasProjectedToken
          ? 'no token'
          : k.kubeletAffected === undefined
            ? 'unknown kubelet'
            : k.kubeletAffected
              ? 'stopped'
              : 'refreshing';
        return { name: p.name, node: p.nodeName, phase: p.phase, ...k, tokenRefresh };
      }),
    });
  }

  // 2 and 3: list what the policies match, judge each object as a create, and find the risk pods.
  const skippedResources: AuditReport['skippedResources'] = [];
  const listed: KubeObject[] = [];
  const wanted = policyResources();
  if (!wanted.some((r) => r.group === '' && r.resource === 'pods')) wanted.push({ group: '', resource: 'pods', versions: ['v1'] });
  for (const r of wanted) {
    const name = r.group ? `${r.resource}.${r.group}` : r.resource;
    try {
      // The caches' LIST already brought every pod: judge those rather than list them again.
      if (r.group === '' && r.resource === 'pods' && session.pods) {
        for (const pod of session.pods) listed.push({ apiVersion: 'v1', kind: 'Pod', ...pod });
        continue;
      }
      const gv = await servedGroupVersion(client, r.group, r.versions);
      listed.push(...(await listAll(client, `${r.group ? '/apis' : '/api'}/${gv}/${r.resource}`, gv)));
    } catch (err) {
      const status = err instanceof ApiError ? err.statusCode : undefined;
      skippedResources.push({
        resource: name,
        reason: status === 404 ? 'not served by this cluster' : status === 403 ? 'forbidden for these credentials' : errorMessage(err),
      });
    }
  }

  const riskPods: RiskPod[] = [];
  const unaffectedPods: RiskPod[] = [];
  for (const pod of listed) {
    if (pod.kind !== 'Pod') continue;
    const risk = pvcTokenRisk(pod);
    if (!risk) continue;
    const node = pod.spec?.nodeName ?? '';
    const entry: RiskPod = { namespace: pod.metadata?.namespace, name: pod.metadata?.name, node, phase: pod.status?.phase ?? '', ...nodeInfo(node), ...risk };
    (entry.kubeletAffected === false ? unaffectedPods : riskPods).push(entry);
  }

  // An object made by a controller we also list is judged through its owner (a Deployment, not
  // each of its ReplicaSets and pods), so one problem is reported once.
  const listedKinds = new Set(listed.map((o) => o.kind));
  const ownedByListed = (o: KubeObject) =>
    Array.isArray(o.metadata?.ownerReferences) && o.metadata.ownerReferences.some((ref: KubeObject) => ref?.controller && listedKinds.has(ref.kind));
  const engine = new Engine({ config, policies: BUILTIN_POLICIES, cluster: cache });
  const findings: ObjectFinding[] = [];
  for (const [i, object] of listed.entries()) {
    if (ownedByListed(object)) continue;
    const ev = await evaluateCreate(engine, syntheticCreate(object, { uid: `tokenguard-audit-${i}`, defaultNamespace: 'default' }));
    for (const f of ev.findings) {
      findings.push({
        apiVersion: object.apiVersion,
        kind: object.kind,
        ...(object.metadata?.namespace ? { namespace: object.metadata.namespace } : {}),
        name: object.metadata?.name ?? '',
        policy: f.policy,
        severity: f.severity,
        message: f.message,
        ...(f.path ? { path: f.path } : {}),
      });
    }
  }

  // 4. Issuers.
  const served = monitor.servedIssuer;
  const apiservers = cache.apiserverPods().map((p) => {
    const issuers = issuerFlags(parseArgv(p.argv)).issuers;
    return { namespace: p.namespace, name: p.name, node: p.nodeName, issuers, ...(served ? { acceptsServed: issuers.includes(served) } : {}) };
  });

  // 5. Token refresh, as the observer saw it.
  const tokenRefreshObserved = await askObserver(client, opts.observer ?? { namespace: config.observer.namespace }, opts.timeoutMs ?? 10_000);

  return {
    cluster: `${session.source.server} (${session.source.source})`,
    terminatingClaims,
    riskPods,
    unaffectedPods,
    findings,
    skippedResources,
    issuers: {
      ...(served ? { served } : {}),
      ...(monitor.error ? { discoveryError: monitor.error } : {}),
      accepted: acceptedIssuers(served, cache),
      apiservers,
    },
    tokenRefreshObserved,
    summary: {
      terminatingClaimsInUse: terminatingClaims.length,
      tokenRefreshStopped: terminatingClaims.reduce((n, c) => n + c.pods.filter((p) => p.tokenRefresh === 'stopped').length, 0),
      riskPods: riskPods.length,
      unaffectedPods: unaffectedPods.length,
      denyFindings: findings.filter((f) => f.severity === 'deny').length,
      warnFindings: findings.filter((f) => f.severity === 'warn').length,
      apiserversRejectingServedIssuer: apiservers.filter((a) => a.acceptsServed === false).length,
      tokenRefreshOverdue: tokenRefreshObserved.overdue.length,
    },
  };
}

/** Columns padded to their widest cell, like kubectl get. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('   ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

/** The TOKEN REFRESH column: whether kubelet still refreshes the pod's projected token (never a pod state). */
export function tokenRefreshText(t: TokenRefresh): string {
  return t === 'stopped' ? 'not refreshed (kubernetes#130442)' : t;
}

function kubelet(v: { kubeletVersion?: string; kubeletAffected?: boolean }): string {
  if (!v.kubeletVersion) return '-';
  return `${v.kubeletVersion}${v.kubeletAffected ? ' (affected)' : ''}`;
}

export function renderTables(r: AuditReport): string {
  const out: string[] = [`Cluster: ${r.cluster}`, ''];
  const section = (title: string, body: string) => out.push(`== ${title}`, body);

  section(
    'Claims Terminating while scheduled pods use them (token refresh at risk: kubernetes#130442)',
    r.terminatingClaims.length === 0
      ? 'None.\n'
      : table(
          ['NAMESPACE', 'CLAIM', 'DELETED AT', 'POD', 'PHASE', 'NODE', 'KUBELET', 'TOKEN REFRESH'],
          r.terminatingClaims.flatMap((c) =>
            c.pods.map((p) => [c.namespace, c.claim, c.deletionTimestamp, p.name, p.phase, p.node, kubelet(p), tokenRefreshText(p.tokenRefresh)]),
          ),
        ),
  );
  const podTable = (pods: RiskPod[]) =>
    pods.length === 0
      ? 'None.\n'
      : table(
          ['NAMESPACE', 'POD', 'PHASE', 'NODE', 'KUBELET', 'CLAIMS', 'TOKEN VOLUMES'],
          pods.map((p) => [p.namespace, p.name, p.phase, p.node || '(unscheduled)', kubelet(p), p.claims.join(','), p.tokenVolumes.join(',')]),
        );
  section('Pods at risk: a claim and a projected token, on a kubelet with kubernetes#130442 or not known yet (deleting the claim stops the token refresh)', podTable(r.riskPods));
  section('Pods with a claim and a projected token on kubelets whose token refresh works (a deleted claim still hangs in Terminating)', podTable(r.unaffectedPods));
  section(
    'Existing objects the policies flag',
    r.findings.length === 0
      ? 'None.\n'
      : table(
          ['KIND', 'NAMESPACE', 'NAME', 'POLICY', 'SEVERITY', 'FINDING'],
          r.findings.map((f) => [f.kind, f.namespace ?? '-', f.name, f.policy, f.severity, f.path ? `${f.message} (at ${f.path})` : f.message]),
        ),
  );
  if (r.skippedResources.length) out.push(...r.skippedResources.map((s) => `Not checked: ${s.resource}: ${s.reason}`), '');
  const i = r.issuers;
  section(
    'Service-account issuers',
    `Served issuer: ${i.served ?? `unknown (${i.discoveryError ?? 'discovery not read'})`}\n` +
      (i.apiservers.length === 0
        ? 'No kube-apiserver mirror pods visible (managed control plane?): the accepted issuers cannot be read from the API.\n'
        : table(
            ['NAMESPACE', 'KUBE-APISERVER POD', 'NODE', 'ISSUERS (FIRST SIGNS)', 'ACCEPTS SERVED'],
            i.apiservers.map((a) => [a.namespace, a.name, a.node, a.issuers.join(', ') || '(none)', a.acceptsServed === undefined ? '?' : a.acceptsServed ? 'yes' : 'NO']),
          )),
  );
  section('Token refresh (observed)', renderObserved(r.tokenRefreshObserved, table));
  const s = r.summary;
  const observed = {
    observing: `${s.tokenRefreshOverdue} overdue token refresh(es) observed`,
    waiting: 'token refresh not judged yet (no TokenRequest has reached the observer)',
    'nothing observes': 'token refresh not observed',
    unknown: 'token refresh observer not reachable',
  }[r.tokenRefreshObserved.status];
  out.push(
    `Summary: ${s.terminatingClaimsInUse} Terminating claim(s) in use (${s.tokenRefreshStopped} pod(s) with token refresh stopped), ` +
      `${s.riskPods} pod(s) at risk (${s.unaffectedPods} more on kubelets whose token refresh works), ${s.denyFindings} deny and ${s.warnFindings} warn finding(s), ` +
      `${s.apiserversRejectingServedIssuer} kube-apiserver(s) not accepting the served issuer, ${observed}.`,
  );
  return out.join('\n') + '\n';
}
