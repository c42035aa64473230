#!/usr/bin/env node
// Fails unless node_modules holds the whole locked dependency tree, naming what is missing.
//
// Why: `npm ci` has been seen to print `npm error Exit handler never called!`, exit 0 and leave a
// partial node_modules. A build that trusted its exit code would go on with packages missing.
// `npm ls --all` compares node_modules with package.json and the lock file: every package that is
// missing or at another version than required is a problem line ("missing: jose@6.2.18, required by
// tokenguard@0.1.0"). Optional dependencies for other platforms are not problems.
//
//   node hack/check-deps.mjs [npm ls flags, e.g. --omit=dev]

import { spawnSync } from 'node:child_process';

const args = ['ls', '--all', '--json', ...process.argv.slice(2)];
const ls = spawnSync('npm', args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
let problems;
try {
  problems = JSON.parse(ls.stdout).problems ?? [];
} catch {
  problems = [`npm ${args.join(' ')} gave no readable answer (exit ${ls.status}): ${(ls.stderr || String(ls.error ?? '')).trim()}`];
}
// Extraneous packages (installed, required by nobody) do no harm to the build; anything else does.
const fatal = problems.filter((p) => !p.startsWith('extraneous:'));
if (ls.status !== 0 && fatal.length === 0) fatal.push(`npm ${args.join(' ')} exited ${ls.status}: ${ls.stderr.trim()}`);
if (fatal.length) {
  process.stderr.write(
    `dependency tree incomplete: node_modules does not match package-lock.json (did npm ci stop early?)\n` +
      fatal.map((p) => `  ${p}\n`).join(''),
  );
  process.exit(1);
}
process.stdout.write(`dependency tree complete (npm ${args.filter((a) => a !== '--json').join(' ')})\n`);
