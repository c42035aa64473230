// What was thrown, as text: the one narrowing of `unknown` errors every layer uses (a `catch`
// binding is `unknown`, and not everything thrown is an Error).

/** The message of an Error, or the string form of anything else thrown. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** For logs: an Error's stack (its message with where it came from), or the string form. */
export function errorStack(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}

/** The `code` of a Node.js system error (`ENOENT`, `EACCES`, ...), if it has one. */
export function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}
