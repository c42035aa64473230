#!/usr/bin/env node
// tokenguard: the command-line entry. Each subcommand lives in its own module.

import { fileURLToPath } from 'node:url';
import { buildInfo } from '../observability/build-info.js';
import { UsageError, type Command } from './command.js';
import { errorMessage, errorStack } from '../observability/errors.js';

/**
 * The subcommands, each loaded only when it runs: `serve` must not carry the other commands'
 * modules (and @kubernetes/client-node with them) in its memory.
 */
const COMMANDS: { name: string; summary: string; load: () => Promise<Command> }[] = [
  { name: 'serve', summary: 'serve the admission webhook over HTTPS', load: async () => (await import('./serve.js')).serveCommand },
  { name: 'check', summary: 'run the policies offline on manifests (files, directories, stdin)', load: async () => (await import('./check.js')).checkCommand },
  {
    name: 'audit',
    summary: 'audit a live cluster: in-use Terminating claims, token risks, policy findings, issuers',
    load: async () => (await import('./audit.js')).auditCommand,
  },
  {
    name: 'generate vap',
    summary: 'print the pure policies as ValidatingAdmissionPolicies (and a MutatingAdmissionPolicy) for kube-apiserver',
    load: async () => (await import('./generate-vap.js')).generateVapCommand,
  },
  {
    name: 'token inspect',
    summary: 'decode a service-account token and say whether kube-apiserver would accept it',
    load: async () => (await import('./token-inspect.js')).tokenInspectCommand,
  },
];

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
    '  -v, --version  print the version and the source revision',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const first = argv[0];
  if (!first || first === '-h' || first === '--help' || first === 'help') {
    process.stdout.write(usage() + '\n');
    return first ? 0 : 2;
  }
  if (first === '-v' || first === '--version' || first === 'version') {
    const { version, revision } = buildInfo();
    process.stdout.write(`tokenguard ${version} (revision ${revision})\n`);
    return 0;
  }
  // Multi-word commands ("token inspect") match on as many words as they have.
  const entry = COMMANDS.find((c) => {
    const words = c.name.split(' ');
    return words.every((w, i) => argv[i] === w);
  });
  if (!entry) {
    process.stderr.write(`tokenguard: unknown command ${JSON.stringify(first)}\n\n${usage()}\n`);
    return 2;
  }
  const command = await entry.load();
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
    process.stderr.write(`tokenguard ${command.name}: ${errorMessage(err)}\n`);
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
      process.stderr.write(`tokenguard: ${errorStack(err)}\n`);
      process.exitCode = 1;
    },
  );
}
