// JSON Patch (RFC 6902) building blocks for mutating policies.

export type PatchOperation =
  | { op: 'add' | 'replace' | 'test'; path: string; value: unknown }
  | { op: 'remove'; path: string };

/** Escape one reference token of a JSON Pointer (RFC 6901): `~` -> `~0`, `/` -> `~1`, in that order. */
export function escapePointerToken(token: string | number): string {
  return String(token).replace(/~/g, '~0').replace(/\//g, '~1');
}

export function pointer(tokens: readonly (string | number)[]): string {
  let out = '';
  for (const t of tokens) out += '/' + escapePointerToken(t);
  return out;
}

/**
 * Operations that make the string map at `mapPath` (e.g. ['metadata', 'labels']) hold `entries`.
 * Creates the map when missing (a patch cannot add a key under a map that does not exist) and
 * returns [] when every entry already has its value, so reinvocation is a no-op.
 */
export function setMapEntries(
  object: Record<string, any>,
  mapPath: readonly string[],
  entries: Record<string, string>,
): PatchOperation[] {
  let parent: any = object;
  for (let i = 0; i < mapPath.length - 1; i++) {
    const next = parent?.[mapPath[i]!];
    if (next === undefined || next === null) {
      // Build the missing branch in one operation.
      let value: any = { ...entries };
      for (let j = mapPath.length - 1; j > i; j--) value = { [mapPath[j]!]: value };
      return [{ op: 'add', path: pointer(mapPath.slice(0, i + 1)), value }];
    }
    parent = next;
  }
  const map = parent?.[mapPath[mapPath.length - 1]!];
  if (map === undefined || map === null) {
    return [{ op: 'add', path: pointer(mapPath), value: { ...entries } }];
  }
  const ops: PatchOperation[] = [];
  for (const [key, value] of Object.entries(entries)) {
    if (map[key] === value) continue;
    ops.push({ op: 'add', path: pointer([...mapPath, key]), value });
  }
  return ops;
}

function parsePointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw new Error(`invalid JSON pointer ${JSON.stringify(path)}`);
  return path
    .slice(1)
    .split('/')
    .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/**
 * Apply `ops` to `doc` in place. Only what the engine needs to chain mutating policies: add,
 * replace and remove on objects and arrays. Throws on a path that does not resolve.
 */
export function applyPatchInPlace(doc: Record<string, any>, ops: readonly PatchOperation[]): void {
  for (const op of ops) {
    const tokens = parsePointer(op.path);
    const last = tokens.pop();
    if (last === undefined) throw new Error('patching the document root is not supported');
    let parent: any = doc;
    for (const t of tokens) {
      parent = parent?.[Array.isArray(parent) ? Number(t) : t];
      if (parent === undefined || parent === null || typeof parent !== 'object') {
        throw new Error(`patch path ${op.path} does not resolve`);
      }
    }
    if (op.op === 'test') continue;
    if (Array.isArray(parent)) {
      const index = last === '-' ? parent.length : Number(last);
      if (op.op === 'add') parent.splice(index, 0, structuredClone(op.value));
      else if (op.op === 'replace') parent[index] = structuredClone(op.value);
      else parent.splice(index, 1);
    } else if (op.op === 'remove') {
      delete parent[last];
    } else {
      parent[last] = structuredClone(op.value);
    }
  }
}
