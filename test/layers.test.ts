// The architecture, checked: each folder of src/ imports only the folders below it, so the layers
// read top-down and no two folders depend on each other. A violation names both files.
//
//   cli/            composes everything
//   server/         HTTPS, TLS reload, drain, the request pipeline, the HTTP side of caller auth
//   vap/            the pure policies as ValidatingAdmissionPolicies (CEL) for kube-apiserver
//   policies/       one file per check: the admission contract and Kubernetes knowledge only
//   admission/      the contract policies implement, the engine, reviews, responses, warnings, patches
//   cluster/        the API client, caches, issuer discovery, token verification
//   config/         the configuration: its schema, defaults and loading
//   k8s/            pure Kubernetes knowledge (objects, pod specs, kube-apiserver flags, JSON pointers)
//   observability/  logging, metrics, readiness

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import ts from 'typescript';
import { PROJECT_ROOT } from './helpers/tls.js';

/** Each folder of src/ and the folders it may import. */
export const LAYERS: Record<string, readonly string[]> = {
  cli: ['server', 'vap', 'policies', 'admission', 'cluster', 'config', 'k8s', 'observability'],
  vap: ['policies', 'admission', 'config', 'k8s'],
  server: ['admission', 'cluster', 'config', 'k8s', 'observability'],
  policies: ['admission', 'k8s'],
  admission: ['cluster', 'config', 'k8s', 'observability'],
  cluster: ['config', 'k8s', 'observability'],
  config: ['k8s', 'observability'],
  k8s: [],
  observability: [],
};

export interface SourceFile {
  /** Relative to the project root, e.g. `src/admission/engine.ts`. */
  path: string;
  text: string;
}

/** The project's relative imports of a file (static, type-only and dynamic), as paths of .ts files. */
function importsOf(file: SourceFile): string[] {
  const { importedFiles } = ts.preProcessFile(file.text, true, true);
  return importedFiles
    .map((i) => i.fileName)
    .filter((spec) => spec.startsWith('.'))
    .map((spec) => normalize(join(dirname(file.path), spec.replace(/\.js$/, '.ts'))));
}

const folderOf = (path: string) => path.split('/')[1] ?? '';

/** Every import that breaks the layering, as one line naming both files; and folders not in LAYERS. */
export function layerViolations(files: readonly SourceFile[], layers = LAYERS): string[] {
  const problems: string[] = [];
  for (const file of files) {
    const from = folderOf(file.path);
    if (!(from in layers)) {
      problems.push(`${file.path}: folder src/${from}/ has no place in the layers (add it to LAYERS in test/layers.test.ts)`);
      continue;
    }
    for (const target of importsOf(file)) {
      if (!target.startsWith('src/')) {
        problems.push(`${file.path} imports ${target}: src/ must not import from outside src/`);
        continue;
      }
      const to = folderOf(target);
      if (to === from) continue;
      if (!layers[from]!.includes(to)) {
        problems.push(`${file.path} imports ${target}: src/${to}/ is not below src/${from}/ (src/${from}/ may import ${layers[from]!.map((l) => `${l}/`).join(', ') || 'nothing of the project'})`);
      }
    }
  }
  return problems;
}

/** A folder cycle in the layer table itself, or undefined. */
export function layerCycle(layers = LAYERS): string[] | undefined {
  const state = new Map<string, 'visiting' | 'done'>();
  const walk = (folder: string, path: string[]): string[] | undefined => {
    if (state.get(folder) === 'done') return undefined;
    if (state.get(folder) === 'visiting') return [...path.slice(path.indexOf(folder)), folder];
    state.set(folder, 'visiting');
    for (const next of layers[folder] ?? []) {
      const cycle = walk(next, [...path, folder]);
      if (cycle) return cycle;
    }
    state.set(folder, 'done');
    return undefined;
  };
  for (const folder of Object.keys(layers)) {
    const cycle = walk(folder, []);
    if (cycle) return cycle;
  }
  return undefined;
}

function sourceFiles(dir = join(PROJECT_ROOT, 'src')): SourceFile[] {
  const out: SourceFile[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sourceFiles(path));
    else if (name.endsWith('.ts')) out.push({ path: relative(PROJECT_ROOT, path), text: readFileSync(path, 'utf8') });
  }
  return out;
}

describe('layers of src/', () => {
  it('every import goes down the layers', () => {
    const files = sourceFiles();
    assert.ok(files.length > 50, `${files.length} source files found`);
    assert.deepEqual(layerViolations(files), []);
  });

  it('the layer table has no cycle, so no two folders depend on each other', () => {
    assert.equal(layerCycle(), undefined);
  });

  it('an upward import is reported with both files named', () => {
    const upward = { path: 'src/k8s/pod-spec.ts', text: "import type { Policy } from '../admission/policy.js';\n" };
    const dynamic = { path: 'src/cluster/cache.ts', text: "const m = await import('../server/server.js');\n" };
    assert.deepEqual(layerViolations([upward, dynamic]), [
      'src/k8s/pod-spec.ts imports src/admission/policy.ts: src/admission/ is not below src/k8s/ (src/k8s/ may import nothing of the project)',
      'src/cluster/cache.ts imports src/server/server.ts: src/server/ is not below src/cluster/ (src/cluster/ may import config/, k8s/, observability/)',
    ]);
  });

  it('a cycle in the table is found', () => {
    assert.deepEqual(layerCycle({ a: ['b'], b: ['c'], c: ['a'] }), ['a', 'b', 'c', 'a']);
  });
});
