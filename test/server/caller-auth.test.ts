// Caller authentication (server.callerAuth) over real HTTPS, with bearer tokens signed by the fake
// API server's key set and read through the real issuer discovery (IssuerMonitor): each result of
// tokenguard_caller_auth_total, the KEP-6060 claim shapes against the route and the review's kind,
// the cache and key-set changes, audit mode, client certificates, and bad Authorization headers.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';
import { CompactSign } from 'jose';
import { ApiClient } from '../../src/cluster/client.js';
import { IssuerMonitor } from '../../src/cluster/issuers.js';
import { resolveConfig } from '../../src/config/load.js';
import { createLogger, silentLogger } from '../../src/observability/log.js';
import { registry } from '../../src/observability/metrics.js';
import { BUILTIN_POLICIES } from '../../src/policies/index.js';
import { apiServiceScope, derivedAudiences, KEY_REFRESH_MS } from '../../src/server/caller-auth.js';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { reviewByPrefix } from '../helpers/fixtures.js';
import { makeSigningKey, serveOidc, signToken, type OidcServer, type TokenSpec } from '../helpers/oidc.js';
import { httpsCall, startTestServer, type TestServer } from '../helpers/server.js';
import { makeCerts, type CertSet } from '../helpers/tls.js';

const SERVED = 'https://kubernetes.default.svc';
const SVC = 'https://tokenguard.tokenguard.svc';
const POD = () => JSON.stringify(reviewByPrefix('006')); // a Pod, core/v1
const DEPLOYMENT = () => JSON.stringify(reviewByPrefix('028')); // a Deployment, apps/v1

async function authCount(method: string, result: string): Promise<number> {
  const metric = await registry.getSingleMetric('tokenguard_caller_auth_total')!.get();
  return metric.values.find((v) => v.labels.method === method && v.labels.result === result)?.value ?? 0;
}

describe('caller authentication with bearer tokens', () => {
  let fake: FakeApiServer;
  let oidc: OidcServer;
  let monitor: IssuerMonitor;
  let enforce: TestServer;
  let audit: TestServer;
  const auditLog: any[] = [];

  /** A token as kube-apiserver mints it for kube-system/webhook-auth (unless told otherwise). */
  const token = (spec: Partial<TokenSpec> = {}, key = oidc.keys[0]!) =>
    signToken(key, { issuer: SERVED, audience: SVC, namespace: 'kube-system', serviceAccount: 'webhook-auth', ...spec });
  const call = (server: TestServer, route: string, bearer: string | undefined, body = POD()) =>
    server.post(route, body, bearer === undefined ? {} : { authorization: `Bearer ${bearer}` });

  before(async () => {
    fake = await FakeApiServer.start();
    oidc = await serveOidc(fake, SERVED);
    const kc = new KubeConfig();
    kc.loadFromFile(fake.kubeconfigPath);
    monitor = new IssuerMonitor({ client: new ApiClient(kc), logger: silentLogger, refreshSeconds: 3600 });
    await monitor.refresh();
    enforce = await startTestServer({ config: { server: { callerAuth: { mode: 'enforce' } } }, keySource: monitor });
    audit = await startTestServer({
      config: { server: { callerAuth: { mode: 'audit' } } },
      keySource: monitor,
      logger: createLogger('warn', (l) => auditLog.push(JSON.parse(l))),
    });
  });
  after(async () => {
    await enforce.shutdown();
    await audit.shutdown();
    await fake.close();
  });

  it('a token of kube-system/webhook-auth for tokenguard\'s Service passes on both routes; /healthz, /readyz, /metrics need none', async () => {
    const before = await authCount('bearer_token', 'ok');
    const t = await token();
    for (const route of ['/validate', '/mutate']) {
      const r = await call(enforce, route, t);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.response.allowed, true);
    }
    assert.equal(await authCount('bearer_token', 'ok'), before + 2);
    for (const path of ['/healthz', '/readyz', '/metrics']) assert.equal((await enforce.get(path)).status, 200, path);
  });

  it('the default audiences: the Service URL, with and without :443, alone or with the route\'s path', async () => {
    assert.deepEqual(derivedAudiences({ name: 'tokenguard', namespace: 'tokenguard', port: 443 }, 'validate'), [
      SVC,
      `${SVC}/validate`,
      `${SVC}:443`,
      `${SVC}:443/validate`,
    ]);
    assert.deepEqual(derivedAudiences({ name: 'tg', namespace: 'sec', port: 8443 }, 'mutate'), ['https://tg.sec.svc:8443', 'https://tg.sec.svc:8443/mutate']);
    const forValidate = await token({ audience: `${SVC}:443/validate` });
    assert.equal((await call(enforce, '/validate', forValidate)).status, 200);
    const wrongRoute = await call(enforce, '/mutate', forValidate);
    assert.equal(wrongRoute.status, 401);
    assert.match(wrongRoute.json.error.message, /^caller not authenticated: audiences \["https:\/\/tokenguard\.tokenguard\.svc:443\/validate"\] include none of /);
  });

  const refusals: [string, () => Promise<string | undefined>, string, RegExp][] = [
    ['no credentials', async () => undefined, 'missing', /^caller not authenticated: no client certificate and no bearer token$/],
    ['another audience', () => token({ audience: 'https://elsewhere.example.com' }), 'wrong_audience', /include none of https:\/\/tokenguard/],
    ['expired beyond the 60 s leeway', () => token({ iat: Math.floor(Date.now() / 1000) - 7200, lifetimeSeconds: 3600 }), 'expired', /expired 36\d\d s ago/],
    ['not valid yet beyond the leeway', () => token({ iat: Math.floor(Date.now() / 1000) + 120 }), 'expired', /not valid for another 1\d\d s \(nbf\)/],
    ['another service account', () => token({ namespace: 'default', serviceAccount: 'intruder' }), 'wrong_subject', /subject "system:serviceaccount:default:intruder" is not one of system:serviceaccount:kube-system:webhook-auth/],
    ['another issuer', () => token({ issuer: 'https://other.example.com' }), 'unknown_issuer', /issuer "https:\/\/other\.example\.com" is not accepted \(https:\/\/kubernetes\.default\.svc\)/],
    ['a key the cluster does not publish', async () => token({}, await makeSigningKey('elsewhere')), 'invalid_signature', /signed by a key the cluster does not publish \(kid "elsewhere"\)/],
    ['a forged key with the published kid', async () => token({}, await makeSigningKey('key-1')), 'invalid_signature', /the signature does not verify with the cluster's key/],
    ['garbage', async () => 'garbage', 'invalid_signature', /the bearer token is not a JWT/],
  ];
  for (const [what, make, result, message] of refusals) {
    it(`refused in enforce with 401 and its reason: ${what} (${result})`, async () => {
      const bearer = await make();
      const method = bearer === undefined ? 'none' : 'bearer_token';
      const before = await authCount(method, result);
      const r = await call(enforce, '/validate', bearer);
      assert.equal(r.status, 401, r.text);
      assert.match(r.json.error.message, message);
      assert.equal(r.headers['www-authenticate'], 'Bearer');
      assert.equal(await authCount(method, result), before + 1);
    });
  }

  it('a validly signed token whose claims are not an object is refused, never a crash; so is one on a body too large to read', async () => {
    const signed = await new CompactSign(new TextEncoder().encode('null')).setProtectedHeader({ alg: 'RS256', kid: 'key-1' }).sign(oidc.keys[0]!.privateKey);
    const r = await call(enforce, '/validate', signed);
    assert.equal(r.status, 401);
    assert.match(r.json.error.message, /the token claims are not a JSON object/);
    // A token still being verified when its request is refused for size: nothing may be left unhandled.
    const big = await enforce.post('/validate', 'x'.repeat(9 * 1024 * 1024), { authorization: `Bearer ${await token({}, await makeSigningKey('never-seen'))}` });
    assert.equal(big.status, 413);
    assert.equal((await enforce.get('/healthz')).status, 200);
  });

  it('an expired token leaves the cache once it is refused', async () => {
    const t = await token({ iat: Math.floor(Date.now() / 1000) - 7200, lifetimeSeconds: 3600, extra: { jti: randomUUID() } });
    const before = enforce.callerAuth!.cachedTokens;
    assert.equal((await call(enforce, '/validate', t)).status, 401); // verified, cached, judged expired
    assert.equal((await call(enforce, '/validate', t)).status, 401); // from the cache: expired, dropped
    assert.equal(enforce.callerAuth!.cachedTokens, before);
  });

  it('within the 60 s leeway an expired token still passes, as at kube-apiserver', async () => {
    const t = await token({ iat: Math.floor(Date.now() / 1000) - 3630, lifetimeSeconds: 3600 });
    assert.equal((await call(enforce, '/validate', t)).status, 200);
  });

  it('KEP-6060 webhook-configuration claims must match the route and name tokenguard\'s own configuration', async () => {
    const bound = (kind: 'validatingWebhookConfiguration' | 'mutatingWebhookConfiguration', name: string) =>
      token({ extra: { 'kubernetes.io': { namespace: 'kube-system', serviceaccount: { name: 'webhook-auth', uid: 'u' }, [kind]: { name, uid: 'c-1' } } } });
    assert.equal((await call(enforce, '/validate', await bound('validatingWebhookConfiguration', 'tokenguard'))).status, 200);
    assert.equal((await call(enforce, '/mutate', await bound('mutatingWebhookConfiguration', 'tokenguard'))).status, 200);
    const crossed = await call(enforce, '/mutate', await bound('validatingWebhookConfiguration', 'tokenguard'));
    assert.equal(crossed.status, 401);
    assert.match(crossed.json.error.message, /a token bound to a validating webhook configuration on \/mutate/);
    const other = await call(enforce, '/validate', await bound('validatingWebhookConfiguration', 'kyverno-resource-validating'));
    assert.equal(other.status, 401);
    assert.match(other.json.error.message, /bound to webhook configuration "kyverno-resource-validating", not tokenguard's \(tokenguard\)/);
  });

  it('an apiService claim may only ask about its group and version (v1 alone is the core group)', async () => {
    assert.deepEqual(apiServiceScope('v1.apps'), { name: 'v1.apps', group: 'apps', version: 'v1' });
    assert.deepEqual(apiServiceScope('v1'), { name: 'v1', group: '', version: 'v1' });
    const bound = (name: string) =>
      token({ extra: { 'kubernetes.io': { namespace: 'kube-system', serviceaccount: { name: 'webhook-auth', uid: 'u' }, apiService: { name, uid: 'a-1' } } } });
    assert.equal((await call(enforce, '/validate', await bound('v1'), POD())).status, 200);
    assert.equal((await call(enforce, '/validate', await bound('v1.apps'), DEPLOYMENT())).status, 200);
    const before = await authCount('bearer_token', 'scope_mismatch');
    const r = await call(enforce, '/validate', await bound('v1.apps'), POD());
    assert.equal(r.status, 401);
    assert.match(r.json.error.message, /a token bound to APIService v1\.apps asks about v1$/);
    assert.equal(await authCount('bearer_token', 'scope_mismatch'), before + 1);
  });

  it('a verified token is cached: the next request skips the signature; a key-set change drops it', async () => {
    const rotated = await makeSigningKey('key-2');
    const t = await token({ extra: { jti: randomUUID() } }, oidc.keys[0]); // unlike any token before it
    const cachedBefore = enforce.callerAuth!.cachedTokens;
    for (let i = 0; i < 3; i++) assert.equal((await call(enforce, '/validate', t)).status, 200);
    assert.equal(enforce.callerAuth!.cachedTokens, cachedBefore + 1, 'verified once, then served from the cache');
    // Removing the key from the served key set: the cached token is dropped and now refused, at
    // once and not after its expiry.
    const original = oidc.keys;
    oidc.keys = [rotated];
    try {
      await monitor.refresh();
      const r = await call(enforce, '/validate', t);
      assert.equal(r.status, 401);
      assert.match(r.json.error.message, /signed by a key the cluster does not publish \(kid "key-1"\)/);
      // A token of the new key is verified (the key set is already read).
      assert.equal((await call(enforce, '/validate', await token({}, rotated))).status, 200);
    } finally {
      oidc.keys = original;
      await monitor.refresh();
    }
  });

  it('an unknown key id makes discovery re-read the key set before the token is judged', async () => {
    const added = await makeSigningKey('key-3');
    oidc.keys = [...oidc.keys, added];
    // The forged key ids above re-read the key set a moment ago; it is re-read at most once a second.
    await new Promise((r) => setTimeout(r, KEY_REFRESH_MS));
    try {
      const reads = () => fake.requests.filter((r) => r.path === '/openid/v1/jwks').length;
      const before = reads();
      const r = await call(enforce, '/validate', await token({}, added));
      assert.equal(r.status, 200, r.text);
      assert.equal(reads(), before + 1);
    } finally {
      oidc.keys = oidc.keys.filter((k) => k !== added);
      await monitor.refresh();
    }
  });

  it('audit mode answers every review, counts the failures and logs each failing caller once a minute, never the token', async () => {
    const bad = await token({ audience: 'https://elsewhere.example.com' });
    const before = await authCount('bearer_token', 'wrong_audience');
    for (let i = 0; i < 3; i++) {
      const r = await call(audit, '/validate', bad);
      assert.equal(r.status, 200);
      assert.equal(r.json.response.allowed, true);
    }
    assert.equal((await call(audit, '/validate', undefined)).status, 200);
    assert.equal(await authCount('bearer_token', 'wrong_audience'), before + 3);
    const lines = auditLog.filter((l) => l.msg === 'caller not authenticated');
    assert.deepEqual(
      lines.map((l) => [l.address, l.result, l.mode]),
      [
        ['127.0.0.1', 'wrong_audience', 'audit'],
        ['127.0.0.1', 'missing', 'audit'],
      ],
    );
    assert.ok(!JSON.stringify(auditLog).includes(bad.split('.')[2]!), 'the token never reaches the log');
  });

  it('bad Authorization headers get 401 in enforce, never a crash: another scheme, an empty Bearer, 64 KiB', async () => {
    const cases: [string, string, RegExp][] = [
      ['Basic dXNlcjpwYXNz', 'missing', /the Authorization header is not "Bearer <token>"/],
      ['Bearer', 'missing', /the Authorization header is not "Bearer <token>"/],
      [`Bearer ${'a'.repeat(64 * 1024)}`, 'invalid_signature', /the bearer token is not a JWT \(65536 characters\)/],
      ['Bearer a.b.c', 'invalid_signature', /the bearer token is not a JWT: /],
      ['Bearer two tokens', 'invalid_signature', /the bearer token is not a JWT/],
    ];
    for (const [header, , message] of cases) {
      const r = await enforce.post('/validate', POD(), { authorization: header });
      assert.equal(r.status, 401, `${header.slice(0, 30)}: ${r.text.slice(0, 200)}`);
      assert.match(r.json.error.message, message, header.slice(0, 30));
    }
    assert.equal((await enforce.get('/healthz')).status, 200);
  });
});

describe('caller authentication with client certificates, or either', () => {
  let serving: CertSet;
  let clients: CertSet;
  let server: TestServer;
  before(async () => {
    serving = makeCerts();
    clients = makeCerts();
    // No key set: only certificates can pass; a token is then refused as unverifiable.
    server = await startTestServer({ certs: serving, config: { server: { callerAuth: { mode: 'enforce', clientCertificate: { caFile: clients.caFile } } } } });
  });
  after(() => server.shutdown());

  it('a certificate signed by the client CA passes; a token without a key set is refused as unknown_issuer', async () => {
    const cert = { cert: readFileSync(clients.certFile), key: readFileSync(clients.keyFile) };
    const withCert = await httpsCall(server.port, 'POST', '/validate', POD(), { 'content-type': 'application/json' }, { ca: serving.ca, ...cert });
    assert.equal(withCert.status, 200);
    const key = await makeSigningKey('k');
    const t = await signToken(key, { issuer: SERVED, audience: SVC, namespace: 'kube-system', serviceAccount: 'webhook-auth' });
    const withToken = await server.post('/validate', POD(), { authorization: `Bearer ${t}` });
    assert.equal(withToken.status, 401);
    assert.match(withToken.json.error.message, /the cluster's key set is unknown/);
  });
});

describe('caller authentication configuration', () => {
  const load = (server: unknown) => () => resolveConfig({ server }, 'config.yaml', BUILTIN_POLICIES);
  it('defaults: off, the webhook-auth subject, tokenguard\'s Service and webhook configurations', () => {
    const c = resolveConfig(undefined, 'defaults', BUILTIN_POLICIES).server.callerAuth;
    assert.equal(c.mode, 'off');
    assert.deepEqual(c.bearerToken.subjects, ['system:serviceaccount:kube-system:webhook-auth']);
    assert.deepEqual(c.bearerToken.service, { name: 'tokenguard', namespace: 'tokenguard', port: 443 });
    assert.deepEqual(c.bearerToken.webhookConfigurations, ['tokenguard']);
    assert.deepEqual([c.bearerToken.issuers, c.bearerToken.audiences], [[], []]);
  });
  it('a client CA with mode off fails start-up instead of protecting nothing', () => {
    assert.throws(load({ callerAuth: { clientCertificate: { caFile: '/ca.crt' } } }), /server\.callerAuth\.mode: off, but server\.callerAuth\.clientCertificate\.caFile is set/);
  });
  it('the old server.clientCAFile says where it went; bad values are named with their path', () => {
    assert.throws(load({ clientCAFile: '/ca.crt' }), /server\.clientCAFile: moved to server\.callerAuth\.clientCertificate\.caFile/);
    assert.throws(load({ callerAuth: { mode: 'strict' } }), /server\.callerAuth\.mode: must be one of \["off","audit","enforce"\]/);
    assert.throws(load({ callerAuth: { bearerToken: { subjects: [] } } }), /server\.callerAuth\.bearerToken\.subjects: must NOT have fewer than 1 items/);
    assert.throws(load({ callerAuth: { bearerToken: { service: { port: 0 } } } }), /server\.callerAuth\.bearerToken\.service\.port: must be >= 1/);
    assert.throws(load({ callerAuth: { bearerToken: { audience: ['x'] } } }), /server\.callerAuth\.bearerToken\.audience: unknown key/);
  });
});
