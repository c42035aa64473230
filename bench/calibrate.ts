// A yardstick for slow spells of the machine: the same fixed piece of CPU work (SHA-256 over a
// fixed buffer, native code, no JIT or GC in the timing), timed on request. bench/run.ts keeps one
// of these on the servers' CPU and times it before and after every measured run while the servers
// sit idle: a run that starts or ends in a spell where this takes much longer than its best time
// (the shared host gave the CPU to something else, or ran it slower) is flagged, and the ratios
// are reported over the clean runs as well.
//
//   fork: node dist/bench/calibrate.js     <- { kind: 'time' }   -> { kind: 'timed', ms }

import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';

const BLOCK = Buffer.alloc(64 * 1024, 7);
const ROUNDS = 200; // about 20-40 ms on these machines: long enough to see a spell, short enough to repeat

function work(): number {
  const started = performance.now();
  let digest = Buffer.alloc(0);
  for (let i = 0; i < ROUNDS; i++) digest = createHash('sha256').update(BLOCK).update(digest).digest();
  if (digest.length !== 32) throw new Error('unreachable');
  return performance.now() - started;
}

work(); // the first run pays for loading the code
process.on('message', (m: { kind: string }) => {
  if (m.kind === 'time') process.send!({ kind: 'timed', ms: work() });
});
