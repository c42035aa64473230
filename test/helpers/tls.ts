// Test certificates, made by the project's own generator (certs/generate.sh) into a temp folder.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './temp-dir.js';

export const PROJECT_ROOT = resolve(fileURLToPath(import.meta.url), '../../../..');
export const GENERATOR = join(PROJECT_ROOT, 'certs', 'generate.sh');

export interface CertSet {
  dir: string;
  certFile: string;
  keyFile: string;
  caFile: string;
  ca: Buffer;
}

/** A fresh CA + serving pair in its own temp folder (`generate.sh DIR --force`). */
export function makeCerts(dir = tempDir('tokenguard-certs-')): CertSet {
  execFileSync('bash', [GENERATOR, dir, '--force']);
  return certsIn(dir);
}

export function certsIn(dir: string): CertSet {
  return {
    dir,
    certFile: join(dir, 'tls.crt'),
    keyFile: join(dir, 'tls.key'),
    caFile: join(dir, 'ca.crt'),
    ca: readFileSync(join(dir, 'ca.crt')),
  };
}
