// The admission metrics: counted on every review with plain numbers (observability/metrics.ts
// says why), read by prom-client at scrape time.

import { RouteLatencyHistogram, Tally } from '../observability/metrics.js';
import { ROUTES, type AdmissionRoute } from '../admission/routes.js';
import type { Decision } from '../admission/policy.js';

const requests = new Tally(['route', 'decision'] as const);
export const admissionRequests = requests.counter(
  'tokenguard_admission_requests_total',
  'Admission reviews answered, by route and decision (allowed, denied, invalid).',
);

const policyOutcomes = new Tally(['route', 'policy', 'decision', 'mode'] as const);
export const policyDecisions = policyOutcomes.counter(
  'tokenguard_policy_decisions_total',
  'Policy outcomes per request, by route, policy, decision (denied, warned, patched) and mode.',
);

const warnings = new Tally(['route'] as const);
export const warningsEmitted = warnings.counter(
  'tokenguard_warnings_emitted_total',
  'Warnings returned to clients (after deduplication and limits), by route.',
);

export const admissionDuration = new RouteLatencyHistogram(
  'tokenguard_admission_duration_seconds',
  'Time from the first byte of the request body to the response, by route.',
  [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
);

/** The tally keys of every review, built once. */
const REQUEST_KEYS = Object.fromEntries(
  ROUTES.map((r) => [r, { allowed: `${r}\0allowed`, denied: `${r}\0denied`, invalid: `${r}\0invalid` }]),
) as Record<AdmissionRoute, Record<'allowed' | 'denied' | 'invalid', string>>;

type Outcome = 'denied' | 'warned' | 'patched';
type OutcomeMode = 'enforce' | 'warn' | 'n/a';
/** Per policy, the tally key of each (route, outcome, mode), built the first time it is counted. */
const outcomeKeys = new Map<string, Map<string, string>>();
function outcomeKey(route: AdmissionRoute, policy: string, outcome: Outcome, mode: OutcomeMode): string {
  let keys = outcomeKeys.get(policy);
  if (keys === undefined) outcomeKeys.set(policy, (keys = new Map<string, string>()));
  // The three enum values select one of a few constant strings: no string is built per review.
  const slot = OUTCOME_SLOTS[route][outcome][mode];
  let key = keys.get(slot);
  if (key === undefined) keys.set(slot, (key = `${route}\0${policy}\0${outcome}\0${mode}`));
  return key;
}
const OUTCOME_SLOTS = Object.fromEntries(
  ROUTES.map((r) => [
    r,
    Object.fromEntries((['denied', 'warned', 'patched'] as const).map((o) => [o, Object.fromEntries((['enforce', 'warn', 'n/a'] as const).map((m) => [m, `${r}/${o}/${m}`]))])),
  ]),
) as Record<AdmissionRoute, Record<Outcome, Record<OutcomeMode, string>>>;

export function observeDecision(route: AdmissionRoute, d: Decision, warningCount: number, seconds: number): void {
  requests.add(REQUEST_KEYS[route][d.allowed ? 'allowed' : 'denied']);
  admissionDuration.observe(route, seconds);
  if (warningCount > 0) warnings.add(route, warningCount);
  for (const f of d.findings) {
    policyOutcomes.add(outcomeKey(route, f.policy, f.severity === 'deny' && f.mode === 'enforce' ? 'denied' : 'warned', f.mode));
  }
  if (d.patch) for (const p of d.fired) policyOutcomes.add(outcomeKey(route, p, 'patched', 'n/a'));
}

export function observeInvalid(route: AdmissionRoute): void {
  requests.add(REQUEST_KEYS[route].invalid);
}
