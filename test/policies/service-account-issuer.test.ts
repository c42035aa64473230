// The service-account-issuer policy on every object type and rule, driven through the real engine,
// with the captured reviews 042-052 and hand-made variants for the rules the captures do not cover.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../../src/admission/engine.js';
import type { AdmissionRequest } from '../../src/admission/review.js';
import { resolveConfig } from '../../src/config/load.js';
import type { ApiserverPod, ClusterView, IssuerRisk } from '../../src/cluster/view.js';
import { apiserverArgv } from '../../src/k8s/apiserver-flags.js';
import {
  ALLOW_REMOVAL_ANNOTATION,
  analyzeIssuerChange,
  serviceAccountIssuerPolicy,
} from '../../src/policies/service-account-issuer.js';
import type { Mode } from '../../src/admission/policy.js';
import { reviewByPrefix } from '../helpers/fixtures.js';

const CAPTURED = 'https://kubernetes.default.svc';
const KOPS_OLD = 'https://master.prod.example.com';
const KOPS_NEW = 'https://api.internal.prod.example.com';
const KUBEADM_DEFAULT = 'https://kubernetes.default.svc.cluster.local';
const NOTHING_TO_COMPARE = 'issuer change not checked: served issuer unknown, no old version or other kube-apiserver to compare';

/** A ClusterView with a served issuer and mirror pods; records the Events the policy asks for. */
function cluster(served: string | undefined, pods: ApiserverPod[] = []) {
  const risks: IssuerRisk[] = [];
  const view: ClusterView = {
    status: () => ({ synced: true, stale: false }),
    podsUsingClaim: () => [],
    listPodsUsingClaimLive: async () => [],
    namespaceLabels: () => undefined,
    node: () => undefined,
    apiserverPods: () => pods,
    issuers: { servedIssuer: served, reportIssuerRisk: (r) => risks.push(r) },
  };
  return { view, risks };
}

function asCached(pod: any): ApiserverPod {
  return { namespace: pod.metadata.namespace, name: pod.metadata.name, nodeName: pod.spec.nodeName, argv: apiserverArgv(pod) };
}

const KOPS_POD_044 = () => asCached(reviewByPrefix('045').request.object);

function engine(view: ClusterView | undefined, mode: Mode = 'enforce') {
  const config = resolveConfig({ mode }, 'test', [serviceAccountIssuerPolicy]);
  return new Engine({ config, policies: [serviceAccountIssuerPolicy], cluster: view });
}

const req = (prefix: string): AdmissionRequest => reviewByPrefix(prefix).request;
const issuersIn = (messages: string[]) => messages.join('\n');

describe('service-account-issuer: captured mirror pods (warn, never deny)', () => {
  it('042/043 kubeadm pod without the served issuer: warning naming it, an Event, no denial', async () => {
    const { view, risks } = cluster(CAPTURED);
    {
      const r = req('043');
      const d = await engine(view).validate(r);
      assert.equal(d.allowed, true);
      assert.ok(d.warnings.some((w) => w.startsWith(`drops issuer ${CAPTURED} (its tokens fail)`)), issuersIn(d.warnings));
      assert.equal(risks.length, 1);
      assert.equal(risks[0]!.reason, 'ServiceAccountIssuerDropped');
      assert.deepEqual(risks[0]!.object, { kind: 'Pod', namespace: 'kube-system', name: 'kube-apiserver-cp-1', uid: r.object!.metadata.uid });
      assert.match(risks[0]!.message, /does not accept https:\/\/kubernetes\.default\.svc /);
    }
  });

  it('042 on /mutate: the policy has no mutating side, so nothing', () => {
    const d = engine(cluster(CAPTURED).view).mutate(req('042'));
    assert.equal(d.patch, undefined);
    assert.deepEqual(d.findings, []);
  });

  it('044/045 kOps pod, served issuer https://kubernetes.default.svc: warning that it is not accepted', async () => {
    const d = await engine(cluster(CAPTURED).view).validate(req('045'));
    assert.equal(d.allowed, true);
    assert.deepEqual(d.warnings, [`drops issuer ${CAPTURED} (its tokens fail): keep it as an extra --service-account-issuer`]);
  });

  it('044/045 kOps pod, served issuer master...: new tokens carry api.internal..., keep master... 24 h', async () => {
    const { view, risks } = cluster(KOPS_OLD);
    const d = await engine(view).validate(req('045'));
    assert.equal(d.allowed, true);
    assert.deepEqual(d.warnings, [`new tokens carry issuer ${KOPS_NEW}; keep ${KOPS_OLD} accepted 24 h+`]);
    assert.match(d.findings[0]!.detail!, /at least 24 h for kubelet-refreshed tokens, longer for tokens handed out with longer lifetimes/);
    assert.equal(risks.length, 0, 'nothing dropped, no Event');
  });

  it('051/052 new kOps pod without master... while 044 (in the cache) accepts it: warning naming master...', async () => {
    const { view, risks } = cluster(CAPTURED, [KOPS_POD_044()]);
    const d = await engine(view).validate(req('052'));
    assert.equal(d.allowed, true);
    const dropMaster = d.findings.find((f) => f.message.startsWith(`drops issuer ${KOPS_OLD} `));
    assert.ok(dropMaster, issuersIn(d.warnings));
    assert.equal(dropMaster.severity, 'warn');
    assert.match(dropMaster.detail!, /accepted by kube-apiserver pod kube-apiserver-ip-172-20-40-10\.ec2\.internal/);
    assert.match(dropMaster.detail!, /Denying a mirror pod would only hide the static pod/);
    assert.ok(d.warnings.some((w) => w.startsWith(`drops issuer ${CAPTURED} `)), 'the served issuer is dropped too');
    // The default audience follows the issuer list, which changed from 044's.
    const audience = d.findings.find((f) => f.message === '--api-audiences unset: the default token audience changes with the issuer list');
    assert.match(audience?.detail ?? '', new RegExp(`carry the issuer list as audience, now ${KOPS_NEW.replace(/[./]/g, '\\$&')},`));
    assert.deepEqual(risks.map((r) => r.message.match(/does not accept (\S+)/)![1]).sort(), [CAPTURED, KOPS_OLD].sort());
  });

  it('a mirror pod is never compared with itself in the cache (UPDATE of 044 with 044 cached)', async () => {
    const r = req('045');
    const d = await engine(cluster(KOPS_OLD, [KOPS_POD_044()]).view).validate(r);
    assert.ok(!d.findings.some((f) => f.message.includes('--api-audiences')));
    assert.equal(d.findings.length, 1);
  });

  it('a dry-run mirror pod gets the same warnings and no Event', async () => {
    const { view, risks } = cluster(CAPTURED);
    const d = await engine(view).validate({ ...req('043'), dryRun: true });
    assert.ok(d.warnings.some((w) => w.startsWith(`drops issuer ${CAPTURED}`)));
    assert.equal(risks.length, 0);
  });
});

/**
 * A v1.36 kube-apiserver mirror pod whose tokens an external signer signs
 * (ExternalServiceAccountTokenSigner, GA in 1.36): `--service-account-signing-endpoint` instead of
 * the key files, and the signer as a sidecar container listed first. `apiserver` names the
 * kube-apiserver container (kubeadm: `kube-apiserver`); `entrypoint: false` leaves `command` to the
 * image and gives the flags as `args`.
 */
function externalSignerPod(issuers: string[], opts: { apiserver?: string; entrypoint?: boolean } = {}): AdmissionRequest {
  const r = req('043');
  const pod = structuredClone(r.object!);
  const flags = [
    '--advertise-address=10.0.0.10',
    '--authorization-mode=Node,RBAC',
    ...issuers.map((i) => `--service-account-issuer=${i}`),
    '--service-account-signing-endpoint=/var/run/kubernetes/signer.sock',
    '--service-cluster-ip-range=10.96.0.0/12',
  ];
  const apiserver =
    opts.entrypoint === false
      ? { name: opts.apiserver ?? 'kube-apiserver', image: 'registry.k8s.io/kube-apiserver:v1.36.3', args: flags }
      : { name: opts.apiserver ?? 'kube-apiserver', image: 'registry.k8s.io/kube-apiserver:v1.36.3', command: ['kube-apiserver', ...flags] };
  const signer = { name: 'token-signer', image: 'registry.example.com/token-signer:1.0', command: ['/signer'], args: ['--listen=/var/run/kubernetes/signer.sock'] };
  pod.spec.containers = [signer, apiserver];
  return { ...r, object: pod };
}

describe('service-account-issuer: an external token signer (--service-account-signing-endpoint, v1.36)', () => {
  const variants = [
    { what: 'kube-apiserver container named as kubeadm names it', opts: {} },
    { what: 'kube-apiserver container under another name, flags as args to the image entrypoint', opts: { apiserver: 'apiserver', entrypoint: false } },
  ];
  for (const { what, opts } of variants) {
    it(`${what}: keeping the served issuer is no finding`, async () => {
      const { view, risks } = cluster(CAPTURED);
      const d = await engine(view).validate(externalSignerPod([CAPTURED], opts));
      assert.deepEqual(d.findings, []);
      assert.equal(risks.length, 0);
    });

    it(`${what}: dropping the served issuer is still caught`, async () => {
      const { view, risks } = cluster(CAPTURED);
      const d = await engine(view).validate(externalSignerPod([KUBEADM_DEFAULT], opts));
      assert.equal(d.allowed, true, 'a mirror pod is warned about, never denied');
      assert.ok(d.warnings.includes(`drops issuer ${CAPTURED} (its tokens fail): keep it as an extra --service-account-issuer`), issuersIn(d.warnings));
      assert.equal(risks.length, 1);
    });
  }

  it('the cache reads the same flags from such a pod (another kube-apiserver keeps the issuer accepted)', async () => {
    const other = asCached(externalSignerPod([CAPTURED, KOPS_OLD], { apiserver: 'apiserver', entrypoint: false }).object);
    assert.ok(other.argv.includes(`--service-account-issuer=${KOPS_OLD}`), other.argv.join(' '));
    const d = await engine(cluster(CAPTURED, [{ ...other, name: 'kube-apiserver-cp-2' }]).view).validate(externalSignerPod([CAPTURED]));
    assert.ok(d.warnings.some((w) => w.startsWith(`drops issuer ${KOPS_OLD} `)), issuersIn(d.warnings));
  });
});

/**
 * The denial's one-line Fix and its safe migration path agree step by step: the Fix's numbered
 * steps are the path's (from step `from`), with the two issuers named and the removal annotation.
 */
function assertFixFollowsSafePath(message: string, old: string, next: string, from: number): void {
  const path = /Safe path \(kOps docs\): (.*?)\. Fix: /.exec(message)?.[1]?.split('; ');
  const fix = /Fix: in [^:]+: (.*)$/.exec(message)?.[1]?.split('; ');
  assert.ok(path && fix, message);
  assert.equal(path.length, 3, 'three steps: add, make first, remove');
  const concrete = path.map((step) => step.replaceAll('the old issuer', old).replaceAll('the new issuer', next));
  const annotation = ` (annotate tokenguard.io/allow-issuer-removal=${old})`;
  assert.ok(fix.at(-1)!.includes(annotation), 'the last step names the acknowledgement annotation');
  assert.deepEqual(
    fix.map((s) => s.replace(annotation, '')),
    concrete.slice(from - 1),
  );
}

describe('service-account-issuer: kubeadm-config and KubeadmControlPlane (deny)', () => {
  it('046 kubeadm-config CREATE (v1beta3) without the served issuer: denied in enforce, warned in warn', async () => {
    const d = await engine(cluster(CAPTURED).view).validate(req('046'));
    assert.equal(d.allowed, false);
    assert.match(d.denial!.message, /^\[service-account-issuer\] drops issuer https:\/\/kubernetes\.default\.svc \(its tokens fail\)/);
    assert.match(d.denial!.message, /\(at data\.ClusterConfiguration\)/);
    assert.match(d.denial!.message, /Fix: in apiServer\.extraArgs of data\.ClusterConfiguration: 1\. add https:\/\/kubernetes\.default\.svc\.cluster\.local as an extra --service-account-issuer after https:\/\/kubernetes\.default\.svc, roll; 2\. /);
    assert.match(d.denial!.message, /at least 24 h/);
    // The served issuer signs today's tokens: the Fix starts at step 1 of the safe path, as the detail gives it.
    assertFixFollowsSafePath(d.denial!.message, CAPTURED, 'https://kubernetes.default.svc.cluster.local', 1);
    const w = await engine(cluster(CAPTURED).view, 'warn').validate(req('046'));
    assert.equal(w.allowed, true);
    assert.ok(w.warnings.some((x) => x.startsWith(`drops issuer ${CAPTURED}`)));
  });

  it('047 kubeadm-config UPDATE to v1beta4 replacing the issuer: denied, naming the dropped .cluster.local issuer', async () => {
    const d = await engine(cluster(CAPTURED).view).validate(req('047'));
    assert.equal(d.allowed, false);
    assert.match(d.denial!.message, /drops issuer https:\/\/kubernetes\.default\.svc\.cluster\.local \(its tokens fail\)/);
    assert.match(d.denial!.message, /accepted by the previous version of kubeadm-config/);
  });

  it('049 KubeadmControlPlane CREATE: it configures another cluster, so this one\'s served issuer and mirror pods do not count', async () => {
    // The management cluster serves https://kubernetes.default.svc and runs a kOps-style apiserver;
    // the workload cluster the KCP describes has its own issuers, invisible from here.
    const d = await engine(cluster(CAPTURED, [KOPS_POD_044()]).view).validate(req('049'));
    assert.equal(d.allowed, true);
    assert.deepEqual(d.warnings, [], 'no finding: not a drop, and nothing to compare a new KCP with');
  });

  it('050 KubeadmControlPlane UPDATE master... -> api.internal...: denied (the kOps 1.26 incident)', async () => {
    for (const served of [CAPTURED, KOPS_OLD, undefined]) {
      const d = await engine(cluster(served, [KOPS_POD_044()]).view).validate(req('050'));
      assert.equal(d.allowed, false, `served ${served}`);
      assert.match(d.denial!.message, /drops issuer https:\/\/master\.prod\.example\.com \(its tokens fail\): keep it as an extra --service-account-issuer/);
      assertFixFollowsSafePath(d.denial!.message, 'https://master.prod.example.com', 'https://api.internal.prod.example.com', 1);
      // Judged against its own previous version only: never "the served issuer" of this cluster.
      assert.match(d.denial!.message, /https:\/\/master\.prod\.example\.com is accepted by the previous version of KubeadmControlPlane prod-control-plane, but/);
      assert.doesNotMatch(d.denial!.message, /served issuer|kube-apiserver pod/);
      assert.equal(d.findings.filter((f) => f.message.startsWith('drops issuer')).length, 1, 'only master... is dropped');
    }
  });

  it('the safe path on a KubeadmControlPlane: add as extra, swap (warning), remove with the annotation', async () => {
    const kcp = (issuers: string[], annotations?: Record<string, string>) => ({
      apiVersion: 'controlplane.cluster.x-k8s.io/v1beta1',
      kind: 'KubeadmControlPlane',
      metadata: { name: 'cp', namespace: 'default', ...(annotations ? { annotations } : {}) },
      spec: {
        kubeadmConfigSpec: {
          clusterConfiguration: {
            apiServer: { extraArgs: [...issuers.map((value) => ({ name: 'service-account-issuer', value })), { name: 'api-audiences', value: 'api' }] },
          },
        },
      },
    });
    const update = (from: object, to: object): AdmissionRequest => ({
      ...req('050'),
      object: to,
      oldObject: from,
    });
    const e = engine(cluster(KOPS_OLD).view);
    // 1. add the new one as an extra: nothing to say.
    const add = await e.validate(update(kcp([KOPS_OLD]), kcp([KOPS_OLD, KOPS_NEW])));
    assert.deepEqual([add.allowed, add.warnings], [true, []]);
    // 2. swap: allowed, with the 24 h warning.
    const swap = await e.validate(update(kcp([KOPS_OLD, KOPS_NEW]), kcp([KOPS_NEW, KOPS_OLD])));
    assert.equal(swap.allowed, true);
    assert.deepEqual(swap.warnings, [`new tokens carry issuer ${KOPS_NEW}; keep ${KOPS_OLD} accepted 24 h+`]);
    // 3. remove the old one: denied unless acknowledged by the annotation naming it.
    const afterSwap = cluster(KOPS_NEW).view;
    const remove = await engine(afterSwap).validate(update(kcp([KOPS_NEW, KOPS_OLD]), kcp([KOPS_NEW])));
    assert.equal(remove.allowed, false);
    const ack = await engine(afterSwap).validate(update(kcp([KOPS_NEW, KOPS_OLD]), kcp([KOPS_NEW], { [ALLOW_REMOVAL_ANNOTATION]: KOPS_OLD })));
    assert.equal(ack.allowed, true);
    assert.deepEqual(ack.warnings, [`issuer ${KOPS_OLD} removed (acknowledged by ${ALLOW_REMOVAL_ANNOTATION}): its tokens are rejected now`]);
    assert.deepEqual(ack.auditAnnotations, { 'service-account-issuer.acknowledgedRemoval': KOPS_OLD });
    // The annotation names issuers: acknowledging another one does not help.
    const wrongAck = await engine(afterSwap).validate(update(kcp([KOPS_NEW, KOPS_OLD]), kcp([KOPS_NEW], { [ALLOW_REMOVAL_ANNOTATION]: 'https://other' })));
    assert.equal(wrongAck.allowed, false);
  });
});

describe('service-account-issuer: the other rules', () => {
  const mirrorPod = (args: string[], name = 'kube-apiserver-cp-9') => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: 'kube-system',
      labels: { component: 'kube-apiserver' },
      annotations: { 'kubernetes.io/config.mirror': 'abc' },
    },
    spec: { nodeName: 'cp-9', containers: [{ name: 'kube-apiserver', command: ['kube-apiserver', ...args] }] },
  });
  const podReq = (object: object, oldObject?: object): AdmissionRequest => ({
    ...req('043'),
    name: (object as any).metadata.name,
    operation: oldObject ? 'UPDATE' : 'CREATE',
    object,
    oldObject: oldObject ?? null,
  });

  it('a duplicate issuer: denied on a KubeadmControlPlane, warned on a mirror pod', async () => {
    const r = req('049');
    r.object!.spec.kubeadmConfigSpec.clusterConfiguration.apiServer.extraArgs = [
      { name: 'service-account-issuer', value: KOPS_OLD },
      { name: 'service-account-issuer', value: KOPS_OLD },
    ];
    const d = await engine(cluster(KOPS_OLD).view).validate(r);
    assert.equal(d.allowed, false);
    assert.match(d.denial!.message, /--service-account-issuer https:\/\/master\.prod\.example\.com is listed twice: kube-apiserver will not start/);
    const p = await engine(cluster(CAPTURED).view).validate(
      podReq(mirrorPod([`--service-account-issuer=${CAPTURED}`, '--service-account-issuer', CAPTURED, '--api-audiences=api'])),
    );
    assert.equal(p.allowed, true);
    assert.deepEqual(p.warnings, [`--service-account-issuer ${CAPTURED} is listed twice: kube-apiserver will not start`]);
  });

  it('jwks-uri changed under the same issuer: warning', async () => {
    const before = mirrorPod([`--service-account-issuer=${KOPS_NEW}`, `--service-account-jwks-uri=${KOPS_NEW}/openid/v1/jwks`, '--api-audiences=a']);
    const after = mirrorPod([`--service-account-issuer=${KOPS_NEW}`, `--service-account-jwks-uri=${KOPS_NEW}/keys/v2`, '--api-audiences=a']);
    const d = await engine(cluster(KOPS_NEW).view).validate(podReq(after, before));
    assert.deepEqual(d.warnings, [`--service-account-jwks-uri changed to ${KOPS_NEW}/keys/v2 while the issuer stays ${KOPS_NEW}`]);
    // Also against another kube-apiserver with the same first issuer, on CREATE.
    const other = asCached(mirrorPod([`--service-account-issuer=${KOPS_NEW}`, `--service-account-jwks-uri=${KOPS_NEW}/openid/v1/jwks`], 'kube-apiserver-cp-8'));
    const c = await engine(cluster(KOPS_NEW, [other]).view).validate(podReq(after));
    assert.ok(c.warnings.includes(`--service-account-jwks-uri changed to ${KOPS_NEW}/keys/v2 while the issuer stays ${KOPS_NEW}`), issuersIn(c.warnings));
  });

  it('jwks-uri on another host than the issuer: warning; a non-URL issuer is not compared', async () => {
    const d = await engine(cluster(KOPS_NEW).view).validate(
      podReq(mirrorPod([`--service-account-issuer=${KOPS_NEW}`, '--service-account-jwks-uri=https://keys.example.net/jwks', '--api-audiences=a'])),
    );
    assert.deepEqual(d.warnings, ['--service-account-jwks-uri host keys.example.net is not the issuer\'s host api.internal.prod.example.com']);
    const n = await engine(cluster('kubernetes/serviceaccount').view).validate(
      podReq(mirrorPod(['--service-account-issuer=kubernetes/serviceaccount', '--service-account-jwks-uri=https://keys.example.net/jwks', '--api-audiences=a'])),
    );
    assert.deepEqual(n.warnings, []);
  });

  it('--api-audiences unset: only when the issuer list changes', async () => {
    const same = await engine(cluster(CAPTURED).view).validate(podReq(mirrorPod([`--service-account-issuer=${CAPTURED}`])));
    assert.deepEqual(same.warnings, []);
    const added = await engine(cluster(CAPTURED).view).validate(
      podReq(mirrorPod([`--service-account-issuer=${CAPTURED}`, `--service-account-issuer=${KOPS_NEW}`])),
    );
    assert.deepEqual(added.warnings, ['--api-audiences unset: the default token audience changes with the issuer list']);
    assert.match(added.findings[0]!.detail!, new RegExp(`, now ${CAPTURED},${KOPS_NEW}, and`.replace(/[./]/g, '\\$&')));
    const set = await engine(cluster(CAPTURED).view).validate(
      podReq(mirrorPod([`--service-account-issuer=${CAPTURED}`, `--service-account-issuer=${KOPS_NEW}`, `--api-audiences=${CAPTURED}`])),
    );
    assert.deepEqual(set.warnings, []);
  });

  it('kubeadm default issuer: a kubeadm-config without service-account-issuer is judged as .cluster.local', async () => {
    const r = req('046');
    r.object!.data.ClusterConfiguration = 'apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\napiServer: {extraArgs: {api-audiences: x}}\n';
    const ok = await engine(cluster(KUBEADM_DEFAULT).view).validate(r);
    assert.deepEqual([ok.allowed, ok.warnings], [true, []]);
    const bad = await engine(cluster(CAPTURED).view).validate(r);
    assert.equal(bad.allowed, false);
  });

  it('no cluster: judged with the old version and says so; with nothing to compare, says that', async () => {
    const d = await engine(undefined).validate(req('047'));
    assert.equal(d.allowed, false);
    assert.match(d.denial!.message, /drops issuer https:\/\/kubernetes\.default\.svc\.cluster\.local/);
    assert.match(d.denial!.message, /The served issuer is unknown \(no cluster access, or discovery failed\)/);
    const c = await engine(undefined).validate(req('046'));
    assert.equal(c.allowed, true);
    assert.deepEqual(c.warnings, [NOTHING_TO_COMPARE]);
    // A mirror pod with nothing known at all: the same note, as a warning.
    const p = analyzeIssuerChange(req('052'), { settings: {}, mode: 'enforce' });
    assert.deepEqual(p.findings.map((f) => [f.severity, f.message]), [['warn', NOTHING_TO_COMPARE]]);
    assert.match(p.findings[0]!.detail!, /kube-apiserver-ip-172-20-41-11\.ec2\.internal accepts https:\/\/api\.internal\.prod\.example\.com/);
  });

  it('a broken ClusterConfiguration is a warning naming the problem, never a crash', async () => {
    const r = req('046');
    r.object!.data.ClusterConfiguration = 'apiServer:\n  extraArgs: [unclosed\n';
    const d = await engine(cluster(CAPTURED).view).validate(r);
    assert.equal(d.allowed, true);
    assert.equal(d.warnings.length, 1);
    assert.match(d.warnings[0]!, /^kubeadm-config: data\.ClusterConfiguration is not valid YAML: /);
    r.object!.data.ClusterConfiguration = 'apiServer:\n  extraArgs: 42\n';
    const e = await engine(cluster(CAPTURED).view).validate(r);
    assert.deepEqual(e.warnings, ['kubeadm-config: apiServer.extraArgs is a number, expected a map or a list of {name, value}; issuer flags not checked']);
  });

  it('leaves other objects alone: ordinary pods, other ConfigMaps, kube-system pods that are not mirror pods', async () => {
    const e = engine(cluster(CAPTURED).view);
    for (const prefix of ['004', '006', '001', '014', '062']) {
      const d = await e.validate(req(prefix));
      assert.deepEqual(d.findings, [], prefix);
    }
    const cm = req('046');
    cm.name = 'other-config';
    cm.object!.metadata.name = 'other-config';
    assert.deepEqual((await e.validate(cm)).findings, []);
    const notMirror = mirrorPod([`--service-account-issuer=${KOPS_NEW}`]);
    delete (notMirror.metadata.annotations as Record<string, string>)['kubernetes.io/config.mirror'];
    assert.deepEqual((await e.validate(podReq(notMirror))).findings, []);
  });
});
