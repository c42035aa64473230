// JSON Pointer (RFC 6901): how JSON Patch paths and validation errors name a place in an object.
// Annotation and label keys contain `/`, so escaping matters on every patch tokenguard sends.

/** Escape one reference token of a JSON Pointer (RFC 6901): `~` -> `~0`, `/` -> `~1`, in that order. */
export function escapePointerToken(token: string | number): string {
  const s = String(token);
  return s.includes('~') || s.includes('/') ? s.replace(/~/g, '~0').replace(/\//g, '~1') : s;
}

export function pointer(tokens: readonly (string | number)[]): string {
  let out = '';
  for (const t of tokens) out += '/' + escapePointerToken(t);
  return out;
}

/** One reference token unescaped: `~1` -> `/`, `~0` -> `~`, in that order. */
export function unescapePointerToken(token: string): string {
  return token.indexOf('~') === -1 ? token : token.replace(/~1/g, '/').replace(/~0/g, '~');
}

/** The reference tokens of a pointer, unescaped: `/metadata/labels/a~1b` -> ['metadata', 'labels', 'a/b']. */
export function pointerTokens(path: string): string[] {
  if (path === '') return [];
  if (path.charCodeAt(0) !== 47 /* / */) throw new Error(`invalid JSON pointer ${JSON.stringify(path)}`);
  return path.slice(1).split('/').map(unescapePointerToken);
}
