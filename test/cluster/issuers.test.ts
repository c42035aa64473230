// Issuer discovery through the real client-node against the fake API server: discovery + JWKS,
// issuer and key-set changes (log, metrics, Events on the tokenguard Deployment), failures keeping
// the last good answer, on-demand reads, authentication, and the real captured key set.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { ApiClient } from '../../src/cluster/client.js';
import { EventRecorder } from '../../src/cluster/events.js';
import { discoveryFailures, IssuerMonitor, issuerChanges, JWKS_ACCEPT, JWKS_PATH, jwksChanges } from '../../src/cluster/issuers.js';
import { parseKeySet, verifyToken } from '../../src/cluster/token-verify.js';
import { createLogger, type Logger } from '../../src/observability/log.js';
import { until } from '../helpers/eventually.js';
import { FakeApiServer, statusBody } from '../helpers/fake-apiserver.js';
import { CLUSTER_STATE_DIR, clusterState } from '../helpers/fixtures.js';
import { makeSigningKey, serveOidc, type OidcServer } from '../helpers/oidc.js';

async function counter(c: { get(): Promise<{ values: { value: number }[] }> }): Promise<number> {
  return (await c.get()).values.reduce((s, v) => s + v.value, 0);
}

function recordingLogger(): Logger & { lines: any[] } {
  const lines: any[] = [];
  const logger = createLogger('debug', (l) => lines.push(JSON.parse(l)));
  return Object.assign(logger, { lines });
}

function kubeConfig(fake: FakeApiServer, token?: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(token ? fake.kubeconfig().replace(`token: ${fake.token}`, `token: ${token}`) : fake.kubeconfig());
  return kc;
}

describe('IssuerMonitor against the fake API server', () => {
  let fake: FakeApiServer;
  let oidc: OidcServer;
  let kc: KubeConfig;
  before(async () => {
    fake = await FakeApiServer.start();
    oidc = await serveOidc(fake);
    kc = kubeConfig(fake);
  });
  after(() => fake.close());

  function monitor(logger: Logger = recordingLogger(), refreshSeconds = 60) {
    const events = new EventRecorder({ kc, logger, namespace: 'tokenguard', deployment: 'tokenguard' });
    return new IssuerMonitor({ client: new ApiClient(kc), logger, events, refreshSeconds });
  }

  it('reads the served issuer and the key set; the first read is not a change', async () => {
    const logger = recordingLogger();
    const m = monitor(logger);
    const changesBefore = await counter(issuerChanges);
    const eventsBefore = oidc.events.length;
    await m.refresh();
    assert.equal(m.servedIssuer, 'https://kubernetes.default.svc');
    assert.equal(m.jwksUri, 'https://127.0.0.1:6443/openid/v1/jwks');
    assert.deepEqual(m.keys!.keys.map((k) => k.kid), ['key-1']);
    assert.ok(m.fetchedAt instanceof Date);
    assert.equal(m.error, undefined);
    assert.equal(await counter(issuerChanges), changesBefore);
    assert.equal(oidc.events.length, eventsBefore);
    assert.ok(logger.lines.some((l) => l.msg === 'service-account issuer discovered' && l.issuer === 'https://kubernetes.default.svc'));
  });

  it('an issuer change is logged, counted and recorded as an Event on the tokenguard Deployment', async () => {
    const logger = recordingLogger();
    const m = monitor(logger);
    await m.refresh();
    const before = await counter(issuerChanges);
    oidc.issuer = 'https://api.internal.prod.example.com';
    try {
      await m.refresh();
      assert.equal(m.servedIssuer, 'https://api.internal.prod.example.com');
      assert.equal(await counter(issuerChanges), before + 1);
      assert.ok(logger.lines.some((l) => l.msg === 'served service-account issuer changed' && l.from === 'https://kubernetes.default.svc'));
      await until(() => oidc.events.some((e) => e.reason === 'ServiceAccountIssuerChanged'), 'the Event');
      const e = oidc.events.find((x) => x.reason === 'ServiceAccountIssuerChanged');
      assert.equal(e.type, 'Warning');
      assert.deepEqual(e.involvedObject, { apiVersion: 'apps/v1', kind: 'Deployment', name: 'tokenguard', namespace: 'tokenguard' });
      assert.equal(e.metadata.namespace, 'tokenguard');
      assert.match(e.message, /changed from https:\/\/kubernetes\.default\.svc to https:\/\/api\.internal\.prod\.example\.com/);
      assert.equal(e.source.component, 'tokenguard');
      assert.equal(e.count, 1);
      assert.match(e.firstTimestamp, /^\d{4}-\d\d-\d\dT/);
    } finally {
      oidc.issuer = 'https://kubernetes.default.svc';
    }
  });

  it('a key-set change is counted, and the Event names the key that no longer verifies', async () => {
    const m = monitor();
    await m.refresh();
    const before = await counter(jwksChanges);
    const original = oidc.keys;
    oidc.keys = [await makeSigningKey('key-2')];
    try {
      await m.refresh();
      assert.equal(await counter(jwksChanges), before + 1);
      assert.deepEqual(m.keys!.keys.map((k) => k.kid), ['key-2']);
      await until(() => oidc.events.some((e) => e.reason === 'ServiceAccountKeysChanged'), 'the Event');
      const e = oidc.events.find((x) => x.reason === 'ServiceAccountKeysChanged');
      assert.equal(e.type, 'Warning');
      assert.match(e.message, /\[key-1\] -> \[key-2\]\. Tokens signed with key-1 no longer verify/);
      // The same keys again: no change.
      await m.refresh();
      assert.equal(await counter(jwksChanges), before + 1);
    } finally {
      oidc.keys = original;
    }
  });

  it('a failed read keeps the last good issuer and keys, and says why', async () => {
    const logger = recordingLogger();
    const m = monitor(logger);
    await m.refresh();
    const failures = await counter(discoveryFailures);
    oidc.discoveryDown = true;
    try {
      await m.refresh();
      assert.equal(m.servedIssuer, 'https://kubernetes.default.svc');
      assert.ok(m.keys);
      assert.match(m.error!, /503 discovery unavailable/);
      assert.equal(await counter(discoveryFailures), failures + 1);
      assert.ok(logger.lines.some((l) => l.msg === 'issuer discovery failed'));
    } finally {
      oidc.discoveryDown = false;
    }
    await m.refresh();
    assert.equal(m.error, undefined);
    assert.ok(logger.lines.some((l) => l.msg === 'issuer discovery recovered'));
  });

  it('wrong credentials: the error says 401, nothing is made up', async () => {
    const logger = recordingLogger();
    const m = new IssuerMonitor({ client: new ApiClient(kubeConfig(fake, 'wrong-token')), logger, refreshSeconds: 60 });
    await m.refresh();
    assert.equal(m.servedIssuer, undefined);
    assert.match(m.error!, /401/);
  });

  it('the key set is negotiated as kube-apiserver v1.26 does: 406 for application/json, so discovery asks for jwk-set+json', async () => {
    const client = new ApiClient(kc);
    // What the real API server answered to each Accept header (see docs/development.md, the end-to-end suite).
    const measured: [string, number][] = [
      ['application/json', 406],
      ['application/*', 406],
      ['text/html', 406],
      ['APPLICATION/JWK-SET+JSON', 406],
      ['application/jwk-set+json', 200],
      ['*/*', 200],
      ['application/json, */*', 200],
      ['application/json;q=0.9, application/jwk-set+json;q=0.5', 200],
      [JWKS_ACCEPT, 200],
    ];
    for (const [accept, status] of measured) {
      const got = await client.getJson(JWKS_PATH, { accept }).then(
        () => 200,
        (err: { statusCode?: number }) => err.statusCode,
      );
      assert.equal(got, status, `Accept: ${accept}`);
    }
    await assert.rejects(client.getJson(JWKS_PATH), /406 406: Not Acceptable\n\nAvailable representations: application\/jwk-set\+json/);

    const failuresBefore = await counter(discoveryFailures);
    const m = monitor();
    await m.refresh();
    assert.equal(m.error, undefined);
    assert.deepEqual(m.keys?.keys.map((k) => k.kid), ['key-1']);
    assert.equal(await counter(discoveryFailures), failuresBefore, 'no discovery failure');
  });

  it('concurrent on-demand reads share one request', async () => {
    const m = monitor();
    const count = () => fake.requests.filter((r) => r.path === '/.well-known/openid-configuration').length;
    const start = count();
    await Promise.all([m.refresh(), m.refresh(), m.refresh()]);
    assert.equal(count() - start, 1);
  });

  it('start() reads at once and again on the interval; stop() ends it', async () => {
    const m = monitor(recordingLogger(), 0.05);
    const count = () => fake.requests.filter((r) => r.path === '/openid/v1/jwks').length;
    const start = count();
    m.start();
    try {
      await until(() => count() - start >= 3, 'three reads');
    } finally {
      m.stop();
    }
    assert.ok(m.servedIssuer);
  });

  it('reportIssuerRisk records a Warning Event with the mirror pod as related object, deduplicated', async () => {
    const m = monitor();
    const risk = {
      object: { kind: 'Pod', namespace: 'kube-system', name: 'kube-apiserver-cp-1', uid: 'u-1' },
      reason: 'ServiceAccountIssuerDropped',
      message: 'kube-apiserver pod kube-apiserver-cp-1 does not accept https://kubernetes.default.svc',
    };
    const before = oidc.events.length;
    m.reportIssuerRisk(risk);
    await until(() => oidc.events.length > before, 'the Event');
    const e = oidc.events.at(-1);
    assert.equal(e.reason, 'ServiceAccountIssuerDropped');
    assert.deepEqual(e.related, { apiVersion: 'v1', kind: 'Pod', namespace: 'kube-system', name: 'kube-apiserver-cp-1', uid: 'u-1' });
    assert.equal(e.involvedObject.kind, 'Deployment');
    m.reportIssuerRisk(risk); // the same again within the dedupe window: not recorded twice
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(oidc.events.length, before + 1);
  });
});

describe('EventRecorder', () => {
  it('a failed create is logged and retried next time (not remembered as sent)', async () => {
    const fake = await FakeApiServer.start();
    try {
      const lines: any[] = [];
      const logger = createLogger('debug', (l) => lines.push(JSON.parse(l)));
      const kc = kubeConfig(fake);
      const rec = new EventRecorder({ kc, logger, namespace: 'tokenguard' });
      // Refused as RBAC without `create events` would refuse it.
      fake.route('POST', /\/events$/, (_req, res, { fake: f }) => f.sendJson(res, 403, statusBody(403, 'Forbidden', 'events is forbidden: cannot create resource "events"')));
      assert.equal(await rec.record({ type: 'Warning', reason: 'X', message: 'm' }), false);
      assert.ok(lines.some((l) => l.msg === 'could not record Event' && /forbidden/.test(l.error)), JSON.stringify(lines));
      const oidc = await serveOidc(fake);
      assert.equal(await rec.record({ type: 'Warning', reason: 'X', message: 'm' }), true);
      assert.equal(oidc.events.length, 1);
      assert.equal(await rec.record({ type: 'Warning', reason: 'X', message: 'm' }), false, 'deduplicated');
      assert.equal(await rec.record({ type: 'Warning', reason: 'X', message: 'other' }), true);
    } finally {
      await fake.close();
    }
  });
});

describe('the captured key set', () => {
  it('cluster-state/jwks.json parses as a key set and verifies the captured (expired) tokens', async () => {
    const keys = parseKeySet(clusterState('jwks.json'));
    assert.equal(keys.keys.length, 1);
    assert.equal(keys.keys[0]!.kid, '5TVtRHsZFuD0Zw_0clQsYI0UZZ4DwiHSt_LEA-NDNcA');
    const token = readFileSync(join(CLUSTER_STATE_DIR, 'token-default-shop.jwt'), 'utf8');
    const served = clusterState('openid-configuration.json').issuer;
    // At issue time + 1 min: valid in every respect.
    const fresh = await verifyToken(token, { keys, acceptedIssuers: [served], audience: served, now: new Date(1795470613_000) });
    assert.deepEqual(fresh.problems, []);
    assert.equal(fresh.valid, true);
    // Long after: only expired, the signature still verifies.
    const late = await verifyToken(token, { keys, acceptedIssuers: [served], now: new Date(1795471153_000 + 3600_000) });
    assert.deepEqual(late.problems.map((p) => p.code), ['expired']);
  });
  it('what is not a key set is refused with a reason', () => {
    assert.throws(() => parseKeySet({}), /no "keys" array/);
    assert.throws(() => parseKeySet({ keys: [{ n: 'x' }] }), /without "kty"/);
    assert.throws(() => parseKeySet(null), /no "keys" array/);
  });
});
