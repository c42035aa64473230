// JSON Patch (RFC 6902) building blocks for mutating policies.

import type { KubeObject } from '../k8s/object.js';
import { escapePointerToken, pointer, pointerTokens } from '../k8s/json-pointer.js';

export type PatchOperation =
  | { op: 'add' | 'replace' | 'test'; path: string; value: unknown }
  | { op: 'remove'; path: string };

/**
 * Operations that make the string map at `mapPath` (e.g. ['metadata', 'labels']) hold `entries`.
 * Creates the map when missing (a patch cannot add a key under a map that does not exist) and
 * returns [] when every entry already has its value, so reinvocation is a no-op. Also [] when
 * something on the path is not a JSON object (an array or a string where the map belongs): no
 * patch can add a key there, and such an object is one the API server refuses anyway.
 */
export function setMapEntries(
  object: KubeObject,
  mapPath: readonly string[],
  entries: Record<string, string>,
): PatchOperation[] {
  let parent: any = object;
  for (let i = 0; i < mapPath.length; i++) {
    const next = parent[mapPath[i]!];
    if (next === undefined || next === null) {
      // Build the missing branch in one operation.
      let value: any = { ...entries };
      for (let j = mapPath.length - 1; j > i; j--) value = { [mapPath[j]!]: value };
      return [{ op: 'add', path: pointer(mapPath.slice(0, i + 1)), value }];
    }
    if (!isJsonObject(next)) return [];
    parent = next;
  }
  const map = parent;
  const ops: PatchOperation[] = [];
  let mapPointer: string | undefined;
  for (const key in entries) {
    const value = entries[key]!;
    if (Object.prototype.hasOwnProperty.call(map, key) && map[key] === value) continue;
    ops.push({ op: 'add', path: `${(mapPointer ??= pointer(mapPath))}/${escapePointerToken(key)}`, value });
  }
  return ops;
}

const isJsonObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Parsed pointers by path: mutating policies send the same few paths on every review. */
const parsedPointers = new Map<string, readonly string[]>();

/** The reference tokens of a JSON Pointer, unescaped; shared and read-only (cached). */
function parsePointer(path: string): readonly string[] {
  const cached = parsedPointers.get(path);
  if (cached !== undefined) return cached;
  const tokens = pointerTokens(path);
  if (parsedPointers.size >= 1024) parsedPointers.clear();
  parsedPointers.set(path, tokens);
  return tokens;
}

/** Structural equality of JSON values (key order does not matter); shared subtrees compare in O(1). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(b, k) || !jsonEqual((a as any)[k], (b as any)[k])) return false;
  }
  return true;
}

/**
 * Whether applying `ops` to `doc` changes it. Decided without copying anything when every
 * operation adds or replaces a member of an object that exists in `doc`, each path once (what
 * setMapEntries produces: the common case, priced per review); otherwise by applying the patch
 * copy-on-write and comparing. Throws, as applying would, when a path does not resolve.
 */
export function patchChanges(doc: object, ops: readonly PatchOperation[]): boolean {
  let changes = false;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    let repeated = false;
    for (let j = 0; j < i && !repeated; j++) repeated = ops[j]!.path === op.path;
    if ((op.op !== 'add' && op.op !== 'replace') || repeated) return !jsonEqual(applyPatchCopyOnWrite(doc, ops), doc);
    const tokens = parsePointer(op.path);
    const last = tokens[tokens.length - 1];
    let parent: any = doc;
    for (let t = 0; t < tokens.length - 1; t++) {
      parent = parent !== null && typeof parent === 'object' && !Array.isArray(parent) ? parent[tokens[t]!] : undefined;
    }
    if (last === undefined || parent === null || typeof parent !== 'object' || Array.isArray(parent)) {
      // An array, or a parent an earlier operation creates: only applying the patch can tell.
      return !jsonEqual(applyPatchCopyOnWrite(doc, ops), doc);
    }
    const present = Object.prototype.hasOwnProperty.call(parent, last);
    if (op.op === 'replace' && !present) throw new Error(`patch path ${op.path} does not resolve`);
    if (!present || !jsonEqual(parent[last], op.value)) changes = true;
  }
  return changes;
}

/** A deep copy of a JSON value (structuredClone costs microseconds even for a string). */
function cloneJson<V>(v: V): V {
  if (typeof v !== 'object' || v === null) return v;
  if (Array.isArray(v)) return v.map(cloneJson) as V;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) out[k] = cloneJson((v as Record<string, unknown>)[k]);
  return out as V;
}

function arrayIndex(token: string, length: number, allowEnd: boolean, path: string): number {
  if (allowEnd && token === '-') return length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new Error(`patch path ${path}: ${JSON.stringify(token)} is not an array index`);
  const index = Number(token);
  if (index > length || (!allowEnd && index === length)) throw new Error(`patch path ${path}: index ${index} is out of bounds`);
  return index;
}

/**
 * Apply `ops` to `doc` without modifying it: the result shares every subtree the operations do
 * not touch, and only the containers along patched paths are copied. That keeps chaining mutating
 * policies cheap on large objects (no deep clone), and makes "did anything change?" a comparison
 * of the touched paths only (see jsonEqual). Throws, as the API server would reject the patch, when
 * a path does not resolve or a `test` fails; `doc` is unchanged then too.
 */
export function applyPatchCopyOnWrite<T extends object>(doc: T, ops: readonly PatchOperation[]): T {
  const owned = new Set<object>(); // the copies this call made, safe to change in place
  const own = <V extends object>(v: V): V => {
    if (owned.has(v)) return v;
    const copy = (Array.isArray(v) ? v.slice() : { ...v }) as V;
    owned.add(copy);
    return copy;
  };
  const root: any = own(doc);
  for (const op of ops) {
    const tokens = parsePointer(op.path);
    const last = tokens[tokens.length - 1];
    if (last === undefined) throw new Error('patching the document root is not supported');
    let parent = root;
    for (let i = 0; i < tokens.length - 1; i++) {
      const t = tokens[i]!;
      const key = Array.isArray(parent) ? arrayIndex(t, parent.length, false, op.path) : t;
      const child = Object.prototype.hasOwnProperty.call(parent, key) ? parent[key] : undefined;
      if (child === undefined || child === null || typeof child !== 'object') throw new Error(`patch path ${op.path} does not resolve`);
      parent = parent[key] = own(child);
    }
    if (Array.isArray(parent)) {
      const index = arrayIndex(last, parent.length, op.op === 'add', op.path);
      if (op.op === 'add') parent.splice(index, 0, cloneJson(op.value));
      else if (op.op === 'replace') parent[index] = cloneJson(op.value);
      else if (op.op === 'remove') parent.splice(index, 1);
      else if (!jsonEqual(parent[index], op.value)) throw new Error(`patch test at ${op.path} failed`);
      continue;
    }
    const present = Object.prototype.hasOwnProperty.call(parent, last);
    if (op.op === 'add') parent[last] = cloneJson(op.value);
    else if (!present) throw new Error(`patch path ${op.path} does not resolve`);
    else if (op.op === 'replace') parent[last] = cloneJson(op.value);
    else if (op.op === 'remove') delete parent[last];
    else if (!jsonEqual(parent[last], op.value)) throw new Error(`patch test at ${op.path} failed`);
  }
  return root;
}
