// A real tokenguard HTTPS server on a loopback port, and a real HTTPS client for it.

import { request as httpsRequest, Agent } from 'node:https';
import { Engine } from '../../src/admission/engine.js';
import { resolveConfig, type ConfigOverrides } from '../../src/config/load.js';
import { callerAuthCAFile, type TokenguardConfig } from '../../src/config/schema.js';
import type { ClusterView } from '../../src/cluster/view.js';
import type { WebhookConfigurationView } from '../../src/cluster/webhook-configurations.js';
import { BUILTIN_POLICIES } from '../../src/policies/index.js';
import type { AnyPolicy } from '../../src/admission/policy.js';
import type { ObserverState } from '../../src/cluster/token-observer-state.js';
import type { AdmissionRequest } from '../../src/admission/review.js';
import { silentLogger, type Logger } from '../../src/observability/log.js';
import { CallerAuth, type KeySource } from '../../src/server/caller-auth.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import { makeCerts, type CertSet } from './tls.js';

let sharedCerts: CertSet | undefined;
/** One certificate set per test process: generating RSA keys takes a moment. */
export function testCerts(): CertSet {
  return (sharedCerts ??= makeCerts());
}

export interface TestServer extends RunningServer {
  certs: CertSet;
  engine: Engine;
  /** With `server.callerAuth` on. */
  callerAuth?: CallerAuth;
  config: TokenguardConfig;
  post(route: string, body: unknown, headers?: Record<string, string>): Promise<HttpResult>;
  get(path: string): Promise<HttpResult>;
}

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

export interface TestServerOptions {
  config?: unknown;
  overrides?: ConfigOverrides;
  policies?: readonly AnyPolicy[];
  cluster?: ClusterView;
  certs?: CertSet;
  logger?: Logger;
  /** The key set bearer tokens are verified against (with `server.callerAuth` on). */
  keySource?: KeySource;
  /** The live webhook configurations KEP-6060 tokens are checked against (with `server.callerAuth` on). */
  webhookConfigurations?: WebhookConfigurationView;
  /** Records the reviews of the `observe` route (the token refresh observer). */
  observeTokenRequest?: (request: AdmissionRequest) => void;
  /** What `GET /observer` answers (absent: no such route). */
  observerState?: () => ObserverState;
}

export async function startTestServer(opts: TestServerOptions = {}): Promise<TestServer> {
  const certs = opts.certs ?? testCerts();
  const policies = opts.policies ?? BUILTIN_POLICIES;
  const config = resolveConfig(opts.config, 'test config', policies, opts.overrides);
  const engine = new Engine({ config, policies, cluster: opts.cluster });
  const callerAuth = config.server.callerAuth.mode === 'off' ? undefined : new CallerAuth(config.server.callerAuth, { keys: opts.keySource, webhookConfigurations: opts.webhookConfigurations, logger: opts.logger ?? silentLogger });
  const running = await startServer({
    address: '127.0.0.1',
    port: 0,
    tls: { certFile: certs.certFile, keyFile: certs.keyFile, clientCAFile: callerAuthCAFile(config.server.callerAuth) },
    tlsReloadSeconds: config.server.tlsReloadSeconds,
    maxBodyBytes: config.server.maxBodyBytes,
    shutdownGraceSeconds: config.server.shutdownGraceSeconds,
    logger: opts.logger ?? silentLogger,
    engine: () => engine,
    callerAuth,
    observeTokenRequest: opts.observeTokenRequest,
    observerState: opts.observerState,
  });
  const agent = new Agent({ ca: certs.ca, keepAlive: true });
  const call = (method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}) =>
    httpsCall(running.port, method, path, body, headers, { agent, ca: certs.ca });
  return {
    ...running,
    certs,
    engine,
    callerAuth,
    config,
    post: (route, body, headers) =>
      call('POST', route, typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body), {
        'content-type': 'application/json',
        ...headers,
      }),
    get: (path) => call('GET', path),
    shutdown: async () => {
      agent.destroy();
      await running.shutdown();
    },
  };
}

export function httpsCall(
  port: number,
  method: string,
  path: string,
  body: string | Buffer | undefined,
  headers: Record<string, string>,
  tls: { agent?: Agent; ca?: Buffer; cert?: Buffer; key?: Buffer },
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port, method, path, headers, servername: 'localhost', ...tls },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: any;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
