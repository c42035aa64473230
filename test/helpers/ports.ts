// Ports for child servers: a free loopback port, and waiting until a child listens on it.
// Shared by the end-to-end suite (kube-apiserver, etcd, tokenguard) and the benchmarks.

import type { ChildProcess } from 'node:child_process';
import { createConnection, createServer } from 'node:net';

/** A TCP port free on 127.0.0.1 right now (for a child server that takes its port as an argument). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
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
