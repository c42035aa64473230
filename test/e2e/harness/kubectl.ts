// The real kubectl against the end-to-end control plane: what it prints is what the suite asserts on.

import { spawn } from 'node:child_process';
import { atLeast, type KubeVersion } from './assets.js';

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export type Kubectl = (args: string[], input?: string) => Promise<KubectlResult>;

/**
 * A kubectl bound to one kubeconfig; never rejects on a non-zero exit (the caller asserts it).
 * `wrap` runs it through another command first: `nsenter --net=...` for a cluster that listens
 * only inside its network namespace.
 */
export function kubectlFor(binary: string, kubeconfig: string, timeoutMs = 30_000, wrap: string[] = []): Kubectl {
  return (args, input) =>
    new Promise((resolve, reject) => {
      const argv = [...wrap, binary, `--kubeconfig=${kubeconfig}`, ...args];
      const child = spawn(argv[0]!, argv.slice(1), { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (c) => (stdout += c));
      child.stderr!.on('data', (c) => (stderr += c));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`kubectl ${args.join(' ')}: no exit within ${timeoutMs} ms\n${stderr}`));
      }, timeoutMs);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code: code ?? -1, stdout, stderr });
      });
      if (child.stdin) {
        // kubectl may exit (an error, or a command that reads no input) before it has read all of
        // its stdin: the write then fails with EPIPE, which says nothing its exit code does not.
        child.stdin.on('error', (err: NodeJS.ErrnoException) => {
          if (err.code !== 'EPIPE') reject(err);
        });
        child.stdin.end(input);
      }
    });
}

/** Throw with kubectl's own words when it failed. */
export function ok(r: KubectlResult, what: string): KubectlResult {
  if (r.code !== 0) throw new Error(`${what}: kubectl exited ${r.code}\n${r.stderr}${r.stdout}`);
  return r;
}

/**
 * kubectl that fails the test with kubectl's own words when it fails. `kubectl` is read at each
 * call: scenarios make theirs in `before`.
 */
export function mustWith(kubectl: () => Kubectl): (args: string[], input?: string) => Promise<KubectlResult> {
  return async (args, input) => ok(await kubectl()(args, input), `kubectl ${args.join(' ')}`);
}

/** `Warning: ...` lines kubectl printed on stderr, without the prefix. */
export function warnings(r: KubectlResult): string[] {
  return r.stderr
    .split('\n')
    .filter((l) => l.startsWith('Warning: '))
    .map((l) => l.slice('Warning: '.length));
}

/**
 * What `kubectl delete` prints on success: `<resource> "<name>" deleted`, and from kubectl 1.34
 * (kubernetes#126619) with `from <namespace> namespace` for a namespaced object.
 */
export function deletedLine(kubectl: KubeVersion, resource: string, name: string, namespace?: string, serverDryRun = false): string {
  const from = namespace && atLeast(kubectl, 1, 34) ? ` from ${namespace} namespace` : '';
  return `${resource} "${name}" deleted${from}${serverDryRun ? ' (server dry run)' : ''}`;
}
