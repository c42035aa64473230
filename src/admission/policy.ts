// The contract between the admission engine and the policies.
//
// A policy is pure: given the decoded request and a read-only context it returns findings
// (validating side) or JSON Patch operations (mutating side). Anything that needs I/O (a live
// LIST when the cache is cold, say) happens in the optional `gather` step, which the engine runs
// at the edge before calling the pure functions with what was gathered.

import type { TObject } from '@sinclair/typebox';
import type { ClusterView } from '../cluster/view.js';
import type { Exemptions, Mode } from '../config/schema.js';
import type { ResourceRule } from '../k8s/object.js';
import type { PatchOperation } from './patch.js';
import type { AdmissionRequest } from './review.js';

// What policies may read about the cluster is the cluster layer's read-only view: part of the
// contract, so a policy needs nothing from cluster/ itself.
export type { ApiserverPod, CacheStatus, ClusterView, IssuerRisk, IssuerView, NodeSummary, OwnerRef, PodSummary } from '../cluster/view.js';
// The building blocks of a policy's settings schema, and the modes, are the configuration's.
export { NamespaceGlobs, ServiceAccountGlobs, StringEnum, StringList, type Exemptions, type Mode } from '../config/schema.js';
export { errorMessage } from '../observability/errors.js';
export { fitWarning, MAX_WARNING_CHARS } from './warnings.js';

export type Severity = 'deny' | 'warn';

export interface Finding {
  /** Name of the policy that produced it (the engine fills it in when a policy leaves it out). */
  policy: string;
  severity: Severity;
  /**
   * One line for kubectl, within MAX_WARNING_CHARS (admission/warnings.ts): build it with
   * fitWarning, dropping the least useful part when a name is long, never cutting a name.
   */
  message: string;
  /** Longer explanation for logs and for the denial message. */
  detail?: string;
  /** The field the finding is about, e.g. `spec.volumes[2].projected.sources[0].serviceAccountToken`. */
  path?: string;
  /** What to do about it, one short sentence. */
  fix?: string;
  /**
   * Set when the API server itself refuses such an object before any webhook sees it (API
   * validation, or a value it cannot decode): its own words after `is invalid:`, e.g.
   * `spec.volumes[0]...expirationSeconds: Invalid value: 480: may not specify a duration less than 10 minutes`.
   * `tokenguard check` fails such an object in every mode.
   */
  apiRejection?: string;
  /** Extra audit annotations to record on the request (the engine prefixes keys with `<policy>.`; the API server then adds the webhook name). */
  audit?: Record<string, string>;
}

/** Which requests a policy wants; `*` matches anything. Mirrors a webhook rule. */
export interface MatchRule extends ResourceRule {
  /**
   * The only namespaces where this rule can find anything (e.g. `kube-system` for the
   * kube-apiserver mirror pods). Webhooks that serve none of them leave the rule out, so the API
   * server does not call tokenguard for every such object in the cluster, and the engine does not
   * call the policy for a request elsewhere that only this rule matches (the policy still checks
   * the namespace itself).
   */
  namespaces?: string[];
}

export interface PolicyContext<P = Record<string, unknown>> {
  /** The policy's settings (its schema's defaults under `policies.<name>`), as its `prepare` step made them. */
  settings: P;
  /** The effective mode for this request (never `off`: off policies are not called). */
  mode: Exclude<Mode, 'off'>;
  /** Read-only cluster state, absent when no cluster is configured (e.g. `tokenguard check`). */
  cluster?: ClusterView;
  /**
   * How a `gather` step bounds a live cluster lookup and what a failed one means
   * (config `cluster.lookupTimeoutMs` and `cluster.onLookupFailure`).
   */
  lookup?: { timeoutMs: number; onFailure: 'allow' | 'deny' };
}

/**
 * A policy. `S` is its settings as configured (the `Static` of its `settings` schema), `P` what
 * `prepare` makes of them (compiled globs, say; `S` itself without a prepare step), `G` what its
 * `gather` step finds.
 */
export interface Policy<S = Record<string, unknown>, P = S, G = undefined> {
  name: string;
  /** One sentence for `--help`, the docs and metrics help. */
  description: string;
  match: MatchRule[];
  /**
   * The schema of the policy's own settings under `policies.<name>` in config (the engine adds
   * `mode` and `exemptions`): a TypeBox object whose keys carry their defaults and descriptions.
   */
  settings?: TObject;
  /**
   * What JSON Schema cannot say about the settings (a minimum above a maximum, say), checked at
   * start-up on the effective settings (defaults merged with config). Returns problems as
   * `<path>: <message>`, the path below `policies.<name>`.
   */
  checkSettings?: (settings: S) => string[];
  /** Per-config state, computed once when the engine starts (not per review): what `ctx.settings` then holds. */
  prepare?: (settings: S) => P;
  /** Exemptions the policy ships with (merged with configured ones), e.g. system controllers. */
  defaultExemptions?: Partial<Exemptions>;
  /** Needs live cluster state to be meaningful; `check` skips it without a cluster. */
  needsCluster?: boolean;
  /** Optional I/O step, run by the engine before `validate`; must never throw (return errors as data). */
  gather?: (request: AdmissionRequest, ctx: PolicyContext<P>) => G | Promise<G>;
  /** Validating side: findings for this request. */
  validate?: (request: AdmissionRequest, ctx: PolicyContext<P>, gathered: G) => Finding[];
  /** Mutating side: patch operations against `request.object`; must return [] when nothing changes. */
  mutate?: (request: AdmissionRequest, ctx: PolicyContext<P>) => PatchOperation[];
}

// Policies are declared with their own settings/gather types; the registry holds them erased.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyPolicy = Policy<any, any, any>;

/** The engine's answer to one review: what the response says, and why (for the log and metrics). */
export interface Decision {
  allowed: boolean;
  /** Set when denied: the message kubectl prints after "denied the request:". */
  denial?: { code: number; message: string };
  warnings: string[];
  auditAnnotations: Record<string, string>;
  /** Mutating pipeline only; absent when nothing changes. */
  patch?: PatchOperation[];
  /** Every finding with the mode it was judged in, for the decision log and metrics. */
  findings: (Finding & { mode: Exclude<Mode, 'off'> })[];
  /** Names of the policies that produced a finding or a patch. */
  fired: string[];
  /**
   * Every policy that ran on this request, with the mode it ran in (set by the engine; absent on
   * answers made without it): a policy that ran and is in neither `findings` nor `fired` allowed
   * the request. The metrics count an outcome per policy from it.
   */
  ran?: readonly PolicyRun[];
}

/** A policy the engine ran on a request, and the mode it ran in. */
export interface PolicyRun {
  readonly policy: string;
  readonly mode: Exclude<Mode, 'off'>;
}
