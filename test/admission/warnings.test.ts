// Warning limits: one line each, never cut inside a word or name, within the API server's 256
// characters per warning, deduplicated, and all together within 4096 (with a note saying how many
// were left out). Policies fit their own messages (fitWarning); test/policies/message-limits.test.ts
// checks every message they can produce.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fitWarning, limitWarnings, MAX_TOTAL_WARNING_CHARS, MAX_WARNING_CHARS, sendableWarning } from '../../src/admission/warnings.js';

const chars = (s: string) => Array.from(s).length;

describe('sendableWarning', () => {
  it('is the API server limit: 256 characters (longer ones it may truncate)', () => {
    assert.equal(MAX_WARNING_CHARS, 256);
  });

  it('keeps a warning of exactly the limit as it is', () => {
    const w = 'x'.repeat(MAX_WARNING_CHARS);
    assert.equal(sendableWarning(w), w);
  });

  it('leaves the end of a longer one out at a space, never inside a word, and marks it', () => {
    const name = 'https://kubernetes.default.svc.cluster.local';
    const w = 'word '.repeat(45) + name + ' and more';
    const sent = sendableWarning(w);
    assert.ok(chars(sent) <= MAX_WARNING_CHARS);
    assert.ok(sent.endsWith('…'));
    assert.ok(!sent.includes('https://kubernetes.default.svc.c…'), 'the name is never cut in two');
    assert.ok(w.startsWith(sent.slice(0, -1)), 'the start is kept');
    assert.ok(sent.includes(name) || !sent.includes('https://'), 'the name is whole or absent');
  });

  it('a single word over the limit is replaced by a note, not cut', () => {
    assert.equal(sendableWarning('🔒'.repeat(300)), 'tokenguard: a warning too long to send was left out; see the tokenguard logs');
  });

  it('turns newlines and control characters into spaces: a warning is one header line', () => {
    assert.equal(sendableWarning('first line\nsecond\tline\u0000end\r\n'), 'first line second line end');
  });
});

describe('fitWarning', () => {
  it('takes the most complete candidate that fits, else the last one', () => {
    assert.equal(fitWarning('short', 'shorter'), 'short');
    assert.equal(fitWarning('x'.repeat(300), 'fallback'), 'fallback');
    assert.equal(fitWarning('x'.repeat(300), 'y'.repeat(290)), 'y'.repeat(290));
  });
});

describe('limitWarnings', () => {
  it('removes duplicates', () => {
    const long = 'y'.repeat(200);
    assert.deepEqual(limitWarnings(['a', 'b', 'a', long, long, '', '  ']), ['a', 'b', long]);
  });

  it('keeps all warnings together within 4096 characters and says how many were omitted', () => {
    const many = Array.from({ length: 60 }, (_, i) => `warning ${String(i).padStart(2, '0')} ` + 'w'.repeat(100));
    const out = limitWarnings(many);
    const total = out.reduce((n, w) => n + Buffer.byteLength(w), 0);
    assert.ok(total <= MAX_TOTAL_WARNING_CHARS, `total ${total}`);
    const note = out.at(-1)!;
    const kept = out.length - 1;
    assert.match(note, new RegExp(`^tokenguard: ${60 - kept} more warnings omitted`));
    assert.deepEqual(out.slice(0, kept), many.slice(0, kept), 'the first ones are kept whole, in order');
    assert.ok(kept >= 30, `kept ${kept}`);
  });

  it('needs no note when everything fits', () => {
    const few = Array.from({ length: 5 }, (_, i) => `w${i}`);
    assert.deepEqual(limitWarnings(few), few);
  });
});
