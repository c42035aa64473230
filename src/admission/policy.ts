// The contract between the admission engine and the policies.
//
// A policy is pure: given the decoded request and a read-only context it returns findings
// (validating side) or JSON Patch operations (mutating side). Anything that needs I/O (a live
// LIST when the cache is cold, say) happens in the optional `gather` step, which the engine runs
// at the edge before calling the pure functions with what was gathered.

import type { ClusterView } from '../cluster/view.js';
import type { ResourceRule } from '../k8s/object.js';
import type { PatchOperation } from './patch.js';
import type { AdmissionRequest } from './review.js';

// What policies may read about the cluster is the cluster layer's read-only view: part of the
// contract, so a policy needs nothing from cluster/ itself.
export type { ApiserverPod, CacheStatus, ClusterView, IssuerRisk, IssuerView, NodeSummary, OwnerRef, PodSummary } from '../cluster/view.js';

export type Severity = 'deny' | 'warn';
export type Mode = 'enforce' | 'warn' | 'off';

export interface Finding {
  /** Name of the policy that produced it (the engine fills it in when a policy leaves it out). */
  policy: string;
  severity: Severity;
  /** One line for kubectl; the engine cuts warnings to 120 characters, so put the gist first. */
  message: string;
  /** Longer explanation for logs and for the denial message. */
  detail?: string;
  /** The field the finding is about, e.g. `spec.volumes[2].projected.sources[0].serviceAccountToken`. */
  path?: string;
  /** What to do about it, one short sentence. */
  fix?: string;
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

export interface PolicyContext<S = Record<string, unknown>> {
  /** The policy's settings: its declared defaults merged with `policies.<name>` from config. */
  settings: S;
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

export interface Policy<S = Record<string, unknown>, G = undefined> {
  name: string;
  /** One sentence for `--help`, README and metrics help. */
  description: string;
  match: MatchRule[];
  /**
   * JSON Schema `properties` for the policy's own settings under `policies.<name>` in config
   * (the engine adds `mode` and `exemptions`), and their defaults.
   */
  settingsSchema?: Record<string, object>;
  defaultSettings?: S;
  /**
   * What JSON Schema cannot say about the settings (a minimum above a maximum, say), checked at
   * start-up on the effective settings (defaults merged with config). Returns problems as
   * `<path>: <message>`, the path below `policies.<name>`.
   */
  checkSettings?: (settings: S) => string[];
  /** Exemptions the policy ships with (merged with configured ones), e.g. system controllers. */
  defaultExemptions?: Partial<Exemptions>;
  /** Needs live cluster state to be meaningful; `check` skips it without a cluster. */
  needsCluster?: boolean;
  /** Optional I/O step, run by the engine before `validate`; must never throw (return errors as data). */
  gather?: (request: AdmissionRequest, ctx: PolicyContext<S>) => G | Promise<G>;
  /** Validating side: findings for this request. */
  validate?: (request: AdmissionRequest, ctx: PolicyContext<S>, gathered: G) => Finding[];
  /** Mutating side: patch operations against `request.object`; must return [] when nothing changes. */
  mutate?: (request: AdmissionRequest, ctx: PolicyContext<S>) => PatchOperation[];
}

export interface Exemptions {
  users: string[];
  groups: string[];
  /** Exact names or globs (`*` and `?`). */
  namespaces: string[];
}

// Policies are declared with their own settings/gather types; the registry holds them erased.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyPolicy = Policy<any, any>;
