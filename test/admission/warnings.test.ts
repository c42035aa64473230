// Warning limits: one line each, at most 120 characters with an ellipsis, deduplicated, and all
// together within 4096 (with a note saying how many were left out).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { limitWarnings, MAX_TOTAL_WARNING_CHARS, MAX_WARNING_CHARS, truncateWarning } from '../../src/admission/warnings.js';

const chars = (s: string) => Array.from(s).length;

describe('truncateWarning', () => {
  it('keeps a warning of exactly 120 characters as it is', () => {
    const w = 'x'.repeat(MAX_WARNING_CHARS);
    assert.equal(truncateWarning(w), w);
  });

  it('cuts a longer one to 120 characters ending in an ellipsis', () => {
    const w = 'volume data: ' + 'word '.repeat(60);
    const cut = truncateWarning(w);
    assert.equal(chars(cut), MAX_WARNING_CHARS);
    assert.ok(cut.endsWith('…'));
    assert.ok(w.startsWith(cut.slice(0, -1)), 'the gist at the start is kept');
  });

  it('counts characters, not UTF-16 units, and never splits a surrogate pair', () => {
    const w = '🔒'.repeat(130);
    const cut = truncateWarning(w);
    assert.equal(chars(cut), MAX_WARNING_CHARS);
    assert.equal(cut, '🔒'.repeat(119) + '…');
  });

  it('turns newlines and control characters into spaces: a warning is one header line', () => {
    assert.equal(truncateWarning('first line\nsecond\tline\u0000end\r\n'), 'first line second line end');
  });
});

describe('limitWarnings', () => {
  it('removes duplicates, including ones that become equal once cut', () => {
    const long = 'y'.repeat(200);
    assert.deepEqual(limitWarnings(['a', 'b', 'a', long, long + 'z', '', '  ']), ['a', 'b', truncateWarning(long)]);
  });

  it('keeps all warnings together within 4096 characters and says how many were omitted', () => {
    const many = Array.from({ length: 60 }, (_, i) => `warning ${String(i).padStart(2, '0')} ` + 'w'.repeat(100));
    const out = limitWarnings(many);
    const total = out.reduce((n, w) => n + Buffer.byteLength(w), 0);
    assert.ok(total <= MAX_TOTAL_WARNING_CHARS, `total ${total}`);
    const note = out.at(-1)!;
    const kept = out.length - 1;
    assert.match(note, new RegExp(`^tokenguard: ${60 - kept} more warnings omitted`));
    assert.deepEqual(out.slice(0, kept), many.slice(0, kept).map((w) => truncateWarning(w)), 'the first ones are kept, in order');
    assert.ok(kept >= 30, `kept ${kept}`);
  });

  it('needs no note when everything fits', () => {
    const few = Array.from({ length: 5 }, (_, i) => `w${i}`);
    assert.deepEqual(limitWarnings(few), few);
  });
});
