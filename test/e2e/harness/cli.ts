// The tokenguard CLI as a user runs it (the built dist/src/cli/main.js in its own process), and
// manifests written as kubectl reads them: shared by the end-to-end scenarios.

import { execFile } from 'node:child_process';
import { stringify } from 'yaml';
import { CLI } from '../../helpers/tokenguard-process.js';
import type { KubectlResult } from './kubectl.js';

/**
 * Run `tokenguard <args>`; resolves with its exit code and output, never rejects. `wrap` is an argv
 * prefix (the node suite's `nsenter --net=...`: its API server is inside a network namespace).
 */
export function tokenguardCli(args: string[], opts: { timeoutMs?: number; wrap?: string[] } = {}): Promise<KubectlResult> {
  const [file, ...argv] = [...(opts.wrap ?? []), process.execPath, CLI, ...args];
  return new Promise((resolve) => {
    execFile(file!, argv, { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Objects as one multi-document YAML stream. */
export const yaml = (...objects: object[]) => objects.map((o) => stringify(o)).join('---\n');
