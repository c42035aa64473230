// `tokenguard generate vap`: the pure policies as ValidatingAdmissionPolicies and bindings, and
// pvc-token-risk's mutation as a MutatingAdmissionPolicy, with the settings of one configuration.
//
// The shape, per policy P (docs/validating-admission-policy.md explains the choices):
// - tokenguard-P-enforce, bound with [Deny]: where P's mode is enforce, its deny findings, in one
//   message that reads as the webhook's denial does (`[P] message (at path). detail Fix: fix`).
// - tokenguard-P-warn, bound with [Warn]: where P's mode is warn, every finding; where it is
//   enforce, its warn findings; one warning each (up to WARNINGS_PER_POLICY), cut as the engine
//   cuts warnings.
// - tokenguard-P-audit, bound with [Audit], only with `--mode audit`: every finding, in the audit log.
// Exemptions are matchConditions; the mode is a CEL variable over the request's namespace (its label
// and name); settings are constants in the CEL, so the output is regenerated when the
// configuration changes.

import { stringify } from 'yaml';
import type { TokenguardConfig } from '../config/schema.js';
import { pvcTokenRiskPolicy } from '../policies/pvc-token-risk.js';
import { celCut } from './cel.js';
import { PURE_POLICIES, type CelPolicy, type Variable } from './findings.js';
import { pvcTokenRiskMutatingPolicy } from './mutating.js';
import { exemptionConditions, modeExpression, reachableModes, type MatchCondition, type VapMode } from './scope.js';

export const API_VERSION = 'admissionregistration.k8s.io/v1';
/** Names of everything generated start with this, so `kubectl get validatingadmissionpolicies` groups them. */
export const NAME_PREFIX = 'tokenguard-';
/** Warnings one generated policy can give for one object (one validation each). */
export const WARNINGS_PER_POLICY = 16;

export interface GenerateOptions {
  /** The default mode, over the configuration's `mode` (as `tokenguard check --mode`); `audit` is VAP-only. */
  mode?: VapMode;
  /** Also generate the MutatingAdmissionPolicy for pvc-token-risk (default true). */
  mutating?: boolean;
}

export type KubeManifest = Record<string, unknown> & { kind: string; metadata: { name: string; labels?: Record<string, string> } };

/**
 * The policy's rules but its TokenRequest one (a subresource): the CEL here reads pod specs.
 * TokenRequests could be written in CEL (`object.spec.expirationSeconds`, `object.spec.audiences`,
 * `request.userInfo.groups`), but are not generated yet: the webhook judges them.
 */
function rulesOf(cp: CelPolicy) {
  return cp.policy.match.filter((r) => !r.subresources).map((r) => ({ apiGroups: r.groups, apiVersions: r.versions ?? ['*'], operations: r.operations, resources: r.resources }));
}

function policy(name: string, cp: CelPolicy, conditions: MatchCondition[], variables: Variable[], validations: object[]): KubeManifest {
  return {
    apiVersion: API_VERSION,
    kind: 'ValidatingAdmissionPolicy',
    metadata: { name, labels: { 'app.kubernetes.io/part-of': 'tokenguard', 'tokenguard.io/policy': cp.policy.name } },
    spec: {
      // An expression that cannot be evaluated is a bug (the differential test runs every kind of
      // object through these): it fails, and the binding's action says how loudly.
      failurePolicy: 'Fail',
      matchConstraints: { resourceRules: rulesOf(cp) },
      matchConditions: conditions,
      variables,
      validations,
    },
  };
}

function binding(name: string, action: 'Deny' | 'Warn' | 'Audit'): KubeManifest {
  return {
    apiVersion: API_VERSION,
    kind: 'ValidatingAdmissionPolicyBinding',
    metadata: { name, labels: { 'app.kubernetes.io/part-of': 'tokenguard' } },
    spec: { policyName: name, validationActions: [action] },
  };
}

function validatingPolicies(cp: CelPolicy, config: TokenguardConfig, globalMode: VapMode): KubeManifest[] {
  const name = cp.policy.name;
  const reachable = reachableModes(name, config, globalMode, true);
  const exemptions = exemptionConditions(cp.policy, config);
  // The mode is a variable, not a matchCondition: matchConditions see no namespaceObject (measured on
  // v1.36: it is null there), and the namespace label decides the mode.
  const variables = [{ name: 'mode', expression: modeExpression(name, config, globalMode) }, ...cp.variables];
  const F = cp.findings;
  const out: KubeManifest[] = [];

  if (cp.severities.has('deny') && reachable.has('enforce')) {
    const n = `${NAME_PREFIX}${name}-enforce`;
    out.push(
      policy(n, cp, exemptions, variables, [
        {
          expression: `variables.mode != 'enforce' || !${F}.exists(f, f.s == 'deny')`,
          messageExpression: `${F}.filter(f, f.s == 'deny').map(f, f.d).join('; ')`,
          reason: 'Forbidden',
        },
      ]),
      binding(n, 'Deny'),
    );
  }

  // Warnings: every finding in warn mode, and the warn findings in enforce mode.
  const inWarn = reachable.has('warn');
  const inEnforce = cp.severities.has('warn') && reachable.has('enforce');
  if (inWarn || inEnforce) {
    const n = `${NAME_PREFIX}${name}-warn`;
    const cut = (list: string) => `${list}.map(f, ${celCut('f.m')})`;
    const all = cut(F);
    const warnOnly = cp.severities.has('deny') ? cut(`${F}.filter(f, f.s == 'warn')`) : all;
    const warnings =
      inWarn && inEnforce && warnOnly === all ? `variables.mode in ['warn', 'enforce'] ? ${all} : []`
      : `${inWarn ? `variables.mode == 'warn' ? ${all} : ` : ''}${inEnforce ? `variables.mode == 'enforce' ? ${warnOnly} : ` : ''}[]`;
    const validations = Array.from({ length: WARNINGS_PER_POLICY }, (_, k) => ({
      expression: `variables.warnings.size() <= ${k}`,
      messageExpression: `string(variables.warnings[${k}])`,
    }));
    out.push(policy(n, cp, exemptions, [...variables, { name: 'warnings', expression: warnings }], validations), binding(n, 'Warn'));
  }

  if (reachable.has('audit')) {
    const n = `${NAME_PREFIX}${name}-audit`;
    out.push(
      policy(n, cp, exemptions, variables, [{ expression: `variables.mode != 'audit' || ${F}.size() == 0`, messageExpression: `${F}.map(f, f.d).join('; ')` }]),
      binding(n, 'Audit'),
    );
  }
  return out;
}

/** Every object `tokenguard generate vap` prints, in the order to apply them. */
export function generateAdmissionPolicies(config: TokenguardConfig, opts: GenerateOptions = {}): KubeManifest[] {
  const globalMode: VapMode = opts.mode ?? config.mode;
  const out = PURE_POLICIES.flatMap((make) => validatingPolicies(make(config), config, globalMode));
  const risk = pvcTokenRiskPolicy.name;
  if (opts.mutating !== false && [...reachableModes(risk, config, globalMode, true)].some((m) => m !== 'off')) {
    const mode = { name: 'mode', expression: modeExpression(risk, config, globalMode) };
    out.push(...(pvcTokenRiskMutatingPolicy(exemptionConditions(pvcTokenRiskPolicy, config), mode, `${NAME_PREFIX}${risk}`) as KubeManifest[]));
  }
  return out;
}

/** The objects as one multi-document YAML stream for `kubectl apply -f -`, after a comment header. */
export function toYaml(objects: readonly KubeManifest[], header: readonly string[] = []): string {
  const comment = header.map((l) => `# ${l}`.trimEnd()).join('\n');
  const docs = objects.map((o) => stringify(o, { lineWidth: 0 }));
  return (comment ? `${comment}\n` : '') + docs.map((d) => `---\n${d}`).join('');
}
