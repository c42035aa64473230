// Issuer discovery: what the API server serves at /.well-known/openid-configuration and the key
// set at /openid/v1/jwks, read through the cluster client (its TLS and credentials; every
// ServiceAccount may read both through `system:service-account-issuer-discovery`), re-read on an
// interval and on demand. A change of the served issuer or of the key set is logged, counted and
// recorded as an Event: unless the old issuer is kept, its tokens fail from that moment on (the
// kOps 1.26 outage, kops#16488).
//
// The key set is read from the API server's own /openid/v1/jwks, not from the document's
// `jwks_uri`: that is the externally published address (often the API server's public name, or a
// bucket for IRSA), frequently unreachable from inside the cluster, while the API server always
// serves the same keys at this path.

import { Counter } from 'prom-client';
import type { JSONWebKeySet } from 'jose';
import type { Logger } from '../observability/log.js';
import { registry } from '../observability/metrics.js';
import type { ApiClient } from './client.js';
import type { EventRecorder } from './events.js';
import { parseKeySet } from './token-verify.js';
import type { IssuerRisk, IssuerView } from './view.js';
import { Periodic } from './periodic.js';
import { errorMessage } from '../observability/errors.js';

export const DISCOVERY_PATH = '/.well-known/openid-configuration';
export const JWKS_PATH = '/openid/v1/jwks';
/**
 * The key set's media type first: kube-apiserver answers 406 Not Acceptable to a plain
 * `application/json` (it has only `application/jwk-set+json`); other servers of the same path
 * may still label it `application/json`.
 */
export const JWKS_ACCEPT = 'application/jwk-set+json, application/json;q=0.9';

export interface Discovery {
  issuer: string;
  /** `jwks_uri` of the discovery document (the published address). */
  jwksUri?: string;
  keys: JSONWebKeySet;
}

/** Read the served discovery document and the API server's own key set; throws naming the part that failed. */
export async function readDiscovery(client: Pick<ApiClient, 'getJson'>, timeoutMs: number): Promise<Discovery> {
  const doc = await client.getJson(DISCOVERY_PATH, { timeoutMs });
  if (typeof doc?.issuer !== 'string' || doc.issuer === '') throw new Error(`${DISCOVERY_PATH} has no "issuer"`);
  let keys: JSONWebKeySet;
  try {
    keys = parseKeySet(await client.getJson(JWKS_PATH, { timeoutMs, accept: JWKS_ACCEPT }));
  } catch (err) {
    throw new Error(`${JWKS_PATH}: ${errorMessage(err)}`, { cause: err });
  }
  return { issuer: doc.issuer, jwksUri: typeof doc.jwks_uri === 'string' ? doc.jwks_uri : undefined, keys };
}

export const issuerChanges = new Counter({
  name: 'tokenguard_issuer_changes_total',
  help: 'Changes of the served service-account issuer seen by discovery (the first read is not a change).',
  registers: [registry],
});

export const jwksChanges = new Counter({
  name: 'tokenguard_jwks_changes_total',
  help: 'Changes of the service-account key set (/openid/v1/jwks) seen by discovery.',
  registers: [registry],
});

export const discoveryFailures = new Counter({
  name: 'tokenguard_issuer_discovery_failures_total',
  help: 'Failed reads of the OIDC discovery document or the key set.',
  registers: [registry],
});

export interface IssuerMonitorOptions {
  client: Pick<ApiClient, 'getJson'>;
  logger: Logger;
  events?: EventRecorder;
  /** config `cluster.issuerRefreshSeconds`. */
  refreshSeconds: number;
  /** Bound on each read (default 5 s). */
  timeoutMs?: number;
  clock?: () => Date;
}

/** A stable fingerprint of a key set: its keys, sorted, as canonical JSON. */
function fingerprint(keys: JSONWebKeySet): string {
  const canon = (k: object) => JSON.stringify(Object.fromEntries(Object.entries(k).sort(([a], [b]) => a.localeCompare(b))));
  return keys.keys.map(canon).sort().join('\n');
}

const keyIds = (keys: JSONWebKeySet) => keys.keys.map((k) => k.kid ?? '(no kid)');

/** Reads discovery now and every `refreshSeconds` (start, stop) and on demand (refresh). */
export class IssuerMonitor extends Periodic implements IssuerView {
  servedIssuer?: string;
  fetchedAt?: Date;
  error?: string;
  /** `jwks_uri` of the discovery document (the published address). */
  jwksUri?: string;
  keys?: JSONWebKeySet;
  private keysFingerprint?: string;
  private inflight?: Promise<void>;
  private readonly clock: () => Date;
  private readonly keyListeners: ((removedKeyIds: string[]) => void)[] = [];

  constructor(private readonly opts: IssuerMonitorOptions) {
    super(opts.refreshSeconds);
    this.clock = opts.clock ?? (() => new Date());
  }

  protected tick(): Promise<unknown> {
    return this.refresh();
  }

  /** Read discovery and keys now; concurrent callers share one read. Never rejects. */
  refresh(): Promise<void> {
    this.inflight ??= this.read().finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  /** Told of every change of the key set, with the key ids no longer published. */
  onKeysChanged(listener: (removedKeyIds: string[]) => void): void {
    this.keyListeners.push(listener);
  }

  reportIssuerRisk(risk: IssuerRisk): void {
    void this.opts.events?.record({ type: 'Warning', reason: risk.reason, message: risk.message, related: risk.object });
  }

  private async read(): Promise<void> {
    let discovery: Discovery;
    try {
      discovery = await readDiscovery(this.opts.client, this.opts.timeoutMs ?? 5000);
    } catch (err) {
      discoveryFailures.inc();
      const message = errorMessage(err);
      // Keep the last good values: a failed read says nothing about what the API server serves.
      if (this.error !== message) this.opts.logger.warn('issuer discovery failed', { error: message, lastIssuer: this.servedIssuer });
      this.error = message;
      return;
    }
    const { issuer, jwksUri, keys } = discovery;
    const print = fingerprint(keys);
    const previousIssuer = this.servedIssuer;
    const previousKeys = this.keys;
    const keysChanged = this.keysFingerprint !== undefined && this.keysFingerprint !== print;
    this.servedIssuer = issuer;
    this.jwksUri = jwksUri;
    this.keys = keys;
    this.keysFingerprint = print;
    this.fetchedAt = this.clock();
    if (this.error) this.opts.logger.info('issuer discovery recovered', { issuer });
    this.error = undefined;

    if (previousIssuer === undefined) {
      this.opts.logger.info('service-account issuer discovered', { issuer, jwksUri, keyIds: keyIds(keys) });
      return;
    }
    if (previousIssuer !== issuer) {
      issuerChanges.inc();
      const message =
        `The served service-account issuer changed from ${previousIssuer} to ${issuer}. Tokens signed as ${previousIssuer} ` +
        `keep working only while every kube-apiserver still lists it as an additional --service-account-issuer.`;
      this.opts.logger.warn('served service-account issuer changed', { from: previousIssuer, to: issuer });
      void this.opts.events?.record({ type: 'Warning', reason: 'ServiceAccountIssuerChanged', message });
    }
    if (keysChanged) {
      jwksChanges.inc();
      const before = keyIds(previousKeys!);
      const after = keyIds(keys);
      const removed = before.filter((k) => !after.includes(k));
      const message =
        `The service-account key set changed: key ids [${before.join(', ')}] -> [${after.join(', ')}].` +
        (removed.length ? ` Tokens signed with ${removed.join(', ')} no longer verify.` : '');
      this.opts.logger.warn('service-account key set changed', { before, after });
      void this.opts.events?.record({ type: removed.length ? 'Warning' : 'Normal', reason: 'ServiceAccountKeysChanged', message });
      for (const listener of this.keyListeners) listener(removed);
    }
  }
}
