// Self-managed TLS, end to end (run from e2e.test.ts): three tokenguard processes start at once
// against an empty v1.x control plane with nothing but the namespace, the RBAC of manifests/base
// and the webhook configurations (no caBundle). They must end with one Secret, one CA, and that CA
// in both configurations' caBundle; with lifetimes of minutes, serving renewals and a CA rotation
// happen while kube-apiserver calls a fail-closed webhook, with no failed call; a deleted Secret
// converges again. kube-apiserver reaches tokenguard by URL (there is no node, so no Service):
// the certificate also names 127.0.0.1 and localhost (server.selfManagedTLS.extraSubjectAltNames).

import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { freePort } from '../helpers/ports.js';
import { TokenguardProcess } from '../helpers/tokenguard-process.js';
import type { Assets } from './harness/assets.js';
import { ControlPlane } from './harness/control-plane.js';
import { ensureNamespace, MANIFESTS, webhooksFor } from './harness/environment.js';
import { eventually } from './harness/eventually.js';
import { kubectlFor, ok, type Kubectl } from './harness/kubectl.js';

const NS = 'e2e-self-managed-tls';
const REPLICAS = 3;
/** Lifetimes of minutes: serving renewals every ~30 s, a CA rotation starting after ~54 s. */
const SELF_MANAGED = {
  enabled: true,
  extraSubjectAltNames: ['127.0.0.1', 'localhost'],
  caLifetimeSeconds: 120,
  certLifetimeSeconds: 60,
  renewAtFraction: 0.5,
  checkSeconds: 1,
  overlapSeconds: 4,
};

const pemCertificates = (pem: string) => pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];

export function selfManagedTlsScenario(assets: Assets): void {
  let cp: ControlPlane;
  let kubectl: Kubectl;
  const replicas: TokenguardProcess[] = [];

  /** The Secret's data, decoded; undefined while there is none. */
  const secret = async (): Promise<{ bundle: string; cert: string; phase: string; generation: string } | undefined> => {
    const r = await kubectl(['get', 'secret', 'tokenguard-tls', '-n', 'tokenguard', '-o', 'json']);
    if (r.code !== 0) return undefined;
    const s = JSON.parse(r.stdout);
    const text = (k: string) => Buffer.from(s.data?.[k] ?? '', 'base64').toString('utf8');
    return {
      bundle: text('ca.crt'),
      cert: text('tls.crt'),
      phase: s.metadata.annotations?.['tokenguard.io/ca-rotation-phase'],
      generation: s.metadata.annotations?.['tokenguard.io/certificate-generation'],
    };
  };
  const trust = async () => Buffer.from((await secret())?.bundle ?? '');
  /** Every caBundle of both configurations, decoded. */
  const caBundles = async (): Promise<string[]> => {
    const out: string[] = [];
    for (const kind of ['validatingwebhookconfiguration', 'mutatingwebhookconfiguration']) {
      const cfg = JSON.parse(ok(await kubectl(['get', kind, 'tokenguard', '-o', 'json']), kind).stdout);
      for (const w of cfg.webhooks) out.push(Buffer.from(w.clientConfig.caBundle ?? '', 'base64').toString('utf8'));
    }
    return out;
  };
  /** The certificate a replica serves now (its PEM-independent fingerprint). */
  const served = (port: number) =>
    new Promise<string>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
        resolve(s.getPeerX509Certificate()!.fingerprint256);
        s.end();
      });
      s.on('error', reject);
    });
  /** One Secret, every caBundle its bundle, every replica serving its certificate. */
  const converged = async (): Promise<boolean> => {
    const s = await secret();
    if (!s) return false;
    if (!(await caBundles()).every((b) => b === s.bundle)) return false;
    const want = new X509Certificate(s.cert).fingerprint256;
    return (await Promise.all(replicas.map((r) => served(r.port)))).every((f) => f === want);
  };
  const sum = async (sample: string) => (await Promise.all(replicas.map((r) => r.metric(sample)))).reduce<number>((a, v) => a + (v ?? 0), 0);

  before(async () => {
    cp = await ControlPlane.start(assets, {});
    kubectl = kubectlFor(assets.kubectl, cp.kubeconfig);
    ok(await kubectl(['apply', '-f', join(MANIFESTS, 'namespace.yaml'), '-f', join(MANIFESTS, 'rbac.yaml')]), 'apply namespace and RBAC');
    const token = ok(await kubectl(['create', 'token', 'tokenguard', '-n', 'tokenguard', '--duration=6h']), 'TokenRequest').stdout.trim();
    const kubeconfig = join(cp.dir, 'tokenguard.kubeconfig');
    writeFileSync(kubeconfig, cp.kubeconfigFor({ token }), { mode: 0o600 });
    const ports = await Promise.all(Array.from({ length: REPLICAS }, () => freePort()));
    // The configurations as the manifests have them (no caBundle), at the first replica's URL, and
    // the main validating webhook failing closed: a call that fails TLS verification fails the request.
    const webhooks = webhooksFor(`https://127.0.0.1:${ports[0]}`, '', assets.serverVersion).replace(/failurePolicy: Ignore/, 'failurePolicy: Fail');
    ok(await kubectl(['apply', '-f', '-'], webhooks), 'the webhook configurations');
    await ensureNamespace(kubectl, NS);
    // All at once, on an empty cluster.
    const started = await Promise.all(
      ports.map((port) =>
        TokenguardProcess.start({ dir: cp.dir, kubeconfig, port, trust, config: { server: { selfManagedTLS: SELF_MANAGED } } }),
      ),
    );
    replicas.push(...started);
  });

  after(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await cp?.stop();
  });

  it('replicas started at once end with one Secret, one CA, and its caBundle in both configurations', async (t) => {
    await eventually(async () => ((await converged()) ? true : undefined), 'one Secret, its caBundle everywhere, every replica serving it', 20_000);
    const s = (await secret())!;
    assert.equal(pemCertificates(s.bundle).length, 1, 'one CA');
    assert.equal(await sum('tokenguard_tls_rotations_total{kind="create"}'), 1, 'one replica created the Secret');
    const list = JSON.parse(ok(await kubectl(['get', 'secrets', '-n', 'tokenguard', '-o', 'json']), 'secrets').stdout);
    assert.deepEqual(list.items.map((i: { metadata: { name: string } }) => i.metadata.name), ['tokenguard-tls']);
    const cert = new X509Certificate(s.cert);
    assert.match(cert.subjectAltName!, /DNS:tokenguard\.tokenguard\.svc, DNS:tokenguard\.tokenguard\.svc\.cluster\.local, DNS:tokenguard\.tokenguard, IP Address:127\.0\.0\.1/);
    // kube-apiserver calls the fail-closed webhook and verifies it against the injected caBundle.
    ok(await kubectl(['run', 'probe', '-n', NS, '--image=busybox', '--restart=Never', '--dry-run=server']), 'a pod create through the fail-closed webhook');
    await eventually(
      async () => replicas[0]!.logs.some((l) => l.msg === 'admission decision' && l.namespace === NS && l.name === 'probe' && l.route === 'validate') || undefined,
      'tokenguard to log its decision on the pod',
      5_000,
    );
    const lost = replicas.flatMap((r) => r.logs).filter((l) => String(l.msg).includes('another replica wrote the certificate Secret first')).length;
    t.diagnostic(`start: ${REPLICAS} replicas, 1 create won, ${lost} lost races read what won`);
  });

  it('renews the serving certificate and rotates the CA under a fail-closed webhook, with no failed call', async (t) => {
    const before = await secret();
    const firstCA = pemCertificates(before!.bundle)[0]!;
    let calls = 0;
    const failures: string[] = [];
    const phases = new Set<string>();
    let streaming = true;
    const stream = (async () => {
      for (let i = 0; streaming; i++) {
        const r = await kubectl(['run', `load-${i}`, '-n', NS, '--image=busybox', '--restart=Never', '--dry-run=server']);
        calls++;
        if (r.code !== 0) failures.push(r.stderr.trim());
      }
    })();
    try {
      await eventually(
        async () => {
          const s = await secret();
          if (s?.phase) phases.add(s.phase);
          const finished = await sum('tokenguard_tls_rotations_total{kind="finish-ca-rotation"}');
          return finished >= 1 && s?.phase === 'steady' && (await converged()) ? true : undefined;
        },
        'a CA rotation to finish and converge',
        150_000,
      );
    } finally {
      streaming = false;
      await stream;
    }
    const after = (await secret())!;
    const counts = Object.fromEntries(
      await Promise.all(
        ['renew-serving', 'start-ca-rotation', 'switch-ca', 'finish-ca-rotation'].map(async (k) => [k, await sum(`tokenguard_tls_rotations_total{kind="${k}"}`)] as const),
      ),
    );
    t.diagnostic(`rotation under load: ${calls} pod creates through the fail-closed webhook, ${failures.length} failed; rotations ${JSON.stringify(counts)}`);
    assert.deepEqual(failures, [], 'no failed admission');
    assert.ok(calls >= 20, `${calls} calls`);
    assert.ok(counts['renew-serving']! >= 1, 'the serving certificate was renewed');
    for (const k of ['start-ca-rotation', 'switch-ca', 'finish-ca-rotation']) assert.ok(counts[k]! >= 1, k);
    assert.ok(phases.has('trusting-new-ca') || phases.has('retiring-old-ca'), `saw the rotation's phases: ${[...phases].join(', ')}`);
    assert.equal(pemCertificates(after.bundle).length, 1);
    assert.notEqual(pemCertificates(after.bundle)[0], firstCA, 'a new CA');
    assert.equal(await sum('tokenguard_tls_renewal_failures_total{step="write"}'), 0);
  });

  it('a Secret deleted while running converges again to one Secret and a matching caBundle', async (t) => {
    const before = (await secret())!;
    ok(await kubectl(['delete', 'secret', 'tokenguard-tls', '-n', 'tokenguard']), 'delete the Secret');
    const deleted = Date.now();
    await eventually(async () => ((await secret()) ? true : undefined), 'the Secret to come back', 20_000);
    await eventually(async () => ((await converged()) ? true : undefined), 'convergence', 60_000);
    const back = (await secret())!;
    assert.ok(Number(back.generation) > Number(before.generation), 'a newer generation');
    ok(await kubectl(['run', 'probe-2', '-n', NS, '--image=busybox', '--restart=Never', '--dry-run=server']), 'the fail-closed webhook still answers');
    t.diagnostic(`deleted Secret: converged in ${Date.now() - deleted} ms`);
  });
}

