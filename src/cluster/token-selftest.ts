// The token self-test: periodically ask the API server for a short-lived token of tokenguard's own
// ServiceAccount (TokenRequest), verify it the way kube-apiserver would (signature against the
// served JWKS, issuer among the accepted ones, audience, times with the 60 s leeway), and measure
// the skew between the API server's clock (the token's `iat`) and ours. It catches an issuer the
// API server no longer accepts (the kOps 1.26 outage, kops#16488) and clock skew beyond the 60 s
// leeway before workloads do.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { Gauge } from 'prom-client';
import { issuerFlags, parseArgv } from '../k8s/apiserver-flags.js';
import type { Logger } from '../observability/log.js';
import { registry } from '../observability/metrics.js';
import { describeApiError, type EventRecorder } from './events.js';
import type { IssuerMonitor } from './issuers.js';
import { SERVICE_ACCOUNT_DIR } from './kubeconfig.js';
import { CAUSES, decodeToken, verifyToken, type TokenProblem } from './token-verify.js';
import type { ClusterView } from './view.js';
import { Periodic } from './periodic.js';

// The self-test's gauges join the registry with its first result, not before: an unset gauge reads
// 0, which for the success gauge means "failed" and would fire its alert after every start, and
// for good wherever the self-test is off (outside a cluster, `cluster.tokenSelfTestSeconds: 0`).
const unregisteredGauge = (name: string, help: string) => new Gauge({ name, help, registers: [] });

export const selfTestSuccess = unregisteredGauge(
  'tokenguard_token_selftest_success',
  '1 when the last token self-test (TokenRequest + verification of the token) passed, 0 when it failed.',
);
export const clockSkew = unregisteredGauge(
  'tokenguard_clock_skew_seconds',
  "The API server's clock minus tokenguard's, from the last self-test token's iat (1 s resolution).",
);
export const selfTestLastSuccess = unregisteredGauge(
  'tokenguard_token_selftest_last_success_timestamp_seconds',
  'When the token self-test last passed (Unix time); absent until one has.',
);
export const clockSkewBound = unregisteredGauge(
  'tokenguard_clock_skew_bound_seconds',
  'The clock skew the self-test tolerates (config cluster.maxClockSkewSeconds): an alert compares |tokenguard_clock_skew_seconds| with it.',
);

/** The audience the self-test asks for, so the audience check is exact. */
export const SELF_TEST_AUDIENCE = 'tokenguard.io/self-test';
/** The shortest lifetime TokenRequest accepts. */
const EXPIRATION_SECONDS = 600;

export interface ServiceAccountRef {
  namespace: string;
  name: string;
}

/** Every issuer the cluster accepts as far as we can see: the served one, then the mirror pods' flags. */
export function acceptedIssuers(served: string | undefined, cluster: Pick<ClusterView, 'apiserverPods'> | undefined): string[] {
  const out = served ? [served] : [];
  for (const pod of cluster?.apiserverPods() ?? []) {
    for (const i of issuerFlags(parseArgv(pod.argv)).issuers) if (!out.includes(i)) out.push(i);
  }
  return out;
}

/**
 * tokenguard's own ServiceAccount: `TOKENGUARD_SERVICE_ACCOUNT=<namespace>/<name>`, else the `sub`
 * of the mounted in-cluster token; undefined outside a cluster (the self-test then stays off).
 */
export function ownServiceAccount(env: NodeJS.ProcessEnv = process.env, root = ''): ServiceAccountRef | undefined {
  const fromEnv = env.TOKENGUARD_SERVICE_ACCOUNT?.match(/^([^/\s]+)\/([^/\s]+)$/);
  if (fromEnv) return { namespace: fromEnv[1]!, name: fromEnv[2]! };
  try {
    const sub = decodeToken(readFileSync(join(root, SERVICE_ACCOUNT_DIR, 'token'), 'utf8')).claims.sub;
    const m = sub?.match(/^system:serviceaccount:([^:]+):([^:]+)$/);
    return m ? { namespace: m[1]!, name: m[2]! } : undefined;
  } catch {
    return undefined;
  }
}

export interface SelfTestResult {
  ok: boolean;
  at: Date;
  /** API server clock minus ours, in seconds; undefined when no token was obtained. */
  skewSeconds?: number;
  problems: TokenProblem[];
  /** The TokenRequest or the key set could not be obtained. */
  error?: string;
}

export interface TokenSelfTestOptions {
  kc: KubeConfig;
  issuers: Pick<IssuerMonitor, 'keys' | 'servedIssuer' | 'refresh'>;
  /** The cluster view, for the issuers other kube-apiservers accept. */
  cluster?: Pick<ClusterView, 'apiserverPods'>;
  serviceAccount: ServiceAccountRef;
  /** config `cluster.tokenSelfTestSeconds` (> 0). */
  intervalSeconds: number;
  /** config `cluster.maxClockSkewSeconds`. */
  maxClockSkewSeconds: number;
  logger: Logger;
  events?: EventRecorder;
  clock?: () => Date;
}

/** A self-test now and every `intervalSeconds` (start, stop), or one on demand (run). */
export class TokenSelfTest extends Periodic {
  last?: SelfTestResult;
  private readonly api: CoreV1Api;
  private readonly clock: () => Date;

  constructor(private readonly opts: TokenSelfTestOptions) {
    super(opts.intervalSeconds);
    this.api = opts.kc.makeApiClient(CoreV1Api);
    this.clock = opts.clock ?? (() => new Date());
  }

  protected tick(): Promise<unknown> {
    return this.run();
  }

  /** One self-test; never rejects. Updates the metrics, logs and records an Event on failure or skew (awaited). */
  async run(): Promise<SelfTestResult> {
    const result = await this.check();
    this.last = result;
    selfTestSuccess.set(result.ok ? 1 : 0);
    registry.registerMetric(selfTestSuccess); // the same metric again: a no-op
    if (result.ok) {
      selfTestLastSuccess.set(result.at.getTime() / 1000);
      registry.registerMetric(selfTestLastSuccess);
    }
    if (result.skewSeconds !== undefined) {
      clockSkew.set(result.skewSeconds);
      registry.registerMetric(clockSkew);
      clockSkewBound.set(this.opts.maxClockSkewSeconds);
      registry.registerMetric(clockSkewBound);
    }
    const { logger, events, maxClockSkewSeconds } = this.opts;
    if (!result.ok) {
      const why = result.error ?? result.problems.filter((p) => p.fatal).map((p) => p.message).join('; ');
      const causes = [...new Set(result.problems.flatMap((p) => (p.fatal && p.cause ? [p.cause] : [])))];
      logger.error('token self-test failed', { error: why, causes });
      await events?.record({
        type: 'Warning',
        reason: 'TokenSelfTestFailed',
        message: `A fresh token of ${this.who()} does not pass verification: ${why}` +
          (causes.length ? ` (${causes.map((c) => CAUSES[c]).join('; ')})` : ''),
      });
    } else {
      logger.debug('token self-test passed', { skewSeconds: result.skewSeconds });
    }
    if (result.skewSeconds !== undefined && Math.abs(result.skewSeconds) > maxClockSkewSeconds) {
      const direction = result.skewSeconds > 0 ? 'ahead of' : 'behind';
      const message =
        `The API server's clock is ${Math.abs(result.skewSeconds)} s ${direction} this node's (bound ${maxClockSkewSeconds} s). ` +
        'kube-apiserver rejects tokens whose nbf/iat is more than 60 s in its future: fix time sync (chrony/NTP) before that.';
      logger.warn('clock skew between tokenguard and the API server', { skewSeconds: result.skewSeconds, bound: maxClockSkewSeconds });
      await events?.record({ type: 'Warning', reason: 'ClockSkew', message });
    }
    return result;
  }

  private who(): string {
    return `ServiceAccount ${this.opts.serviceAccount.namespace}/${this.opts.serviceAccount.name}`;
  }

  private async check(): Promise<SelfTestResult> {
    const { serviceAccount, issuers } = this.opts;
    const t0 = this.clock();
    let token: string;
    try {
      const answer = await this.api.createNamespacedServiceAccountToken({
        name: serviceAccount.name,
        namespace: serviceAccount.namespace,
        body: { spec: { audiences: [SELF_TEST_AUDIENCE], expirationSeconds: EXPIRATION_SECONDS } },
      });
      const t = answer?.status?.token;
      if (typeof t !== 'string' || t === '') throw new Error('the TokenRequest answer has no status.token');
      token = t;
    } catch (err) {
      return { ok: false, at: this.clock(), problems: [], error: `TokenRequest for ${this.who()} failed: ${describeApiError(err)}` };
    }
    const t1 = this.clock();

    // A kid we do not know yet may just be a key rotated since the last read: re-read once.
    let kid: string | undefined;
    try {
      kid = decodeToken(token).header.kid;
    } catch {
      kid = undefined;
    }
    if (!issuers.keys || (kid && !issuers.keys.keys.some((k) => k.kid === kid))) await issuers.refresh();
    if (!issuers.keys) {
      return { ok: false, at: t1, problems: [], error: 'the cluster key set (/openid/v1/jwks) could not be read' };
    }
    const verdict = await verifyToken(token, {
      keys: issuers.keys,
      acceptedIssuers: acceptedIssuers(issuers.servedIssuer, this.opts.cluster),
      audience: SELF_TEST_AUDIENCE,
      now: t1,
    });
    const iat = verdict.claims?.iat;
    let skewSeconds: number | undefined;
    if (typeof iat === 'number') {
      // iat is the API server's time, truncated to the second, somewhere between t0 and t1.
      const lo = Math.floor(t0.getTime() / 1000);
      const hi = Math.floor(t1.getTime() / 1000);
      skewSeconds = iat < lo ? iat - lo : iat > hi ? iat - hi : 0;
    }
    return { ok: verdict.valid, at: t1, skewSeconds, problems: verdict.problems };
  }
}
