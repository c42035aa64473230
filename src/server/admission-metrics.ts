// The admission metrics: counted on every review with plain numbers (observability/metrics.ts
// says why), read by prom-client at scrape time.

import { RouteLatencyHistogram, Tally, type Cell } from '../observability/metrics.js';
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
  'One outcome per policy that ran on a review, by route, policy, decision (allowed, warned, denied, patched) and mode.',
);

const rejections = new Tally(['route', 'reason'] as const);
export const admissionRejections = rejections.counter(
  'tokenguard_admission_rejected_total',
  'Requests to /validate and /mutate refused before any policy saw them, by route and reason (see RejectionReason), every one counted: the log lines about them are rate-limited.',
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

/** The count of every (route, decision) of a review, looked up once and then bumped directly. */
const REQUEST_CELLS = Object.fromEntries(ROUTES.map((r) => [r, {}])) as Record<AdmissionRoute, Partial<Record<'allowed' | 'denied' | 'invalid', Cell>>>;
function requestCell(route: AdmissionRoute, decision: 'allowed' | 'denied' | 'invalid'): Cell {
  return (REQUEST_CELLS[route][decision] ??= requests.cell(`${route}\0${decision}`));
}

export type Outcome = 'allowed' | 'warned' | 'denied' | 'patched';
type OutcomeMode = 'enforce' | 'warn' | 'n/a';
const OUTCOMES = ['allowed', 'warned', 'denied', 'patched'] as const;
const MODES = ['enforce', 'warn', 'n/a'] as const;
const OUTCOME_INDEX = Object.fromEntries(OUTCOMES.map((o, i) => [o, i])) as Record<Outcome, number>;
const SLOTS_PER_ROUTE = OUTCOMES.length * MODES.length;
// The slots below are computed inline for the two routes that run policies (`observe` runs none,
// so it never counts a policy outcome): another such route must be given its own.
if (ROUTES.length !== 3 || ROUTES[0] !== 'validate' || ROUTES[1] !== 'mutate' || ROUTES[2] !== 'observe') throw new Error('admission-metrics: update the route slots');

/**
 * Per policy, its counts of every (route, outcome, mode), each made the first time it is counted.
 * A review costs one map lookup per policy that ran and an increment: most reviews are allowed by
 * every policy that ran, and counting those must stay about as cheap as counting nothing did.
 */
const outcomeCells = new Map<string, (Cell | undefined)[]>();
function cellsOf(policy: string): (Cell | undefined)[] {
  let cells = outcomeCells.get(policy);
  if (cells === undefined) outcomeCells.set(policy, (cells = new Array<Cell | undefined>(ROUTES.length * SLOTS_PER_ROUTE)));
  return cells;
}
function outcomeCell(route: AdmissionRoute, policy: string, outcome: Outcome, mode: OutcomeMode): Cell {
  const i = (route === 'validate' ? 0 : SLOTS_PER_ROUTE) + OUTCOME_INDEX[outcome] * MODES.length + (mode === 'enforce' ? 0 : mode === 'warn' ? 1 : 2);
  const cells = cellsOf(policy);
  return (cells[i] ??= policyOutcomes.cell(`${route}\0${policy}\0${outcome}\0${mode}`));
}

/**
 * The outcome of one policy on a review: denied when one of its findings denies (a deny in enforce
 * mode), warned when it has any other finding, patched when its patch is in the answer, else
 * allowed. A patch counts with mode `n/a`: mutating policies patch the same in either mode.
 */
export function policyOutcome(d: Decision, policy: string): Outcome {
  let outcome: Outcome = 'allowed';
  for (const f of d.findings) {
    if (f.policy !== policy) continue;
    if (f.severity === 'deny' && f.mode === 'enforce') return 'denied';
    outcome = 'warned';
  }
  if (outcome === 'allowed' && d.patch && d.fired.includes(policy)) return 'patched';
  return outcome;
}

export function observeDecision(route: AdmissionRoute, d: Decision, warningCount: number, seconds: number): void {
  requestCell(route, d.allowed ? 'allowed' : 'denied').n++;
  admissionDuration.observe(route, seconds);
  if (warningCount > 0) warnings.add(route, warningCount);
  const ran = d.ran;
  if (ran === undefined) {
    // An answer the engine did not make (the internal-error answer): only what it names.
    for (const policy of new Set([...d.findings.map((f) => f.policy), ...d.fired])) {
      const outcome = policyOutcome(d, policy);
      outcomeCell(route, policy, outcome, outcome === 'patched' ? 'n/a' : (d.findings.find((f) => f.policy === policy)?.mode ?? 'n/a')).n++;
    }
  } else if (d.findings.length === 0 && d.patch === undefined) {
    // Every policy that ran allowed the review: the common case, with the slot computed inline.
    const base = route === 'validate' ? 0 : SLOTS_PER_ROUTE; // 'allowed' is outcome 0
    for (let i = 0; i < ran.length; i++) {
      const { policy, mode } = ran[i]!;
      const cells = cellsOf(policy);
      const slot = base + (mode === 'enforce' ? 0 : 1);
      (cells[slot] ??= policyOutcomes.cell(`${route}\0${policy}\0allowed\0${mode}`)).n++;
    }
  } else {
    for (let i = 0; i < ran.length; i++) {
      const { policy, mode } = ran[i]!;
      const outcome = policyOutcome(d, policy);
      outcomeCell(route, policy, outcome, outcome === 'patched' ? 'n/a' : mode).n++;
    }
  }
}

/** Why a request was refused before any policy saw it: the `reason` label, and the key its log lines are rate-limited by. */
export type RejectionReason = 'unauthenticated' | 'unsupported_media_type' | 'too_large' | 'empty_body' | 'bad_json' | 'invalid_review';

export function observeInvalid(route: AdmissionRoute, reason: RejectionReason): void {
  requestCell(route, 'invalid').n++;
  rejections.add(`${route}\0${reason}`);
}
