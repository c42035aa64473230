// kubectl prints each admission warning on one line; the API server truncates long ones and drops
// everything past 4096 characters in total. We apply the same limits ourselves, predictably.

export const MAX_WARNING_CHARS = 120;
export const MAX_TOTAL_WARNING_CHARS = 4096;
const ELLIPSIS = '…';

export function truncateWarning(text: string, max = MAX_WARNING_CHARS): string {
  // Warnings travel in HTTP headers: one line, no control characters.
  const oneLine = text.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  const chars = Array.from(oneLine);
  if (chars.length <= max) return oneLine;
  return chars.slice(0, max - 1).join('').trimEnd() + ELLIPSIS;
}

/** Deduplicate, cut each to 120 characters, and stop before the total would exceed 4096. */
export function limitWarnings(warnings: readonly string[]): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  let total = 0;
  for (const w of warnings) {
    const cut = truncateWarning(w);
    if (cut === '' || seen.has(cut)) continue;
    const len = Array.from(cut).length;
    if (total + len > MAX_TOTAL_WARNING_CHARS) break;
    seen.add(cut);
    out.push(cut);
    total += len;
  }
  return out;
}
