#!/usr/bin/env bash
# CI step for the container image (issue 18): build it from the Dockerfile as it is, run it as
# manifests/base/deployment.yaml runs it, and check it.
#
#   MAKE_BASES=/path/to/make-bases.sh KUBEBUILDER_ASSETS=/path/to/bin hack/ci-image.sh
#
# 1. podman and the base images. MAKE_BASES names a script that installs podman, runc and
#    mmdebstrap when missing, configures them for this machine kind and builds the base images the
#    Dockerfile names (local stand-ins: no registry is reachable here). Without MAKE_BASES, podman is
#    installed from Debian when missing (root), and the base images must already exist.
# 2. The build context: what podman sends for the Dockerfile is exactly the .dockerignore
#    allow-list (nothing from node_modules, dist, certs or .git).
# 3. A plain build with no build arguments (as `podman build .`; tagged $IMAGE-plain, removed after):
#    its OCI labels say package.json's version and the revision `unknown`, and so does --version.
#    Then the image: hack/image.sh (tagged $IMAGE, default localhost/tokenguard:ci); its size above the base.
# 4. The tests with TOKENGUARD_IMAGE set: test/image/image.test.ts (labels, user, contents, SBOM,
#    size <= 20 MB above the base, start within 0.7 s of a bare node:http server, every captured
#    review answered as the tsc build answers it, SIGTERM drains and exits 0) and
#    test/e2e/container.test.ts (the container as the webhook of a real control plane, through
#    kubectl; it skips, saying so, without KUBEBUILDER_ASSETS).
# Uses the project's dist/ when present (npm test builds it), else builds it (npm ci when
# node_modules is missing). Prints the time each step took.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
IMAGE=${IMAGE:-localhost/tokenguard:ci}
START=$(date +%s)
step() { echo "== ci-image [$(( $(date +%s) - START )) s] $*"; }
die() { echo "ci-image: $*" >&2; exit 1; }

# 1. podman and the base images.
if [ -n "${MAKE_BASES:-}" ]; then
  step "podman and base images ($MAKE_BASES)"
  bash "$MAKE_BASES"
elif ! command -v podman >/dev/null; then
  [ "$(id -u)" = 0 ] || die "podman is missing and only root can install it (or pass MAKE_BASES)"
  step "installing podman and runc (apt)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc >/dev/null
fi
command -v podman >/dev/null || die "no podman"
export CONTAINER_ENGINE=podman
for base in $(node -e '
  const d = require("fs").readFileSync("Dockerfile", "utf8");
  const args = Object.fromEntries([...d.matchAll(/^ARG (\w+)=(\S+)/gm)].map((m) => [m[1], m[2]]));
  for (const m of d.matchAll(/^FROM (\S+)/gm)) console.log(m[1].replace(/\$\{(\w+)\}/g, (_, a) => args[a]));'); do
  podman image exists "$base" || die "base image $base is missing and cannot be pulled here: pass MAKE_BASES (shared/container/make-bases.sh builds local stand-ins)"
done

# 2. The build context podman sends: build a throwaway image holding it, list it.
step "checking the build context against .dockerignore"
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
cat > "$probe/Containerfile" <<'EOF'
FROM docker.io/library/node:20-bookworm-slim
COPY . /context
RUN cd /context && find . -type f -o -type l | sed 's|^\./||' | sort > /context.list
EOF
podman build -q --pull=never -f "$probe/Containerfile" -t localhost/tokenguard-context-probe . >/dev/null
podman run --rm --entrypoint=cat localhost/tokenguard-context-probe /context.list > "$probe/list"
podman rmi -f localhost/tokenguard-context-probe >/dev/null
allowed=$(sed -n 's/^!\(.*\)$/\1/p' .dockerignore | sed 's|/$||')
bad=$(node -e '
  const [list, allowed] = [process.argv[1], process.argv[2]].map((f) => f.split("\n").filter(Boolean));
  const ok = (f) => allowed.some((a) => f === a || f.startsWith(a + "/"));
  const forbidden = /^(node_modules|dist|certs|\.git)(\/|$)/;
  console.log(list.filter((f) => !ok(f) || forbidden.test(f)).join("\n"));' "$(cat "$probe/list")" "$allowed")
[ -z "$bad" ] || die "the build context holds files outside the .dockerignore allow-list:
$bad"
echo "build context: $(wc -l < "$probe/list") files, all within the allow-list ($(echo $allowed))"

# 3. The project build (for the tests) and the image.
if [ ! -d node_modules ]; then step "npm ci"; npm ci --no-audit --no-fund; fi
if [ ! -f dist/test/image/image.test.js ] || [ ! -f dist/bundle/cli/main.js ]; then step "npm run build"; npm run build; fi
plain=$IMAGE-plain
step "a plain build, no build arguments ($plain)"
PLAIN=1 hack/image.sh "$plain"
version=$(node -p 'require("./package.json").version')
labels=$(podman image inspect --format '{{index .Config.Labels "org.opencontainers.image.version"}} {{index .Config.Labels "org.opencontainers.image.revision"}}' "$plain")
[ "$labels" = "$version unknown" ] || die "plain build: OCI labels version and revision are '$labels', want '$version unknown'"
said=$(podman run --rm "$plain" --version)
[ "$said" = "tokenguard $version (revision unknown: built without a source revision)" ] || die "plain build: --version says '$said'"
echo "plain build: labels '$labels'; --version '$said'"
podman rmi -f "$plain" >/dev/null

# PREBUILT=1: $IMAGE was built from this tree by hack/image.sh earlier in the same run (.ci/run does,
# so the node suite can start with it): checked as it is, not built a second time.
if [ -n "${PREBUILT:-}" ] && podman image exists "$IMAGE"; then
  step "$IMAGE: built earlier in this run from this tree (PREBUILT)"
else
  step "building $IMAGE"
  hack/image.sh "$IMAGE"
fi

# 4. The image run as the Deployment runs it, then as the webhook of a real control plane.
step "smoke test, size and start time (test/image), end to end with the container as the webhook (test/e2e/container)"
[ -n "${KUBEBUILDER_ASSETS:-}" ] || echo "ci-image: KUBEBUILDER_ASSETS is unset: the end-to-end case will skip" >&2
TOKENGUARD_IMAGE=$IMAGE node --test --test-reporter=spec dist/test/image/image.test.js dist/test/e2e/container.test.js
step "done"
