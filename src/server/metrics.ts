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

export function observeDecision(route: string, d: Decision, warningCount: number, seconds: number): void {
  admissionRequests.inc({ route, decision: d.allowed ? 'allowed' : 'denied' });
  admissionDuration.observe({ route }, seconds);
  if (warningCount > 0) warningsEmitted.inc({ route }, warningCount);
  for (const f of d.findings) {
    const decision = f.severity === 'deny' && f.mode === 'enforce' ? 'denied' : 'warned';
    policyDecisions.inc({ route, policy: f.policy, decision, mode: f.mode });
  }
  if (d.patch) for (const p of d.fired) policyDecisions.inc({ route, policy: p, decision: 'patched', mode: 'n/a' });
}

export function observeInvalid(route: string): void {
  admissionRequests.inc({ route, decision: 'invalid' });
}
