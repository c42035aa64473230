// tokenguard's container image as a cluster runs it: `podman run` (or docker) with the Deployment's
// own settings read from manifests/base/deployment.yaml (uid, read-only root, capabilities dropped,
// no privilege escalation, args, NODE_OPTIONS), the config file and the TLS folder mounted read-only.
//
// The image is named by TOKENGUARD_IMAGE (hack/image.sh builds one and says so); without it, or
// without a container engine, or when the image does not exist, `imageUnderTest()` says why, for a
// test to skip with that reason.

import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { httpsCall, type HttpResult } from './server.js';
import { PROJECT_ROOT, type CertSet } from './tls.js';

export interface ImageUnderTest {
  engine: string;
  image: string;
}

function onPath(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

/** The image and engine to test, or why there is none. */
export function imageUnderTest(env: NodeJS.ProcessEnv = process.env): ImageUnderTest | { skip: string } {
  const image = env.TOKENGUARD_IMAGE;
  if (!image) return { skip: 'container image tests skipped: TOKENGUARD_IMAGE is unset (build one with hack/image.sh IMAGE, then TOKENGUARD_IMAGE=IMAGE npm test; CI: hack/ci-image.sh)' };
  const engine = env.CONTAINER_ENGINE ?? (onPath('podman') ? 'podman' : onPath('docker') ? 'docker' : undefined);
  if (!engine) return { skip: `container image tests skipped: TOKENGUARD_IMAGE=${image} but neither podman nor docker is installed (hack/ci-image.sh installs podman)` };
  if (spawnSync(engine, ['image', 'inspect', image], { stdio: 'ignore' }).status !== 0) {
    return { skip: `container image tests skipped: ${engine} has no image ${image} (build it with hack/image.sh ${image})` };
  }
  return { engine, image };
}

/** Run the engine; resolves with exit code and output, never rejects on a non-zero exit. */
export function engineRun(engine: string, args: string[], timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(engine, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Remove a container at once, running or not (podman would first wait 10 s for SIGTERM to work). */
export function removeArgs(engine: string, name: string): string[] {
  return engine.endsWith('podman') ? ['rm', '-f', '--time=0', name] : ['rm', '-f', name];
}

/**
 * The tokenguard container of manifests/base/deployment.yaml, as `run` flags and its args, with
 * the certificate mounted as overlays/cert-manager mounts it (serving-certificate.yaml: the volume
 * and the TOKENGUARD_TLS_* variables that turn self-managed TLS off): a container run without a
 * cluster has no Secret to keep its own certificate in.
 */
export function deploymentContainer(): { flags: string[]; args: string[]; containerPort: number; configPath: string; tlsPath: string } {
  const docs = parseAllDocuments(readFileSync(join(PROJECT_ROOT, 'manifests', 'base', 'deployment.yaml'), 'utf8')).map((d) => d.toJS());
  const pod = docs.find((d) => d.kind === 'Deployment').spec.template.spec;
  const base = pod.containers.find((x: any) => x.name === 'tokenguard');
  const certManager = parseAllDocuments(readFileSync(join(PROJECT_ROOT, 'manifests', 'overlays', 'cert-manager', 'serving-certificate.yaml'), 'utf8'))
    .map((d) => d.toJS())
    .find((d) => d.kind === 'Deployment').spec.template.spec.containers.find((x: any) => x.name === 'tokenguard');
  const c = { ...base, env: [...(base.env ?? []), ...(certManager.env ?? [])], volumeMounts: [...(base.volumeMounts ?? []), ...(certManager.volumeMounts ?? [])] };
  const psc = pod.securityContext ?? {};
  const sc = c.securityContext ?? {};
  const flags = [`--user=${sc.runAsUser ?? psc.runAsUser}:${sc.runAsGroup ?? psc.runAsGroup}`];
  if (sc.readOnlyRootFilesystem) flags.push('--read-only');
  for (const cap of sc.capabilities?.drop ?? []) flags.push(`--cap-drop=${cap}`);
  if (sc.allowPrivilegeEscalation === false) flags.push('--security-opt=no-new-privileges');
  for (const e of c.env ?? []) {
    if (typeof e.value === 'string') flags.push(`--env=${e.name}=${e.value}`);
    // Downward API values, as a pod in namespace tokenguard would get them.
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.namespace') flags.push(`--env=${e.name}=tokenguard`);
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name') flags.push(`--env=${e.name}=tokenguard-image-test`);
  }
  const mountOf = (name: string) => c.volumeMounts.find((m: any) => m.name === name).mountPath as string;
  return { flags, args: c.args, containerPort: c.ports[0].containerPort, configPath: mountOf('config'), tlsPath: mountOf('tls') };
}

/**
 * A folder holding what the pod mounts: `config.yaml` (manifests/base/config.yaml with `overrides`
 * merged one level deep) and `tls/` (the serving pair), readable by the container's uid the way
 * the Secret's `defaultMode: 0440` and `fsGroup: 65532` make them.
 */
export function podFiles(dir: string, certs: CertSet, overrides: Record<string, Record<string, unknown>>): { configFile: string; tlsDir: string } {
  const base = parseAllDocuments(readFileSync(join(PROJECT_ROOT, 'manifests', 'base', 'config.yaml'), 'utf8'))[0]!.toJS() as Record<string, any>;
  for (const [k, v] of Object.entries(overrides)) base[k] = typeof base[k] === 'object' ? { ...base[k], ...v } : v;
  mkdirSync(dir, { recursive: true });
  const configFile = join(dir, 'config.yaml');
  writeFileSync(configFile, stringify(base), { mode: 0o644 });
  const tlsDir = join(dir, 'tls');
  mkdirSync(tlsDir, { recursive: true });
  const gid = 65532;
  for (const [from, to] of [
    [certs.certFile, 'tls.crt'],
    [certs.keyFile, 'tls.key'],
  ] as const) {
    copyFileSync(from, join(tlsDir, to));
    if (process.getuid?.() === 0) {
      chownSync(join(tlsDir, to), 0, gid);
      chmodSync(join(tlsDir, to), 0o440);
    } else chmodSync(join(tlsDir, to), 0o444); // rootless: the container's uid maps elsewhere
  }
  chmodSync(tlsDir, 0o755);
  return { configFile, tlsDir };
}

/** Containers not yet removed: removed when the test process exits, however it exits. */
const live = new Map<string, string>();
function track(engine: string, name: string): void {
  if (live.size === 0 && !hooked) {
    hooked = true;
    process.once('exit', () => {
      for (const [n, e] of live) spawnSync(e, removeArgs(e, n), { stdio: 'ignore' });
    });
  }
  live.set(name, engine);
}
let hooked = false;

export class Container {
  private constructor(
    readonly engine: string,
    readonly name: string,
    /** Host port the webhook answers on (127.0.0.1). */
    readonly port: number,
    /** The CA of its serving certificate. */
    readonly ca: Buffer,
  ) {}

  /**
   * `run -d` of the image with the Deployment's flags. `network: 'bridge'` publishes the container
   * port on 127.0.0.1:`port` (rootful podman); `'host'` shares the host's network (the config must
   * then listen on `port` itself).
   */
  static async start(opts: {
    engine: string;
    image: string;
    name: string;
    port: number;
    ca: Buffer;
    network: 'bridge' | 'host';
    configFile: string;
    tlsDir: string;
    extraMounts?: [string, string][];
    extraFlags?: string[];
  }): Promise<Container> {
    const d = deploymentContainer();
    const mounts = [[opts.configFile, d.configPath], [opts.tlsDir, d.tlsPath], ...(opts.extraMounts ?? [])].map(([h, c]) => `--volume=${h}:${c}:ro`);
    const net = opts.network === 'host' ? ['--network=host'] : [`--publish=127.0.0.1:${opts.port}:${d.containerPort}`];
    await engineRun(opts.engine, removeArgs(opts.engine, opts.name));
    const r = await engineRun(opts.engine, ['run', '-d', `--name=${opts.name}`, ...net, ...d.flags, ...mounts, ...(opts.extraFlags ?? []), opts.image, ...d.args]);
    if (r.code !== 0) throw new Error(`${opts.engine} run failed (${r.code}): ${r.stderr}`);
    const c = new Container(opts.engine, opts.name, opts.port, opts.ca);
    track(opts.engine, opts.name);
    return c;
  }

  call(method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<HttpResult> {
    return httpsCall(this.port, method, path, body, headers, { ca: this.ca });
  }

  /** Resolves once /readyz answers 200; rejects with the container's log when it exits first. */
  async untilReady(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.call('GET', '/readyz').catch(() => undefined);
      if (r?.status === 200) return;
      const state = await engineRun(this.engine, ['inspect', '--format', '{{.State.Status}}', this.name]);
      if (state.stdout.trim() === 'exited') throw new Error(`the container exited before it was ready:\n${await this.logs()}`);
      if (Date.now() > deadline) throw new Error(`not ready within ${timeoutMs} ms:\n${await this.logs()}`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  async logs(): Promise<string> {
    const r = await engineRun(this.engine, ['logs', this.name]);
    return r.stdout + r.stderr;
  }

  /** Parsed JSON log lines. */
  async logLines(): Promise<Record<string, any>[]> {
    return (await this.logs())
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l));
  }

  async signal(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    const r = await engineRun(this.engine, ['kill', `--signal=${signal}`, this.name]);
    if (r.code !== 0) throw new Error(`${this.engine} kill: ${r.stderr}`);
  }

  /** Wait for the container to exit: its exit code. */
  async exitCode(timeoutMs = 60_000): Promise<number> {
    const r = await engineRun(this.engine, ['wait', this.name], timeoutMs);
    if (r.code !== 0) throw new Error(`${this.engine} wait: ${r.stderr}`);
    return Number(r.stdout.trim());
  }

  async remove(): Promise<void> {
    await engineRun(this.engine, removeArgs(this.engine, this.name));
    live.delete(this.name);
  }
}

/** `engine inspect` of an image: labels, user, entrypoint. */
export function inspectImage(engine: string, image: string): { Config: { Labels: Record<string, string>; User: string; Entrypoint: string[]; Cmd: string[] } } {
  return JSON.parse(execFileSync(engine, ['image', 'inspect', image], { encoding: 'utf8' }))[0];
}
