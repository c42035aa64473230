// Shell-style globs (`*` any run, `?` one character) for namespace names, users and audiences.

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  // `u`: `?` is one character (code point), as the docs say, not half of one outside the BMP.
  return new RegExp(`^${body}$`, 'u');
}

/** One predicate for a list of exact values and globs; exact values are a Set lookup. */
export function globMatcher(patterns: readonly string[]): (value: string) => boolean {
  const exact = new Set(patterns.filter((p) => !/[*?]/.test(p)));
  const globs = patterns.filter((p) => /[*?]/.test(p)).map(globToRegExp);
  if (globs.length === 0) return (v) => exact.has(v);
  return (v) => exact.has(v) || globs.some((re) => re.test(v));
}

/**
 * The entries that apply in a namespace, in their order: the one way every per-namespace setting
 * is scoped (namespace overrides of modes, lifetime bounds, audiences). Each entry's `namespaces`
 * are exact names or globs, compiled once; callers fold the matching entries as their setting
 * needs (the last one wins, later bounds override earlier ones, lists add up). An entry that also
 * names `serviceAccounts` (the token policies' entries) applies only to objects of a matching
 * ServiceAccount: a caller that passes none gets no such entry.
 */
export function namespaceScope<E extends { namespaces: readonly string[]; serviceAccounts?: readonly string[] }>(
  entries: readonly E[],
): (namespace: string | undefined, serviceAccount?: string) => E[] {
  const compiled = entries.map((entry) => ({
    entry,
    matches: globMatcher(entry.namespaces),
    account: entry.serviceAccounts ? globMatcher(entry.serviceAccounts) : undefined,
  }));
  return (namespace, serviceAccount) =>
    namespace === undefined
      ? []
      : compiled.filter((c) => c.matches(namespace) && (!c.account || (serviceAccount !== undefined && c.account(serviceAccount)))).map((c) => c.entry);
}
