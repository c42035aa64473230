// A real Kubernetes control plane on loopback for the end-to-end suite: etcd, kube-apiserver and
// (optionally) kube-controller-manager from the envtest assets, each a child process on free ports,
// with a throwaway PKI. kube-apiserver can be stopped and started again on the same port (an API
// outage), with extra flags if wanted. Every child is killed when the test process exits, whatever
// way it exits.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../helpers/ports.js';
import { atLeast, type Assets } from './assets.js';
import { makePki, type Pki } from './pki.js';

/** The issuer this control plane serves (kube-apiserver's usual in-cluster one). */
export const SERVED_ISSUER = 'https://kubernetes.default.svc';

const children = new Set<ChildProcess>();
let exitHooked = false;
function track(child: ChildProcess): void {
  children.add(child);
  child.once('exit', () => children.delete(child));
  if (exitHooked) return;
  exitHooked = true;
  // A failed or cancelled test must not leave an etcd or kube-apiserver running on the machine.
  process.once('exit', () => {
    for (const c of children) c.kill('SIGKILL');
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      for (const c of children) c.kill('SIGKILL');
      process.exit(130);
    });
  }
}

export interface ControlPlaneOptions {
  /** Start kube-controller-manager too (namespace deletion, garbage collection, default ServiceAccounts). */
  controllerManager?: boolean;
  /** Extra kube-apiserver flags, e.g. `--admission-control-config-file=...`. */
  apiserverFlags?: string[];
}

export class ControlPlane {
  readonly dir: string;
  readonly pki: Pki;
  /** Admin (system:masters) kubeconfig. */
  readonly kubeconfig: string;
  private etcd?: ChildProcess;
  private apiserver?: ChildProcess;
  private kcm?: ChildProcess;
  private apiserverFlags: string[];

  private constructor(
    private readonly assets: Assets,
    readonly port: number,
    private readonly etcdPort: number,
    private readonly etcdPeerPort: number,
    opts: ControlPlaneOptions,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'tokenguard-e2e-'));
    this.pki = makePki(this.dir);
    this.apiserverFlags = opts.apiserverFlags ?? [];
    this.kubeconfig = join(this.dir, 'admin.kubeconfig');
    writeFileSync(this.kubeconfig, this.kubeconfigFor({ clientCert: this.pki.adminCert, clientKey: this.pki.adminKey }));
  }

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  static async start(assets: Assets, opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
    const cp = new ControlPlane(assets, await freePort(), await freePort(), await freePort(), opts);
    try {
      await cp.startEtcd();
      await cp.startApiserver();
      if (opts.controllerManager) {
        if (!assets.kubeControllerManager) throw new Error(`no kube-controller-manager in ${assets.dir}`);
        cp.startControllerManager();
      }
    } catch (err) {
      await cp.stop();
      throw err;
    }
    return cp;
  }

  /** A kubeconfig for this API server with the given credentials. */
  kubeconfigFor(user: { token?: string; clientCert?: string; clientKey?: string }): string {
    const creds = user.token
      ? [`    token: ${user.token}`]
      : [`    client-certificate: ${user.clientCert}`, `    client-key: ${user.clientKey}`];
    return [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: e2e',
      '  cluster:',
      `    server: ${this.url}`,
      `    certificate-authority: ${this.pki.caCert}`,
      'users:',
      '- name: e2e',
      '  user:',
      ...creds,
      'contexts:',
      '- name: e2e',
      '  context: {cluster: e2e, user: e2e}',
      'current-context: e2e',
      '',
    ].join('\n');
  }

  private spawnLogged(name: string, binary: string, args: string[]): ChildProcess {
    const log = openSync(join(this.dir, `${name}.log`), 'a');
    const child = spawn(binary, args, { stdio: ['ignore', log, log] });
    track(child);
    return child;
  }

  /** The last lines a component logged, for a failure message. */
  logTail(name: 'etcd' | 'kube-apiserver' | 'kube-controller-manager', lines = 20): string {
    try {
      return readFileSync(join(this.dir, `${name}.log`), 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  private async startEtcd(): Promise<void> {
    const client = `http://127.0.0.1:${this.etcdPort}`;
    this.etcd = this.spawnLogged('etcd', this.assets.etcd, [
      `--data-dir=${join(this.dir, 'etcd')}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=http://127.0.0.1:${this.etcdPeerPort}`,
    ]);
    await this.until(async () => (await this.get(`${client}/health`, false)).status === 200, 'etcd', 'etcd');
  }

  /** Start kube-apiserver (again) on its port; `extraFlags` replace the ones it was started with. */
  async startApiserver(extraFlags?: string[]): Promise<void> {
    if (extraFlags) this.apiserverFlags = extraFlags;
    const p = this.pki;
    this.apiserver = this.spawnLogged('kube-apiserver', this.assets.kubeApiserver, [
      `--etcd-servers=http://127.0.0.1:${this.etcdPort}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${this.port}`,
      '--advertise-address=127.0.0.1',
      `--tls-cert-file=${p.servingCert}`,
      `--tls-private-key-file=${p.servingKey}`,
      `--client-ca-file=${p.caCert}`,
      '--authorization-mode=Node,RBAC',
      `--service-account-issuer=${SERVED_ISSUER}`,
      `--service-account-key-file=${p.saPub}`,
      `--service-account-signing-key-file=${p.saKey}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      // A loopback address cannot be written into the kubernetes Service's Endpoints.
      '--endpoint-reconciler-type=none',
      ...this.apiserverFlags,
    ]);
    await this.until(async () => (await this.get(`${this.url}/readyz`)).status === 200, 'kube-apiserver /readyz', 'kube-apiserver', 60_000);
  }

  /**
   * Stop kube-apiserver and wait for it to exit; etcd keeps the state. SIGTERM is a graceful stop
   * (it drains, up to a minute with watches open); SIGKILL a crash, for a restart that is only a means.
   */
  async stopApiserver(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    await stopChild(this.apiserver, 10_000, signal);
    this.apiserver = undefined;
  }

  private startControllerManager(): void {
    const p = this.pki;
    this.kcm = this.spawnLogged('kube-controller-manager', this.assets.kubeControllerManager!, [
      `--kubeconfig=${this.kubeconfig}`,
      `--service-account-private-key-file=${p.saKey}`,
      `--root-ca-file=${p.caCert}`,
      '--leader-elect=false',
      '--bind-address=127.0.0.1',
      '--secure-port=0',
      controllersFlag(this.assets),
      // As kubeadm runs it: each controller calls the API (and the webhooks) as its own ServiceAccount.
      '--use-service-account-credentials=true',
    ]);
  }

  /** Tear everything down: killed, not drained (the state is thrown away with the folder). */
  async stop(): Promise<void> {
    await Promise.all([stopChild(this.kcm, 0, 'SIGKILL'), stopChild(this.apiserver, 0, 'SIGKILL')]);
    await stopChild(this.etcd, 0, 'SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** GET with the admin client certificate (https) or plainly (http); never rejects. */
  private get(url: string, tls = true): Promise<{ status: number; body: string }> {
    if (!tls) {
      return fetch(url).then(
        async (r) => ({ status: r.status, body: await r.text() }),
        () => ({ status: 0, body: '' }),
      );
    }
    return new Promise((resolve) => {
      const req = request(
        url,
        {
          ca: readFileSync(this.pki.caCert),
          cert: readFileSync(this.pki.adminCert),
          key: readFileSync(this.pki.adminKey),
          timeout: 2000,
        },
        (res) => {
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', () => resolve({ status: 0, body: '' }));
      req.on('timeout', () => req.destroy());
      req.end();
    });
  }

  private async until(check: () => Promise<boolean>, what: string, log: 'etcd' | 'kube-apiserver', timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      const child = log === 'etcd' ? this.etcd : this.apiserver;
      if (child?.exitCode !== null && child?.exitCode !== undefined) {
        throw new Error(`${log} exited with code ${child.exitCode}:\n${this.logTail(log)}`);
      }
      if (Date.now() > deadline) throw new Error(`${what} not ready within ${timeoutMs} ms:\n${this.logTail(log)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * No cloud, no node IPAM, no node lifecycle: there are no kubelets. From v1.36 (the OpenShift fork
 * in the shared bundle) also no service-ca-certificate-publisher-controller, which would create an
 * extra ConfigMap in every namespace; v1.26 refuses that name as unknown.
 */
function controllersFlag(assets: Assets): string {
  const off = ['nodeipam', 'nodelifecycle', 'cloud-node-lifecycle', 'route', 'service'];
  if (atLeast(assets.serverVersion, 1, 36)) off.push('service-ca-certificate-publisher-controller');
  return `--controllers=*,${off.map((c) => `-${c}`).join(',')}`;
}

async function stopChild(child: ChildProcess | undefined, graceMs = 10_000, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}
