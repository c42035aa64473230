// A lingering close for answers sent before the request body was read (413: too large).
//
// Closing a connection while the client is still sending makes the kernel answer its next bytes
// with a reset, and a reset can destroy our answer before the client has read it: curl then
// reports no HTTP status at all, a Go client a broken pipe. Like Apache's and nginx's lingering
// close, the connection stays open after the answer while the rest of the body is read and
// dropped (never kept: memory stays flat), and is closed once the body has ended, the client has
// closed its side, or a bound is reached.

import type { IncomingMessage } from 'node:http';

export interface LingerBounds {
  /** Longest time to keep reading after the answer. */
  ms: number;
  /** Close when nothing arrived for this long. */
  idleMs: number;
  /** Close after dropping this many more bytes. */
  bytes: number;
}

export const LINGER: LingerBounds = { ms: 10_000, idleMs: 2_000, bytes: 64 * 1024 * 1024 };

/**
 * Make the `Connection: close` answer about to be sent on `req`'s connection close it only after
 * the rest of the request has been drained (within `bounds`). Node's HTTP server closes such a
 * connection with `socket.destroySoon()` once the answer is written; that call is deferred here.
 */
export function lingerBeforeClose(req: IncomingMessage, bounds: LingerBounds = LINGER): void {
  const socket = req.socket;
  const closeNow = socket.destroySoon.bind(socket);
  socket.destroySoon = () => {
    if (req.complete || socket.destroyed) return closeNow();
    let dropped = 0;
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      clearTimeout(total);
      clearTimeout(idle);
      socket.off('data', counted);
      closeNow();
    };
    const total = setTimeout(close, bounds.ms);
    let idle = setTimeout(close, bounds.idleMs);
    const counted = (chunk: Buffer) => {
      dropped += chunk.length;
      if (dropped > bounds.bytes) return close();
      clearTimeout(idle);
      idle = setTimeout(close, bounds.idleMs);
    };
    socket.on('data', counted);
    socket.once('end', close);
    req.once('end', close);
    // Nothing may hold the body back: the HTTP parser reads it off the socket and drops it.
    req.resume();
  };
}
