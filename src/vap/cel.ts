// CEL building blocks for the generated admission policies: literals, glob matching with the
// webhook's semantics, the policies' text templates rendered as CEL, and the engine's warning cut.
// Everything here returns CEL source text; nothing evaluates CEL.

import { MAX_WARNING_CHARS, TOO_LONG_WARNING } from '../admission/warnings.js';
import { denialText } from '../admission/engine.js';

/** A CEL string literal: JSON's escapes (`\"`, `\\`, `\n`, `\uXXXX`) are CEL's too. */
export function str(s: string): string {
  return JSON.stringify(s);
}

/**
 * `body` with `name` bound to the value of `value`, evaluated once: `cel.bind` where Kubernetes has
 * it not (its CEL environment leaves out cel-go's bindings library), as a one-element map.
 */
export function bind(name: string, value: string, body: string): string {
  return `[${value}].map(${name}, ${body})[0]`;
}

/** A CEL list of string literals. */
export function strList(items: readonly string[]): string {
  return `[${items.map(str).join(', ')}]`;
}

// JavaScript's `.` (the webhook's globs are JavaScript regular expressions) matches anything but a
// line terminator; RE2's `.` anything but `\n`. This class is JavaScript's `.`, written for RE2.
const ANY_CHAR = '[^\\n\\r\\x{2028}\\x{2029}]';

/** A glob (`*` any run, `?` one character) as an RE2 pattern body, matching what src/k8s/glob.ts matches. */
export function globToRe2(glob: string): string {
  let out = '';
  for (const c of glob) {
    if (c === '*') out += `${ANY_CHAR}*`;
    else if (c === '?') out += ANY_CHAR;
    else if ('\\.+*?()|[]{}^$'.includes(c)) out += `\\${c}`;
    else out += c;
  }
  return out;
}

const isGlob = (p: string) => /[*?]/.test(p);

/**
 * CEL that is true when string expression `subject` matches one of `patterns` (exact values and
 * globs), as `globMatcher` does; `false` for no patterns.
 */
export function matchesAny(subject: string, patterns: readonly string[]): string {
  const exact = [...new Set(patterns.filter((p) => !isGlob(p)))];
  const globs = [...new Set(patterns.filter(isGlob))];
  const parts: string[] = [];
  if (exact.length === 1) parts.push(`${subject} == ${str(exact[0]!)}`);
  else if (exact.length > 1) parts.push(`${subject} in ${strList(exact)}`);
  if (globs.length) parts.push(`${subject}.matches(${str(`^(?:${globs.map(globToRe2).join('|')})$`)})`);
  if (parts.length === 0) return 'false';
  return parts.length === 1 ? parts[0]! : `(${parts.join(' || ')})`;
}

// Sentinels that cannot occur in a policy's text: a NUL, the slot number, a NUL.
const slot = (i: number) => `\u0000${i}\u0000`;
// eslint-disable-next-line no-control-regex -- the sentinels are NULs on purpose
const SLOT = /\u0000(\d+)\u0000/;

/**
 * A policy's text template (a function of already-rendered parts) as a CEL string expression whose
 * parts are the CEL expressions `args`: the template runs with sentinels in its slots, and what it
 * returns is cut at the sentinels. The same function renders the webhook's text, so the two agree
 * word for word as long as the template only places its arguments (which the tests check).
 */
export function celText<A extends string[]>(template: (...args: A) => string, ...args: { [K in keyof A]: string }): string {
  const rendered = template(...(args.map((_, i) => slot(i)) as A));
  const pieces = rendered.split(SLOT);
  const parts: string[] = [];
  pieces.forEach((piece, i) => {
    if (i % 2 === 0) {
      if (piece !== '') parts.push(str(piece));
    } else {
      parts.push(`(${args[Number(piece)]!})`);
    }
  });
  if (parts.length === 0) return str('');
  return parts.join(' + ');
}

/** CEL for the engine's denial text of one finding (src/admission/engine.ts `denialText`). */
export function celDenial(policy: string, message: string, path: string, detail: string, fix: string): string {
  return celText((m: string, p: string, d: string, f: string) => denialText({ policy, message: m, path: p, detail: d, fix: f }), message, path, detail, fix);
}

/**
 * The engine's sendableWarning (src/admission/warnings.ts): a message of at most MAX_WARNING_CHARS
 * characters as it is; a longer one (the policies build theirs within the limit, so only a bug
 * makes one) shortened at its last space among the first MAX_WARNING_CHARS - 1 characters, with an
 * ellipsis, or replaced by the engine's note when that space comes too early. Both count
 * characters (code points). The messages reach this with no control characters in them (volume
 * and namespace names are DNS labels; audiences are quoted as JSON), so the engine's
 * control-character step has nothing to do.
 */
export function celCut(message: string): string {
  const max = MAX_WARNING_CHARS;
  const shortened = bind(
    'h',
    `m.substring(0, ${max - 1})`,
    bind('sp', "h.lastIndexOf(' ')", `sp > ${max / 2} ? h.substring(0, sp).trim() + ${str('…')} : ${str(TOO_LONG_WARNING)}`),
  );
  return bind('m', message, `m.size() <= ${max} ? m : ${shortened}`);
}

/**
 * A string as `JSON.stringify` writes it, for strings that reach a message: quotes and
 * backslashes escaped, and the control characters JSON names (`\b \f \n \r \t`); other control
 * characters are written `\u00XX` by JSON and left as they are here (no real audience has them:
 * docs/validating-admission-policy.md lists it among the known differences).
 */
export function celJsonString(s: string): string {
  const escapes: [string, string][] = [
    ['\\', '\\\\'],
    ['"', '\\"'],
    ['\b', '\\b'],
    ['\f', '\\f'],
    ['\n', '\\n'],
    ['\r', '\\r'],
    ['\t', '\\t'],
  ];
  const escaped = escapes.reduce((acc, [from, to]) => `${acc}.replace(${str(from)}, ${str(to)})`, s);
  return `${str('"')} + ${escaped} + ${str('"')}`;
}
