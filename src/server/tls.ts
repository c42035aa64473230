// Serving certificates that follow their source without a restart: files (cert-manager renewals and
// updated Secret mounts, an atomic symlink swap), or memory (self-managed TLS: the certificate
// controller's pair, taken as soon as it says it changed). New connections get the new pair
// through setSecureContext; connections already open keep the context they were accepted with.

import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import type { Server } from 'node:https';
import type { Logger } from '../observability/log.js';
import { errorMessage } from '../observability/errors.js';
import { certificateNotAfter } from '../observability/metrics.js';

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  clientCAFile?: string;
}

/** A serving pair held in memory (self-managed TLS), and how to hear that it changed. */
export interface TlsMemory {
  pair: () => { cert: string; key: string };
  onChange: (listener: () => void) => () => void;
  /** What it is, for logs and errors. */
  what: string;
  clientCAFile?: string;
}

export type TlsSource = TlsFiles | TlsMemory;

const isMemory = (source: TlsSource): source is TlsMemory => 'pair' in source;

export interface LoadedTls {
  options: SecureContextOptions;
  /** The earliest notAfter (Unix seconds) in the serving certificate file and in the client CA file. */
  notAfter: { serving?: number; clientCA?: number };
  /** The raw bytes, compared on each poll (mtime is unreliable through Secret symlinks). */
  fingerprint: string;
}

/** Read and check a pair; throws with the file name when a file is missing or the pair mismatches. */
export function loadTls(source: TlsSource): LoadedTls {
  const read = (what: string, path: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new Error(`cannot read TLS ${what} ${path}: ${errorMessage(err)}`, { cause: err });
    }
  };
  const memory = isMemory(source) ? source.pair() : undefined;
  const cert = memory ? Buffer.from(memory.cert) : read('certificate', (source as TlsFiles).certFile);
  const key = memory ? Buffer.from(memory.key) : read('key', (source as TlsFiles).keyFile);
  const ca = source.clientCAFile ? read('client CA', source.clientCAFile) : undefined;
  const options: SecureContextOptions = { cert, key, minVersion: 'TLSv1.2' };
  if (ca) options.ca = ca;
  try {
    createSecureContext(options); // validates that key and certificate belong together
  } catch (err) {
    const which = isMemory(source) ? `${source.what} certificate and key` : `TLS certificate ${source.certFile} and key ${source.keyFile}`;
    throw new Error(`${which} do not form a usable pair: ${errorMessage(err)}`, { cause: err });
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

/**
 * Poll the source every `intervalMs` (and, for memory, also when it says it changed); swap the
 * server's context when the pair changed and still loads.
 */
export function watchTls(server: Server, source: TlsSource, initial: LoadedTls, intervalMs: number, logger: Logger): () => void {
  let current = initial.fingerprint;
  let lastError = '';
  const check = () => {
    let next: LoadedTls;
    try {
      next = loadTls(source);
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
    logger.info('TLS certificate reloaded', isMemory(source) ? { source: source.what } : { certFile: source.certFile });
  };
  const timer = setInterval(check, intervalMs);
  timer.unref();
  const unsubscribe = isMemory(source) ? source.onChange(check) : undefined;
  return () => {
    clearInterval(timer);
    unsubscribe?.();
  };
}
