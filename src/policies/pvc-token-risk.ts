// pvc-token-risk: mark the Pods that an in-use PVC deletion can hit. When a PVC is deleted while a running pod
// still mounts it, affected kubelets (before 1.33.0, 1.32.4, 1.31.8, 1.30.12) stop refreshing all
// of that pod's projected volumes, so its service-account token expires and mesh mTLS and API
// calls fail. A pod is at risk when it has a projected `serviceAccountToken` (the injected
// kube-api-access-* counts) and a PVC-backed volume (`persistentVolumeClaim` or generic `ephemeral`).
//
// Mutating side (Pod CREATE): label `tokenguard.io/pvc-token-risk: "true"` so
// `kubectl get pods -l tokenguard.io/pvc-token-risk=true` finds them, and an annotation of the same
// name saying which claims and token volumes, as `claims=<c1>,<c2>;tokens=<v1>,<v2>`.
// Validating side: the mutating webhook fails open by design, so the validating webhook re-checks
// and warns about a risk pod that arrives without the label.

import type { AdmissionRequest } from '../admission/review.js';
import { setMapEntries, type PatchOperation } from '../admission/patch.js';
import { escapePointerToken } from '../k8s/json-pointer.js';
import { claimRefs, hasProjectedToken, tokenProjections } from '../k8s/pod-spec.js';
import type { Finding, Policy } from '../admission/policy.js';
import type { KubeObject } from '../k8s/object.js';

export const POLICY = 'pvc-token-risk';
export const RISK_LABEL = 'tokenguard.io/pvc-token-risk';
export const RISK_ANNOTATION = 'tokenguard.io/pvc-token-risk';

/**
 * Stands for the pod name in a generic ephemeral claim name when the pod has none yet: pods created
 * by controllers reach mutating webhooks with only `generateName` (the API server picks the name
 * after admission), and the claim is named `<pod>-<volume>`.
 */
export const UNKNOWN_POD_NAME = '<pod>';

export interface PvcTokenRisk {
  claims: string[];
  tokenVolumes: string[];
}

/** The claims and token volumes that put a pod at risk, or undefined when it is not. */
export function pvcTokenRisk(pod: KubeObject | null | undefined): PvcTokenRisk | undefined {
  const spec = pod?.spec;
  if (!spec || typeof spec !== 'object' || !hasProjectedToken(spec)) return undefined;
  const name = typeof pod.metadata?.name === 'string' ? pod.metadata.name : '';
  const refs = claimRefs(spec, name);
  if (refs.length === 0) return undefined;
  const claims: string[] = [];
  for (const r of refs) {
    const claim = r.claim || `${UNKNOWN_POD_NAME}-${r.volume}`;
    if (!claims.includes(claim)) claims.push(claim);
  }
  const tokenVolumes: string[] = [];
  for (const t of tokenProjections(spec)) if (!tokenVolumes.includes(t.volume)) tokenVolumes.push(t.volume);
  return { claims, tokenVolumes };
}

/** The annotation value, e.g. `claims=data;tokens=istio-token,kube-api-access-9zkc8`. */
export function riskAnnotation(risk: PvcTokenRisk): string {
  return `claims=${risk.claims.join(',')};tokens=${risk.tokenVolumes.join(',')}`;
}

function isPodCreate(req: AdmissionRequest): boolean {
  return req.operation === 'CREATE' && req.kind.kind === 'Pod';
}

/** Remove our label and annotation from a pod that is not at risk (copied from another pod's YAML). */
function staleMarkers(pod: KubeObject): PatchOperation[] {
  const ops: PatchOperation[] = [];
  if (pod.metadata?.labels?.[RISK_LABEL] !== undefined) {
    ops.push({ op: 'remove', path: `/metadata/labels/${escapePointerToken(RISK_LABEL)}` });
  }
  if (pod.metadata?.annotations?.[RISK_ANNOTATION] !== undefined) {
    ops.push({ op: 'remove', path: `/metadata/annotations/${escapePointerToken(RISK_ANNOTATION)}` });
  }
  return ops;
}

export const pvcTokenRiskPolicy: Policy = {
  name: POLICY,
  description: 'Labels Pods that mount a PVC and a projected token (deleting the PVC can stop token refresh).',
  match: [{ groups: [''], versions: ['v1'], resources: ['pods'], operations: ['CREATE'] }],

  mutate(req: AdmissionRequest): PatchOperation[] {
    const pod = req.object;
    if (!pod || !isPodCreate(req)) return [];
    const risk = pvcTokenRisk(pod);
    if (!risk) return staleMarkers(pod);
    const labels = { [RISK_LABEL]: 'true' };
    const annotations = { [RISK_ANNOTATION]: riskAnnotation(risk) };
    const metadata = pod.metadata;
    if (!metadata || typeof metadata !== 'object' || Array.isArray(metadata)) {
      // Both maps under one new metadata: two separate adds of /metadata would overwrite each other.
      return [{ op: 'add', path: '/metadata', value: { labels, annotations } }];
    }
    return [
      ...setMapEntries(pod, ['metadata', 'labels'], labels),
      ...setMapEntries(pod, ['metadata', 'annotations'], annotations),
    ];
  },

  validate(req: AdmissionRequest): Finding[] {
    const pod = req.object;
    if (!pod || !isPodCreate(req)) return [];
    if (pod.metadata?.labels?.[RISK_LABEL] === 'true') return [];
    const risk = pvcTokenRisk(pod);
    if (!risk) return [];
    return [
      {
        policy: POLICY,
        severity: 'warn',
        message: `pod mounts a PVC and a projected token but lacks the ${RISK_LABEL} label: was /mutate skipped?`,
        detail:
          `The tokenguard mutating webhook should have added it (${riskAnnotation(risk)}); it fails open, so it was ` +
          'probably unreachable. If the claim is deleted while this pod runs, kubelets before 1.33.0 (1.32.4, 1.31.8, ' +
          '1.30.12) stop refreshing its token.',
        path: 'metadata.labels',
        fix: `check the tokenguard mutating webhook; until then: kubectl label pod <name> ${RISK_LABEL}=true`,
      },
    ];
  },
};
