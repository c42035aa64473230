// Self-managed TLS, the loop: every `checkSeconds`, read the certificate Secret and tokenguard's own
// webhook configurations, ask the state machine (k8s/self-managed-tls.ts) what to do, write it,
// serve what the Secret holds, and put its CA bundle into the webhook configurations' caBundle.
//
// Many replicas, one truth, and no Lease: every replica runs the same loop, and the API server's
// optimistic concurrency picks the winner of each write. A Secret is created only if absent
// (a loser gets 409 AlreadyExists), updated only at the resourceVersion it was read at (a loser
// gets 409 Conflict); a loser reads again and adopts what won. Each step is decided from what the
// Secret says, never from a replica's memory or disk, so which replica acts does not matter, and a
// Lease (another object, another write to renew, a wait for its expiry when the holder dies) would
// only add a way to stall. The webhook configurations carry the generation of the Secret they were
// injected from, so a replica that read an older Secret never writes an older bundle back.

import type { ApiClient } from './client.js';
import { Counter } from 'prom-client';
import {
  advance,
  ANNOTATIONS,
  decide,
  expiries,
  freshState,
  readCertificateSecret,
  recreated,
  secretContent,
  servingNames,
  type Action,
  type CertificateState,
  type TlsSettings,
} from '../k8s/self-managed-tls.js';
import type { KeyPairPem } from '../k8s/x509.js';
import type { SelfManagedTLSConfig } from '../config/schema.js';
import type { Logger } from '../observability/log.js';
import { errorMessage } from '../observability/errors.js';
import { certificateNotAfter, registry } from '../observability/metrics.js';
import type { ReadinessCheck } from '../observability/readiness.js';
import { Periodic } from './periodic.js';

/** Writes of the certificate Secret this replica made, by kind: the rotations it carried out. */
export const tlsRotations = new Counter({
  name: 'tokenguard_tls_rotations_total',
  help: 'Self-managed TLS: writes of the certificate Secret by this replica, by kind: create, replace (corrupt or expired CA), renew-serving, start-ca-rotation, switch-ca, finish-ca-rotation.',
  labelNames: ['kind'] as const,
  registers: [registry],
});

/** Failed attempts, by step: read (the Secret or a webhook configuration), write (the Secret), inject (a caBundle). */
export const tlsRenewalFailures = new Counter({
  name: 'tokenguard_tls_renewal_failures_total',
  help: 'Self-managed TLS: failed attempts to read or write the certificate Secret or to inject the caBundle, by step: read, write, inject.',
  labelNames: ['step'] as const,
  registers: [registry],
});

const WEBHOOK_KINDS = [
  { kind: 'ValidatingWebhookConfiguration', resource: 'validatingwebhookconfigurations' },
  { kind: 'MutatingWebhookConfiguration', resource: 'mutatingwebhookconfigurations' },
] as const;
const ADMISSION_API = '/apis/admissionregistration.k8s.io/v1';

export interface CertControllerOptions {
  client: ApiClient;
  namespace: string;
  secretName: string;
  /** Names of tokenguard's ValidatingWebhookConfiguration and MutatingWebhookConfiguration (both kinds). */
  webhookConfigurations: readonly string[];
  settings: TlsSettings;
  checkSeconds: number;
  logger: Logger;
  now?: () => Date;
}

/** The parts of the API objects read and written here; everything else is sent back as read. */
interface KubeObject {
  metadata?: { annotations?: Record<string, string>; [field: string]: unknown };
  data?: Record<string, string>;
  webhooks?: { clientConfig?: { caBundle?: string; [field: string]: unknown }; [field: string]: unknown }[];
  [field: string]: unknown;
}
type Step = 'read' | 'write' | 'inject';

class StepError extends Error {
  constructor(
    readonly step: Step,
    message: string,
  ) {
    super(message);
  }
}

const statusOf = (err: unknown) => (err as { statusCode?: number } | null)?.statusCode;

export class CertController extends Periodic {
  private state?: CertificateState;
  private listeners = new Set<() => void>();
  private busy?: Promise<void>;
  private lastProblem = '';
  private readonly now: () => Date;
  private readonly secretPath: string;

  constructor(private readonly opts: CertControllerOptions) {
    super(opts.checkSeconds);
    this.now = opts.now ?? (() => new Date());
    this.secretPath = `/api/v1/namespaces/${encodeURIComponent(opts.namespace)}/secrets`;
  }

  /** The serving pair the Secret holds, once read. */
  pair(): KeyPairPem | undefined {
    return this.state?.serving;
  }

  /** Called after the serving pair changed. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Ready once the serving certificate comes from the Secret (before that: a throwaway one). */
  readonly readiness: ReadinessCheck = () =>
    this.state
      ? { ok: true }
      : { ok: false, reason: `waiting for the certificate Secret ${this.opts.namespace}/${this.opts.secretName}${this.lastProblem ? `: ${this.lastProblem}` : ''}` };

  /** One pass now (for start-up and tests); concurrent calls share the pass in flight. */
  reconcileNow(): Promise<void> {
    return this.tick();
  }

  protected tick(): Promise<void> {
    return (this.busy ??= this.pass().finally(() => (this.busy = undefined)));
  }

  private async pass(): Promise<void> {
    try {
      // A write that lost a race is retried at once with what won; three losses in a row wait for the next pass.
      for (let attempt = 0; attempt < 3; attempt++) if (await this.reconcile()) break;
      this.lastProblem = '';
    } catch (err) {
      const step = err instanceof StepError ? err.step : 'read';
      tlsRenewalFailures.inc({ step });
      const message = errorMessage(err);
      // Logged on every failed pass: a renewal that keeps failing must stay visible.
      this.opts.logger.warn('self-managed TLS: renewal failed, retrying', { step, error: message, retryInSeconds: this.opts.checkSeconds });
      this.lastProblem = message;
    }
  }

  /** One read-decide-write-inject round; false when a write lost a race (read again). */
  private async reconcile(): Promise<boolean> {
    const { logger, settings } = this.opts;
    const secret = await this.read(`${this.secretPath}/${encodeURIComponent(this.opts.secretName)}`);
    const webhooks = await this.readWebhooks();
    const read = secret ? readCertificateSecret(secret) : undefined;
    const current = read && 'state' in read ? read.state : undefined;
    const injected = !!current && webhooks.every((w) => carries(w.object, current.bundle));
    const now = this.now();
    const action = decide(read, now, settings, injected);
    let state = current;
    if (action.kind !== 'none') {
      const generation = 1 + Math.max(current?.generation ?? 0, ...webhooks.map((w) => generationOf(w.object)));
      // A deleted Secret comes back with the CA every replica still serves, if this replica knows it.
      const remembered = action.kind === 'create' ? this.state : undefined;
      state = remembered ? recreated(remembered, now, settings, generation) : advance(current, action, now, settings, generation);
      const written = await this.write(secret, state, action);
      if (!written) return false;
      tlsRotations.inc({ kind: action.kind });
      log(logger, action, remembered ? 'the Secret was deleted: re-created with the CA in use, and a CA rotation begun' : undefined, state);
    } else if (this.state && current && current.generation !== this.state.generation) {
      logger.info('self-managed TLS: adopted the certificate Secret as another replica wrote it', { generation: current.generation, phase: current.phase });
    }
    this.adopt(state!);
    await this.inject(state!, webhooks);
    return true;
  }

  private adopt(state: CertificateState): void {
    const changed = this.state?.serving.cert !== state.serving.cert;
    this.state = state;
    const { ca } = expiries(state);
    certificateNotAfter.set({ certificate: 'ca' }, ca);
    if (changed) for (const l of this.listeners) l();
  }

  private async read(path: string): Promise<KubeObject | undefined> {
    try {
      return await this.opts.client.getJson(path, { timeoutMs: 10_000 });
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw new StepError('read', errorMessage(err));
    }
  }

  private async readWebhooks(): Promise<{ resource: string; name: string; object: KubeObject }[]> {
    const out: { resource: string; name: string; object: KubeObject }[] = [];
    for (const { resource } of WEBHOOK_KINDS) {
      for (const name of this.opts.webhookConfigurations) {
        const object = await this.read(`${ADMISSION_API}/${resource}/${encodeURIComponent(name)}`);
        if (object) out.push({ resource, name, object });
      }
    }
    return out;
  }

  /** Create or update the Secret; false when another replica wrote first. */
  private async write(existing: KubeObject | undefined, state: CertificateState, action: Action): Promise<boolean> {
    const { data, annotations } = secretContent(state);
    const { client, namespace, secretName, logger } = this.opts;
    try {
      if (!existing) {
        await client.writeJson('POST', this.secretPath, {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: {
            name: secretName,
            namespace,
            labels: { 'app.kubernetes.io/name': 'tokenguard', 'app.kubernetes.io/managed-by': 'tokenguard' },
            annotations,
          },
          type: 'kubernetes.io/tls',
          data,
        });
      } else {
        const metadata = { ...existing.metadata, annotations: { ...existing.metadata?.annotations, ...annotations } };
        await client.writeJson('PUT', `${this.secretPath}/${encodeURIComponent(secretName)}`, { ...existing, metadata, data });
      }
      return true;
    } catch (err) {
      if (statusOf(err) === 409) {
        logger.info('self-managed TLS: another replica wrote the certificate Secret first; reading what it wrote', { wanted: action.kind });
        return false;
      }
      throw new StepError('write', errorMessage(err));
    }
  }

  /** Put the bundle into every webhook of tokenguard's configurations, unless they carry a newer one. */
  private async inject(state: CertificateState, webhooks: { resource: string; name: string; object: KubeObject }[]): Promise<void> {
    const caBundle = Buffer.from(state.bundle).toString('base64');
    for (const { resource, name, object } of webhooks) {
      if (generationOf(object) > state.generation) continue; // written from a newer Secret than this replica read
      if (carries(object, state.bundle) && generationOf(object) === state.generation) continue;
      const updated = structuredClone(object);
      updated.metadata = { ...updated.metadata, annotations: { ...updated.metadata?.annotations, [ANNOTATIONS.generation]: String(state.generation) } };
      for (const w of updated.webhooks ?? []) (w.clientConfig ??= {}).caBundle = caBundle;
      try {
        await this.opts.client.writeJson('PUT', `${ADMISSION_API}/${resource}/${encodeURIComponent(name)}`, updated);
        this.opts.logger.info('self-managed TLS: caBundle injected', { resource, name, generation: state.generation, phase: state.phase });
      } catch (err) {
        // A conflict is someone else's write in between: the next pass reads it and decides again.
        if (statusOf(err) === 409) continue;
        throw new StepError('inject', `${resource}/${name}: ${errorMessage(err)}`);
      }
    }
  }
}

/** Whether every webhook of a configuration has exactly this bundle as its caBundle. */
function carries(object: KubeObject, bundle: string): boolean {
  const want = Buffer.from(bundle).toString('base64');
  const hooks = object.webhooks ?? [];
  return hooks.every((w) => w.clientConfig?.caBundle === want);
}

function generationOf(object: KubeObject): number {
  return Number(object.metadata?.annotations?.[ANNOTATIONS.generation]) || 0;
}

function log(logger: Logger, action: Action, note: string | undefined, state: CertificateState): void {
  const { ca, serving } = expiries(state);
  const fields = {
    kind: action.kind,
    reason: note ?? action.reason,
    generation: state.generation,
    phase: state.phase,
    caNotAfter: new Date(ca * 1000).toISOString(),
    servingNotAfter: new Date(serving * 1000).toISOString(),
  };
  if (action.kind === 'replace') logger.error('self-managed TLS: certificate Secret replaced', fields);
  else logger.info(`self-managed TLS: ${DESCRIPTIONS[action.kind]}`, fields);
}

const DESCRIPTIONS: Record<Action['kind'], string> = {
  create: 'certificate Secret created',
  replace: 'certificate Secret replaced',
  'renew-serving': 'serving certificate renewed',
  'start-ca-rotation': 'CA rotation started: new CA trusted',
  'switch-ca': 'CA rotation: new CA signs the serving certificate',
  'finish-ca-rotation': 'CA rotation finished: old CA removed',
  none: '',
};

/** How long start-up waits for the first pass before serving a throwaway certificate, unready. */
const FIRST_PASS_WAIT_MS = 5_000;

/** The serving pair of self-managed TLS, as the server takes it; the controller runs until `stop`. */
export interface SelfManagedTls {
  pair: () => KeyPairPem;
  onChange: (listener: () => void) => () => void;
  what: string;
  readiness: ReadinessCheck;
  stop: () => void;
}

/**
 * Start self-managed TLS for `config` (server.selfManagedTLS): one pass now (waited for up to
 * FIRST_PASS_WAIT_MS), so a replica that finds or makes the Secret at once serves from it; then
 * every `checkSeconds`. Until the Secret can be read the server serves a throwaway certificate no
 * caBundle trusts, and is unready.
 */
export async function startSelfManagedTls(
  client: ApiClient,
  tls: SelfManagedTLSConfig,
  podNamespace: string | undefined,
  logger: Logger,
  /** The token observer runs (observer.enabled): its Service is named too. */
  observer = false,
): Promise<SelfManagedTls> {
  const namespace = tls.namespace ?? podNamespace ?? 'tokenguard';
  const settings: TlsSettings = {
    caLifetimeSeconds: tls.caLifetimeSeconds,
    certLifetimeSeconds: tls.certLifetimeSeconds,
    renewAtFraction: tls.renewAtFraction,
    overlapSeconds: tls.overlapSeconds,
    subjectAltNames: servingNames(tls.serviceName, namespace, tls.extraSubjectAltNames, observer),
  };
  const controller = new CertController({
    client,
    namespace,
    secretName: tls.secretName,
    webhookConfigurations: tls.webhookConfigurations,
    settings,
    checkSeconds: tls.checkSeconds,
    logger,
  });
  const what = `self-managed (Secret ${namespace}/${tls.secretName})`;
  logger.info('self-managed TLS: tokenguard keeps its CA and serving certificate in a Secret and injects the caBundle', {
    secret: `${namespace}/${tls.secretName}`,
    webhookConfigurations: tls.webhookConfigurations,
    subjectAltNames: settings.subjectAltNames,
  });
  // The server starts listening (and answering probes) within a few seconds even when the API
  // server is slow to answer: the pass goes on, and the periodic one after it.
  let bounded: NodeJS.Timeout | undefined;
  await Promise.race([controller.reconcileNow(), new Promise<void>((resolve) => (bounded = setTimeout(resolve, FIRST_PASS_WAIT_MS)))]);
  clearTimeout(bounded);
  controller.start();
  let throwaway: KeyPairPem | undefined;
  return {
    pair: () => controller.pair() ?? (throwaway ??= freshState(new Date(), settings, 0).serving),
    onChange: (l) => controller.onChange(l),
    what,
    readiness: controller.readiness,
    stop: () => controller.stop(),
  };
}
