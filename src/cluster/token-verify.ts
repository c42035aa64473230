// Judging a service-account token the way kube-apiserver does: the signature against the
// cluster's key set, the issuer, the audience, the subject, the times with the API server's fixed
// 60 s leeway (go-jose's, never configurable), and the private `kubernetes.io` claims: the bound
// pod, node or secret, the `jti` (TokenRequest tokens carry one since 1.32), and KEP-6060's
// webhook binding and attestation. The one place these checks live: the token self-test,
// `tokenguard token inspect` and caller authentication (src/server/caller-auth.ts) all call it,
// so a rejection reads the same everywhere, and the only place in src/ that verifies a signature.
//
// The result is a TokenCheck (a list of TokenProblems); the single checks (issuerProblem,
// fatalTimeProblem, ...) return a problem or undefined and allocate nothing when the token passes,
// so caller authentication can run them on every request.

import {
  compactVerify,
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  type JSONWebKeySet,
  type ProtectedHeaderParameters,
} from 'jose';

/** go-jose's leeway kube-apiserver applies to `exp`, `nbf` and `iat`. */
export const API_SERVER_LEEWAY_SECONDS = 60;
/** kube-apiserver mints a KEP-6060 webhook token for at most this long. */
export const MAX_WEBHOOK_TOKEN_SECONDS = 600;
/** The algorithms kube-apiserver signs with; anything else (`none`, HMAC) is refused. */
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512'];

export type WebhookKind = 'validating' | 'mutating';
export const WEBHOOK_KINDS: Record<WebhookKind, string> = {
  validating: 'ValidatingWebhookConfiguration',
  mutating: 'MutatingWebhookConfiguration',
};

export interface ObjectRef {
  name: string;
  uid?: string;
}

/**
 * The claims of a service-account token, read once into plain fields: what every check and every
 * report uses. A claim of the wrong type is absent here (and, in `kubernetes.io`, named in
 * `malformed`).
 */
export interface TokenClaims {
  iss?: string;
  sub?: string;
  aud: string[];
  exp?: number;
  nbf?: number;
  iat?: number;
  /** The token's id (TokenRequest tokens since 1.32). */
  jti?: string;
  namespace?: string;
  serviceAccount?: ObjectRef;
  pod?: ObjectRef;
  node?: ObjectRef;
  secret?: ObjectRef;
  /** Extended tokens (3607 s kube-api-access): after this the token counts as stale. */
  warnafter?: number;
  /** KEP-6060: the webhook configuration the token is bound to. */
  webhook?: { kind: WebhookKind; name: string; uid: string };
  /** KEP-6060: `kubernetes.io.attestations.admissionReviewAPIGroups[0]`, an API group or `*`. */
  admissionReviewAPIGroup?: string;
  /** What is wrong with the KEP-6060 claims, if anything (the API server never mints such a token). */
  malformed?: string;
}

export type TokenCause = 'issuer-change' | 'clock-skew';

/** One line per cause, for logs and Events: the upstream case, not a letter. */
export const CAUSES: Record<TokenCause, string> = {
  'issuer-change': 'issuer no longer accepted (kOps 1.26 outage, kops#16488)',
  'clock-skew': 'clock skew beyond the 60 s leeway',
};

export interface TokenProblem {
  code:
    | 'malformed'
    | 'unknown-key'
    | 'bad-signature'
    | 'issuer-not-accepted'
    | 'wrong-audience'
    | 'wrong-subject'
    | 'expired'
    | 'not-yet-valid'
    | 'issued-in-future'
    | 'within-leeway'
    | 'expiring-soon'
    | 'past-warnafter'
    | 'lifetime-too-long'
    | 'bad-binding'
    | 'wrong-binding'
    | 'wrong-route'
    | 'stale-uid'
    | 'wrong-attestation';
  /** Fatal problems make the token unacceptable; the others are notes. */
  fatal: boolean;
  message: string;
  /** The known outage this problem is. */
  cause?: TokenCause;
}

/** The verdict on a token: what it says and everything wrong with it (not just the first). */
export interface TokenCheck {
  /** No fatal problem. */
  valid: boolean;
  header?: ProtectedHeaderParameters;
  /** The claims exactly as signed. */
  payload?: Record<string, unknown>;
  claims?: TokenClaims;
  problems: TokenProblem[];
}

const fatal = (code: TokenProblem['code'], message: string, cause?: TokenCause): TokenProblem =>
  cause ? { code, fatal: true, message, cause } : { code, fatal: true, message };
const note = (code: TokenProblem['code'], message: string, cause?: TokenCause): TokenProblem =>
  cause ? { code, fatal: false, message, cause } : { code, fatal: false, message };
const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const ref = (v: unknown): ObjectRef | undefined => {
  if (!isObject(v) || typeof v.name !== 'string') return undefined;
  return typeof v.uid === 'string' ? { name: v.name, uid: v.uid } : { name: v.name };
};

/**
 * kube-apiserver writes the KEP-6060 binding as `validatingwebhookconfiguration` /
 * `mutatingwebhookconfiguration` (lower case, like its other claims: kubernetes PR #140113); the
 * KEP's draft spelled them in camel case. Either is read; a token with two bindings is malformed.
 */
const BINDING_CLAIMS: [string, WebhookKind][] = [
  ['validatingwebhookconfiguration', 'validating'],
  ['validatingWebhookConfiguration', 'validating'],
  ['mutatingwebhookconfiguration', 'mutating'],
  ['mutatingWebhookConfiguration', 'mutating'],
];

/** Read the claims of a decoded payload (whose signature may or may not have been checked). */
export function readClaims(payload: Record<string, unknown>): TokenClaims {
  const aud = payload.aud;
  const claims: TokenClaims = {
    iss: str(payload.iss),
    sub: str(payload.sub),
    aud: Array.isArray(aud) ? aud.filter((a): a is string => typeof a === 'string') : typeof aud === 'string' ? [aud] : [],
    exp: num(payload.exp),
    nbf: num(payload.nbf),
    iat: num(payload.iat),
    jti: str(payload.jti),
  };
  const k8s = payload['kubernetes.io'];
  if (!isObject(k8s)) return claims;
  claims.namespace = str(k8s.namespace);
  claims.serviceAccount = ref(k8s.serviceaccount);
  claims.pod = ref(k8s.pod);
  claims.node = ref(k8s.node);
  claims.secret = ref(k8s.secret);
  claims.warnafter = num(k8s.warnafter);

  const bindings = BINDING_CLAIMS.filter(([claim]) => k8s[claim] !== undefined);
  if (bindings.length > 1) {
    claims.malformed = `bound to more than one webhook configuration (${bindings.map(([c]) => c).join(', ')})`;
  } else if (bindings.length === 1) {
    const [claim, kind] = bindings[0]!;
    const bound = ref(k8s[claim]);
    if (!bound?.name || !bound.uid) claims.malformed = `kubernetes.io.${claim} is not {name, uid}`;
    else claims.webhook = { kind, name: bound.name, uid: bound.uid };
  }
  const attestations = k8s.attestations;
  if (attestations !== undefined) {
    const groups = isObject(attestations) ? attestations.admissionReviewAPIGroups : undefined;
    if (Array.isArray(groups) && groups.length === 1 && typeof groups[0] === 'string') claims.admissionReviewAPIGroup = groups[0];
    else claims.malformed ??= 'kubernetes.io.attestations.admissionReviewAPIGroups is not a one-element list of strings';
  }
  return claims;
}

/** The input is not a JWT at all; the message says what is wrong with it. */
export class TokenFormatError extends Error {}

export interface DecodedToken {
  header: ProtectedHeaderParameters;
  payload: Record<string, unknown>;
  claims: TokenClaims;
}

/** Decode without verifying anything (to show a token, or read the `sub` of our own). */
export function decodeToken(text: string): DecodedToken {
  const token = text.trim();
  if (token === '') throw new TokenFormatError('the token is empty');
  const parts = token.split('.');
  if (parts.length !== 3) {
    throw new TokenFormatError(`not a JWT: expected three dot-separated parts (header.claims.signature), found ${parts.length}`);
  }
  try {
    const payload = decodeJwt(token) as Record<string, unknown>;
    return { header: decodeProtectedHeader(token), payload, claims: readClaims(payload) };
  } catch (err) {
    throw new TokenFormatError(`not a JWT: ${errorText(err)}`);
  }
}

const lookups = new WeakMap<JSONWebKeySet, ReturnType<typeof createLocalJWKSet>>();
/** jose's key lookup for a key set, made once per key set object. */
function keyLookup(keys: JSONWebKeySet): ReturnType<typeof createLocalJWKSet> {
  let lookup = lookups.get(keys);
  if (!lookup) lookups.set(keys, (lookup = createLocalJWKSet(keys)));
  return lookup;
}

/**
 * The signature against the cluster's key set, and the claims it covers. Problems: `malformed`
 * (not a JWT, claims not a JSON object), `unknown-key` (a key id the key set lacks: another cluster,
 * or a key rotated out), `bad-signature`.
 */
export async function verifySignature(token: string, keys: JSONWebKeySet): Promise<TokenCheck> {
  const failed = (problem: TokenProblem, header?: ProtectedHeaderParameters): TokenCheck => ({ valid: false, header, problems: [problem] });
  let header: ProtectedHeaderParameters;
  try {
    header = decodeProtectedHeader(token);
  } catch (err) {
    return failed(fatal('malformed', `not a JWT: ${errorText(err)}`));
  }
  let bytes: Uint8Array;
  try {
    ({ payload: bytes } = await compactVerify(token, keyLookup(keys), { algorithms: ALGORITHMS }));
  } catch (err) {
    if (err instanceof errors.JWKSNoMatchingKey) {
      const kid = JSON.stringify(header.kid ?? '');
      return failed(fatal('unknown-key', `signed by a key the cluster does not publish (kid ${kid}): another cluster, or the signing key changed`), header);
    }
    if (err instanceof errors.JWSSignatureVerificationFailed) return failed(fatal('bad-signature', 'the signature does not verify with the published key'), header);
    return failed(fatal('bad-signature', `cannot verify the signature: ${errorText(err)}`), header);
  }
  let payload: unknown;
  try {
    payload = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    payload = undefined;
  }
  if (!isObject(payload)) return failed(fatal('malformed', 'the token claims are not a JSON object'), header);
  return { valid: true, header, payload, claims: readClaims(payload), problems: [] };
}

// ---- The single checks: a problem, or undefined (allocating nothing) when the token passes. ----

export function issuerProblem(iss: string | undefined, accepted: readonly string[]): TokenProblem | undefined {
  if (iss !== undefined && accepted.includes(iss)) return undefined;
  return fatal(
    'issuer-not-accepted',
    `issuer ${JSON.stringify(iss ?? null)} is not accepted (the API server accepts ${accepted.join(', ')})`,
    'issuer-change',
  );
}

export function audienceProblem(aud: readonly string[], accepted: ReadonlySet<string>): TokenProblem | undefined {
  for (const a of aud) if (accepted.has(a)) return undefined;
  const wanted = accepted.size === 1 ? `do not include ${JSON.stringify([...accepted][0])}` : `include none of ${[...accepted].join(', ')}`;
  return fatal('wrong-audience', `audiences ${JSON.stringify(aud)} ${wanted}`);
}

export function subjectProblem(sub: string | undefined, accepted: ReadonlySet<string>): TokenProblem | undefined {
  if (sub !== undefined && accepted.has(sub)) return undefined;
  return fatal('wrong-subject', `subject ${JSON.stringify(sub ?? null)} is not one of ${[...accepted].join(', ')}`);
}

function human(seconds: number): string {
  const s = Math.abs(Math.round(seconds));
  if (s < 120) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1).replace(/\.0$/, '')} h`;
  return `${(s / 86400).toFixed(1).replace(/\.0$/, '')} d`;
}
export { human as humanDuration };

/** How far `nbf` or `iat` (the one further ahead) is ahead of `now`, and which one it is. */
function ahead(t: Pick<TokenClaims, 'nbf' | 'iat'>, now: number): { seconds: number; claim: 'nbf' | 'iat' } {
  const nbf = t.nbf === undefined ? -Infinity : t.nbf - now;
  const iat = t.iat === undefined ? -Infinity : t.iat - now;
  // kube-apiserver checks both; tokens it issues have nbf == iat, so one is reported.
  return nbf >= iat ? { seconds: nbf, claim: 'nbf' } : { seconds: iat, claim: 'iat' };
}

function expiredProblem(exp: number, now: number): TokenProblem {
  return fatal('expired', `expired ${human(now - exp)} ago`);
}

function aheadProblem(a: { seconds: number; claim: 'nbf' | 'iat' }): TokenProblem {
  return fatal(
    a.claim === 'nbf' ? 'not-yet-valid' : 'issued-in-future',
    `${a.claim === 'nbf' ? 'not valid yet' : 'issued in the future'}: ${a.claim} is ${human(a.seconds)} ahead of the ` +
      'local clock, beyond the fixed 60 s leeway (clock skew)',
    'clock-skew',
  );
}

/**
 * The times as kube-apiserver judges them, at `now` (whole seconds since the epoch): expired, or
 * `nbf`/`iat` in the future, beyond the 60 s leeway. The first such problem.
 */
export function fatalTimeProblem(t: Pick<TokenClaims, 'exp' | 'nbf' | 'iat'>, now: number): TokenProblem | undefined {
  const leeway = API_SERVER_LEEWAY_SECONDS;
  if (t.exp !== undefined && now - t.exp > leeway) return expiredProblem(t.exp, now);
  if ((t.nbf === undefined || t.nbf - now <= leeway) && (t.iat === undefined || t.iat - now <= leeway)) return undefined;
  return aheadProblem(ahead(t, now));
}

/**
 * Every time finding: the fatal ones, plus notes: accepted only thanks to the leeway, in the last
 * 20 % of its life (kubelet refreshes at 80 %: a mounted token this old is not being refreshed),
 * past `kubernetes.io.warnafter`.
 */
export function timeProblems(t: TokenClaims, now: number): TokenProblem[] {
  const out: TokenProblem[] = [];
  const leeway = API_SERVER_LEEWAY_SECONDS;
  if (t.exp !== undefined) {
    const left = t.exp - now;
    if (left < -leeway) out.push(expiredProblem(t.exp, now));
    else if (left < 0) out.push(note('within-leeway', `expired ${human(-left)} ago, still accepted within the 60 s leeway`));
    else if (t.iat !== undefined && t.exp > t.iat && left < 0.2 * (t.exp - t.iat)) {
      out.push(note('expiring-soon', `expires in ${human(left)}: past 80 % of its ${human(t.exp - t.iat)} lifetime, when kubelet refreshes a mounted token`));
    }
  }
  const a = ahead(t, now);
  if (a.seconds > leeway) out.push(aheadProblem(a));
  else if (a.seconds > 0) {
    out.push(note('within-leeway', `${a.claim} is ${human(a.seconds)} ahead of the local clock: accepted only thanks to the fixed 60 s leeway`, 'clock-skew'));
  }
  if (t.warnafter !== undefined && t.warnafter < now) {
    out.push(note('past-warnafter', `past its warnafter time by ${human(now - t.warnafter)}: an extended token kubelet should have refreshed (stale token use)`));
  }
  return out;
}

/**
 * KEP-6060's claims on their own: well formed, a binding always with its attestation (and never
 * one without the other), and a lifetime kube-apiserver would mint (at most 600 s).
 */
export function webhookClaimsProblem(t: TokenClaims): TokenProblem | undefined {
  if (t.malformed !== undefined) return fatal('bad-binding', t.malformed);
  if (t.webhook === undefined) {
    if (t.admissionReviewAPIGroup === undefined) return undefined;
    return fatal('bad-binding', 'carries an admissionReviewAPIGroups attestation but is bound to no webhook configuration');
  }
  if (t.admissionReviewAPIGroup === undefined) {
    return fatal('wrong-attestation', `bound to ${WEBHOOK_KINDS[t.webhook.kind]} ${t.webhook.name} without an admissionReviewAPIGroups attestation`);
  }
  if (t.exp === undefined || t.iat === undefined || t.exp - t.iat > MAX_WEBHOOK_TOKEN_SECONDS) {
    const life = t.exp === undefined || t.iat === undefined ? 'without exp and iat' : `for ${t.exp - t.iat} s`;
    return fatal('lifetime-too-long', `bound to a webhook configuration and valid ${life}: kube-apiserver mints these for at most ${MAX_WEBHOOK_TOKEN_SECONDS} s`);
  }
  return undefined;
}

/** What the webhook binding of a token must match where it is presented. */
export interface BindingExpectation {
  /** The route's kind: a validating binding only on /validate, a mutating one only on /mutate. */
  kind: WebhookKind;
  /** The configurations the token may be bound to (of that kind). */
  names: ReadonlySet<string>;
  /**
   * The live object's uid: a string, `null` when no such configuration exists now, `undefined`
   * when not known (then only the name is checked).
   */
  liveUid?: string | null;
}

/** A bound token on the right route, bound to one of the expected configurations, as it is now. */
export function bindingProblem(t: TokenClaims, expect: BindingExpectation): TokenProblem | undefined {
  const w = t.webhook;
  if (w === undefined) return undefined;
  if (w.kind !== expect.kind) {
    return fatal('wrong-route', `bound to ${WEBHOOK_KINDS[w.kind]} ${w.name}, presented for a ${expect.kind} webhook`);
  }
  if (!expect.names.has(w.name)) {
    return fatal('wrong-binding', `bound to ${WEBHOOK_KINDS[w.kind]} ${JSON.stringify(w.name)}, not one of ${[...expect.names].join(', ')}`);
  }
  if (expect.liveUid === null) return fatal('stale-uid', `bound to ${WEBHOOK_KINDS[w.kind]} ${w.name} (uid ${w.uid}), which no longer exists`);
  if (expect.liveUid !== undefined && expect.liveUid !== w.uid) {
    return fatal('stale-uid', `bound to ${WEBHOOK_KINDS[w.kind]} ${w.name} uid ${w.uid}, but it is now uid ${expect.liveUid} (deleted and re-created)`);
  }
  return undefined;
}

/** A KEP-6060 token's attestation must cover the API group of the reviewed resource (`""`: core). */
export function attestationProblem(t: TokenClaims, group: string): TokenProblem | undefined {
  const attested = t.admissionReviewAPIGroup;
  if (attested === undefined || attested === '*' || attested === group) return undefined;
  return fatal('wrong-attestation', `attested for API group ${JSON.stringify(attested)}, asked about ${group === '' ? 'the core group ""' : JSON.stringify(group)}`);
}

export interface VerifyOptions {
  keys: JSONWebKeySet;
  /** Issuers the API server accepts (the served one first); empty: not checked. */
  acceptedIssuers: readonly string[];
  /** Audience the token must carry; undefined: not checked. */
  audience?: string;
  now: Date;
}

/** Every check that needs no context beyond the token: issuer, audience, times, KEP-6060 claims. */
export function claimsProblems(claims: TokenClaims, opts: Omit<VerifyOptions, 'keys'>): TokenProblem[] {
  const problems: TokenProblem[] = [];
  const add = (p: TokenProblem | undefined) => p && problems.push(p);
  if (opts.acceptedIssuers.length) add(issuerProblem(claims.iss, opts.acceptedIssuers));
  if (opts.audience !== undefined) add(audienceProblem(claims.aud, new Set([opts.audience])));
  problems.push(...timeProblems(claims, Math.floor(opts.now.getTime() / 1000)));
  add(webhookClaimsProblem(claims));
  return problems;
}

/** Signature, issuer, audience, times and KEP-6060 claims, every problem listed (not just the first). */
export async function verifyToken(text: string, opts: VerifyOptions): Promise<TokenCheck> {
  let decoded: DecodedToken;
  try {
    decoded = decodeToken(text);
  } catch (err) {
    return { valid: false, problems: [fatal('malformed', errorText(err))] };
  }
  const signed = await verifySignature(text.trim(), opts.keys);
  const problems = [...signed.problems, ...claimsProblems(decoded.claims, opts)];
  return { valid: !problems.some((p) => p.fatal), header: decoded.header, payload: decoded.payload, claims: decoded.claims, problems };
}

/** A JSON Web Key Set, checked enough for jose to use it; throws with what is wrong. */
export function parseKeySet(body: unknown): JSONWebKeySet {
  const keys = (body as JSONWebKeySet | undefined)?.keys;
  if (!Array.isArray(keys)) throw new Error('not a JSON Web Key Set: no "keys" array');
  if (keys.some((k) => !k || typeof k !== 'object' || typeof (k as { kty?: unknown }).kty !== 'string')) {
    throw new Error('not a JSON Web Key Set: a key without "kty"');
  }
  createLocalJWKSet({ keys }); // validates the shape the way verification will use it
  return { keys };
}
