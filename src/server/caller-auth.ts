// Who is calling /validate and /mutate? Anyone who can reach the Service can send AdmissionReviews:
// learn which PVCs are in use, which issuers the cluster trusts, which audiences are allowed, and
// make tokenguard record Events. kube-apiserver can prove it is the caller in two ways:
// - a client certificate, from the kubeconfig given to `--admission-control-config-file`;
// - a bearer token: from that kubeconfig today (`kubectl create token webhook-auth ...`), and under
//   KEP-6060 a short-lived service-account token kube-apiserver mints for each webhook, whose
//   audience is the webhook's URL and whose private claims bind it to the calling
//   Validating/MutatingWebhookConfiguration (or, for aggregated API servers, an APIService).
// A request passes with either. Tokens are verified as kube-apiserver verifies them (signature
// against the cluster's own key set, issuer, audience, subject, times with the fixed 60 s leeway)
// and then checked against the route they arrive on.
//
// The hot path: kube-apiserver sends the same token many times, so a token whose signature
// verified is cached (keyed by its SHA-256, never the token itself, until it expires; bounded),
// and a cached check is a string comparison (the same token again on the same connection) or a
// hash, and a few comparisons. Key-set changes drop the tokens signed with
// removed keys; an unknown key id re-reads the key set (at most once a second).

import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { compactVerify, createLocalJWKSet, decodeProtectedHeader, errors, type JSONWebKeySet } from 'jose';
import type { AdmissionRequest } from '../admission/review.js';
import type { CallerAuthConfig } from '../config/schema.js';
import { API_SERVER_LEEWAY_SECONDS } from '../cluster/token-verify.js';
import type { Logger } from '../observability/log.js';
import { Tally } from '../observability/metrics.js';

export type AuthMethod = 'client_certificate' | 'bearer_token' | 'none';
export type AuthResult = 'ok' | 'missing' | 'invalid_signature' | 'wrong_audience' | 'wrong_subject' | 'expired' | 'scope_mismatch' | 'unknown_issuer';
export type AuthRoute = 'validate' | 'mutate';

export interface Verdict {
  method: AuthMethod;
  result: AuthResult;
  /** Why, in one line (never the token). */
  reason: string;
  /** An APIService-bound token may only ask about this group/version (checked once the review is decoded). */
  apiService?: { name: string; group: string; version: string };
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

const ROUTE_PATHS: Record<AuthRoute, string> = { validate: '/validate', mutate: '/mutate' };
/** A JWT of kube-apiserver is about 1 KiB; anything far longer is not one. */
const MAX_TOKEN_CHARS = 16 * 1024;
const MAX_CACHED_TOKENS = 10_000;
/**
 * An unknown key id re-reads the key set, but not more often than this: a key set read less than a
 * second ago is current, and a stream of forged key ids costs the API server one GET a second.
 */
export const KEY_REFRESH_MS = 1000;
/** One warning per failing caller (address and result) per this long. */
const LOG_EVERY_MS = 60_000;
const MAX_LOGGED_CALLERS = 1024;
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512'];

/** The audiences tokenguard's Service URL implies for a route: with and without the path (and :443). */
export function derivedAudiences(service: CallerAuthConfig['bearerToken']['service'], route: AuthRoute): string[] {
  const host = `${service.name}.${service.namespace}.svc`;
  const hosts = service.port === 443 ? [`https://${host}`, `https://${host}:443`] : [`https://${host}:${service.port}`];
  return hosts.flatMap((h) => [h, h + ROUTE_PATHS[route]]);
}

/** `v1.apps` -> apps/v1; `v1` (or `v1.`) -> the core group, v1. */
export function apiServiceScope(name: string): { name: string; group: string; version: string } {
  const dot = name.indexOf('.');
  return dot === -1 ? { name, group: '', version: name } : { name, group: name.slice(dot + 1), version: name.slice(0, dot) };
}

/** The claims of a token whose signature verified: what each request is then judged on. */
interface VerifiedToken {
  kid: string;
  iss?: string;
  aud: string[];
  sub?: string;
  exp?: number;
  nbf?: number;
  iat?: number;
  webhook?: { kind: 'validating' | 'mutating'; name: string };
  apiService?: { name: string; group: string; version: string };
}

const OK_CERTIFICATE: Verdict = { method: 'client_certificate', result: 'ok', reason: 'client certificate signed by the configured CA' };
const OK_TOKEN: Verdict = { method: 'bearer_token', result: 'ok', reason: 'bearer token verified' };
const MISSING: Verdict = { method: 'none', result: 'missing', reason: 'no client certificate and no bearer token' };
/** The tally key of the verdict on almost every review, built once. */
const OK_TOKEN_KEY = 'bearer_token\0ok';

const tally = new Tally(['method', 'result'] as const);
export const callerAuthTotal = tally.counter(
  'tokenguard_caller_auth_total',
  'Callers of /validate and /mutate checked (callerAuth audit or enforce), by method and result.',
);

export class CallerAuth {
  readonly mode: 'audit' | 'enforce';
  private readonly audiences: Record<AuthRoute, Set<string>>;
  private readonly subjects: Set<string>;
  private readonly ownWebhooks: Set<string>;
  private readonly tokens = new Map<string, VerifiedToken>();
  /** The last bearer token of each connection and its cache key, gone with the connection. */
  private readonly lastOnConnection = new WeakMap<object, { token: string; key: string }>();
  private jwks?: { keys: JSONWebKeySet; lookup: ReturnType<typeof createLocalJWKSet> };
  private lastKeyRefresh = -Infinity;
  private readonly logged = new Map<string, number>();

  constructor(
    private readonly config: CallerAuthConfig,
    private readonly keySource: KeySource | undefined,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    if (config.mode === 'off') throw new Error('CallerAuth is for audit or enforce');
    this.mode = config.mode;
    const t = config.bearerToken;
    this.audiences = {
      validate: new Set([...derivedAudiences(t.service, 'validate'), ...t.audiences]),
      mutate: new Set([...derivedAudiences(t.service, 'mutate'), ...t.audiences]),
    };
    this.subjects = new Set(t.subjects);
    this.ownWebhooks = new Set(t.webhookConfigurations);
    keySource?.onKeysChanged((removed) => {
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
  authenticate(route: AuthRoute, req: IncomingMessage): Verdict | Promise<Verdict> {
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
      if (cached.exp !== undefined && this.now() / 1000 > cached.exp + API_SERVER_LEEWAY_SECONDS) this.tokens.delete(key);
      return this.judge(cached, route);
    }
    return this.verify(token, key).then((v) => ('result' in v ? v : this.judge(v, route)));
  }

  /** An APIService-bound token may only ask about its own group and version. */
  checkScope(verdict: Verdict, request: AdmissionRequest): Verdict {
    const scope = verdict.apiService;
    if (!scope || (request.kind.group === scope.group && request.kind.version === scope.version)) return verdict;
    const kind = `${request.kind.group ? request.kind.group + '/' : ''}${request.kind.version}`;
    return { method: 'bearer_token', result: 'scope_mismatch', reason: `a token bound to APIService ${scope.name} asks about ${kind}` };
  }

  /** Count the verdict, and log a failing caller at most once a minute (address and reason, never the token). */
  record(verdict: Verdict, route: AuthRoute, req: IncomingMessage): void {
    tally.add(verdict === OK_TOKEN ? OK_TOKEN_KEY : `${verdict.method}\0${verdict.result}`);
    if (verdict.result === 'ok') return;
    const address = req.socket.remoteAddress ?? 'unknown';
    const key = `${address}\0${verdict.result}`;
    const now = this.now();
    const last = this.logged.get(key);
    if (last !== undefined && now - last < LOG_EVERY_MS) return;
    this.logged.delete(key);
    this.logged.set(key, now);
    if (this.logged.size > MAX_LOGGED_CALLERS) this.logged.delete(this.logged.keys().next().value!);
    this.logger.warn('caller not authenticated', { address, route, method: verdict.method, result: verdict.result, reason: verdict.reason, mode: this.mode });
  }

  private withoutToken(socket: TLSSocket): Verdict {
    if (this.config.clientCertificate && Object.keys(socket.getPeerCertificate?.() ?? {}).length > 0) {
      return { method: 'client_certificate', result: 'invalid_signature', reason: `client certificate not accepted: ${socket.authorizationError ?? 'not signed by the configured CA'}` };
    }
    return MISSING;
  }

  private keyLookup(keys: JSONWebKeySet): ReturnType<typeof createLocalJWKSet> {
    if (this.jwks?.keys !== keys) this.jwks = { keys, lookup: createLocalJWKSet(keys) };
    return this.jwks.lookup;
  }

  /** Verify the signature (re-reading the key set once for an unknown key id); cache the claims. */
  private async verify(token: string, cacheKey: string): Promise<VerifiedToken | Verdict> {
    const bad = (reason: string): Verdict => ({ method: 'bearer_token', result: 'invalid_signature', reason });
    let kid: string;
    try {
      kid = String(decodeProtectedHeader(token).kid ?? '');
    } catch (err) {
      return bad(`the bearer token is not a JWT: ${(err as Error).message}`);
    }
    let keys = this.keySource?.keys;
    const published = () => keys?.keys.some((k) => k.kid === kid) ?? false;
    if (this.keySource && !published() && this.now() - this.lastKeyRefresh >= KEY_REFRESH_MS) {
      this.lastKeyRefresh = this.now();
      await this.keySource.refresh();
      keys = this.keySource.keys;
    }
    if (!keys) return { method: 'bearer_token', result: 'unknown_issuer', reason: "the cluster's key set is unknown (no cluster access, or issuer discovery failed)" };
    let payload: Uint8Array;
    try {
      ({ payload } = await compactVerify(token, this.keyLookup(keys), { algorithms: ALGORITHMS }));
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey) return bad(`signed by a key the cluster does not publish (kid ${JSON.stringify(kid)})`);
      if (err instanceof errors.JWSSignatureVerificationFailed) return bad("the signature does not verify with the cluster's key");
      return bad(`the signature cannot be verified: ${(err as Error).message}`);
    }
    let claims: Record<string, any>;
    try {
      claims = JSON.parse(new TextDecoder().decode(payload));
    } catch {
      return bad('the token claims are not JSON');
    }
    if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) return bad('the token claims are not a JSON object');
    const verified = toVerified(kid, claims);
    if (this.tokens.size >= MAX_CACHED_TOKENS) this.tokens.delete(this.tokens.keys().next().value!);
    this.tokens.set(cacheKey, verified);
    return verified;
  }

  /** The claims checks, per request: issuer, times, audience, subject, and the route's scope. */
  private judge(t: VerifiedToken, route: AuthRoute): Verdict {
    const fail = (result: AuthResult, reason: string): Verdict => ({ method: 'bearer_token', result, reason });
    const configured = this.config.bearerToken.issuers;
    const served = this.keySource?.servedIssuer;
    const issuers = configured.length ? configured : served ? [served] : [];
    if (issuers.length === 0) return fail('unknown_issuer', 'the served issuer is unknown (no cluster access, or issuer discovery failed)');
    if (t.iss === undefined || !issuers.includes(t.iss)) return fail('unknown_issuer', `issuer ${JSON.stringify(t.iss ?? null)} is not accepted (${issuers.join(', ')})`);
    const now = Math.floor(this.now() / 1000);
    const leeway = API_SERVER_LEEWAY_SECONDS;
    if (t.exp !== undefined && now > t.exp + leeway) return fail('expired', `expired ${now - t.exp} s ago`);
    if (t.nbf !== undefined && t.nbf > now + leeway) return fail('expired', `not valid for another ${t.nbf - now} s (nbf)`);
    if (t.iat !== undefined && t.iat > now + leeway) return fail('expired', `issued ${t.iat - now} s in the future (iat)`);
    const accepted = this.audiences[route];
    if (!t.aud.some((a) => accepted.has(a))) {
      return fail('wrong_audience', `audiences ${JSON.stringify(t.aud)} include none of ${[...accepted].join(', ')}`);
    }
    if (t.sub === undefined || !this.subjects.has(t.sub)) return fail('wrong_subject', `subject ${JSON.stringify(t.sub ?? null)} is not one of ${[...this.subjects].join(', ')}`);
    if (t.webhook) {
      const expected = route === 'validate' ? 'validating' : 'mutating';
      if (t.webhook.kind !== expected) return fail('scope_mismatch', `a token bound to a ${t.webhook.kind} webhook configuration on /${route}`);
      if (!this.ownWebhooks.has(t.webhook.name)) return fail('scope_mismatch', `bound to webhook configuration ${JSON.stringify(t.webhook.name)}, not tokenguard's (${[...this.ownWebhooks].join(', ')})`);
    }
    return t.apiService ? { ...OK_TOKEN, apiService: t.apiService } : OK_TOKEN;
  }
}

function toVerified(kid: string, claims: Record<string, any>): VerifiedToken {
  const num = (v: unknown) => (typeof v === 'number' ? v : undefined);
  const k8s = claims['kubernetes.io'] ?? {};
  const named = (v: any) => (v && typeof v.name === 'string' ? v.name : undefined);
  const validating = named(k8s.validatingWebhookConfiguration);
  const mutating = named(k8s.mutatingWebhookConfiguration);
  const apiService = named(k8s.apiService);
  const aud = Array.isArray(claims.aud) ? claims.aud.filter((a: unknown) => typeof a === 'string') : typeof claims.aud === 'string' ? [claims.aud] : [];
  return {
    kid,
    iss: typeof claims.iss === 'string' ? claims.iss : undefined,
    aud,
    sub: typeof claims.sub === 'string' ? claims.sub : undefined,
    exp: num(claims.exp),
    nbf: num(claims.nbf),
    iat: num(claims.iat),
    ...(validating !== undefined ? { webhook: { kind: 'validating' as const, name: validating } } : mutating !== undefined ? { webhook: { kind: 'mutating' as const, name: mutating } } : {}),
    ...(apiService !== undefined ? { apiService: apiServiceScope(apiService) } : {}),
  };
}
