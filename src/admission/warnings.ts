// The API server's limits on admission warnings (k8s.io/apiserver's warning recorder): a warning
// longer than 256 characters may be truncated, and once all of a response's warnings pass 4096
// characters the API server truncates or drops them. Nothing tokenguard sends is ever cut where
// the information is: policies build each message within MAX_WARNING_CHARS (fitWarning, with a
// test over every message they produce), and the engine keeps the total within 4096 by leaving
// whole warnings out, saying how many.

/** Longest warning the API server passes on whole (it may truncate longer ones). */
export const MAX_WARNING_CHARS = 256;
/** All warnings of one response together, at most. */
export const MAX_TOTAL_WARNING_CHARS = 4096;

/** Characters as the API server counts them (runes: code points, not UTF-16 units). */
export function warningLength(text: string): number {
  return Array.from(text).length;
}

/**
 * The first of `candidates` (the most complete first, each dropping the least useful part of the
 * one before) that fits in one warning; the last one whatever its length. A policy that names
 * something of unbounded length (an issuer URL, an audience, a 253-character object name) ends
 * its candidates with a form that leaves the name out rather than cutting it.
 */
export function fitWarning(...candidates: string[]): string {
  for (const c of candidates) if (warningLength(c) <= MAX_WARNING_CHARS) return c;
  return candidates[candidates.length - 1] ?? '';
}

// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]+/g;

/** Warnings travel in HTTP headers: one line, no control characters. */
export function oneLine(text: string): string {
  return text.replace(CONTROL, ' ').trim();
}

/** What replaces a warning too long to send that cannot be shortened at a space. */
export const TOO_LONG_WARNING = 'tokenguard: a warning too long to send was left out; see the tokenguard logs';

/**
 * A warning as sent: one line, within MAX_WARNING_CHARS. Policies keep theirs within the limit;
 * for anything longer (a policy's bug, or an error text quoted in one) the end is left out at a
 * space, so no word or name is ever cut in two, and `…` marks it. A single word longer than the
 * limit cannot be shortened that way: it is replaced by a note.
 */
export function sendableWarning(text: string): string {
  const line = oneLine(text);
  if (warningLength(line) <= MAX_WARNING_CHARS) return line;
  const chars = Array.from(line);
  const head = chars.slice(0, MAX_WARNING_CHARS - 1).join('');
  const space = head.lastIndexOf(' ');
  if (space > MAX_WARNING_CHARS / 2) return head.slice(0, space).trimEnd() + '…';
  return TOO_LONG_WARNING;
}

/** The header travels as UTF-8: counting bytes keeps us under the limit however it is counted. */
function size(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

function omittedNote(count: number): string {
  return `tokenguard: ${count} more warning${count === 1 ? '' : 's'} omitted (4096-character limit); see the tokenguard logs`;
}

/**
 * Deduplicate, make each sendable, and keep the total within 4096. When warnings must be
 * dropped, the last one kept says how many were, so nobody mistakes a cut list for the whole story.
 */
export function limitWarnings(warnings: readonly string[]): string[] {
  const unique: string[] = [];
  const seen = new Set<string>();
  for (const w of warnings) {
    const sendable = sendableWarning(w);
    if (sendable === '' || seen.has(sendable)) continue;
    seen.add(sendable);
    unique.push(sendable);
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
