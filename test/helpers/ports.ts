// Ports for child servers: a free loopback port, and waiting until a child listens on it.
// Shared by the end-to-end suite (kube-apiserver, etcd, tokenguard) and the benchmarks.

import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';

/** Ports this process handed out: a child may not have bound its port yet when the next one is picked. */
const handedOut = new Set<number>();

/** The kernel's range for outgoing connections' source ports (`ip_local_port_range`), e.g. [32768, 60999]. */
function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (low! > 0 && high! >= low!) return [low!, high!];
  } catch {
    // not Linux: assume the IANA range
  }
  return [49152, 65535];
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * A TCP port free on 127.0.0.1 right now, for a child server that takes its port as an argument.
 * Chosen below the ephemeral range, so that between this check and the child's bind no outgoing
 * connection of another process can take it as its source port, and never the same one twice in a
 * process (a port given back by the kernel would otherwise be handed out again before its child binds).
 */
export async function freePort(): Promise<number> {
  const [low] = ephemeralRange();
  const base = 10_000;
  if (low - base >= 1000) {
    for (let attempt = 0; attempt < 100; attempt++) {
      const port = base + Math.floor(Math.random() * (low - base));
      if (handedOut.has(port) || !(await bindable(port))) continue;
      handedOut.add(port);
      return port;
    }
  }
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const { port } = s.address() as { port: number };
        s.close(() => resolve(port));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

/** Resolves once `child` accepts TCP connections on 127.0.0.1:`port`; rejects if it exits or never does. */
export async function untilListening(port: number, child: ChildProcess, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`server on port ${port} exited (${child.exitCode ?? child.signalCode})`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const c = createConnection(port, '127.0.0.1', () => {
        c.end();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`server on port ${port} did not come up within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
