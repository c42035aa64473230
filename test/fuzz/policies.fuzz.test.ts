// Property-based tests of every policy and of the engine, given arbitrary objects of each kind a
// policy's rules match (the kinds of k8s/resources.ts): for each case, with the cluster view
// reporting arbitrary pods using the claim and arbitrary kubelet versions,
//   - nothing throws (a policy's throw reaches the engine's onPolicyError: a failure here);
//   - the decision is the same for the same input;
//   - every patch applies cleanly, with an independent JSON Patch implementation, to the object it was made for;
//   - every finding's message is at most 256 characters and whole (no ellipsis, names whole or left out),
//     and so is every warning of the response.
// Seed and run counts: fuzz-support.ts.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Engine } from '../../src/admission/engine.js';
import type { AnyPolicy, Decision } from '../../src/admission/policy.js';
import { fromDecision } from '../../src/admission/response.js';
import { decodeReview, type AdmissionRequest } from '../../src/admission/review.js';
import { MAX_WARNING_CHARS, warningLength } from '../../src/admission/warnings.js';
import { resolveConfig } from '../../src/config/load.js';
import { KNOWN_RESOURCES, type KnownResource } from '../../src/k8s/resources.js';
import { BUILTIN_POLICIES } from '../../src/policies/index.js';
import { applyJsonPatch } from '../helpers/json-patch.js';
import { fuzzCluster, kubeletVersions, podsUsingClaims, type FuzzClusterState } from './fuzz-cluster.js';
import {
  fuzzParams,
  kubeadmConfig,
  kubeadmControlPlane,
  mirrorPod,
  persistentVolume,
  persistentVolumeClaim,
  storageClass,
  tokenRequest,
  workloadOf,
} from './fuzz-support.js';

/** Objects of a resource, as a policy in `namespace` may see them. */
function objectsOf(known: KnownResource, namespace: string | undefined, subresource?: string): fc.Arbitrary<unknown> {
  if (subresource === 'token') return tokenRequest;
  switch (known.resource) {
    case 'pods':
      return namespace === 'kube-system' ? fc.oneof(mirrorPod, workloadOf('Pod')) : workloadOf('Pod');
    case 'persistentvolumes':
      return persistentVolume;
    case 'storageclasses':
      return storageClass;
    case 'persistentvolumeclaims':
      return persistentVolumeClaim;
    case 'configmaps':
      return kubeadmConfig;
    case 'kubeadmcontrolplanes':
      return kubeadmControlPlane;
    default:
      return workloadOf(known.kind);
  }
}

interface Target {
  known: KnownResource;
  version: string;
  operation: 'CREATE' | 'UPDATE' | 'DELETE';
  namespace?: string;
  /** `token`: a TokenRequest (serviceaccounts/token), whose object is no ServiceAccount. */
  subresource?: string;
}

/** Every (resource, operation) a policy's rules match, with the namespace a rule is limited to. */
function targetsOf(policy: AnyPolicy): Target[] {
  const out: Target[] = [];
  for (const rule of policy.match) {
    for (const group of rule.groups ?? ['']) {
      for (const resource of rule.resources ?? []) {
        const known = KNOWN_RESOURCES.find((k) => k.group === group && k.resource === resource);
        assert.ok(known, `${policy.name} matches ${group}/${resource}, which k8s/resources.ts does not know`);
        for (const operation of rule.operations) {
          for (const subresource of rule.subresources ?? [undefined]) {
            out.push({ known, version: rule.versions?.[0] ?? 'v1', operation: operation as Target['operation'], namespace: rule.namespaces?.[0], subresource });
          }
        }
      }
    }
  }
  return out;
}

const mode = fc.constantFrom('enforce' as const, 'warn' as const);

/** A case: the review's JSON text (decoded afresh per run) and the cluster's state. */
function cases(target: Target) {
  const { known, version, operation } = target;
  const namespace = target.namespace ? fc.constant(target.namespace) : fc.constantFrom('ns', 'shop', 'n'.repeat(63));
  return fc
    .record({
      namespace,
      object: namespace.chain((ns) => objectsOf(known, ns, target.subresource)),
      oldObject: objectsOf(known, target.namespace, target.subresource),
      dryRun: fc.boolean(),
      user: fc.constantFrom('admin', 'system:serviceaccount:kube-system:namespace-controller', '', 'system:node:node-1'),
      pods: podsUsingClaims,
      kubeletVersion: kubeletVersions,
      mode,
    })
    .map((c) => {
      const meta = (c.object as any)?.metadata;
      const token = target.subresource === 'token';
      const request = {
        uid: 'fuzz',
        kind: token ? { group: 'authentication.k8s.io', version: 'v1', kind: 'TokenRequest' } : { group: known.group, version, kind: known.kind },
        resource: { group: known.group, version, resource: known.resource },
        ...(target.subresource ? { subResource: target.subresource } : {}),
        ...(typeof meta?.name === 'string' ? { name: meta.name } : {}),
        ...(known.namespaced ? { namespace: c.namespace } : {}),
        operation,
        userInfo: { username: c.user, groups: c.user.startsWith('system:node:') ? ['system:nodes', 'system:authenticated'] : ['system:authenticated'] },
        object: operation === 'DELETE' ? null : c.object,
        oldObject: operation === 'CREATE' ? null : operation === 'DELETE' ? c.object : c.oldObject,
        dryRun: c.dryRun,
      };
      const text = JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request });
      return { text, cluster: { pods: c.pods, kubeletVersion: c.kubeletVersion }, mode: c.mode };
    });
}

/** Engines for a set of policies in each mode, over one mutable cluster state. */
function engines(policies: readonly AnyPolicy[]) {
  const state: FuzzClusterState = { pods: [], kubeletVersion: '' };
  const errors: string[] = [];
  const make = (m: 'enforce' | 'warn') =>
    new Engine({
      config: resolveConfig({ mode: m }, 'fuzz', policies),
      policies,
      cluster: fuzzCluster(state),
      onPolicyError: (policy, err) => errors.push(`${policy}: ${err instanceof Error ? err.stack : String(err)}`),
    });
  return { state, errors, enforce: make('enforce'), warn: make('warn') };
}

/** What a decision says, without the engine's bookkeeping. */
const said = (d: Decision) => ({ allowed: d.allowed, denial: d.denial, warnings: d.warnings, findings: d.findings, auditAnnotations: d.auditAnnotations, patch: d.patch });

/** Object names and namespaces long enough that a cut one would show: whole in a message, or absent. */
function namesIn(req: AdmissionRequest): string[] {
  const names = [req.name, req.namespace, req.object?.metadata?.name, req.oldObject?.metadata?.name];
  return names.filter((n): n is string => typeof n === 'string' && n.length >= 24 && /^[a-z0-9-]+$/.test(n));
}

function assertWhole(d: Decision, req: AdmissionRequest): void {
  for (const f of d.findings) {
    assert.ok(warningLength(f.message) <= MAX_WARNING_CHARS, `${f.policy}: ${warningLength(f.message)} characters: ${f.message}`);
    assert.doesNotMatch(f.message, /…/, `${f.policy} cut a message: ${f.message}`);
    for (const n of namesIn(req)) {
      if (f.message.includes(n.slice(0, 24))) assert.ok(f.message.includes(n), `${f.policy} cut ${n.slice(0, 30)}... in: ${f.message}`);
    }
  }
  for (const w of fromDecision('fuzz', d).warnings ?? []) {
    assert.ok(warningLength(w) <= MAX_WARNING_CHARS, `warning of ${warningLength(w)} characters: ${w}`);
    assert.doesNotMatch(w, /…/, `the response cut a warning: ${w}`);
  }
}

async function check(e: ReturnType<typeof engines>, c: { text: string; cluster: FuzzClusterState; mode: 'enforce' | 'warn' }): Promise<void> {
  Object.assign(e.state, c.cluster);
  e.errors.length = 0;
  const engine = e[c.mode];
  const run = async () => {
    const req = decodeReview(JSON.parse(c.text)).request;
    return { req, validated: await engine.validate(req), mutated: engine.mutate(req) };
  };
  const first = await run();
  assert.deepEqual(e.errors, [], 'no policy throws');
  const second = await run();
  assert.deepEqual(said(second.validated), said(first.validated), 'validate is deterministic');
  assert.deepEqual(said(second.mutated), said(first.mutated), 'mutate is deterministic');
  assertWhole(first.validated, first.req);
  assertWhole(first.mutated, first.req);
  if (first.mutated.patch) {
    assert.doesNotThrow(() => applyJsonPatch(first.req.object!, first.mutated.patch), `patch ${JSON.stringify(first.mutated.patch).slice(0, 500)}`);
  }
}

describe('fuzz: every policy, given arbitrary objects of each kind it handles', () => {
  for (const policy of BUILTIN_POLICIES) {
    const e = engines([policy]);
    for (const target of targetsOf(policy)) {
      const where = target.namespace ? ` in ${target.namespace}` : '';
      it(`${policy.name}: ${target.operation} ${target.known.kind}${where}`, async () => {
        await fc.assert(fc.asyncProperty(cases(target), (c) => check(e, c)), fuzzParams(25));
      });
    }
  }
});

describe('fuzz: the engine with every policy', () => {
  const e = engines(BUILTIN_POLICIES);
  const all = BUILTIN_POLICIES.flatMap(targetsOf);
  it(`arbitrary objects of all ${new Set(all.map((t) => t.known.kind)).size} kinds, in enforce and warn`, async () => {
    await fc.assert(fc.asyncProperty(fc.constantFrom(...all).chain(cases), (c) => check(e, c)), fuzzParams(400));
  });
});
