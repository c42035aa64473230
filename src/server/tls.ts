// Serving certificates that follow their files: cert-manager renewals and updated Secret mounts
// (an atomic symlink swap) are picked up without a restart. New connections get the new pair
// through setSecureContext; connections already open keep the context they were accepted with.

import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import type { Server } from 'node:https';
import { Gauge } from 'prom-client';
import type { Logger } from '../observability/log.js';
import { errorMessage } from '../observability/errors.js';
import { registry } from '../observability/metrics.js';

/**
 * When the certificates in use expire, as Unix time: what a "renew before it is too late" alert
 * compares with time(). Set when the server starts and after every reload that took effect.
 */
export const certificateNotAfter = new Gauge({
  name: 'tokenguard_tls_certificate_not_after_seconds',
  help: 'Expiry (notAfter, Unix time) of the earliest-expiring certificate in a file in use, by certificate: serving (tls.crt and its chain) or client_ca (the caller-auth client CA).',
  labelNames: ['certificate'] as const,
  registers: [registry],
});

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  clientCAFile?: string;
}

export interface LoadedTls {
  options: SecureContextOptions;
  /** The earliest notAfter (Unix seconds) in the serving certificate file and in the client CA file. */
  notAfter: { serving?: number; clientCA?: number };
  /** The raw bytes, compared on each poll (mtime is unreliable through Secret symlinks). */
  fingerprint: string;
}

/** Read and check a pair; throws with the file name when a file is missing or the pair mismatches. */
export function loadTls(files: TlsFiles): LoadedTls {
  const read = (what: string, path: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new Error(`cannot read TLS ${what} ${path}: ${errorMessage(err)}`, { cause: err });
    }
  };
  const cert = read('certificate', files.certFile);
  const key = read('key', files.keyFile);
  const ca = files.clientCAFile ? read('client CA', files.clientCAFile) : undefined;
  const options: SecureContextOptions = { cert, key, minVersion: 'TLSv1.2' };
  if (ca) options.ca = ca;
  try {
    createSecureContext(options); // validates that key and certificate belong together
  } catch (err) {
    throw new Error(`TLS certificate ${files.certFile} and key ${files.keyFile} do not form a usable pair: ${errorMessage(err)}`, { cause: err });
  }
  return {
    options,
    notAfter: { serving: earliestNotAfter(cert), clientCA: ca ? earliestNotAfter(ca) : undefined },
    fingerprint: cert.toString('base64') + key.toString('base64') + (ca?.toString('base64') ?? ''),
  };
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

/**
 * The earliest notAfter, in Unix seconds, of the PEM certificates in `pem` (a leaf and its chain,
 * or a CA bundle): the first of them to expire breaks the handshake. Undefined when none parses.
 */
export function earliestNotAfter(pem: Buffer | string): number | undefined {
  let earliest: number | undefined;
  for (const block of pem.toString('utf8').match(PEM_CERTIFICATE) ?? []) {
    try {
      const t = Date.parse(new X509Certificate(block).validTo) / 1000;
      if (Number.isFinite(t) && (earliest === undefined || t < earliest)) earliest = t;
    } catch {
      // Not a certificate node can read: the TLS stack will say so itself.
    }
  }
  return earliest;
}

/** Publish the expiry of the certificates now in use. */
export function recordCertificates(tls: LoadedTls): void {
  if (tls.notAfter.serving !== undefined) certificateNotAfter.set({ certificate: 'serving' }, tls.notAfter.serving);
  if (tls.notAfter.clientCA !== undefined) certificateNotAfter.set({ certificate: 'client_ca' }, tls.notAfter.clientCA);
  else certificateNotAfter.remove({ certificate: 'client_ca' });
}

/** Poll the files every `intervalMs`; swap the server's context when they change and still load. */
export function watchTls(server: Server, files: TlsFiles, initial: LoadedTls, intervalMs: number, logger: Logger): () => void {
  let current = initial.fingerprint;
  let lastError = '';
  const timer = setInterval(() => {
    let next: LoadedTls;
    try {
      next = loadTls(files);
    } catch (err) {
      // Mid-rotation the pair can be briefly inconsistent: keep serving the old one and retry.
      const msg = errorMessage(err);
      if (msg !== lastError) logger.warn('TLS reload skipped, keeping the current certificate', { error: msg });
      lastError = msg;
      return;
    }
    lastError = '';
    if (next.fingerprint === current) return;
    server.setSecureContext(next.options);
    current = next.fingerprint;
    recordCertificates(next);
    logger.info('TLS certificate reloaded', { certFile: files.certFile });
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
