// What the token refresh observer answers when asked (`GET /observer` on the serving port): the
// state of its last report, as JSON. `tokenguard audit` reads it through the API server's service
// proxy (or a direct address) and lists the overdue pods; the same fields as the Event, the log line
// and the policy reports, never a token (the observer never has one).
//
// The wire format is declared once here, with the reader that checks an answer before audit trusts
// it (a tokenguard of another version, or something else on that port, is named, not misread).

import type { ObserverConfig } from '../config/schema.js';

/** The route, on the serving port (the Service `tokenguard-observer` already targets it). */
export const OBSERVER_STATE_PATH = '/observer';

/** A likely cause of an overdue refresh, with the upstream issue when there is one. */
export interface ObservedCause {
  code: string;
  text: string;
  issue?: string;
}

/** One overdue token of a running pod. */
export interface ObservedOverduePod {
  namespace: string;
  pod: string;
  uid: string;
  node: string;
  kubeletVersion: string | null;
  /** The token's audiences (empty: the API server's own) and requested lifetime; null when this observer never saw a TokenRequest of the pod. */
  audiences: string[] | null;
  requestedSeconds: number | null;
  /** When its last TokenRequest was seen (ISO 8601), null: never since observation began. */
  lastRefresh: string | null;
  /** When the refresh was due at the latest, margin included. */
  due: string;
  lateSeconds: number;
  likelyCauses: ObservedCause[];
  /** One line, as the Event `TokenRefreshOverdue` and the log say it. */
  message: string;
}

export interface ObserverState {
  /** The replica that answered (its pod name, else its host name). */
  replica: string;
  /** Whether this replica is the observer now. */
  observing: boolean;
  /** Why it does not observe (observing false). */
  reason?: string;
  /** When this replica became the observer (ISO 8601). */
  since: string | null;
  /** When the first TokenRequest reached it: proof the webhook routes here. Nothing is judged before. */
  observingSince: string | null;
  /** When its last report ran; the overdue pods below are that report's. */
  reportedAt: string | null;
  reportSeconds: number;
  marginSeconds: number;
  trackedPods: number;
  trackedTokens: number;
  overdue: ObservedOverduePod[];
}

/** What `GET /observer` answers on a replica that runs no observer (`observer.enabled` false). */
export function observerOffState(replica: string, config: Pick<ObserverConfig, 'reportSeconds' | 'marginSeconds'>): ObserverState {
  return {
    replica,
    observing: false,
    reason: 'the token refresh observer is off on this replica (observer.enabled: false; manifests/components/token-observer turns it on)',
    since: null,
    observingSince: null,
    reportedAt: null,
    reportSeconds: config.reportSeconds,
    marginSeconds: config.marginSeconds,
    trackedPods: 0,
    trackedTokens: 0,
    overdue: [],
  };
}

/** Read an answer of `GET /observer`, or throw naming the first field that is not as declared. */
export function parseObserverState(body: unknown): ObserverState {
  const o = record(body, 'the answer');
  const overdue = list(o.overdue, 'overdue').map((item, i) => {
    const p = record(item, `overdue[${i}]`);
    const at = (k: string) => `overdue[${i}].${k}`;
    return {
      namespace: str(p.namespace, at('namespace')),
      pod: str(p.pod, at('pod')),
      uid: str(p.uid, at('uid')),
      node: str(p.node, at('node')),
      kubeletVersion: nullable(p.kubeletVersion, at('kubeletVersion'), str),
      audiences: nullable(p.audiences, at('audiences'), (v, w) => list(v, w).map((a, j) => str(a, `${w}[${j}]`))),
      requestedSeconds: nullable(p.requestedSeconds, at('requestedSeconds'), num),
      lastRefresh: nullable(p.lastRefresh, at('lastRefresh'), str),
      due: str(p.due, at('due')),
      lateSeconds: num(p.lateSeconds, at('lateSeconds')),
      likelyCauses: list(p.likelyCauses, at('likelyCauses')).map((c, j) => {
        const cause = record(c, `${at('likelyCauses')}[${j}]`);
        const w = `${at('likelyCauses')}[${j}]`;
        return { code: str(cause.code, `${w}.code`), text: str(cause.text, `${w}.text`), ...(cause.issue === undefined ? {} : { issue: str(cause.issue, `${w}.issue`) }) };
      }),
      message: str(p.message, at('message')),
    };
  });
  return {
    replica: str(o.replica, 'replica'),
    observing: bool(o.observing, 'observing'),
    ...(o.reason === undefined ? {} : { reason: str(o.reason, 'reason') }),
    since: nullable(o.since, 'since', str),
    observingSince: nullable(o.observingSince, 'observingSince', str),
    reportedAt: nullable(o.reportedAt, 'reportedAt', str),
    reportSeconds: num(o.reportSeconds, 'reportSeconds'),
    marginSeconds: num(o.marginSeconds, 'marginSeconds'),
    trackedPods: num(o.trackedPods, 'trackedPods'),
    trackedTokens: num(o.trackedTokens, 'trackedTokens'),
    overdue,
  };
}

function fail(where: string, want: string, got: unknown): never {
  throw new Error(`${where} is ${got === null ? 'null' : Array.isArray(got) ? 'an array' : typeof got}, not ${want}`);
}
function record(v: unknown, where: string): Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : fail(where, 'an object', v);
}
function list(v: unknown, where: string): unknown[] {
  return Array.isArray(v) ? v : fail(where, 'a list', v);
}
function str(v: unknown, where: string): string {
  return typeof v === 'string' ? v : fail(where, 'a string', v);
}
function num(v: unknown, where: string): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : fail(where, 'a number', v);
}
function bool(v: unknown, where: string): boolean {
  return typeof v === 'boolean' ? v : fail(where, 'true or false', v);
}
function nullable<T>(v: unknown, where: string, read: (v: unknown, where: string) => T): T | null {
  return v === null ? null : read(v, where);
}
