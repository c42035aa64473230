# tokenguard container image: build with the dev dependencies, run with production ones only.
#   docker build -t ghcr.io/tokenguard/tokenguard:0.1.0 .
# The runtime image is distroless (no shell, no package manager) and runs as uid 65532, matching the
# Deployment's securityContext (runAsNonRoot, readOnlyRootFilesystem: tokenguard writes no files).

ARG NODE_VERSION=20

# 1. Compile TypeScript (needs typescript and the @types packages).
FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
# Only the server and CLI: tests and benchmarks are not part of the image.
RUN printf '{"extends":"./tsconfig.json","include":["src/**/*.ts"],"compilerOptions":{"sourceMap":false}}' > tsconfig.image.json \
 && npx tsc -p tsconfig.image.json

# 2. Production dependencies only, from the same lock file.
FROM node:${NODE_VERSION}-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# 3. Runtime.
FROM gcr.io/distroless/nodejs${NODE_VERSION}-debian12:nonroot
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
# `tokenguard --version` reads the version from here.
COPY package.json ./
USER 65532:65532
EXPOSE 8443
# The distroless entrypoint is node itself.
ENTRYPOINT ["/nodejs/bin/node", "/app/dist/src/cli/main.js"]
CMD ["serve", "--config=/etc/tokenguard/config.yaml"]
