// Host helpers shared by the benchmarks: free ports and CPU pinning.

import { execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
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
