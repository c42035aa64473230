// The shape every subcommand has, and argument parsing shared by all of them.

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { errorMessage } from '../observability/errors.js';

export interface Command {
  /** One or more words: `serve`, `token inspect`. */
  name: string;
  help: string;
  /** Resolves to the exit code; -1 means "still running" (serve). */
  run(args: string[]): Promise<number>;
}

/** Wrong flags or arguments: exit code 2 and a pointer to --help. */
export class UsageError extends Error {}

export function parseFlags<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T, allowPositionals = false) {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }
}
