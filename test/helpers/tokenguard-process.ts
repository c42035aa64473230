// tokenguard as users run it: `tokenguard serve --config FILE` in its own process, from the built
// CLI, with a kubeconfig carrying its ServiceAccount's token (or with no cluster). Its JSON log
// lines are kept for assertions; /metrics and /readyz are read over its real TLS. Shared by the
// end-to-end suite and the fault suite (which sends it signals).

import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { httpsCall, type HttpResult } from './server.js';
import { freePort } from './ports.js';
import { makeCerts, PROJECT_ROOT, type CertSet } from './tls.js';

export const CLI = join(PROJECT_ROOT, 'dist', 'src', 'cli', 'main.js');
export const BUNDLE_CLI = join(PROJECT_ROOT, 'dist', 'bundle', 'cli', 'main.js');

export interface TokenguardOptions {
  dir: string;
  /** Its cluster credentials; without, it runs with `cluster.enabled: false`. */
  kubeconfig?: string;
  /** Its serving certificate (default: a fresh set from certs/generate.sh under `dir`). */
  certs?: CertSet;
  /**
   * Self-managed TLS instead of certificate files (`server.selfManagedTLS`): no files are made or
   * configured, and calls trust the CA bundle this returns (read from the cluster).
   */
  trust?: () => Promise<Buffer>;
  /** Its port (default: a free one), for a caller that must know the URL before it starts. */
  port?: number;
  /** Merged over the suite's base config (server address, port, certificates, cluster). */
  config?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  /** The CLI to run (default: the tsc build, CLI; BUNDLE_CLI: the esbuild bundle the image runs). */
  cli?: string;
}

export class TokenguardProcess {
  /** Parsed JSON log lines (stdout), in order. */
  readonly logs: Record<string, any>[] = [];
  stderr = '';
  private exited: Promise<number | null>;

  private constructor(
    readonly child: ChildProcess,
    readonly port: number,
    private readonly files: CertSet | undefined,
    private readonly trust?: () => Promise<Buffer>,
  ) {
    let pending = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      let nl: number;
      while ((nl = pending.indexOf('\n')) !== -1) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        try {
          this.logs.push(JSON.parse(line));
        } catch {
          this.logs.push({ msg: line });
        }
      }
    });
    child.stderr!.on('data', (c: Buffer) => (this.stderr += c.toString('utf8')));
    // 'close', not 'exit': by then every line it wrote has been read.
    this.exited = new Promise((resolve) => child.once('close', (code) => resolve(code)));
  }

  /** Its certificate files (not with self-managed TLS). */
  get certs(): CertSet {
    if (!this.files) throw new Error('tokenguard runs with self-managed TLS: it has no certificate files');
    return this.files;
  }

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  static async start(opts: TokenguardOptions): Promise<TokenguardProcess> {
    const certs = opts.trust ? undefined : (opts.certs ?? makeCerts(join(opts.dir, 'tokenguard-certs')));
    const port = opts.port ?? (await freePort());
    const files = certs ? { tlsCertFile: certs.certFile, tlsKeyFile: certs.keyFile } : {};
    const base: Record<string, Record<string, unknown>> = {
      server: { address: '127.0.0.1', port, ...files, shutdownGraceSeconds: 5 },
      cluster: opts.kubeconfig ? { enabled: true, kubeconfig: opts.kubeconfig } : { enabled: false },
      // Tests read the decision lines of plain allows too (logged at debug).
      log: { level: 'debug' },
    };
    // One level deep: a test's `server` or `cluster` keys join the base ones.
    const config: Record<string, unknown> = { ...base };
    for (const [key, value] of Object.entries(opts.config ?? {})) {
      config[key] = base[key] && typeof value === 'object' ? { ...base[key], ...(value as object) } : value;
    }
    const configFile = join(opts.dir, `tokenguard-${port}.yaml`);
    writeFileSync(configFile, stringify(config));
    const child = spawn(process.execPath, [opts.cli ?? CLI, 'serve', `--config=${configFile}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TOKENGUARD_SERVICE_ACCOUNT: 'tokenguard/tokenguard', POD_NAMESPACE: 'tokenguard', ...opts.env },
    });
    process.once('exit', () => child.kill('SIGKILL'));
    const tg = new TokenguardProcess(child, port, certs, opts.trust);
    try {
      await tg.untilReady();
    } catch (err) {
      child.kill('SIGKILL'); // a server left running would keep the test process alive
      throw err;
    }
    return tg;
  }

  async call(method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<HttpResult> {
    return httpsCall(this.port, method, path, body, headers, { ca: this.files?.ca ?? (await this.trust!()) });
  }

  /** POST an AdmissionReview to /validate or /mutate. */
  review(route: '/validate' | '/mutate', review: unknown): Promise<HttpResult> {
    return this.call('POST', route, JSON.stringify(review), { 'content-type': 'application/json' });
  }

  /** The value of one sample of /metrics (`name{labels}` exactly as exposed), undefined when absent. */
  async metric(sample: string): Promise<number | undefined> {
    return metricSample((await this.call('GET', '/metrics')).text, sample);
  }

  /** Resolves once /readyz answers 200 (every cluster cache synced); rejects if the process exits. */
  async untilReady(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last: string;
    for (;;) {
      if (this.child.exitCode !== null) throw new Error(`tokenguard exited ${this.child.exitCode}:\n${this.stderr}\n${this.logTail()}`);
      const r = await this.call('GET', '/readyz').catch((err: Error) => ({ status: 0, text: err.message }));
      if (r.status === 200) return;
      last = r.text;
      if (Date.now() > deadline) throw new Error(`tokenguard not ready within ${timeoutMs} ms: ${last}\n${this.logTail()}`);
      await new Promise((res) => setTimeout(res, 100));
    }
  }

  logTail(lines = 30): string {
    return this.logs.slice(-lines).map((l) => JSON.stringify(l)).join('\n');
  }

  /** SIGTERM and wait for the exit code. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode === null) this.child.kill('SIGTERM');
    return this.exited;
  }
}

/** The value of one sample (`name{labels}` exactly as exposed) in a Prometheus text exposition, undefined when absent. */
export function metricSample(text: string, sample: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(sample + ' '));
  return line === undefined ? undefined : Number(line.slice(sample.length + 1));
}
