// kubectl prints each admission warning on one line; the API server truncates long ones and drops
// everything past 4096 characters in total. We apply the same limits ourselves, predictably.

export const MAX_WARNING_CHARS = 120;
export const MAX_TOTAL_WARNING_CHARS = 4096;
const ELLIPSIS = '…';

export function truncateWarning(text: string, max = MAX_WARNING_CHARS): string {
  // Warnings travel in HTTP headers: one line, no control characters.
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  const oneLine = text.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  if (oneLine.length <= max) return oneLine; // UTF-16 units >= code points: short enough either way
  const chars = Array.from(oneLine);
  if (chars.length <= max) return oneLine;
  return chars.slice(0, max - 1).join('').trimEnd() + ELLIPSIS;
}

/** The header travels as UTF-8: counting bytes keeps us under the limit however it is counted. */
function size(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

function omittedNote(count: number): string {
  return `tokenguard: ${count} more warning${count === 1 ? '' : 's'} omitted (4096-character limit); see the tokenguard logs`;
}

/**
 * Deduplicate, cut each to 120 characters, and keep the total within 4096. When warnings must be
 * dropped, the last one kept says how many were, so nobody mistakes a cut list for the whole story.
 */
export function limitWarnings(warnings: readonly string[]): string[] {
  const unique: string[] = [];
  const seen = new Set<string>();
  for (const w of warnings) {
    const cut = truncateWarning(w);
    if (cut === '' || seen.has(cut)) continue;
    seen.add(cut);
    unique.push(cut);
  }
  const out: string[] = [];
  let total = 0;
  for (const w of unique) {
    if (total + size(w) > MAX_TOTAL_WARNING_CHARS) break;
    out.push(w);
    total += size(w);
  }
  if (out.length === unique.length) return out;
  // Make room for the note by dropping kept warnings from the end.
  while (out.length > 0 && total + size(omittedNote(unique.length - out.length)) > MAX_TOTAL_WARNING_CHARS) {
    total -= size(out.pop()!);
  }
  out.push(omittedNote(unique.length - out.length));
  return out;
}
