// `tokenguard serve`: load config, (optionally) generate dev certificates, connect to the cluster
// when there is one, and serve /validate and /mutate until SIGTERM/SIGINT.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Engine } from '../admission/engine.js';
import { loadConfig, type ConfigOverrides } from '../config/load.js';
import { callerAuthCAFile, type TokenguardConfig } from '../config/schema.js';
import { connectCluster } from '../cluster/connect.js';
import { BUILTIN_POLICIES } from '../policies/index.js';
import { batchedStdout, createLogger, type Logger, type LogLevel } from '../observability/log.js';
import { startServer, type RunningServer } from '../server/server.js';
import { parseFlags, UsageError, type Command } from './command.js';
import { errorStack } from '../observability/errors.js';

const HELP = `Usage: tokenguard serve [flags]

Serve the admission webhook over HTTPS: POST /validate, POST /mutate, GET /healthz, /readyz, /metrics.

Flags (each also settable by the environment variable shown, and in the config file):
  --config FILE        YAML or JSON configuration file            TOKENGUARD_CONFIG
  --address ADDR       listen address (default 0.0.0.0)            TOKENGUARD_ADDRESS
  --port N             listen port (default 8443)                  TOKENGUARD_PORT
  --tls-cert FILE      serving certificate, PEM (default certs/tls.crt)  TOKENGUARD_TLS_CERT
  --tls-key FILE       serving key, PEM (default certs/tls.key)    TOKENGUARD_TLS_KEY
  --caller-auth MODE   authenticate the API server: off, audit or enforce (default off)  TOKENGUARD_CALLER_AUTH
  --client-ca FILE     accept client certificates signed by this CA (with --caller-auth)  TOKENGUARD_CLIENT_CA
  --kubeconfig FILE    cluster access (else KUBECONFIG, in-cluster, ~/.kube/config)
  --no-cluster         never talk to a cluster (cluster-backed checks warn that they could not run)
  --log-level LEVEL    debug, info, warn or error (default info)   TOKENGUARD_LOG_LEVEL
  --dev                generate development certificates under certs/ when missing and print the caBundle
`;

const DEFAULT_CERT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../../certs');

function num(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n)) throw new UsageError(`${flag} must be an integer, got ${JSON.stringify(value)}`);
  return n;
}

export function flagOverrides(values: Record<string, string | boolean | undefined>, env: NodeJS.ProcessEnv): ConfigOverrides {
  const pick = (flag: string, envName: string) => (values[flag] as string | undefined) ?? env[envName];
  const server: Partial<TokenguardConfig['server']> = {};
  const set = <K extends keyof TokenguardConfig['server']>(k: K, v: TokenguardConfig['server'][K] | undefined) => {
    if (v !== undefined) server[k] = v;
  };
  set('address', pick('address', 'TOKENGUARD_ADDRESS'));
  set('port', num('--port', pick('port', 'TOKENGUARD_PORT')));
  set('tlsCertFile', pick('tls-cert', 'TOKENGUARD_TLS_CERT'));
  set('tlsKeyFile', pick('tls-key', 'TOKENGUARD_TLS_KEY'));
  const callerAuth: Record<string, unknown> = {};
  const authMode = pick('caller-auth', 'TOKENGUARD_CALLER_AUTH');
  if (authMode !== undefined) callerAuth.mode = authMode;
  const clientCA = pick('client-ca', 'TOKENGUARD_CLIENT_CA');
  if (clientCA !== undefined) callerAuth.clientCertificate = { caFile: clientCA };
  // Validated like the file (a bad mode is named with its path), so the shape is checked there.
  if (Object.keys(callerAuth).length) server.callerAuth = callerAuth as unknown as TokenguardConfig['server']['callerAuth'];
  const overrides: ConfigOverrides = { server };
  const level = pick('log-level', 'TOKENGUARD_LOG_LEVEL');
  if (level) overrides.log = { level: level as LogLevel };
  const cluster: Partial<TokenguardConfig['cluster']> = {};
  if (typeof values.kubeconfig === 'string') cluster.kubeconfig = values.kubeconfig;
  if (values['no-cluster']) cluster.enabled = false;
  if (Object.keys(cluster).length) overrides.cluster = cluster;
  return overrides;
}

/** Generate dev certificates when the configured pair is the default one and missing. */
function ensureDevCertificates(config: TokenguardConfig, logger: Logger): void {
  const cert = resolve(config.server.tlsCertFile);
  const key = resolve(config.server.tlsKeyFile);
  if (existsSync(cert) && existsSync(key)) return;
  const dir = dirname(cert);
  if (dir !== dirname(key)) throw new Error(`--dev generates certs into one folder; ${cert} and ${key} differ`);
  execFileSync('bash', [resolve(DEFAULT_CERT_DIR, 'generate.sh'), dir], { stdio: 'inherit' });
  logger.info('generated development certificates', { dir });
}

function printDevInfo(config: TokenguardConfig, url: string): void {
  const caFile = resolve(dirname(config.server.tlsCertFile), 'ca.crt');
  const lines = [`tokenguard is serving on ${url} (POST /validate, POST /mutate, GET /healthz /readyz /metrics)`];
  lines.push(`  certificate: ${resolve(config.server.tlsCertFile)}`, `  key:         ${resolve(config.server.tlsKeyFile)}`);
  if (existsSync(caFile)) {
    lines.push(`  CA:          ${caFile}`);
    lines.push(`  caBundle:    ${readFileSync(caFile).toString('base64')}`);
    lines.push(`  try: curl --cacert ${caFile} ${url}/readyz`);
  }
  process.stderr.write(lines.join('\n') + '\n');
}

export const serveCommand: Command = {
  name: 'serve',
  help: HELP,
  async run(args) {
    const { values } = parseFlags(args, {
      config: { type: 'string' },
      address: { type: 'string' },
      port: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'caller-auth': { type: 'string' },
      'client-ca': { type: 'string' },
      kubeconfig: { type: 'string' },
      'no-cluster': { type: 'boolean' },
      'log-level': { type: 'string' },
      dev: { type: 'boolean' },
    });
    const configPath = values.config ?? process.env.TOKENGUARD_CONFIG;
    const config = loadConfig(configPath, BUILTIN_POLICIES, flagOverrides(values, process.env));
    const logger = createLogger(config.log.level, batchedStdout());
    if (values.dev) ensureDevCertificates(config, logger);

    const running = await runServer(config, logger);
    logger.info('tokenguard started', { url: running.url, policies: BUILTIN_POLICIES.map((p) => p.name), mode: config.mode });
    if (values.dev) printDevInfo(config, running.url);

    const stop = (signal: string) => {
      logger.info('signal received', { signal });
      void running.shutdown().then(() => process.exit(0));
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    return -1;
  },
};

/** Start the server for a loaded config; the cluster layer is attached when one is configured. */
export async function runServer(config: TokenguardConfig, logger: Logger): Promise<RunningServer> {
  const cluster = await connectCluster(config, logger);
  // Issuer discovery (the served issuer the issuer policy trusts) and the token self-test: loaded
  // with the cluster, like everything that needs @kubernetes/client-node.
  const issuerServices = cluster.cache
    ? (await import('../cluster/issuer-services.js')).startIssuerServices(cluster.cache, config, logger)
    : undefined;
  const engine = new Engine({
    config,
    policies: BUILTIN_POLICIES,
    cluster: cluster.cache,
    onPolicyError: (policy, err) => logger.error('policy failed', { policy, error: errorStack(err) }),
  });
  const auth = config.server.callerAuth;
  // The live webhook configurations a KEP-6060 token's binding is checked against: watched only
  // with caller authentication on and a cluster.
  const webhookConfigurations =
    auth.mode !== 'off' && cluster.cache
      ? new (await import('../cluster/webhook-configurations.js')).WebhookConfigurations({
          client: cluster.cache.client,
          staleAfterSeconds: config.cluster.staleAfterSeconds,
          logger,
        })
      : undefined;
  webhookConfigurations?.start();
  // Loaded only when on: token verification brings jose.
  const callerAuth =
    auth.mode === 'off'
      ? undefined
      : new (await import('../server/caller-auth.js')).CallerAuth(auth, { keys: issuerServices?.monitor, webhookConfigurations, logger });
  if (callerAuth && !issuerServices) {
    logger.warn('caller authentication without a cluster: bearer tokens cannot be verified (no key set); only client certificates can pass', {
      mode: auth.mode,
    });
  }
  // In this order: the cluster connection closes the client the others use.
  function stopCluster(): void {
    webhookConfigurations?.stop();
    issuerServices?.stop();
    cluster.stop();
  }
  const running = await startServer({
    address: config.server.address,
    port: config.server.port,
    tls: { certFile: config.server.tlsCertFile, keyFile: config.server.tlsKeyFile, clientCAFile: callerAuthCAFile(auth) },
    tlsReloadSeconds: config.server.tlsReloadSeconds,
    maxBodyBytes: config.server.maxBodyBytes,
    shutdownGraceSeconds: config.server.shutdownGraceSeconds,
    shutdownDelaySeconds: config.server.shutdownDelaySeconds,
    logger,
    engine: () => engine,
    callerAuth,
  }).catch((err) => {
    stopCluster();
    throw err;
  });
  running.readiness.set('config', () => ({ ok: true }));
  running.readiness.set('cluster', cluster.readiness);
  const shutdown = running.shutdown;
  return { ...running, shutdown: () => shutdown().finally(stopCluster) };
}
