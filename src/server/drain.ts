// Draining connections at shutdown without losing a review.
//
// A keep-alive connection can only be closed safely when the client knows not to send on it: a
// request written to a connection we close at the same moment is reset before any answer, and
// kube-apiserver's webhook client does not retry such a POST (under failurePolicy Fail a user's
// `kubectl apply` fails; under Ignore the review is silently skipped). So:
// - from SIGTERM on every response says `Connection: close` (the request listener sets it), and
//   node closes such a connection itself once that response is written;
// - after the delay the listener stops accepting, but connections are not swept at once as
//   `server.close()` would do: in-flight requests finish; a connection that has not carried a
//   request yet is given FRESH_CONNECTION_MS to send its first one (its client is about to: Go's
//   http.Server gives a new connection 5 s too); an idle keep-alive connection that was never
//   told to close is closed last, when nothing else is left and no byte of a request has arrived
//   on it (only a request still on the wire at that instant can race the close);
// - the grace period bounds all of it; what is still open then is cut.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server } from 'node:https';
import type { Socket } from 'node:net';
import { Server as TlsServer, type TLSSocket } from 'node:tls';
import type { Logger } from '../observability/log.js';

/** How long a connection that has carried no request yet may take to send its first one. */
export const FRESH_CONNECTION_MS = 5000;
const SWEEP_MS = 20;

interface Connection {
  acceptedAt: number;
  /** Requests begun on it. */
  requests: number;
  inFlight: number;
  /** A response on it said `Connection: close`: the client will not send another request. */
  told: boolean;
  /** We are closing it (idle and never told). */
  closing: boolean;
  /** `bytesRead` when it last fell idle: more since means a request is arriving. */
  bytesAtRest: number;
}

export interface DrainReport {
  ms: number;
  /** Connections still open when the grace period ended, and the requests cut with them. */
  cutConnections: number;
  cutRequests: number;
}

export class ConnectionTracker {
  /** Every TCP connection, from accept (before or during its TLS handshake) to close. */
  private readonly sockets = new Set<Socket>();
  /** The HTTP side of each TLS connection. */
  private readonly connections = new Map<TLSSocket, Connection>();

  constructor(
    private readonly server: Server,
    private readonly now: () => number = Date.now,
  ) {
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    server.on('secureConnection', (socket: TLSSocket) => {
      this.connections.set(socket, { acceptedAt: this.now(), requests: 0, inFlight: 0, told: false, closing: false, bytesAtRest: socket.bytesRead });
      socket.once('close', () => this.connections.delete(socket));
    });
  }

  /** Count a request and its response (called by the request listener for every request). */
  track(req: IncomingMessage, res: ServerResponse): void {
    const c = this.connections.get(req.socket as TLSSocket);
    if (!c) return;
    c.requests++;
    c.inFlight++;
    res.on('close', this.responseClosed);
  }

  /**
   * A response is done ('close' follows 'finish', or ends an aborted one): one function for all
   * of them, so tracking costs no allocation per request.
   */
  private readonly responseClosed = (() => {
    const connections = this.connections;
    return function (this: ServerResponse) {
      const socket = this.req.socket as TLSSocket;
      const c = connections.get(socket);
      if (!c) return;
      c.inFlight--;
      c.bytesAtRest = socket.bytesRead;
      if (String(this.getHeader('connection')).toLowerCase() === 'close') c.told = true;
    };
  })();

  get counts(): { connections: number; requestsInFlight: number } {
    let requestsInFlight = 0;
    for (const c of this.connections.values()) requestsInFlight += c.inFlight;
    return { connections: this.sockets.size, requestsInFlight };
  }

  /**
   * Stop accepting and close every connection as soon as no request can be racing onto it, within
   * `graceMs`. Resolves when every connection is closed.
   */
  async drain(graceMs: number, logger: Logger): Promise<DrainReport> {
    const started = this.now();
    logger.info('closing the listener, draining connections', { graceSeconds: graceMs / 1000, ...this.counts });
    // tls.Server's close stops the listener only; https.Server's would first destroy every idle
    // keep-alive connection at once, including one whose client is writing its next request.
    const closed = new Promise<void>((resolve) => TlsServer.prototype.close.call(this.server, () => resolve()));
    const fresh = Math.min(FRESH_CONNECTION_MS, graceMs);
    let cut = { cutConnections: 0, cutRequests: 0 };
    await new Promise<void>((resolve) => {
      const deadline = setTimeout(() => {
        cut = { cutConnections: this.sockets.size, cutRequests: this.counts.requestsInFlight };
        for (const socket of this.sockets) socket.destroy();
        finish();
      }, graceMs);
      const sweep = setInterval(() => {
        const now = this.now();
        let busy = false;
        const neverTold: [TLSSocket, Connection][] = [];
        for (const [socket, c] of this.connections) {
          if (c.inFlight > 0) busy = true;
          else if (c.told || c.closing) continue; // closing already
          else if (c.requests === 0) {
            if (now - c.acceptedAt >= fresh) socket.destroy(); // no whole request in 5 s: not a client about to send one
            else busy = true;
          } else if (socket.bytesRead !== c.bytesAtRest) busy = true; // a request is arriving
          else neverTold.push([socket, c]);
        }
        if (!busy) {
          for (const [socket, c] of neverTold) {
            c.closing = true;
            socket.destroySoon();
          }
        }
        if (this.sockets.size === 0) finish();
      }, SWEEP_MS);
      const finish = () => {
        clearTimeout(deadline);
        clearInterval(sweep);
        resolve();
      };
    });
    await closed;
    const report = { ms: this.now() - started, ...cut };
    if (cut.cutConnections) logger.warn('grace period over: remaining connections cut', report);
    else logger.info('drained: every connection closed', report);
    return report;
  }
}
