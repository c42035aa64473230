// The documentation, checked like code: the README stays short (the reference lives in docs/),
// every relative link in README.md and docs/ resolves (files, and #anchors by GitHub's rules),
// every flag of every command (as the code parses it) is on the CLI page, and the endpoints page
// lists exactly the admission routes of src/admission/routes.ts; the warning limits stated anywhere
// are the code's, and the image size stated is the one hack/image-size.mjs records.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { ADMISSION_ROUTES } from '../src/admission/routes.js';
import { MAX_TOTAL_WARNING_CHARS, MAX_WARNING_CHARS } from '../src/admission/warnings.js';
import { pathToFileURL } from 'node:url';
import { flagSpellings } from '../src/cli/command.js';
import { COMMANDS } from '../src/cli/main.js';
import { PROJECT_ROOT } from './helpers/tls.js';
import { docBlocks, missingLines, pages, shapeOf } from './e2e/node/docs-run.js';

const README = join(PROJECT_ROOT, 'README.md');
const DOCS = join(PROJECT_ROOT, 'docs');

function markdownFiles(): string[] {
  return [README, ...readdirSync(DOCS).filter((f) => f.endsWith('.md')).map((f) => join(DOCS, f))];
}

/** The lines outside fenced code blocks (a `# comment` in a shell block is no heading). */
function prose(text: string): string[] {
  const out: string[] = [];
  let fenced = false;
  for (const line of text.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      out.push('');
      continue;
    }
    out.push(fenced ? '' : line);
  }
  return out;
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens; repeats get -1, -2, ... */
export function githubAnchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const anchors = new Set<string>();
  for (const line of prose(text)) {
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const plain = m[1]!
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .replace(/<[^>]+>/g, '')
      .toLowerCase();
    const base = plain.replace(/[^\p{L}\p{N}\s_-]/gu, '').trim().replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

/** Relative links `[text](target)` outside code. */
function relativeLinks(text: string): string[] {
  const links: string[] = [];
  for (const line of prose(text)) {
    const withoutCode = line.replace(/`[^`]*`/g, '');
    for (const m of withoutCode.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
      const target = m[1]!;
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:
      links.push(target);
    }
  }
  return links;
}

describe('documentation', () => {
  it('README.md stays a short entry point (at most 200 lines); the reference lives in docs/', () => {
    const lines = readFileSync(README, 'utf8').trimEnd().split('\n').length;
    assert.ok(lines <= 200, `README.md has ${lines} lines`);
  });

  it('keeps the README test command CI runs, and the start command', () => {
    const readme = readFileSync(README, 'utf8');
    assert.ok(readme.includes('npm ci && npm test'), 'npm ci && npm test');
    assert.ok(readme.includes('npm ci && npm start'), 'npm ci && npm start');
  });

  it('every relative link in README.md and docs/ resolves, anchors included', () => {
    const problems: string[] = [];
    for (const file of markdownFiles()) {
      const from = relative(PROJECT_ROOT, file);
      for (const link of relativeLinks(readFileSync(file, 'utf8'))) {
        const [path, anchor] = link.split('#', 2) as [string, string | undefined];
        const target = path ? resolve(dirname(file), decodeURIComponent(path)) : file;
        const rel = relative(PROJECT_ROOT, target);
        if (!existsSync(target)) {
          problems.push(`${from}: ${link}: no file ${rel}`);
          continue;
        }
        if (anchor === undefined) continue;
        if (!statSync(target).isFile() || !target.endsWith('.md')) {
          problems.push(`${from}: ${link}: an anchor into ${rel}, which is no Markdown page`);
          continue;
        }
        if (!githubAnchors(readFileSync(target, 'utf8')).has(anchor)) problems.push(`${from}: ${link}: no heading #${anchor} in ${rel}`);
      }
    }
    assert.deepEqual(problems, []);
  });

  it('ships the licence package.json names, a security policy and this release\'s changelog', () => {
    const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8'));
    assert.equal(pkg.license, 'Apache-2.0');
    const license = readFileSync(join(PROJECT_ROOT, 'LICENSE'), 'utf8');
    assert.match(license, /^\s*Apache License\n\s*Version 2\.0, January 2004\n/);
    assert.match(license, /END OF TERMS AND CONDITIONS/);
    assert.ok(license.length > 10_000, 'the full text');
    const security = readFileSync(join(PROJECT_ROOT, 'SECURITY.md'), 'utf8');
    assert.match(security, /^## Reporting a vulnerability$/m);
    assert.match(security, /does \*\*not\*\* protect/);
    const changelog = readFileSync(join(PROJECT_ROOT, 'CHANGELOG.md'), 'utf8');
    const unreleased = changelog.slice(changelog.indexOf('## [Unreleased]'), changelog.indexOf('\n## [', changelog.indexOf('## [Unreleased]') + 1));
    assert.match(unreleased, /dev register/);
  });

  it('GitHub anchor rules: code, punctuation and repeats', () => {
    const anchors = githubAnchors('# `tokenguard dev register` and `tokenguard dev unregister`\n## The PVC deletion guard (`pvc-in-use`)\n## Tests\n## Tests\n```sh\n# not a heading\n```\n');
    assert.deepEqual([...anchors], ['tokenguard-dev-register-and-tokenguard-dev-unregister', 'the-pvc-deletion-guard-pvc-in-use', 'tests', 'tests-1']);
  });

  it('the CLI page has a section for every command, naming every flag the code parses, and so does its --help', async () => {
    const page = readFileSync(join(DOCS, 'cli.md'), 'utf8');
    const sections = page.split(/^## /m).slice(1);
    const missing: string[] = [];
    for (const entry of COMMANDS) {
      const command = await entry.load();
      const section = sections.find((s) => s.split('\n')[0]!.includes(`tokenguard ${command.name}\``));
      if (!section) {
        missing.push(`no section for tokenguard ${command.name}`);
        continue;
      }
      for (const flag of flagSpellings(command.flags)) {
        if (!new RegExp(`(\`|, )${flag}[\` =\\\\|,]`).test(section)) missing.push(`tokenguard ${command.name}: ${flag} not on the CLI page`);
        if (!new RegExp(`(^|[\\s\\[,])${flag}\\b`, 'm').test(command.help)) missing.push(`tokenguard ${command.name}: ${flag} not in --help`);
      }
    }
    assert.deepEqual(missing, []);
  });

  it('every kubectl command of the install, runbook and troubleshooting pages is in a block the node suite runs, or marked with why not', () => {
    const blocks = pages();
    for (const file of ['installation.md', 'runbooks.md', 'troubleshooting.md']) {
      const text = readFileSync(join(PROJECT_ROOT, 'docs', file), 'utf8');
      // Lines that start a kubectl command (prompted or not) outside prose.
      const commandLines = text.split('\n').filter((l) => /^\s*(\$ )?kubectl\s/.test(l)).length;
      const inBlocks = blocks.filter((b) => b.file === `docs/${file}`).reduce((n, b) => n + b.commands.filter((c) => /^kubectl\s/.test(c)).length, 0);
      assert.equal(inBlocks, commandLines, `docs/${file}: every kubectl line is read as a command`);
    }
    const uninstall = blocks.filter((b) => b.file === 'docs/installation.md' && b.section === 'Uninstall' && !b.skip);
    assert.ok(uninstall.some((b) => b.commands.some((c) => /^kubectl delete -k /.test(c))), 'the uninstall steps run');
    for (const b of blocks.filter((x) => x.skip)) assert.match(b.skip!, /\S{3,}/, `${b.file}:${b.line} says why it is not run`);
  });

  it('the node suite reads pages as a person does: prompts, output, continuations, marks', () => {
    const page = ['# A', '', '<!-- node suite: skip: needs cert-manager -->', '    kubectl get certificate', '', '```', '$ kubectl get pods \\', '    -n x', 'NAME      READY', 'web-6d9f8c7b5d-2xkqp   1/1   40s', '```', ''].join('\n');
    const [skipped, shown] = docBlocks('p.md', page);
    assert.deepEqual([skipped!.commands, skipped!.skip], [['kubectl get certificate'], 'needs cert-manager']);
    assert.deepEqual([shown!.commands, shown!.expected], [['kubectl get pods -n x'], [['NAME      READY', 'web-6d9f8c7b5d-2xkqp   1/1   40s']]]);
    assert.ok(shapeOf('web-6d9f8c7b5d-2xkqp   1/1   40s').test('web-7c4b9d8f6-q2w8z 1/1 3m12s'));
    assert.deepEqual(missingLines(['Error from server (Forbidden): denied: PVC a/b would hang ...'], 'Error from server (Forbidden): denied: PVC a/b would hang in Terminating'), []);
    assert.deepEqual(missingLines(['pod/x created'], 'pod/y created'), ['pod/x created']);
  });

  it('the endpoints table lists exactly the admission routes of src/admission/routes.ts', () => {
    const page = readFileSync(join(DOCS, 'operations.md'), 'utf8');
    const section = page.slice(page.indexOf('## Endpoints'), page.indexOf('\n## ', page.indexOf('## Endpoints') + 1));
    const documented = [...section.matchAll(/^\| `POST (\/[a-z]+)` \|/gm)].map((m) => m[1]);
    assert.deepEqual(documented.sort(), Object.values(ADMISSION_ROUTES).map((r) => r.path).sort());
  });

  it('every warning limit the docs state is the code\'s: MAX_WARNING_CHARS per warning, MAX_TOTAL_WARNING_CHARS in all', () => {
    const stated: string[] = [];
    for (const file of markdownFiles()) {
      // Paragraphs and table rows of prose, whitespace joined: a limit may be stated across a line break.
      const blocks = prose(readFileSync(file, 'utf8')).join('\n').split(/\n\s*\n|\n(?=\|)/).map((b) => b.replace(/\s+/g, ' '));
      for (const block of blocks) {
        if (!/warning/i.test(block)) continue;
        for (const m of block.matchAll(/(\d+)(?:\/(\d+))?[- ](?:characters?|chars)\b/g)) {
          for (const n of [m[1], m[2]].filter((x): x is string => x !== undefined)) {
            stated.push(n);
            assert.ok(
              [MAX_WARNING_CHARS, MAX_TOTAL_WARNING_CHARS].includes(Number(n)),
              `${relative(PROJECT_ROOT, file)}: "${m[0]}" in a paragraph about warnings; the code's limits are ${MAX_WARNING_CHARS} per warning and ${MAX_TOTAL_WARNING_CHARS} in all: ${block.slice(0, 200)}`,
            );
          }
        }
      }
    }
    assert.ok(stated.includes(String(MAX_WARNING_CHARS)) && stated.includes(String(MAX_TOTAL_WARNING_CHARS)), `the docs state both limits: ${stated.join(', ')}`);
  });

  it('the image size the docs state is the one recorded in hack/image-size.mjs (which the image test checks builds against)', async () => {
    const { RECORDED_ABOVE_BASE_MB } = await import(pathToFileURL(join(PROJECT_ROOT, 'hack', 'image-size.mjs')).href);
    const sizes: string[] = [];
    for (const file of markdownFiles()) {
      const text = prose(readFileSync(file, 'utf8')).join(' ').replace(/\s+/g, ' ');
      // What the image adds, not a budget for it ("within 20 MB above the base").
      for (const m of text.matchAll(/(?<!within |at most |[\d.])(\d+(?:\.\d+)?) MB above the base/g)) sizes.push(`${relative(PROJECT_ROOT, file)}: ${m[1]}`);
    }
    assert.ok(sizes.length > 0, 'the docs state the image size');
    for (const s of sizes) assert.equal(Number(s.split(': ')[1]), RECORDED_ABOVE_BASE_MB, `${s} MB above the base, recorded ${RECORDED_ABOVE_BASE_MB} MB`);
  });
});
