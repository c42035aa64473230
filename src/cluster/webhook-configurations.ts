// The live uids of the cluster's Validating- and MutatingWebhookConfigurations, for caller
// authentication: a KEP-6060 token names the configuration it is bound to by name and uid, and
// only a token bound to the configuration as it exists now may pass (one deleted and re-created
// under the same name has a new uid). A list+watch of each resource keeps name -> uid in memory,
// so the check on every request is a map lookup. Started only with caller authentication on and a
// cluster configured.
//
// While a watch is not synced yet, or has been down longer than `cluster.staleAfterSeconds` (the
// API server unreachable), the uid is unknown: the caller then checks names only, and says so.

import type { Logger } from '../observability/log.js';
import type { ApiClient } from './client.js';
import { observeReflectorEvent, trackReflector } from './metrics.js';
import { Reflector } from './reflector.js';
import type { WebhookKind } from './token-verify.js';
import type { KubeObject } from '../k8s/object.js';

/**
 * The live uid of a configuration: a string; `null` when none of that name exists; or unknown,
 * with why (`{ unknown }`).
 */
export type LiveUid = string | null | { unknown: string };

export interface WebhookConfigurationView {
  liveUid(kind: WebhookKind, name: string): LiveUid;
}

export interface WebhookConfigurationsOptions {
  client: ApiClient;
  /** config `cluster.staleAfterSeconds`: a watch down longer than this is not trusted. */
  staleAfterSeconds: number;
  logger?: Logger;
  /** Tuning, for tests: backoff bounds and the watch timeout. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  watchTimeoutSeconds?: number;
  now?: () => number;
}

const PATHS: Record<WebhookKind, { resource: string; path: string }> = {
  validating: { resource: 'validatingwebhookconfigurations', path: '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations' },
  mutating: { resource: 'mutatingwebhookconfigurations', path: '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations' },
};

const uidOf = (o: KubeObject): string | undefined => (typeof o.metadata?.uid === 'string' ? o.metadata.uid : undefined);

export class WebhookConfigurations implements WebhookConfigurationView {
  private readonly reflectors: Record<WebhookKind, Reflector<string>>;
  private readonly untrack: (() => void)[] = [];
  private readonly now: () => number;
  private readonly staleMs: number;

  constructor(opts: WebhookConfigurationsOptions) {
    this.now = opts.now ?? Date.now;
    this.staleMs = opts.staleAfterSeconds * 1000;
    const make = (kind: WebhookKind) =>
      new Reflector<string>({
        ...PATHS[kind],
        client: opts.client,
        project: uidOf,
        initialBackoffMs: opts.initialBackoffMs,
        maxBackoffMs: opts.maxBackoffMs,
        watchTimeoutSeconds: opts.watchTimeoutSeconds,
        now: this.now,
        onEvent: (e) => observeReflectorEvent(e, opts.logger),
      });
    this.reflectors = { validating: make('validating'), mutating: make('mutating') };
  }

  start(): void {
    for (const r of Object.values(this.reflectors)) {
      this.untrack.push(trackReflector(r));
      r.start();
    }
  }

  stop(): void {
    for (const r of Object.values(this.reflectors)) r.stop();
    for (const u of this.untrack.splice(0)) u();
  }

  /** Resolves once both resources completed their first LIST. */
  async whenSynced(): Promise<void> {
    await Promise.all(Object.values(this.reflectors).map((r) => r.whenSynced()));
  }

  liveUid(kind: WebhookKind, name: string): LiveUid {
    const r = this.reflectors[kind];
    if (!r.synced) return { unknown: `${r.resource} not listed yet${r.lastError ? ` (${r.lastError})` : ''}` };
    if (r.downSince !== undefined) {
      const down = this.now() - r.downSince;
      if (down > this.staleMs) return { unknown: `the watch of ${r.resource} has been down for ${Math.round(down / 1000)} s` };
    }
    return r.items.get(name) ?? null;
  }
}
