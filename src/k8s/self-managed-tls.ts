// Self-managed TLS, the decisions: what the certificate Secret holds, whether it is usable, and
// what to do next (create it, renew the serving certificate, rotate the CA in three steps, or
// replace what cannot be used). Pure apart from key generation: the certificate controller
// (cluster/cert-controller.ts) reads the Secret, asks `decide`, writes what `advance` returns,
// and tests drive both directly with any clock.
//
// CA rotation keeps every call verifiable (the API server trusts the webhook configurations'
// caBundle, the replicas serve what the Secret says):
//   steady           bundle [A],    A signs the serving certificate
//   trusting-new-ca  bundle [A, B], A still signs; wait until caBundle carries B and `overlap`
//                    has passed, so the API server trusts B before anyone serves a B certificate
//   retiring-old-ca  bundle [A, B], B signs a new serving certificate; wait `overlap` (longer than
//                    every replica's re-read of the Secret), so nobody still serves an A certificate
//   steady           bundle [B]

import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { issueCertificate, type KeyPairPem } from './x509.js';

export const PHASES = ['steady', 'trusting-new-ca', 'retiring-old-ca'] as const;
export type Phase = (typeof PHASES)[number];

/** Annotations on the Secret (the rotation state) and on the webhook configurations (which bundle they carry). */
export const ANNOTATIONS = {
  phase: 'tokenguard.io/ca-rotation-phase',
  phaseSince: 'tokenguard.io/ca-rotation-phase-since',
  /** Increases with every write of the Secret; the webhook configurations carry the one they were injected from. */
  generation: 'tokenguard.io/certificate-generation',
} as const;

/** The keys of the Secret's `data`. */
export const DATA_KEYS = {
  /** The CAs to trust (one, two during a rotation): what goes into caBundle. */
  bundle: 'ca.crt',
  signerCert: 'ca-signer.crt',
  signerKey: 'ca-signer.key',
  /** During trusting-new-ca only: the CA that signs next. */
  nextCert: 'ca-next.crt',
  nextKey: 'ca-next.key',
  servingCert: 'tls.crt',
  servingKey: 'tls.key',
} as const;

export interface TlsSettings {
  caLifetimeSeconds: number;
  certLifetimeSeconds: number;
  /** Renew at this fraction of a certificate's lifetime (the serving certificate and the CA). */
  renewAtFraction: number;
  /** Hold of each CA rotation step. */
  overlapSeconds: number;
  /** Every name the serving certificate must carry (DNS names and IP addresses). */
  subjectAltNames: readonly string[];
}

export interface CertificateState {
  phase: Phase;
  phaseSince: Date;
  generation: number;
  signer: KeyPairPem;
  next?: KeyPairPem;
  /** PEM of the trusted CAs, in order. */
  bundle: string;
  serving: KeyPairPem;
}

/** A parsed certificate's validity and names. */
interface Parsed {
  x509: X509Certificate;
  notBefore: number;
  notAfter: number;
}

const parse = (pem: string): Parsed => {
  const x509 = new X509Certificate(pem);
  return { x509, notBefore: Date.parse(x509.validFrom), notAfter: Date.parse(x509.validTo) };
};

const PEM_CERTIFICATES = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n?/g;

/** The PEM certificates of a bundle, each ending in a newline. */
export const bundleCertificates = (bundle: string) => (bundle.match(PEM_CERTIFICATES) ?? []).map((c) => (c.endsWith('\n') ? c : c + '\n'));

/** Read a Secret's data (base64, as the API serves it) and annotations; a reason when it cannot be used. */
export function readCertificateSecret(secret: {
  data?: Record<string, string>;
  metadata?: { annotations?: Record<string, string> };
}): { state: CertificateState } | { problem: string } {
  const data = secret.data ?? {};
  const text = (key: string) => (data[key] === undefined ? undefined : Buffer.from(data[key], 'base64').toString('utf8'));
  for (const key of [DATA_KEYS.bundle, DATA_KEYS.signerCert, DATA_KEYS.signerKey, DATA_KEYS.servingCert, DATA_KEYS.servingKey]) {
    if (!text(key)) return { problem: `data.${key} is missing or empty (written by hand, or half-written)` };
  }
  const annotations = secret.metadata?.annotations ?? {};
  const phase = (annotations[ANNOTATIONS.phase] ?? 'steady') as Phase;
  if (!PHASES.includes(phase)) return { problem: `annotation ${ANNOTATIONS.phase} is ${JSON.stringify(phase)}, not one of ${PHASES.join(', ')}` };
  const since = Date.parse(annotations[ANNOTATIONS.phaseSince] ?? '');
  if (phase !== 'steady' && !Number.isFinite(since)) return { problem: `annotation ${ANNOTATIONS.phaseSince} is not a time` };
  const state: CertificateState = {
    phase,
    phaseSince: new Date(Number.isFinite(since) ? since : 0),
    generation: Number(annotations[ANNOTATIONS.generation]) || 0,
    signer: { cert: text(DATA_KEYS.signerCert)!, key: text(DATA_KEYS.signerKey)! },
    bundle: text(DATA_KEYS.bundle)!,
    serving: { cert: text(DATA_KEYS.servingCert)!, key: text(DATA_KEYS.servingKey)! },
  };
  const nextCert = text(DATA_KEYS.nextCert);
  const nextKey = text(DATA_KEYS.nextKey);
  if (phase === 'trusting-new-ca') {
    if (!nextCert || !nextKey) return { problem: `phase trusting-new-ca without data.${DATA_KEYS.nextCert} and data.${DATA_KEYS.nextKey}` };
    state.next = { cert: nextCert, key: nextKey };
  }
  const problem = consistencyProblem(state);
  return problem ? { problem } : { state };
}

/** What makes a state unusable: a pair that does not match, a certificate its CA did not sign, a CA missing from the bundle. */
function consistencyProblem(s: CertificateState): string | undefined {
  let signer: Parsed;
  let serving: Parsed;
  let bundle: Parsed[];
  try {
    signer = parse(s.signer.cert);
    serving = parse(s.serving.cert);
    bundle = bundleCertificates(s.bundle).map(parse);
  } catch (err) {
    return `a certificate does not parse: ${(err as Error).message}`;
  }
  for (const [what, pair] of [
    ['CA', s.signer],
    ['serving certificate', s.serving],
    ...(s.next ? [['next CA', s.next] as const] : []),
  ] as const) {
    if (!keyMatches(pair)) return `the ${what}'s key does not match its certificate`;
  }
  if (!signer.x509.ca) return `data.${DATA_KEYS.signerCert} is not a CA certificate`;
  if (!serving.x509.verify(signer.x509.publicKey)) return `data.${DATA_KEYS.servingCert} is not signed by data.${DATA_KEYS.signerCert}`;
  const inBundle = (c: string) => bundle.some((b) => b.x509.fingerprint256 === parse(c).x509.fingerprint256);
  if (!inBundle(s.signer.cert)) return `data.${DATA_KEYS.bundle} does not contain the signing CA`;
  if (s.next && !inBundle(s.next.cert)) return `data.${DATA_KEYS.bundle} does not contain the next CA`;
  return undefined;
}

function keyMatches(pair: KeyPairPem): boolean {
  try {
    const fromKey = createPublicKey(createPrivateKey(pair.key)).export({ type: 'spki', format: 'der' });
    const fromCert = new X509Certificate(pair.cert).publicKey.export({ type: 'spki', format: 'der' });
    return fromKey.equals(fromCert);
  } catch {
    return false;
  }
}

export type Action =
  | { kind: 'create'; reason: string }
  | { kind: 'replace'; reason: string }
  | { kind: 'renew-serving'; reason: string }
  | { kind: 'start-ca-rotation'; reason: string }
  | { kind: 'switch-ca'; reason: string }
  | { kind: 'finish-ca-rotation'; reason: string }
  | { kind: 'none'; reason: string };

export type ActionKind = Action['kind'];

const renewPoint = (c: Parsed, fraction: number) => c.notBefore + fraction * (c.notAfter - c.notBefore);
const iso = (ms: number) => new Date(ms).toISOString();

/**
 * What to do with what the Secret holds. `read` is readCertificateSecret's answer, or undefined
 * when there is no Secret; `bundleInjected` says whether every webhook configuration's caBundle is
 * the state's bundle (the condition for moving on from trusting-new-ca).
 */
export function decide(
  read: { state: CertificateState } | { problem: string } | undefined,
  now: Date,
  settings: TlsSettings,
  bundleInjected: boolean,
): Action {
  if (!read) return { kind: 'create', reason: 'no certificate Secret' };
  if ('problem' in read) return { kind: 'replace', reason: `the certificate Secret cannot be used: ${read.problem}` };
  const s = read.state;
  const t = now.getTime();
  const signer = parse(s.signer.cert);
  const serving = parse(s.serving.cert);
  if (t >= signer.notAfter) return { kind: 'replace', reason: `the CA expired at ${iso(signer.notAfter)}` };
  const overlapEnds = s.phaseSince.getTime() + settings.overlapSeconds * 1000;
  const servingDue = t >= renewPoint(serving, settings.renewAtFraction);
  // A serving certificate due while the new CA waits for trust is renewed by the old one.
  if (s.phase === 'trusting-new-ca' && servingDue) {
    return { kind: 'renew-serving', reason: `the serving certificate reached its renewal point (it expires at ${iso(serving.notAfter)})` };
  }
  if (s.phase === 'trusting-new-ca') {
    if (!bundleInjected) return { kind: 'none', reason: 'waiting for the webhook configurations to carry the new CA' };
    if (t < overlapEnds) return { kind: 'none', reason: `new CA trusted; it signs from ${iso(overlapEnds)}` };
    return { kind: 'switch-ca', reason: 'the webhook configurations have trusted the new CA for the overlap period' };
  }
  if (s.phase === 'retiring-old-ca' && t >= overlapEnds) {
    return { kind: 'finish-ca-rotation', reason: 'every replica has had the overlap period to serve the new certificate' };
  }
  if (s.phase === 'steady' && t >= renewPoint(signer, settings.renewAtFraction)) {
    return { kind: 'start-ca-rotation', reason: `the CA reached its renewal point (it expires at ${iso(signer.notAfter)})` };
  }
  if (t >= serving.notAfter) return { kind: 'renew-serving', reason: `the serving certificate expired at ${iso(serving.notAfter)}` };
  if (servingDue) {
    return { kind: 'renew-serving', reason: `the serving certificate reached its renewal point (it expires at ${iso(serving.notAfter)})` };
  }
  const missing = settings.subjectAltNames.filter((n) => !hasName(serving.x509, n));
  if (missing.length) return { kind: 'renew-serving', reason: `the serving certificate does not name ${missing.join(', ')}` };
  return { kind: 'none', reason: s.phase === 'steady' ? 'valid' : 'old CA still trusted for the overlap period' };
}

function hasName(cert: X509Certificate, name: string): boolean {
  return cert.checkHost(name, { subject: 'never' }) !== undefined || cert.checkIP(name) !== undefined;
}

/** Certificates start a little early (a minute, a tenth of a short lifetime), for clocks a little behind this one. */
const backdate = (lifetimeSeconds: number) => Math.min(60_000, lifetimeSeconds * 100);

function newCA(now: Date, settings: TlsSettings): KeyPairPem {
  return issueCertificate({
    // A time in the name tells two CAs of a rotation apart in `openssl x509 -noout -subject`.
    commonName: `tokenguard-ca@${Math.floor(now.getTime() / 1000)}`,
    notBefore: new Date(now.getTime() - backdate(settings.caLifetimeSeconds)),
    notAfter: new Date(now.getTime() + settings.caLifetimeSeconds * 1000),
  });
}

/** A serving certificate from `ca`, never outliving it. */
function newServing(ca: KeyPairPem, now: Date, settings: TlsSettings): KeyPairPem {
  const caExpiry = parse(ca.cert).notAfter;
  return issueCertificate({
    commonName: settings.subjectAltNames[0] ?? 'tokenguard',
    notBefore: new Date(now.getTime() - backdate(settings.certLifetimeSeconds)),
    notAfter: new Date(Math.min(now.getTime() + settings.certLifetimeSeconds * 1000, caExpiry)),
    subjectAltNames: settings.subjectAltNames,
    issuer: ca,
  });
}

/** A new CA and serving certificate, steady. */
export function freshState(now: Date, settings: TlsSettings, generation: number): CertificateState {
  const signer = newCA(now, settings);
  return { phase: 'steady', phaseSince: now, generation, signer, bundle: signer.cert, serving: newServing(signer, now, settings) };
}

/** The state after `action` (not `none`); `generation` is the next one to write. */
export function advance(s: CertificateState | undefined, action: Action, now: Date, settings: TlsSettings, generation: number): CertificateState {
  switch (action.kind) {
    case 'create':
    case 'replace':
      return freshState(now, settings, generation);
    case 'renew-serving':
      return { ...s!, generation, serving: newServing(s!.signer, now, settings) };
    case 'start-ca-rotation': {
      const next = newCA(now, settings);
      return { ...s!, generation, phase: 'trusting-new-ca', phaseSince: now, next, bundle: s!.signer.cert + next.cert };
    }
    case 'switch-ca':
      return { ...s!, generation, phase: 'retiring-old-ca', phaseSince: now, signer: s!.next!, next: undefined, serving: newServing(s!.next!, now, settings) };
    case 'finish-ca-rotation':
      return { ...s!, generation, phase: 'steady', phaseSince: now, bundle: s!.signer.cert };
    case 'none':
      throw new Error('advance: nothing to do');
  }
}

/**
 * A state re-created after its Secret was deleted: the same CA and certificate (every replica
 * already serves them, the webhooks already trust them), with a CA rotation begun, since whoever
 * deleted the Secret most likely wanted a new CA.
 */
export function recreated(s: CertificateState, now: Date, settings: TlsSettings, generation: number): CertificateState {
  const kept = s.phase === 'trusting-new-ca' ? { ...s, next: undefined, bundle: s.signer.cert, phase: 'steady' as const } : s;
  return advance(kept, { kind: 'start-ca-rotation', reason: 'the Secret was deleted' }, now, settings, generation);
}

/** The Secret's data and annotations for a state (base64, as the API takes `data`). */
export function secretContent(s: CertificateState): { data: Record<string, string>; annotations: Record<string, string> } {
  const b64 = (t: string) => Buffer.from(t, 'utf8').toString('base64');
  const data: Record<string, string> = {
    [DATA_KEYS.bundle]: b64(s.bundle),
    [DATA_KEYS.signerCert]: b64(s.signer.cert),
    [DATA_KEYS.signerKey]: b64(s.signer.key),
    [DATA_KEYS.servingCert]: b64(s.serving.cert),
    [DATA_KEYS.servingKey]: b64(s.serving.key),
  };
  if (s.next) {
    data[DATA_KEYS.nextCert] = b64(s.next.cert);
    data[DATA_KEYS.nextKey] = b64(s.next.key);
  }
  return {
    data,
    annotations: {
      [ANNOTATIONS.phase]: s.phase,
      [ANNOTATIONS.phaseSince]: s.phaseSince.toISOString(),
      [ANNOTATIONS.generation]: String(s.generation),
    },
  };
}

/** The expiry (Unix seconds) of the signing CA and of the serving certificate. */
export function expiries(s: CertificateState): { ca: number; serving: number } {
  return { ca: parse(s.signer.cert).notAfter / 1000, serving: parse(s.serving.cert).notAfter / 1000 };
}

/** The default names of the serving certificate: the Service's in-cluster DNS names. */
export function serviceNames(service: string, namespace: string): string[] {
  return [`${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`, `${service}.${namespace}`];
}

/**
 * The token-observer component's Service (manifests/components/token-observer/service.yaml), in
 * tokenguard's namespace: it selects the observer alone. The API server calls it for kubelets'
 * TokenRequests and `tokenguard audit` asks through it.
 */
export const OBSERVER_SERVICE = { name: 'tokenguard-observer', port: 443 } as const;

/**
 * Every name the serving certificate carries: the Service's, the token observer's when it runs
 * (else the API server's calls to it fail TLS verification and, failing open, are silently
 * skipped), then the extra names configured.
 */
export function servingNames(service: string, namespace: string, extra: readonly string[], observer: boolean): string[] {
  const services = observer ? [service, OBSERVER_SERVICE.name] : [service];
  return [...services.flatMap((s) => serviceNames(s, namespace)), ...extra];
}
