// `tokenguard serve`: load config, (optionally) generate dev certificates, connect to the cluster
// when there is one, and serve /validate and /mutate until SIGTERM/SIGINT.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Engine } from '../admission/engine.js';
import { ConfigError, loadConfig, type ConfigOverrides } from '../config/load.js';
import { callerAuthCAFile, type TokenguardConfig } from '../config/schema.js';
import { connectCluster } from '../cluster/connect.js';
import { observerOffState } from '../cluster/token-observer-state.js';
import type { ApiClient } from '../cluster/client.js';
import type { SelfManagedTls } from '../cluster/cert-controller.js';
import { BUILTIN_POLICIES } from '../policies/index.js';
import { batchedStdout, createLogger, type Logger, type LogLevel } from '../observability/log.js';
import { startServer, type RunningServer } from '../server/server.js';
import { servedUrls } from '../server/served-addresses.js';
import { buildInfo } from '../observability/build-info.js';
import { CommandError, parseFlags, UsageError, type Command } from './command.js';
import { errorCode, errorMessage, errorStack } from '../observability/errors.js';

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
  --mode MODE          default mode of every policy: enforce, warn or off (default warn)  TOKENGUARD_MODE
  --log-level LEVEL    debug, info, warn or error (default info)   TOKENGUARD_LOG_LEVEL
  --observer           observe the kubelets' TokenRequests (POST /observe) and report pods whose
                       token refresh is overdue (config observer.enabled)
  --dev                development: listen on 127.0.0.1 unless --address says otherwise, generate
                       certificates under certs/ when missing, print the caBundle and how to
                       register with a cluster (tokenguard dev register)

Examples:
  npm start                                  # the same as: tokenguard serve --dev
  npx tokenguard serve --dev --mode enforce  # try enforce without a config file
`;

const DEFAULT_CERT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../../certs');

/** A port from a flag or the environment: one wording whichever of the two `name` is. */
function port(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = /^\d+$/.test(value.trim()) ? Number(value) : NaN;
  if (!(n >= 0 && n <= 65535)) throw new UsageError(`${name} must be a port number from 0 to 65535, got ${JSON.stringify(value)}`);
  return n;
}

const MODES = ['enforce', 'warn', 'off'] as const;

export const SERVE_FLAGS = {
  config: { type: 'string' },
  address: { type: 'string' },
  port: { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'caller-auth': { type: 'string' },
  'client-ca': { type: 'string' },
  kubeconfig: { type: 'string' },
  'no-cluster': { type: 'boolean' },
  mode: { type: 'string' },
  'log-level': { type: 'string' },
  observer: { type: 'boolean' },
  dev: { type: 'boolean' },
} as const;

const SETTING_VARIABLES = [
  'TOKENGUARD_ADDRESS',
  'TOKENGUARD_PORT',
  'TOKENGUARD_TLS_CERT',
  'TOKENGUARD_TLS_KEY',
  'TOKENGUARD_CALLER_AUTH',
  'TOKENGUARD_CLIENT_CA',
  'TOKENGUARD_MODE',
  'TOKENGUARD_LOG_LEVEL',
  'TOKENGUARD_CONFIG',
];

/**
 * Kubernetes gives every pod, for each Service in its namespace, Docker-link style variables
 * (`enableServiceLinks`, on by default): a Service named `tokenguard` sets
 * `TOKENGUARD_PORT=tcp://10.0.0.127:443`, which is tokenguard's own port setting by name. The rule:
 * a `TOKENGUARD_*` variable whose value is a service link (`<tcp|udp|sctp>://<host>:<port>`) is
 * Kubernetes', never a setting, and is ignored; any other value is a setting and is checked as one.
 */
export function isServiceLink(value: string): boolean {
  return /^(tcp|udp|sctp):\/\/[^\s/]+:\d+$/.test(value.trim());
}

/** The settings' environment variables that hold Kubernetes service links, to say at start that they were ignored. */
export function ignoredServiceLinks(env: NodeJS.ProcessEnv): string[] {
  return SETTING_VARIABLES.filter((name) => env[name] !== undefined && isServiceLink(env[name]));
}


/** A setting from the environment: undefined when unset or when it is a Kubernetes service link. */
export function settingFromEnv(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name];
  return value === undefined || isServiceLink(value) ? undefined : value;
}

export function flagOverrides(values: Record<string, string | boolean | undefined>, env: NodeJS.ProcessEnv): ConfigOverrides {
  const pick = (flag: string, envName: string) => (values[flag] as string | undefined) ?? settingFromEnv(env, envName);
  // Which of the two a value came from, to name it in an error.
  const source = (flag: string, envName: string) => (values[flag] !== undefined ? `--${flag}` : envName);
  const server: Partial<TokenguardConfig['server']> = {};
  const set = <K extends keyof TokenguardConfig['server']>(k: K, v: TokenguardConfig['server'][K] | undefined) => {
    if (v !== undefined) server[k] = v;
  };
  // --dev serves this machine only unless told otherwise: what it announces is what it binds.
  set('address', pick('address', 'TOKENGUARD_ADDRESS') ?? (values.dev ? '127.0.0.1' : undefined));
  set('port', port(source('port', 'TOKENGUARD_PORT'), pick('port', 'TOKENGUARD_PORT')));
  set('tlsCertFile', pick('tls-cert', 'TOKENGUARD_TLS_CERT'));
  set('tlsKeyFile', pick('tls-key', 'TOKENGUARD_TLS_KEY'));
  // A certificate given here is served as given: tokenguard then manages none (cert-manager overlay).
  if (server.tlsCertFile !== undefined || server.tlsKeyFile !== undefined) set('selfManagedTLS', { enabled: false } as TokenguardConfig['server']['selfManagedTLS']);
  const callerAuth: Record<string, unknown> = {};
  const authMode = pick('caller-auth', 'TOKENGUARD_CALLER_AUTH');
  if (authMode !== undefined) callerAuth.mode = authMode;
  const clientCA = pick('client-ca', 'TOKENGUARD_CLIENT_CA');
  if (clientCA !== undefined) callerAuth.clientCertificate = { caFile: clientCA };
  // Validated like the file (a bad mode is named with its path), so the shape is checked there.
  if (Object.keys(callerAuth).length) server.callerAuth = callerAuth as unknown as TokenguardConfig['server']['callerAuth'];
  const overrides: ConfigOverrides = { server };
  const mode = pick('mode', 'TOKENGUARD_MODE');
  if (mode !== undefined) {
    if (!(MODES as readonly string[]).includes(mode)) {
      throw new UsageError(`${source('mode', 'TOKENGUARD_MODE')} must be enforce, warn or off, got ${JSON.stringify(mode)}`);
    }
    overrides.mode = mode as (typeof MODES)[number];
  }
  const level = pick('log-level', 'TOKENGUARD_LOG_LEVEL');
  if (level) overrides.log = { level: level as LogLevel };
  const cluster: Partial<TokenguardConfig['cluster']> = {};
  if (typeof values.kubeconfig === 'string') cluster.kubeconfig = values.kubeconfig;
  if (values['no-cluster']) cluster.enabled = false;
  if (Object.keys(cluster).length) overrides.cluster = cluster;
  if (values.observer) overrides.observer = { enabled: true };
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

/** `127.0.0.1:8443 (this machine only)`: the address bound, and who can reach it. */
export function listeningOn(address: string, port: number): string {
  const host = address.includes(':') ? `[${address}]` : address;
  const who =
    address === '0.0.0.0' || address === '::'
      ? 'every address of this machine'
      : address.startsWith('127.') || address === '::1' || address === 'localhost'
        ? 'this machine only'
        : 'this address only';
  return `${host}:${port} (${who})`;
}

function printDevInfo(config: TokenguardConfig, url: string, port: number): void {
  const caFile = resolve(dirname(config.server.tlsCertFile), 'ca.crt');
  const lines = [
    `tokenguard is serving on ${url} (POST /validate, POST /mutate, GET /healthz /readyz /metrics)`,
    `  listening:   ${listeningOn(config.server.address, port)}`,
    `  mode:        ${config.mode}`,
  ];
  lines.push(`  certificate: ${resolve(config.server.tlsCertFile)}`, `  key:         ${resolve(config.server.tlsKeyFile)}`);
  if (existsSync(caFile)) {
    lines.push(`  CA:          ${caFile}`);
    lines.push(`  caBundle:    ${readFileSync(caFile).toString('base64')}`);
    lines.push(`  try: curl --cacert ${caFile} ${url}/readyz`);
  }
  lines.push(`  register with the cluster of your kubeconfig: npx tokenguard dev register --url ${url}`);
  process.stderr.write(lines.join('\n') + '\n');
}

export const serveCommand: Command = {
  name: 'serve',
  help: HELP,
  flags: SERVE_FLAGS,
  async run(args) {
    const { values } = parseFlags(args, SERVE_FLAGS);
    const configPath = values.config ?? settingFromEnv(process.env, 'TOKENGUARD_CONFIG');
    const config = loadConfig(configPath, BUILTIN_POLICIES, flagOverrides(values, process.env));
    // Until the server listens, log lines wait here: a start-up that fails ends with its one error
    // line, not with log lines about what it was doing meanwhile.
    const out = batchedStdout();
    const held: string[] = [];
    let write: (line: string) => void = (line) => {
      held.push(line);
    };
    const logger = createLogger(config.log.level, (line) => write(line));
    let running: RunningServer;
    try {
      if (values.dev) ensureDevCertificates(config, logger);
      running = await runServer(config, logger);
    } catch (err) {
      throw startupError(err, config, !!values.dev);
    }
    for (const line of held) out(line);
    write = out;
    for (const name of ignoredServiceLinks(process.env)) {
      logger.info('ignored a Kubernetes service link, not a setting', { variable: name, value: process.env[name] });
    }
    const { version, revision } = buildInfo();
    logger.info('tokenguard started', {
      version,
      revision,
      // What the listener serves (every address of the pod with 0.0.0.0), not one loopback URL.
      addresses: servedUrls(config.server.address, running.port),
      listening: listeningOn(config.server.address, running.port),
      policies: BUILTIN_POLICIES.map((p) => p.name),
      mode: config.mode,
    });
    if (values.dev) printDevInfo(config, running.url, running.port);

    const stop = (signal: string) => {
      logger.info('signal received', { signal });
      void running.shutdown().then(() => process.exit(0));
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    return -1;
  },
};

/** A start-up failure as one line: what went wrong, and what to do about it. */
export function startupError(err: unknown, config: TokenguardConfig, dev: boolean): Error {
  if (err instanceof CommandError || err instanceof UsageError || err instanceof ConfigError) return err;
  const code = errorCode(err) ?? errorCode((err as { cause?: unknown } | undefined)?.cause);
  const { address, port: p } = config.server;
  const where = `${address.includes(':') ? `[${address}]` : address}:${p}`;
  switch (code) {
    case 'EADDRINUSE':
      return new CommandError(`cannot listen on ${where}: the address is in use`, 'stop the process using it, or choose another --port');
    case 'EACCES':
      return new CommandError(`cannot listen on ${where}: permission denied`, 'ports below 1024 need privileges: choose --port 8443');
    case 'EADDRNOTAVAIL':
      return new CommandError(`cannot listen on ${where}: ${address} is not an address of this machine`, 'use --address 127.0.0.1 or 0.0.0.0');
  }
  const message = errorMessage(err);
  if (/^cannot read TLS /.test(message)) {
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : message.replace(/^cannot read TLS \S+ \S+: /, '');
    const what = message.replace(/^(cannot read TLS \S+ \S+): .*$/s, '$1');
    return new CommandError(
      `${what}: ${why}`,
      dev ? 'check --tls-cert and --tls-key' : 'run npx tokenguard serve --dev (it generates development certificates), or pass --tls-cert and --tls-key',
    );
  }
  if (/kubeconfig/.test(message)) return new CommandError(message, 'pass --kubeconfig with a working file, or --no-cluster');
  return new CommandError(message);
}

/** Start the server for a loaded config; the cluster layer is attached when one is configured. */
export async function runServer(config: TokenguardConfig, logger: Logger): Promise<RunningServer> {
  const cluster = await connectCluster(config, logger);
  // Issuer discovery (the served issuer the issuer policy trusts) and the token self-test: loaded
  // with the cluster, like everything that needs @kubernetes/client-node.
  const issuerServices = cluster.cache
    ? (await import('../cluster/issuer-services.js')).startIssuerServices(cluster.cache, config, logger)
    : undefined;
  // The token refresh observer (observer.enabled): loaded only when on.
  if (config.observer.enabled && !cluster.cache) throw new CommandError('observer.enabled needs a cluster', 'give tokenguard cluster access (--kubeconfig or in-cluster), or set observer.enabled: false');
  const observer = config.observer.enabled && cluster.cache ? await (await import('../cluster/token-observer-service.js')).startTokenObserver(cluster.cache, config.observer, logger) : undefined;
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
  const selfManaged = await selfManagedTls(config, cluster.cache?.client, logger).catch(async (err) => {
    await observer?.stop();
    stopCluster();
    throw err;
  });
  const stopAll = () => {
    selfManaged?.stop();
    stopCluster();
  };
  const running = await startServer({
    address: config.server.address,
    port: config.server.port,
    tls: selfManaged
      ? { pair: selfManaged.pair, onChange: selfManaged.onChange, what: selfManaged.what, clientCAFile: callerAuthCAFile(auth) }
      : { certFile: config.server.tlsCertFile, keyFile: config.server.tlsKeyFile, clientCAFile: callerAuthCAFile(auth) },
    tlsReloadSeconds: config.server.tlsReloadSeconds,
    maxBodyBytes: config.server.maxBodyBytes,
    shutdownGraceSeconds: config.server.shutdownGraceSeconds,
    shutdownDelaySeconds: config.server.shutdownDelaySeconds,
    logger,
    engine: () => engine,
    callerAuth,
    outcomes: { events: issuerServices?.events, claims: cluster.cache },
    observeTokenRequest: observer?.record,
    observerState: observer?.state ?? (() => observerOffState(process.env.POD_NAME || hostname(), config.observer)),
  }).catch(async (err) => {
    await observer?.stop();
    stopAll();
    throw err;
  });
  running.readiness.set('config', () => ({ ok: true }));
  running.readiness.set('cluster', cluster.readiness);
  if (selfManaged) running.readiness.set('tls', selfManaged.readiness);
  const shutdown = running.shutdown;
  // The observer releases its Lease as the drain begins: another replica takes over at once.
  return { ...running, shutdown: () => Promise.all([observer?.stop(), shutdown()]).then(() => undefined).finally(stopAll) };
}

/**
 * Self-managed TLS when configured (it needs the cluster); otherwise say where the certificate
 * comes from, so an operator sees at start which of the two manages it.
 */
async function selfManagedTls(config: TokenguardConfig, client: ApiClient | undefined, logger: Logger): Promise<SelfManagedTls | undefined> {
  const tls = config.server.selfManagedTLS;
  if (!tls.enabled) {
    logger.info('TLS: serving the certificate files; tokenguard does not manage certificates (server.selfManagedTLS.enabled is false)', {
      certFile: config.server.tlsCertFile,
    });
    return undefined;
  }
  if (!client) throw new Error('server.selfManagedTLS.enabled is true but there is no cluster to keep the certificate Secret in');
  const { startSelfManagedTls } = await import('../cluster/cert-controller.js');
  return startSelfManagedTls(client, tls, process.env.POD_NAMESPACE, logger, config.observer.enabled);
}
