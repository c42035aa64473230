// Log lines a remote party can cause once per request (a malformed review, a failed caller, a
// broken TLS handshake) must not let whoever reaches the port fill the node's disk or the log
// pipeline: a fuzz of 52,000 malformed reviews once wrote one line per request. Per event (a
// reason of ours: `rejected_bad_json`, `caller_missing`, ...), the first `burst` lines of each
// interval are logged whole; the rest are counted, and one summary line
// at the end of the interval gives the count suppressed and an example. The metrics still count
// every one (the callers' business, not this module's).

import type { Logger, LogLevel } from './log.js';

export interface LogLimits {
  /** Lines logged whole per event and interval. */
  burst: number;
  /** The interval, in milliseconds. */
  intervalMs: number;
}

/**
 * 5 whole lines a minute per event, then one summary: enough to see the pattern (addresses,
 * identities, messages) of a real problem at once, and a flood costs at most 6 lines a minute per
 * event. docs/operations.md gives the reasoning.
 */
export const DEFAULT_LOG_LIMITS: LogLimits = { burst: 5, intervalMs: 60_000 };

interface Window {
  start: number;
  logged: number;
  suppressed: number;
  /** The last line suppressed: the summary's example. */
  example?: { level: LogLevel; msg: string; fields: Record<string, unknown> };
}

export class RateLimitedLog {
  private readonly windows = new Map<string, Window>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly limits: LogLimits = DEFAULT_LOG_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Log `msg` at `level` (with the field `event`) unless this interval's burst of `event` is spent;
   * then count it. `event` must come from a fixed set (each has a window): never a value a caller
   * chooses.
   */
  log(level: LogLevel, event: string, msg: string, fields: Record<string, unknown>): void {
    if (!this.logger.enabled(level)) return;
    const now = this.now();
    let w = this.windows.get(event);
    if (w && now - w.start >= this.limits.intervalMs) {
      this.summarise(event, w);
      w = undefined;
    }
    if (!w) this.windows.set(event, (w = { start: now, logged: 0, suppressed: 0 }));
    if (w.logged < this.limits.burst) {
      w.logged++;
      this.logger[level](msg, { event, ...fields });
      return;
    }
    w.suppressed++;
    w.example = { level, msg, fields };
    this.schedule();
  }

  /** Write the summary of every window with lines suppressed, and start afresh (on shutdown, and in tests). */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const [event, w] of this.windows) this.summarise(event, w);
    this.windows.clear();
  }

  private summarise(event: string, w: Window): void {
    if (!w.example) return;
    const { level, msg, fields } = w.example;
    this.logger[level]('log lines suppressed', {
      event,
      suppressed: w.suppressed,
      intervalSeconds: this.limits.intervalMs / 1000,
      example: { msg, ...fields },
    });
    w.example = undefined;
    w.suppressed = 0;
  }

  /** A summary is due at the end of the earliest window with lines suppressed; a flood that stops still gets its line. */
  private schedule(): void {
    if (this.timer) return;
    let due = Infinity;
    for (const w of this.windows.values()) if (w.example) due = Math.min(due, w.start + this.limits.intervalMs);
    if (due === Infinity) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const now = this.now();
      for (const [event, w] of this.windows) {
        if (now - w.start < this.limits.intervalMs) continue;
        this.summarise(event, w);
        this.windows.delete(event);
      }
      this.schedule();
    }, Math.max(0, due - this.now()));
    // A pending summary must not keep an otherwise finished process alive.
    this.timer.unref();
  }
}
