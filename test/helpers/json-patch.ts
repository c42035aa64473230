// Applying patches in tests with an independent JSON Patch implementation (fast-json-patch), so
// our own applier is never the judge of our own patches.

import fastJsonPatch from 'fast-json-patch';
import { RISK_ANNOTATION, RISK_LABEL } from '../../src/policies/pvc-token-risk.js';
import type { KubeObject } from '../../src/k8s/object.js';

/** `doc` with `ops` applied (a copy); every operation is validated against the document. */
export function applyJsonPatch(doc: KubeObject, ops: unknown): KubeObject {
  return fastJsonPatch.applyPatch(structuredClone(doc), ops as any, true, false).newDocument;
}

/** The pod as we expect it after the pvc-token-risk mutation: label and annotation added. */
export function markedAtRisk(doc: KubeObject, annotation: string): KubeObject {
  const out = structuredClone(doc);
  out.metadata.labels = { ...(out.metadata.labels ?? {}), [RISK_LABEL]: 'true' };
  out.metadata.annotations = { ...(out.metadata.annotations ?? {}), [RISK_ANNOTATION]: annotation };
  return out;
}
