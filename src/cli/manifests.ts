// Reading Kubernetes manifests the way `kubectl apply -f` does: files, directories (recursively:
// .yaml, .yml, .json) and `-` for stdin; multi-document YAML; JSON; `List` objects flattened into
// their items. Every object keeps where it came from (file, document, item, line), and every
// problem says where it is and why, so a CI log points straight at the line to fix.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LineCounter, parseAllDocuments } from 'yaml';
import type { KubeObject } from '../k8s/object.js';
import { errorMessage, errorCode } from '../observability/errors.js';

export interface ManifestEntry {
  /** As given on the command line (or found under a directory); `-` reads as `<stdin>`. */
  file: string;
  /** 1-based position of the YAML document in the file. */
  document: number;
  /** 1-based position inside a `List`'s items, when the document is a List. */
  item?: number;
  /** 1-based line where the document (or the list item) starts. */
  line: number;
  object: KubeObject;
}

export interface InputProblem {
  file: string;
  line?: number;
  column?: number;
  reason: string;
}

export interface ManifestSet {
  entries: ManifestEntry[];
  problems: InputProblem[];
}

export const STDIN_NAME = '<stdin>';
const MANIFEST_EXTENSIONS = /\.(ya?ml|json)$/i;
/** kustomize's own files are instructions, never objects to admit. */
const KUSTOMIZATION_FILES = new Set(['kustomization.yaml', 'kustomization.yml', 'Kustomization']);

/** The files `paths` name, directories walked recursively in name order (hidden entries skipped). */
export function expandPaths(paths: readonly string[]): { files: string[]; problems: InputProblem[] } {
  const files: string[] = [];
  const problems: InputProblem[] = [];
  const walk = (dir: string) => {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch (err) {
      problems.push({ file: dir, reason: `cannot read directory: ${errorMessage(err)}` });
      return;
    }
    for (const name of names) {
      if (name.startsWith('.')) continue;
      const path = join(dir, name);
      let isDir: boolean;
      try {
        isDir = statSync(path).isDirectory();
      } catch (err) {
        problems.push({ file: path, reason: `cannot read: ${errorMessage(err)}` });
        continue;
      }
      if (isDir) walk(path);
      else if (MANIFEST_EXTENSIONS.test(name) && !KUSTOMIZATION_FILES.has(name)) files.push(path);
    }
  };
  for (const p of paths) {
    if (p === '-') {
      files.push(p);
      continue;
    }
    try {
      if (statSync(p).isDirectory()) walk(p);
      else files.push(p);
    } catch (err) {
      problems.push({ file: p, reason: errorCode(err) === 'ENOENT' ? 'no such file or directory' : `cannot read: ${errorMessage(err)}` });
    }
  }
  return { files, problems };
}

/** Parse one file's text: every document, Lists flattened; YAML errors with line and column. */
export function parseManifests(text: string, file: string): ManifestSet {
  const entries: ManifestEntry[] = [];
  const problems: InputProblem[] = [];
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lines });
  // An empty stream (blank file, comments only) holds no documents.
  const list = Array.isArray(docs) ? docs : [];
  list.forEach((doc, i) => {
    const document = i + 1;
    if (doc.errors.length > 0) {
      const err = doc.errors[0]!;
      const pos = err.linePos?.[0];
      // The parser's message ends with its own " at line L, column C:" and a code excerpt; we say where once.
      const reason = err.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
      problems.push({ file, line: pos?.line, column: pos?.col, reason: `document ${document}: ${reason}` });
      return;
    }
    const value = doc.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) return; // an empty document (e.g. after a trailing ---)
    const lineOf = (node: unknown) => {
      const range = (node as { range?: [number, number, number] } | undefined)?.range;
      return range ? lines.linePos(range[0]).line : 1;
    };
    const line = lineOf(doc.contents);
    const problem = objectProblem(value);
    if (problem) {
      problems.push({ file, line, reason: `document ${document}: ${problem}` });
      return;
    }
    if (isList(value)) {
      const itemNodes = (doc.get('items', true) as { items?: unknown[] } | undefined)?.items ?? [];
      (value.items as unknown[]).forEach((item, j) => {
        const itemLine = lineOf(itemNodes[j]);
        const itemProblem = objectProblem(item);
        if (itemProblem) problems.push({ file, line: itemLine, reason: `document ${document}, item ${j + 1}: ${itemProblem}` });
        else entries.push({ file, document, item: j + 1, line: itemLine, object: item as KubeObject });
      });
      return;
    }
    entries.push({ file, document, line, object: value as KubeObject });
  });
  return { entries, problems };
}

/** `kind: List` and every `<Kind>List` (PodList, ...) carry their objects in `items`. */
function isList(value: KubeObject): boolean {
  return typeof value.kind === 'string' && value.kind.endsWith('List') && Array.isArray(value.items);
}

function objectProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return `not a Kubernetes object (a ${Array.isArray(value) ? 'list' : typeof value}, expected a mapping with apiVersion and kind)`;
  }
  const o = value as KubeObject;
  const missing = ['apiVersion', 'kind'].filter((k) => typeof o[k] !== 'string' || o[k] === '');
  if (missing.length) return `not a Kubernetes object: ${missing.join(' and ')} missing`;
  if (o.metadata !== undefined && (typeof o.metadata !== 'object' || o.metadata === null || Array.isArray(o.metadata))) {
    return 'metadata must be a mapping';
  }
  return undefined;
}

/** Read and parse every file; `readStdin` supplies `-`. */
export function readManifests(paths: readonly string[], readStdin: () => string): ManifestSet {
  const { files, problems } = expandPaths(paths);
  const entries: ManifestEntry[] = [];
  for (const f of files) {
    let text: string;
    const name = f === '-' ? STDIN_NAME : f;
    try {
      text = f === '-' ? readStdin() : readFileSync(f, 'utf8');
    } catch (err) {
      problems.push({ file: name, reason: `cannot read: ${errorMessage(err)}` });
      continue;
    }
    const parsed = parseManifests(text, name);
    entries.push(...parsed.entries);
    problems.push(...parsed.problems);
  }
  return { entries, problems };
}

/** `file:line:column` for messages, as compilers print it. */
export function where(p: { file: string; line?: number; column?: number }): string {
  return [p.file, p.line, p.line !== undefined ? p.column : undefined].filter((x) => x !== undefined).join(':');
}
