// Start-up time of the bundle: ajv's schemas compiled at bundle time instead of at every start.
//
// tokenguard builds its validators with `new Ajv(options).compile(schema)` (the config schema, the
// AdmissionReview envelope). ajv turns each schema into JavaScript source, which costs about 200 ms
// at start-up, most of it for validating and compiling its own meta-schema, on every start.
// Here, at bundle time:
//  1. a small recording bundle imports the modules that compile at load time and loads the built-in
//     configuration once (as `serve` does), with `ajv` replaced by a recorder: every (options,
//     schema) pair compiled is recorded;
//  2. each pair is compiled with ajv's standalone code generator (the same ajv, the same options) into
//     a module of the real bundle;
//  3. in the real bundle, `ajv` imported by src/ is an `Ajv` subclass whose compile() returns the
//     precompiled validator when the options and schema are exactly (JSON-equal) a recorded pair, and
//     otherwise compiles as usual. A schema changed or added since is therefore never wrong, only
//     compiled at run time, as before.
// Only src/ sees the subclass; the precompiled validators are ajv's own generated code, so their
// results and `errors` are those of `compile()`.

import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';

const NS = 'tokenguard-ajv';
/** What the recording bundle runs: the compiles `serve` does before it listens. */
const RECORDER_ENTRY = `
import './src/admission/review.ts';
import { loadConfig } from './src/config/load.ts';
import { BUILTIN_POLICIES } from './src/policies/index.ts';
loadConfig(undefined, BUILTIN_POLICIES);
`;

function jsonSafe(v) {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return true;
  if (typeof v === 'number') return Number.isFinite(v);
  if (Array.isArray(v)) return v.every(jsonSafe);
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) return Object.values(v).every(jsonSafe);
  return false;
}

/**
 * The esbuild plugin. `validators`: standalone module sources keyed by `optionsJSON + '\n' + schemaJSON`;
 * `undefined` builds the recorder instead (compile() records into globalThis.__tokenguardAjvRecord).
 */
export function ajvPlugin(root, validators) {
  const realAjv = createRequire(join(root, 'package.json')).resolve('ajv');
  const keys = validators ? [...validators.keys()] : [];
  return {
    name: 'tokenguard-ajv-precompiled',
    setup(build) {
      build.onResolve({ filter: /^ajv$/ }, (args) => (args.importer.startsWith(join(root, 'src')) ? { path: 'ajv', namespace: NS } : undefined));
      build.onResolve({ filter: /^tokenguard-ajv-validator:\d+$/ }, (args) => ({ path: args.path, namespace: NS }));
      build.onLoad({ filter: /.*/, namespace: NS }, (args) => {
        if (args.path.startsWith('tokenguard-ajv-validator:')) {
          return { contents: validators.get(keys[Number(args.path.split(':')[1])]), loader: 'js', resolveDir: root };
        }
        const imports = keys.map((_, i) => `import v${i} from 'tokenguard-ajv-validator:${i}';`).join('\n');
        const table = keys.map((k, i) => `[${JSON.stringify(k)}, v${i}]`).join(',\n');
        const contents = `
import * as real from ${JSON.stringify(realAjv)};
${imports}
export * from ${JSON.stringify(realAjv)};
const PRECOMPILED = new Map([${table}]);
export class Ajv extends real.Ajv {
  #options;
  constructor(options = {}) {
    super(options);
    this.#options = JSON.stringify(options);
  }
  compile(schema, meta) {
    const key = this.#options + '\\n' + JSON.stringify(schema);
    ${validators ? 'const found = PRECOMPILED.get(key); if (found) return found;' : '(globalThis.__tokenguardAjvRecord ??= []).push({ options: this.#options, schema, key });'}
    return super.compile(schema, meta);
  }
}
export default Ajv;
`;
        return { contents, loader: 'js', resolveDir: root };
      });
    },
  };
}

/**
 * Record the schemas src/ compiles at start-up and generate their standalone validators; `common`:
 * the esbuild options of the real bundle (format, platform, banner). Never fails the bundle: on any problem it says so and returns no validators (start-up compiles them).
 */
export async function precompileAjv(root, common) {
  const validators = new Map();
  const dir = mkdtempSync(join(tmpdir(), 'tokenguard-ajv-'));
  try {
    const recorder = join(dir, 'recorder.mjs');
    await esbuild.build({
      ...common,
      stdin: { contents: RECORDER_ENTRY, resolveDir: root, loader: 'ts', sourcefile: 'ajv-recorder.ts' },
      outfile: recorder,
      plugins: [ajvPlugin(root, undefined)],
      logLevel: 'error',
    });
    globalThis.__tokenguardAjvRecord = [];
    await import(pathToFileURL(recorder).href);
    const require = createRequire(join(root, 'package.json'));
    const { Ajv } = require('ajv');
    const standaloneCode = require('ajv/dist/standalone').default;
    for (const { options, schema, key } of globalThis.__tokenguardAjvRecord) {
      if (validators.has(key)) continue;
      if (!jsonSafe(schema) || !jsonSafe(JSON.parse(options))) {
        process.stderr.write('ajv-precompile: a schema or its options are not plain JSON: left to run time\n');
        continue;
      }
      const opts = JSON.parse(options);
      const ajv = new Ajv({ ...opts, code: { ...opts.code, source: true, esm: true } });
      validators.set(key, standaloneCode(ajv, ajv.compile(JSON.parse(JSON.stringify(schema)))));
    }
  } catch (err) {
    process.stderr.write(`ajv-precompile: no precompiled validators, ajv compiles at start-up: ${err?.message ?? err}\n`);
    validators.clear();
  } finally {
    rmSync(dir, { recursive: true, force: true });
    delete globalThis.__tokenguardAjvRecord;
  }
  return validators;
}
