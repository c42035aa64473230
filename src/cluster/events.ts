// Kubernetes Events (core/v1) about tokenguard's own findings: issuer and key-set changes, a failed
// token self-test, a mirror pod that drops a trusted issuer. They are recorded on the tokenguard
// Deployment in tokenguard's namespace (so one Role in that namespace is all the RBAC they need),
// with the object they are about as `related`. `kubectl describe deployment tokenguard` and
// `kubectl get events -n tokenguard` show them.
//
// Recording never throws and never blocks a caller: a failure is logged. The same Event repeated
// within `dedupeSeconds` is recorded once (kubelet-style spam protection).

import { hostname } from 'node:os';
import { CoreV1Api, type CoreV1Event, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../observability/log.js';

export interface EventRecorderOptions {
  kc: KubeConfig;
  logger: Logger;
  /** tokenguard's namespace (env POD_NAMESPACE, default `tokenguard`). */
  namespace?: string;
  /** The Deployment the Events are attached to (env TOKENGUARD_DEPLOYMENT, default `tokenguard`). */
  deployment?: string;
  dedupeSeconds?: number;
  clock?: () => Date;
}

export interface EventSpec {
  type: 'Normal' | 'Warning';
  /** UpperCamelCase, e.g. `ServiceAccountIssuerChanged`. */
  reason: string;
  message: string;
  related?: { kind: string; namespace?: string; name: string; uid?: string; apiVersion?: string };
}

/** The API server rejects longer Event messages on the events.k8s.io side; keep the two the same. */
const MAX_MESSAGE = 1024;
const MAX_REMEMBERED = 500;

export class EventRecorder {
  readonly namespace: string;
  readonly deployment: string;
  private readonly api: CoreV1Api;
  private readonly recent = new Map<string, number>();
  private readonly clock: () => Date;
  private readonly dedupeMs: number;
  private readonly instance = process.env.POD_NAME || hostname();

  constructor(private readonly opts: EventRecorderOptions) {
    this.api = opts.kc.makeApiClient(CoreV1Api);
    this.namespace = opts.namespace ?? (process.env.POD_NAMESPACE || 'tokenguard');
    this.deployment = opts.deployment ?? (process.env.TOKENGUARD_DEPLOYMENT || 'tokenguard');
    this.clock = opts.clock ?? (() => new Date());
    this.dedupeMs = (opts.dedupeSeconds ?? 600) * 1000;
  }

  /** Create the Event; resolves to whether it was created (false: deduplicated or failed, logged). */
  async record(spec: EventSpec): Promise<boolean> {
    const now = this.clock();
    const key = `${spec.reason}\u0000${spec.message}\u0000${spec.related?.namespace}/${spec.related?.name}`;
    const last = this.recent.get(key);
    if (last !== undefined && now.getTime() - last < this.dedupeMs) return false;
    this.remember(key, now.getTime());
    const message = spec.message.length > MAX_MESSAGE ? spec.message.slice(0, MAX_MESSAGE - 1) + '…' : spec.message;
    const body: CoreV1Event = {
      metadata: { generateName: `${this.deployment}.`, namespace: this.namespace },
      involvedObject: { apiVersion: 'apps/v1', kind: 'Deployment', name: this.deployment, namespace: this.namespace },
      ...(spec.related ? { related: { apiVersion: spec.related.apiVersion ?? 'v1', ...spec.related } } : {}),
      reason: spec.reason,
      message,
      type: spec.type,
      source: { component: 'tokenguard' },
      reportingComponent: 'tokenguard',
      reportingInstance: this.instance,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    try {
      await this.api.createNamespacedEvent({ namespace: this.namespace, body });
      return true;
    } catch (err) {
      this.recent.delete(key); // not recorded: let the next occurrence try again
      this.opts.logger.warn('could not record Event', {
        reason: spec.reason,
        namespace: this.namespace,
        error: describeApiError(err),
      });
      return false;
    }
  }

  private remember(key: string, at: number): void {
    this.recent.delete(key);
    this.recent.set(key, at);
    // Maps iterate in insertion order: the first entries are the oldest.
    while (this.recent.size > MAX_REMEMBERED) this.recent.delete(this.recent.keys().next().value!);
  }
}

/** client-node's ApiException carries the HTTP code and the Status body; make that one line. */
export function describeApiError(err: unknown): string {
  const e = err as { code?: number; body?: unknown; message?: string };
  if (typeof e?.code === 'number') {
    let message: string | undefined;
    try {
      const body: unknown = typeof e.body === 'string' ? JSON.parse(e.body) : e.body;
      message = (body as { message?: string })?.message;
    } catch {
      message = typeof e.body === 'string' ? e.body.slice(0, 200) : undefined;
    }
    return `HTTP ${e.code}${message ? `: ${message}` : ''}`;
  }
  return e?.message ?? String(err);
}
