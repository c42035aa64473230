#!/usr/bin/env bash
# Development certificates for tokenguard: a local CA and a serving certificate signed by it.
#
#   certs/generate.sh [OUT_DIR] [--force]
#
# Writes OUT_DIR/ca.crt, ca.key, tls.crt, tls.key (default OUT_DIR: the folder of this script).
# The serving certificate covers localhost, 127.0.0.1, ::1 and the in-cluster Service names, plus
# TOKENGUARD_SANS (comma-separated, e.g. IP:172.18.0.1,DNS:host.minikube.internal: the address a
# kind or minikube node reaches this machine at, for tokenguard dev register).
# Existing files are kept unless --force is given. Needs openssl (1.1.1 or later).
set -euo pipefail

out="$(cd "$(dirname "$0")" && pwd)"
force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) out="$arg" ;;
  esac
done
mkdir -p "$out"
if [ "$force" = 0 ] && [ -s "$out/tls.crt" ] && [ -s "$out/tls.key" ] && [ -s "$out/ca.crt" ]; then
  exit 0
fi

service="${TOKENGUARD_SERVICE:-tokenguard}"
namespace="${TOKENGUARD_NAMESPACE:-tokenguard}"
days="${TOKENGUARD_CERT_DAYS:-365}"
extra_sans="${TOKENGUARD_SANS:-}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
umask 077

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$days" \
  -subj "/CN=tokenguard-dev-ca" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null

cat > "$tmp/ext.cnf" <<CNF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1,DNS:${service}.${namespace}.svc,DNS:${service}.${namespace}.svc.cluster.local,DNS:${service}.${namespace}${extra_sans:+,${extra_sans}}
CNF
openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=${service}.${namespace}.svc" \
  -keyout "$tmp/tls.key" -out "$tmp/tls.csr" 2>/dev/null
openssl x509 -req -in "$tmp/tls.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" -CAcreateserial \
  -days "$days" -sha256 -extfile "$tmp/ext.cnf" -out "$tmp/tls.crt" 2>/dev/null

# Move into place key first, certificate last, so a watcher never sees a new cert with an old key
# for longer than one poll.
for f in ca.key ca.crt tls.key tls.crt; do mv -f "$tmp/$f" "$out/$f"; done
chmod 600 "$out/ca.key" "$out/tls.key"
chmod 644 "$out/ca.crt" "$out/tls.crt"
