// The self-managed TLS state machine, driven directly with a clock: empty, valid, near expiry,
// expired, a CA rotation step by step, a Secret another replica wrote, and corrupt or half-written
// Secrets (a clear reason, then a replacement: never a throw).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  advance,
  bundleCertificates,
  DATA_KEYS,
  decide,
  expiries,
  freshState,
  readCertificateSecret,
  recreated,
  secretContent,
  serviceNames,
  type CertificateState,
  type TlsSettings,
} from '../../src/k8s/self-managed-tls.js';
import { tempDir } from '../helpers/temp-dir.js';

const MIN = 60_000;
const SETTINGS: TlsSettings = {
  caLifetimeSeconds: 60 * 60, // 1 h: rotation at 40 min
  certLifetimeSeconds: 15 * 60, // 15 min: renewal at 10 min
  renewAtFraction: 2 / 3,
  overlapSeconds: 60,
  subjectAltNames: [...serviceNames('tokenguard', 'tokenguard'), '127.0.0.1'],
};
const T0 = new Date('2026-12-06T10:00:00Z');
const at = (minutes: number) => new Date(T0.getTime() + minutes * MIN);

/** The state as another replica would read it back from the Secret. */
function roundTrip(s: CertificateState) {
  const { data, annotations } = secretContent(s);
  return readCertificateSecret({ data, metadata: { annotations } });
}

function readOk(s: CertificateState): CertificateState {
  const read = roundTrip(s);
  assert.ok('state' in read, 'problem' in read ? read.problem : '');
  return read.state;
}

describe('self-managed TLS decisions', () => {
  const fresh = freshState(T0, SETTINGS, 1);

  it('an empty namespace gets a Secret; a fresh one is valid and names every configured host', () => {
    assert.equal(decide(undefined, T0, SETTINGS, false).kind, 'create');
    const state = readOk(fresh);
    assert.deepEqual(decide({ state }, at(1), SETTINGS, true), { kind: 'none', reason: 'valid' });
    const cert = new X509Certificate(state.serving.cert);
    assert.equal(cert.subjectAltName, 'DNS:tokenguard.tokenguard.svc, DNS:tokenguard.tokenguard.svc.cluster.local, DNS:tokenguard.tokenguard, IP Address:127.0.0.1');
    assert.ok(cert.verify(new X509Certificate(state.signer.cert).publicKey));
    assert.equal(bundleCertificates(state.bundle).length, 1);
  });

  it('openssl verifies the serving certificate against the bundle, for serverAuth', () => {
    const dir = tempDir('smtls-');
    writeFileSync(join(dir, 'ca.crt'), fresh.bundle);
    writeFileSync(join(dir, 'tls.crt'), fresh.serving.cert);
    const out = execFileSync('openssl', ['verify', '-attime', String(at(1).getTime() / 1000), '-CAfile', join(dir, 'ca.crt'), '-purpose', 'sslserver', join(dir, 'tls.crt')]).toString();
    assert.match(out, /tls\.crt: OK/);
  });

  it('renews the serving certificate at its renewal point, and when expired, with the same CA', () => {
    assert.equal(decide({ state: fresh }, at(9), SETTINGS, true).kind, 'none');
    const near = decide({ state: fresh }, at(10.1), SETTINGS, true);
    assert.equal(near.kind, 'renew-serving');
    assert.match(near.reason, /renewal point/);
    const expired = decide({ state: fresh }, at(16), SETTINGS, true);
    assert.equal(expired.kind, 'renew-serving');
    assert.match(expired.reason, /expired/);
    const renewed = readOk(advance(fresh, near, at(10.1), SETTINGS, 2));
    assert.equal(renewed.signer.cert, fresh.signer.cert);
    assert.equal(renewed.bundle, fresh.bundle);
    assert.notEqual(renewed.serving.cert, fresh.serving.cert);
    assert.equal(renewed.generation, 2);
    assert.equal(decide({ state: renewed }, at(11), SETTINGS, true).kind, 'none');
  });

  it('renews a serving certificate that lacks a configured name', () => {
    const more = { ...SETTINGS, subjectAltNames: [...SETTINGS.subjectAltNames, '::1'] };
    const action = decide({ state: fresh }, at(1), more, true);
    assert.deepEqual(action, { kind: 'renew-serving', reason: 'the serving certificate does not name ::1' });
  });

  it('rotates the CA with an overlap: trust the new CA, then sign with it, then drop the old one', () => {
    // Keep the serving certificate fresh so only the CA is due.
    let s = advance(fresh, { kind: 'renew-serving', reason: '' }, at(39), SETTINGS, 2);
    const start = decide({ state: s }, at(40.1), SETTINGS, true);
    assert.equal(start.kind, 'start-ca-rotation');
    s = readOk(advance(s, start, at(40.1), SETTINGS, 3));
    const oldCA = fresh.signer.cert;
    assert.equal(s.phase, 'trusting-new-ca');
    assert.deepEqual(bundleCertificates(s.bundle), [oldCA, s.next!.cert], 'the bundle trusts both');
    assert.equal(s.signer.cert, oldCA, 'the old CA still signs');

    // Not before the webhook configurations carry the new CA, nor before the overlap has passed.
    assert.match(decide({ state: s }, at(45), SETTINGS, false).reason, /waiting for the webhook configurations/);
    assert.equal(decide({ state: s }, at(40.5), SETTINGS, true).kind, 'none');
    const sw = decide({ state: s }, at(41.2), SETTINGS, true);
    assert.equal(sw.kind, 'switch-ca');
    const newCA = s.next!.cert;
    s = readOk(advance(s, sw, at(41.2), SETTINGS, 4));
    assert.equal(s.phase, 'retiring-old-ca');
    assert.equal(s.signer.cert, newCA);
    assert.ok(new X509Certificate(s.serving.cert).verify(new X509Certificate(newCA).publicKey), 'the new CA signs the serving certificate');
    assert.deepEqual(bundleCertificates(s.bundle), [oldCA, newCA], 'the old CA is still trusted');

    assert.equal(decide({ state: s }, at(41.5), SETTINGS, true).kind, 'none');
    const fin = decide({ state: s }, at(42.3), SETTINGS, true);
    assert.equal(fin.kind, 'finish-ca-rotation');
    s = readOk(advance(s, fin, at(42.3), SETTINGS, 5));
    assert.equal(s.phase, 'steady');
    assert.deepEqual(bundleCertificates(s.bundle), [newCA]);
    assert.equal(decide({ state: s }, at(43), SETTINGS, true).kind, 'none');
  });

  it('renews the serving certificate with the old CA while the new one waits for trust', () => {
    const s = readOk(advance(fresh, { kind: 'start-ca-rotation', reason: '' }, at(5), SETTINGS, 2));
    const action = decide({ state: s }, at(10.5), SETTINGS, false);
    assert.equal(action.kind, 'renew-serving');
    const renewed = readOk(advance(s, action, at(10.5), SETTINGS, 3));
    assert.equal(renewed.phase, 'trusting-new-ca');
    assert.ok(new X509Certificate(renewed.serving.cert).verify(new X509Certificate(fresh.signer.cert).publicKey));
  });

  it('lifetimes of minutes: a fresh certificate is not due at once (it starts early by a tenth of its life, not a minute)', () => {
    const short = { ...SETTINGS, caLifetimeSeconds: 120, certLifetimeSeconds: 60, renewAtFraction: 0.5 };
    const s = freshState(T0, short, 1);
    assert.equal(Date.parse(new X509Certificate(s.serving.cert).validFrom), T0.getTime() - 6_000);
    // Valid from -6 s to +60 s: half of its 66 s is reached at +27 s.
    assert.equal(decide({ state: s }, new Date(T0.getTime() + 26_000), short, true).kind, 'none');
    assert.equal(decide({ state: s }, new Date(T0.getTime() + 28_000), short, true).kind, 'renew-serving');
  });

  it('never issues a serving certificate that outlives its CA', () => {
    const s = advance(fresh, { kind: 'renew-serving', reason: '' }, at(55), SETTINGS, 2);
    assert.equal(expiries(s).serving, expiries(s).ca);
  });

  it('replaces an expired CA at once (nothing it signed verifies any more)', () => {
    const action = decide({ state: fresh }, at(61), SETTINGS, true);
    assert.equal(action.kind, 'replace');
    assert.match(action.reason, /the CA expired at 2026-12-06T11:00:00.000Z/);
  });

  it('a Secret written by another replica reads back as the same state: adopted, not rewritten', () => {
    const other = freshState(at(3), SETTINGS, 7);
    const read = roundTrip(other);
    assert.ok('state' in read);
    assert.equal(read.state.generation, 7);
    assert.equal(read.state.serving.cert, other.serving.cert);
    assert.equal(decide(read, at(4), SETTINGS, true).kind, 'none');
  });

  it('a deleted Secret is re-created from memory with the same certificate and a CA rotation begun', () => {
    const s = recreated(fresh, at(2), SETTINGS, 9);
    assert.equal(s.serving.cert, fresh.serving.cert, 'replicas keep serving what the API server trusts');
    assert.equal(s.phase, 'trusting-new-ca');
    assert.equal(bundleCertificates(s.bundle)[0], fresh.signer.cert);
    assert.equal(s.generation, 9);
  });

  describe('a corrupt or half-written Secret: a clear reason, then a replacement', () => {
    const good = secretContent(fresh);
    const other = freshState(T0, SETTINGS, 1);
    const b64 = (t: string) => Buffer.from(t).toString('base64');
    const cases: [string, Record<string, string | undefined>, Record<string, string>, RegExp][] = [
      ['no data at all', {}, {}, /data\.ca\.crt is missing or empty/],
      ['no serving key (half-written)', { [DATA_KEYS.servingKey]: undefined }, {}, /data\.tls\.key is missing/],
      ['a certificate that is not PEM', { [DATA_KEYS.servingCert]: b64('garbage') }, {}, /does not parse/],
      ['a key of another certificate', { [DATA_KEYS.servingKey]: b64(other.serving.key) }, {}, /serving certificate's key does not match/],
      ['a serving certificate of another CA', { [DATA_KEYS.servingCert]: b64(other.serving.cert), [DATA_KEYS.servingKey]: b64(other.serving.key) }, {}, /not signed by/],
      ['a bundle without the signing CA', { [DATA_KEYS.bundle]: b64(other.signer.cert) }, {}, /does not contain the signing CA/],
      ['an unknown phase', {}, { 'tokenguard.io/ca-rotation-phase': 'halfway' }, /not one of steady/],
      ['trusting-new-ca without the next CA', {}, { 'tokenguard.io/ca-rotation-phase': 'trusting-new-ca', 'tokenguard.io/ca-rotation-phase-since': T0.toISOString() }, /without data\.ca-next\.crt/],
    ];
    for (const [name, dataChange, annotationChange, reason] of cases) {
      it(name, () => {
        const data: Record<string, string> = name === 'no data at all' ? {} : { ...good.data };
        for (const [k, v] of Object.entries(dataChange)) {
          if (v === undefined) delete data[k];
          else data[k] = v;
        }
        const read = readCertificateSecret({ data, metadata: { annotations: { ...good.annotations, ...annotationChange } } });
        assert.ok('problem' in read);
        assert.match(read.problem, reason);
        const action = decide(read, at(1), SETTINGS, true);
        assert.equal(action.kind, 'replace');
        assert.match(action.reason, /^the certificate Secret cannot be used: /);
        assert.ok('state' in roundTrip(advance(undefined, action, at(1), SETTINGS, 2)));
      });
    }
  });
});
