// Serving certificates that follow their files: cert-manager renewals and updated Secret mounts
// (an atomic symlink swap) are picked up without a restart. New connections get the new pair
// through setSecureContext; connections already open keep the context they were accepted with.

import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import type { Server } from 'node:https';
import type { Logger } from '../observability/log.js';
import { errorMessage } from '../observability/errors.js';

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  clientCAFile?: string;
}

export interface LoadedTls {
  options: SecureContextOptions;
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
  return { options, fingerprint: cert.toString('base64') + key.toString('base64') + (ca?.toString('base64') ?? '') };
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
    logger.info('TLS certificate reloaded', { certFile: files.certFile });
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
