// AdmissionReview responses, in the style of controller-runtime's admission helpers:
// small constructors, and one place that turns an engine decision into the wire format.

import { limitWarnings } from './warnings.js';
import { jsonString } from '../observability/log.js';
import type { PatchOperation } from './patch.js';
import type { Decision } from './policy.js';

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  status?: { code: number; message: string; reason?: string };
  warnings?: string[];
  auditAnnotations?: Record<string, string>;
  patchType?: 'JSONPatch';
  patch?: string;
}

export interface AdmissionReviewResponse {
  apiVersion: 'admission.k8s.io/v1';
  kind: 'AdmissionReview';
  response: AdmissionResponse;
}

export function review(response: AdmissionResponse): AdmissionReviewResponse {
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response };
}

const ALLOWED_HEAD = '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":';

/**
 * The AdmissionReview around `response`, as JSON. An allow without warnings (most reviews, with
 * or without a patch) is written from a template: JSON.stringify of the nested objects, and of the
 * base64 patch a second time, costs more than the rest of its answer.
 */
export function reviewJson(response: AdmissionResponse): string {
  if (response.allowed && !response.warnings && !response.auditAnnotations && !response.status) {
    const patch = response.patch === undefined ? '' : `,"patchType":"JSONPatch","patch":"${response.patch}"`; // base64: nothing to escape
    return `${ALLOWED_HEAD}${JSON.stringify(response.uid)},"allowed":true${patch}}}`;
  }
  return JSON.stringify(review(response));
}

export function allowed(uid: string): AdmissionResponse {
  return { uid, allowed: true };
}

export function denied(uid: string, message: string, code = 403): AdmissionResponse {
  return { uid, allowed: false, status: { code, message, reason: code === 403 ? 'Forbidden' : undefined } };
}

export function withWarnings(res: AdmissionResponse, warnings: readonly string[]): AdmissionResponse {
  const limited = limitWarnings(warnings);
  if (limited.length > 0) res.warnings = limited;
  return res;
}

export function patched(res: AdmissionResponse, ops: readonly PatchOperation[]): AdmissionResponse {
  if (ops.length === 0) return res;
  res.patchType = 'JSONPatch';
  res.patch = Buffer.from(patchJson(ops)).toString('base64');
  return res;
}

/**
 * JSON.stringify(ops), exactly, for the shape PatchOperation has (`op`, `path`, and `value` unless
 * removing): assembled directly, with strings quoted the way the decision log quotes them, it
 * costs a third of JSON.stringify on every patched review.
 */
export function patchJson(ops: readonly PatchOperation[]): string {
  let out = '[';
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    if (op.op !== 'remove' && op.value === undefined) return JSON.stringify(ops); // no "value" key at all then
    out += `${i ? ',' : ''}{"op":"${op.op}","path":${jsonString(op.path)}`;
    if (op.op !== 'remove') out += `,"value":${typeof op.value === 'string' ? jsonString(op.value) : JSON.stringify(op.value)}`;
    out += '}';
  }
  return out + ']';
}

export function fromDecision(uid: string, d: Decision): AdmissionResponse {
  const res = d.allowed ? allowed(uid) : denied(uid, d.denial!.message, d.denial!.code);
  withWarnings(res, d.warnings);
  if (Object.keys(d.auditAnnotations).length > 0) res.auditAnnotations = d.auditAnnotations;
  if (d.allowed && d.patch) patched(res, d.patch);
  return res;
}
