// Prometheus metrics (served at GET /metrics): one registry per process, below every layer that
// counts something (server, cluster). Modules register their own metrics here so names follow one
// convention: `tokenguard_` prefix, `_total`, `_seconds`.
//
// Metrics updated on every request cannot afford prom-client's per-update label hashing (it
// builds and hashes a label object on each inc()/observe(): measurable at thousands of reviews
// per second). So the hot path bumps plain numbers (Tally, RouteLatencyHistogram) and prom-client
// reads them at scrape time. Nothing changes for a scraper.

import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import { buildInfo } from './build-info.js';

export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: 'tokenguard_' });

/**
 * Which build is running, as labels on a constant 1 (the Prometheus convention for build
 * information): `count by (version) (tokenguard_build_info)` shows a rollout's progress, and a
 * query joins on it to put the version beside any other series.
 */
export const buildInfoGauge = new Gauge({
  name: 'tokenguard_build_info',
  help: 'Always 1; its labels say which build runs: version (package.json), revision (git commit), node_version.',
  labelNames: ['version', 'revision', 'node_version'] as const,
  registers: [registry],
  collect() {
    // Read at scrape time, not at import: the tsc build asks git for its revision once, on first use.
    const { version, revision } = buildInfo();
    this.set({ version, revision, node_version: process.version }, 1);
  },
});

/**
 * When the certificates in use expire, as Unix time: what a "renew before it is too late" alert
 * compares with time(). The server sets `serving` and `client_ca` when it loads them; self-managed
 * TLS (cluster/cert-controller.ts) sets `ca`, the CA that signs the serving certificate.
 */
export const certificateNotAfter = new Gauge({
  name: 'tokenguard_tls_certificate_not_after_seconds',
  help: 'Expiry (notAfter, Unix time) of the earliest-expiring certificate in use, by certificate: serving (tls.crt and its chain), client_ca (the caller-auth client CA) or ca (the self-managed CA that signs the serving certificate).',
  labelNames: ['certificate'] as const,
  registers: [registry],
});

/** One count of a Tally, which a hot path that keeps it bumps with no lookup at all (`cell.n++`). */
export interface Cell {
  n: number;
}

/**
 * Counts by label values. A count's key is its label values joined by NUL, in the order of
 * `labelNames` (callers on the hot path keep the keys, or the cells, they use); the labels are
 * rebuilt from the keys at scrape time, so counting allocates nothing.
 */
export class Tally<L extends string> {
  private readonly counts = new Map<string, Cell>();

  constructor(readonly labelNames: readonly L[]) {}

  /** The count of `key` (created at 0, and reported from then on). */
  cell(key: string): Cell {
    let c = this.counts.get(key);
    if (c === undefined) this.counts.set(key, (c = { n: 0 }));
    return c;
  }

  add(key: string, n = 1): void {
    this.cell(key).n += n;
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
        for (const [key, { n }] of counts) {
          const values = key.split('\0');
          this.inc(Object.fromEntries(labelNames.map((l, i) => [l, values[i] ?? ''])) as Record<L, string>, n);
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
