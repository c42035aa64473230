// The docs, run: the install, verify and uninstall steps of docs/installation.md and every kubectl
// command block of docs/runbooks.md and docs/troubleshooting.md, taken from the pages themselves
// (so they cannot drift apart), run on the node as an admin would run them. Each block must
// succeed, and where a page shows a command's output (`$ kubectl ...` followed by what it prints),
// what kubectl prints must have that shape (names with hashes, ages and IPs vary).
//
// A page may mark a block that cannot run here, on the line before it, with the reason:
//   <!-- node suite: skip: needs cert-manager -->
// a block whose final grep may find nothing on a healthy cluster:
//   <!-- node suite: may find nothing: a healthy cluster has no failed self-test -->
// and a block whose final command reports what it found with exit status 1 (tokenguard audit):
//   <!-- node suite: exits 1 on findings: the claims the alert is about -->

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../helpers/tls.js';

export interface DocBlock {
  file: string;
  /** 1-based line of the block's first line. */
  line: number;
  /** The heading the block is under. */
  section: string;
  /** Shell lines, continuations joined; `$ ` prompts removed. */
  commands: string[];
  /** For console blocks: what each command prints, as the page shows it. */
  expected: string[][];
  skip?: string;
  mayFindNothing?: string;
  exitsOneOnFindings?: string;
}

const MARK = /^<!-- node suite: (skip|may find nothing|exits 1 on findings): (.+?) -->$/;

/** The blocks of a page that hold a kubectl command, in page order. */
export function docBlocks(file: string, markdown: string): DocBlock[] {
  const lines = markdown.split('\n');
  const blocks: DocBlock[] = [];
  let section = '';
  let mark: { kind: string; why: string } | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (/^#+ /.test(line)) section = line.replace(/^#+ /, '');
    const m = MARK.exec(line.trim());
    if (m) {
      mark = { kind: m[1]!, why: m[2]! };
      continue;
    }
    let body: string[] | undefined;
    const start = i + 1;
    const fence = /^(\s*)```(\w*)\s*$/.exec(line);
    if (fence) {
      const indent = fence[1]!.length;
      body = [];
      for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i]!); i++) body.push(lines[i]!.slice(indent));
      if (!['', 'sh', 'bash', 'console', 'shell'].includes(fence[2]!)) body = undefined;
    } else if (/^ {4}\S/.test(line) && (i === 0 || lines[i - 1]!.trim() === '' || MARK.test(lines[i - 1]!.trim()))) {
      body = [];
      for (; i < lines.length && (/^ {4}/.test(lines[i]!) || (lines[i]!.trim() === '' && /^ {4}\S/.test(lines[i + 1] ?? ''))); i++) body.push(lines[i]!.slice(4));
      i--;
    }
    if (!body) {
      if (line.trim() !== '') mark = undefined;
      continue;
    }
    const block = parseBlock(body);
    if (block.commands.some((c) => /^kubectl\s/.test(c))) {
      const marked = mark?.kind === 'skip' ? { skip: mark.why } : mark?.kind === 'may find nothing' ? { mayFindNothing: mark.why } : mark ? { exitsOneOnFindings: mark.why } : {};
      blocks.push({ file, line: start, section, ...block, ...marked });
    }
    mark = undefined;
  }
  return blocks;
}

function parseBlock(body: string[]): { commands: string[]; expected: string[][] } {
  const console = body.some((l) => l.startsWith('$ '));
  const commands: string[] = [];
  const expected: string[][] = [];
  for (let i = 0; i < body.length; i++) {
    let l = body[i]!;
    if (console && !l.startsWith('$ ')) {
      if (expected.length) expected[expected.length - 1]!.push(l);
      continue;
    }
    if (console) l = l.slice(2);
    if (l.trim() === '' || l.trim().startsWith('#')) continue;
    while (l.endsWith('\\') && i + 1 < body.length) l = l.slice(0, -1).trimEnd() + ' ' + body[++i]!.trim();
    commands.push(l);
    if (console) expected.push([]);
  }
  return { commands, expected: console ? expected.map((e) => e.filter((x) => x.trim() !== '')) : [] };
}

/** The blocks of the three pages the suite runs. */
export function pages(): DocBlock[] {
  return ['installation.md', 'runbooks.md', 'troubleshooting.md'].flatMap((f) => docBlocks(`docs/${f}`, readFileSync(join(PROJECT_ROOT, 'docs', f), 'utf8')));
}

/**
 * A line a page shows, as a pattern for a line kubectl prints: the parts that differ from run to
 * run (a pod's hash suffix, an age, an IP, a time, an elision `...`) match anything of their kind.
 */
export function shapeOf(expected: string): RegExp {
  const token = (t: string): string => {
    if (t === '...') return '.*';
    if (/^\d+(s|m|h|d)(\d+(s|m|h))?$/.test(t)) return '\\d+[smhd](\\d+[smh])?';
    if (/^\d+\.\d+\.\d+\.\d+$/.test(t)) return '\\d+\\.\\d+\\.\\d+\\.\\d+';
    if (/^\d{4}-\d\d-\d\dT[\d:.]+Z$/.test(t)) return '\\S+';
    return t
      .replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
      .replace(/-[a-z0-9]{8,10}-[a-z0-9]{5}\b/g, '-[a-z0-9]+-[a-z0-9]+')
      .replace(/\\\.\\\.\\\.$/, '.*');
  };
  return new RegExp(`^${expected.trim().split(/\s+/).map(token).join('\\s+')}\\s*$`);
}

/** The expected lines the output lacks (each must match some printed line). */
export function missingLines(expected: string[], printed: string): string[] {
  const out = printed.split('\n').map((l) => l.trimEnd());
  return expected.filter((e) => !out.some((l) => shapeOf(e).test(l)));
}
