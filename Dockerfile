# tokenguard container image. Build it with hack/image.sh (it passes VERSION and REVISION), or plainly:
#   docker build -t tokenguard .        (version: package.json's; revision: unknown)
#   docker build --build-arg REVISION=$(git rev-parse HEAD) -t ghcr.io/tokenguard/tokenguard:0.1.0 .
# The build stage installs the locked dependency tree, checks that it is complete and bundles the CLI
# and server with esbuild (hack/bundle.mjs). The runtime image is distroless Node (no shell, no
# package manager) holding the bundle, its third-party notices and a CycloneDX SBOM, and nothing
# from node_modules. It runs as uid 65532, matching the Deployment's securityContext (runAsNonRoot,
# readOnlyRootFilesystem: tokenguard writes no files).

ARG NODE_VERSION=20
# The defaults of a plain build: package.json's version (test/image/bundle.test.ts keeps them equal;
# the build stage refuses any other), and a revision that says it is unknown, in the OCI label and in
# `tokenguard --version` alike.
ARG VERSION=0.1.0
ARG REVISION=unknown

# 1. Install, check, bundle.
FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /tokenguard
ENV NPM_CONFIG_UPDATE_NOTIFIER=false
COPY package.json package-lock.json ./
COPY hack/check-deps.mjs ./hack/
# `npm ci` has been seen to print "npm error Exit handler never called!", exit 0 and leave a partial
# node_modules: its exit code is not enough. Stop on that line, and on any package missing from the
# locked tree (check-deps names it). esbuild's postinstall only speeds it up: scripts stay off.
RUN npm ci --ignore-scripts --no-audit --no-fund >/tmp/npm-ci.log 2>&1; rc=$?; cat /tmp/npm-ci.log; \
    if [ "$rc" -ne 0 ]; then echo "npm ci failed (exit $rc)" >&2; exit "$rc"; fi; \
    if grep -q 'Exit handler never called' /tmp/npm-ci.log; then echo 'npm ci stopped early (Exit handler never called!)' >&2; exit 1; fi; \
    node hack/check-deps.mjs
# The production dependency tree the bundle is made from, as a CycloneDX SBOM (the bundle holds what
# of it is reached from src/: dist/bundle/THIRD-PARTY-NOTICES.txt lists those packages).
RUN npm sbom --sbom-format cyclonedx --omit=dev > /tokenguard/sbom.cdx.json \
 && node -e 'const s = require("/tokenguard/sbom.cdx.json"); if (!s.components?.length) throw new Error("empty SBOM"); console.log(`SBOM: ${s.components.length} components`)'
COPY tsconfig.json ./
COPY hack/bundle.mjs hack/ajv-precompile.mjs ./hack/
COPY src ./src
# The labels below carry the same version and revision as the bundle: both come from here.
ARG VERSION
ARG REVISION
RUN want=$(node -p 'require("./package.json").version') \
 && if [ "$VERSION" != "$want" ]; then \
      echo "VERSION is '$VERSION' but package.json says $want: omit --build-arg VERSION, or pass $want" >&2; exit 1; \
    fi \
 && if [ -z "$REVISION" ]; then \
      echo "REVISION is empty: omit --build-arg REVISION (the image then says unknown), or pass \$(git rev-parse HEAD)" >&2; exit 1; \
    fi \
 && REVISION="$REVISION" node hack/bundle.mjs

# 2. Runtime: the distroless base and the bundle.
FROM gcr.io/distroless/nodejs${NODE_VERSION}-debian12:nonroot
ARG VERSION
ARG REVISION
ARG SOURCE=https://github.com/tokenguard/tokenguard
LABEL org.opencontainers.image.title="tokenguard" \
      org.opencontainers.image.description="Kubernetes admission webhook that prevents service-account token and volume outages" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /tokenguard/dist/bundle/ /app/dist/bundle/
COPY --from=build /tokenguard/sbom.cdx.json /app/sbom.cdx.json
USER 65532:65532
EXPOSE 8443
# The distroless entrypoint is node itself.
ENTRYPOINT ["/nodejs/bin/node", "/app/dist/bundle/cli/main.js"]
CMD ["serve", "--config=/etc/tokenguard/config.yaml"]
