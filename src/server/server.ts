// The HTTPS server: TLS from files (reloaded on change), the admission hot path, the express app
// for the rest, and a graceful shutdown that drains connections without losing a review (drain.ts).

import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Engine } from '../admission/engine.js';
import type { AdmissionRequest } from '../admission/review.js';
import type { ObserverState } from '../cluster/token-observer-state.js';
import { admissionRoute } from '../admission/routes.js';
import { RateLimitedLog } from '../observability/log-limit.js';
import { createAdmissionPipeline, expectsContinue } from './admission-pipeline.js';
import { createApp } from './app.js';
import type { Logger } from '../observability/log.js';
import { Readiness } from '../observability/readiness.js';
import type { CallerAuth } from './caller-auth.js';
import type { OutcomeSinks } from './decision-events.js';
import { ConnectionTracker } from './drain.js';
import { Gauge } from 'prom-client';
import { registry } from '../observability/metrics.js';
import { loadTls, recordCertificates, watchTls, type TlsSource } from './tls.js';

/** The readiness of every server running in this process (one, in production), read at scrape time. */
const running = new Set<Readiness>();
export const readyGauge = new Gauge({
  name: 'tokenguard_ready',
  help: '1 while /readyz answers 200 (every readiness check passes), 0 while it answers 503 (starting, cache not synced, shutting down).',
  registers: [registry],
  collect() {
    let ready = running.size > 0;
    for (const r of running) if (!r.report().ready) ready = false;
    this.set(ready ? 1 : 0);
  },
});

/** Largest request head (request line and headers) the server reads. */
export const MAX_HEADER_BYTES = 128 * 1024;

export interface ServerOptions {
  address: string;
  port: number;
  tls: TlsSource;
  tlsReloadSeconds: number;
  maxBodyBytes: number;
  shutdownGraceSeconds: number;
  /** Unready but still accepting for this long before the listener closes (default 0). */
  shutdownDelaySeconds?: number;
  logger: Logger;
  /** A getter, so the engine can be swapped (e.g. once cluster caches exist) without a restart. */
  engine: () => Engine;
  readiness?: Readiness;
  /** Who may call /validate and /mutate (config `server.callerAuth`, when not off). */
  callerAuth?: CallerAuth;
  /** Where denials, break-glass deletions and admitted claim deletions are recorded (absent without a cluster). */
  outcomes?: OutcomeSinks;
  /** Records the reviews of the `observe` route (the token refresh observer, when enabled). */
  observeTokenRequest?: (request: AdmissionRequest) => void;
  /** What `GET /observer` answers (absent: no such route). */
  observerState?: () => ObserverState;
}

export interface RunningServer {
  server: Server;
  readiness: Readiness;
  port: number;
  url: string;
  /** Unready, stop accepting, let in-flight requests finish (bounded by the grace period), close. */
  shutdown: () => Promise<void>;
}

export interface RequestListenerOptions {
  engine: () => Engine;
  logger: Logger;
  maxBodyBytes: number;
  callerAuth?: CallerAuth;
  outcomes?: OutcomeSinks;
  readiness: Readiness;
  /** True once shutdown began: responses then ask the client to close the connection. */
  shuttingDown?: () => boolean;
  /** Told of every request and its response (the shutdown drain counts them per connection). */
  track?: (req: IncomingMessage, res: ServerResponse) => void;
  /** The rate-limited log of lines a request can cause (default: one of the pipeline's own). */
  limitedLog?: RateLimitedLog;
  observeTokenRequest?: (request: AdmissionRequest) => void;
  observerState?: () => ObserverState;
}

/** The whole request routing, without the listener: the hot path first, express for the rest. */
export function createRequestListener(opts: RequestListenerOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const app = createApp(opts.readiness, opts.observerState);
  const admit = createAdmissionPipeline(opts);
  return (req, res) => {
    opts.track?.(req, res);
    if (opts.shuttingDown?.()) res.setHeader('connection', 'close');
    const route = admissionRoute(req.method, req.url);
    // The admission handler sends `100 Continue` itself, once the headers pass its checks.
    if (route) admit(route, req, res);
    else {
      if (expectsContinue(req)) res.writeContinue();
      app(req, res);
    }
  };
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const readiness = opts.readiness ?? new Readiness();
  const tls = loadTls(opts.tls); // a missing or broken pair fails start-up, with the file named
  recordCertificates(tls);
  let shuttingDown = false;
  const server = createServer({
    ...tls.options,
    // Ask for a client certificate but check it per route: kubelet probes of /healthz present none.
    requestCert: !!opts.tls.clientCAFile,
    rejectUnauthorized: false,
    keepAliveTimeout: 65_000,
    // Room for a caller's oversized Authorization header to reach the handler and get a 401 with
    // its reason, rather than a bare 431 (node's default is 16 KiB).
    maxHeaderSize: MAX_HEADER_BYTES,
  });
  const connections = new ConnectionTracker(server);
  // Every line a remote party can cause per request or connection, rate-limited per reason.
  const limitedLog = new RateLimitedLog(opts.logger);
  const listener = createRequestListener({
    limitedLog,
    engine: opts.engine,
    logger: opts.logger,
    maxBodyBytes: opts.maxBodyBytes,
    callerAuth: opts.callerAuth,
    outcomes: opts.outcomes,
    observeTokenRequest: opts.observeTokenRequest,
    observerState: opts.observerState,
    readiness,
    shuttingDown: () => shuttingDown,
    track: (req, res) => connections.track(req, res),
  });
  server.on('request', listener);
  // `Expect: 100-continue` requests arrive here instead; the listener decides whether to continue.
  server.on('checkContinue', listener);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    limitedLog.log('debug', 'client_error', 'client error', { error: err.message, address: socket.remoteAddress ?? 'unknown' });
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
    if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    else socket.destroy();
  });
  server.on('tlsClientError', (err, socket) => limitedLog.log('debug', 'tls_handshake_failed', 'TLS handshake failed', { error: err.message, address: socket.remoteAddress ?? 'unknown' }));

  readiness.set('tls', () => ({ ok: true }));
  running.add(readiness);
  readiness.set('shutdown', () => (shuttingDown ? { ok: false, reason: 'shutting down' } : { ok: true }));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.address, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const stopWatching = watchTls(server, opts.tls, tls, opts.tlsReloadSeconds * 1000, opts.logger);
  const port = (server.address() as AddressInfo).port;
  const host = opts.address.includes(':') ? `[${opts.address}]` : opts.address;

  let closing: Promise<void> | undefined;
  const shutdown = () =>
    (closing ??= (async () => {
      // Unready first: the Service stops sending new connections while the listener still accepts
      // the ones already on their way (endpoint removal takes a moment to reach every client).
      shuttingDown = true;
      stopWatching();
      const delay = opts.shutdownDelaySeconds ?? 0;
      opts.logger.info('shutting down: unready', { delaySeconds: delay });
      if (delay > 0) await new Promise((r) => setTimeout(r, delay * 1000));
      await connections.drain(opts.shutdownGraceSeconds * 1000, opts.logger);
      limitedLog.flush();
      opts.callerAuth?.flushLog();
      running.delete(readiness);
    })());

  return { server, readiness, port, url: `https://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`, shutdown };
}
