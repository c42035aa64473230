// The admission scenarios of the end-to-end suite (run from e2e.test.ts), driven through the real
// kubectl against a real kube-apiserver: every assertion is on what kubectl prints (`Warning: ...`, `Error from server
// (Forbidden): ... denied the request: ...`) or on what the API server then holds. tokenguard runs
// as users run it, from the CLI, as its own ServiceAccount, with the manifests' RBAC and webhooks.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { reviewByPrefix } from '../helpers/fixtures.js';
import { SERVED_ISSUER } from './harness/control-plane.js';
import { atLeast, type Assets } from './harness/assets.js';
import { ensureNamespace, startE2e, type E2e } from './harness/environment.js';
import { deletedLine, mustWith, warnings } from './harness/kubectl.js';
import { claim, podOn, tokenSpec } from './harness/objects.js';
import { eventually } from './harness/eventually.js';
import { tokenguardCli, yaml } from './harness/cli.js';

const ENFORCE = 'e2e-enforce';
const WARN = 'e2e-warn';
const RISK_KEY = 'tokenguard.io/pvc-token-risk';

const LONG_UNKNOWN_TOKEN = tokenSpec(172800, 'unknown-audience');

export function webhookScenarios(assets: Assets): void {
  const noControllerManager = assets.kubeControllerManager ? false : `no kube-controller-manager in ${assets.dir}`;
  let e: E2e;

  const must = mustWith(() => e.kubectl);

  before(async () => {
    e = await startE2e(assets, { controllerManager: !!assets.kubeControllerManager });
    await ensureNamespace(e.kubectl, ENFORCE, { 'tokenguard.io/mode': 'enforce' });
    await ensureNamespace(e.kubectl, WARN);
    // Nodes first (a pod bound to a missing node is garbage-collected), with their kubelet versions.
    await must(['apply', '-f', '-'], yaml({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-old' } }, { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-new' } }));
    for (const [node, version] of [['node-old', 'v1.31.2'], ['node-new', 'v1.33.1']] as const) {
      await must(['patch', 'node', node, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { nodeInfo: { kubeletVersion: version } } })]);
    }
    for (const ns of [ENFORCE, WARN]) {
      await must(['apply', '-f', '-'], yaml(claim(ns, 'data'), podOn(ns, 'db-0', 'node-old', 'data'), podOn(ns, 'db-1', 'node-new', 'data')));
      for (const pod of ['db-0', 'db-1']) {
        await must(['patch', 'pod', pod, '-n', ns, '--subresource=status', '--type=merge', '-p', '{"status":{"phase":"Running"}}']);
      }
    }
    // tokenguard's caches follow pods and nodes by watch, a moment behind kubectl: before any test
    // judges them, wait until the guard names both pods in each namespace and knows node-old's kubelet.
    for (const ns of [ENFORCE, WARN]) {
      await eventually(async () => {
        const r = await e.kubectl(['delete', 'pvc', 'data', '-n', ns, '--dry-run=server']);
        return r.stderr.includes('db-0 (Running on node-old), db-1 (Running on node-new)') && r.stderr.includes('on node-old (v1.31.2)');
      }, `the guard to see the pods of ${ns} and their kubelets`);
    }
  });

  after(async () => {
    await e?.stop();
  });

  describe('PVC guard', () => {
    const enforceDenial =
      `Error from server (Forbidden): admission webhook "validate.tokenguard.io" denied the request: [pvc-in-use] ` +
      `PVC ${ENFORCE}/data would hang in Terminating: in use by db-0 (Running on node-old), db-1 (Running on node-new). 2 scheduled pods still use it: `;

    it('an in-use PVC is denied in enforce, through --dry-run=server as well, naming the pods', async () => {
      const dry = await e.kubectl(['delete', 'pvc', 'data', '-n', ENFORCE, '--dry-run=server']);
      assert.equal(dry.code, 1);
      assert.ok(dry.stderr.includes(enforceDenial), dry.stderr);
      const real = await e.kubectl(['delete', 'pvc', 'data', '-n', ENFORCE, '--wait=false']);
      assert.equal(real.code, 1);
      assert.ok(real.stderr.includes(enforceDenial), real.stderr);
      const left = await must(['get', 'pvc', 'data', '-n', ENFORCE, '-o', 'jsonpath={.metadata.deletionTimestamp}']);
      assert.equal(left.stdout, '', 'the claim was not deleted: not Terminating');
    });

    it('names the kubelet affected by kubernetes#130442 in a warning, not the fixed one', async () => {
      const r = await e.kubectl(['delete', 'pvc', 'data', '-n', ENFORCE, '--dry-run=server']);
      assert.deepEqual(warnings(r), ['projected tokens stop refreshing (kubelet bug kubernetes#130442) on node-old (v1.31.2)']);
    });

    it('warn mode: allowed with the warning, and the claim then hangs in Terminating on the real API server', async () => {
      const dry = await e.kubectl(['delete', 'pvc', 'data', '-n', WARN, '--dry-run=server']);
      assert.equal(dry.code, 0, dry.stderr);
      assert.equal(dry.stdout.trim(), deletedLine(assets.kubectlVersion, 'persistentvolumeclaim', 'data', WARN, true));
      const expected = [
        `PVC ${WARN}/data would hang in Terminating: in use by db-0 (Running on node-old), db-1 (Running on node-new)`,
        // kubectl would wait for the deletion the finalizer holds: the warning says how not to.
        'the PVC stays Terminating until those pods stop, and kubectl delete waits for that: pass --wait=false to return at once',
        'projected tokens stop refreshing (kubelet bug kubernetes#130442) on node-old (v1.31.2)',
      ];
      // A dry run deletes nothing and kubectl does not wait for it: the hint is about the real delete.
      const dryHint = 'the PVC would stay Terminating until those pods stop; a real kubectl delete waits for that: pass --wait=false to return at once';
      assert.deepEqual(warnings(dry), [expected[0], dryHint, expected[2]]);
      const real = await e.kubectl(['delete', 'pvc', 'data', '-n', WARN, '--wait=false']);
      assert.equal(real.code, 0, real.stderr);
      assert.deepEqual(warnings(real), expected);
      // The outage itself: kubernetes.io/pvc-protection keeps the claim while the pods run.
      const pvc = JSON.parse((await must(['get', 'pvc', 'data', '-n', WARN, '-o', 'json'])).stdout);
      assert.ok(pvc.metadata.deletionTimestamp, 'Terminating');
      assert.deepEqual(pvc.metadata.finalizers, ['kubernetes.io/pvc-protection']);
      // A second delete: already Terminating, allowed with the pods named.
      const again = await e.kubectl(['delete', 'pvc', 'data', '-n', WARN, '--wait=false']);
      assert.equal(again.code, 0, again.stderr);
      assert.deepEqual(
        warnings(again),
        [`PVC ${WARN}/data is already Terminating; still used by db-0 (Running on node-old), db-1 (Running on node-new)`, expected[1], expected[2]],
        'kubectl waits after a second delete too: the same --wait=false hint',
      );
    });

    it('break glass: the annotated claim is deleted in enforce, with a warning', async () => {
      await must(['annotate', 'pvc', 'data', '-n', ENFORCE, 'tokenguard.io/allow-delete=true']);
      const r = await e.kubectl(['delete', 'pvc', 'data', '-n', ENFORCE, '--wait=false']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), deletedLine(assets.kubectlVersion, 'persistentvolumeclaim', 'data', ENFORCE));
      assert.ok(
        warnings(r).includes(`PVC ${ENFORCE}/data deletion allowed by tokenguard.io/allow-delete=true (break glass); 2 pods still use it`),
        r.stderr,
      );
    });

    // From v1.33 the namespace controller deletes a namespace's pods first and deletes the rest only
    // once they are gone (ordered namespace deletion); there is no kubelet here, so the test removes
    // the Terminating pod itself. Before, it deleted the claim while the pod still ran.
    const orderedDeletion = atLeast(assets.serverVersion, 1, 33);
    it('a namespace deletion is never blocked: the namespace controller deletes an in-use claim in enforce', { skip: noControllerManager }, async () => {
      const ns = 'e2e-doomed';
      await ensureNamespace(e.kubectl, ns, { 'tokenguard.io/mode': 'enforce' });
      await must(['apply', '-f', '-'], yaml(claim(ns, 'data'), podOn(ns, 'db-0', 'node-old', 'data')));
      await must(['patch', 'pod', 'db-0', '-n', ns, '--subresource=status', '--type=merge', '-p', '{"status":{"phase":"Running"}}']);
      // A user's delete is denied (the guard has the pod), the namespace controller's is not.
      await eventually(async () => (await e.kubectl(['delete', 'pvc', 'data', '-n', ns, '--dry-run=server'])).code === 1, 'the guard to see the pod');
      await must(['delete', 'namespace', ns, '--wait=false']);
      const claimDeletionTimestamp = async () => {
        const r = await e.kubectl(['get', 'pvc', 'data', '-n', ns, '-o', 'jsonpath={.metadata.deletionTimestamp}']);
        return r.code === 0 ? r.stdout : 'gone';
      };
      if (orderedDeletion) {
        await eventually(async () => {
          const r = await e.kubectl(['get', 'pod', 'db-0', '-n', ns, '-o', 'jsonpath={.metadata.deletionTimestamp}']);
          return r.code === 0 && r.stdout !== '';
        }, 'the namespace controller to delete the pod first');
        assert.equal(await claimDeletionTimestamp(), '', 'the claim waits until the pods are gone');
        await must(['delete', 'pod', 'db-0', '-n', ns, '--grace-period=0', '--force']);
        await eventually(async () => (await claimDeletionTimestamp()) !== '', 'the namespace controller to delete the claim');
      } else {
        const pvc = await eventually(async () => {
          const r = await e.kubectl(['get', 'pvc', 'data', '-n', ns, '-o', 'json']);
          const obj = r.code === 0 ? JSON.parse(r.stdout) : undefined;
          return obj?.metadata?.deletionTimestamp ? obj : undefined;
        }, 'the namespace controller to delete the claim');
        assert.deepEqual(pvc.metadata.finalizers, ['kubernetes.io/pvc-protection'], 'Terminating behind the finalizer, as upstream');
      }
      const claimDeletes = () =>
        e.tokenguard.logs.filter((l) => l.msg === 'admission decision' && l.resource === 'persistentvolumeclaims' && l.namespace === ns && l.operation === 'DELETE');
      const decisions = await eventually(async () => claimDeletes().length >= 2 && claimDeletes(), 'both decisions in the log', 5000);
      assert.deepEqual(
        decisions.map((l) => [l.user, l.decision]),
        [
          ['e2e-admin', 'denied'],
          ['system:serviceaccount:kube-system:namespace-controller', 'allowed'],
        ],
      );
      // Nothing of tokenguard's in the namespace's deletion conditions (it may be gone already).
      const left = await e.kubectl(['get', 'namespace', ns, '-o', 'json']);
      if (left.code === 0) assert.doesNotMatch(JSON.stringify(JSON.parse(left.stdout).status.conditions), /denied|tokenguard/);
      // There is no kubelet to finish the pod: remove it, and the namespace goes.
      if (!orderedDeletion) await must(['delete', 'pod', 'db-0', '-n', ns, '--grace-period=0', '--force']);
      await eventually(async () => (await e.kubectl(['get', 'namespace', ns])).code === 1, 'the namespace to be gone', 60_000);
    });
  });

  describe('token policies', () => {
    const pod = (ns: string) => yaml({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'long-token', namespace: ns }, spec: LONG_UNKNOWN_TOKEN });
    const deployment = (ns: string) =>
      yaml({
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'api', namespace: ns },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: 'api' } },
          template: { metadata: { labels: { app: 'api' } }, spec: LONG_UNKNOWN_TOKEN },
        },
      });
    const lifetimeWarning = 'token lifetime 172800 s is above the 86400 s maximum (volume "t")';
    const audienceWarning = 'token audience "unknown-audience" is not allowed (volume "t")';

    // The same token volume on a Pod and in a Deployment's pod template: the person applying
    // either sees the problem, at the field where it is.
    const kinds = [
      { what: 'a Pod', manifest: pod, resource: 'pod', name: 'long-token', created: 'pod/long-token created', at: 'spec.volumes' },
      {
        what: 'a Deployment',
        manifest: deployment,
        resource: 'deployment',
        name: 'api',
        created: 'deployment.apps/api created',
        at: 'spec.template.spec.volumes',
      },
    ];
    for (const k of kinds) {
      it(`${k.what}: warnings in warn mode, denied in enforce`, async () => {
        const w = await e.kubectl(['apply', '-f', '-'], k.manifest(WARN));
        assert.equal(w.code, 0, w.stderr);
        assert.equal(w.stdout.trim(), k.created);
        assert.deepEqual(warnings(w), [lifetimeWarning, audienceWarning]);
        const d = await e.kubectl(['apply', '-f', '-'], k.manifest(ENFORCE));
        assert.equal(d.code, 1);
        const denial =
          'Error from server (Forbidden): error when creating "STDIN": admission webhook "validate.tokenguard.io" denied the request: ' +
          `[projected-token-lifetime] token lifetime 172800 s is above the 86400 s maximum (volume "t") (at ${k.at}[0].projected.sources[0].serviceAccountToken.expirationSeconds).`;
        assert.ok(d.stderr.startsWith(denial), d.stderr);
        assert.match(d.stderr, /; \[projected-token-audience\] token audience "unknown-audience" is not allowed \(volume "t"\)/);
        assert.equal((await e.kubectl(['get', k.resource, k.name, '-n', ENFORCE])).code, 1, 'not created');
      });
    }

    it('pvc-token-risk: a pod with a claim and the injected token gets the label and the annotation, once', async () => {
      const pod = JSON.parse((await must(['get', 'pod', 'db-0', '-n', WARN, '-o', 'json'])).stdout);
      const tokenVolume = pod.spec.volumes.find((v: { name: string }) => v.name.startsWith('kube-api-access-')).name;
      assert.equal(pod.metadata.labels[RISK_KEY], 'true');
      assert.equal(pod.metadata.annotations[RISK_KEY], `claims=data;tokens=${tokenVolume}`);
      // Applying the manifest again and relabelling the pod (UPDATEs) leave them as they are:
      // one /mutate decision for the pod, at its CREATE, which patched.
      await must(['apply', '-f', '-'], yaml(podOn(WARN, 'db-0', 'node-old', 'data')));
      await must(['label', 'pod', 'db-0', '-n', WARN, 'tier=db']);
      const after = JSON.parse((await must(['get', 'pod', 'db-0', '-n', WARN, '-o', 'json'])).stdout);
      assert.deepEqual(after.metadata.labels, { ...pod.metadata.labels, tier: 'db' });
      assert.equal(after.metadata.annotations[RISK_KEY], pod.metadata.annotations[RISK_KEY]);
      const mutations = e.tokenguard.logs.filter((l) => l.msg === 'admission decision' && l.route === 'mutate' && l.namespace === WARN && l.name === 'db-0');
      assert.deepEqual(mutations.map((l) => [l.operation, l.decision]), [['CREATE', 'patched']]);
    });
  });

  describe('issuer guard', () => {
    // kube-system enforces here: kubeadm-config lives there (validate-kube-system.tokenguard.io).
    before(async () => {
      await must(['label', 'namespace', 'kube-system', 'tokenguard.io/mode=enforce', '--overwrite']);
      // The mode label reaches tokenguard's namespace cache by watch: wait until a dry run is judged in enforce.
      await eventually(
        async () => (await e.kubectl(['create', '--dry-run=server', '-f', '-'], kubeadmConfig(['https://kubernetes.default.svc.cluster.local']))).code === 1,
        'kube-system to be enforced',
      );
    });

    const kubeadmConfig = (issuers: string[]) => {
      const cm = reviewByPrefix('046').request.object;
      const extraArgs = issuers.map((i) => `    service-account-issuer: ${i}`).join('\n');
      // The captured v1beta3 ClusterConfiguration, with a map extraArgs that can hold one issuer only.
      cm.data.ClusterConfiguration = cm.data.ClusterConfiguration.replace(/ {4}service-account-issuer: .*/, extraArgs);
      return JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'kubeadm-config', namespace: 'kube-system' }, data: cm.data });
    };

    it('a kubeadm-config in kube-system that lacks the served issuer is denied', async () => {
      const r = await e.kubectl(['create', '-f', '-'], kubeadmConfig(['https://kubernetes.default.svc.cluster.local']));
      assert.equal(r.code, 1);
      assert.ok(
        r.stderr.includes(
          'Error from server (Forbidden): error when creating "STDIN": admission webhook "validate-kube-system.tokenguard.io" denied the request: ' +
            `[service-account-issuer] drops issuer ${SERVED_ISSUER} (its tokens fail): keep it as an extra --service-account-issuer (at data.ClusterConfiguration). ` +
            `${SERVED_ISSUER} is the served issuer (/.well-known/openid-configuration), but kubeadm-config accepts only https://kubernetes.default.svc.cluster.local`,
        ),
        r.stderr,
      );
    });

    it('one that keeps the served issuer is allowed', async () => {
      const r = await e.kubectl(['create', '-f', '-'], kubeadmConfig([SERVED_ISSUER]));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), 'configmap/kubeadm-config created');
      assert.deepEqual(warnings(r), []);
    });

    /** kubeadm v1beta4 (kubeadm 1.31+): extraArgs a list of {name, value}, so a flag can repeat. The captured 047. */
    const kubeadmConfigV1beta4 = (issuers: string[]) => {
      const cm = reviewByPrefix('047').request.object;
      const extraArgs = issuers.map((i) => `  - name: service-account-issuer\n    value: ${i}`).join('\n');
      cm.data.ClusterConfiguration = cm.data.ClusterConfiguration.replace(/ {2}- name: service-account-issuer\n {4}value: .*/, extraArgs);
      assert.match(cm.data.ClusterConfiguration, /^apiVersion: kubeadm\.k8s\.io\/v1beta4$/m);
      return JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'kubeadm-config', namespace: 'kube-system' }, data: cm.data });
    };
    const NEW_ISSUER = 'https://oidc.prod.example.com';

    it('kubeadm v1beta4 (as `kubeadm upgrade` rewrites it): a new first issuer that keeps the served one is allowed with the 24 h note', async () => {
      const r = await e.kubectl(['replace', '-f', '-'], kubeadmConfigV1beta4([NEW_ISSUER, SERVED_ISSUER]));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), 'configmap/kubeadm-config replaced');
      assert.deepEqual(warnings(r), [
        `new tokens carry issuer ${NEW_ISSUER}; keep ${SERVED_ISSUER} accepted 24 h+`,
        '--api-audiences unset: the default token audience changes with the issuer list',
      ]);
    });

    it('kubeadm v1beta4: dropping the served issuer from the list is denied', async () => {
      const r = await e.kubectl(['replace', '-f', '-'], kubeadmConfigV1beta4([NEW_ISSUER]));
      assert.equal(r.code, 1);
      assert.ok(
        r.stderr.includes(
          'Error from server (Forbidden): error when replacing "STDIN": admission webhook "validate-kube-system.tokenguard.io" denied the request: ' +
            `[service-account-issuer] drops issuer ${SERVED_ISSUER} (its tokens fail): keep it as an extra --service-account-issuer (at data.ClusterConfiguration).`,
        ),
        r.stderr,
      );
    });

    it('a v1.36-style mirror pod signing through an external signer (--service-account-signing-endpoint): judged on its issuers', async () => {
      // The signer is a sidecar listed first; kube-apiserver takes its flags as args to the image's entrypoint.
      const mirrorPod = (name: string, issuers: string[]) => {
        const captured = reviewByPrefix('043').request.object;
        const { labels, annotations } = captured.metadata;
        const args = [
          '--advertise-address=10.0.0.11',
          ...issuers.map((i) => `--service-account-issuer=${i}`),
          '--service-account-signing-endpoint=/var/run/kubernetes/signer.sock',
        ];
        return JSON.stringify({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name, namespace: 'kube-system', labels, annotations },
          spec: {
            nodeName: 'cp-2',
            containers: [
              { name: 'token-signer', image: 'registry.example.com/token-signer:1.0', args: ['--listen=/var/run/kubernetes/signer.sock'] },
              { name: 'apiserver', image: 'registry.k8s.io/kube-apiserver:v1.36.3', args },
            ],
          },
        });
      };
      const keeps = await e.kubectl(['create', '--dry-run=server', '-f', '-'], mirrorPod('kube-apiserver-cp-2', [SERVED_ISSUER]));
      assert.equal(keeps.code, 0, keeps.stderr);
      assert.equal(keeps.stdout.trim(), 'pod/kube-apiserver-cp-2 created (server dry run)');
      assert.deepEqual(warnings(keeps), [], 'no false "issuer dropped"');
      const drops = await e.kubectl(['create', '--dry-run=server', '-f', '-'], mirrorPod('kube-apiserver-cp-2', ['https://kubernetes.default.svc.cluster.local']));
      assert.equal(drops.code, 0, 'warned, never denied\n' + drops.stderr);
      assert.ok(warnings(drops).includes(`drops issuer ${SERVED_ISSUER} (its tokens fail): keep it as an extra --service-account-issuer`), drops.stderr);
    });

    it('a kube-apiserver mirror pod that drops the served issuer: a warning (never a denial) and an Event', async () => {
      const captured = reviewByPrefix('043').request.object;
      const { name, namespace, labels, annotations } = captured.metadata;
      const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace, labels, annotations }, spec: captured.spec };
      await must(['apply', '-f', '-'], yaml({ apiVersion: 'v1', kind: 'Node', metadata: { name: captured.spec.nodeName } }));
      const r = await e.kubectl(['create', '-f', '-'], JSON.stringify(pod));
      assert.equal(r.code, 0, 'denying a mirror pod would only hide the static pod\n' + r.stderr);
      assert.equal(r.stdout.trim(), `pod/${name} created`);
      assert.ok(warnings(r).includes(`drops issuer ${SERVED_ISSUER} (its tokens fail): keep it as an extra --service-account-issuer`), r.stderr);
      const event = await eventually(async () => {
        const list = JSON.parse((await must(['get', 'events', '-n', 'tokenguard', '-o', 'json'])).stdout);
        return list.items.find((ev: { reason: string }) => ev.reason === 'ServiceAccountIssuerDropped');
      }, 'the Event');
      assert.deepEqual(event.involvedObject, { apiVersion: 'apps/v1', kind: 'Deployment', name: 'tokenguard', namespace: 'tokenguard' });
      assert.equal(event.related.name, name);
      assert.match(event.message, new RegExp(`^kube-apiserver pod ${name} does not accept ${SERVED_ISSUER.replace(/[./]/g, '\\$&')} `));
    });

    it('a KubeadmControlPlane: created without this cluster\'s issuer, then an UPDATE dropping its old issuer is denied', async () => {
      await must(['apply', '-f', '-'], yaml(KCP_CRD));
      await must(['wait', '--for=condition=Established', 'crd/kubeadmcontrolplanes.controlplane.cluster.x-k8s.io', '--timeout=30s']);
      const created = reviewByPrefix('049').request.object;
      created.metadata = { name: 'prod-control-plane', namespace: ENFORCE };
      // The CRD's API appears a moment after Established: retry the create until it is served.
      const c = await eventually(async () => {
        const r = await e.kubectl(['create', '-f', '-'], JSON.stringify(created));
        return r.code === 0 || !/the server could not find the requested resource|no matches for kind/.test(r.stderr) ? r : undefined;
      }, 'the KubeadmControlPlane API');
      assert.equal(c.code, 0, c.stderr);
      assert.equal(c.stdout.trim(), 'kubeadmcontrolplane.controlplane.cluster.x-k8s.io/prod-control-plane created');
      assert.deepEqual(warnings(c), [], 'a new KCP configures another cluster: not judged against this one');

      const updated = reviewByPrefix('050').request.object;
      const live = JSON.parse((await must(['get', 'kubeadmcontrolplane', 'prod-control-plane', '-n', ENFORCE, '-o', 'json'])).stdout);
      updated.metadata = { name: 'prod-control-plane', namespace: ENFORCE, resourceVersion: live.metadata.resourceVersion };
      const r = await e.kubectl(['replace', '-f', '-'], JSON.stringify(updated));
      assert.equal(r.code, 1);
      assert.ok(
        r.stderr.includes(
          'Error from server (Forbidden): error when replacing "STDIN": admission webhook "validate.tokenguard.io" denied the request: ' +
            '[service-account-issuer] drops issuer https://master.prod.example.com (its tokens fail): keep it as an extra --service-account-issuer ' +
            '(at spec.kubeadmConfigSpec.clusterConfiguration.apiServer.extraArgs). https://master.prod.example.com is accepted by the previous ' +
            'version of KubeadmControlPlane prod-control-plane, but',
        ),
        r.stderr,
      );
    });
  });

  describe('issuer discovery, the token self-test and the CLI', () => {
    it('discovery reads the served issuer and the key set; the token self-test passes (metric 1)', async () => {
      await eventually(async () => (await e.tokenguard.metric('tokenguard_token_selftest_success')) === 1, 'a passing self-test');
      assert.equal(await e.tokenguard.metric('tokenguard_issuer_discovery_failures_total'), 0);
      const discovered = e.tokenguard.logs.find((l) => l.msg === 'service-account issuer discovered');
      assert.equal(discovered?.issuer, SERVED_ISSUER);
      assert.ok(!e.tokenguard.logs.some((l) => l.msg === 'issuer discovery failed'), e.tokenguard.logTail());
    });

    it('token inspect: a fresh `kubectl create token` verifies against the cluster\'s JWKS (exit 0); a tampered one exits 1', async () => {
      const token = (await must(['create', 'token', 'default', '-n', WARN])).stdout.trim();
      const file = join(e.cp.dir, 'fresh.jwt');
      writeFileSync(file, token);
      const r = await tokenguardCli(['token', 'inspect', '--kubeconfig', e.cp.kubeconfig, file]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, / {2}served issuer {3}https:\/\/kubernetes\.default\.svc\n/);
      assert.match(r.stdout, / {2}signature {7}verified against the cluster's JWKS \(key \S+\)\n/);
      assert.match(r.stdout, /\nVerdict: VALID\n$/);

      // Change one character of the signature: the key set no longer verifies it.
      const [header, claims, signature] = token.split('.') as [string, string, string];
      const flipped = signature.slice(0, 10) + (signature[10] === 'A' ? 'B' : 'A') + signature.slice(11);
      writeFileSync(file, `${header}.${claims}.${flipped}`);
      const t = await tokenguardCli(['token', 'inspect', '--kubeconfig', e.cp.kubeconfig, file]);
      assert.equal(t.code, 1, t.stdout + t.stderr);
      assert.match(t.stdout, / {2}signature {7}does NOT verify against the cluster's JWKS\n/);
      assert.match(t.stdout, /Verdict: INVALID\n {2}x the signature does not verify with the published key\n/);
    });

    it('audit prints the served issuer and the claim left Terminating in use', async () => {
      const r = await tokenguardCli(['audit', '--kubeconfig', e.cp.kubeconfig]);
      assert.equal(r.code, 1, 'a claim is Terminating while in use: exit 1\n' + r.stdout + r.stderr);
      assert.match(r.stdout, /^Served issuer: https:\/\/kubernetes\.default\.svc$/m);
      assert.match(r.stdout, new RegExp(`^${WARN}\\s+data\\s+\\S+\\s+db-0\\s+Running\\s+node-old\\s+v1\\.31\\.2 \\(affected\\)\\s+not refreshed \\(kubernetes#130442\\)$`, 'm'));
    });
  });
}

/** Just enough of Cluster API's CRD for KubeadmControlPlane objects to be stored and reviewed. */
const KCP_CRD = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'kubeadmcontrolplanes.controlplane.cluster.x-k8s.io' },
  spec: {
    group: 'controlplane.cluster.x-k8s.io',
    names: { kind: 'KubeadmControlPlane', listKind: 'KubeadmControlPlaneList', plural: 'kubeadmcontrolplanes', singular: 'kubeadmcontrolplane' },
    scope: 'Namespaced',
    versions: [
      {
        name: 'v1beta1',
        served: true,
        storage: true,
        schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
      },
    ],
  },
};
