// Caller authentication (server.callerAuth) over real HTTPS, with bearer tokens signed by the fake
// API server's key set and read through the real issuer discovery (IssuerMonitor), and KEP-6060
// bindings checked against the fake's webhook configurations through the real list+watch
// (WebhookConfigurations): each result of tokenguard_caller_auth_total, the claims as kube-apiserver
// v1.37 mints them against the route, the live uid and the reviewed resource's group, the cache and
// key-set changes, audit mode, client certificates, and bad Authorization headers.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { CompactSign } from 'jose';
import { parseAllDocuments } from 'yaml';
import { ApiClient } from '../../src/cluster/client.js';
import { IssuerMonitor } from '../../src/cluster/issuers.js';
import { WebhookConfigurations, type LiveUid } from '../../src/cluster/webhook-configurations.js';
import { resolveConfig } from '../../src/config/load.js';
import { createLogger, silentLogger } from '../../src/observability/log.js';
import { registry } from '../../src/observability/metrics.js';
import { BUILTIN_POLICIES } from '../../src/policies/index.js';
import { derivedAudiences, KEY_REFRESH_MS } from '../../src/server/caller-auth.js';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { reviewByPrefix } from '../helpers/fixtures.js';
import { makeSigningKey, serveOidc, signToken, type OidcServer, type TokenSpec } from '../helpers/oidc.js';
import { httpsCall, startTestServer, type TestServer } from '../helpers/server.js';
import { eventually } from '../helpers/eventually.js';
import { makeCerts, PROJECT_ROOT, type CertSet } from '../helpers/tls.js';

const SERVED = 'https://kubernetes.default.svc';
const SVC = 'https://tokenguard.tokenguard.svc';
const POD = () => JSON.stringify(reviewByPrefix('006')); // a Pod, core/v1
const DEPLOYMENT = () => JSON.stringify(reviewByPrefix('028')); // a Deployment, apps/v1
const VWC_UID = '6d3f1a52-0000-4000-8000-00000000a001';
const MWC_UID = '6d3f1a52-0000-4000-8000-00000000b001';

interface Binding {
  kind?: 'validating' | 'mutating';
  name?: string;
  uid?: string;
  /** The admissionReviewAPIGroups attestation. */
  group?: string;
  lifetimeSeconds?: number;
  /** The claim's spelling (default: kube-apiserver's lower case). */
  claim?: string;
  /** More `kubernetes.io` claims (overriding). */
  k8s?: Record<string, unknown>;
}

async function authCount(method: string, result: string): Promise<number> {
  const metric = await registry.getSingleMetric('tokenguard_caller_auth_total')!.get();
  return metric.values.find((v) => v.labels.method === method && v.labels.result === result)?.value ?? 0;
}

describe('caller authentication with bearer tokens', () => {
  let fake: FakeApiServer;
  let oidc: OidcServer;
  let monitor: IssuerMonitor;
  let webhooks: WebhookConfigurations;
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
    // tokenguard's own configurations, and another webhook's.
    fake.upsert('validatingwebhookconfigurations', { metadata: { name: 'tokenguard', uid: VWC_UID } });
    fake.upsert('mutatingwebhookconfigurations', { metadata: { name: 'tokenguard', uid: MWC_UID } });
    fake.upsert('validatingwebhookconfigurations', { metadata: { name: 'kyverno-resource-validating', uid: 'kyverno-1' } });
    webhooks = new WebhookConfigurations({ client: new ApiClient(kc), staleAfterSeconds: 60 });
    webhooks.start();
    await webhooks.whenSynced();
    enforce = await startTestServer({ config: { server: { callerAuth: { mode: 'enforce' } } }, keySource: monitor, webhookConfigurations: webhooks });
    audit = await startTestServer({
      config: { server: { callerAuth: { mode: 'audit' } } },
      keySource: monitor,
      webhookConfigurations: webhooks,
      logger: createLogger('warn', (l) => auditLog.push(JSON.parse(l))),
    });
  });
  after(async () => {
    await enforce.shutdown();
    await audit.shutdown();
    webhooks.stop();
    await fake.close();
  });

  /**
   * A token as kube-apiserver v1.37 mints it under KEP-6060: 600 s, for tokenguard's Service URL
   * with the route's path, bound to a webhook configuration by name and uid, attesting one group.
   */
  const boundToken = (binding: Binding = {}) => {
    const { kind = 'validating', name = 'tokenguard', uid = kind === 'validating' ? VWC_UID : MWC_UID, group = '*' } = binding;
    const claim = binding.claim ?? `${kind}webhookconfiguration`;
    return token({
      audience: `${SVC}:443/${kind === 'validating' ? 'validate' : 'mutate'}`,
      lifetimeSeconds: binding.lifetimeSeconds ?? 600,
      extra: {
        jti: randomUUID(),
        'kubernetes.io': {
          namespace: 'kube-system',
          serviceaccount: { name: 'webhook-auth', uid: 'sa-1' },
          [claim]: { name, uid },
          attestations: { admissionReviewAPIGroups: [group] },
          ...binding.k8s,
        },
      },
    });
  };

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
    ['expired beyond the 60 s leeway', () => token({ iat: Math.floor(Date.now() / 1000) - 7200, lifetimeSeconds: 3600 }), 'expired', /expired 1 h ago/],
    ['not valid yet beyond the leeway', () => token({ iat: Math.floor(Date.now() / 1000) + 120 }), 'expired', /not valid yet: nbf is (2 min|1\d\d s) ahead of the local clock, beyond the fixed 60 s leeway \(clock skew\)/],
    ['another service account', () => token({ namespace: 'default', serviceAccount: 'intruder' }), 'wrong_subject', /subject "system:serviceaccount:default:intruder" is not one of system:serviceaccount:kube-system:webhook-auth/],
    ['another issuer', () => token({ issuer: 'https://other.example.com' }), 'unknown_issuer', /issuer "https:\/\/other\.example\.com" is not accepted \(the API server accepts https:\/\/kubernetes\.default\.svc\)/],
    ['a key the cluster does not publish', async () => token({}, await makeSigningKey('elsewhere')), 'invalid_signature', /signed by a key the cluster does not publish \(kid "elsewhere"\)/],
    ['a forged key with the published kid', async () => token({}, await makeSigningKey('key-1')), 'invalid_signature', /the signature does not verify with the published key/],
    ['garbage', async () => 'garbage', 'invalid_signature', /^caller not authenticated: not a JWT: /],
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

  describe('KEP-6060 tokens (bound to a webhook configuration, with an attestation)', () => {
    const refused = async (route: string, bearer: string, result: string, message: RegExp, body = POD()) => {
      const before = await authCount('bearer_token', result);
      const r = await call(enforce, route, bearer, body);
      assert.equal(r.status, 401, r.text);
      assert.match(r.json.error.message, message);
      assert.equal(await authCount('bearer_token', result), before + 1, result);
    };

    it('bound to tokenguard\'s configuration of the route\'s kind, with its live uid: 200 on /validate and /mutate', async () => {
      const before = await authCount('bearer_token', 'ok');
      assert.equal((await call(enforce, '/validate', await boundToken({ kind: 'validating' }))).status, 200);
      assert.equal((await call(enforce, '/mutate', await boundToken({ kind: 'mutating' }))).status, 200);
      assert.equal(await authCount('bearer_token', 'ok'), before + 2);
    });

    it('a validating binding only on /validate, a mutating one only on /mutate (wrong_route)', async () => {
      await refused('/mutate', await boundToken({ kind: 'validating' }), 'wrong_route',
        /bound to ValidatingWebhookConfiguration tokenguard, presented for a mutating webhook/);
      await refused('/validate', await boundToken({ kind: 'mutating' }), 'wrong_route',
        /bound to MutatingWebhookConfiguration tokenguard, presented for a validating webhook/);
    });

    it('bound to another webhook\'s configuration: wrong_binding, even though it exists', async () => {
      await refused('/validate', await boundToken({ name: 'kyverno-resource-validating', uid: 'kyverno-1' }), 'wrong_binding',
        /bound to ValidatingWebhookConfiguration "kyverno-resource-validating", not one of tokenguard$/);
    });

    it('a uid that is not the live one (stale_uid); a configuration deleted and re-created: its old tokens stop passing', async () => {
      await refused('/validate', await boundToken({ uid: 'f00d0000-0000-4000-8000-000000000000' }), 'stale_uid',
        new RegExp(`bound to ValidatingWebhookConfiguration tokenguard uid f00d0000-0000-4000-8000-000000000000, but it is now uid ${VWC_UID} \\(deleted and re-created\\)`));
      const before = await boundToken();
      assert.equal((await call(enforce, '/validate', before)).status, 200, 'passes, and is cached');
      const recreated = 'a11ce000-0000-4000-8000-000000000001';
      fake.remove('validatingwebhookconfigurations', undefined, 'tokenguard');
      try {
        // Gone: the watch tells the cache, and the cached token is refused from then on.
        const gone = await eventually(async () => {
          const r = await call(enforce, '/validate', before);
          return r.status === 401 && r;
        }, 'the deletion reaching the cache');
        assert.match(gone.json.error.message, new RegExp(`bound to ValidatingWebhookConfiguration tokenguard \\(uid ${VWC_UID}\\), which no longer exists`));
        fake.upsert('validatingwebhookconfigurations', { metadata: { name: 'tokenguard', uid: recreated } });
        await eventually(() => webhooks.liveUid('validating', 'tokenguard') === recreated, 'the re-created configuration in the cache');
        await refused('/validate', before, 'stale_uid', new RegExp(`but it is now uid ${recreated} \\(deleted and re-created\\)`));
        assert.equal((await call(enforce, '/validate', await boundToken({ uid: recreated }))).status, 200, 'a token for the new object passes');
      } finally {
        fake.upsert('validatingwebhookconfigurations', { metadata: { name: 'tokenguard', uid: VWC_UID } });
        await eventually(() => webhooks.liveUid('validating', 'tokenguard') === VWC_UID, 'the original uid back in the cache');
      }
    });

    it('the attestation must be "*" or the reviewed resource\'s group ("" for the core group): wrong_attestation', async () => {
      for (const [group, body, status] of [
        ['*', POD(), 200],
        ['*', DEPLOYMENT(), 200],
        ['apps', DEPLOYMENT(), 200],
        ['', POD(), 200],
      ] as const) {
        assert.equal((await call(enforce, '/validate', await boundToken({ group }), body)).status, status, `${group} ${status}`);
      }
      await refused('/validate', await boundToken({ group: 'apps' }), 'wrong_attestation', /attested for API group "apps", asked about the core group ""$/);
      await refused('/validate', await boundToken({ group: 'storage.k8s.io' }), 'wrong_attestation', /attested for API group "storage\.k8s\.io", asked about "apps"$/, DEPLOYMENT());
    });

    it('a bound token living longer than 600 s is refused (lifetime_too_long): kube-apiserver never mints one', async () => {
      await refused('/validate', await boundToken({ lifetimeSeconds: 601 }), 'lifetime_too_long',
        /bound to a webhook configuration and valid for 601 s: kube-apiserver mints these for at most 600 s/);
      // The same lifetime without a binding is the kubeconfig path: unchanged.
      assert.equal((await call(enforce, '/validate', await token({ lifetimeSeconds: 86400 }))).status, 200);
    });

    it('malformed KEP-6060 claims are refused, never a crash: no uid, two bindings, an attestation alone, a binding alone', async () => {
      const k8s = (extra: Record<string, unknown>) => ({ namespace: 'kube-system', serviceaccount: { name: 'webhook-auth', uid: 'sa-1' }, ...extra });
      const cases: [string, () => Promise<string>, string, RegExp][] = [
        ['no uid', () => boundToken({ k8s: { validatingwebhookconfiguration: { name: 'tokenguard' } } }), 'wrong_binding', /kubernetes\.io\.validatingwebhookconfiguration is not \{name, uid\}/],
        ['two bindings', () => boundToken({ k8s: { mutatingwebhookconfiguration: { name: 'tokenguard', uid: MWC_UID } } }), 'wrong_binding', /bound to more than one webhook configuration/],
        ['a list of groups', () => boundToken({ k8s: { attestations: { admissionReviewAPIGroups: ['apps', ''] } } }), 'wrong_binding', /admissionReviewAPIGroups is not a one-element list of strings/],
        ['an attestation alone', () => token({ lifetimeSeconds: 600, extra: { 'kubernetes.io': k8s({ attestations: { admissionReviewAPIGroups: ['*'] } }) } }), 'wrong_binding', /carries an admissionReviewAPIGroups attestation but is bound to no webhook configuration/],
        ['a binding alone', () => token({ lifetimeSeconds: 600, extra: { 'kubernetes.io': k8s({ validatingwebhookconfiguration: { name: 'tokenguard', uid: VWC_UID } }) } }), 'wrong_attestation', /bound to ValidatingWebhookConfiguration tokenguard without an admissionReviewAPIGroups attestation/],
      ];
      for (const [what, make, result, message] of cases) {
        const r = await call(enforce, '/validate', await make());
        assert.equal(r.status, 401, `${what}: ${r.text}`);
        assert.match(r.json.error.message, message, what);
        assert.equal((await enforce.get('/metrics')).text.includes(`result="${result}"`), true, what);
      }
      assert.equal((await enforce.get('/healthz')).status, 200);
    });

    it('the KEP draft\'s camel-case claim names are read too', async () => {
      assert.equal((await call(enforce, '/validate', await boundToken({ claim: 'validatingWebhookConfiguration' }))).status, 200);
      const r = await call(enforce, '/mutate', await boundToken({ claim: 'validatingWebhookConfiguration' }));
      assert.equal(r.status, 401);
      assert.match(r.json.error.message, /presented for a mutating webhook/);
    });

    it('audit answers every failure and logs each whole, within the burst of each result; none is "ok"', async () => {
      const results = ['wrong_route', 'wrong_binding', 'stale_uid', 'wrong_attestation', 'lifetime_too_long'];
      const bodies: [string, () => Promise<string>][] = [
        ['/mutate', () => boundToken({ kind: 'validating' })],
        ['/validate', () => boundToken({ name: 'kyverno-resource-validating', uid: 'kyverno-1' })],
        ['/validate', () => boundToken({ uid: 'f00d0000-0000-4000-8000-000000000000' })],
        ['/validate', () => boundToken({ group: 'apps' })],
        ['/validate', () => boundToken({ lifetimeSeconds: 3600 })],
      ];
      const before = await Promise.all(results.map((r) => authCount('bearer_token', r)));
      for (const [route, make] of bodies) {
        const t = await make();
        for (let i = 0; i < 2; i++) {
          const r = await call(audit, route, t);
          assert.equal(r.status, 200, r.text);
          assert.equal(r.json.response.allowed, true);
        }
      }
      const after = await Promise.all(results.map((r) => authCount('bearer_token', r)));
      assert.deepEqual(after.map((n, i) => n - before[i]!), results.map(() => 2), 'each failure counted, twice');
      const logged = auditLog.filter((l) => l.msg === 'caller not authenticated' && results.includes(l.result));
      assert.deepEqual(logged.map((l) => l.result).sort(), [...results, ...results].sort(), 'each failure logged (2 of a burst of 5 a minute per result)');
      for (const l of logged) assert.equal(l.mode, 'audit');
    });
  });

  it('names only while the webhook configurations cannot be watched, and said so', async () => {
    let live: LiveUid = { unknown: 'the watch of validatingwebhookconfigurations has been down for 75 s' };
    const lines: any[] = [];
    const degraded = await startTestServer({
      config: { server: { callerAuth: { mode: 'enforce' } } },
      keySource: monitor,
      webhookConfigurations: { liveUid: () => live },
      logger: createLogger('warn', (l) => lines.push(JSON.parse(l))),
    });
    try {
      // Any uid passes as long as the name and the rest are right; another name still fails.
      assert.equal((await call(degraded, '/validate', await boundToken({ uid: 'f00d0000-0000-4000-8000-000000000000' }))).status, 200);
      assert.equal((await call(degraded, '/validate', await boundToken({ name: 'other' }))).status, 401);
      const line = await eventually(() => lines.find((l) => l.msg === 'caller authentication checks webhook configuration names only'), 'the names-only line');
      assert.match(line.reason, /the uid of ValidatingWebhookConfiguration tokenguard is not checked, names only: the watch of validatingwebhookconfigurations has been down for 75 s/);
      // Once the watch is back, the uid counts again.
      live = VWC_UID;
      const r = await call(degraded, '/validate', await boundToken({ uid: 'f00d0000-0000-4000-8000-000000000000' }));
      assert.equal(r.status, 401);
      assert.match(r.json.error.message, /but it is now uid /);
    } finally {
      await degraded.shutdown();
    }
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

  it('audit mode answers every review, counts the failures and logs each failing caller with its address and subject, never the token', async () => {
    const bad = await token({ audience: 'https://elsewhere.example.com' });
    const before = await authCount('bearer_token', 'wrong_audience');
    for (let i = 0; i < 3; i++) {
      const r = await call(audit, '/validate', bad);
      assert.equal(r.status, 200);
      assert.equal(r.json.response.allowed, true);
    }
    assert.equal((await call(audit, '/validate', undefined)).status, 200);
    assert.equal(await authCount('bearer_token', 'wrong_audience'), before + 3);
    const lines = auditLog.filter((l) => l.msg === 'caller not authenticated' && ['wrong_audience', 'missing'].includes(l.result));
    assert.deepEqual(
      lines.map((l) => [l.address, l.caller, l.result, l.mode, l.event]),
      [
        ...Array.from({ length: 3 }, () => ['127.0.0.1', 'system:serviceaccount:kube-system:webhook-auth', 'wrong_audience', 'audit', 'caller_wrong_audience']),
        ['127.0.0.1', undefined, 'missing', 'audit', 'caller_missing'],
      ],
    );
    assert.ok(!JSON.stringify(auditLog).includes(bad.split('.')[2]!), 'the token never reaches the log');
  });

  it('a rejected review from an authenticated caller is logged with its address and its identity', async () => {
    const r = await call(audit, '/validate', await token(), '{"apiVersion":');
    assert.equal(r.status, 400);
    const line = auditLog.filter((l) => l.msg === 'rejected admission request').at(-1);
    assert.deepEqual(
      line && [line.event, line.address, line.caller, line.status],
      ['rejected_bad_json', '127.0.0.1', 'system:serviceaccount:kube-system:webhook-auth', 400],
      JSON.stringify(line),
    );
  });

  it('bad Authorization headers get 401 in enforce, never a crash: another scheme, an empty Bearer, 64 KiB', async () => {
    const cases: [string, string, RegExp][] = [
      ['Basic dXNlcjpwYXNz', 'missing', /the Authorization header is not "Bearer <token>"/],
      ['Bearer', 'missing', /the Authorization header is not "Bearer <token>"/],
      [`Bearer ${'a'.repeat(64 * 1024)}`, 'invalid_signature', /the bearer token is not a JWT \(65536 characters\)/],
      ['Bearer a.b.c', 'invalid_signature', /^caller not authenticated: not a JWT: /],
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
  const lines: any[] = [];
  before(async () => {
    serving = makeCerts();
    clients = makeCerts();
    // No key set: only certificates can pass; a token is then refused as unverifiable.
    server = await startTestServer({
      certs: serving,
      config: { server: { callerAuth: { mode: 'enforce', clientCertificate: { caFile: clients.caFile } } } },
      logger: createLogger('warn', (l) => lines.push(JSON.parse(l))),
    });
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

  it('a rejected review from a caller with a client certificate is logged with the certificate\'s subject', async () => {
    const cert = { cert: readFileSync(clients.certFile), key: readFileSync(clients.keyFile) };
    const r = await httpsCall(server.port, 'POST', '/validate', 'not json', { 'content-type': 'application/json' }, { ca: serving.ca, ...cert });
    assert.equal(r.status, 400);
    const cn = new X509Certificate(cert.cert).subject.match(/^CN=(.*)$/m)![1];
    const line = lines.filter((l) => l.msg === 'rejected admission request').at(-1);
    assert.deepEqual(line && [line.event, line.address, line.caller], ['rejected_bad_json', '127.0.0.1', `CN=${cn}`], JSON.stringify(line));
  });
});

describe('caller authentication configuration', () => {
  const load = (server: unknown) => () => resolveConfig({ server }, 'config.yaml', BUILTIN_POLICIES);
  it('defaults: off, the webhook-auth subject, tokenguard\'s Service and webhook configurations', () => {
    const c = resolveConfig(undefined, 'defaults', BUILTIN_POLICIES).server.callerAuth;
    assert.equal(c.mode, 'off');
    assert.deepEqual(c.bearerToken.subjects, ['system:serviceaccount:kube-system:webhook-auth']);
    assert.deepEqual(c.bearerToken.service, { name: 'tokenguard', namespace: 'tokenguard', port: 443 });
    // The names of the manifests' Validating- and MutatingWebhookConfiguration, each in the default.
    const manifests = parseAllDocuments(readFileSync(join(PROJECT_ROOT, 'manifests', 'base', 'webhooks.yaml'), 'utf8')).map((d) => d.toJS());
    assert.deepEqual(manifests.map((m) => m.kind).sort(), ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration']);
    assert.deepEqual([...new Set(manifests.map((m) => m.metadata.name))], c.bearerToken.webhookConfigurations);
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
