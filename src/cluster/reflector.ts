// List+watch of one resource into a keyed store of compact projections (the role client-go's
// Reflector plays). The loop: LIST in pages, replace the store, WATCH from the list's
// resourceVersion with bookmarks, apply events; on 410 Expired (HTTP or an ERROR event) relist;
// on any other failure retry with a capped, jittered backoff that never exceeds 30 s
// (spiffe/spire#5859: a guard that backs off for minutes is blind exactly when it is needed).

import { objectKey, type KubeObject } from '../k8s/object.js';
import { ApiError, isExpired, type ApiClient } from './client.js';
import { peekContinue, withoutManagedFields } from './list-body.js';
import { errorMessage } from '../observability/errors.js';

/** Hard upper bound on the wait between two attempts, whatever the configuration says. */
export const MAX_BACKOFF_MS = 30_000;
/** A LIST page that takes longer than this is abandoned (a half-open connection never answers). */
const LIST_PAGE_TIMEOUT_MS = 30_000;

export interface StoreListener<T> {
  /** The whole content was replaced (after a LIST). */
  replaced?(items: ReadonlyMap<string, T>): void;
  /** An object was added or changed (`previous` undefined when new). */
  upserted?(key: string, item: T, previous: T | undefined): void;
  deleted?(key: string, previous: T): void;
}

export interface ReflectorOptions<T> {
  /** Plural resource name, for logs and metrics: `pods`. */
  resource: string;
  /** Collection path: `/api/v1/pods`. */
  path: string;
  client: ApiClient;
  /** The compact projection kept in memory; undefined drops the object. */
  project: (obj: KubeObject) => T | undefined;
  listener?: StoreListener<T>;
  /**
   * Given the whole objects of each complete LIST (managedFields cut), for one-shot commands that
   * judge them (`audit`) instead of listing everything a second time. Unset in the server, where
   * no object is kept beyond its page.
   */
  listed?: (objects: KubeObject[]) => void;
  pageSize?: number;
  initialBackoffMs?: number;
  /** Capped at MAX_BACKOFF_MS. */
  maxBackoffMs?: number;
  /** Server-side watch timeout; randomized in [t, 2t) like client-go, so watches do not reconnect in step. */
  watchTimeoutSeconds?: number;
  onEvent?: (e: ReflectorEvent) => void;
  now?: () => number;
}

export type ReflectorEvent =
  | { kind: 'synced'; resource: string; objects: number; ms: number }
  | { kind: 'watch-restart'; resource: string; reason: 'expired' | 'closed' | 'error'; error?: string; retryInMs: number }
  | { kind: 'list-failed'; resource: string; error: string; retryInMs: number };

export class Reflector<T> {
  readonly resource: string;
  /** Projections by `namespace/name` (or `name` for cluster-scoped objects). */
  readonly items = new Map<string, T>();
  /** Completed at least one LIST. */
  synced = false;
  /** Since when (ms epoch) no watch has been open; undefined while one is open. */
  downSince: number | undefined;
  lastError: string | undefined;
  resourceVersion = '';
  watchRestarts = 0;

  private stopped = true;
  private abortWatch: (() => void) | undefined;
  private listAbort: AbortController | undefined;
  private sleepTimer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private attempt = 0;
  private readonly now: () => number;
  private firstSync: Promise<void>;
  private resolveFirstSync!: () => void;

  constructor(private readonly opts: ReflectorOptions<T>) {
    this.resource = opts.resource;
    this.now = opts.now ?? Date.now;
    this.firstSync = new Promise((r) => (this.resolveFirstSync = r));
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.downSince = this.now();
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    this.abortWatch?.();
    this.listAbort?.abort();
    clearTimeout(this.sleepTimer);
    this.wake?.();
  }

  /** Resolves after the first successful LIST. */
  whenSynced(): Promise<void> {
    return this.firstSync;
  }

  /** The delay before the next attempt: exponential, jittered, never above the cap. */
  nextBackoffMs(): number {
    const initial = this.opts.initialBackoffMs ?? 500;
    const cap = Math.min(this.opts.maxBackoffMs ?? MAX_BACKOFF_MS, MAX_BACKOFF_MS);
    const exp = Math.min(cap, initial * 2 ** Math.min(this.attempt, 20));
    this.attempt++;
    // Jitter in [exp/2, exp]: replicas restarting together do not hammer the API server in step.
    return Math.min(cap, Math.round(exp / 2 + (Math.random() * exp) / 2));
  }

  private async run(): Promise<void> {
    let needList = true;
    while (!this.stopped) {
      if (needList) {
        try {
          await this.list();
          needList = false;
        } catch (err) {
          if (this.stopped) return;
          const retryInMs = this.nextBackoffMs();
          this.lastError = errorMessage(err);
          this.opts.onEvent?.({ kind: 'list-failed', resource: this.resource, error: this.lastError, retryInMs });
          await this.sleep(retryInMs);
          continue;
        }
      }
      const outcome = await this.watchOnce();
      if (this.stopped) return;
      this.watchRestarts++;
      if (outcome.expired) {
        // Our resourceVersion is gone from the server's history: only a fresh LIST can resync.
        needList = true;
        this.opts.onEvent?.({ kind: 'watch-restart', resource: this.resource, reason: 'expired', error: outcome.error, retryInMs: 0 });
        continue;
      }
      // A watch the server closed after running a while (timeoutSeconds) is routine: reconnect at
      // once. One that failed or ended at once backs off, so a broken server is not hammered.
      const healthy = !outcome.error && outcome.ranMs >= 1000;
      if (healthy) this.attempt = 0;
      const retryInMs = healthy ? 0 : this.nextBackoffMs();
      if (outcome.error) this.lastError = outcome.error;
      this.opts.onEvent?.({
        kind: 'watch-restart',
        resource: this.resource,
        reason: outcome.error ? 'error' : 'closed',
        error: outcome.error,
        retryInMs,
      });
      if (retryInMs) await this.sleep(retryInMs);
    }
  }

  /**
   * LIST in pages. The next page is requested as soon as this page's continue token is known
   * from the head of its body (see peekContinue), so the API server prepares page n+1 while we
   * parse and project page n, instead of the two sides taking turns; when the head cannot be
   * read, the token comes from the parsed page as before.
   */
  private async list(): Promise<void> {
    const started = this.now();
    const pageSize = this.opts.pageSize ?? 500;
    const abort = (this.listAbort = new AbortController());
    const fetchPage = (cont: string): Promise<Buffer> => {
      const q = new URLSearchParams({ limit: String(pageSize) });
      if (cont) q.set('continue', cont);
      const page = this.opts.client.getBody(`${this.opts.path}?${q.toString()}`, { timeoutMs: LIST_PAGE_TIMEOUT_MS, signal: abort.signal });
      // Its failure is seen when it is awaited; until then (or when abandoned) it must not count as unhandled.
      page.catch(() => {});
      return page;
    };
    const fresh = new Map<string, T>();
    const whole: KubeObject[] | undefined = this.opts.listed ? [] : undefined;
    let cont = '';
    let rv = '';
    let pending = fetchPage(cont);
    try {
      for (;;) {
        let body: Buffer;
        try {
          body = await pending;
        } catch (err) {
          // The continue token outlived the server's history: start the LIST over (client-go does too).
          if (cont && isExpired(err)) {
            fresh.clear();
            if (whole) whole.length = 0;
            cont = '';
            pending = fetchPage(cont);
            continue;
          }
          throw err;
        }
        const ahead = peekContinue(body);
        const prefetched = ahead ? fetchPage(ahead) : undefined;
        // The request goes out only after client-node's async auth step and the agent's socket
        // assignment (microtasks, nextTick): yield one turn so it is on the wire before the
        // synchronous parse below holds the thread.
        if (prefetched) await new Promise<void>((r) => setImmediate(r));
        let page: KubeObject;
        try {
          // No projection reads managedFields, and they are half the parse time of a pod.
          page = JSON.parse(withoutManagedFields(body).toString('utf8'));
        } catch {
          throw new ApiError(0, `GET ${this.opts.path}: response is not JSON`);
        }
        if (!Array.isArray(page.items)) throw new ApiError(0, `GET ${this.opts.path}: response has no items array`);
        for (const obj of page.items) {
          const item = this.opts.project(obj);
          if (item !== undefined) fresh.set(objectKey(obj), item);
          whole?.push(obj);
        }
        rv ||= String(page.metadata?.resourceVersion ?? '');
        cont = page.metadata?.continue ?? '';
        if (!cont) break;
        pending = prefetched && ahead === cont ? prefetched : fetchPage(cont);
      }
    } catch (err) {
      abort.abort();
      throw err;
    }
    if (this.stopped) return;
    this.items.clear();
    for (const [k, v] of fresh) this.items.set(k, v);
    this.resourceVersion = rv;
    this.opts.listener?.replaced?.(this.items);
    if (whole) this.opts.listed!(whole);
    const first = !this.synced;
    this.synced = true;
    this.attempt = 0;
    if (first) this.resolveFirstSync();
    this.opts.onEvent?.({ kind: 'synced', resource: this.resource, objects: this.items.size, ms: this.now() - started });
  }

  private watchOnce(): Promise<{ expired: boolean; error?: string; ranMs: number }> {
    return new Promise((resolve) => {
      const opened = this.now();
      let expired = false;
      let eventError: string | undefined;
      let watchdog: NodeJS.Timeout | undefined;
      const base = this.opts.watchTimeoutSeconds ?? 300;
      const timeoutSeconds = Math.round(base * (1 + Math.random()));
      const done = (err: unknown) => {
        clearTimeout(watchdog);
        this.abortWatch = undefined;
        this.downSince ??= this.now();
        const ranMs = this.now() - opened;
        if (isExpired(err)) expired = true;
        const message = eventError ?? (err && !this.stopped ? describe(err) : undefined);
        resolve({ expired, error: message, ranMs });
      };
      const onEvent = (type: string, obj: KubeObject) => {
        switch (type) {
          case 'ADDED':
          case 'MODIFIED': {
            const key = objectKey(obj);
            const item = this.opts.project(obj);
            const previous = this.items.get(key);
            if (item === undefined) {
              if (previous !== undefined) {
                this.items.delete(key);
                this.opts.listener?.deleted?.(key, previous);
              }
            } else {
              this.items.set(key, item);
              this.opts.listener?.upserted?.(key, item, previous);
            }
            break;
          }
          case 'DELETED': {
            const key = objectKey(obj);
            const previous = this.items.get(key);
            if (previous !== undefined) {
              this.items.delete(key);
              this.opts.listener?.deleted?.(key, previous);
            }
            break;
          }
          case 'BOOKMARK':
            break;
          case 'ERROR':
            // A Status object; 410 means our resourceVersion expired.
            if (obj?.code === 410) expired = true;
            eventError = `watch ${this.opts.path}: ${obj?.code ?? ''} ${obj?.message ?? 'error event'}`.trim();
            this.abortWatch?.();
            return;
          default:
            return;
        }
        const rv = obj?.metadata?.resourceVersion;
        if (rv) this.resourceVersion = String(rv);
      };
      this.opts.client
        .watch(this.opts.path, { resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds }, onEvent, done)
        .then(
          ({ open, abort }) => {
            if (!open) return;
            this.abortWatch = abort;
            if (this.stopped) return abort();
            this.downSince = undefined;
            // A half-open connection never ends by itself: give the server its timeout plus a minute.
            watchdog = setTimeout(abort, (timeoutSeconds + 60) * 1000);
            watchdog.unref();
          },
          (err) => done(err),
        );
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.sleepTimer = setTimeout(resolve, ms);
    });
  }
}

function describe(err: unknown): string {
  const e = err as { message?: string; statusCode?: number; code?: string };
  if (e?.statusCode) return `HTTP ${e.statusCode} ${e.message ?? ''}`.trim();
  return e?.message || e?.code || String(err);
}
