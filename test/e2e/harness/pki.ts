// A throwaway PKI for one control plane, made with openssl: a CA, the kube-apiserver's serving
// certificate (IP:127.0.0.1), an admin client certificate (O=system:masters), and the
// service-account signing key pair.

import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Pki {
  dir: string;
  caCert: string;
  caKey: string;
  servingCert: string;
  servingKey: string;
  adminCert: string;
  adminKey: string;
  /** Service-account token signing key (private) and its public half. */
  saKey: string;
  saPub: string;
}

const openssl = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });

function signed(dir: string, name: string, subject: string, extensions: string, ca: { cert: string; key: string }) {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.crt`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, extensions);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', subject]);
  openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext]);
  return { cert, key };
}

export function makePki(dir: string): Pki {
  const caCert = join(dir, 'ca.crt');
  const caKey = join(dir, 'ca.key');
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', caKey, '-out', caCert, '-days', '2', '-subj', '/CN=tokenguard-e2e-ca']);
  const ca = { cert: caCert, key: caKey };
  const serving = signed(dir, 'apiserver', '/CN=kube-apiserver', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n', ca);
  const admin = signed(dir, 'admin', '/O=system:masters/CN=e2e-admin', 'extendedKeyUsage=clientAuth\n', ca);
  const saKey = join(dir, 'sa.key');
  const saPub = join(dir, 'sa.pub');
  openssl(['genrsa', '-out', saKey, '2048']);
  openssl(['rsa', '-in', saKey, '-pubout', '-out', saPub]);
  return {
    dir,
    caCert,
    caKey,
    servingCert: serving.cert,
    servingKey: serving.key,
    adminCert: admin.cert,
    adminKey: admin.key,
    saKey,
    saPub,
  };
}
