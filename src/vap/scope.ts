// Which requests a policy judges, and in which mode, as CEL over the admission request and its
// namespace: the engine's exemptions (src/admission/engine.ts `isExempt`) and its mode order
// (`modeFor`: the `tokenguard.io/mode` namespace label, then the last matching namespaceOverrides
// entry, its per-policy mode before its own, then `policies.<name>.mode`, then the global mode).
// Label selectors cannot say "glob" or "the label beats the overrides", so all of it is CEL.

import { MODE_LABEL } from '../admission/engine.js';
import type { AnyPolicy } from '../admission/policy.js';
import type { Exemptions, Mode, TokenguardConfig } from '../config/schema.js';
import { bind, matchesAny, str, strList } from './cel.js';

/** tokenguard's modes, and `audit`, which only a generated policy has (validationActions [Audit]). */
export type VapMode = Mode | 'audit';

/**
 * The request's namespace, `''` for cluster-scoped objects (the engine's `undefined`): the field is
 * absent then, and reading it is an error ("no such key", found by the differential test).
 */
export const NAMESPACE = "(has(request.namespace) ? request.namespace : '')";

export interface MatchCondition {
  name: string;
  expression: string;
}

/** The policy's exemptions as the engine merges them: each list of the policy replaces its default. */
function policyExemptions(policy: AnyPolicy, config: TokenguardConfig): Exemptions {
  const configured = config.policies[policy.name]?.exemptions;
  return {
    users: configured?.users ?? policy.defaultExemptions?.users ?? [],
    groups: configured?.groups ?? policy.defaultExemptions?.groups ?? [],
    namespaces: configured?.namespaces ?? policy.defaultExemptions?.namespaces ?? [],
  };
}

/** CEL that is true when the request is exempt under `e` (false when `e` exempts nothing). */
function exempt(e: Exemptions): string | undefined {
  const parts: string[] = [];
  if (e.users.length) parts.push(`request.userInfo.username in ${strList(e.users)}`);
  if (e.groups.length) parts.push(`(has(request.userInfo.groups) && request.userInfo.groups.exists(g, g in ${strList(e.groups)}))`);
  if (e.namespaces.length) parts.push(`(${NAMESPACE} != '' && ${matchesAny(NAMESPACE, e.namespaces)})`);
  return parts.length ? parts.join(' || ') : undefined;
}

/** matchConditions that leave out what the configuration exempts, globally and for this policy. */
export function exemptionConditions(policy: AnyPolicy, config: TokenguardConfig): MatchCondition[] {
  const out: MatchCondition[] = [];
  const global = exempt(config.exemptions);
  if (global) out.push({ name: 'not-exempt', expression: `!(${global})` });
  const own = exempt(policyExemptions(policy, config));
  if (own) out.push({ name: 'not-exempt-from-policy', expression: `!(${own})` });
  return out;
}

/** The mode the configuration gives `policy` in the request's namespace, before the label. */
function configuredMode(policy: string, config: TokenguardConfig, globalMode: VapMode): string {
  let expr = str(config.policies[policy]?.mode ?? globalMode);
  // The last matching entry wins: fold from the first, each later entry wrapping the earlier ones.
  for (const entry of config.namespaceOverrides) {
    const mode = entry.policies?.[policy] ?? entry.mode;
    if (!mode) continue;
    expr = `(${NAMESPACE} != '' && ${matchesAny(NAMESPACE, entry.namespaces)}) ? ${str(mode)} : ${expr}`;
  }
  return expr;
}

/** CEL for the effective mode of `policy` for this request: `enforce`, `warn`, `off` or `audit`. */
export function modeExpression(policy: string, config: TokenguardConfig, globalMode: VapMode): string {
  const label =
    `namespaceObject != null && has(namespaceObject.metadata.labels) && ${str(MODE_LABEL)} in namespaceObject.metadata.labels ` +
    `? namespaceObject.metadata.labels[${str(MODE_LABEL)}] : ''`;
  return bind('label', label, `label in ['enforce', 'warn', 'off'] ? label : ${configuredMode(policy, config, globalMode)}`);
}

/** Every mode the policy can be in somewhere, so only the policies that can apply are generated. */
export function reachableModes(policy: string, config: TokenguardConfig, globalMode: VapMode, namespaced: boolean): Set<VapMode> {
  const modes = new Set<VapMode>([config.policies[policy]?.mode ?? globalMode]);
  if (namespaced) {
    for (const m of ['enforce', 'warn', 'off'] as const) modes.add(m); // the namespace label
    for (const entry of config.namespaceOverrides) {
      const m = entry.policies?.[policy] ?? entry.mode;
      if (m) modes.add(m);
    }
  }
  return modes;
}
