// Who is calling /validate and /mutate? Anyone who can reach the Service can send AdmissionReviews:
// learn which PVCs are in use, which issuers the cluster trusts, which audiences are allowed, and
// make tokenguard record Events. kube-apiserver can prove it is the caller in two ways:
// - a client certificate, from the kubeconfig given to `--admission-control-config-file`;
// - a bearer token: from that kubeconfig (`kubectl create token webhook-auth ...`, every version),
//   or, with KEP-6060 (alpha in v1.37, feature gate APIServerWebhookAuthenticationToken), a token
//   of at most 600 s kube-apiserver requests for each webhook: its audience is the webhook's URL,
//   it is bound to the calling Validating/MutatingWebhookConfiguration (name and uid), and it
//   attests the API group it may ask about (`admissionReviewAPIGroups`, a group or `*`).
// A request passes with either. The token checks are src/cluster/token-verify.ts's (signature
// against the cluster's own key set, issuer, audience, subject, times with the fixed 60 s leeway,
// the KEP-6060 claims); this file is the HTTP side: headers and TLS, the caches, which route and
// which configuration a bound token may be used for, counting and rate-limited logging. A bound
// token must be bound to one of tokenguard's own configurations, of the route's kind (validating
// on /validate, mutating on /mutate), with the uid of the live object while the cluster can be
// watched (names only otherwise, and said so), and its attestation must cover the reviewed
// resource's group (checked once the review is decoded: `checkAttestation`).
//
// The hot path: kube-apiserver sends the same token many times, so a token whose signature
// verified is cached (keyed by its SHA-256, never the token itself, until it expires; bounded),
// and a cached check is a string comparison (the same token again on the same connection) or a
// hash, a few comparisons and, for a bound token, a map lookup of the live uid. Key-set changes
// drop the tokens signed with removed keys; an unknown key id re-reads the key set (at most once
// a second).

import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { JSONWebKeySet } from 'jose';
import type { AdmissionRequest } from '../admission/review.js';
import type { CallerAuthConfig } from '../config/schema.js';
import {
  API_SERVER_LEEWAY_SECONDS,
  attestationProblem,
  audienceProblem,
  bindingProblem,
  fatalTimeProblem,
  issuerProblem,
  subjectProblem,
  verifySignature,
  WEBHOOK_KINDS,
  webhookClaimsProblem,
  type TokenCheck,
  type TokenClaims,
  type TokenProblem,
} from '../cluster/token-verify.js';
import type { LiveUid, WebhookConfigurationView } from '../cluster/webhook-configurations.js';
import type { Logger } from '../observability/log.js';
import { RateLimitedLog } from '../observability/log-limit.js';
import { registry, Tally } from '../observability/metrics.js';
import { Gauge } from 'prom-client';
import { ADMISSION_ROUTES, type AdmissionRoute } from '../admission/routes.js';

export type AuthMethod = 'client_certificate' | 'bearer_token' | 'none';
export type AuthResult =
  | 'ok'
  | 'missing'
  | 'invalid_signature'
  | 'unknown_issuer'
  | 'expired'
  | 'wrong_audience'
  | 'wrong_subject'
  | 'lifetime_too_long'
  | 'wrong_binding'
  | 'wrong_route'
  | 'stale_uid'
  | 'wrong_attestation';

export interface Verdict {
  method: AuthMethod;
  result: AuthResult;
  /** Why, in one line (never the token). */
  reason: string;
  /** A KEP-6060 token's claims: its attestation is checked once the review is decoded. */
  bound?: TokenClaims;
  /** The `sub` of a token whose signature verified (whether or not its other checks passed): who the caller is. */
  subject?: string;
}

/**
 * Who the caller is, for a log line, when caller authentication knows it: the subject of a token
 * whose signature verified, or the subject of a client certificate signed by the configured CA.
 */
export function callerIdentity(verdict: Verdict | undefined, req: IncomingMessage): string | undefined {
  if (!verdict) return undefined;
  if (verdict.subject) return verdict.subject;
  if (verdict.method !== 'client_certificate' || verdict.result !== 'ok') return undefined;
  const cn = (req.socket as TLSSocket).getPeerCertificate?.()?.subject?.CN;
  return cn ? `CN=${String(cn)}` : undefined;
}

/** What the token checks need of issuer discovery (cluster/issuers.ts's IssuerMonitor). */
export interface KeySource {
  readonly servedIssuer?: string;
  readonly keys?: JSONWebKeySet;
  /** Re-read the key set now (concurrent callers share one read). */
  refresh(): Promise<void>;
  /** Told when the key set changes, with the key ids no longer published. */
  onKeysChanged(listener: (removedKeyIds: string[]) => void): void;
}

export interface CallerAuthOptions {
  /** The cluster's key set (none: no bearer token can be verified). */
  keys?: KeySource;
  /** The live webhook configurations (none: a bound token's uid is not checked, only its name). */
  webhookConfigurations?: WebhookConfigurationView;
  logger: Logger;
  now?: () => number;
}

/** A JWT of kube-apiserver is about 1 KiB; anything far longer is not one. */
const MAX_TOKEN_CHARS = 16 * 1024;
const MAX_CACHED_TOKENS = 10_000;
/**
 * An unknown key id re-reads the key set, but not more often than this: a key set read less than a
 * second ago is current, and a stream of forged key ids costs the API server one GET a second.
 */
export const KEY_REFRESH_MS = 1000;

/** The `result` of each token problem (the notes never fail a token). */
const RESULTS: Record<TokenProblem['code'], AuthResult> = {
  malformed: 'invalid_signature',
  'unknown-key': 'invalid_signature',
  'bad-signature': 'invalid_signature',
  'issuer-not-accepted': 'unknown_issuer',
  'wrong-audience': 'wrong_audience',
  'wrong-subject': 'wrong_subject',
  expired: 'expired',
  'not-yet-valid': 'expired',
  'issued-in-future': 'expired',
  'within-leeway': 'ok',
  'expiring-soon': 'ok',
  'past-warnafter': 'ok',
  'lifetime-too-long': 'lifetime_too_long',
  'bad-binding': 'wrong_binding',
  'wrong-binding': 'wrong_binding',
  'wrong-route': 'wrong_route',
  'stale-uid': 'stale_uid',
  'wrong-attestation': 'wrong_attestation',
};

/** The audiences tokenguard's Service URL implies for a route: with and without the path (and :443). */
export function derivedAudiences(service: CallerAuthConfig['bearerToken']['service'], route: AdmissionRoute): string[] {
  const host = `${service.name}.${service.namespace}.svc`;
  const hosts = service.port === 443 ? [`https://${host}`, `https://${host}:443`] : [`https://${host}:${service.port}`];
  return hosts.flatMap((h) => [h, h + ADMISSION_ROUTES[route].path]);
}

/** A token whose signature verified: its claims, judged again on each request. */
interface VerifiedToken {
  kid: string;
  claims: TokenClaims;
  /** The verdict when every check passes, made once. */
  ok: Verdict;
}

const OK_CERTIFICATE: Verdict = { method: 'client_certificate', result: 'ok', reason: 'client certificate signed by the configured CA' };
const OK_TOKEN: Verdict = { method: 'bearer_token', result: 'ok', reason: 'bearer token verified' };
const NO_CLUSTER: LiveUid = { unknown: 'no cluster to watch webhook configurations in' };
const MISSING: Verdict = { method: 'none', result: 'missing', reason: 'no client certificate and no bearer token' };
/** The tally key of the verdict on almost every review, built once. */
const OK_TOKEN_KEY = 'bearer_token\0ok';

const tally = new Tally(['method', 'result'] as const);
export const callerAuthTotal = tally.counter(
  'tokenguard_caller_auth_total',
  'Callers of /validate and /mutate checked (callerAuth audit or enforce), by method and result.',
);

/**
 * The caller-auth mode in force, as a 1 on its label (absent while caller auth is off): an alert
 * on failed callers joins it, since in `enforce` every failure is a refused review.
 */
export const callerAuthMode = new Gauge({
  name: 'tokenguard_caller_auth_mode',
  help: '1 for the server.callerAuth mode in force (audit or enforce); absent while caller authentication is off.',
  labelNames: ['mode'] as const,
  registers: [registry],
});

const failed = (p: TokenProblem): Verdict => ({ method: 'bearer_token', result: RESULTS[p.code], reason: p.message });

export class CallerAuth {
  readonly mode: 'audit' | 'enforce';
  private readonly audiences: Record<AdmissionRoute, Set<string>>;
  private readonly subjects: Set<string>;
  private readonly ownWebhooks: Set<string>;
  private readonly keySource?: KeySource;
  private readonly webhookConfigurations?: WebhookConfigurationView;
  /** Failing callers are logged rate-limited per result: anyone who reaches the port can fail. */
  private readonly log: RateLimitedLog;
  private readonly now: () => number;
  private readonly tokens = new Map<string, VerifiedToken>();
  /** The last bearer token of each connection and its cache key, gone with the connection. */
  private readonly lastOnConnection = new WeakMap<object, { token: string; key: string }>();
  /** The served issuer as a list, rebuilt only when it changes. */
  private served: { issuer?: string; list: readonly string[] } = { list: [] };
  private lastKeyRefresh = -Infinity;

  constructor(
    private readonly config: CallerAuthConfig,
    opts: CallerAuthOptions,
  ) {
    if (config.mode === 'off') throw new Error('CallerAuth is for audit or enforce');
    this.mode = config.mode;
    callerAuthMode.reset();
    callerAuthMode.set({ mode: config.mode }, 1);
    this.keySource = opts.keys;
    this.webhookConfigurations = opts.webhookConfigurations;
    this.now = opts.now ?? Date.now;
    this.log = new RateLimitedLog(opts.logger, undefined, this.now);
    const t = config.bearerToken;
    this.audiences = {
      validate: new Set([...derivedAudiences(t.service, 'validate'), ...t.audiences]),
      mutate: new Set([...derivedAudiences(t.service, 'mutate'), ...t.audiences]),
      // The token observer's webhook calls the second Service, `<service>-observer`
      // (manifests/components/token-observer).
      observe: new Set([...derivedAudiences({ ...t.service, name: `${t.service.name}-observer` }, 'observe'), ...t.audiences]),
    };
    this.subjects = new Set(t.subjects);
    this.ownWebhooks = new Set(t.webhookConfigurations);
    this.keySource?.onKeysChanged((removed) => {
      if (removed.length === 0) return;
      const gone = new Set(removed);
      for (const [key, token] of this.tokens) if (gone.has(token.kid)) this.tokens.delete(key);
    });
  }

  /** Tokens whose signature verified, cached (for tests and the benchmark). */
  get cachedTokens(): number {
    return this.tokens.size;
  }

  /**
   * The verdict on the caller of `req`, from its headers and TLS session alone (the body is not
   * needed): at once from the cache, or a promise when a token's signature must be verified.
   */
  authenticate(route: AdmissionRoute, req: IncomingMessage): Verdict | Promise<Verdict> {
    const socket = req.socket as TLSSocket;
    if (this.config.clientCertificate && socket.authorized) return OK_CERTIFICATE;
    const header = req.headers.authorization;
    if (header === undefined) return this.withoutToken(socket);
    if (header.length < 8 || !(header.startsWith('Bearer ') || header.slice(0, 7).toLowerCase() === 'bearer ')) {
      return { method: 'none', result: 'missing', reason: `the Authorization header is not "Bearer <token>"` };
    }
    const token = header.slice(7).trim();
    if (token.length === 0 || token.length > MAX_TOKEN_CHARS || token.indexOf(' ') !== -1) {
      return { method: 'bearer_token', result: 'invalid_signature', reason: `the bearer token is not a JWT (${token.length} characters)` };
    }
    // kube-apiserver sends the same token again and again on a keep-alive connection: compare it
    // with the last one seen there before hashing it (the hash is most of a cached check's cost).
    // A connection only ever reuses what its own client sent, so no other caller can ride on it.
    const last = this.lastOnConnection.get(socket);
    let key: string;
    if (last !== undefined && last.token === token) key = last.key;
    else {
      key = createHash('sha256').update(token).digest('base64');
      this.lastOnConnection.set(socket, { token, key });
    }
    const cached = this.tokens.get(key);
    if (cached) {
      // Kept until it expires: an expired token is judged (and refused) once more, then forgotten.
      const exp = cached.claims.exp;
      if (exp !== undefined && this.now() / 1000 > exp + API_SERVER_LEEWAY_SECONDS) this.tokens.delete(key);
      return this.judge(cached, route);
    }
    return this.verify(token, key).then((v) => ('result' in v ? v : this.judge(v, route)));
  }

  /** A KEP-6060 token may only ask about the API group it attests (`*`: any). */
  checkAttestation(verdict: Verdict, request: AdmissionRequest): Verdict {
    const problem = verdict.bound && attestationProblem(verdict.bound, request.resource.group);
    return problem ? failed(problem) : verdict;
  }

  /**
   * Count the verdict, and log a failing caller (address, the subject when its token verified, the
   * reason; never the token), rate-limited per result.
   */
  record(verdict: Verdict, route: AdmissionRoute, req: IncomingMessage): void {
    const ok = verdict.result === 'ok';
    tally.add(ok && verdict.method === 'bearer_token' ? OK_TOKEN_KEY : `${verdict.method}\0${verdict.result}`);
    if (ok) return;
    this.log.log('warn', `caller_${verdict.result}`, 'caller not authenticated', {
      address: req.socket.remoteAddress ?? 'unknown',
      ...(verdict.subject ? { caller: verdict.subject } : {}),
      route,
      method: verdict.method,
      result: verdict.result,
      reason: verdict.reason,
      mode: this.mode,
    });
  }

  /** Write the summaries of suppressed lines (on shutdown). */
  flushLog(): void {
    this.log.flush();
  }

  private withoutToken(socket: TLSSocket): Verdict {
    if (this.config.clientCertificate && Object.keys(socket.getPeerCertificate?.() ?? {}).length > 0) {
      return { method: 'client_certificate', result: 'invalid_signature', reason: `client certificate not accepted: ${socket.authorizationError ?? 'not signed by the configured CA'}` };
    }
    return MISSING;
  }

  /** Re-read the key set, unless it was read less than KEY_REFRESH_MS ago. */
  private async refreshKeys(): Promise<boolean> {
    if (!this.keySource || this.now() - this.lastKeyRefresh < KEY_REFRESH_MS) return false;
    this.lastKeyRefresh = this.now();
    await this.keySource.refresh();
    return true;
  }

  /** Verify the signature (re-reading the key set once for an unknown key id); cache the claims. */
  private async verify(token: string, cacheKey: string): Promise<VerifiedToken | Verdict> {
    if (!this.keySource?.keys) await this.refreshKeys();
    let keys = this.keySource?.keys;
    if (!keys) return { method: 'bearer_token', result: 'unknown_issuer', reason: "the cluster's key set is unknown (no cluster access, or issuer discovery failed)" };
    let check: TokenCheck = await verifySignature(token, keys);
    // A key id we do not know may be a key added since the last read.
    if (check.problems[0]?.code === 'unknown-key' && (await this.refreshKeys())) {
      keys = this.keySource?.keys;
      if (keys) check = await verifySignature(token, keys);
    }
    if (!check.valid || !check.claims) return failed(check.problems[0]!);
    const claims = check.claims;
    const w = claims.webhook;
    const verified: VerifiedToken = {
      kid: String(check.header?.kid ?? ''),
      claims,
      ok: { ...OK_TOKEN, ...(w ? { reason: `bearer token verified, bound to ${WEBHOOK_KINDS[w.kind]} ${w.name}`, bound: claims } : {}), subject: claims.sub },
    };
    if (this.tokens.size >= MAX_CACHED_TOKENS) this.tokens.delete(this.tokens.keys().next().value!);
    this.tokens.set(cacheKey, verified);
    return verified;
  }

  /** The accepted issuers: the configured ones, else the served one. */
  private issuers(): readonly string[] {
    const configured = this.config.bearerToken.issuers;
    if (configured.length) return configured;
    const issuer = this.keySource?.servedIssuer;
    if (issuer !== this.served.issuer) this.served = { issuer, list: issuer ? [issuer] : [] };
    return this.served.list;
  }

  /** The claims checks, per request: issuer, times, a bound token's binding, audience, subject. */
  private judge(t: VerifiedToken, route: AdmissionRoute): Verdict {
    const c = t.claims;
    const issuers = this.issuers();
    if (issuers.length === 0) return { method: 'bearer_token', result: 'unknown_issuer', reason: 'the served issuer is unknown (no cluster access, or issuer discovery failed)' };
    const problem = issuerProblem(c.iss, issuers) ?? fatalTimeProblem(c, Math.floor(this.now() / 1000)) ?? webhookClaimsProblem(c);
    if (problem) return { ...failed(problem), subject: c.sub };
    // A bound token on the wrong route also has the wrong audience; the binding says more.
    const ok = c.webhook ? this.judgeBinding(t, c.webhook, route) : t.ok;
    if (ok.result !== 'ok') return ok;
    const who = audienceProblem(c.aud, this.audiences[route]) ?? subjectProblem(c.sub, this.subjects);
    return who ? { ...failed(who), subject: c.sub } : ok;
  }

  /** A bound token: the route's kind, one of tokenguard's configurations, as it exists now. */
  private judgeBinding(t: VerifiedToken, w: NonNullable<TokenClaims['webhook']>, route: AdmissionRoute): Verdict {
    // (`null` is an answer: no such configuration now.)
    const live: LiveUid = this.webhookConfigurations ? this.webhookConfigurations.liveUid(w.kind, w.name) : NO_CLUSTER;
    const known = typeof live !== 'object' || live === null;
    const problem = bindingProblem(t.claims, { kind: ADMISSION_ROUTES[route].webhook, names: this.ownWebhooks, liveUid: known ? live : undefined });
    if (problem) return { ...failed(problem), subject: t.claims.sub };
    if (known) return t.ok;
    // The API server cannot be watched: the name has been checked, the uid cannot be.
    const why = `the uid of ${WEBHOOK_KINDS[w.kind]} ${w.name} is not checked, names only: ${live.unknown}`;
    this.log.log('warn', 'caller_uid_unchecked', 'caller authentication checks webhook configuration names only', { reason: why, mode: this.mode });
    return { ...t.ok, reason: `${t.ok.reason}; ${why}` };
  }
}
