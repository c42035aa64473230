// Host helpers shared by the benchmarks: free ports, CPU pinning, waiting for a child server.

import { execFileSync, type ChildProcess } from 'node:child_process';
import { createConnection, createServer } from 'node:net';
import { cpus } from 'node:os';

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

/** Pin a process, all its threads, to `cpuList` (e.g. `0`, `0-1`); false when taskset or a second CPU is missing. */
export function pin(pid: number, cpuList: string | number): boolean {
  if (cpus().length < 2) return false;
  try {
    execFileSync('taskset', ['-a', '-cp', String(cpuList), String(pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Resolves once `child` accepts TCP connections on 127.0.0.1:`port`; rejects if it exits or never does. */
export async function untilListening(port: number, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`server on port ${port} exited with code ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const c = createConnection(port, '127.0.0.1', () => {
        c.end();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`server on port ${port} did not come up`);
}
