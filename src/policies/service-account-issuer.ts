// service-account-issuer: catch a kube-apiserver issuer change that would reject every existing
// service-account token (kops#16488: kOps 1.25 -> 1.26 replaced `master.<cluster>` by
// `api.internal.<cluster>` and Calico's install-cni got `Unauthorized`).
//
// kube-apiserver accepts `--service-account-issuer` several times: the first signs new tokens,
// all of them are accepted. Dropping one invalidates its tokens at once. The flags are visible in
// three objects: the kube-apiserver mirror pods (warn only: denying a mirror pod hides the static
// pod but does not stop it), kubeadm's `kubeadm-config` ConfigMap and Cluster API's
// KubeadmControlPlane (deny: they drive the rollout).
//
// Trusted issuers = the served issuer (OIDC discovery) + every issuer some other kube-apiserver
// mirror pod in the cache accepts + (UPDATE) the issuers of the object's old version.
// A KubeadmControlPlane is the exception: it lives in a Cluster API management cluster and
// configures the control plane of another cluster, so this cluster's served issuer and mirror pods
// say nothing about it. It is judged against its own previous version only.

import { objectName, type AdmissionRequest } from '../admission/review.js';
import {
  kubeadmConfigMapIssuerFlags,
  kubeadmControlPlaneIssuerFlags,
  mirrorPodIssuerFlags,
  parseArgv,
  issuerFlags,
  type IssuerFlags,
} from '../k8s/apiserver-flags.js';
import { fitWarning, type Finding, type IssuerRisk, type Policy, type PolicyContext } from '../admission/policy.js';
import type { KubeObject } from '../k8s/object.js';

export const POLICY = 'service-account-issuer';

/** Annotation listing issuers (comma-separated) whose removal the operator acknowledges. */
export const ALLOW_REMOVAL_ANNOTATION = 'tokenguard.io/allow-issuer-removal';

/**
 * The safe migration path (kOps docs), one step each: the denial's detail says it for any issuers,
 * its Fix for the two at hand, from the same words, so the two can never disagree.
 */
export const MIGRATION_STEPS: ((old: string, next: string, removal?: string) => string)[] = [
  (old, next) => `add ${next} as an extra --service-account-issuer after ${old}, roll`,
  (old, next) => `make ${next} the first one, keep ${old} after it, roll`,
  (old, _next, removal = '') =>
    `wait until every token ${old} signed has expired (at least 24 h, longer if tokens are handed out with longer lifetimes), then remove ${old}${removal}, roll`,
];

/** `1. ...; 2. ...; 3. ...` from step `from` (1-based) on. */
export function migrationSteps(old: string, next: string, removal?: string, from = 1): string {
  return MIGRATION_STEPS.slice(from - 1)
    .map((step, i) => `${i + from}. ${step(old, next, removal)}`)
    .join('; ');
}

export const MIGRATION = `Safe path (kOps docs): ${migrationSteps('the old issuer', 'the new issuer')}.`;

type SubjectKind = 'mirror-pod' | 'kubeadm-config' | 'kubeadm-control-plane';

interface Subject {
  kind: SubjectKind;
  /** How messages name the object, e.g. `kube-apiserver pod kube-system/x`. */
  label: string;
  /** Field path of the flags (mirror pods: none, the fix is in the static pod manifest on the node). */
  path?: string;
  /** Where the fix is made, for the `fix` text. */
  where: string;
  flags?: IssuerFlags;
  oldFlags?: IssuerFlags;
  error?: string;
}

function subjectOf(req: AdmissionRequest): Subject | undefined {
  const obj = req.object;
  if (!obj || (req.operation !== 'CREATE' && req.operation !== 'UPDATE')) return undefined;
  const old = req.operation === 'UPDATE' ? req.oldObject : undefined;
  const name = objectName(req);
  if (req.resource.group === '' && req.resource.resource === 'pods') {
    if (req.namespace !== 'kube-system') return undefined; // the hot path: every other pod ends here
    const flags = mirrorPodIssuerFlags(obj);
    if (!flags || flags.issuers.length === 0) return undefined;
    return {
      kind: 'mirror-pod',
      label: `kube-apiserver pod ${name}`,
      where: `the static pod manifest on node ${obj.spec?.nodeName || '(unknown)'} (e.g. /etc/kubernetes/manifests/kube-apiserver.yaml)`,
      flags,
      oldFlags: mirrorPodIssuerFlags(old),
    };
  }
  if (req.resource.group === '' && req.resource.resource === 'configmaps') {
    if (req.namespace !== 'kube-system' || name !== 'kubeadm-config') return undefined;
    const cur = kubeadmConfigMapIssuerFlags(obj);
    return {
      kind: 'kubeadm-config',
      label: 'kubeadm-config',
      path: 'data.ClusterConfiguration',
      where: 'apiServer.extraArgs of data.ClusterConfiguration',
      flags: cur.flags,
      oldFlags: old ? kubeadmConfigMapIssuerFlags(old).flags : undefined,
      error: cur.error,
    };
  }
  if (req.resource.resource === 'kubeadmcontrolplanes') {
    const cur = kubeadmControlPlaneIssuerFlags(obj);
    return {
      kind: 'kubeadm-control-plane',
      label: `KubeadmControlPlane ${name}`,
      path: 'spec.kubeadmConfigSpec.clusterConfiguration.apiServer.extraArgs',
      where: 'spec.kubeadmConfigSpec.clusterConfiguration.apiServer.extraArgs',
      flags: cur.flags,
      oldFlags: old ? kubeadmControlPlaneIssuerFlags(old).flags : undefined,
      error: cur.error,
    };
  }
  return undefined;
}

/** Issuer -> why it is trusted now (one reason per source). */
type TrustedSet = Map<string, string[]>;

interface Baselines {
  trusted: TrustedSet;
  /** The issuer that signs tokens today, as far as we know. */
  previousPrimary?: string;
  /** Issuer lists this one is compared with (old version, other kube-apiservers), for the audience rule. */
  previousLists: string[][];
  /** jwks-uri of an earlier configuration with the same first issuer. */
  previousJwksUri?: { value: string | undefined; from: string };
  servedKnown: boolean;
  /** This cluster's own configuration (not a KubeadmControlPlane of another cluster). */
  local: boolean;
}

function baselines(req: AdmissionRequest, ctx: PolicyContext, subject: Subject): Baselines {
  const trusted: TrustedSet = new Map();
  const trust = (issuer: string, why: string) => {
    const reasons = trusted.get(issuer);
    if (!reasons) trusted.set(issuer, [why]);
    else if (!reasons.includes(why)) reasons.push(why);
  };
  // Only this cluster's own configuration is judged against this cluster's issuers.
  const local = subject.kind !== 'kubeadm-control-plane';
  const served = local ? ctx.cluster?.issuers?.servedIssuer : undefined;
  if (served) trust(served, 'the served issuer (/.well-known/openid-configuration)');

  const previousLists: string[][] = [];
  let previousJwksUri: Baselines['previousJwksUri'];
  const primary = subject.flags?.issuers[0];
  const old = subject.oldFlags;
  if (old && old.issuers.length) {
    for (const i of old.issuers) trust(i, `accepted by the previous version of ${subject.label}`);
    previousLists.push(old.issuers);
    if (old.issuers[0] === primary) previousJwksUri = { value: old.jwksUri, from: 'the previous version' };
  }
  const self = subject.kind === 'mirror-pod' ? `${req.namespace}/${objectName(req)}` : '';
  const others: { name: string; flags: IssuerFlags }[] = [];
  for (const pod of (local && ctx.cluster?.apiserverPods()) || []) {
    if (`${pod.namespace}/${pod.name}` === self) continue;
    const flags = issuerFlags(parseArgv(pod.argv));
    if (flags.issuers.length === 0) continue;
    others.push({ name: pod.name, flags });
    for (const i of flags.issuers) trust(i, `accepted by kube-apiserver pod ${pod.name}`);
    previousLists.push(flags.issuers);
    if (!previousJwksUri && flags.issuers[0] === primary && flags.jwksUri !== undefined) {
      previousJwksUri = { value: flags.jwksUri, from: `kube-apiserver pod ${pod.name}` };
    }
  }
  if (previousLists.length === 0 && served) previousLists.push([served]);
  return {
    trusted,
    previousPrimary: old?.issuers[0] ?? served ?? others[0]?.flags.issuers[0],
    previousLists,
    previousJwksUri,
    servedKnown: !!served,
    local,
  };
}

function hostOf(url: string | undefined): string | undefined {
  if (!url || !/^https?:\/\//i.test(url)) return undefined;
  try {
    return new URL(url).host.toLowerCase();
  } catch {
    return undefined;
  }
}

const sameSet = (a: readonly string[], b: readonly string[]) => {
  const sa = new Set(a);
  const sb = new Set(b);
  return sa.size === sb.size && [...sa].every((x) => sb.has(x));
};

function acknowledgedRemovals(obj: KubeObject | null | undefined): Set<string> {
  const v = obj?.metadata?.annotations?.[ALLOW_REMOVAL_ANNOTATION];
  return new Set(typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : []);
}

export interface IssuerAnalysis {
  findings: Finding[];
  /** Events to record (mirror pods that drop a trusted issuer), for the gather step. */
  risks: IssuerRisk[];
}

/** The whole judgement, pure: findings, and the Events a mirror pod's dropped issuers deserve. */
export function analyzeIssuerChange(req: AdmissionRequest, ctx: PolicyContext): IssuerAnalysis {
  const subject = subjectOf(req);
  if (!subject) return { findings: [], risks: [] };
  const out: IssuerAnalysis = { findings: [], risks: [] };
  const mirror = subject.kind === 'mirror-pod';
  const blocking = mirror ? 'warn' : 'deny';
  const base = { policy: POLICY, ...(subject.path ? { path: subject.path } : {}) };

  if (subject.error) {
    out.findings.push({
      ...base,
      severity: 'warn',
      message: fitWarning(
        `${subject.label}: ${subject.error}; issuer flags not checked`,
        `${subject.label}: cannot read the issuer flags; not checked`,
        'cannot read the issuer flags; not checked',
      ),
      detail: `${subject.label}: ${subject.error}`,
    });
    return out;
  }
  const flags = subject.flags;
  if (!flags || flags.issuers.length === 0) return out;
  const issuers = flags.issuers;
  const primary = issuers[0]!;
  const b = baselines(req, ctx, subject);
  const unknownNote = b.servedKnown || !b.local
    ? ''
    : ' The served issuer is unknown (no cluster access, or discovery failed): judged only against the previous ' +
      'version and the other kube-apiserver pods.';
  const withNote = (detail: string) => detail + unknownNote;

  // A duplicate value makes kube-apiserver exit at start-up (gardener#8420).
  const seen = new Set<string>();
  for (const i of issuers) {
    if (seen.has(i)) {
      out.findings.push({
        ...base,
        severity: blocking,
        message: fitWarning(
          `--service-account-issuer ${i} is listed twice: kube-apiserver will not start`,
          'a --service-account-issuer value is listed twice: kube-apiserver will not start',
        ),
        detail: `${subject.label} lists ${issuers.join(', ')}. kube-apiserver refuses duplicate issuers.`,
        fix: `list ${i} once in ${subject.where}`,
      });
    }
    seen.add(i);
  }

  // Trusted issuers this configuration no longer accepts.
  const accepted = new Set(issuers);
  const acknowledged = acknowledgedRemovals(req.object);
  for (const [issuer, reasons] of b.trusted) {
    if (accepted.has(issuer)) continue;
    if (acknowledged.has(issuer)) {
      out.findings.push({
        ...base,
        severity: 'warn',
        message: fitWarning(
          `issuer ${issuer} removed (acknowledged by ${ALLOW_REMOVAL_ANNOTATION}): its tokens are rejected now`,
          `an issuer was removed (acknowledged by ${ALLOW_REMOVAL_ANNOTATION}): its tokens are rejected now`,
        ),
        audit: { acknowledgedRemoval: issuer },
      });
      continue;
    }
    const detail =
      `${issuer} is ${reasons.join(' and ')}, but ${subject.label} accepts only ${issuers.join(', ')}: every token ` +
      `signed by ${issuer} is rejected as soon as this rolls out (the kOps 1.26 outage).` +
      (mirror ? ' Denying a mirror pod would only hide the static pod, so this is a warning; fix the manifest.' : '') +
      ` ${MIGRATION}`;
    out.findings.push({
      ...base,
      severity: blocking,
      // The issuer is the point: the advice goes before the issuer is ever left out, and an
      // issuer too long for a warning is left out whole (the denial and the log name it).
      message: fitWarning(
        `drops issuer ${issuer} (its tokens fail): keep it as an extra --service-account-issuer`,
        `drops issuer ${issuer} (its tokens fail)`,
        'drops a trusted issuer (its tokens fail): keep it as an extra --service-account-issuer',
      ),
      detail: withNote(detail),
      // The safe path for these two issuers: from step 1 when the dropped one signs today's tokens,
      // else from step 2 (it is already an extra issuer: keep it so until its tokens expired).
      fix: `in ${subject.where}: ${migrationSteps(issuer, primary, ` (annotate ${ALLOW_REMOVAL_ANNOTATION}=${issuer})`, issuer === b.previousPrimary ? 1 : 2)}`,
    });
    if (mirror) {
      out.risks.push({
        object: {
          kind: 'Pod',
          namespace: req.namespace ?? 'kube-system',
          name: objectName(req),
          ...(req.object?.metadata?.uid ? { uid: req.object.metadata.uid } : {}),
        },
        reason: 'ServiceAccountIssuerDropped',
        message: `${subject.label} does not accept ${issuer} (${reasons.join('; ')}): tokens signed by it are rejected. ${MIGRATION}`,
      });
    }
  }

  // The signing issuer changes while the old one stays accepted: allowed, but the clock starts.
  const prev = b.previousPrimary;
  if (prev && prev !== primary && accepted.has(prev)) {
    out.findings.push({
      ...base,
      severity: 'warn',
      message: fitWarning(
        `new tokens carry issuer ${primary}; keep ${prev} accepted 24 h+`,
        `new tokens carry issuer ${primary}; keep the old issuer accepted 24 h+`,
        'the signing issuer changes; keep the old one accepted 24 h+',
      ),
      detail: withNote(
        `${subject.label} makes ${primary} the signing issuer (was ${prev}). ${prev} must stay accepted until every ` +
          `token it signed has expired: at least 24 h for kubelet-refreshed tokens, longer for tokens handed out ` +
          `with longer lifetimes. ${MIGRATION}`,
      ),
    });
  }

  // jwks-uri: changed under the same issuer, or on another host than the issuer.
  const jwksHost = hostOf(flags.jwksUri);
  const issuerHost = hostOf(primary);
  if (b.previousJwksUri && b.previousJwksUri.value !== flags.jwksUri) {
    out.findings.push({
      ...base,
      severity: 'warn',
      message: fitWarning(
        `--service-account-jwks-uri changed to ${flags.jwksUri ?? '(unset)'} while the issuer stays ${primary}`,
        `--service-account-jwks-uri changed to ${flags.jwksUri ?? '(unset)'} while the issuer stays the same`,
        '--service-account-jwks-uri changed while the issuer stays the same',
      ),
      detail:
        `${b.previousJwksUri.from} publishes ${b.previousJwksUri.value ?? '(the default)'}. External verifiers ` +
        `(cloud IAM, Vault, SPIRE) fetch keys from the jwks_uri of the discovery document; make sure the new URL serves the same keys.`,
    });
  }
  if (jwksHost && issuerHost && jwksHost !== issuerHost) {
    out.findings.push({
      ...base,
      severity: 'warn',
      message: fitWarning(
        `--service-account-jwks-uri host ${jwksHost} is not the issuer's host ${issuerHost}`,
        "--service-account-jwks-uri is on another host than the issuer's",
      ),
      detail: `Verifiers that discover keys from ${primary}/.well-known/openid-configuration may refuse a jwks_uri on another host.`,
    });
  }

  // With --api-audiences unset, the default audience is the issuer list.
  if (!flags.apiAudiences && b.previousLists.some((l) => !sameSet(l, issuers))) {
    out.findings.push({
      ...base,
      severity: 'warn',
      // The list itself is in the detail: with two issuers it no longer fits on kubectl's line.
      message: '--api-audiences unset: the default token audience changes with the issuer list',
      detail:
        `Tokens requested without an audience (every kube-api-access-* token) carry the issuer list as audience, now ${issuers.join(',')}, ` +
        'and the API server accepts only tokens whose audience it lists. Set --api-audiences explicitly to keep it stable across the change.',
    });
  }

  // Nothing to compare with at all: say so rather than pass silently. (A new KubeadmControlPlane
  // has nothing to compare with by design: its cluster's issuers are not visible from here.)
  if (b.trusted.size === 0 && b.local) {
    out.findings.push({
      ...base,
      severity: 'warn',
      message: 'issuer change not checked: served issuer unknown, no old version or other kube-apiserver to compare',
      detail: `${subject.label} accepts ${issuers.join(', ')}.${unknownNote}`,
    });
  }
  return out;
}

export const serviceAccountIssuerPolicy: Policy<Record<string, never>, Record<string, never>, IssuerAnalysis | Error | undefined> = {
  name: POLICY,
  description:
    'Warns or denies when kube-apiserver flags (mirror pods, kubeadm-config, KubeadmControlPlane) drop a trusted service-account issuer.',
  match: [
    // The mirror pods and kubeadm-config live in kube-system; pod updates and ConfigMaps elsewhere never matter.
    { groups: [''], resources: ['pods', 'configmaps'], operations: ['CREATE', 'UPDATE'], namespaces: ['kube-system'] },
    { groups: ['controlplane.cluster.x-k8s.io'], resources: ['kubeadmcontrolplanes'], operations: ['CREATE', 'UPDATE'] },
  ],
  // The only I/O: a mirror pod that drops a trusted issuer cannot be denied, so the warning is also
  // recorded as an Event that outlives the request (fire and forget, never on dry-run).
  gather: (req, ctx) => {
    if (req.namespace !== 'kube-system' || req.resource.resource !== 'pods') return undefined;
    const analysis = analyzeIssuerChange(req, ctx);
    const issuers = ctx.cluster?.issuers;
    if (!req.dryRun && issuers?.reportIssuerRisk) for (const r of analysis.risks) issuers.reportIssuerRisk(r);
    return analysis;
  },
  validate: (req, ctx, gathered) =>
    (gathered && !(gathered instanceof Error) ? gathered : analyzeIssuerChange(req, ctx)).findings,
};
