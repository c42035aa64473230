// Every warning a policy can produce fits in one warning as the API server passes it on
// (MAX_WARNING_CHARS, 256), with every name at the longest Kubernetes allows (object names 253,
// namespaces and volume names 63) and unbounded values (issuers, audiences, URLs) far longer:
// what cannot fit is left out whole, never cut. Each branch of each policy is driven here.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Finding, PodSummary, PolicyContext } from '../../src/admission/policy.js';
import { MAX_WARNING_CHARS } from '../../src/admission/warnings.js';
import type { AdmissionRequest } from '../../src/admission/review.js';
import type { ClusterView } from '../../src/cluster/view.js';
import type { KubeObject } from '../../src/k8s/object.js';
import { validatePvcDelete, type PvcLookup } from '../../src/policies/pvc-in-use.js';
import { analyzeIssuerChange } from '../../src/policies/service-account-issuer.js';
import { projectedTokenLifetimePolicy, prepareBounds } from '../../src/policies/projected-token-lifetime.js';
import { projectedTokenAudiencePolicy } from '../../src/policies/projected-token-audience.js';
import { nfsMountOptionsPolicy } from '../../src/policies/nfs-mount-options.js';
import { requestFor } from './manifest-reviews.js';

/** Names of the longest length the API allows: a DNS subdomain (253) and a DNS label (63). */
const name253 = (prefix: string) => (prefix + '-' + 'x'.repeat(253)).slice(0, 253);
const label63 = (prefix: string) => (prefix + '-' + 'y'.repeat(63)).slice(0, 63);
const longUrl = (host: string) => `https://${host}.example.com/${'p'.repeat(300)}`;

/** Each message within the limit, and each name whole or absent (a prefix of it never stands alone). */
function assertFits(findings: Finding[], names: string[]): void {
  assert.ok(findings.length > 0, 'the case produced findings');
  for (const f of findings) {
    assert.ok(Array.from(f.message).length <= MAX_WARNING_CHARS, `${Array.from(f.message).length} characters: ${f.message}`);
    for (const n of names) {
      if (f.message.includes(n.slice(0, 24))) assert.ok(f.message.includes(n), `${n.slice(0, 30)}... cut in: ${f.message}`);
    }
    assert.doesNotMatch(f.message, /…/, 'never cut with an ellipsis');
  }
}

describe('every policy message fits in one warning, names whole or left out', () => {
  const ns = label63('ns');
  const claim = name253('claim');
  const pods = ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((p) => name253(`pod-${p}`));
  const node = name253('node');
  const pod = (name: string, nodeName: string, phase: string): PodSummary => ({
    namespace: ns,
    name,
    uid: `uid-${name.slice(0, 8)}`,
    nodeName,
    phase,
    claims: [claim],
    hasProjectedToken: true,
  });
  const cluster = { node: () => ({ name: node, kubeletVersion: 'v1.31.2' }) } as unknown as ClusterView;
  const ctx = (mode: 'enforce' | 'warn', onFailure: 'allow' | 'deny' = 'allow'): PolicyContext =>
    ({ settings: {}, mode, cluster, lookup: { timeoutMs: 100, onFailure } });
  const pvcDelete = (annotations: Record<string, string> = {}, terminating = false): AdmissionRequest => ({
    uid: 'u',
    kind: { group: '', version: 'v1', kind: 'PersistentVolumeClaim' },
    resource: { group: '', version: 'v1', resource: 'persistentvolumeclaims' },
    name: claim,
    namespace: ns,
    operation: 'DELETE',
    userInfo: { username: 'admin' },
    object: null,
    oldObject: { metadata: { name: claim, namespace: ns, annotations, ...(terminating ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}) } },
    dryRun: false,
  });
  const names = [claim, ...pods, node, ns];

  it('pvc-in-use: pods in every phase, many of them, terminating, break glass, failed lookups', () => {
    const all: PvcLookup = {
      source: 'cache',
      pods: [pod(pods[0]!, node, 'Running'), pod(pods[1]!, node, 'Pending'), pod(pods[2]!, node, 'Unknown'), pod(pods[3]!, node, 'Succeeded'), pod(pods[4]!, '', 'Pending'), pod(pods[5]!, node, 'Failed'), pod(pods[6]!, '', 'Pending')],
    };
    for (const mode of ['enforce', 'warn'] as const) {
      assertFits(validatePvcDelete(pvcDelete(), ctx(mode), all), names);
      assertFits(validatePvcDelete(pvcDelete({ 'tokenguard.io/allow-delete': 'true' }), ctx(mode), all), names);
      assertFits(validatePvcDelete(pvcDelete({}, true), ctx(mode), all), names);
      assertFits(validatePvcDelete(pvcDelete(), ctx(mode), { source: 'cache', pods: [pod(pods[3]!, node, 'Succeeded')] }), names);
      for (const onFailure of ['allow', 'deny'] as const) {
        assertFits(validatePvcDelete(pvcDelete(), ctx(mode, onFailure), { source: 'failed', reason: 'x'.repeat(500) }), names);
        assertFits(validatePvcDelete(pvcDelete({ 'tokenguard.io/allow-delete': 'true' }), ctx(mode, onFailure), { source: 'failed', reason: 'down' }), names);
      }
      assertFits(validatePvcDelete(pvcDelete(), ctx(mode), new Error('x'.repeat(500))), names);
    }
    // Short names are shown whole, with the pods' phases as Kubernetes names them.
    const short = validatePvcDelete(
      { ...pvcDelete(), name: 'data', namespace: 'shop', oldObject: { metadata: { name: 'data', namespace: 'shop' } } },
      ctx('warn'),
      { source: 'cache', pods: [{ ...pod('db-0', 'node-a', 'Pending'), namespace: 'shop', claims: ['data'] }] },
    );
    assert.equal(short[0]!.message, 'PVC shop/data would hang in Terminating: in use by db-0 (Pending on node-a)');
  });

  it('pvc-in-use: the same pods in any order get the same words (the cache keeps watch order, a live LIST name order)', () => {
    const req = { ...pvcDelete(), name: 'shared', namespace: 'shop', oldObject: { metadata: { name: 'shared', namespace: 'shop' } } };
    const p = (name: string) => ({ ...pod(name, 'node-1', 'Running'), namespace: 'shop', claims: ['shared'] });
    const watchOrder = validatePvcDelete(req, ctx('enforce'), { source: 'cache', pods: [p('reader-1'), p('db-1')] });
    const listOrder = validatePvcDelete(req, ctx('enforce'), { source: 'live', pods: [p('db-1'), p('reader-1')] });
    assert.deepEqual(watchOrder, listOrder);
    assert.equal(watchOrder[0]!.message, 'PVC shop/shared would hang in Terminating: in use by db-1 (Running on node-1), reader-1 (Running on node-1)');
  });

  it('service-account-issuer: every rule, with issuers and URLs far past the limit', () => {
    const [a, b, c] = [longUrl('a'), longUrl('b'), longUrl('c')];
    const kcp = (issuers: string[], extra: { name: string; value: string }[] = [], annotations: Record<string, string> = {}): KubeObject => ({
      apiVersion: 'controlplane.cluster.x-k8s.io/v1beta1',
      kind: 'KubeadmControlPlane',
      metadata: { name: name253('kcp'), namespace: ns, annotations },
      spec: { kubeadmConfigSpec: { clusterConfiguration: { apiServer: { extraArgs: [...issuers.map((i) => ({ name: 'service-account-issuer', value: i })), ...extra] } } } },
    });
    const update = (object: KubeObject, oldObject: KubeObject): AdmissionRequest => ({
      uid: 'u',
      kind: { group: 'controlplane.cluster.x-k8s.io', version: 'v1beta1', kind: 'KubeadmControlPlane' },
      resource: { group: 'controlplane.cluster.x-k8s.io', version: 'v1beta1', resource: 'kubeadmcontrolplanes' },
      name: object.metadata.name,
      namespace: ns,
      operation: 'UPDATE',
      userInfo: { username: 'admin' },
      object,
      oldObject,
      dryRun: false,
    });
    const noCluster = { settings: {}, mode: 'enforce' } as PolicyContext;
    const jwks = (host: string) => ({ name: 'service-account-jwks-uri', value: `https://${host}/${'j'.repeat(280)}` });
    const cases: [KubeObject, KubeObject][] = [
      [kcp([b]), kcp([a])], // drops a (the signer)
      [kcp([b, c]), kcp([b, a, c])], // drops a (an extra issuer)
      [kcp([b, a]), kcp([a])], // new signer b, a kept
      [kcp([b, b]), kcp([b])], // duplicate
      [kcp([b], [], { 'tokenguard.io/allow-issuer-removal': a }), kcp([a, b])], // acknowledged removal
      [kcp([a], [jwks('keys.example.net')]), kcp([a], [jwks('other.example.net')])], // jwks-uri changed, on another host
    ];
    for (const [object, old] of cases) assertFits(analyzeIssuerChange(update(object, old), noCluster).findings, [a, b, c, object.metadata.name]);
    // A broken configuration: the error is no part of the warning's length budget.
    const broken = kcp([a]);
    broken.spec.kubeadmConfigSpec.clusterConfiguration.apiServer.extraArgs = 'x'.repeat(300);
    assertFits(analyzeIssuerChange(update(broken, kcp([a])), noCluster).findings, [broken.metadata.name]);
  });

  it('service-account-issuer: dropping an extra issuer (not the signer): the Fix starts at step 2 of the safe path', () => {
    const [a, b] = ['https://a.example.com', 'https://b.example.com'];
    const kcp = (issuers: string[]): KubeObject => ({
      apiVersion: 'controlplane.cluster.x-k8s.io/v1beta1',
      kind: 'KubeadmControlPlane',
      metadata: { name: 'cp', namespace: 'capi' },
      spec: { kubeadmConfigSpec: { clusterConfiguration: { apiServer: { extraArgs: issuers.map((i) => ({ name: 'service-account-issuer', value: i })) } } } },
    });
    const req: AdmissionRequest = {
      uid: 'u',
      kind: { group: 'controlplane.cluster.x-k8s.io', version: 'v1beta1', kind: 'KubeadmControlPlane' },
      resource: { group: 'controlplane.cluster.x-k8s.io', version: 'v1beta1', resource: 'kubeadmcontrolplanes' },
      name: 'cp',
      namespace: 'capi',
      operation: 'UPDATE',
      userInfo: { username: 'admin' },
      object: kcp([a]),
      oldObject: kcp([a, b]),
      dryRun: false,
    };
    const [drop] = analyzeIssuerChange(req, { settings: {}, mode: 'enforce' }).findings;
    assert.equal(
      drop!.fix,
      `in spec.kubeadmConfigSpec.clusterConfiguration.apiServer.extraArgs: 2. make ${a} the first one, keep ${b} after it, roll; ` +
        `3. wait until every token ${b} signed has expired (at least 24 h, longer if tokens are handed out with longer lifetimes), ` +
        `then remove ${b} (annotate tokenguard.io/allow-issuer-removal=${b}), roll`,
    );
  });

  it('service-account-issuer: a kubeadm default issuer is named whole (the old 120-character cut fell inside it)', () => {
    const served = 'https://kubernetes.default.svc.cluster.local';
    const configMap = (issuer: string): KubeObject => ({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'kubeadm-config', namespace: 'kube-system' },
      data: { ClusterConfiguration: `apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\napiServer:\n  extraArgs:\n    service-account-issuer: ${issuer}\n` },
    });
    const req: AdmissionRequest = {
      ...requestConfigMap(configMap('https://api.internal.prod.example.com')),
      operation: 'UPDATE',
      oldObject: configMap(served),
    };
    const [drop] = analyzeIssuerChange(req, { settings: {}, mode: 'warn' }).findings;
    assert.equal(drop!.message, `drops issuer ${served} (its tokens fail): keep it as an extra --service-account-issuer`);
  });

  // Found by the fuzz tests (test/fuzz): a volume name is a 63-character DNS label once the API
  // server has validated the object, but `tokenguard check` and /mutate see objects before that.
  // A 253-character name made the audience denial 323 characters long.
  for (const [what, vol, nfsVol] of [['63-character', label63('vol'), label63('nfs')], ['unvalidated 253-character', name253('vol'), name253('nfs')]]) {
    it(`token and NFS policies: ${what} volume names, unbounded audiences and values`, () => tokenAndNfs(vol!, nfsVol!));
  }

  function tokenAndNfs(vol: string, nfsVol: string) {
    const podWith = (token: Record<string, unknown>): KubeObject => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: name253('pod'), namespace: ns },
      spec: {
        containers: [{ name: 'c', image: 'i' }],
        volumes: [
          { name: vol, projected: { sources: [{ serviceAccountToken: { path: 't', ...token } }] } },
          { name: nfsVol, nfs: { server: 's', path: '/' } },
        ],
      },
    });
    const lifetime = { settings: prepareBounds({ minSeconds: 600, maxSeconds: 86400, namespaces: [] }), mode: 'enforce' } as PolicyContext<never>;
    const narrow = { settings: prepareBounds({ minSeconds: 1200, maxSeconds: 7200, namespaces: [{ namespaces: [ns], minSeconds: 1800 }] }), mode: 'enforce' } as PolicyContext<never>;
    for (const token of [{ expirationSeconds: 1 }, { expirationSeconds: 2 ** 40 }, { expirationSeconds: 'z'.repeat(400) }, { expirationSeconds: 90000 }, { expirationSeconds: 3607 }, {}]) {
      for (const c of [lifetime, narrow]) {
        const found = projectedTokenLifetimePolicy.validate!(requestFor(podWith(token)), c, undefined);
        if (found.length) assertFits(found, [vol]);
      }
    }
    const audiences = {
      settings: projectedTokenAudiencePolicy.prepare!({ allowed: ['vault'], additionalAllowed: [], namespaces: [], apiServerAudiences: [] }),
      mode: 'enforce',
    } as PolicyContext<never>;
    for (const audience of ['a'.repeat(400), 'not-allowed', 42, ['x'.repeat(300)]]) {
      assertFits(projectedTokenAudiencePolicy.validate!(requestFor(podWith({ audience })), audiences, undefined), [vol, 'a'.repeat(400)]);
    }
    const nfs = { settings: nfsMountOptionsPolicy.prepare!({ provisioners: ['*nfs*'] }), mode: 'warn' } as PolicyContext<never>;
    assertFits(nfsMountOptionsPolicy.validate!(requestFor(podWith({})), nfs, undefined), [nfsVol]);
  }
});

function requestConfigMap(object: KubeObject): AdmissionRequest {
  return {
    uid: 'u',
    kind: { group: '', version: 'v1', kind: 'ConfigMap' },
    resource: { group: '', version: 'v1', resource: 'configmaps' },
    name: object.metadata.name,
    namespace: 'kube-system',
    operation: 'CREATE',
    userInfo: { username: 'admin' },
    object,
    oldObject: null,
    dryRun: false,
  };
}
