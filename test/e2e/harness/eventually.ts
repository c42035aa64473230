// Waiting for what a real cluster does asynchronously (a watch reaching tokenguard's cache, a
// controller acting): the shared poll, with the pace and bound of a real control plane (each
// check is often a kubectl run).

import { eventually as poll } from '../../helpers/eventually.js';

export function eventually<T>(check: () => Promise<T | undefined | false>, what: string, timeoutMs = 30_000): Promise<T> {
  return poll(check, what, timeoutMs, 200);
}
