// Decoding of admission.k8s.io/v1 AdmissionReview requests, kept apart from policy logic.
// The envelope is validated with ajv; the embedded objects are left as the API server sent them.

import { Ajv } from 'ajv';
import { unescapePointerToken } from '../k8s/json-pointer.js';
import { OPERATIONS, type GroupVersionKind, type GroupVersionResource, type KubeObject, type Operation } from '../k8s/object.js';

export interface UserInfo {
  username?: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

export interface AdmissionRequest {
  uid: string;
  kind: GroupVersionKind;
  resource: GroupVersionResource;
  subResource?: string;
  requestKind?: GroupVersionKind;
  requestResource?: GroupVersionResource;
  requestSubResource?: string;
  /** Absent on some requests (e.g. the namespace controller's deletions): use `objectName()`. */
  name?: string;
  namespace?: string;
  operation: Operation;
  userInfo: UserInfo;
  object?: KubeObject | null;
  oldObject?: KubeObject | null;
  dryRun?: boolean;
  options?: KubeObject | null;
}

export interface AdmissionReview {
  apiVersion: 'admission.k8s.io/v1';
  kind: 'AdmissionReview';
  request: AdmissionRequest;
}

const gvk = {
  type: 'object',
  required: ['group', 'version', 'kind'],
  properties: { group: { type: 'string' }, version: { type: 'string' }, kind: { type: 'string' } },
};
const gvr = {
  type: 'object',
  required: ['group', 'version', 'resource'],
  properties: { group: { type: 'string' }, version: { type: 'string' }, resource: { type: 'string' } },
};
const objectOrNull = { type: ['object', 'null'] };

// Only the envelope: object bodies are as large and as varied as Kubernetes objects are, and
// policies validate the fields they read. Unknown envelope fields are allowed (forward compatible).
const envelopeSchema = {
  type: 'object',
  required: ['apiVersion', 'kind', 'request'],
  properties: {
    apiVersion: { const: 'admission.k8s.io/v1' },
    kind: { const: 'AdmissionReview' },
    request: {
      type: 'object',
      required: ['uid', 'kind', 'resource', 'operation', 'userInfo'],
      properties: {
        uid: { type: 'string', minLength: 1 },
        kind: gvk,
        resource: gvr,
        subResource: { type: 'string' },
        requestKind: gvk,
        requestResource: gvr,
        requestSubResource: { type: 'string' },
        name: { type: 'string' },
        namespace: { type: 'string' },
        operation: { enum: OPERATIONS },
        userInfo: {
          type: 'object',
          properties: {
            username: { type: 'string' },
            uid: { type: 'string' },
            groups: { type: 'array', items: { type: 'string' } },
          },
        },
        object: objectOrNull,
        oldObject: objectOrNull,
        dryRun: { type: 'boolean' },
        options: objectOrNull,
      },
    },
  },
} as const;

const validateEnvelope = new Ajv({ allErrors: false, strict: true }).compile(envelopeSchema);

export class DecodeError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** The request uid when it could be read, so a response can still echo it. */
    readonly uid?: string,
  ) {
    super(message);
  }
}

/**
 * Turn a parsed JSON body into an AdmissionReview, or throw a DecodeError naming what is wrong
 * (as a JSON path, e.g. `request.operation: must be equal to one of the allowed values`).
 */
export function decodeReview(body: unknown): AdmissionReview {
  if (validateEnvelope(body)) {
    const review = body;
    checkObjectsForOperation(review.request);
    return review;
  }
  const err = validateEnvelope.errors?.[0];
  const where = err ? pathOf(err.instancePath, err.params) : '';
  let what = err?.message ?? 'is invalid';
  if (err?.keyword === 'const' || err?.keyword === 'enum') {
    const allowed = (err.params as { allowedValue?: unknown; allowedValues?: unknown[] });
    what = `must be ${JSON.stringify(allowed.allowedValue ?? allowed.allowedValues)}`;
  }
  const uid = typeof (body as any)?.request?.uid === 'string' ? (body as any).request.uid : undefined;
  throw new DecodeError(400, `invalid AdmissionReview: ${where || 'body'}: ${what}`, uid);
}

function pathOf(instancePath: string, params: Record<string, unknown>): string {
  const base = instancePath
    .split('/')
    .filter(Boolean)
    .map(unescapePointerToken)
    .join('.');
  const missing = typeof params.missingProperty === 'string' ? params.missingProperty : '';
  return [base, missing].filter(Boolean).join('.');
}

// An admission request that lacks the object its operation is about cannot be judged; answering
// it anyway would be a silently wrong decision.
function checkObjectsForOperation(req: AdmissionRequest): void {
  const need = req.operation === 'DELETE' ? 'oldObject' : req.operation === 'CONNECT' ? undefined : 'object';
  if (need && (req[need] === null || req[need] === undefined)) {
    throw new DecodeError(400, `invalid AdmissionReview: request.${need}: required for ${req.operation}`, req.uid);
  }
  if (req.operation === 'UPDATE' && (req.oldObject === null || req.oldObject === undefined)) {
    throw new DecodeError(400, 'invalid AdmissionReview: request.oldObject: required for UPDATE', req.uid);
  }
}

/** The object's name: `request.name`, else the object's or old object's metadata (controllers omit it). */
export function objectName(req: AdmissionRequest): string {
  return (
    req.name ||
    req.object?.metadata?.name ||
    req.oldObject?.metadata?.name ||
    req.object?.metadata?.generateName ||
    ''
  );
}
