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
