// No private key is ever published: none is committed under manifests/, docs/ or certs/ (development
// certificates are generated, never committed), and nothing kustomize renders from what a fresh
// clone holds carries one. A serving key everyone can read must never be deployable.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { PROJECT_ROOT } from '../helpers/tls.js';
import { tempDir } from '../helpers/temp-dir.js';
import { KUBECTL, kubectlMissing } from './kustomize.js';

/** A PEM private key block of any kind (PKCS#8, RSA, EC, encrypted, OpenSSH). */
export const PRIVATE_KEY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;

/** A private key in `text`, in PEM or in base64 (as a Secret's `data` carries it). */
export function hasPrivateKey(text: string): boolean {
  if (PRIVATE_KEY.test(text)) return true;
  for (const run of text.match(/[A-Za-z0-9+/]{40,}={0,2}/g) ?? []) {
    if (PRIVATE_KEY.test(Buffer.from(run, 'base64').toString('latin1'))) return true;
  }
  return false;
}

function gitFiles(paths: string[]): string[] | undefined {
  try {
    return execFileSync('git', ['ls-files', '-z', '--', ...paths], { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString('utf8')
      .split('\0')
      .filter(Boolean);
  } catch {
    return undefined;
  }
}

const noGit = gitFiles(['package.json']) === undefined ? 'not a git checkout: git ls-files cannot list the committed files' : undefined;

describe('no private key in the repository', { skip: noGit }, () => {
  it('none is committed under manifests/, docs/ or certs/', () => {
    const files = gitFiles(['manifests', 'docs', 'certs'])!;
    assert.ok(files.some((f) => f.startsWith('manifests/')), 'git lists the manifests');
    const withKeys = files.filter((f) => existsSync(join(PROJECT_ROOT, f)) && PRIVATE_KEY.test(readFileSync(join(PROJECT_ROOT, f), 'latin1')));
    assert.deepEqual(withKeys, [], 'committed files with a PEM private key');
  });

  it("the check finds a key in plain PEM and in a Secret's base64 data", () => {
    for (const type of ['', 'EC ', 'RSA ', 'ENCRYPTED ', 'OPENSSH ']) {
      const pem = `-----BEGIN ${type}PRIVATE KEY-----\nMHcCAQEEIBx2\n-----END ${type}PRIVATE KEY-----\n`;
      assert.ok(hasPrivateKey(pem), `${type}PEM`);
      assert.ok(hasPrivateKey(`data:\n  tls.key: ${Buffer.from(pem).toString('base64')}\n`), `${type}base64`);
    }
    const cert = '-----BEGIN CERTIFICATE-----\nMIIBhTCCASugAwIBAgIQ\n-----END CERTIFICATE-----\n';
    assert.ok(!hasPrivateKey(`caBundle: ${Buffer.from(cert).toString('base64')}`), 'a certificate is not a key');
  });

  it('kustomize renders no private key from what a fresh clone holds, for every kustomization', { skip: kubectlMissing() }, () => {
    // The committed files only (a fresh clone has no generated or ignored ones).
    const root = tempDir('tokenguard-clone-');
    for (const f of gitFiles(['manifests'])!) {
      if (!existsSync(join(PROJECT_ROOT, f))) continue;
      mkdirSync(dirname(join(root, f)), { recursive: true });
      cpSync(join(PROJECT_ROOT, f), join(root, f));
    }
    const kustomizations: string[] = [];
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        const path = join(dir, name);
        if (statSync(path).isDirectory()) walk(path);
        else if (name === 'kustomization.yaml' && !/^kind: Component$/m.test(readFileSync(path, 'utf8'))) kustomizations.push(dir);
      }
    };
    walk(join(root, 'manifests'));
    // The monitoring component, as docs/monitoring.md adds it to the default install.
    const withMonitoring = join(root, 'manifests', 'overlays', 'default-with-monitoring');
    mkdirSync(withMonitoring);
    writeFileSync(
      join(withMonitoring, 'kustomization.yaml'),
      'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../default\ncomponents:\n  - ../../components/monitoring\n',
    );
    kustomizations.push(withMonitoring);
    assert.ok(kustomizations.some((k) => k.endsWith('overlays/default')), 'the default overlay is among them');
    for (const dir of kustomizations) {
      const out = execFileSync(KUBECTL, ['kustomize', dir], { maxBuffer: 32 * 1024 * 1024 }).toString('utf8');
      assert.ok(out.includes('kind:'), `${relative(root, dir)} renders`);
      assert.ok(!hasPrivateKey(out), `${relative(root, dir)}: a private key is rendered`);
    }
  });
});
