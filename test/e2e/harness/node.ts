// A real one-node cluster for the node suite: hack/node-cluster.sh starts etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, containerd, the kubelet and kube-proxy inside a network
// namespace of their own, and this drives it. Found the envtest way: KUBEBUILDER_ASSETS names the
// v1.36 control plane, TOKENGUARD_NODE_ASSETS the kubelet, kube-proxy, kube-scheduler and pause,
// TOKENGUARD_NODE_DEPS the unpacked containerd, runc and CNI plugins (and busybox, the workloads'
// image), TOKENGUARD_IMAGE the tokenguard image to load (a podman image name). Unset: the suite
// skips and says which. Nothing is left behind: `stop()` tears the cluster down, and a reaper
// started with it does the same when the test process dies any other way (a crash, SIGKILL).

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../helpers/tls.js';
import { executable, findAssets, type Assets } from './assets.js';
import { kubectlFor, ok, type Kubectl } from './kubectl.js';

const SCRIPT = join(PROJECT_ROOT, 'hack', 'node-cluster.sh');
const MKIMAGE = join(PROJECT_ROOT, 'hack', 'mkimage.py');

/**
 * The kubelet's syncFrequency in the suite's cluster (default 1m): a token refresh waits for the
 * pod's next sync, so a shorter one brings the token observer's cases, which wait for a first
 * refresh, to an end sooner (the observer is told, as observer.kubeletSyncFrequencySeconds).
 */
export const NODE_SYNC_SECONDS = 10;

/** The workloads' image: busybox alone, built from the node's busybox-static, never pulled. */
export const BUSYBOX = 'local/busybox:1';

export interface NodeAssets {
  controlPlane: Assets;
  nodeBin: string;
  deps: string;
  /** Another kubelet (TOKENGUARD_NODE_KUBELET), e.g. v1.29.14 with kubernetes#130442. */
  kubelet?: string;
  /** The tokenguard image to load into the node (a podman image name). */
  image: string;
}

export const HOW_TO_ENABLE_NODE =
  'set KUBEBUILDER_ASSETS (v1.36 control plane), TOKENGUARD_NODE_ASSETS (kubelet, kube-proxy, kube-scheduler, pause), ' +
  'TOKENGUARD_NODE_DEPS (containerd, runc, CNI plugins, busybox) and TOKENGUARD_IMAGE (a podman image), as root: ' +
  'see docs/development.md, "The node suite"';

export function findNodeAssets(env: NodeJS.ProcessEnv = process.env): { assets: NodeAssets } | { skip: string } {
  const missing = ['KUBEBUILDER_ASSETS', 'TOKENGUARD_NODE_ASSETS', 'TOKENGUARD_NODE_DEPS', 'TOKENGUARD_IMAGE'].filter((v) => !env[v]);
  if (missing.length) return { skip: `node suite skipped: ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} unset; ${HOW_TO_ENABLE_NODE}` };
  if (process.getuid?.() !== 0) return { skip: `node suite skipped: it needs root (network namespaces, containerd, the kubelet)` };
  const cp = findAssets(env);
  if ('skip' in cp) return { skip: cp.skip };
  const nodeBin = env.TOKENGUARD_NODE_ASSETS!;
  for (const b of ['kubelet', 'kube-proxy', 'kube-scheduler', 'pause']) {
    if (!executable(join(nodeBin, b))) throw new Error(`TOKENGUARD_NODE_ASSETS=${nodeBin} has no executable ${b}`);
  }
  const deps = env.TOKENGUARD_NODE_DEPS!;
  for (const b of ['usr/bin/containerd', 'usr/bin/ctr', 'usr/sbin/runc', 'usr/lib/cni/bridge', 'bin/busybox']) {
    if (!executable(join(deps, b))) throw new Error(`TOKENGUARD_NODE_DEPS=${deps} has no executable ${b}`);
  }
  return { assets: { controlPlane: cp.assets, nodeBin, deps, kubelet: env.TOKENGUARD_NODE_KUBELET || undefined, image: env.TOKENGUARD_IMAGE! } };
}

export class NodeCluster {
  /** Admin kubectl, run inside the cluster's network namespace. */
  readonly kubectl: Kubectl;
  readonly kubeconfig: string;
  readonly netns: string;
  /** The node's name (the kubelet's --hostname-override). */
  readonly node = 'node-1';

  private constructor(
    readonly assets: NodeAssets,
    readonly dir: string,
    private readonly env: NodeJS.ProcessEnv,
  ) {
    this.netns = env.TOKENGUARD_NODE_NETNS!;
    this.kubeconfig = join(dir, 'admin.kubeconfig');
    this.kubectl = this.kubectlAs(this.kubeconfig);
  }

  /** kubectl with another kubeconfig (another user), inside the namespace. */
  kubectlAs(kubeconfig: string, timeoutMs = 60_000): Kubectl {
    return kubectlFor(this.assets.controlPlane.kubectl, kubeconfig, timeoutMs, ['nsenter', `--net=/var/run/netns/${this.netns}`]);
  }

  /** The argv prefix that runs a command inside the cluster's network namespace. */
  get inside(): string[] {
    return ['nsenter', `--net=/var/run/netns/${this.netns}`];
  }

  static async start(assets: NodeAssets): Promise<NodeCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'tokenguard-node-'));
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      KUBEBUILDER_ASSETS: assets.controlPlane.dir,
      TOKENGUARD_NODE_ASSETS: assets.nodeBin,
      TOKENGUARD_NODE_DEPS: assets.deps,
      TOKENGUARD_NODE_NETNS: process.env.TOKENGUARD_NODE_NETNS ?? 'tokenguard-node',
      TOKENGUARD_NODE_SYNC_FREQUENCY: `${NODE_SYNC_SECONDS}s`,
      ...(assets.kubelet ? { TOKENGUARD_NODE_KUBELET: assets.kubelet } : {}),
    };
    // The reaper outlives this process: if it dies without stop(), the cluster still goes.
    const reaper = spawn('bash', [SCRIPT, 'reap', dir, String(process.pid)], { env, detached: true, stdio: 'ignore' });
    reaper.unref();
    const cluster = new NodeCluster(assets, dir, env);
    try {
      await cluster.script(['up', dir], 180_000);
      await cluster.loadImages();
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  private script(args: string[], timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn('bash', [SCRIPT, ...args], { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (c) => (out += c));
      child.stderr.on('data', (c) => (err += c));
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.on('close', (code) => {
        clearTimeout(timer);
        if (code === 0) resolve(out);
        else reject(new Error(`hack/node-cluster.sh ${args.join(' ')} exited ${code}:\n${err.slice(-3000)}`));
      });
    });
  }

  /** tokenguard's image (saved from podman) and busybox (built from the node's busybox-static). */
  private async loadImages(): Promise<void> {
    const tokenguard = join(this.dir, 'tokenguard-image.tar');
    execFileSync('podman', ['save', '--format', 'docker-archive', '-o', tokenguard, this.assets.image], { stdio: ['ignore', 'ignore', 'pipe'] });
    const busybox = join(this.dir, 'busybox-image.tar');
    execFileSync('python3', [MKIMAGE, busybox, BUSYBOX, '["/bin/busybox"]', `${join(this.assets.deps, 'bin/busybox')}:/bin/busybox`], { stdio: 'ignore' });
    await this.script(['load', this.dir, tokenguard, busybox], 120_000);
    rmSync(tokenguard);
  }

  /** The last lines of a component's log (kubelet, kube-apiserver, ...), for a failure message. */
  logTail(component: string, lines = 30): string {
    try {
      return execFileSync('tail', ['-n', String(lines), join(this.dir, 'run', `${component}.log`)], { encoding: 'utf8' });
    } catch {
      return '(no log)';
    }
  }

  /** The names of tokenguard's pods (the Deployment's replicas, terminating ones too). */
  async tokenguardPods(): Promise<string[]> {
    const r = ok(await this.kubectl(['-n', 'tokenguard', 'get', 'pods', '-l', 'app.kubernetes.io/name=tokenguard', '-o', 'jsonpath={.items[*].metadata.name}']), 'tokenguard pods');
    return r.stdout.split(' ').filter(Boolean);
  }

  /** A tokenguard pod's /metrics, read through the API server's pod proxy as an admin would. */
  async tokenguardMetrics(pod: string): Promise<string> {
    return ok(await this.kubectl(['get', '--raw', `/api/v1/namespaces/tokenguard/pods/https:${pod}:8443/proxy/metrics`]), `metrics of ${pod}`).stdout;
  }

  /** Apply YAML or JSON objects as admin; throws with kubectl's words. */
  async apply(objects: string): Promise<void> {
    ok(await this.kubectl(['apply', '-f', '-'], objects), 'kubectl apply');
  }

  /** Tear everything down and say what, if anything, is still there. */
  async stop(): Promise<string> {
    await this.script(['down', this.dir], 120_000).catch(() => '');
    writeFileSync(join(this.dir, '.down'), '');
    const left = await this.script(['leftovers', this.dir], 60_000).catch((err: Error) => err.message);
    if (existsSync(this.dir)) rmSync(this.dir, { recursive: true, force: true });
    return left;
  }
}
