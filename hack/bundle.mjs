#!/usr/bin/env node
// The bundle the container image runs: src/cli/main.ts and everything it imports, node_modules
// included, as ESM for Node 20, into dist/bundle/cli/ (the same depth as tsc's dist/src/cli/, so
// paths relative to a module, like `serve --dev`'s certs/, resolve alike).
//
// `splitting` keeps every dynamic import() a chunk of its own, loaded only when reached: each CLI
// command, and @kubernetes/client-node only when a cluster is configured (idle RSS stays low).
// Identifiers are not minified: stack traces and class names stay readable.
//
// The version (package.json) and the source revision are stamped in (src/observability/build-info.ts):
// the revision is $REVISION when set (the image build has no .git), else `git describe` of this
// checkout, else `unknown`.
//
//   node hack/bundle.mjs [--metafile]      (npm run bundle)

import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { ajvPlugin, precompileAjv } from './ajv-precompile.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'dist', 'bundle', 'cli');

function revision() {
  if (process.env.REVISION) return process.env.REVISION;
  if (!existsSync(join(ROOT, '.git'))) return 'unknown';
  try {
    // As src/observability/build-info.ts does for an unbundled checkout.
    return execFileSync('git', ['describe', '--always', '--dirty', '--abbrev=40', '--exclude=*'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() || 'unknown';
  } catch {
    return 'unknown';
  }
}

const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
const info = { version, revision: revision() };

// What both builds share (this one and hack/ajv-precompile.mjs's recorder): ESM for Node 20. The
// CommonJS packages (express and its tree, prom-client, ...) call require() for Node's own modules;
// an ES module has no require, so each output file gets one.
const common = {
  absWorkingDir: ROOT,
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  banner: { js: "import { createRequire as __tokenguardCreateRequire } from 'node:module'; const require = __tokenguardCreateRequire(import.meta.url);" },
};

rmSync(join(ROOT, 'dist', 'bundle'), { recursive: true, force: true });
// ajv's validators generated now rather than at every start (hack/ajv-precompile.mjs says how).
const validators = await precompileAjv(ROOT, common);
const result = await esbuild.build({
  ...common,
  entryPoints: ['src/cli/main.ts'],
  outdir: OUT,
  splitting: true,
  plugins: [ajvPlugin(ROOT, validators)],
  define: { TOKENGUARD_BUILD_INFO: JSON.stringify(info) },
  minifyWhitespace: true,
  minifySyntax: true,
  // The licences of the bundled packages go to THIRD-PARTY-NOTICES.txt whole (below), not as comments.
  legalComments: 'none',
  chunkNames: '[name]-[hash]',
  metafile: true,
  logLevel: 'warning',
}).catch((err) => {
  // esbuild has printed each error with its place; say what it means, without a stack trace.
  const unresolved = [...new Set((err.errors ?? []).map((e) => /^Could not resolve "([^"]+)"/.exec(e.text)?.[1]).filter(Boolean))];
  process.stderr.write(
    unresolved.length
      ? `bundle failed: cannot resolve ${unresolved.join(', ')}: missing from package.json or from node_modules\n`
      : `bundle failed: ${err.message}\n`,
  );
  process.exit(1);
});
// Every package with code in the bundle: name, version, declared licence and its licence files.
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (m && !packages.has(m[1])) packages.set(m[1], JSON.parse(readFileSync(join(ROOT, m[1], 'package.json'), 'utf8')));
}
const notices = [...packages]
  .sort(([, a], [, b]) => a.name.localeCompare(b.name) || a.version.localeCompare(b.version))
  .map(([dir, pkg]) => {
    const files = readdirSync(join(ROOT, dir)).filter((f) => /^(licen[cs]e|copying|notice)/i.test(f));
    const texts = files.map((f) => readFileSync(join(ROOT, dir, f), 'utf8').trim());
    return `${pkg.name}@${pkg.version} (${pkg.license ?? 'license not declared'})\n\n${texts.join('\n\n') || '(no licence file in the package)'}\n`;
  });
writeFileSync(
  join(ROOT, 'dist', 'bundle', 'THIRD-PARTY-NOTICES.txt'),
  `tokenguard ${info.version} bundles code from these ${notices.length} packages:\n\n${notices.join('\n' + '-'.repeat(78) + '\n\n')}`,
);
if (process.argv.includes('--metafile')) writeFileSync(join(ROOT, 'dist', 'bundle', 'meta.json'), JSON.stringify(result.metafile));

const outputs = Object.entries(result.metafile.outputs).filter(([f]) => f.endsWith('.js'));
const bytes = outputs.reduce((n, [, o]) => n + o.bytes, 0);
process.stdout.write(`bundled tokenguard ${info.version} (revision ${info.revision}): ${outputs.length} files, ${(bytes / 1024).toFixed(0)} KiB in ${relative(ROOT, OUT)}/, code from ${packages.size} packages, ${validators.size} ajv validators precompiled\n`);
