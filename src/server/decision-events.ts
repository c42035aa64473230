// Which admission decisions leave a Kubernetes Event on the object involved, where admins look
// first (`kubectl describe`, `kubectl get events`): a denial, and a deletion allowed by break glass
// (the audit trail the `tokenguard.io/allow-delete` annotation promises). Pure: the recorder
// (cluster/events.ts) queues, aggregates and rate-limits them off the admission path.

import { denialText } from '../admission/engine.js';
import type { Decision } from '../admission/policy.js';
import { objectName, type AdmissionRequest } from '../admission/review.js';
import type { EventObject, ObjectEventSpec } from '../cluster/events.js';

/** Where Events go: the EventRecorder's `emit` (fire and forget). */
export interface EventSink {
  emit(spec: ObjectEventSpec): void;
}

/** What learns of admitted claim deletions: the cluster cache, for its gauges. */
export interface ClaimTracker {
  claimDeleted(namespace: string, claim: string): void;
}

/** Where the outcome of a validating review goes beyond the response (each absent without a cluster). */
export interface OutcomeSinks {
  events?: EventSink;
  claims?: ClaimTracker;
}

/** Record what a validating review did: its Events, and a claim deletion it admitted. Never for a dry run. */
export function recordOutcome(sinks: OutcomeSinks, req: AdmissionRequest, d: Decision): void {
  if (req.dryRun) return;
  if (sinks.events) for (const e of decisionEvents(req, d)) sinks.events.emit(e);
  const r = req.resource;
  if (sinks.claims && d.allowed && req.operation === 'DELETE' && r.group === '' && r.resource === 'persistentvolumeclaims' && !req.subResource) {
    sinks.claims.claimDeleted(req.namespace ?? '', objectName(req));
  }
}

/** Event reasons, as `kubectl get events` shows them in its REASON column. */
export const DENIED_REASON = 'PolicyViolation';
export const BREAK_GLASS_REASON = 'BreakGlassDeletion';

/** The object a request is about, as an Event's involvedObject. */
function regardingOf(req: AdmissionRequest): EventObject {
  const { group, version, kind } = req.kind;
  const object: { metadata?: { uid?: unknown } } | null | undefined = req.object ?? req.oldObject;
  const uid = object?.metadata?.uid;
  return {
    apiVersion: group ? `${group}/${version}` : version,
    kind,
    ...(req.namespace ? { namespace: req.namespace } : {}),
    name: objectName(req),
    ...(typeof uid === 'string' && uid ? { uid } : {}),
  };
}

/**
 * The Events for one validating decision: one per finding that denied it (policy and reason), and
 * one per break-glass override. None for a dry run (`kubectl --dry-run=server` changes nothing, so
 * nothing happened to record).
 */
export function decisionEvents(req: AdmissionRequest, d: Decision): ObjectEventSpec[] {
  if (req.dryRun) return [];
  const out: ObjectEventSpec[] = [];
  const who = req.userInfo.username || 'an unknown user';
  for (const f of d.findings) {
    if (!d.allowed && f.severity === 'deny' && f.mode === 'enforce') {
      out.push({ regarding: regardingOf(req), type: 'Warning', reason: DENIED_REASON, message: `${req.operation} by ${who} denied: ${denialText(f)}` });
    } else if (d.allowed && f.audit?.['break-glass']) {
      const detail = f.detail ? ` ${f.detail}` : '';
      out.push({ regarding: regardingOf(req), type: 'Warning', reason: BREAK_GLASS_REASON, message: `[${f.policy}] ${req.operation} by ${who}: ${f.message}.${detail}` });
    }
  }
  return out;
}
