// `tokenguard dev register` / `dev unregister`: point the cluster of your kubeconfig at a tokenguard
// running on this machine (`npm start`), with the webhooks of manifests/base/webhooks.yaml (same
// names, rules, namespace selectors and failure policies) at a URL and with the CA of certs/.
// Only configurations made this way (labelled tokenguard.io/dev-registration) are replaced or
// removed without --force: an installed tokenguard is never touched by accident.

import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import { isIP } from 'node:net';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { findKubeConfig, type KubeConfigSource } from '../cluster/kubeconfig.js';
import { WebhookRegistrar } from '../cluster/webhook-registration.js';
import { DEV_REGISTRATION_LABEL, DEV_URL_ANNOTATION, webhooksAtUrl } from '../k8s/webhook-manifests.js';
import type { KubeObject } from '../k8s/object.js';
import { CommandError, parseFlags, UsageError, type Command } from './command.js';
import { errorCode, errorMessage } from '../observability/errors.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const WEBHOOKS_FILE = resolve(ROOT, 'manifests/base/webhooks.yaml');
const DEFAULT_CERTS = resolve(ROOT, 'certs');
export const DEFAULT_URL = 'https://127.0.0.1:8443';

const REGISTER_HELP = `Usage: tokenguard dev register [flags]

Register the webhooks of a tokenguard running on this machine (npm start) with the cluster of your
kubeconfig: the ValidatingWebhookConfiguration and MutatingWebhookConfiguration of
manifests/base/webhooks.yaml (same names, rules, namespace selectors and failure policies), each
webhook at --url plus its path, with the CA of the certificates (caBundle). Run it again after the
certificates change; undo it with tokenguard dev unregister.

The API server must reach --url, and the certificate must name its host:
  a control plane on this machine (kubeadm, the e2e harness):  https://127.0.0.1:8443 (the default)
  kind, minikube (the API server runs in a container or VM):    https://<this host's address as the
      node sees it>:8443, with npm start -- --address 0.0.0.0 and certificates made for that address:
      TOKENGUARD_SANS=IP:<address> certs/generate.sh --force (see docs/development.md)

Flags:
  --url URL            where the API server reaches tokenguard (default ${DEFAULT_URL})
  --certs DIR          the certificates tokenguard serves: DIR/ca.crt becomes the caBundle, and
                       DIR/tls.crt must name the URL's host (default: certs/ of this checkout)
  --kubeconfig FILE    the cluster (default: KUBECONFIG, then ~/.kube/config)
  --force              replace configurations named tokenguard that dev register did not make
                       (an installed tokenguard's)

Example (from a checkout, with npm start running in another terminal):
  npx tokenguard dev register
`;

const UNREGISTER_HELP = `Usage: tokenguard dev unregister [flags]

Remove the webhook configurations tokenguard dev register made (named tokenguard, labelled
${DEV_REGISTRATION_LABEL}). Configurations named tokenguard that it did not make (an installed
tokenguard's) are left alone unless --force.

Flags:
  --kubeconfig FILE    the cluster (default: KUBECONFIG, then ~/.kube/config)
  --force              remove them even when dev register did not make them

Example:
  npx tokenguard dev unregister
`;

export const REGISTER_FLAGS = {
  url: { type: 'string' },
  certs: { type: 'string' },
  kubeconfig: { type: 'string' },
  force: { type: 'boolean' },
} as const;

export const UNREGISTER_FLAGS = {
  kubeconfig: { type: 'string' },
  force: { type: 'boolean' },
} as const;

export interface DevIO {
  stdout: (text: string) => void;
  env: NodeJS.ProcessEnv;
}

const processIO: DevIO = { stdout: (t) => process.stdout.write(t), env: process.env };

/** The webhook configurations of the manifests, as objects. */
export function manifestWebhooks(file = WEBHOOKS_FILE): KubeObject[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new CommandError(`cannot read ${file}`, 'dev register runs from a checkout of tokenguard (npx tokenguard dev register)');
  }
  return parseAllDocuments(text).map((d) => d.toJS() as KubeObject);
}

function cluster(kubeconfig: string | undefined, env: NodeJS.ProcessEnv): KubeConfigSource {
  // In-cluster credentials are never meant here: this is a developer's machine.
  const found = findKubeConfig({ kubeconfig, env, inClusterRoot: '/nonexistent' });
  if (!found) throw new CommandError('no cluster found', 'pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config (kind and minikube do)');
  return found;
}

/** What a configuration in the cluster is: ours (dev register made it) or someone else's. */
const isDevRegistration = (o: KubeObject | undefined) => o?.metadata?.labels?.[DEV_REGISTRATION_LABEL] === 'true';

function describeInstalled(o: KubeObject): string {
  const service = o.webhooks?.[0]?.clientConfig?.service;
  return service ? `it calls Service ${service.namespace}/${service.name}: an installed tokenguard` : 'dev register did not make it';
}

/** The URL's host must be one the certificate names, or the API server refuses the TLS handshake. */
export function checkCertificateCovers(certFile: string, url: URL): void {
  const cert = new X509Certificate(readFileSync(certFile));
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const covered = isIP(host) ? cert.checkIP(host) !== undefined : cert.checkHost(host) !== undefined;
  if (covered) return;
  const sans = (cert.subjectAltName ?? '').replace(/IP Address:/g, 'IP:');
  const san = isIP(host) ? `IP:${host}` : `DNS:${host}`;
  throw new CommandError(
    `${relativePath(certFile)} is not valid for ${host} (it names ${sans || 'no host'})`,
    `make certificates for it: TOKENGUARD_SANS=${san} certs/generate.sh --force, then restart npm start`,
  );
}

const relativePath = (p: string) => {
  const r = relative(process.cwd(), p);
  return r.startsWith('..') ? p : r;
};

/** Whether tokenguard answers GET /readyz at `url` with this CA (any HTTP answer counts). */
function answers(url: URL, ca: Buffer): Promise<boolean> {
  return new Promise((done) => {
    const req = request(new URL('/readyz', url), { ca, timeout: 2000 }, (res) => {
      res.resume();
      done(true);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => done(false));
    req.end();
  });
}

function parseUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`--url must be a URL such as ${DEFAULT_URL}, got ${JSON.stringify(text)}`);
  }
  if (url.protocol !== 'https:') throw new UsageError(`--url must be https (the API server calls webhooks over TLS only), got ${JSON.stringify(text)}`);
  if (url.pathname !== '/' || url.search) throw new UsageError(`--url is the server's address without a path (each webhook adds its own), got ${JSON.stringify(text)}`);
  return url;
}

export async function runRegister(args: string[], io: DevIO = processIO): Promise<number> {
  const { values } = parseFlags(args, REGISTER_FLAGS);
  const url = parseUrl(values.url ?? DEFAULT_URL);
  const certs = resolve(values.certs ?? DEFAULT_CERTS);
  const caFile = resolve(certs, 'ca.crt');
  const certFile = resolve(certs, 'tls.crt');
  if (!existsSync(caFile) || !existsSync(certFile)) {
    throw new CommandError(`no certificates in ${relativePath(certs)} (ca.crt, tls.crt)`, 'run npm start once (it makes them), or certs/generate.sh');
  }
  checkCertificateCovers(certFile, url);
  const ca = readFileSync(caFile);
  const source = cluster(values.kubeconfig, io.env);
  const base = url.origin;
  const wanted = webhooksAtUrl(manifestWebhooks(), base, ca.toString('base64'), {
    labels: { [DEV_REGISTRATION_LABEL]: 'true' },
    annotations: { [DEV_URL_ANNOTATION]: base },
  });
  const registrar = new WebhookRegistrar(source.kc);
  const existing = await Promise.all(wanted.map((w) => registrar.get(w).catch((err: unknown) => Promise.reject(unreachable(err, source)))));
  existing.forEach((e, i) => {
    if (e && !isDevRegistration(e) && !values.force) {
      const w = wanted[i]!;
      throw new CommandError(
        `${w.kind} ${w.metadata.name} already exists and ${describeInstalled(e)}`,
        'uninstall it first (docs/installation.md#uninstall), or pass --force to replace it',
      );
    }
  });
  const lines: string[] = [];
  for (const [i, w] of wanted.entries()) {
    const outcome = await registrar.put(w, existing[i]);
    const hooks = (w.webhooks as KubeObject[]).map((h) => h.name as string);
    const urls = [...new Set((w.webhooks as KubeObject[]).map((h) => h.clientConfig.url as string))];
    lines.push(`${w.kind} ${w.metadata.name} ${outcome}: ${hooks.join(', ')} -> ${urls.join(', ')}`);
  }
  lines.push(`The API server ${source.server} (${source.source}) now sends tokenguard's admission reviews to ${base}.`);
  if (!(await answers(url, ca))) {
    lines.push(`Note: nothing answers at ${base} yet: start it with npm start (until then the webhooks fail open, failurePolicy Ignore).`);
  }
  lines.push('Undo with: npx tokenguard dev unregister');
  io.stdout(lines.join('\n') + '\n');
  return 0;
}

/** A failure to reach the cluster at all, named with its server. */
function unreachable(err: unknown, source: KubeConfigSource): Error {
  const cause = (err as { cause?: unknown } | undefined)?.cause;
  const code = errorCode(cause) ?? errorCode((cause as { cause?: unknown } | undefined)?.cause);
  if (code === 'ECONNREFUSED') return new CommandError(`cannot reach the API server ${source.server} (${source.source}): connection refused`, 'is the cluster running?');
  return new CommandError(`${errorMessage(err)} (API server ${source.server}, ${source.source})`);
}

export async function runUnregister(args: string[], io: DevIO = processIO): Promise<number> {
  const { values } = parseFlags(args, UNREGISTER_FLAGS);
  const source = cluster(values.kubeconfig, io.env);
  const registrar = new WebhookRegistrar(source.kc);
  const lines: string[] = [];
  for (const w of manifestWebhooks()) {
    const e = await registrar.get(w).catch((err: unknown) => Promise.reject(unreachable(err, source)));
    if (!e) {
      lines.push(`${w.kind} ${w.metadata.name}: not registered`);
      continue;
    }
    if (!isDevRegistration(e) && !values.force) {
      lines.push(`${w.kind} ${w.metadata.name}: left alone: ${describeInstalled(e)} (--force removes it)`);
      continue;
    }
    await registrar.remove(w);
    lines.push(`${w.kind} ${w.metadata.name} deleted`);
  }
  io.stdout(lines.join('\n') + '\n');
  return 0;
}

export const devRegisterCommand: Command = { name: 'dev register', help: REGISTER_HELP, flags: REGISTER_FLAGS, run: (args) => runRegister(args) };
export const devUnregisterCommand: Command = { name: 'dev unregister', help: UNREGISTER_HELP, flags: UNREGISTER_FLAGS, run: (args) => runUnregister(args) };
