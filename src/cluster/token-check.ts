// Judging a service-account token the way kube-apiserver does, with jose: the signature against
// the cluster's JWKS, the issuer against the accepted ones, the audience, and the times with the
// API server's fixed 60 s leeway (go-jose's, never configurable). Shared by the token self-test
// and `tokenguard token inspect`, so both explain a rejection in the same words.

import { compactVerify, createLocalJWKSet, decodeJwt, decodeProtectedHeader, errors, type JSONWebKeySet, type JWTPayload, type ProtectedHeaderParameters } from 'jose';

/** go-jose's leeway kube-apiserver applies to `exp`, `nbf` and `iat`. */
export const API_SERVER_LEEWAY_SECONDS = 60;

/** The private claims kube-apiserver puts in a service-account token. */
export interface KubernetesClaims extends JWTPayload {
  'kubernetes.io'?: {
    namespace?: string;
    serviceaccount?: { name?: string; uid?: string };
    pod?: { name?: string; uid?: string };
    node?: { name?: string; uid?: string };
    secret?: { name?: string; uid?: string };
    /** Extended tokens (3607 s kube-api-access): after this the token counts as stale. */
    warnafter?: number;
  };
}

export interface DecodedToken {
  header: ProtectedHeaderParameters;
  claims: KubernetesClaims;
}

/** The input is not a JWT at all; the message says what is wrong with it. */
export class TokenFormatError extends Error {}

export function decodeToken(text: string): DecodedToken {
  const token = text.trim();
  if (token === '') throw new TokenFormatError('the token is empty');
  const parts = token.split('.');
  if (parts.length !== 3) {
    throw new TokenFormatError(`not a JWT: expected three dot-separated parts (header.claims.signature), found ${parts.length}`);
  }
  try {
    return { header: decodeProtectedHeader(token), claims: decodeJwt(token) as KubernetesClaims };
  } catch (err) {
    throw new TokenFormatError(`not a JWT: ${(err as Error).message}`);
  }
}

export type Incident = 'B' | 'C';

export interface TokenProblem {
  code:
    | 'malformed'
    | 'unknown-key'
    | 'bad-signature'
    | 'issuer-not-accepted'
    | 'wrong-audience'
    | 'expired'
    | 'not-yet-valid'
    | 'issued-in-future'
    | 'within-leeway'
    | 'expiring-soon'
    | 'past-warnafter';
  /** Fatal problems make kube-apiserver reject the token; the others are notes. */
  fatal: boolean;
  message: string;
  /** The incident of the brief this problem is: B (issuer change), C (clock skew). */
  incident?: Incident;
}

/** Whole seconds from `now` to a NumericDate claim (positive: in the future). */
const secondsUntil = (claim: number, now: Date) => claim - Math.floor(now.getTime() / 1000);

function human(seconds: number): string {
  const s = Math.abs(Math.round(seconds));
  if (s < 120) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1).replace(/\.0$/, '')} h`;
  return `${(s / 86400).toFixed(1).replace(/\.0$/, '')} d`;
}
export { human as humanDuration };

/**
 * Time checks against the local clock, as kube-apiserver makes them (60 s leeway), plus notes:
 * a token in the last 20 % of its life (kubelet refreshes at 80 %: a mounted token this old is not
 * being refreshed) and a token past `kubernetes.io.warnafter`.
 */
export function timeProblems(claims: KubernetesClaims, now: Date): TokenProblem[] {
  const out: TokenProblem[] = [];
  const leeway = API_SERVER_LEEWAY_SECONDS;
  const { exp, nbf, iat } = claims;
  if (typeof exp === 'number') {
    const left = secondsUntil(exp, now);
    if (left < -leeway) out.push({ code: 'expired', fatal: true, message: `expired ${human(-left)} ago` });
    else if (left < 0) out.push({ code: 'within-leeway', fatal: false, message: `expired ${human(-left)} ago, still accepted within the 60 s leeway` });
    else if (typeof iat === 'number' && exp > iat && left < 0.2 * (exp - iat)) {
      out.push({
        code: 'expiring-soon',
        fatal: false,
        message: `expires in ${human(left)}: past 80 % of its ${human(exp - iat)} lifetime, when kubelet refreshes a mounted token`,
      });
    }
  }
  // kube-apiserver checks both; tokens it issues have nbf == iat, so report the one further ahead once.
  const ahead = Math.max(
    typeof nbf === 'number' ? secondsUntil(nbf, now) : -Infinity,
    typeof iat === 'number' ? secondsUntil(iat, now) : -Infinity,
  );
  const code = typeof nbf === 'number' && secondsUntil(nbf, now) === ahead ? 'not-yet-valid' : 'issued-in-future';
  const claim = code === 'not-yet-valid' ? 'nbf' : 'iat';
  if (ahead > leeway) {
    out.push({
      code,
      fatal: true,
      incident: 'C',
      message:
        `${code === 'not-yet-valid' ? 'not valid yet' : 'issued in the future'}: ${claim} is ${human(ahead)} ahead of the ` +
        'local clock, beyond the fixed 60 s leeway (clock skew)',
    });
  } else if (ahead > 0) {
    out.push({
      code: 'within-leeway',
      fatal: false,
      incident: 'C',
      message: `${claim} is ${human(ahead)} ahead of the local clock: accepted only thanks to the fixed 60 s leeway`,
    });
  }
  const warnafter = claims['kubernetes.io']?.warnafter;
  if (typeof warnafter === 'number' && secondsUntil(warnafter, now) < 0) {
    out.push({
      code: 'past-warnafter',
      fatal: false,
      message: `past its warnafter time by ${human(-secondsUntil(warnafter, now))}: an extended token kubelet should have refreshed (stale token use)`,
    });
  }
  return out;
}

export interface VerifyOptions {
  keys: JSONWebKeySet;
  /** Issuers the API server accepts (the served one first); empty: not checked. */
  acceptedIssuers: readonly string[];
  /** Audience the token must carry; undefined: not checked. */
  audience?: string;
  now: Date;
}

export interface Verdict {
  valid: boolean;
  decoded?: DecodedToken;
  problems: TokenProblem[];
}

/** Signature, issuer, audience and times, all problems listed (not just the first). */
export async function verifyToken(token: string, opts: VerifyOptions): Promise<Verdict> {
  let decoded: DecodedToken;
  try {
    decoded = decodeToken(token);
  } catch (err) {
    return { valid: false, problems: [{ code: 'malformed', fatal: true, message: (err as Error).message }] };
  }
  const problems: TokenProblem[] = [];
  try {
    await compactVerify(token.trim(), createLocalJWKSet(opts.keys));
  } catch (err) {
    if (err instanceof errors.JWKSNoMatchingKey) {
      problems.push({
        code: 'unknown-key',
        fatal: true,
        message: `signed by a key the cluster does not publish (kid ${JSON.stringify(decoded.header.kid ?? '')}): another cluster, or the signing key changed`,
      });
    } else if (err instanceof errors.JWSSignatureVerificationFailed) {
      problems.push({ code: 'bad-signature', fatal: true, message: 'the signature does not verify with the published key' });
    } else {
      problems.push({ code: 'bad-signature', fatal: true, message: `cannot verify the signature: ${(err as Error).message}` });
    }
  }
  const iss = decoded.claims.iss;
  if (opts.acceptedIssuers.length && (typeof iss !== 'string' || !opts.acceptedIssuers.includes(iss))) {
    problems.push({
      code: 'issuer-not-accepted',
      fatal: true,
      incident: 'B',
      message: `issuer ${JSON.stringify(iss ?? null)} is not accepted (the API server accepts ${opts.acceptedIssuers.join(', ')})`,
    });
  }
  if (opts.audience !== undefined) {
    const aud = decoded.claims.aud;
    const auds = Array.isArray(aud) ? aud : typeof aud === 'string' ? [aud] : [];
    if (!auds.includes(opts.audience)) {
      problems.push({
        code: 'wrong-audience',
        fatal: true,
        message: `audiences ${JSON.stringify(auds)} do not include ${JSON.stringify(opts.audience)}`,
      });
    }
  }
  problems.push(...timeProblems(decoded.claims, opts.now));
  return { valid: !problems.some((p) => p.fatal), decoded, problems };
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
