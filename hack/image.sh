#!/usr/bin/env bash
# Build the tokenguard container image from the Dockerfile, with podman (else docker).
#
#   hack/image.sh [IMAGE]        default IMAGE: ghcr.io/tokenguard/tokenguard:<package.json version>
#
# Passes the version (package.json) and the revision (`git describe`: the commit, `-dirty` when the
# tree has uncommitted changes) as build arguments: the bundle and the OCI labels carry them. Base
# images are never pulled (--pull=never): they must exist locally (or be pullable by docker).
# When the host's npm trusts an extra CA bundle (`npm config get cafile`, e.g. behind a
# TLS-intercepting proxy), npm inside the build is given the same file through bind mounts, which
# are part of no layer (podman only; docker needs no such thing on a normal network).
# Afterwards the image's SBOM is copied next to it, to dist/image/sbom.cdx.json, and the size of its
# layers above the base is printed.
#
# Environment: CONTAINER_ENGINE (podman or docker), REVISION (overrides git), NPM_CAFILE (overrides
# npm's cafile; "none" for no mount), PLAIN=1 (no --build-arg at all: what a plain `podman build .`
# makes, the Dockerfile's defaults: package.json's version and the revision `unknown`; hack/ci-image.sh
# checks it).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ENGINE=${CONTAINER_ENGINE:-$(command -v podman >/dev/null && echo podman || echo docker)}
command -v "$ENGINE" >/dev/null || { echo "image.sh: neither podman nor docker found" >&2; exit 1; }
VERSION=$(node -p 'require("./package.json").version')
IMAGE=${1:-ghcr.io/tokenguard/tokenguard:$VERSION}
REVISION=${REVISION:-$(git describe --always --dirty --abbrev=40 --exclude='*' 2>/dev/null || echo unknown)}

if [ "${PLAIN:-}" = 1 ]; then
  REVISION="unknown (plain build: no build arguments)"
  args=(-t "$IMAGE")
else
  args=(--build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" -t "$IMAGE")
fi
if [ "$ENGINE" = podman ]; then
  args+=(--pull=never)
  cafile=${NPM_CAFILE:-$(npm config get cafile 2>/dev/null || true)}
  if [ -n "$cafile" ] && [ "$cafile" != none ] && [ "$cafile" != null ] && [ -r "$cafile" ]; then
    # A fixed path: podman's layer cache keys a RUN step on its mounts too.
    npmrc=${TMPDIR:-/tmp}/tokenguard-image-build.npmrc
    printf 'cafile=/etc/ssl/certs/npm-build-ca.crt\n' > "$npmrc"
    args+=(-v "$cafile:/etc/ssl/certs/npm-build-ca.crt:ro" -v "$npmrc:/usr/local/etc/npmrc:ro")
  fi
fi

echo "image.sh: $ENGINE build $IMAGE (tokenguard $VERSION, revision $REVISION)" >&2
start=$(date +%s)
"$ENGINE" build "${args[@]}" .
echo "image.sh: built $IMAGE in $(( $(date +%s) - start )) s" >&2

# The SBOM, next to the image (it is also inside, at /app/sbom.cdx.json).
mkdir -p dist/image
cid=$("$ENGINE" create "$IMAGE")
"$ENGINE" cp "$cid:/app/sbom.cdx.json" dist/image/sbom.cdx.json
"$ENGINE" rm "$cid" >/dev/null
node hack/image-size.mjs "$ENGINE" "$IMAGE"
echo "image.sh: SBOM at dist/image/sbom.cdx.json; test the image: TOKENGUARD_IMAGE=$IMAGE npm test" >&2
