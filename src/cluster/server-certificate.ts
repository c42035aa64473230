// The API server was reached but its certificate did not verify: say so as kubectl does (Go's
// x509 wording, which is what people search for), with the fix, instead of node's "unable to
// verify the first certificate" under "cannot reach the API server".

import { errorCode, errorMessage } from '../observability/errors.js';

const UNKNOWN_AUTHORITY = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', // "unable to verify the first certificate"
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
]);

/** The node TLS error in `err` or its causes, with its code. */
function tlsError(err: unknown): { code: string; message: string } | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = errorCode(e);
    if (code && (UNKNOWN_AUTHORITY.has(code) || code.startsWith('CERT_') || code === 'ERR_TLS_CERT_ALTNAME_INVALID')) return { code, message: errorMessage(e) };
  }
  return undefined;
}

/** Whether `err` (or a cause) is a certificate that no trusted CA signed. */
export function signedByUnknownAuthority(err: unknown): boolean {
  const tls = tlsError(err);
  return tls !== undefined && UNKNOWN_AUTHORITY.has(tls.code);
}

/**
 * When `err` is a failed verification of the API server's certificate: what kubectl says about it
 * and how to fix it, as one line. Undefined for any other error.
 */
export function serverCertificateProblem(err: unknown): string | undefined {
  const tls = tlsError(err);
  if (!tls) return undefined;
  if (UNKNOWN_AUTHORITY.has(tls.code)) {
    return (
      'x509: certificate signed by unknown authority: the kubeconfig does not trust the CA that signed the API server\'s certificate ' +
      '(fix: set the cluster\'s certificate-authority-data to that CA, e.g. kubectl config set-cluster NAME --certificate-authority=ca.crt --embed-certs; kubeadm: /etc/kubernetes/pki/ca.crt)'
    );
  }
  if (tls.code === 'CERT_HAS_EXPIRED' || tls.code === 'CERT_NOT_YET_VALID') {
    return (
      'x509: certificate has expired or is not yet valid ' +
      '(fix: renew the API server\'s certificate, e.g. kubeadm certs renew apiserver, or correct this machine\'s clock)'
    );
  }
  if (tls.code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return `x509: certificate is not valid for this address: ${tls.message} (fix: use a server address the certificate names, or set tls-server-name in the kubeconfig)`;
  }
  return `x509: ${tls.message} (${tls.code})`;
}
