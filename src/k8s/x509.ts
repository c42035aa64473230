// Issuing X.509 certificates with node:crypto alone: a CA and the serving certificates it signs,
// for self-managed TLS. Node can parse certificates (X509Certificate) and sign bytes, but not
// build a certificate, and the image has no openssl; an npm X.509 library would add hundreds of
// kilobytes for the ~150 lines of DER below. Keys are ECDSA P-256 (fast to generate, accepted by
// every Kubernetes API server), signatures ecdsa-with-SHA256.

import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';

// ---- DER -----------------------------------------------------------------------------------

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

const tlv = (tag: number, ...content: Buffer[]) => {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), length(body.length), body]);
};
const sequence = (...items: Buffer[]) => tlv(0x30, ...items);
const set = (...items: Buffer[]) => tlv(0x31, ...items);
const octets = (b: Buffer) => tlv(0x04, b);
const bits = (b: Buffer, unused = 0) => tlv(0x03, Buffer.from([unused]), b);
const bool = (v: boolean) => tlv(0x01, Buffer.from([v ? 0xff : 0]));
const explicit = (n: number, inner: Buffer) => tlv(0xa0 + n, inner);

/** A positive INTEGER from big-endian bytes (a leading 0 when the high bit is set). */
function integer(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0 && b[i + 1]! < 0x80) i++;
  const trimmed = b.subarray(i);
  return tlv(0x02, trimmed[0]! >= 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  const out = [a! * 40 + b!];
  for (const n of rest) {
    const chunk = [n & 0x7f];
    for (let v = Math.floor(n / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

/** UTCTime through 2049, GeneralizedTime after (RFC 5280 4.1.2.5), to the second. */
function time(d: Date): Buffer {
  const iso = d.toISOString(); // 2026-12-06T11:20:00.000Z
  const digits = iso.slice(0, 19).replace(/[-T:]/g, '') + 'Z';
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(digits.slice(2))) : tlv(0x18, Buffer.from(digits));
}

const name = (commonName: string) => sequence(set(sequence(oid('2.5.4.3'), tlv(0x0c, Buffer.from(commonName, 'utf8')))));

const extension = (id: string, critical: boolean, value: Buffer) => sequence(oid(id), ...(critical ? [bool(true)] : []), octets(value));

function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  // IPv6: expand `::` then 8 groups of 16 bits.
  const [head, tail] = ip.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.concat(groups.map((g) => Buffer.from(g.padStart(4, '0'), 'hex')));
}

// ---- certificates --------------------------------------------------------------------------

const ECDSA_WITH_SHA256 = sequence(oid('1.2.840.10045.4.3.2'));

export interface KeyPairPem {
  cert: string;
  key: string;
}

export interface IssueOptions {
  commonName: string;
  notBefore: Date;
  notAfter: Date;
  /** Present: a serving certificate for these names (DNS names or IP addresses), signed by `issuer`. */
  subjectAltNames?: readonly string[];
  /** The signing CA; absent for a self-signed CA. */
  issuer?: KeyPairPem;
}

/** The SHA-1 of the public key bits: the key identifier of RFC 5280 4.2.1.2 (method 1). */
function keyIdentifier(publicKey: KeyObject): Buffer {
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  // SubjectPublicKeyInfo ::= SEQUENCE { algorithm, BIT STRING }: the key bits end the structure,
  // and for P-256 they are the last 65 bytes (uncompressed point).
  return createHash('sha1').update(spki.subarray(spki.length - 65)).digest();
}

/** A new key pair and a certificate for it: a CA (no `subjectAltNames`) or a serving certificate. */
export function issueCertificate(opts: IssueOptions): KeyPairPem {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const signerKey = opts.issuer ? createPrivateKey(opts.issuer.key) : privateKey;
  const issuerName = opts.issuer ? issuerSubject(opts.issuer.cert) : name(opts.commonName);
  const authorityKeyId = keyIdentifier(createPublicKey(signerKey));
  const isCA = opts.subjectAltNames === undefined;
  const extensions = [
    extension('2.5.29.19', true, isCA ? sequence(bool(true)) : sequence()),
    // keyCertSign and cRLSign (bits 5, 6) for a CA; digitalSignature (bit 0) for an ECDSA server.
    extension('2.5.29.15', true, isCA ? bits(Buffer.from([0x06]), 1) : bits(Buffer.from([0x80]), 7)),
    extension('2.5.29.14', false, octets(keyIdentifier(publicKey))),
    extension('2.5.29.35', false, sequence(tlv(0x80, authorityKeyId))),
  ];
  if (!isCA) {
    extensions.push(extension('2.5.29.37', false, sequence(oid('1.3.6.1.5.5.7.3.1'))));
    const names = opts.subjectAltNames!.map((n) => (isIP(n) ? tlv(0x87, ipBytes(n)) : tlv(0x82, Buffer.from(n, 'ascii'))));
    extensions.push(extension('2.5.29.17', false, sequence(...names)));
  }
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const tbs = sequence(
    explicit(0, integer(Buffer.from([2]))),
    integer(serial),
    ECDSA_WITH_SHA256,
    issuerName,
    sequence(time(opts.notBefore), time(opts.notAfter)),
    name(opts.commonName),
    publicKey.export({ type: 'spki', format: 'der' }),
    explicit(3, sequence(...extensions)),
  );
  const signature = sign('sha256', tbs, { key: signerKey, dsaEncoding: 'der' });
  const der = sequence(tbs, ECDSA_WITH_SHA256, bits(signature));
  return { cert: pem('CERTIFICATE', der), key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
}

/** The issuer's subject, as the DER bytes of its certificate carry it (byte-equal, as path building wants). */
function issuerSubject(certPem: string): Buffer {
  const der = pemBody(certPem);
  // Certificate > TBSCertificate > [version, serial, signature algorithm, issuer, validity, subject].
  const tbs = children(der, 0)[0]!;
  const fields = children(der, tbs.start);
  return der.subarray(fields[5]!.start, fields[5]!.end);
}

/** The TLV elements inside the constructed element that starts at `offset`. */
function children(der: Buffer, offset: number): { start: number; end: number }[] {
  const header = (at: number) => {
    const first = der[at + 1]!;
    if (first < 0x80) return { content: at + 2, len: first };
    const n = first & 0x7f;
    return { content: at + 2 + n, len: der.subarray(at + 2, at + 2 + n).reduce((v, b) => v * 256 + b, 0) };
  };
  const outer = header(offset);
  const out: { start: number; end: number }[] = [];
  for (let at = outer.content; at < outer.content + outer.len; ) {
    const h = header(at);
    out.push({ start: at, end: h.content + h.len });
    at = h.content + h.len;
  }
  return out;
}

const pem = (label: string, der: Buffer) =>
  `-----BEGIN ${label}-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')}\n-----END ${label}-----\n`;

function pemBody(text: string): Buffer {
  const m = /-----BEGIN CERTIFICATE-----([^-]+)-----END CERTIFICATE-----/.exec(text);
  if (!m) throw new Error('no PEM certificate');
  return Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
}
