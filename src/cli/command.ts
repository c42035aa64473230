// The shape every subcommand has, and argument parsing shared by all of them.

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { errorCode, errorMessage } from '../observability/errors.js';

export interface Command {
  /** One or more words: `serve`, `token inspect`. */
  name: string;
  help: string;
  /**
   * The flags `run` parses (parseFlags' options): the CLI page of the docs is checked against
   * them, so a flag cannot exist without being documented.
   */
  flags: FlagOptions;
  /** Resolves to the exit code; -1 means "still running" (serve). */
  run(args: string[]): Promise<number>;
}

export type FlagOptions = NonNullable<ParseArgsConfig['options']>;

/** Wrong flags or arguments: exit code 2 and a pointer to --help. */
export class UsageError extends Error {}

/**
 * A failure the user can act on: `message` names what was wrong, `hint` what to do. main prints
 * both on one line, never a stack.
 */
export class CommandError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** The words of parseArgs' errors, as our own one-line usage errors (no library wording leaks out). */
function usageMessage(err: unknown): string {
  const text = errorMessage(err);
  const quoted = /'([^']*)'/.exec(text)?.[1] ?? '';
  switch (errorCode(err)) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown flag ${quoted}`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${JSON.stringify(quoted)}: this command takes flags only`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      const flag = quoted.split(' ')[0] ?? quoted;
      return /does not take an argument/.test(text) ? `flag ${flag} takes no value` : `flag ${flag} needs a value`;
    }
    default:
      return text;
  }
}

export function parseFlags<T extends FlagOptions>(args: string[], options: T, allowPositionals = false) {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (err) {
    throw new UsageError(usageMessage(err));
  }
}

/** Every spelling of a command's flags, `--name` and `-x`, for help and docs checks. */
export function flagSpellings(options: FlagOptions): string[] {
  return Object.entries(options).flatMap(([name, o]) => [`--${name}`, ...(o.short ? [`-${o.short}`] : [])]);
}
