// Leader election on a coordination.k8s.io/v1 Lease, the way client-go's leaderelection package
// does it (@kubernetes/client-node 1.4 ships none): one holder at a time, every write guarded by
// the Lease's resourceVersion (a replace that lost a race gets 409 Conflict and changes nothing).
//
// - A candidate reads the Lease every `retryPeriodSeconds`. It takes a Lease that is free (no
//   holder) or expired: not renewed for `leaseDurationSeconds` as measured on the candidate's own
//   clock since it last saw the record change (never by comparing timestamps written by another
//   machine's clock), and creates it when it does not exist.
// - The holder renews every `retryPeriodSeconds`; when it cannot renew for `renewDeadlineSeconds`
//   (less than the lease duration) it steps down before anyone else may take over.
// - On stop, the holder releases the Lease (no holder, duration 1 s): the next takes over at once
//   instead of after a lease duration.

import { errorMessage } from '../observability/errors.js';
import type { Logger } from '../observability/log.js';
import { ApiError, type ApiClient } from './client.js';

/** The fields of a coordination.k8s.io/v1 Lease this reads and writes. */
interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
  spec?: { holderIdentity?: string; leaseDurationSeconds?: number; acquireTime?: string; renewTime?: string; leaseTransitions?: number };
}

export interface LeaderElectionOptions {
  /** The Lease is read and written as plain JSON through tokenguard's own client. */
  client: Pick<ApiClient, 'getJson' | 'writeJson'>;
  namespace: string;
  name: string;
  /** This candidate: the pod's name. */
  identity: string;
  leaseDurationSeconds?: number;
  renewDeadlineSeconds?: number;
  retryPeriodSeconds?: number;
  logger: Logger;
  /** Called when this candidate becomes the leader, and when it stops being it. */
  onStartedLeading(): void;
  onStoppedLeading(): void;
  now?: () => number;
}

/** A Lease's MicroTime: RFC 3339 with microseconds. */
function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

const status = (err: unknown): number | undefined => (err instanceof ApiError ? err.statusCode : undefined);

export class LeaderElector {
  private readonly path: string;
  private readonly now: () => number;
  private readonly leaseMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryMs: number;
  private timer?: NodeJS.Timeout;
  private stopped = true;
  private leading = false;
  /** The last record seen (its resourceVersion and holder), and when, on this clock. */
  private observed?: { resourceVersion: string; holder: string; at: number };
  private lastRenewed = 0;

  constructor(private readonly opts: LeaderElectionOptions) {
    this.path = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(opts.namespace)}/leases`;
    this.now = opts.now ?? Date.now;
    this.leaseMs = (opts.leaseDurationSeconds ?? 15) * 1000;
    this.renewDeadlineMs = (opts.renewDeadlineSeconds ?? 10) * 1000;
    this.retryMs = (opts.retryPeriodSeconds ?? 2) * 1000;
    if (!(this.renewDeadlineMs < this.leaseMs && this.retryMs < this.renewDeadlineMs)) {
      throw new Error('leader election: need retryPeriod < renewDeadline < leaseDuration');
    }
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /** The holder of the Lease as last read (undefined: not read yet, or nobody holds it). */
  get holder(): string | undefined {
    return this.observed?.holder || undefined;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.loop();
  }

  /** Stop campaigning; a leader releases the Lease first so another takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (!this.leading) return;
    this.setLeading(false);
    try {
      const lease = await this.read();
      if (lease.spec?.holderIdentity !== this.opts.identity) return;
      lease.spec = { ...lease.spec, holderIdentity: undefined, leaseDurationSeconds: 1, renewTime: microTime(this.now()) };
      await this.replace(lease);
      this.opts.logger.info('leader election: released the Lease', { lease: this.leaseName });
    } catch (err) {
      this.opts.logger.warn('leader election: could not release the Lease', { lease: this.leaseName, error: errorMessage(err) });
    }
  }

  private read(): Promise<Lease> {
    return this.opts.client.getJson<Lease>(`${this.path}/${encodeURIComponent(this.opts.name)}`, { timeoutMs: this.renewDeadlineMs / 2 });
  }

  /** PUT with the resourceVersion read: a write in between makes this a 409 Conflict. */
  private async replace(lease: Lease): Promise<void> {
    await this.opts.client.writeJson('PUT', `${this.path}/${encodeURIComponent(this.opts.name)}`, lease, { timeoutMs: this.renewDeadlineMs / 2 });
  }

  private get leaseName(): string {
    return `${this.opts.namespace}/${this.opts.name}`;
  }

  private async loop(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.tryAcquireOrRenew();
    } catch (err) {
      this.opts.logger.debug('leader election: attempt failed', { lease: this.leaseName, error: errorMessage(err) });
    }
    if (this.leading && this.now() - this.lastRenewed > this.renewDeadlineMs) {
      this.opts.logger.warn('leader election: could not renew the Lease in time; stepping down', { lease: this.leaseName });
      this.setLeading(false);
    }
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.loop(), this.retryMs);
    this.timer.unref();
  }

  private async tryAcquireOrRenew(): Promise<void> {
    const now = this.now();
    const { namespace, name, identity } = this.opts;
    let lease: Lease;
    try {
      lease = await this.read();
    } catch (err) {
      if (status(err) !== 404) throw err;
      const spec = { holderIdentity: identity, leaseDurationSeconds: this.leaseMs / 1000, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: 0 };
      try {
        const body: Lease = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace }, spec };
        await this.opts.client.writeJson('POST', this.path, body, { timeoutMs: this.renewDeadlineMs / 2 });
      } catch (createErr) {
        if (status(createErr) === 409) return; // another candidate created it first
        throw createErr;
      }
      return this.renewed(now);
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const rv = lease.metadata?.resourceVersion ?? '';
    if (this.observed?.resourceVersion !== rv) this.observed = { resourceVersion: rv, holder, at: now };
    const duration = (spec.leaseDurationSeconds ?? this.leaseMs / 1000) * 1000;
    const expired = !holder || now - this.observed.at > duration;
    if (holder !== identity && !expired) {
      if (this.leading) this.setLeading(false);
      return;
    }
    const taking = holder !== identity;
    lease.spec = {
      ...spec,
      holderIdentity: identity,
      leaseDurationSeconds: this.leaseMs / 1000,
      renewTime: microTime(now),
      ...(taking ? { acquireTime: microTime(now), leaseTransitions: (spec.leaseTransitions ?? 0) + 1 } : {}),
    };
    try {
      await this.replace(lease);
    } catch (err) {
      if (status(err) === 409) return;
      throw err;
    }
    if (taking) this.opts.logger.info('leader election: acquired the Lease', { lease: this.leaseName, previousHolder: holder || undefined });
    this.renewed(now);
  }

  private renewed(at: number): void {
    this.lastRenewed = at;
    if (!this.leading) this.setLeading(true);
  }

  private setLeading(leading: boolean): void {
    this.leading = leading;
    try {
      if (leading) this.opts.onStartedLeading();
      else this.opts.onStoppedLeading();
    } catch (err) {
      this.opts.logger.error('leader election: callback failed', { error: errorMessage(err) });
    }
  }
}
