// pvc-in-use: refuse (or warn about) deleting a PersistentVolumeClaim that pods still use.
//
// Deleting such a claim does not fail: it hangs in Terminating behind the
// `kubernetes.io/pvc-protection` finalizer, and on kubelets affected by kubernetes#130442 the
// pods' projected service-account tokens stop refreshing until it is gone. The
// pods are classified as the upstream pvc-protection controller counts them:
//   scheduled, not terminal  -> the claim would hang: deny in enforce, warn in warn;
//   scheduled, terminal      -> allowed; the claim stays Terminating until those pod objects go;
//   not scheduled            -> allowed; those pods can never start once the claim is Terminating.
// `gather` does the I/O (cache, else a bounded live LIST); `validate` is pure.

import { objectName, type AdmissionRequest } from '../admission/review.js';
import { errorMessage, fitWarning, MAX_WARNING_CHARS, type Finding, type PodSummary, type Policy, type PolicyContext } from '../admission/policy.js';
import { kubeletAffectedBy130442 } from '../k8s/kubelet.js';
import type { KubeObject } from '../k8s/object.js';

export const BREAK_GLASS_ANNOTATION = 'tokenguard.io/allow-delete';
const NAME = 'pvc-in-use';
/** Pods named in a message or a denial, before "and N more". */
const MAX_NAMED = 5;

export type PvcLookup =
  | { source: 'cache' | 'live'; pods: PodSummary[] }
  | { source: 'unavailable' | 'failed'; reason: string };

// ---- text ------------------------------------------------------------------------------------

/**
 * `a, b, c and 4 more`: as many entries (at most MAX_NAMED) as fit in `budget` characters, each
 * whole. When not even the first fits (names can be 253 characters long), `N pods`.
 */
export function fitList(entries: string[], budget: number, noun = 'pod'): string {
  let out = '';
  let shown = 0;
  for (const e of entries.slice(0, MAX_NAMED)) {
    const next = out ? `${out}, ${e}` : e;
    const rest = entries.length - shown - 1;
    const suffix = rest > 0 ? ` and ${rest} more` : '';
    if (Array.from(next).length + suffix.length > budget) break;
    out = next;
    shown++;
  }
  if (shown === 0) return plural(entries.length, noun);
  const rest = entries.length - shown;
  return rest > 0 ? `${out} and ${rest} more` : out;
}

/**
 * One warning: `<head><list><tail>`, the list cut to whole entries that fit. Two heads: the one
 * that names the claim, and one without it (the claim's name, up to 253 characters, is the one the
 * user just typed: the least useful part to keep when something must go).
 */
function line(heads: [string, string], entries: string[], noun = 'pod'): string {
  const candidates = heads.map((head) => head + fitList(entries, MAX_WARNING_CHARS - Array.from(head).length, noun));
  return fitWarning(...candidates);
}

/** A pod as a warning names it: `db-0 (Running on node-a)`; its phase as Kubernetes names it. */
const short = (p: PodSummary) => (p.nodeName ? `${p.name} (${phaseOf(p)} on ${p.nodeName})` : p.name);

/** The pod's phase (Pending, Running, Succeeded, Failed, Unknown); a pod has none only before the API server sets Pending. */
const phaseOf = (p: PodSummary) => p.phase || 'Pending';

/** For the denial message and logs: owner, node and phase of up to 5 pods, then "and N more". */
function described(pods: PodSummary[]): string {
  const parts = pods.slice(0, MAX_NAMED).map((p) => {
    const facts = [p.owner ? `${p.owner.kind} ${p.owner.name}` : 'no owner', p.nodeName ? `node ${p.nodeName}` : 'not scheduled', phaseOf(p)];
    return `${p.name} (${facts.join(', ')})`;
  });
  if (pods.length > MAX_NAMED) parts.push(`and ${pods.length - MAX_NAMED} more`);
  return parts.join(', ');
}

const plural = (n: number, one: string, many = one + 's') => `${n} ${n === 1 ? one : many}`;
/** `1 pod still uses it`, `2 pods still use it`: the noun and its verb agree. */
const stillUse = (n: number, one: string) => `${plural(n, one)} still ${n === 1 ? 'uses' : 'use'} it`;

// ---- the policy ------------------------------------------------------------------------------

function claimOf(req: AdmissionRequest): { namespace: string; name: string; pvc: KubeObject } {
  const pvc = req.oldObject ?? {};
  return { namespace: req.namespace || pvc.metadata?.namespace || '', name: objectName(req), pvc };
}

/** Whether `pod` really uses claim `name` of `pvc` (a generic ephemeral claim must be owned by the pod). */
function uses(pod: PodSummary, name: string, pvc: KubeObject): boolean {
  if (!pod.claims.includes(name)) return false;
  if (!pod.ephemeralClaims?.includes(name)) return true;
  const owners: KubeObject[] = Array.isArray(pvc.metadata?.ownerReferences) ? pvc.metadata.ownerReferences : [];
  // Without the PVC's metadata we cannot tell: count the pod (refusing too much beats too little).
  if (!pvc.metadata) return true;
  return owners.some((o) => o?.kind === 'Pod' && o.uid === pod.uid);
}

const TERMINAL = new Set(['Succeeded', 'Failed']);

export async function gatherPodsUsingClaim(req: AdmissionRequest, ctx: PolicyContext): Promise<PvcLookup> {
  const { namespace, name } = claimOf(req);
  const cluster = ctx.cluster;
  if (!cluster) return { source: 'unavailable', reason: 'no cluster configured' };
  const status = cluster.status();
  if (status.synced && !status.stale) return { source: 'cache', pods: cluster.podsUsingClaim(namespace, name) };
  try {
    const pods = await cluster.listPodsUsingClaimLive(namespace, name, ctx.lookup?.timeoutMs ?? 2000);
    return { source: 'live', pods };
  } catch (err) {
    const why = errorMessage(err);
    return { source: 'failed', reason: `${status.reason ?? 'cluster cache unavailable'}; live lookup failed: ${why}` };
  }
}

export function validatePvcDelete(req: AdmissionRequest, ctx: PolicyContext, lookup: PvcLookup | Error | undefined): Finding[] {
  const { namespace, name, pvc } = claimOf(req);
  const breakGlass = pvc.metadata?.annotations?.[BREAK_GLASS_ANNOTATION] === 'true';
  const terminating = !!pvc.metadata?.deletionTimestamp;
  const ref = `PVC ${namespace}/${name}`;
  // Under break glass nothing denies: a deny finding in enforce mode would deny.
  const blockSeverity = breakGlass ? 'warn' : 'deny';

  if (!lookup || lookup instanceof Error || !('pods' in lookup)) {
    const reason = !lookup ? 'no lookup was made' : lookup instanceof Error ? lookup.message : lookup.reason;
    // No cluster configured at all is a deployment choice (warn); a configured one that fails follows config.
    const denyOnFailure = !!lookup && !(lookup instanceof Error) && lookup.source === 'failed' && ctx.lookup?.onFailure === 'deny';
    const findings: Finding[] = [];
    if (breakGlass) findings.push(breakGlassFinding(ref, undefined));
    const outcome = denyOnFailure ? 'refused (cluster.onLookupFailure=deny)' : 'deletion not checked';
    findings.push({
      policy: NAME,
      severity: denyOnFailure && !breakGlass ? 'deny' : 'warn',
      message: fitWarning(`could not check which pods use ${ref}; ${outcome}`, `could not check which pods use this PVC; ${outcome}`),
      detail: reason,
      fix: denyOnFailure ? `retry when the API server is reachable, or annotate the PVC ${BREAK_GLASS_ANNOTATION}=true` : undefined,
    });
    return findings;
  }

  // By name: the cache holds pods in the order their watch events came, a live LIST in name order,
  // and the same claim must get the same words either way (and from every replica).
  const pods = lookup.pods.filter((p) => p.namespace === namespace && uses(p, name, pvc)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const findings: Finding[] = [];
  if (breakGlass) findings.push(breakGlassFinding(ref, pods));
  if (pods.length === 0) return findings;

  // As the pvc-protection controller counts them: scheduled and not finished (Pending on a node,
  // Running, Unknown) keep the claim; so do finished ones until their objects are deleted.
  const active = pods.filter((p) => p.nodeName && !TERMINAL.has(p.phase));
  const finished = pods.filter((p) => p.nodeName && TERMINAL.has(p.phase));
  const unscheduled = pods.filter((p) => !p.nodeName);

  if (terminating) {
    findings.push({
      policy: NAME,
      severity: 'warn',
      message: line([`${ref} is already Terminating; still used by `, 'this PVC is already Terminating; still used by '], pods.map(short)),
      detail: `A second delete changes nothing. Pods still using it: ${described(pods)}.`,
    });
    // kubectl waits again, as after the first delete.
    if (active.length || finished.length) findings.push({ policy: NAME, severity: 'warn', message: waitHint(active.length > 0, { dryRun: req.dryRun === true, terminating: true }) });
  } else {
    if (active.length) {
      findings.push({
        policy: NAME,
        severity: blockSeverity,
        message: line([`${ref} would hang in Terminating: in use by `, 'this PVC would hang in Terminating: in use by '], active.map(short)),
        detail:
          `${stillUse(active.length, 'scheduled pod')}: ${described(active)}. The claim stays Terminating ` +
          `behind kubernetes.io/pvc-protection until ${active.length === 1 ? 'it is gone, and its projected token' : 'they are gone, and their projected tokens'} may stop refreshing.`,
        fix: `delete or scale down those pods first, or annotate the PVC ${BREAK_GLASS_ANNOTATION}=true to override`,
      });
    }
    if (finished.length) {
      findings.push({
        policy: NAME,
        severity: 'warn',
        message: line([`${ref} stays Terminating until finished pods are deleted: `, 'this PVC stays Terminating until finished pods are deleted: '], finished.map(short)),
        detail: `Succeeded/Failed pods still count as users until the pod objects are deleted: ${described(finished)}.`,
      });
    }
    if (unscheduled.length) {
      findings.push({
        policy: NAME,
        severity: 'warn',
        message: line([`unscheduled pods can never start once ${ref} is Terminating: `, 'unscheduled pods can never start once this PVC is Terminating: '], unscheduled.map((p) => p.name)),
        detail: `kubelet does not start a pod whose claim is being deleted: ${described(unscheduled)}.`,
      });
    }
    // Allowed while scheduled pods keep the claim: `kubectl delete` then waits for a deletion the
    // pvc-protection finalizer holds, which looks like a hang. Say so, and how not to wait.
    const allowed = !(active.length && blockSeverity === 'deny' && ctx.mode === 'enforce');
    if (allowed && (active.length || finished.length)) findings.push({ policy: NAME, severity: 'warn', message: waitHint(active.length > 0, { dryRun: req.dryRun === true }) });
  }

  const tokenRisk = tokenRefreshFinding(ctx, ref, active);
  if (tokenRisk) findings.push(tokenRisk);
  return findings;
}

/**
 * The line after an allowed deletion (or a second one) of a claim in use: why kubectl seems to hang,
 * and the way out. A dry run deletes nothing and kubectl does not wait for it: the hint is then
 * about the real delete.
 */
export function waitHint(podsRunning: boolean, opts: { dryRun?: boolean; terminating?: boolean } = {}): string {
  const until = podsRunning ? 'those pods stop' : 'those pods are deleted';
  const stays = opts.dryRun && !opts.terminating ? 'would stay' : 'stays';
  const waits = opts.dryRun ? '; a real kubectl delete waits for that' : ', and kubectl delete waits for that';
  return `the PVC ${stays} Terminating until ${until}${waits}: pass --wait=false to return at once`;
}

/** Running pods with a projected token on kubelets affected by kubernetes#130442 (checked, not assumed). */
function tokenRefreshFinding(ctx: PolicyContext, ref: string, active: PodSummary[]): Finding | undefined {
  const byNode = new Map<string, { version: string; affected: boolean | undefined; pods: string[] }>();
  for (const p of active) {
    if (!p.hasProjectedToken) continue;
    let entry = byNode.get(p.nodeName);
    if (!entry) {
      const version = ctx.cluster?.node(p.nodeName)?.kubeletVersion ?? '';
      entry = { version, affected: kubeletAffectedBy130442(version), pods: [] };
      byNode.set(p.nodeName, entry);
    }
    entry.pods.push(p.name);
  }
  const affected = [...byNode].filter(([, e]) => e.affected === true);
  const unknown = [...byNode].filter(([, e]) => e.affected === undefined);
  if (!affected.length && !unknown.length) return undefined;
  const nodes = [...affected, ...unknown].map(([n, e]) => `${n} (${e.version || 'kubelet version unknown'})`);
  const pods = [...affected, ...unknown].flatMap(([, e]) => e.pods);
  return {
    policy: NAME,
    severity: 'warn',
    message: line(['projected tokens stop refreshing (kubelet bug kubernetes#130442) on ', 'projected tokens stop refreshing (kubelet bug kubernetes#130442) on '], nodes, 'node'),
    detail:
      `While ${ref} is Terminating, kubelets before 1.30.12, 1.31.8, 1.32.4 (fixed in 1.33.0) stop refreshing the projected ` +
      `volumes of pods using it; their service-account tokens expire. Nodes: ${nodes.join(', ')}. ` +
      `Pods: ${pods.slice(0, MAX_NAMED).join(', ')}` +
      `${pods.length > MAX_NAMED ? ` and ${pods.length - MAX_NAMED} more` : ''}` +
      (unknown.length ? `. Kubelet version unknown for ${unknown.map(([n]) => n).join(', ')}.` : '.'),
    fix: 'upgrade kubelets to a fixed version, or stop the pods before deleting the claim',
  };
}

/** A comma-separated list within `max` characters, whole entries only, then `,...` when some were left out. */
function wholeEntries(list: string, max: number): string {
  if (list.length <= max) return list;
  const head = list.slice(0, max - 4);
  return `${head.slice(0, Math.max(0, head.lastIndexOf(',')))},...`;
}

function breakGlassFinding(ref: string, pods: PodSummary[] | undefined): Finding {
  const users = pods === undefined ? 'unknown (lookup failed)' : pods.map((p) => `${p.namespace}/${p.name}`).join(',') || 'none';
  return {
    policy: NAME,
    severity: 'warn',
    message: fitWarning(
      ...[ref, 'this PVC'].map((what) =>
        pods === undefined
          ? `${what} deletion allowed by ${BREAK_GLASS_ANNOTATION}=true (break glass); pods using it not checked`
          : `${what} deletion allowed by ${BREAK_GLASS_ANNOTATION}=true (break glass); ${stillUse(pods.length, 'pod')}`,
      ),
    ),
    detail: `Pods using it: ${pods ? described(pods) || 'none' : 'unknown'}.`,
    audit: { 'break-glass': `${BREAK_GLASS_ANNOTATION}=true`, 'pods-in-use': wholeEntries(users, 1000) },
  };
}

export const pvcInUsePolicy: Policy<Record<string, never>, Record<string, never>, PvcLookup> = {
  name: NAME,
  description: 'Refuses or warns about deleting a PersistentVolumeClaim that pods still use (it would hang in Terminating).',
  match: [{ groups: [''], versions: ['v1'], resources: ['persistentvolumeclaims'], operations: ['DELETE'] }],
  defaultExemptions: {
    users: [
      // Namespace deletion: everything in it goes anyway.
      'system:serviceaccount:kube-system:namespace-controller',
      // Garbage collection of claims whose owner (e.g. the pod of a generic ephemeral volume) is gone.
      'system:serviceaccount:kube-system:generic-garbage-collector',
      // StatefulSet PVC retention policy (whenDeleted/whenScaled: Delete).
      'system:serviceaccount:kube-system:statefulset-controller',
    ],
  },
  needsCluster: true,
  gather: gatherPodsUsingClaim,
  validate: validatePvcDelete,
};
