#!/usr/bin/env bash
# Make a fresh CA and serving certificate for the self-signed overlay, then apply it:
#
#   manifests/overlays/self-signed/generate.sh        # writes generated/{ca.crt,tls.crt,tls.key}
#   kubectl apply -k manifests/overlays/self-signed
#
# The committed files in generated/ are an EXAMPLE so the overlay renders in a fresh clone; their
# private key is public. Always run this script before installing, and again before the certificate
# expires (TOKENGUARD_CERT_DAYS, default 365), then re-apply: kustomize puts the certificate in the
# Secret `tokenguard-tls` and the CA in every webhook's caBundle (see kustomization.yaml).
#
# The CA key is not kept: nothing else can ever be signed with it. Needs openssl 1.1.1 or later.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
out="$here/generated"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# The Service and namespace of manifests/base: the certificate must name tokenguard.tokenguard.svc.
TOKENGUARD_SERVICE=tokenguard TOKENGUARD_NAMESPACE=tokenguard bash "$root/certs/generate.sh" "$tmp" --force

mkdir -p "$out"
umask 077
# Key first, certificate last (as certs/generate.sh does), then the CA the webhooks will trust.
for f in tls.key tls.crt ca.crt; do cp "$tmp/$f" "$out/$f.new" && mv -f "$out/$f.new" "$out/$f"; done
chmod 600 "$out/tls.key"
chmod 644 "$out/tls.crt" "$out/ca.crt"
echo "wrote $out/{ca.crt,tls.crt,tls.key}; now: kubectl apply -k $here" >&2
