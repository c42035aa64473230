#!/usr/bin/env bash
# CI: the alerts of manifests/components/monitoring/prometheusrule.yaml, checked by promtool:
#   promtool check rules   (syntax, PromQL, templates)
#   promtool test rules    (test/monitoring/alerts.test.yaml: each alert fires and clears)
# promtool comes from Debian's `prometheus` package. When it is missing (and we are root), only the
# promtool binary is taken out of that package (apt-get download + dpkg-deb -x): no dependencies
# (its web assets), no service, about 20 MB downloaded. Needs node_modules (npm ci) for the YAML.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "hack/ci-promtool.sh: promtool is not installed; install Debian's prometheus package (or run this as root to fetch promtool alone)" >&2
    exit 1
  fi
  started=$SECONDS
  pkg="$(mktemp -d)"
  apt-get update -qq >/dev/null
  (cd "$pkg" && apt-get download -qq -o APT::Sandbox::User=root prometheus >/dev/null)
  dpkg-deb -x "$pkg"/prometheus_*.deb "$pkg/root"
  install -m 0755 "$pkg/root/usr/bin/promtool" /usr/local/bin/promtool
  rm -rf "$pkg"
  echo "== promtool installed from Debian's prometheus package in $((SECONDS - started)) s: $(promtool --version 2>&1 | head -1)"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rules=manifests/components/monitoring/prometheusrule.yaml
node hack/prometheus-rules.mjs "$rules" > "$work/tokenguard.full.rules.yaml"
node hack/prometheus-rules.mjs "$rules" --without-annotations > "$work/tokenguard.rules.yaml"
cp test/monitoring/alerts.test.yaml "$work/"

echo "== promtool check rules ($rules)"
promtool check rules "$work/tokenguard.full.rules.yaml"
echo "== promtool test rules (test/monitoring/alerts.test.yaml)"
(cd "$work" && promtool test rules alerts.test.yaml)
