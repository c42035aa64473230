// The configuration reference in the docs is the one config/reference.ts renders from the schema:
// every key start-up accepts is documented, with its type and default, and nothing else is.
// After changing the schema, regenerate the table with `TOKENGUARD_UPDATE_DOCS=1 npm test`.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { configReference } from '../../src/config/reference.js';
import { DEFAULT_CONFIG } from '../../src/config/schema.js';
import { BUILTIN_POLICIES } from '../../src/policies/index.js';
import { PROJECT_ROOT } from '../helpers/tls.js';

const START = '<!-- config-reference:start (generated from the schema: TOKENGUARD_UPDATE_DOCS=1 npm test) -->\n';
const END = '<!-- config-reference:end -->';

/** The Markdown files of the project that hold the generated block (README.md, docs/). */
function docsWithReference(): string[] {
  const docsDir = join(PROJECT_ROOT, 'docs');
  const candidates = [join(PROJECT_ROOT, 'README.md')];
  try {
    for (const f of readdirSync(docsDir)) if (f.endsWith('.md')) candidates.push(join(docsDir, f));
  } catch {
    // no docs/ folder
  }
  return candidates.filter((f) => readFileSync(f, 'utf8').includes(START));
}

describe('configuration reference', () => {
  it('is in exactly one document, and equal to what the schema renders', () => {
    const files = docsWithReference();
    assert.equal(files.length, 1, `the generated reference block should be in one document, found in: ${files.join(', ') || 'none'}`);
    const file = files[0]!;
    const text = readFileSync(file, 'utf8');
    const start = text.indexOf(START) + START.length;
    const end = text.indexOf(END, start);
    assert.ok(end >= start, `${file}: no ${END} after the start marker`);
    const expected = configReference(BUILTIN_POLICIES);
    if (process.env.TOKENGUARD_UPDATE_DOCS === '1') writeFileSync(file, text.slice(0, start) + expected + text.slice(end));
    else assert.equal(text.slice(start, end), expected, `${file} is out of date: run TOKENGUARD_UPDATE_DOCS=1 npm test`);
  });

  it('the example "with the defaults" next to it is the built-in defaults, exactly', () => {
    const text = readFileSync(docsWithReference()[0]!, 'utf8');
    const at = text.indexOf('A complete example with the defaults');
    assert.ok(at >= 0, 'the example is introduced with "A complete example with the defaults"');
    const block = /```yaml\n([\s\S]*?)```/.exec(text.slice(at))?.[1];
    assert.ok(block, 'a yaml block follows');
    assert.deepEqual(parse(block), DEFAULT_CONFIG);
  });

  it('has a row, with a description, for every key of every policy', () => {
    const table = configReference(BUILTIN_POLICIES);
    for (const line of table.split('\n').slice(2).filter(Boolean)) {
      const meaning = line.split(' | ')[3]?.replace(/ \|$/, '') ?? '';
      assert.ok(meaning.trim().length > 0, `no description: ${line}`);
    }
    for (const p of BUILTIN_POLICIES) {
      for (const key of Object.keys(p.settings?.properties ?? {})) assert.ok(table.includes(`\`policies.${p.name}.${key}\``), `${p.name}.${key}`);
    }
  });
});
