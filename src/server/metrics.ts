// Prometheus metrics (served at GET /metrics). One registry per process; modules register their
// own metrics here so names stay in one place: `tokenguard_` prefix, `_total`, `_seconds`.
//
// The admission metrics are updated on every review, and prom-client builds and hashes a label
// object on each inc()/observe(): measurable at thousands of reviews per second. So the hot path
// only bumps plain numbers in maps keyed by the label values, and the prom-client metrics read
// them at scrape time (their `collect`/`get`). Nothing changes for a scraper.

import { Counter, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import type { Decision } from '../admission/engine.js';

export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: 'tokenguard_' });

/** Counts by label values; `key` is the values joined by NUL, `labels` builds them once per key. */
class Tally<L extends string> {
  private readonly counts = new Map<string, { labels: Record<L, string>; value: number }>();

  add(key: string, labels: () => Record<L, string>, n = 1): void {
    const entry = this.counts.get(key);
    if (entry) entry.value += n;
    else this.counts.set(key, { labels: labels(), value: n });
  }

  /** A prom-client counter whose value at scrape time is this tally. */
  counter(name: string, help: string, labelNames: readonly L[]): Counter<L> {
    const counts = this.counts;
    return new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const { labels, value } of counts.values()) this.inc(labels, value);
      },
    });
  }
}

const requests = new Tally<'route' | 'decision'>();
export const admissionRequests = requests.counter(
  'tokenguard_admission_requests_total',
  'Admission reviews answered, by route and decision (allowed, denied, invalid).',
  ['route', 'decision'],
);

const policyOutcomes = new Tally<'route' | 'policy' | 'decision' | 'mode'>();
export const policyDecisions = policyOutcomes.counter(
  'tokenguard_policy_decisions_total',
  'Policy outcomes per request, by route, policy, decision (denied, warned, patched) and mode.',
  ['route', 'policy', 'decision', 'mode'],
);

const warnings = new Tally<'route'>();
export const warningsEmitted = warnings.counter(
  'tokenguard_warnings_emitted_total',
  'Warnings returned to clients (after deduplication and limits), by route.',
  ['route'],
);

/**
 * The latency histogram, kept as per-route bucket counts and reported in the shape prom-client's
 * registry renders for its own histograms (`_bucket` with cumulative `le`, `_sum`, `_count`).
 * prom-client's Histogram has no way to be fed pre-aggregated buckets, hence this small metric.
 */
class RouteLatencyHistogram {
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

export const admissionDuration = new RouteLatencyHistogram(
  'tokenguard_admission_duration_seconds',
  'Time from the first byte of the request body to the response, by route.',
  [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
);

export function observeDecision(route: string, d: Decision, warningCount: number, seconds: number): void {
  const decision = d.allowed ? 'allowed' : 'denied';
  requests.add(route + '\0' + decision, () => ({ route, decision }));
  admissionDuration.observe(route, seconds);
  if (warningCount > 0) warnings.add(route, () => ({ route }), warningCount);
  for (const f of d.findings) {
    const outcome = f.severity === 'deny' && f.mode === 'enforce' ? 'denied' : 'warned';
    policyOutcomes.add(`${route}\0${f.policy}\0${outcome}\0${f.mode}`, () => ({ route, policy: f.policy, decision: outcome, mode: f.mode }));
  }
  if (d.patch) for (const p of d.fired) policyOutcomes.add(`${route}\0${p}\0patched`, () => ({ route, policy: p, decision: 'patched', mode: 'n/a' }));
}

export function observeInvalid(route: string): void {
  requests.add(route + '\0invalid', () => ({ route, decision: 'invalid' }));
}
