// Prometheus metrics (served at GET /metrics). One registry per process; modules register their
// own metrics here so names stay in one place: `tokenguard_` prefix, `_total`, `_seconds`.

import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Decision } from '../admission/engine.js';

export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: 'tokenguard_' });

export const admissionRequests = new Counter({
  name: 'tokenguard_admission_requests_total',
  help: 'Admission reviews answered, by route and decision (allowed, denied, invalid).',
  labelNames: ['route', 'decision'] as const,
  registers: [registry],
});

export const policyDecisions = new Counter({
  name: 'tokenguard_policy_decisions_total',
  help: 'Policy outcomes per request, by route, policy, decision (denied, warned, patched) and mode.',
  labelNames: ['route', 'policy', 'decision', 'mode'] as const,
  registers: [registry],
});

export const admissionDuration = new Histogram({
  name: 'tokenguard_admission_duration_seconds',
  help: 'Time from the first byte of the request body to the response, by route.',
  labelNames: ['route'] as const,
  buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  registers: [registry],
});

export const warningsEmitted = new Counter({
  name: 'tokenguard_warnings_emitted_total',
  help: 'Warnings returned to clients (after deduplication and limits), by route.',
  labelNames: ['route'] as const,
  registers: [registry],
});

// prom-client hashes a label object on every inc()/observe(); on the hot path the label children
// are looked up once per label combination and kept.
function childCache<T>(make: (...values: string[]) => T): (...values: string[]) => T {
  const cache = new Map<string, T>();
  return (...values) => {
    const key = values.join('\0');
    let child = cache.get(key);
    if (child === undefined) cache.set(key, (child = make(...values)));
    return child;
  };
}
const requestsBy = childCache((route, decision) => admissionRequests.labels(route!, decision!));
const durationBy = childCache((route) => admissionDuration.labels(route!));
const warningsBy = childCache((route) => warningsEmitted.labels(route!));
const policyBy = childCache((route, policy, decision, mode) => policyDecisions.labels(route!, policy!, decision!, mode!));

export function observeDecision(route: string, d: Decision, warningCount: number, seconds: number): void {
  requestsBy(route, d.allowed ? 'allowed' : 'denied').inc();
  durationBy(route).observe(seconds);
  if (warningCount > 0) warningsBy(route).inc(warningCount);
  for (const f of d.findings) {
    const decision = f.severity === 'deny' && f.mode === 'enforce' ? 'denied' : 'warned';
    policyBy(route, f.policy, decision, f.mode).inc();
  }
  if (d.patch) for (const p of d.fired) policyBy(route, p, 'patched', 'n/a').inc();
}

export function observeInvalid(route: string): void {
  requestsBy(route, 'invalid').inc();
}
