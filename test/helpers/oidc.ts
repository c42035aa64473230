// Service-account token machinery on the fake API server, through its route-registration API:
// OIDC discovery, the JWKS, TokenRequest and Event creation, with an RSA key generated per test
// (jose generateKeyPair) and tokens signed the way kube-apiserver signs them.

import { exportJWK, generateKeyPair, SignJWT, type JSONWebKeySet, type JWTPayload } from 'jose';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { statusBody, type FakeApiServer } from './fake-apiserver.js';

export interface SigningKey {
  kid: string;
  privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
  jwk: Record<string, unknown>;
}

export async function makeSigningKey(kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, use: 'sig', alg: 'RS256' };
  return { kid, privateKey, jwk };
}

export interface TokenSpec {
  issuer: string;
  audience: string | string[];
  /** Issue time in seconds since the epoch (default: now). */
  iat?: number;
  lifetimeSeconds?: number;
  namespace?: string;
  serviceAccount?: string;
  pod?: string;
  warnafter?: number;
  extra?: JWTPayload;
}

/** A token shaped like kube-apiserver's (RS256, kid, nbf = iat, kubernetes.io claims). */
export async function signToken(key: SigningKey, spec: TokenSpec): Promise<string> {
  const iat = spec.iat ?? Math.floor(Date.now() / 1000);
  const ns = spec.namespace ?? 'tokenguard';
  const sa = spec.serviceAccount ?? 'tokenguard';
  const k8s: Record<string, unknown> = {
    namespace: ns,
    serviceaccount: { name: sa, uid: '00000000-0000-0000-0000-000000000001' },
  };
  if (spec.pod) k8s.pod = { name: spec.pod, uid: '00000000-0000-0000-0000-000000000002' };
  if (spec.warnafter !== undefined) k8s.warnafter = spec.warnafter;
  return new SignJWT({ 'kubernetes.io': k8s, ...spec.extra })
    .setProtectedHeader({ alg: 'RS256', kid: key.kid })
    .setIssuer(spec.issuer)
    .setSubject(`system:serviceaccount:${ns}:${sa}`)
    .setAudience(spec.audience)
    .setIssuedAt(iat)
    .setNotBefore(iat)
    .setExpirationTime(iat + (spec.lifetimeSeconds ?? 3600))
    .sign(key.privateKey);
}

export interface OidcServer {
  /** The served issuer; change it to simulate an issuer change. */
  issuer: string;
  /** Keys published in the JWKS; the first signs TokenRequest answers. */
  keys: SigningKey[];
  /** Seconds the fake API server's clock is ahead of the real one (clock skew beyond the 60 s leeway). */
  clockAheadSeconds: number;
  /** Issuer the TokenRequest tokens carry (default: `issuer`). */
  tokenIssuer?: string;
  /** Make discovery answer 503. */
  discoveryDown: boolean;
  /** Make TokenRequest answer 403. */
  tokenRequestForbidden: boolean;
  readonly tokenRequests: { namespace: string; name: string; body: any }[];
  readonly events: any[];
  jwks(): JSONWebKeySet;
}

const JWK_SET = 'application/jwk-set+json';

function json(res: ServerResponse, status: number, body: unknown, contentType = 'application/json'): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Whether kube-apiserver's negotiation of its non-resource JSON documents admits `type` for an
 * `Accept` header, as measured on v1.26: no header, `*\/*` or exactly `type` (case-sensitive,
 * parameters and even `q=0` ignored); `application/*` and `APPLICATION/...` get 406.
 */
export function accepts(header: string | undefined, type: string): boolean {
  if (header === undefined || header.trim() === '') return true;
  return header.split(',').some((range) => {
    const media = range.split(';')[0]!.trim();
    return media === '*/*' || media === type;
  });
}

function notAcceptable(res: ServerResponse, type: string): void {
  json(res, 406, statusBody(406, 'NotAcceptable', `406: Not Acceptable\n\nAvailable representations: ${type}`));
}

export async function serveOidc(fake: FakeApiServer, issuer = 'https://kubernetes.default.svc'): Promise<OidcServer> {
  const oidc: OidcServer = {
    issuer,
    keys: [await makeSigningKey('key-1')],
    clockAheadSeconds: 0,
    discoveryDown: false,
    tokenRequestForbidden: false,
    tokenRequests: [],
    events: [],
    jwks: () => ({ keys: oidc.keys.map((k) => k.jwk) }),
  };
  // Custom routes bypass the fake's authentication: check the bearer token like the real server.
  const authorized = (req: IncomingMessage, res: ServerResponse) => {
    if (fake.token && req.headers.authorization !== `Bearer ${fake.token}`) {
      json(res, 401, statusBody(401, 'Unauthorized', 'Unauthorized'));
      return false;
    }
    return true;
  };
  fake.route('GET', /^\/\.well-known\/openid-configuration$/, (req, res) => {
    if (!authorized(req, res)) return;
    if (oidc.discoveryDown) return json(res, 503, statusBody(503, 'ServiceUnavailable', 'discovery unavailable'));
    if (!accepts(req.headers.accept, 'application/json')) return notAcceptable(res, 'application/json');
    json(res, 200, {
      issuer: oidc.issuer,
      jwks_uri: 'https://127.0.0.1:6443/openid/v1/jwks',
      response_types_supported: ['id_token'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['RS256'],
    });
  });
  fake.route('GET', /^\/openid\/v1\/jwks$/, (req, res) => {
    if (!authorized(req, res)) return;
    // kube-apiserver has one representation of the key set, and `application/json` is not it.
    if (!accepts(req.headers.accept, JWK_SET)) return notAcceptable(res, JWK_SET);
    json(res, 200, oidc.jwks(), JWK_SET);
  });
  fake.route('POST', /^\/api\/v1\/namespaces\/([^/]+)\/serviceaccounts\/([^/]+)\/token$/, async (req, res, { match, body }) => {
    if (!authorized(req, res)) return;
    const [, namespace, name] = match as unknown as [string, string, string];
    const parsed = JSON.parse(body);
    oidc.tokenRequests.push({ namespace, name, body: parsed });
    if (oidc.tokenRequestForbidden) {
      return json(res, 403, statusBody(403, 'Forbidden', `serviceaccounts "${name}" is forbidden: cannot create resource "serviceaccounts/token"`));
    }
    // Answered as kube-apiserver v1.26 does (measured): the ServiceAccount must exist, and the
    // lifetime is validated before anything is signed.
    if (!fake.get('serviceaccounts', namespace, name)) {
      return json(res, 404, { ...statusBody(404, 'NotFound', `serviceaccounts "${name}" not found`), details: { name, kind: 'serviceaccounts' } });
    }
    const lifetime = parsed.spec?.expirationSeconds ?? 3600;
    if (typeof lifetime !== 'number' || lifetime < 600) {
      const why = `spec.expirationSeconds: Invalid value: ${lifetime}: may not specify a duration less than 10 minutes`;
      return json(res, 422, statusBody(422, 'Invalid', `TokenRequest.authentication.k8s.io "" is invalid: ${why}`));
    }
    const token = await signToken(oidc.keys[0]!, {
      issuer: oidc.tokenIssuer ?? oidc.issuer,
      audience: parsed.spec?.audiences?.length ? parsed.spec.audiences : [oidc.issuer],
      iat: Math.floor(Date.now() / 1000) + oidc.clockAheadSeconds,
      lifetimeSeconds: lifetime,
      namespace,
      serviceAccount: name,
    });
    const exp = new Date((Math.floor(Date.now() / 1000) + oidc.clockAheadSeconds + lifetime) * 1000).toISOString();
    json(res, 201, {
      kind: 'TokenRequest',
      apiVersion: 'authentication.k8s.io/v1',
      metadata: { name, namespace, creationTimestamp: null },
      spec: parsed.spec,
      status: { token, expirationTimestamp: exp },
    });
  });
  fake.route('POST', /^\/api\/v1\/namespaces\/([^/]+)\/events$/, (req, res, { match, body }) => {
    if (!authorized(req, res)) return;
    const event = JSON.parse(body);
    if (event.metadata?.namespace && event.metadata.namespace !== match[1]) {
      return json(res, 422, statusBody(422, 'Invalid', 'the namespace of the object does not match the namespace on the request'));
    }
    const stored = { ...event, metadata: { ...event.metadata, name: `${event.metadata?.generateName ?? 'e.'}${oidc.events.length}` } };
    oidc.events.push(stored);
    json(res, 201, stored);
  });
  return oidc;
}
