// Kubernetes Events (core/v1), the one recorder tokenguard has:
//
// - `record`: tokenguard's own findings (issuer and key-set changes, a failed token self-test, a
//   mirror pod that drops a trusted issuer), on the tokenguard Deployment in tokenguard's
//   namespace, with the object they are about as `related`. `kubectl describe deployment
//   tokenguard` shows them. The same Event repeated within `dedupeSeconds` is recorded once.
// - `emit`: admission outcomes (a denial, a break-glass deletion) and the token observer's overdue
//   pods, on the object involved, in its own namespace, where `kubectl describe pvc|pod` and
//   `kubectl get events -n <ns>` show them. Called on the admission path, so it only queues: writes happen later, one object's Events aggregated
//   as client-go's EventCorrelator does (the same object, type, reason and message is one Event
//   whose `count` and `lastTimestamp` are patched), each object's writes limited by a token
//   bucket, and the queue bounded (what does not fit is counted and dropped). A loop of retried
//   denials is one Event with a rising count, a few writes a minute at most, never one per try.
//
// Recording never throws and never blocks a caller: a failure is logged.

import { hostname } from 'node:os';
import { CoreV1Api, type CoreV1Event, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../observability/log.js';
import { eventsRecorded } from './metrics.js';

/** The object an Event is about (core/v1 ObjectReference). */
export interface EventObject {
  kind: string;
  namespace?: string;
  name: string;
  uid?: string;
  apiVersion?: string;
}

export interface EventRecorderOptions {
  kc: KubeConfig;
  logger: Logger;
  /** tokenguard's namespace (env POD_NAMESPACE, default `tokenguard`). */
  namespace?: string;
  /** The Deployment the Events are attached to (env TOKENGUARD_DEPLOYMENT, default `tokenguard`). */
  deployment?: string;
  dedupeSeconds?: number;
  clock?: () => Date;
  /** `emit`: writes one object's bucket allows at once (default 5) ... */
  burst?: number;
  /** ... and how often it gains another (default 10 s). */
  refillMs?: number;
}

export interface EventSpec {
  type: 'Normal' | 'Warning';
  /** UpperCamelCase, e.g. `ServiceAccountIssuerChanged`. */
  reason: string;
  message: string;
  related?: EventObject;
}

/** An Event `emit` queues: about `regarding` (the PVC, the workload), recorded in its namespace. */
export interface ObjectEventSpec extends Omit<EventSpec, 'related'> {
  regarding: EventObject;
}

/** One aggregated Event: what was written of it, and what is still to write. */
interface Series {
  spec: ObjectEventSpec;
  bucket: string;
  /** The Event's name once created (then only patched). */
  name?: string;
  count: number;
  written: number;
  first: Date;
  last: Date;
  busy: boolean;
}

/** Per-object token buckets of `emit` (client-go's spam filter does the same per source and object). */
interface Bucket {
  tokens: number;
  at: number;
}

/** The API server rejects longer Event messages on the events.k8s.io side; keep the two the same. */
const MAX_MESSAGE = 1024;
const MAX_REMEMBERED = 500;
/** `emit`: aggregated Events remembered (client-go's correlator keeps 4096), and objects with writes waiting. */
const MAX_SERIES = 4096;
const MAX_QUEUED = 1000;
/** `emit`: writes in flight at once. */
const MAX_WRITES = 4;

export class EventRecorder {
  readonly namespace: string;
  readonly deployment: string;
  private readonly api: CoreV1Api;
  private readonly recent = new Map<string, number>();
  private readonly clock: () => Date;
  private readonly dedupeMs: number;
  private readonly instance = process.env.POD_NAME || hostname();
  private readonly series = new Map<string, Series>();
  private readonly queued = new Set<Series>();
  private readonly buckets = new Map<string, Bucket>();
  private writing = 0;
  private wake?: NodeJS.Timeout;
  /** Events `emit` dropped because the queue was full. */
  dropped = 0;
  /** `emit`'s failed writes: logged once a minute with how many, not each (a missing RBAC rule fails them all). */
  private failures = { logged: 0, since: 0 };

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

  /**
   * Queue an Event about `spec.regarding` and return at once (the admission path calls this). The
   * same object, type, reason and message within the remembered series is one Event: its count grows.
   */
  emit(spec: ObjectEventSpec): void {
    const r = spec.regarding;
    const bucket = `${r.kind}\u0000${r.namespace ?? ''}\u0000${r.name}\u0000${r.uid ?? ''}`;
    const key = `${bucket}\u0000${spec.type}\u0000${spec.reason}\u0000${spec.message}`;
    const now = this.clock();
    let s = this.series.get(key);
    if (s) {
      this.series.delete(key); // most recently used last
    } else {
      s = { spec, bucket, count: 0, written: 0, first: now, last: now, busy: false };
    }
    this.series.set(key, s);
    if (this.series.size > MAX_SERIES) this.series.delete(this.series.keys().next().value!);
    if (!this.queued.has(s) && this.queued.size >= MAX_QUEUED) {
      this.dropped++;
      eventsRecorded.inc({ outcome: 'dropped' });
      return;
    }
    s.count++;
    s.last = now;
    this.queued.add(s);
    this.pump();
  }

  /** Resolves once every queued Event is written (or failed): for tests and shutdown. */
  async flushed(): Promise<void> {
    while (this.queued.size > 0 || this.writing > 0) await new Promise((r) => setTimeout(r, 5));
  }

  /** Start the writes the buckets allow; wake up again when the next token is due. */
  private pump(): void {
    const refillMs = this.opts.refillMs ?? 10_000;
    let nextToken = Infinity;
    for (const s of this.queued) {
      if (this.writing >= MAX_WRITES) return;
      if (s.busy) continue;
      const wait = this.take(s.bucket, refillMs);
      if (wait > 0) {
        nextToken = Math.min(nextToken, wait);
        continue;
      }
      this.queued.delete(s);
      void this.write(s);
    }
    if (nextToken !== Infinity && !this.wake) {
      this.wake = setTimeout(() => {
        this.wake = undefined;
        this.pump();
      }, nextToken);
      this.wake.unref();
    }
  }

  /** Take a token from the object's bucket: 0 when taken, else the milliseconds until one is due. */
  private take(key: string, refillMs: number): number {
    const burst = this.opts.burst ?? 5;
    const now = Date.now();
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: burst, at: now };
      if (this.buckets.size >= MAX_SERIES) this.buckets.delete(this.buckets.keys().next().value!);
      this.buckets.set(key, b);
    }
    const gained = Math.floor((now - b.at) / refillMs);
    if (gained > 0) {
      b.tokens = Math.min(burst, b.tokens + gained);
      b.at = b.tokens === burst ? now : b.at + gained * refillMs;
    }
    if (b.tokens === 0) return b.at + refillMs - now;
    b.tokens--;
    return 0;
  }

  private async write(s: Series): Promise<void> {
    s.busy = true;
    this.writing++;
    const count = s.count;
    const namespace = s.spec.regarding.namespace || 'default';
    try {
      if (s.name) {
        try {
          await this.api.patchNamespacedEvent({
            name: s.name,
            namespace,
            body: [
              { op: 'replace', path: '/count', value: count },
              { op: 'replace', path: '/lastTimestamp', value: s.last.toISOString() },
            ],
          });
        } catch (err) {
          if ((err as { code?: number }).code !== 404) throw err;
          s.name = undefined; // expired (the API server keeps Events an hour): a new one
        }
      }
      if (!s.name) {
        const created = await this.api.createNamespacedEvent({ namespace, body: this.objectEvent(s, namespace, count) });
        s.name = created.metadata?.name;
      }
      s.written = count;
      eventsRecorded.inc({ outcome: 'written' });
    } catch (err) {
      eventsRecorded.inc({ outcome: 'failed' });
      this.failures.since++;
      const now = Date.now();
      if (now - this.failures.logged >= 60_000) {
        const failed = this.failures.since;
        this.failures = { logged: now, since: 0 };
        this.opts.logger.warn('could not record Event', { reason: s.spec.reason, namespace, error: describeApiError(err), failedSinceLastLine: failed });
      }
      s.count = s.written; // not recorded: the next occurrence tries again
    } finally {
      s.busy = false;
      this.writing--;
      if (s.count > s.written) this.queued.add(s);
      this.pump();
    }
  }

  private objectEvent(s: Series, namespace: string, count: number): CoreV1Event {
    const { regarding, type, reason, message } = s.spec;
    return {
      // generateName: at most 253 characters with the 5 the API server appends.
      metadata: { generateName: `${(regarding.name || regarding.kind.toLowerCase()).slice(0, 200)}.`, namespace },
      involvedObject: { apiVersion: regarding.apiVersion ?? 'v1', ...regarding, namespace: regarding.namespace },
      reason,
      message: message.length > MAX_MESSAGE ? message.slice(0, MAX_MESSAGE - 1) + '…' : message,
      type,
      source: { component: 'tokenguard' },
      reportingComponent: 'tokenguard',
      reportingInstance: this.instance,
      firstTimestamp: s.first,
      lastTimestamp: s.last,
      count,
    };
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
