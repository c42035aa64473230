// The certificate controller against the fake API server (real client, real HTTP, the API server's
// answers to racing writes: 409 AlreadyExists, 409 Conflict): replicas starting at once, a corrupt
// Secret, a deleted Secret, a stale replica, a forbidden Secret, and a CA rotation during which
// a client that trusts only the injected caBundle always completes its TLS handshake.

import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { KubeConfig } from '@kubernetes/client-node';
import { ApiClient } from '../../src/cluster/client.js';
import { CertController, startSelfManagedTls, tlsRenewalFailures, tlsRotations } from '../../src/cluster/cert-controller.js';
import { bundleCertificates, serviceNames, type TlsSettings } from '../../src/k8s/self-managed-tls.js';
import { createLogger } from '../../src/observability/log.js';
import { DEFAULT_CONFIG } from '../../src/config/schema.js';
import { startServer } from '../../src/server/server.js';
import { Engine } from '../../src/admission/engine.js';
import { FakeApiServer, statusBody, type KubeObject } from '../helpers/fake-apiserver.js';

const NS = 'tokenguard';
const SECRET = 'tokenguard-tls';
const SETTINGS: TlsSettings = {
  caLifetimeSeconds: 3600,
  certLifetimeSeconds: 900,
  renewAtFraction: 2 / 3,
  overlapSeconds: 60,
  subjectAltNames: [...serviceNames('tokenguard', NS), '127.0.0.1'],
};

function webhookConfiguration(kind: 'ValidatingWebhookConfiguration' | 'MutatingWebhookConfiguration', hooks: string[]): KubeObject {
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind,
    metadata: { name: 'tokenguard' },
    webhooks: hooks.map((name) => ({ name, clientConfig: { service: { name: 'tokenguard', namespace: NS, path: '/validate', port: 443 } } })),
  };
}

interface Rig {
  fake: FakeApiServer;
  lines: string[];
  clock: { now: Date };
  controller(): CertController;
}

async function rig(): Promise<Rig> {
  const fake = await FakeApiServer.start();
  fake.upsert('validatingwebhookconfigurations', webhookConfiguration('ValidatingWebhookConfiguration', ['validate.tokenguard.io', 'validate-kube-system.tokenguard.io']));
  fake.upsert('mutatingwebhookconfigurations', webhookConfiguration('MutatingWebhookConfiguration', ['mutate.tokenguard.io']));
  // An unrelated configuration, which tokenguard must never touch.
  fake.upsert('validatingwebhookconfigurations', { ...webhookConfiguration('ValidatingWebhookConfiguration', ['other.example.com']), metadata: { name: 'other' } });
  const lines: string[] = [];
  const clock = { now: new Date('2026-12-06T10:00:00Z') };
  const kc = new KubeConfig();
  kc.loadFromFile(fake.kubeconfigPath);
  const controller = () =>
    new CertController({
      client: new ApiClient(kc),
      namespace: NS,
      secretName: SECRET,
      webhookConfigurations: ['tokenguard'],
      settings: SETTINGS,
      checkSeconds: 3600, // passes are run by hand
      logger: createLogger('debug', (l) => lines.push(l)),
      now: () => clock.now,
    });
  return { fake, lines, clock, controller };
}

const secretOf = (fake: FakeApiServer) => fake.get('secrets', NS, SECRET);
const bundleOf = (fake: FakeApiServer) => Buffer.from(secretOf(fake)!.data['ca.crt'], 'base64').toString('utf8');
const caBundles = (fake: FakeApiServer) =>
  ['validatingwebhookconfigurations', 'mutatingwebhookconfigurations'].flatMap((r) =>
    (fake.get(r, undefined, 'tokenguard')!.webhooks as KubeObject[]).map((w) => Buffer.from(w.clientConfig.caBundle ?? '', 'base64').toString('utf8')),
  );
const count = async (metric: { get(): Promise<{ values: { labels: Record<string, unknown>; value: number }[] }> }, label: Record<string, string>) =>
  (await metric.get()).values.find((v) => Object.entries(label).every(([k, x]) => v.labels[k] === x))?.value ?? 0;

describe('certificate controller', () => {
  let r: Rig;
  beforeEach(async () => {
    await r?.fake.close();
    r = await rig();
    tlsRotations.reset();
    tlsRenewalFailures.reset();
  });
  after(async () => r?.fake.close());

  it('three replicas starting at once on an empty cluster end with one Secret, one CA, and its caBundle in both configurations', async () => {
    const replicas = [r.controller(), r.controller(), r.controller()];
    await Promise.all(replicas.map((c) => c.reconcileNow()));
    const creates = r.fake.requests.filter((q) => q.method === 'POST' && q.path === `/api/v1/namespaces/${NS}/secrets`);
    assert.equal(creates.length, 3, 'each replica tried to create');
    assert.equal(await count(tlsRotations, { kind: 'create' }), 1, 'one create won');
    assert.equal(r.lines.filter((l) => l.includes('another replica wrote the certificate Secret first')).length, 2);
    const served = replicas.map((c) => c.pair()?.cert);
    assert.equal(new Set(served).size, 1, 'every replica serves the same certificate');
    assert.equal(served[0], Buffer.from(secretOf(r.fake)!.data['tls.crt'], 'base64').toString('utf8'));
    assert.equal(bundleCertificates(bundleOf(r.fake)).length, 1);
    assert.deepEqual(caBundles(r.fake), [bundleOf(r.fake), bundleOf(r.fake), bundleOf(r.fake)]);
    assert.equal(r.fake.get('validatingwebhookconfigurations', undefined, 'other')!.webhooks[0].clientConfig.caBundle, undefined, 'another configuration is left alone');
    assert.equal(secretOf(r.fake)!.type, 'kubernetes.io/tls');
    for (const c of replicas) assert.deepEqual(c.readiness(), { ok: true });
  });

  it('a replica that starts later adopts the Secret and writes nothing', async () => {
    await r.controller().reconcileNow();
    const rv = secretOf(r.fake)!.metadata.resourceVersion;
    const before = r.fake.requests.length;
    const late = r.controller();
    await late.reconcileNow();
    assert.equal(secretOf(r.fake)!.metadata.resourceVersion, rv);
    assert.deepEqual(r.fake.requests.slice(before).map((q) => q.method), ['GET', 'GET', 'GET']);
    assert.equal(late.pair()?.cert, Buffer.from(secretOf(r.fake)!.data['tls.crt'], 'base64').toString('utf8'));
  });

  it('a corrupt Secret is named, replaced and served from, without a throw', async () => {
    r.fake.upsert('secrets', { apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: { name: SECRET, namespace: NS }, data: { 'ca.crt': Buffer.from('junk').toString('base64') } });
    const c = r.controller();
    await c.reconcileNow();
    const replaced = r.lines.find((l) => l.includes('certificate Secret replaced'));
    assert.ok(replaced, r.lines.join(''));
    assert.match(replaced, /"level":"error"/);
    assert.match(replaced, /the certificate Secret cannot be used: data\.ca-signer\.crt is missing or empty/);
    assert.equal(await count(tlsRotations, { kind: 'replace' }), 1);
    assert.equal(secretOf(r.fake)!.type, 'Opaque', 'the type of a Secret cannot change: kept');
    assert.ok(c.pair());
    assert.deepEqual(caBundles(r.fake), [bundleOf(r.fake), bundleOf(r.fake), bundleOf(r.fake)]);
  });

  it('a Secret deleted while running comes back with the CA in use and a CA rotation begun', async () => {
    const a = r.controller();
    const b = r.controller();
    await a.reconcileNow();
    await b.reconcileNow();
    const served = a.pair()!.cert;
    const oldBundle = bundleOf(r.fake);
    r.fake.remove('secrets', NS, SECRET);
    await Promise.all([a.reconcileNow(), b.reconcileNow()]);
    assert.equal(await count(tlsRotations, { kind: 'create' }), 2, 'the first Secret and the re-created one');
    assert.equal(a.pair()!.cert, served, 'still serving what the API server trusts');
    assert.equal(b.pair()!.cert, served);
    const bundle = bundleCertificates(bundleOf(r.fake));
    assert.equal(bundle.length, 2);
    assert.equal(bundle[0], oldBundle);
    assert.ok(r.lines.some((l) => l.includes('the Secret was deleted: re-created with the CA in use')));
    assert.deepEqual(caBundles(r.fake), [bundleOf(r.fake), bundleOf(r.fake), bundleOf(r.fake)]);
  });

  it('a replica that read an older Secret never writes its bundle over a newer one', async () => {
    await r.controller().reconcileNow();
    const v = structuredClone(r.fake.get('validatingwebhookconfigurations', undefined, 'tokenguard')!);
    v.metadata.annotations['tokenguard.io/certificate-generation'] = '99';
    for (const w of v.webhooks) w.clientConfig.caBundle = Buffer.from('newer').toString('base64');
    r.fake.upsert('validatingwebhookconfigurations', v);
    await r.controller().reconcileNow();
    assert.equal(r.fake.get('validatingwebhookconfigurations', undefined, 'tokenguard')!.webhooks[0].clientConfig.caBundle, Buffer.from('newer').toString('base64'));
  });

  it('a Secret it may not read: counted, logged with the reason, unready, and retried', async () => {
    r.fake.route('GET', /\/secrets\//, (_req, res, { fake }) =>
      fake.sendJson(res, 403, statusBody(403, 'Forbidden', `secrets "${SECRET}" is forbidden: User "system:serviceaccount:tokenguard:tokenguard" cannot get resource "secrets"`)),
    );
    const c = r.controller();
    await c.reconcileNow();
    assert.equal(await count(tlsRenewalFailures, { step: 'read' }), 1);
    assert.ok(r.lines.some((l) => l.includes('renewal failed, retrying') && l.includes('is forbidden')));
    const ready = c.readiness();
    assert.equal(ready.ok, false);
    assert.match(ready.reason!, /waiting for the certificate Secret tokenguard\/tokenguard-tls: GET .* 403/);
    assert.equal(c.pair(), undefined);
  });
});

describe('certificate controller and server: renewals and a CA rotation with every handshake verified', () => {
  let fake: FakeApiServer;
  let stopServer: () => Promise<void>;
  const clock = { now: new Date() };
  let controller: CertController;
  let port: number;

  before(async () => {
    ({ fake } = await rig());
    const kc = new KubeConfig();
    kc.loadFromFile(fake.kubeconfigPath);
    controller = new CertController({
      client: new ApiClient(kc),
      namespace: NS,
      secretName: SECRET,
      webhookConfigurations: ['tokenguard'],
      settings: SETTINGS,
      checkSeconds: 3600,
      logger: createLogger('error', () => {}),
      now: () => clock.now,
    });
    await controller.reconcileNow();
    const running = await startServer({
      address: '127.0.0.1',
      port: 0,
      tls: { pair: () => controller.pair()!, onChange: (l) => controller.onChange(l), what: 'test' },
      tlsReloadSeconds: 3600,
      maxBodyBytes: 1 << 20,
      shutdownGraceSeconds: 1,
      logger: createLogger('error', () => {}),
      engine: () => new Engine({ config: DEFAULT_CONFIG, policies: [] }),
    });
    port = running.port;
    stopServer = async () => {
      await running.shutdown();
      running.server.close();
    };
  });
  after(async () => {
    await stopServer?.();
    await fake?.close();
  });

  /**
   * A handshake, and the check the API server makes: the served certificate is signed by a CA of
   * the mutating configuration's caBundle and names the Service. (The controller's clock runs ahead
   * of the real one, so validity dates are the one thing not checked here; the e2e suite checks them.)
   */
  const handshake = () =>
    new Promise<string>((resolve, reject) => {
      const bundle = Buffer.from(fake.get('mutatingwebhookconfigurations', undefined, 'tokenguard')!.webhooks[0].clientConfig.caBundle, 'base64').toString('utf8');
      const s = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'tokenguard.tokenguard.svc' }, () => {
        const served = s.getPeerX509Certificate()!;
        s.end();
        const trusted = bundleCertificates(bundle).some((pem) => {
          const ca = new X509Certificate(pem);
          return served.checkIssued(ca) && served.verify(ca.publicKey);
        });
        if (!trusted) return reject(new Error(`the served certificate (issuer ${served.issuer}) is not signed by a CA of the caBundle`));
        if (!served.checkHost('tokenguard.tokenguard.svc')) return reject(new Error('the served certificate does not name the Service'));
        resolve(served.fingerprint256);
      });
      s.on('error', reject);
    });

  const step = async (minutes: number) => {
    clock.now = new Date(clock.now.getTime() + minutes * 60_000);
    await controller.reconcileNow();
    return handshake();
  };

  it('serves the new serving certificate after a renewal, and through all three CA steps', async () => {
    const first = await handshake();
    assert.equal(await step(5), first, 'nothing due yet');
    const renewed = await step(6); // 11 min: past 2/3 of 15
    assert.notEqual(renewed, first, 'the renewed certificate is served without a restart');
    assert.equal(await count(tlsRotations, { kind: 'renew-serving' }), 1);
    // The CA reaches its renewal point at 40 min; certificates keep renewing meanwhile.
    for (let t = 11; t < 41; t += 5) await step(5);
    assert.equal(fake.get('secrets', NS, SECRET)!.metadata.annotations['tokenguard.io/ca-rotation-phase'], 'trusting-new-ca');
    assert.equal(bundleCertificates(bundleOf(fake)).length, 2);
    assert.deepEqual(caBundles(fake), [bundleOf(fake), bundleOf(fake), bundleOf(fake)], 'both CAs trusted before the new one signs');
    const phase = () => fake.get('secrets', NS, SECRET)!.metadata.annotations['tokenguard.io/ca-rotation-phase'];
    // Half a minute at a time (each step's handshake checked): at least the 1-minute overlap per step.
    let steps = 0;
    while (phase() === 'trusting-new-ca' && steps < 10) steps += (await step(0.5), 1);
    assert.equal(phase(), 'retiring-old-ca');
    assert.ok(steps >= 2, `switched after ${steps} half-minutes`);
    steps = 0;
    while (phase() === 'retiring-old-ca' && steps < 10) steps += (await step(0.5), 1);
    assert.equal(phase(), 'steady');
    assert.ok(steps >= 2, `finished after ${steps} half-minutes`);
    assert.equal(bundleCertificates(bundleOf(fake)).length, 1);
    await step(0.5);
    for (const kind of ['start-ca-rotation', 'switch-ca', 'finish-ca-rotation']) assert.equal(await count(tlsRotations, { kind }), 1, kind);
  });
});

describe('startSelfManagedTls', () => {
  it('an API server that does not answer delays start-up by a few seconds at most, not a crash-looping minute', async () => {
    const fake = await FakeApiServer.start();
    try {
      fake.route('GET', /\/secrets\//, () => new Promise<void>(() => {})); // never answers
      const kc = new KubeConfig();
      kc.loadFromFile(fake.kubeconfigPath);
      const t0 = Date.now();
      const tls = await startSelfManagedTls(new ApiClient(kc), { ...DEFAULT_CONFIG.server.selfManagedTLS, enabled: true }, NS, createLogger('error', () => {}));
      try {
        const waited = Date.now() - t0;
        assert.ok(waited >= 4_500 && waited < 8_000, `waited ${waited} ms`);
        assert.match(tls.pair().cert, /BEGIN CERTIFICATE/);
        assert.equal(tls.readiness().ok, false);
      } finally {
        tls.stop();
      }
    } finally {
      await fake.close();
    }
  });

  it('serves a throwaway certificate and is unready while the Secret cannot be read', async () => {
    const fake = await FakeApiServer.start();
    try {
      await fake.down();
      const kc = new KubeConfig();
      kc.loadFromFile(fake.kubeconfigPath);
      const tls = await startSelfManagedTls(new ApiClient(kc), { ...DEFAULT_CONFIG.server.selfManagedTLS, enabled: true }, 'tg-system', createLogger('error', () => {}));
      try {
        assert.match(tls.pair().cert, /BEGIN CERTIFICATE/);
        assert.equal(tls.what, 'self-managed (Secret tg-system/tokenguard-tls)');
        assert.match(tls.readiness().reason!, /^waiting for the certificate Secret tg-system\/tokenguard-tls: /);
      } finally {
        tls.stop();
      }
    } finally {
      await fake.close();
    }
  });
});
