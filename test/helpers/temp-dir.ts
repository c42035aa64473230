// Temporary directories for tests that leave nothing behind in the OS temp folder.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const created: string[] = [];
process.on('exit', () => {
  for (const dir of created) rmSync(dir, { recursive: true, force: true });
});

/**
 * A fresh directory under the OS temp folder, removed when the process exits. `node --test` runs
 * each test file in its own process, so a file's directories outlive all of its tests (servers
 * started in `before` may still read their certificates in `after`) and a run leaves none behind.
 */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  created.push(dir);
  return dir;
}
