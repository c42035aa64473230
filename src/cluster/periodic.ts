// A task run once at start and then on an interval, without keeping the process alive: the
// shape of issuer discovery and the token self-test, which extend it.

export abstract class Periodic {
  private timer?: NodeJS.Timeout;

  constructor(private readonly intervalSeconds: number) {}

  /** The task; it must never reject (it reports its own failures). */
  protected abstract tick(): Promise<unknown>;

  /** A first run now, then every `intervalSeconds`; a second start() is a no-op. */
  start(): void {
    if (this.timer) return;
    void this.tick();
    this.timer = setInterval(() => void this.tick(), this.intervalSeconds * 1000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
