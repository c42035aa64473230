// Reading a LIST page fast, before and instead of parts of JSON.parse. Filling the pod cache of
// a large cluster is mostly JSON.parse of full pod objects (100,000 captured-shape pods: ~3.4 s
// of ~5.5 s of CPU), and managedFields, which no projection reads, are over a third of a pod's
// bytes and half of its parse time (many small objects with one-off keys like `f:volumeMounts`).
//
// Both functions work on the JSON text exactly as the API server writes it (compact, Go struct
// field order) and fall back to leaving things to JSON.parse when the text is anything else, so
// a body they do not recognise costs only the normal parse.

const MANAGED_FIELDS = Buffer.from('"managedFields":[');
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;

/**
 * The continue token of a LIST body read from its head, without parsing the items. The API
 * server writes a list as `{"kind":...,"apiVersion":...,"metadata":{...},"items":[...]}` and
 * ListMeta holds only scalars (resourceVersion, continue, remainingItemCount), so the head
 * parses alone. Another order, whitespace or a nested object gives undefined: the caller then
 * takes the token from the parsed page.
 */
export function peekContinue(body: Buffer): string | undefined {
  const m = LIST_HEAD.exec(body.toString('utf8', 0, Math.min(body.length, 4096)));
  if (!m) return undefined;
  try {
    const cont = (JSON.parse(m[1]!) as { continue?: unknown }).continue;
    return typeof cont === 'string' && cont ? cont : undefined;
  } catch {
    return undefined;
  }
}
const LIST_HEAD = /^\{(?:"(?:kind|apiVersion)":"[^"\\]*",)*"metadata":(\{[^{}]*\})/;

/**
 * The body with every `"managedFields":[...]` member cut out (with one adjacent comma, so the
 * JSON stays valid). In Pods, Nodes and Namespaces only ObjectMeta has a member by that name.
 *
 * Why the match is always a member name: in valid JSON a `"` inside a string is escaped, so a
 * match preceded by a backslash is inside a string and skipped; an unescaped `"` followed by
 * `managedFields"` can only open the key. The array's end is found by counting brackets outside
 * strings (skipping escapes). Working on bytes is safe for UTF-8: every byte of a multi-byte
 * character is >= 0x80, never a quote, bracket or backslash. A body that ends inside the array
 * is returned unchanged for JSON.parse to reject.
 */
export function withoutManagedFields(body: Buffer): Buffer {
  const kept: Buffer[] = [];
  let pos = 0;
  let from = 0;
  for (;;) {
    const at = body.indexOf(MANAGED_FIELDS, from);
    if (at < 0) break;
    from = at + 1;
    if (body[at - 1] === BACKSLASH) continue;
    const close = endOfArray(body, at + MANAGED_FIELDS.length);
    if (close < 0) return body;
    let start = at;
    let end = close;
    if (body[end] === COMMA) end++;
    else if (body[start - 1] === COMMA) start--;
    kept.push(body.subarray(pos, start));
    pos = from = end;
  }
  if (!kept.length) return body;
  kept.push(body.subarray(pos));
  return Buffer.concat(kept);
}

/** Index just past the `]` closing the array whose `[` is right before `i`; -1 if the body ends first. */
function endOfArray(b: Buffer, i: number): number {
  const n = b.length;
  let depth = 1;
  while (i < n) {
    const c = b[i++]!;
    if (c === QUOTE) {
      while (i < n) {
        const d = b[i++]!;
        if (d === BACKSLASH) i++;
        else if (d === QUOTE) break;
      }
    } else if (c === 0x5b || c === 0x7b) depth++;
    else if ((c === 0x5d || c === 0x7d) && --depth === 0) return i;
  }
  return -1;
}
