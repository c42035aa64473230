// Rendering manifests/ with the real `kubectl kustomize`, and reading what it rendered.

import { execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { tempDir } from '../helpers/temp-dir.js';
import { PROJECT_ROOT } from '../helpers/tls.js';

export const KUBECTL = '/usr/bin/kubectl';
export const MANIFESTS = join(PROJECT_ROOT, 'manifests');
/** Every overlay an admin can install; `base` alone lacks the certificate. */
export const OVERLAYS = ['default', 'cert-manager', 'staging', 'caller-auth-audit', 'admission-policies'] as const;
export type OverlayName = (typeof OVERLAYS)[number];

/** Why the kustomize tests cannot run, or undefined when they can. */
export function kubectlMissing(): string | undefined {
  return existsSync(KUBECTL) ? undefined : `${KUBECTL} is not installed: the manifest tests need the real kubectl kustomize`;
}

export type K8sObject = Record<string, any>;

export class Rendered {
  constructor(
    readonly name: string,
    readonly objects: K8sObject[],
  ) {}

  all(kind: string): K8sObject[] {
    return this.objects.filter((o) => o.kind === kind);
  }

  /** The one object of `kind` (and `name`, when given); fails loudly when missing or ambiguous. */
  one(kind: string, name?: string): K8sObject {
    const found = this.all(kind).filter((o) => name === undefined || o.metadata?.name === name);
    if (found.length !== 1) {
      throw new Error(`${this.name}: expected one ${kind}${name ? ` ${name}` : ''}, rendered ${found.length}`);
    }
    return found[0]!;
  }

  /** Webhooks of both configurations, each with the kind of configuration it is in. */
  webhooks(): (K8sObject & { side: 'validate' | 'mutate' })[] {
    const out: (K8sObject & { side: 'validate' | 'mutate' })[] = [];
    for (const cfg of this.all('ValidatingWebhookConfiguration')) for (const w of cfg.webhooks ?? []) out.push({ ...w, side: 'validate' });
    for (const cfg of this.all('MutatingWebhookConfiguration')) for (const w of cfg.webhooks ?? []) out.push({ ...w, side: 'mutate' });
    return out;
  }
}

const run = promisify(execFile);

/** `kubectl kustomize DIR`, parsed; `dir` is relative to manifests/ unless absolute. */
export async function render(dir: string, root = MANIFESTS): Promise<Rendered> {
  const path = dir.startsWith('/') ? dir : join(root, dir);
  const { stdout } = await run(KUBECTL, ['kustomize', path], { maxBuffer: 16 * 1024 * 1024 });
  const docs = parseAllDocuments(stdout);
  const objects: K8sObject[] = [];
  for (const doc of Array.isArray(docs) ? docs : [docs]) {
    if (doc.errors.length > 0) throw new Error(`${dir}: kustomize output does not parse: ${doc.errors[0]!.message}`);
    const obj = doc.toJS();
    if (obj) objects.push(obj);
  }
  return new Rendered(dir, objects);
}

/** A label selector (matchLabels + matchExpressions) against a set of labels. */
export function selectorMatches(selector: K8sObject | undefined, labels: Record<string, string>): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const values: string[] = e.values ?? [];
    const ok =
      e.operator === 'In' ? has && values.includes(labels[e.key]!)
      : e.operator === 'NotIn' ? !has || !values.includes(labels[e.key]!)
      : e.operator === 'Exists' ? has
      : e.operator === 'DoesNotExist' ? !has
      : (() => {
          throw new Error(`unknown selector operator ${e.operator}`);
        })();
    if (!ok) return false;
  }
  return true;
}

/** The labels a namespace carries automatically (kubernetes.io/metadata.name, since 1.21). */
export function namespaceLabels(name: string): Record<string, string> {
  return { 'kubernetes.io/metadata.name': name };
}

/** Render `resources` plus `components` (paths under manifests/) through a kustomization in a temporary folder. */
export async function renderWith(resources: string[], components: string[]): Promise<Rendered> {
  const dir = tempDir('tokenguard-kustomize-');
  const rel = (p: string) => relative(dir, join(MANIFESTS, p));
  writeFileSync(
    join(dir, 'kustomization.yaml'),
    `apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n${resources.map((r) => `  - ${rel(r)}\n`).join('')}components:\n${components.map((c) => `  - ${rel(c)}\n`).join('')}`,
  );
  return render(dir);
}
