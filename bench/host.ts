// Host helpers shared by the benchmarks: CPU pinning, and (from test/helpers/ports.ts, which the
// end-to-end suite shares) free ports and waiting for a child server.

import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export { freePort, untilListening } from '../test/helpers/ports.js';

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

/** The garbage collector, for heap figures after a full collection (exposed at run time without --expose-gc). */
export function exposeGc(): () => void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}
