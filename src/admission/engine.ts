// The policy engine: picks the policies a request matches, resolves each one's mode, runs the
// validating or the mutating pipeline over the same decoded request, and folds the results into
// one decision. Policies are pure; the engine owns modes, exemptions, limits and failure handling.

import type { ClusterView } from '../cluster/view.js';
import { policySettings, type Exemptions, type Mode, type NamespaceOverride, type TokenguardConfig } from '../config/schema.js';
import type { AnyPolicy, Decision, Finding, MatchRule, PolicyContext, PolicyRun } from './policy.js';
import { applyPatchCopyOnWrite, jsonEqual, patchChanges, type PatchOperation } from './patch.js';
import type { AdmissionRequest } from './review.js';
import { globMatcher, namespaceScope } from '../k8s/glob.js';
import { errorMessage } from '../observability/errors.js';
import { fitWarning } from './warnings.js';

/** Namespace label that overrides the configured mode for every policy in that namespace. */
export const MODE_LABEL = 'tokenguard.io/mode';

export interface EngineOptions {
  config: TokenguardConfig;
  policies: readonly AnyPolicy[];
  cluster?: ClusterView;
  /** Called when a policy throws: the engine fails open for that policy and reports it. */
  onPolicyError?: (policy: string, err: unknown) => void;
}

/** A policy to run on one request: its prepared state, its context, and (for `Decision.ran`) its name and mode. */
interface Run extends PolicyRun {
  p: PreparedPolicy;
  ctx: PolicyContext<unknown>;
}

interface PreparedPolicy {
  policy: AnyPolicy;
  settings: unknown;
  /** Undefined when the policy exempts nothing (most policies): no lookup per review. */
  exemptions?: { users: Set<string>; groups: Set<string>; namespace: (ns: string) => boolean };
  /** The context the policy is called with in each mode: built once, read-only, shared by every review. */
  contexts: Record<Exclude<Mode, 'off'>, PolicyContext<unknown>>;
}

function ruleMatches(rule: MatchRule, req: AdmissionRequest): boolean {
  const has = (list: readonly string[] | undefined, v: string) => !list || list.includes('*') || list.includes(v);
  return (
    has(rule.groups, req.resource.group) &&
    has(rule.versions, req.resource.version) &&
    has(rule.resources, req.resource.resource) &&
    (rule.subresources ? has(rule.subresources, req.subResource ?? '') : !req.subResource) &&
    (rule.operations.includes('*' as never) || rule.operations.includes(req.operation))
  );
}

function compileExemptions(e: Exemptions): PreparedPolicy['exemptions'] {
  if (!e.users.length && !e.groups.length && !e.namespaces.length) return undefined;
  return { users: new Set(e.users), groups: new Set(e.groups), namespace: globMatcher(e.namespaces) };
}

function isExempt(ex: PreparedPolicy['exemptions'], req: AdmissionRequest): boolean {
  if (!ex) return false;
  const user = req.userInfo.username ?? '';
  if (user && ex.users.has(user)) return true;
  for (const g of req.userInfo.groups ?? []) if (ex.groups.has(g)) return true;
  return !!req.namespace && ex.namespace(req.namespace);
}

export class Engine {
  private readonly prepared: PreparedPolicy[];
  private readonly globalExemptions: PreparedPolicy['exemptions'];
  /** The namespaceOverrides entries that apply in a namespace, in order (the last one wins). */
  private readonly overrides: (namespace: string | undefined) => NamespaceOverride[];
  private readonly lookup: PolicyContext['lookup'];
  /**
   * The policies whose rules match a (side, group, version, resource, subresource, operation):
   * rules are fixed for the engine's life, and every review would otherwise test them all. Keys
   * come from the API server's requests (bounded by the webhook rules); capped all the same.
   */
  private readonly matchCache = new Map<string, { p: PreparedPolicy; namespaces?: ReadonlySet<string> }[]>();

  constructor(private readonly opts: EngineOptions) {
    const { config } = opts;
    this.lookup = { timeoutMs: config.cluster.lookupTimeoutMs, onFailure: config.cluster.onLookupFailure };
    this.globalExemptions = compileExemptions(config.exemptions);
    this.overrides = namespaceScope(config.namespaceOverrides);
    this.prepared = opts.policies.map((policy) => {
      const exemptions = config.policies[policy.name]?.exemptions;
      const ex: Exemptions = {
        users: exemptions?.users ?? policy.defaultExemptions?.users ?? [],
        groups: exemptions?.groups ?? policy.defaultExemptions?.groups ?? [],
        namespaces: exemptions?.namespaces ?? policy.defaultExemptions?.namespaces ?? [],
      };
      const configured = policySettings<unknown>(policy, config);
      const settings: unknown = policy.prepare ? policy.prepare(configured) : configured;
      const context = (mode: Exclude<Mode, 'off'>): PolicyContext<unknown> => Object.freeze({ settings, mode, cluster: opts.cluster, lookup: this.lookup });
      return { policy, settings, exemptions: compileExemptions(ex), contexts: { enforce: context('enforce'), warn: context('warn') } };
    });
  }

  /**
   * Mode of `policy` for a request in `namespace`, most specific first: the namespace's
   * `tokenguard.io/mode` label, then the last matching `namespaceOverrides` entry (its per-policy
   * mode before its general one), then `policies.<name>.mode`, then the global `mode`.
   */
  modeFor(policy: string, namespace: string | undefined): Mode {
    return this.configuredMode(policy, namespace, namespace ? this.namespaceMode(namespace) : undefined);
  }

  /** The namespace's `tokenguard.io/mode` label, when it holds a valid mode. */
  private namespaceMode(namespace: string): Mode | undefined {
    const label = this.opts.cluster?.namespaceLabels(namespace)?.[MODE_LABEL];
    return label === 'enforce' || label === 'warn' || label === 'off' ? label : undefined;
  }

  private configuredMode(policy: string, namespace: string | undefined, labelled: Mode | undefined): Mode {
    if (labelled) return labelled;
    const entries = this.overrides(namespace);
    for (let i = entries.length - 1; i >= 0; i--) {
      const m = entries[i]!.policies?.[policy] ?? entries[i]!.mode;
      if (m) return m;
    }
    return this.opts.config.policies[policy]?.mode ?? this.opts.config.mode;
  }

  /**
   * The policies whose rules match the request's shape, each with the only namespaces where its
   * matching rules can find anything (`MatchRule.namespaces`; undefined: anywhere). A pod created
   * outside kube-system never reaches the issuer policy, which looks at kube-apiserver mirror pods.
   */
  private matching(req: AdmissionRequest, side: 'validate' | 'mutate') {
    const r = req.resource;
    const key = `${side}\0${r.group}\0${r.version}\0${r.resource}\0${req.subResource ?? ''}\0${req.operation}`;
    let list = this.matchCache.get(key);
    if (list === undefined) {
      list = [];
      for (const p of this.prepared) {
        const rules = p.policy[side] ? p.policy.match.filter((rule) => ruleMatches(rule, req)) : [];
        if (rules.length === 0) continue;
        const everywhere = rules.some((rule) => !rule.namespaces);
        list.push({ p, namespaces: everywhere ? undefined : new Set(rules.flatMap((rule) => rule.namespaces!)) });
      }
      if (this.matchCache.size >= 1024) this.matchCache.clear();
      this.matchCache.set(key, list);
    }
    return list;
  }

  /**
   * The policies to run on this request, each with its context. Each entry is also the decision's
   * record that the policy ran (`Decision.ran`): no second list is built per review.
   */
  private applicable(req: AdmissionRequest, side: 'validate' | 'mutate') {
    const out: Run[] = [];
    const candidates = this.matching(req, side);
    if (candidates.length === 0 || isExempt(this.globalExemptions, req)) return out;
    const labelled = req.namespace ? this.namespaceMode(req.namespace) : undefined;
    for (const { p, namespaces } of candidates) {
      if (namespaces && !namespaces.has(req.namespace ?? '')) continue;
      if (isExempt(p.exemptions, req)) continue;
      const mode = this.configuredMode(p.policy.name, req.namespace, labelled);
      if (mode === 'off') continue;
      out.push({ p, ctx: p.contexts[mode], policy: p.policy.name, mode });
    }
    return out;
  }

  /** The policies (by name) that would run on the validating side for this request. */
  matchingPolicies(req: AdmissionRequest, side: 'validate' | 'mutate'): string[] {
    return this.applicable(req, side).map(({ p }) => p.policy.name);
  }

  /**
   * The validating pipeline. Synchronous unless a policy's `gather` step is really doing I/O:
   * most requests need none, and a promise per request is measurable on the hot path.
   */
  validate(req: AdmissionRequest): Decision | Promise<Decision> {
    const runs = this.applicable(req, 'validate');
    let gathered: unknown[] | undefined;
    let pending = false;
    for (let i = 0; i < runs.length; i++) {
      const { p, ctx } = runs[i]!;
      if (!p.policy.gather) continue;
      gathered ??= new Array(runs.length);
      const g = this.safeGather(p.policy, req, ctx);
      if (g instanceof Promise) pending = true;
      gathered[i] = g;
    }
    if (!pending) return this.judge(req, runs, gathered);
    return Promise.all(gathered!).then((values) => this.judge(req, runs, values));
  }

  private judge(req: AdmissionRequest, runs: ReturnType<Engine['applicable']>, gathered: unknown[] | undefined): Decision {
    const findings: Decision['findings'] = [];
    for (let i = 0; i < runs.length; i++) {
      const { p, ctx } = runs[i]!;
      let out: Finding[];
      try {
        out = p.policy.validate!(req, ctx, gathered?.[i]);
        checkFindings(out);
      } catch (err) {
        out = [this.policyFailure(p.policy.name, err)];
      }
      for (const f of out) findings.push(judged(f, p.policy.name, ctx.mode));
    }
    const decision = foldFindings(findings);
    decision.ran = runs;
    return decision;
  }

  mutate(req: AdmissionRequest): Decision {
    const runs = this.applicable(req, 'mutate');
    const patch: PatchOperation[] = [];
    const fired: string[] = [];
    const findings: Decision['findings'] = [];
    let current = req;
    let lastChanges = false;
    for (let i = 0; i < runs.length; i++) {
      const { p, ctx } = runs[i]!;
      let ops: PatchOperation[];
      try {
        ops = p.policy.mutate!(current, ctx);
        if (!Array.isArray(ops)) throw new Error(`mutate returned ${typeof ops}, not a list of patch operations`);
        if (ops.length === 0) continue;
        if (i < runs.length - 1) {
          // Later policies see the object as patched so far, so their operations compose. The
          // request's own object is never modified, and a policy whose patch fails leaves no trace.
          current = { ...req, object: applyPatchCopyOnWrite(current.object ?? {}, ops) };
        } else {
          // The last policy's operations are only checked (do they resolve, do they change
          // anything?): no later policy needs the patched object.
          lastChanges = patchChanges(current.object ?? {}, ops);
        }
      } catch (err) {
        findings.push(judged(this.policyFailure(p.policy.name, err), p.policy.name, ctx.mode));
        continue;
      }
      patch.push(...ops);
      fired.push(p.policy.name);
    }
    const decision = foldFindings(findings);
    decision.ran = runs;
    // Idempotence: operations that net to no change (e.g. re-adding a present value) are dropped.
    if (patch.length > 0 && (lastChanges || (current !== req && !jsonEqual(current.object, req.object ?? {})))) {
      decision.patch = patch;
      decision.fired.push(...fired);
    }
    return decision;
  }

  /** A policy's gather result, or a promise of it; a throw (a bug: errors are data) becomes an Error. */
  private safeGather(policy: AnyPolicy, req: AdmissionRequest, ctx: PolicyContext<unknown>): unknown {
    const asError = (err: unknown) => {
      this.opts.onPolicyError?.(policy.name, err);
      return err instanceof Error ? err : new Error(String(err));
    };
    try {
      const g: unknown = policy.gather!(req, ctx);
      return g instanceof Promise ? g.catch(asError) : g;
    } catch (err) {
      return asError(err);
    }
  }

  private policyFailure(name: string, err: unknown): Finding {
    this.opts.onPolicyError?.(name, err);
    return {
      policy: name,
      severity: 'warn',
      message: fitWarning(`tokenguard: policy ${name} could not run (${errorMessage(err)}); not checked`, `tokenguard: policy ${name} could not run; not checked (see the tokenguard logs)`),
    };
  }
}

/** A finding with its policy name filled in and the mode it was judged in (a copy: policies may reuse theirs). */
function judged(f: Finding, policy: string, mode: Exclude<Mode, 'off'>): Decision['findings'][number] {
  return {
    policy: f.policy || policy,
    severity: f.severity,
    message: f.message,
    detail: f.detail,
    path: f.path,
    fix: f.fix,
    audit: f.audit,
    ...(f.apiRejection ? { apiRejection: f.apiRejection } : {}),
    mode,
  };
}

/** A policy's findings, checked before they reach the response: a bug there must not break the answer. */
function checkFindings(out: unknown): asserts out is Finding[] {
  if (!Array.isArray(out)) throw new Error(`validate returned ${typeof out}, not a list of findings`);
  for (const f of out as unknown[]) {
    const { message, severity } = (f ?? {}) as Partial<Record<keyof Finding, unknown>>;
    if (typeof message !== 'string' || (severity !== 'deny' && severity !== 'warn')) {
      throw new Error(`validate returned a malformed finding ${JSON.stringify(f)?.slice(0, 200)}`);
    }
  }
}

/** Turn judged findings into a decision: denials in enforce mode deny, everything else warns. */
export function foldFindings(findings: Decision['findings']): Decision {
  const warnings: string[] = [];
  const denials: string[] = [];
  const auditAnnotations: Record<string, string> = {};
  const fired = new Set<string>();
  for (const f of findings) {
    fired.add(f.policy);
    if (f.severity === 'deny' && f.mode === 'enforce') {
      denials.push(denialText(f));
    } else {
      warnings.push(f.message);
    }
    if (f.audit) for (const [k, v] of Object.entries(f.audit)) auditAnnotations[`${f.policy}.${k}`] = v;
  }
  const decision: Decision = { allowed: denials.length === 0, warnings, auditAnnotations, findings, fired: [...fired] };
  if (denials.length > 0) decision.denial = { code: 403, message: denials.join('; ') };
  return decision;
}

/** How one deny finding reads in a denial (the findings of a request are joined with "; "). */
export function denialText(f: Pick<Finding, 'policy' | 'message' | 'path' | 'detail' | 'fix'>): string {
  let s = `[${f.policy}] ${f.message}`;
  if (f.path && !f.message.includes(f.path)) s += ` (at ${f.path})`;
  if (f.detail) s += `. ${f.detail}`;
  if (f.fix) s += ` Fix: ${f.fix}`;
  return s;
}
