// A paced keep-alive load that counts what happened to every request, the way kube-apiserver's
// webhook client would experience it: requests at an even rate over a pool of keep-alive TLS
// connections, a new connection opened when none is free, a connection dropped once an answer
// says `Connection: close`. Every request ends in exactly one bucket:
//   ok       answered 200 with the expected text in the body;
//   bad      answered, but not that (another status, another body);
//   refused  its connection could not be opened: refused, or reset before its TLS handshake
//            finished (a connection still in the kernel's accept queue when the listener closes).
//            Nothing was written, and the client knows it; fine once the listener is closed, as a
//            Service sends those to another replica;
//   lost     written, and its connection closed or reset before any answer: the API server's
//            client does not retry such a POST, so a user's request fails or a review is skipped;
//   timeout  no answer within `timeoutMs`.

import { connect, type TLSSocket } from 'node:tls';

export interface PacedLoadOptions {
  port: number;
  ca: Buffer;
  /** Path and body of each request (POST, application/json). */
  path: string;
  body: string | Buffer;
  /** Requests per second. */
  rate: number;
  /** Most connections open at once (as a client's pool). */
  maxConnections?: number;
  /** Text every good answer's body contains. */
  expect: string;
  timeoutMs?: number;
  /** Extra request headers. */
  headers?: Record<string, string>;
}

export interface LoadCounts {
  ok: number;
  bad: number;
  refused: number;
  lost: number;
  timeout: number;
  /** Connections opened over the run (each answer with `Connection: close` costs a new one). */
  connections: number;
  /** A few examples of what `bad` and `lost` were, for the failure message. */
  samples: string[];
}

interface Conn {
  socket: TLSSocket;
  ready: boolean;
  /** The request on the wire (at most one: no pipelining), with when it was written. */
  pending?: { at: number };
  closing: boolean;
  received: Buffer;
}

const HEADER_END = Buffer.from('\r\n\r\n');

export class PacedLoad {
  readonly counts: LoadCounts = { ok: 0, bad: 0, refused: 0, lost: 0, timeout: 0, connections: 0, samples: [] };
  private readonly conns = new Set<Conn>();
  private readonly request: Buffer;
  private readonly expect: Buffer;
  private timer?: NodeJS.Timeout;
  private watchdog?: NodeJS.Timeout;
  private backlog = 0;
  private running = false;

  constructor(private readonly o: PacedLoadOptions) {
    const body = Buffer.from(o.body);
    const extra = Object.entries(o.headers ?? {})
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    this.request = Buffer.concat([
      Buffer.from(`POST ${o.path} HTTP/1.1\r\nhost: 127.0.0.1:${o.port}\r\ncontent-type: application/json\r\n${extra}content-length: ${body.length}\r\n\r\n`),
      body,
    ]);
    this.expect = Buffer.from(o.expect);
  }

  start(): void {
    this.running = true;
    const interval = 1000 / this.o.rate;
    const started = Date.now();
    let issued = 0;
    // A 1 ms timer, catching up on what is due: an even rate without spinning a CPU.
    this.timer = setInterval(() => {
      const due = Math.floor((Date.now() - started) / interval);
      for (; issued < due; issued++) this.backlog++;
      this.dispatch();
    }, 1);
    this.watchdog = setInterval(() => this.expire(), 100);
  }

  /** Stop issuing; resolves once every request has an outcome. */
  async stop(): Promise<LoadCounts> {
    this.running = false;
    clearInterval(this.timer);
    // Requests not yet sent when the load stops were never issued: not counted.
    this.backlog = 0;
    while ([...this.conns].some((c) => c.pending || !c.ready)) await new Promise((r) => setTimeout(r, 10));
    clearInterval(this.watchdog);
    for (const c of this.conns) c.socket.destroy();
    this.conns.clear();
    return this.counts;
  }

  get total(): number {
    const c = this.counts;
    return c.ok + c.bad + c.refused + c.lost + c.timeout;
  }

  private sample(what: string): void {
    if (this.counts.samples.length < 5) this.counts.samples.push(what);
  }

  private dispatch(): void {
    if (!this.running) return;
    for (const c of this.conns) {
      if (this.backlog === 0) return;
      if (!c.ready || c.pending || c.closing) continue;
      this.backlog--;
      this.send(c);
    }
    // Nothing free: open connections for what is due, up to the pool size.
    let opening = [...this.conns].filter((c) => !c.ready).length;
    while (this.backlog > opening && this.conns.size < (this.o.maxConnections ?? 8)) {
      this.open();
      opening++;
    }
  }

  private send(c: Conn): void {
    c.pending = { at: Date.now() };
    c.socket.write(this.request);
  }

  private open(): void {
    this.counts.connections++;
    const socket = connect({ host: '127.0.0.1', port: this.o.port, ca: this.o.ca, servername: 'localhost' });
    const c: Conn = { socket, ready: false, closing: false, received: Buffer.alloc(0) };
    this.conns.add(c);
    socket.setNoDelay(true);
    socket.once('secureConnect', () => {
      c.ready = true;
      // The request that made us open it goes out at once, as a pool's new connection would.
      if (this.backlog > 0 && this.running) {
        this.backlog--;
        this.send(c);
      }
    });
    socket.on('data', (d: Buffer) => {
      c.received = c.received.length ? Buffer.concat([c.received, d]) : d;
      this.read(c);
    });
    const end = (err?: NodeJS.ErrnoException) => {
      if (!this.conns.has(c)) return;
      this.conns.delete(c);
      if (!c.ready) {
        // Never connected: the request it was opened for was never written.
        this.counts.refused++;
        if (err?.code !== 'ECONNREFUSED') this.sample(`connect failed: ${err?.code ?? err?.message ?? 'closed during the handshake'}`);
        this.backlog = Math.max(0, this.backlog - 1);
      } else if (c.pending) {
        this.counts.lost++;
        this.sample(`written, then ${err ? err.code ?? err.message : 'closed'} before any answer`);
      }
      socket.destroy();
      this.dispatch();
    };
    socket.on('error', (err) => end(err));
    socket.on('close', () => end());
  }

  private read(c: Conn): void {
    const buf = c.received;
    const headerEnd = buf.indexOf(HEADER_END);
    if (headerEnd < 0) return;
    const head = buf.toString('latin1', 0, headerEnd);
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    const bodyEnd = headerEnd + 4 + (length ? Number(length[1]) : 0);
    if (buf.length < bodyEnd) return;
    if (!c.pending) {
      this.counts.bad++;
      this.sample(`an answer nobody asked for: ${head.split('\r\n')[0]}`);
    } else if (head.startsWith('HTTP/1.1 200') && buf.subarray(headerEnd + 4, bodyEnd).includes(this.expect)) this.counts.ok++;
    else {
      this.counts.bad++;
      this.sample(`${head.split('\r\n')[0]}: ${buf.toString('utf8', headerEnd + 4, Math.min(bodyEnd, headerEnd + 204))}`);
    }
    c.pending = undefined;
    c.received = buf.subarray(bodyEnd);
    if (/\r\nconnection: *close/i.test(head)) c.closing = true; // the server will close it: never reuse
    this.dispatch();
  }

  private expire(): void {
    const limit = this.o.timeoutMs ?? 5000;
    const now = Date.now();
    for (const c of this.conns) {
      if (c.pending && now - c.pending.at > limit) {
        this.counts.timeout++;
        c.pending = undefined;
        this.conns.delete(c);
        c.socket.destroy();
      }
    }
  }
}
