#!/usr/bin/env node
// tokenguard: the command-line entry. Each subcommand lives in its own module.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { UsageError, type Command } from './command.js';
import { serveCommand } from './serve.js';
import { tokenInspectCommand } from './token-inspect.js';
import { checkCommand } from './check.js';
import { auditCommand } from './audit.js';

const COMMANDS: Command[] = [serveCommand, checkCommand, auditCommand, tokenInspectCommand];

export function version(): string {
  const pkg = fileURLToPath(new URL('../../../package.json', import.meta.url));
  return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
}

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'tokenguard: admission webhook that prevents service-account token and volume outages',
    '',
    'Usage: tokenguard <command> [flags]',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Flags:',
    '  -h, --help     show help (also: tokenguard <command> --help)',
    '  -v, --version  print the version',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const first = argv[0];
  if (!first || first === '-h' || first === '--help' || first === 'help') {
    process.stdout.write(usage() + '\n');
    return first ? 0 : 2;
  }
  if (first === '-v' || first === '--version' || first === 'version') {
    process.stdout.write(`tokenguard ${version()}\n`);
    return 0;
  }
  // Multi-word commands ("token inspect") match on as many words as they have.
  const command = COMMANDS.find((c) => {
    const words = c.name.split(' ');
    return words.every((w, i) => argv[i] === w);
  });
  if (!command) {
    process.stderr.write(`tokenguard: unknown command ${JSON.stringify(first)}\n\n${usage()}\n`);
    return 2;
  }
  const args = argv.slice(command.name.split(' ').length);
  if (args.includes('-h') || args.includes('--help')) {
    process.stdout.write(command.help + '\n');
    return 0;
  }
  try {
    return await command.run(args);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`tokenguard ${command.name}: ${err.message}\n(see tokenguard ${command.name} --help)\n`);
      return 2;
    }
    process.stderr.write(`tokenguard ${command.name}: ${(err as Error).message ?? String(err)}\n`);
    return 1;
  }
}

const invokedDirectly = process.argv[1] && fileURLToPath(import.meta.url) === (await import('node:fs')).realpathSync(process.argv[1]);
if (invokedDirectly) {
  main(process.argv.slice(2)).then(
    (code) => {
      // `serve` keeps running; every other command ends with its exit code.
      if (code !== -1) process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`tokenguard: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
