// The admission metrics: counted on every review with plain numbers (observability/metrics.ts
// says why), read by prom-client at scrape time.

import type { Decision } from '../admission/engine.js';
import { RouteLatencyHistogram, Tally } from '../observability/metrics.js';

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
