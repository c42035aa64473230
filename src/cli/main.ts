#!/usr/bin/env node
// tokenguard: the command-line entry. Each subcommand lives in its own module.

import { fileURLToPath } from 'node:url';
import { buildInfo, versionText } from '../observability/build-info.js';
import { CommandError, UsageError, type Command } from './command.js';
import { errorMessage, errorStack } from '../observability/errors.js';

/**
 * The subcommands, each loaded only when it runs: `serve` must not carry the other commands'
 * modules (and @kubernetes/client-node with them) in its memory. Multi-word names form a group
 * (`token`, `dev`) that answers --help with its subcommands.
 */
export const COMMANDS: { name: string; summary: string; load: () => Promise<Command> }[] = [
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
  {
    name: 'dev register',
    summary: "register a locally running tokenguard's webhooks with the cluster of your kubeconfig",
    load: async () => (await import('./dev.js')).devRegisterCommand,
  },
  {
    name: 'dev unregister',
    summary: 'remove the webhooks `dev register` created',
    load: async () => (await import('./dev.js')).devUnregisterCommand,
  },
];

/** What each group of subcommands is about, for `tokenguard <group> --help`. */
const GROUPS: Record<string, string> = {
  generate: 'generate objects from the configuration for the API server to run',
  token: 'service-account tokens',
  dev: 'develop against a real cluster: point its webhooks at a tokenguard on this machine (npm start)',
};

function commandList(commands: typeof COMMANDS): string[] {
  const width = Math.max(...commands.map((c) => c.name.length));
  return commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
}

function usage(): string {
  return [
    'tokenguard: admission webhook that prevents service-account token and volume outages',
    '',
    'Usage: tokenguard <command> [flags]      (from a checkout: npx tokenguard <command> [flags])',
    '',
    'Commands:',
    ...commandList(COMMANDS),
    '',
    'Flags:',
    '  -h, --help     show help (also: tokenguard <command> --help)',
    '  -v, --version  print the version and the source revision',
  ].join('\n');
}

function groupUsage(group: string): string {
  const members = COMMANDS.filter((c) => c.name.startsWith(`${group} `));
  return [
    `Usage: tokenguard ${group} <subcommand> [flags]`,
    '',
    `${GROUPS[group] ?? group}.`,
    '',
    'Subcommands:',
    ...commandList(members),
    '',
    `Each answers --help: tokenguard ${members[0]!.name} --help`,
  ].join('\n');
}

const isHelp = (a: string | undefined) => a === '-h' || a === '--help' || a === 'help';

export async function main(argv: string[]): Promise<number> {
  const first = argv[0];
  if (!first || isHelp(first)) {
    process.stdout.write(usage() + '\n');
    return first ? 0 : 2;
  }
  if (first === '-v' || first === '--version' || first === 'version') {
    process.stdout.write(versionText(buildInfo()) + '\n');
    return 0;
  }
  // Multi-word commands ("token inspect") match on as many words as they have.
  const entry = COMMANDS.find((c) => c.name.split(' ').every((w, i) => argv[i] === w));
  if (!entry) {
    if (first in GROUPS) {
      const second = argv[1];
      if (isHelp(second)) {
        process.stdout.write(groupUsage(first) + '\n');
        return 0;
      }
      const what = second === undefined ? 'missing a subcommand' : `unknown subcommand ${JSON.stringify(second)}`;
      process.stderr.write(`tokenguard ${first}: ${what} (see tokenguard ${first} --help)\n`);
      return 2;
    }
    process.stderr.write(`tokenguard: unknown command ${JSON.stringify(first)} (see tokenguard --help)\n`);
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
    process.stderr.write(`${errorLine(command.name, err)}\n`);
    return err instanceof UsageError ? 2 : err instanceof CommandError ? err.exitCode : 1;
  }
}

/** The one line a failed command prints: what was wrong, and what to do. */
export function errorLine(command: string, err: unknown): string {
  if (err instanceof UsageError) return `tokenguard ${command}: ${err.message} (see tokenguard ${command} --help)`;
  if (err instanceof CommandError) return `tokenguard ${command}: ${err.message}${err.hint ? `; ${err.hint}` : ''}`;
  return `tokenguard ${command}: ${errorMessage(err)}`;
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
