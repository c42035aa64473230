// The token self-test through the real client-node against the fake API server: TokenRequest,
// verification with jose against the served JWKS, skew measurement, metrics, logs and Events.
// Also the token checks it shares with `token inspect`, on tokens signed in the test.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { ApiClient } from '../../src/cluster/client.js';
import { EventRecorder } from '../../src/cluster/events.js';
import { IssuerMonitor } from '../../src/cluster/issuers.js';
import { SERVICE_ACCOUNT_DIR } from '../../src/cluster/kubeconfig.js';
import { readClaims, timeProblems, verifyToken } from '../../src/cluster/token-verify.js';
import {
  acceptedIssuers,
  clockSkew,
  ownServiceAccount,
  SELF_TEST_AUDIENCE,
  selfTestLastSuccess,
  selfTestSuccess,
  TokenSelfTest,
} from '../../src/cluster/token-selftest.js';
import type { ApiserverPod } from '../../src/cluster/view.js';
import { createLogger } from '../../src/observability/log.js';
import { registry } from '../../src/observability/metrics.js';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { makeSigningKey, serveOidc, signToken, type OidcServer, type SigningKey } from '../helpers/oidc.js';
import { tempDir } from '../helpers/temp-dir.js';

const SERVED = 'https://kubernetes.default.svc';
const gauge = async (g: { get(): Promise<{ values: { value: number }[] }> }) => (await g.get()).values[0]?.value;

describe('TokenSelfTest against the fake API server', () => {
  let fake: FakeApiServer;
  let oidc: OidcServer;
  let kc: KubeConfig;
  let lines: any[];
  let monitor: IssuerMonitor;
  before(async () => {
    fake = await FakeApiServer.start();
    oidc = await serveOidc(fake, SERVED);
    // TokenRequest needs the ServiceAccount to exist, as on the real API server.
    fake.upsert('serviceaccounts', { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'tokenguard', namespace: 'tokenguard' } });
    kc = new KubeConfig();
    kc.loadFromFile(fake.kubeconfigPath);
  });
  after(() => fake.close());

  function selfTest(opts: { mirrorPods?: ApiserverPod[]; maxSkew?: number } = {}) {
    lines = [];
    const logger = createLogger('debug', (l) => lines.push(JSON.parse(l)));
    const events = new EventRecorder({ kc, logger, namespace: 'tokenguard', dedupeSeconds: 0 });
    monitor = new IssuerMonitor({ client: new ApiClient(kc), logger, events, refreshSeconds: 60 });
    return new TokenSelfTest({
      kc,
      issuers: monitor,
      cluster: { apiserverPods: () => opts.mirrorPods ?? [] },
      serviceAccount: { namespace: 'tokenguard', name: 'tokenguard' },
      intervalSeconds: 60,
      maxClockSkewSeconds: opts.maxSkew ?? 30,
      logger,
      events,
    });
  }

  it('the gauges are absent from /metrics until the first self-test (an unset gauge would read 0: failed)', async () => {
    const before = await registry.metrics();
    assert.doesNotMatch(before, /tokenguard_token_selftest_|tokenguard_clock_skew_/);
    await selfTest().run();
    const afterRun = await registry.metrics();
    assert.match(afterRun, /^# TYPE tokenguard_token_selftest_success gauge\ntokenguard_token_selftest_success 1$/m);
    assert.match(afterRun, /^# TYPE tokenguard_clock_skew_seconds gauge\ntokenguard_clock_skew_seconds 0$/m);
    // The bound the skew is held to, and when the self-test last passed (now, give or take the test).
    assert.match(afterRun, /^# TYPE tokenguard_clock_skew_bound_seconds gauge\ntokenguard_clock_skew_bound_seconds 30$/m);
    const last = /^tokenguard_token_selftest_last_success_timestamp_seconds (\S+)$/m.exec(afterRun);
    assert.ok(last, 'the last success is published');
    assert.ok(Math.abs(Number(last[1]) - Date.now() / 1000) < 60, `last success ${last[1]} is now`);
  });

  it('passes on a healthy cluster: the TokenRequest asked for, the gauges set, no Event', async () => {
    const t = selfTest();
    const events = oidc.events.length;
    const r = await t.run();
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.skewSeconds, 0);
    assert.deepEqual(r.problems, []);
    const req = oidc.tokenRequests.at(-1)!;
    assert.deepEqual([req.namespace, req.name], ['tokenguard', 'tokenguard']);
    assert.deepEqual(req.body.spec, { audiences: [SELF_TEST_AUDIENCE], expirationSeconds: 600 });
    assert.equal(await gauge(selfTestSuccess), 1);
    assert.equal(await gauge(clockSkew), 0);
    assert.equal(oidc.events.length, events);
    assert.equal(monitor.servedIssuer, SERVED, 'keys were missing, so discovery was read on demand');
  });

  it('an issuer nobody accepts (the kOps 1.26 outage): the self-test fails, with an Event naming it', async () => {
    const t = selfTest();
    oidc.tokenIssuer = 'https://api.internal.prod.example.com';
    try {
      const lastSuccess = await gauge(selfTestLastSuccess);
      const r = await t.run();
      assert.equal(r.ok, false);
      assert.equal(await gauge(selfTestLastSuccess), lastSuccess, 'a failure leaves the last success where it was');
      const p = r.problems.find((x) => x.code === 'issuer-not-accepted')!;
      assert.equal(p.cause, 'issuer-change');
      assert.match(p.message, /issuer "https:\/\/api\.internal\.prod\.example\.com" is not accepted/);
      assert.equal(await gauge(selfTestSuccess), 0);
      assert.ok(lines.some((l) => l.msg === 'token self-test failed' && l.causes.includes('issuer-change')));
      const e = oidc.events.at(-1);
      assert.equal(e.reason, 'TokenSelfTestFailed');
      assert.match(e.message, /ServiceAccount tokenguard\/tokenguard does not pass verification: .*\(issuer no longer accepted \(kOps 1\.26 outage, kops#16488\)\)$/);
      // Accepted by a kube-apiserver mirror pod as an additional issuer: passes.
      const withMirror = selfTest({
        mirrorPods: [{ namespace: 'kube-system', name: 'kube-apiserver-a', nodeName: 'a', argv: [`--service-account-issuer=${SERVED}`, '--service-account-issuer', 'https://api.internal.prod.example.com'] }],
      });
      assert.equal((await withMirror.run()).ok, true);
    } finally {
      oidc.tokenIssuer = undefined;
    }
  });

  it('clock skew: the API server clock 2 min ahead: not valid yet, skew measured, two Events', async () => {
    const t = selfTest();
    oidc.clockAheadSeconds = 120;
    try {
      const r = await t.run();
      assert.equal(r.ok, false);
      assert.ok(r.skewSeconds! >= 119 && r.skewSeconds! <= 121, `skew ${r.skewSeconds}`);
      assert.equal(r.problems.find((p) => p.fatal)!.code, 'not-yet-valid');
      assert.equal(r.problems.find((p) => p.fatal)!.cause, 'clock-skew');
      assert.equal(await gauge(clockSkew), r.skewSeconds);
      const reasons = oidc.events.slice(-2).map((e) => e.reason).sort();
      assert.deepEqual(reasons, ['ClockSkew', 'TokenSelfTestFailed']);
      assert.match(oidc.events.find((e) => e.reason === 'ClockSkew').message, /clock is 1\d\d s ahead of this node's \(bound 30 s\)/);
    } finally {
      oidc.clockAheadSeconds = 0;
    }
  });

  it('skew within the leeway but above the bound: passes, still warns about the clock', async () => {
    const t = selfTest({ maxSkew: 10 });
    oidc.clockAheadSeconds = -40;
    try {
      const r = await t.run();
      assert.equal(r.ok, true);
      assert.ok(r.skewSeconds! <= -39 && r.skewSeconds! >= -41, `skew ${r.skewSeconds}`);
      assert.ok(lines.some((l) => l.msg === 'clock skew between tokenguard and the API server'));
      // The same range the skew is allowed above (a busy machine measures 39 s as well as 40 or 41).
      assert.match(oidc.events.at(-1).message, /clock is (39|4[01]) s behind this node's \(bound 10 s\)/);
    } finally {
      oidc.clockAheadSeconds = 0;
    }
  });

  it('a rotated key is picked up on demand; a key the JWKS does not publish fails', async () => {
    const t = selfTest();
    assert.equal((await t.run()).ok, true);
    const original = oidc.keys;
    oidc.keys = [await makeSigningKey('rotated'), ...original];
    try {
      assert.equal((await t.run()).ok, true, 'the new kid made the test re-read the key set');
      assert.ok(monitor.keys!.keys.some((k) => k.kid === 'rotated'));
      // Signs with a key that is not published at all.
      const unpublished = await makeSigningKey('never-published');
      oidc.keys = [unpublished, ...original];
      const jwks = oidc.jwks.bind(oidc);
      oidc.jwks = () => ({ keys: original.map((k) => k.jwk) });
      try {
        const r = await t.run();
        assert.equal(r.ok, false);
        assert.equal(r.problems[0]!.code, 'unknown-key');
      } finally {
        oidc.jwks = jwks;
      }
    } finally {
      oidc.keys = original;
    }
  });

  it('TokenRequest refused: fails with the API server reason, no skew', async () => {
    const t = selfTest();
    oidc.tokenRequestForbidden = true;
    try {
      const r = await t.run();
      assert.equal(r.ok, false);
      assert.equal(r.skewSeconds, undefined);
      assert.match(r.error!, /TokenRequest for ServiceAccount tokenguard\/tokenguard failed: HTTP 403: .*serviceaccounts\/token/);
      assert.equal(await gauge(selfTestSuccess), 0);
    } finally {
      oidc.tokenRequestForbidden = false;
    }
  });

  it('the fake validates TokenRequest as kube-apiserver does: a lifetime under 10 minutes is 422', async () => {
    const api = kc.makeApiClient(CoreV1Api);
    const ask = (expirationSeconds: number) =>
      api.createNamespacedServiceAccountToken({ namespace: 'tokenguard', name: 'tokenguard', body: { spec: { audiences: ['x'], expirationSeconds } } });
    await assert.rejects(ask(599), (err: { code?: number; body?: string }) => {
      assert.equal(err.code, 422);
      assert.match(String(err.body), /spec\.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes/);
      return true;
    });
    assert.ok((await ask(600)).status?.token);
  });

  it('its ServiceAccount deleted: fails saying the API server does not know it', async () => {
    fake.remove('serviceaccounts', 'tokenguard', 'tokenguard');
    try {
      const r = await selfTest().run();
      assert.equal(r.ok, false);
      assert.match(r.error!, /TokenRequest for ServiceAccount tokenguard\/tokenguard failed: HTTP 404: serviceaccounts "tokenguard" not found/);
    } finally {
      fake.upsert('serviceaccounts', { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'tokenguard', namespace: 'tokenguard' } });
    }
  });
});

describe('token checks (shared with token inspect)', () => {
  let key: SigningKey;
  let other: SigningKey;
  const now = new Date('2026-11-24T12:00:00Z');
  const nowS = Math.floor(now.getTime() / 1000);
  before(async () => {
    key = await makeSigningKey('k1');
    other = await makeSigningKey('k1'); // same kid, different key: the signature cannot verify
  });
  const verify = (token: string, audience?: string) =>
    verifyToken(token, { keys: { keys: [key.jwk] }, acceptedIssuers: [SERVED], audience, now });

  it('valid', async () => {
    const v = await verify(await signToken(key, { issuer: SERVED, audience: 'api', iat: nowS - 10 }), 'api');
    assert.deepEqual([v.valid, v.problems], [true, []]);
  });
  it('expired (beyond the leeway) and just expired (within it)', async () => {
    const e = await verify(await signToken(key, { issuer: SERVED, audience: 'api', iat: nowS - 7200, lifetimeSeconds: 3600 }));
    assert.deepEqual(e.problems.map((p) => [p.code, p.fatal]), [['expired', true]]);
    assert.match(e.problems[0]!.message, /expired 1 h ago/);
    const j = await verify(await signToken(key, { issuer: SERVED, audience: 'api', iat: nowS - 3630, lifetimeSeconds: 3600 }));
    assert.deepEqual([j.valid, j.problems.map((p) => p.code)], [true, ['within-leeway']]);
  });
  it('not yet valid: beyond the leeway it is clock skew, within it a note', async () => {
    const f = await verify(await signToken(key, { issuer: SERVED, audience: 'api', iat: nowS + 120 }));
    assert.equal(f.valid, false);
    assert.deepEqual(f.problems.map((p) => [p.code, p.cause]), [['not-yet-valid', 'clock-skew']]);
    assert.match(f.problems[0]!.message, /not valid yet: nbf is 2 min ahead of the local clock, beyond the fixed 60 s leeway \(clock skew\)/);
    const w = await verify(await signToken(key, { issuer: SERVED, audience: 'api', iat: nowS + 30 }));
    assert.equal(w.valid, true);
    assert.match(w.problems[0]!.message, /nbf is 30 s ahead of the local clock: accepted only thanks to the fixed 60 s leeway/);
  });
  it('a wrong issuer is an issuer change; wrong audience; wrong key; malformed', async () => {
    const i = await verify(await signToken(key, { issuer: 'https://master.prod.example.com', audience: 'api', iat: nowS }));
    assert.deepEqual(i.problems.map((p) => [p.code, p.cause]), [['issuer-not-accepted', 'issuer-change']]);
    const a = await verify(await signToken(key, { issuer: SERVED, audience: ['istio-ca'], iat: nowS }), 'api');
    assert.deepEqual(a.problems.map((p) => p.code), ['wrong-audience']);
    assert.match(a.problems[0]!.message, /audiences \["istio-ca"\] do not include "api"/);
    const k = await verify(await signToken(other, { issuer: SERVED, audience: 'api', iat: nowS }));
    assert.deepEqual(k.problems.map((p) => p.code), ['bad-signature']);
    for (const garbage of ['', 'abc', 'a.b.c', 'x'.repeat(10) + '..']) {
      const m = await verify(garbage);
      assert.equal(m.valid, false);
      assert.equal(m.problems[0]!.code, 'malformed', garbage);
    }
  });
  it('claims of the wrong type are read as absent (KEP-6060 ones named as malformed), never a crash', () => {
    assert.deepEqual(readClaims({ iss: 7, aud: 5, exp: 'soon', jti: {}, 'kubernetes.io': [] }), { iss: undefined, sub: undefined, aud: [], exp: undefined, nbf: undefined, iat: undefined, jti: undefined });
    const odd = readClaims({ aud: ['a', 1], 'kubernetes.io': { node: { uid: 'x' }, pod: 'web-0', attestations: { admissionReviewAPIGroups: '*' } } });
    assert.deepEqual([odd.aud, odd.node, odd.pod, odd.admissionReviewAPIGroup], [['a'], undefined, undefined, undefined]);
    assert.match(odd.malformed!, /admissionReviewAPIGroups is not a one-element list of strings/);
    const bound = readClaims({ 'kubernetes.io': { mutatingWebhookConfiguration: { name: 'tg', uid: 'u' }, attestations: { admissionReviewAPIGroups: ['apps'] } } });
    assert.deepEqual([bound.webhook, bound.admissionReviewAPIGroup, bound.malformed], [{ kind: 'mutating', name: 'tg', uid: 'u' }, 'apps', undefined]);
  });
  it('soon to expire (past 80 % of the lifetime) and past warnafter are notes, not failures', () => {
    const soon = timeProblems({ aud: [], iat: nowS - 3000, exp: nowS + 600 }, nowS);
    assert.deepEqual(soon.map((p) => [p.code, p.fatal]), [['expiring-soon', false]]);
    const stale = timeProblems({ aud: [], iat: nowS - 7200, exp: nowS + 86400 * 300, warnafter: nowS - 3600 }, nowS);
    assert.deepEqual(stale.map((p) => p.code), ['past-warnafter']);
    assert.match(stale[0]!.message, /past its warnafter time by 1 h/);
  });
});

describe('acceptedIssuers and ownServiceAccount', () => {
  it('the served issuer first, then every issuer a mirror pod accepts, once', () => {
    const pods: ApiserverPod[] = [
      { namespace: 'kube-system', name: 'a', nodeName: 'a', argv: ['kube-apiserver', `--service-account-issuer=${SERVED}`, '--service-account-issuer=https://b'] },
      { namespace: 'kube-system', name: 'b', nodeName: 'b', argv: ['kube-apiserver', '--service-account-issuer', 'https://b'] },
    ];
    assert.deepEqual(acceptedIssuers(SERVED, { apiserverPods: () => pods }), [SERVED, 'https://b']);
    assert.deepEqual(acceptedIssuers(undefined, undefined), []);
  });
  it('from TOKENGUARD_SERVICE_ACCOUNT, else from the mounted token, else unknown', async () => {
    assert.deepEqual(ownServiceAccount({ TOKENGUARD_SERVICE_ACCOUNT: 'tg/guard' }, '/nonexistent'), { namespace: 'tg', name: 'guard' });
    assert.equal(ownServiceAccount({ TOKENGUARD_SERVICE_ACCOUNT: 'not-a-ref' }, '/nonexistent'), undefined);
    const root = tempDir('sa-');
    mkdirSync(join(root, SERVICE_ACCOUNT_DIR), { recursive: true });
    const key = await makeSigningKey('k');
    writeFileSync(join(root, SERVICE_ACCOUNT_DIR, 'token'), await signToken(key, { issuer: SERVED, audience: 'x', namespace: 'sec', serviceAccount: 'tokenguard' }));
    assert.deepEqual(ownServiceAccount({}, root), { namespace: 'sec', name: 'tokenguard' });
    writeFileSync(join(root, SERVICE_ACCOUNT_DIR, 'token'), 'garbage');
    assert.equal(ownServiceAccount({}, root), undefined);
  });
});
