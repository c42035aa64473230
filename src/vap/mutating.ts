// pvc-token-risk's mutating side (src/policies/pvc-token-risk.ts) as a MutatingAdmissionPolicy: on
// Pod CREATE, the label `tokenguard.io/pvc-token-risk: "true"` and the annotation
// `claims=<c1>,<c2>;tokens=<v1>,<v2>` on a pod that mounts a PVC and a projected token, and neither
// on one that does not (a copied label or annotation is removed), as JSON Patch operations.

import { pvcTokenRiskPolicy, RISK_ANNOTATION, RISK_LABEL, UNKNOWN_POD_NAME } from '../policies/pvc-token-risk.js';
import { str } from './cel.js';
import type { Variable } from './findings.js';
import type { MatchCondition } from './scope.js';

/** CEL: the list variable `name` without repeats, in first-occurrence order. */
const distinct = (name: string) => `variables.${name}.transformList(i, x, variables.${name}.indexOf(x) == i, x)`;

/** The variables: `claims` and `tokens` (as pvcTokenRisk finds them), `risk`, and the annotation value. */
export function riskVariables(): Variable[] {
  const volumes = 'object.spec.?volumes.orValue([])';
  const podName = "object.metadata.?name.orValue('')";
  // claimRefs: a named persistentVolumeClaim, else a generic ephemeral volume (claim <pod>-<volume>).
  const claims =
    `${volumes}.filter(v, (has(v.persistentVolumeClaim) && v.persistentVolumeClaim.claimName != '') || has(v.ephemeral))` +
    `.map(v, has(v.persistentVolumeClaim) && v.persistentVolumeClaim.claimName != '' ? v.persistentVolumeClaim.claimName : ` +
    `(${podName} != '' ? ${podName} : ${str(UNKNOWN_POD_NAME)}) + '-' + v.name)`;
  // tokenProjections: every volume with a serviceAccountToken source, the injected one included.
  const tokens = `${volumes}.filter(v, has(v.projected) && type(v.projected.sources) == list && v.projected.sources.exists(s, has(s.serviceAccountToken))).map(v, v.name)`;
  return [
    { name: 'claimRefs', expression: claims },
    { name: 'claims', expression: distinct('claimRefs') },
    { name: 'tokenVolumes', expression: tokens },
    { name: 'tokens', expression: distinct('tokenVolumes') },
    { name: 'risk', expression: 'variables.claims.size() > 0 && variables.tokens.size() > 0' },
    { name: 'annotation', expression: "'claims=' + variables.claims.join(',') + ';tokens=' + variables.tokens.join(',')" },
  ];
}

/** CEL: JSON Patch operations that set (or, when `set` is false, remove) one entry of a metadata map. */
function mapEntry(map: 'labels' | 'annotations', key: string, value: string): { set: string; remove: string } {
  const present = `has(object.metadata.${map})`;
  const entry = `'/metadata/${map}/' + jsonpatch.escapeKey(${str(key)})`;
  return {
    set:
      `(${present} ? [JSONPatch{op: 'add', path: ${entry}, value: ${value}}] ` +
      `: [JSONPatch{op: 'add', path: '/metadata/${map}', value: {${str(key)}: ${value}}}])`,
    remove: `(${present} && ${str(key)} in object.metadata.${map} ? [JSONPatch{op: 'remove', path: ${entry}}] : [])`,
  };
}

/** The MutatingAdmissionPolicy and its binding. */
export function pvcTokenRiskMutatingPolicy(conditions: MatchCondition[], mode: Variable, name: string): object[] {
  const label = mapEntry('labels', RISK_LABEL, "'true'");
  const annotation = mapEntry('annotations', RISK_ANNOTATION, 'variables.annotation');
  const patch = `variables.mode == 'off' ? [] : variables.risk ? ${label.set} + ${annotation.set} : ${label.remove} + ${annotation.remove}`;
  const rules = pvcTokenRiskPolicy.match.map((r) => ({ apiGroups: r.groups, apiVersions: r.versions ?? ['*'], operations: r.operations, resources: r.resources }));
  return [
    {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'MutatingAdmissionPolicy',
      metadata: { name, labels: { 'app.kubernetes.io/part-of': 'tokenguard', 'tokenguard.io/policy': pvcTokenRiskPolicy.name } },
      spec: {
        // As the mutating webhook: never block a pod over a label; run again after later mutations.
        failurePolicy: 'Ignore',
        reinvocationPolicy: 'IfNeeded',
        matchConstraints: { resourceRules: rules },
        matchConditions: conditions,
        variables: [mode, ...riskVariables()],
        mutations: [{ patchType: 'JSONPatch', jsonPatch: { expression: patch } }],
      },
    },
    {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'MutatingAdmissionPolicyBinding',
      metadata: { name, labels: { 'app.kubernetes.io/part-of': 'tokenguard' } },
      spec: { policyName: name },
    },
  ];
}
