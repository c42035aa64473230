// Prometheus metrics (served at GET /metrics): one registry per process, below every layer that
// counts something (server, cluster). Modules register their own metrics here so names follow one
// convention: `tokenguard_` prefix, `_total`, `_seconds`.
//
// Metrics updated on every request cannot afford prom-client's per-update label hashing (it
// builds and hashes a label object on each inc()/observe(): measurable at thousands of reviews
// per second). So the hot path bumps plain numbers (Tally, RouteLatencyHistogram) and prom-client
// reads them at scrape time. Nothing changes for a scraper.

import { Counter, Registry, collectDefaultMetrics, type Metric } from 'prom-client';

export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: 'tokenguard_' });

/**
 * Counts by label values. A count's key is its label values joined by NUL, in the order of
 * `labelNames` (callers on the hot path keep the keys they use as constants); the labels are
 * rebuilt from the keys at scrape time, so counting allocates nothing.
 */
export class Tally<L extends string> {
  private readonly counts = new Map<string, number>();

  constructor(readonly labelNames: readonly L[]) {}

  add(key: string, n = 1): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + n);
  }

  /** A prom-client counter whose value at scrape time is this tally. */
  counter(name: string, help: string): Counter<L> {
    const { counts, labelNames } = this;
    return new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const [key, value] of counts) {
          const values = key.split('\0');
          this.inc(Object.fromEntries(labelNames.map((l, i) => [l, values[i] ?? ''])) as Record<L, string>, value);
        }
      },
    });
  }
}

/**
 * The latency histogram, kept as per-route bucket counts and reported in the shape prom-client's
 * registry renders for its own histograms (`_bucket` with cumulative `le`, `_sum`, `_count`).
 * prom-client's Histogram has no way to be fed pre-aggregated buckets, hence this small metric.
 */
export class RouteLatencyHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  /** Per route: counts per bucket (not cumulative; the last slot is +Inf), sum and count. */
  private readonly byRoute = new Map<string, { buckets: number[]; sum: number; count: number }>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: readonly number[],
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  observe(route: string, seconds: number): void {
    let r = this.byRoute.get(route);
    if (!r) this.byRoute.set(route, (r = { buckets: new Array<number>(this.bounds.length + 1).fill(0), sum: 0, count: 0 }));
    let b = 0;
    while (b < this.bounds.length && seconds > this.bounds[b]!) b++;
    r.buckets[b]!++;
    r.sum += seconds;
    r.count++;
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: { metricName: string; labels: Record<string, string | number>; value: number }[] } {
    const values = [];
    for (const [route, r] of this.byRoute) {
      let cumulative = 0;
      for (let i = 0; i < r.buckets.length; i++) {
        cumulative += r.buckets[i]!;
        values.push({ metricName: `${this.name}_bucket`, labels: { route, le: this.bounds[i] ?? '+Inf' }, value: cumulative });
      }
      values.push({ metricName: `${this.name}_sum`, labels: { route }, value: r.sum });
      values.push({ metricName: `${this.name}_count`, labels: { route }, value: r.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.byRoute.clear();
  }
}
