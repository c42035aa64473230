// A task run once at start and then on an interval, without keeping the process alive: the
// shape of issuer discovery and the token self-test.

export class Periodic {
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly task: () => Promise<unknown>,
    private readonly intervalSeconds: number,
  ) {}

  /** A first run now, then every `intervalSeconds`; a second start() is a no-op. */
  start(): void {
    if (this.timer) return;
    void this.task();
    this.timer = setInterval(() => void this.task(), this.intervalSeconds * 1000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
