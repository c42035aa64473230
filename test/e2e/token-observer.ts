// TokenRequests on a real kube-apiserver, through kubectl:
// - `kubectl create token default --duration=48h` is warned in warn mode and denied in enforce, in
//   the words of the lifetime policy (the base's TokenRequest webhook);
// - a node's own TokenRequests for its pods (kubectl under the node's client certificate,
//   `system:node:node-a` in `system:nodes`, bound to a pod on it) go through untouched in enforce:
//   the matchCondition keeps them off that webhook. With the token-observer component's webhook
//   registered, they reach the observer, which records them (its metric counts them);
// - leader election: two tokenguard processes with `observer.enabled` compete for the Lease with
//   the component's RBAC; one observes and labels its own pod, and when it is killed the other
//   takes over and labels its pod;
// - `tokenguard audit` asks the observer: at a direct address (`--observer-url`: kube-apiserver
//   does not proxy to 127.0.0.1), and through kube-apiserver's real service proxy to the component's
//   Service, with a replica on this machine's own non-loopback address behind a stand-in pod whose IP
//   it is (kube-apiserver proxies only to a Pod's IP): "nothing observes" while no replica holds the
//   Lease, the observer's answer once one does, and RBAC narrowed to that one Service and port.

import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import type { AuditReport } from '../../src/cli/audit.js';
import { NOTHING_OBSERVES, observerProxyPath } from '../../src/cli/audit-observed.js';
import { OBSERVER_DELETION_COST, OBSERVER_LABEL, OBSERVER_LEASE } from '../../src/cluster/token-observer-service.js';
import { webhooksAtUrl } from '../../src/k8s/webhook-manifests.js';
import { freePort } from '../helpers/ports.js';
import { TokenguardProcess } from '../helpers/tokenguard-process.js';
import { PROJECT_ROOT } from '../helpers/tls.js';
import { atLeast, type Assets } from './harness/assets.js';
import { tokenguardCli } from './harness/cli.js';
import type { ControlPlane } from './harness/control-plane.js';
import { ensureNamespace, startE2e, type E2e } from './harness/environment.js';
import { eventually } from './harness/eventually.js';
import { kubectlFor, mustWith, type Kubectl } from './harness/kubectl.js';
import { tokenPod } from './harness/objects.js';

const COMPONENT = join(PROJECT_ROOT, 'manifests', 'components', 'token-observer');

/** This machine's first non-loopback IPv4 address: one kube-apiserver's proxy may dial (it refuses loopback). */
function ownAddress(): string | undefined {
  return Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
}
const ABOVE = 'token lifetime 172800 s is above the 86400 s maximum (token for ServiceAccount "default")';
/** In tr-enforce, ServiceAccount deployer may get tokens of up to 48 h (the others keep the 24 h maximum). */
const DEPLOYER_48H = { 'projected-token-lifetime': { namespaces: [{ namespaces: ['tr-enforce'], serviceAccounts: ['deployer'], maxSeconds: 172800 }] } };

/** kubectl as node `node` (a client certificate from the control plane's CA, as a kubelet has). */
function nodeKubectl(assets: Assets, cp: ControlPlane, node: string): Kubectl {
  const d = cp.dir;
  const openssl = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  writeFileSync(join(d, `${node}.ext`), 'extendedKeyUsage=clientAuth\n');
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(d, `${node}.key`), '-out', join(d, `${node}.csr`), '-subj', `/O=system:nodes/CN=system:node:${node}`]);
  openssl(['x509', '-req', '-in', join(d, `${node}.csr`), '-CA', cp.pki.caCert, '-CAkey', cp.pki.caKey, '-CAcreateserial', '-out', join(d, `${node}.crt`), '-days', '2', '-extfile', join(d, `${node}.ext`)]);
  writeFileSync(join(d, `${node}.kubeconfig`), cp.kubeconfigFor({ clientCert: join(d, `${node}.crt`), clientKey: join(d, `${node}.key`) }));
  return kubectlFor(assets.kubectl, join(d, `${node}.kubeconfig`));
}

export function tokenObserverScenarios(assets: Assets): void {
  let e: E2e;
  const must = mustWith(() => e.kubectl);

  before(async () => {
    // The observer without leader election here (one process): the Lease is the next test's.
    e = await startE2e(assets, { tokenguard: { observer: { enabled: true, leaderElection: false }, policies: DEPLOYER_48H } });
    await must(['apply', '-f', join(COMPONENT, 'rbac.yaml')]);
    // The component's webhook (a patch that adds it to the tokenguard ValidatingWebhookConfiguration),
    // in a configuration of its own here, pointed at this tokenguard's URL like the base's.
    const patch = parse(readFileSync(join(COMPONENT, 'webhook.yaml'), 'utf8')) as { op: string; value: Record<string, unknown> }[];
    const docs = [{ apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingWebhookConfiguration', metadata: { name: 'tokenguard-token-observer' }, webhooks: patch.map((op) => op.value) }];
    await must(['apply', '-f', '-'], webhooksAtUrl(docs, e.tokenguard.url, e.tokenguard.certs.ca.toString('base64')).map((d) => stringify(d)).join('---\n'));
    await ensureNamespace(e.kubectl, 'tr-warn');
    await ensureNamespace(e.kubectl, 'tr-enforce', { 'tokenguard.io/mode': 'enforce' });
    // The API server picks the new webhook up from a watch: wait for its first warning.
    await eventually(async () => (await e.kubectl(['create', 'token', 'default', '-n', 'tr-warn', '--duration=48h'])).stderr.includes('Warning:'), 'the TokenRequest webhook to answer');
  });
  after(async () => {
    await e?.stop();
  });

  it('kubectl create token default --duration=48h: warned in warn mode, denied in enforce', async () => {
    const warned = await e.kubectl(['create', 'token', 'default', '-n', 'tr-warn', '--duration=48h']);
    assert.equal(warned.code, 0, warned.stderr);
    assert.equal(warned.stderr, `Warning: ${ABOVE}\n`);
    assert.match(warned.stdout, /^eyJ[\w-]+\.[\w-]+\.[\w-]+$/, 'the token itself');

    const denied = await e.kubectl(['create', 'token', 'default', '-n', 'tr-enforce', '--duration=48h']);
    assert.equal(denied.code, 1);
    assert.equal(
      denied.stderr,
      'error: failed to create token: admission webhook "validate-tokenrequests.tokenguard.io" denied the request: ' +
        `[projected-token-lifetime] ${ABOVE} (at spec.expirationSeconds). kubelet refreshes a projected token at 80 % of its lifetime or after 24 h anyway, ` +
        'so a longer lifetime only lengthens how long a leaked token stays valid. Fix: set expirationSeconds between 600 and 86400\n',
    );
    assert.equal(denied.stdout, '');
  });

  it('per ServiceAccount: in enforce, deployer gets a 48 h token; another ServiceAccount is denied, and past 48 h deployer too', async () => {
    for (const sa of ['deployer', 'builder']) await must(['create', 'serviceaccount', sa, '-n', 'tr-enforce']);
    const allowed = await e.kubectl(['create', 'token', 'deployer', '-n', 'tr-enforce', '--duration=48h']);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.equal(allowed.stderr, '');
    assert.match(allowed.stdout, /^eyJ[\w-]+\.[\w-]+\.[\w-]+$/);

    const other = await e.kubectl(['create', 'token', 'builder', '-n', 'tr-enforce', '--duration=48h']);
    assert.equal(other.code, 1);
    assert.match(other.stderr, /denied the request: \[projected-token-lifetime\] token lifetime 172800 s is above the 86400 s maximum \(token for ServiceAccount "builder"\)/);

    const longer = await e.kubectl(['create', 'token', 'deployer', '-n', 'tr-enforce', '--duration=49h']);
    assert.equal(longer.code, 1);
    assert.match(
      longer.stderr,
      /denied the request: \[projected-token-lifetime\] token lifetime 176400 s is above this ServiceAccount's 172800 s maximum \(token for ServiceAccount "deployer"\) .* That bound applies to ServiceAccount deployer in namespace tr-enforce/,
    );
  });

  it("a node's TokenRequests for its pod go through untouched in enforce, and the observer records them", async () => {
    await must(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-a' } }));
    const pod = tokenPod('tr-enforce', 'token-600', 600, 'vault');
    pod.spec.nodeName = 'node-a';
    await must(['apply', '-f', '-'], JSON.stringify(pod));
    const uid = (await must(['get', 'pod', 'token-600', '-n', 'tr-enforce', '-o', 'jsonpath={.metadata.uid}'])).stdout;
    const asNode = nodeKubectl(assets, e.cp, 'node-a');
    const bound = ['--bound-object-kind', 'Pod', '--bound-object-name', 'token-600', '--bound-object-uid', uid];
    const before = (await e.tokenguard.metric('tokenguard_token_requests_observed_total{outcome="recorded"}')) ?? 0;
    // What no person may ask for here (48 h, an audience nobody allowed): a kubelet is never judged.
    const r = await asNode(['create', 'token', 'default', '-n', 'tr-enforce', ...bound, '--audience', 'not-allowed-anywhere', '--duration', '48h']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const again = await asNode(['create', 'token', 'default', '-n', 'tr-enforce', ...bound, '--audience', 'vault', '--duration', '600s']);
    assert.equal(again.stderr, '');
    await eventually(
      async () => ((await e.tokenguard.metric('tokenguard_token_requests_observed_total{outcome="recorded"}')) ?? 0) >= before + 2,
      'the observer to record both TokenRequests',
    );
    assert.equal(await e.tokenguard.metric('tokenguard_token_observer_tracked_pods'), 1);
    assert.equal(await e.tokenguard.metric('tokenguard_token_refresh_overdue_pods'), 0);
  });

  it('one observer among two replicas: the Lease holder labels its pod; killed, the other takes over', async () => {
    for (const name of ['tg-a', 'tg-b']) {
      // Stand-ins for the replicas' pods, in tokenguard's namespace (Pod Security `restricted`).
      const pod = tokenPod('tokenguard', name, 3600);
      pod.spec.serviceAccountName = 'tokenguard';
      pod.spec.securityContext = { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } };
      pod.spec.containers[0].securityContext = { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } };
      await must(['apply', '-f', '-'], JSON.stringify(pod));
    }
    const start = (name: string) =>
      TokenguardProcess.start({
        dir: e.cp.dir,
        kubeconfig: e.tokenguardKubeconfig,
        config: { observer: { enabled: true } },
        env: { POD_NAME: name, POD_NAMESPACE: 'tokenguard' },
      });
    const replicas = { 'tg-a': await start('tg-a'), 'tg-b': await start('tg-b') };
    try {
      const labelled = async () => {
        const out = (await must(['get', 'pods', '-n', 'tokenguard', '-l', `${OBSERVER_LABEL}=true`, '-o', 'jsonpath={.items[*].metadata.name}'])).stdout.trim();
        return out && !out.includes(' ') ? (out as keyof typeof replicas) : undefined;
      };
      const deletionCosts = async () => {
        const path = `{range .items[*]}{.metadata.name}={.metadata.annotations.${OBSERVER_DELETION_COST.annotation.replaceAll('.', '\\.')}}{"\\n"}{end}`;
        const out = (await must(['get', 'pods', '-n', 'tokenguard', '-o', `jsonpath=${path}`])).stdout.trim();
        return Object.fromEntries(out.split('\n').filter(Boolean).map((l) => l.split('=') as [string, string]));
      };
      const leader = await eventually(labelled, 'one replica to hold the Lease and label its pod');
      const holder = (await must(['get', 'lease', OBSERVER_LEASE, '-n', 'tokenguard', '-o', 'jsonpath={.spec.holderIdentity}'])).stdout;
      assert.equal(holder, leader);
      const other = leader === 'tg-a' ? 'tg-b' : 'tg-a';
      assert.equal(await replicas[leader].metric('tokenguard_token_observer_active'), 1);
      assert.equal(await replicas[other].metric('tokenguard_token_observer_active'), 0);
      // A scale-down removes the other replica first: the observer's pod costs more to delete.
      assert.deepEqual(await deletionCosts(), { [leader]: OBSERVER_DELETION_COST.value, [other]: '' });

      // Killed (no release): the Lease expires after its 15 s, then the other takes it.
      replicas[leader].child.kill('SIGKILL');
      await must(['delete', 'pod', leader, '-n', 'tokenguard', '--grace-period=0', '--force']);
      await eventually(async () => (await labelled()) === other, `${other} to take over the Lease and label its pod`, 45_000);
      assert.equal(await replicas[other].metric('tokenguard_token_observer_active'), 1);
      const transitions = (await must(['get', 'lease', OBSERVER_LEASE, '-n', 'tokenguard', '-o', 'jsonpath={.spec.holderIdentity} {.spec.leaseTransitions}'])).stdout;
      assert.equal(transitions, `${other} 1`);

      // Stopped (SIGTERM): it releases the Lease and removes its label and deletion cost on the way out.
      await replicas[other].stop();
      assert.equal(await labelled(), undefined);
      assert.deepEqual(await deletionCosts(), { [other]: '' });
      assert.equal((await must(['get', 'lease', OBSERVER_LEASE, '-n', 'tokenguard', '-o', 'jsonpath={.spec.holderIdentity}'])).stdout, '');
    } finally {
      for (const r of Object.values(replicas)) await r.stop();
    }
  });

  it('tokenguard audit --observer-url: the section "Token refresh (observed)" from the observer itself', async () => {
    const { json, section } = await auditObserved(e.cp.kubeconfig, ['--observer-url', e.tokenguard.url, '--observer-ca', e.tokenguard.certs.caFile]);
    assert.equal(json.status, 'observing', json.detail);
    assert.equal(json.asked, `${e.tokenguard.url}/observer`);
    assert.deepEqual(json.overdue, [], 'token-600 is Pending (no kubelet runs it): never overdue');
    assert.equal(json.observer?.trackedPods, 1, 'the TokenRequests the node made for token-600');
    assert.match(section, /^Observer: replica \S+, observing TokenRequests since \S+Z; 1 pod\(s\) tracked; last report (\S+Z|not yet run)\nNo running pod is overdue\.$/);
  });

  it('tokenguard audit through the API server: nothing observes until a replica holds the Lease, then its answer through the service proxy', { skip: ownAddress() ? false : 'no non-loopback IPv4 address on this machine for kube-apiserver to proxy to' }, async () => {
    const ip = ownAddress()!;
    const port = await freePort();
    await must(['apply', '-f', join(COMPONENT, 'service.yaml')]);
    await must(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-a' } }));
    // The replica's stand-in pod: the Deployment's labels and named port, the IP the replica listens on.
    const pod = tokenPod('tokenguard', 'tg-c', 3600);
    pod.metadata.labels = { 'app.kubernetes.io/name': 'tokenguard', 'app.kubernetes.io/component': 'webhook' };
    pod.spec.nodeName = 'node-a';
    pod.spec.serviceAccountName = 'tokenguard';
    pod.spec.securityContext = { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } };
    pod.spec.containers[0].securityContext = { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } };
    pod.spec.containers[0].ports = [{ name: 'https', containerPort: port }];
    await must(['apply', '-f', '-'], JSON.stringify(pod));
    const ready = { phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: 'True' }] };
    await must(['patch', 'pod', 'tg-c', '-n', 'tokenguard', '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: ready })]);
    // No kube-controller-manager runs here: the test writes the Service's Endpoints as its endpoints
    // controller would (without an Endpoints object kube-apiserver answers 404 "services ... not found"):
    // none while no pod carries the observer label, then the labelled pod's IP and port.
    const endpoints = (addresses: object[]) =>
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Endpoints',
        metadata: { name: 'tokenguard-observer', namespace: 'tokenguard' },
        ...(addresses.length ? { subsets: [{ addresses, ports: [{ name: 'https', port, protocol: 'TCP' }] }] } : {}),
      });
    await must(['apply', '-f', '-'], endpoints([]));

    const nothing = await auditObserved(e.cp.kubeconfig);
    assert.equal(nothing.json.status, 'nothing observes');
    assert.equal(
      nothing.section,
      `${NOTHING_OBSERVES}\n  (asked Service tokenguard/tokenguard-observer (through the API server): ` +
        'Service tokenguard/tokenguard-observer has no endpoint: no replica holds the Lease tokenguard-observer, or tokenguard runs without --observer)',
    );

    const replica = await TokenguardProcess.start({
      dir: e.cp.dir,
      kubeconfig: e.tokenguardKubeconfig,
      port,
      config: { server: { address: '0.0.0.0' }, observer: { enabled: true } },
      env: { POD_NAME: 'tg-c', POD_NAMESPACE: 'tokenguard' },
    });
    try {
      // It takes the Lease and labels tg-c, which the Service selects.
      await eventually(
        async () => (await must(['get', 'pods', '-n', 'tokenguard', '-l', `${OBSERVER_LABEL}=true,app.kubernetes.io/component=webhook`, '-o', 'jsonpath={.items[*].metadata.name}'])).stdout === 'tg-c',
        'tg-c to hold the Lease and carry the observer label',
        45_000,
      );
      await must(['apply', '-f', '-'], endpoints([{ ip, nodeName: 'node-a', targetRef: { kind: 'Pod', namespace: 'tokenguard', name: 'tg-c' } }]));
      const answered = await eventually(async () => {
        const r = await auditObserved(e.cp.kubeconfig);
        return r.json.status === 'waiting' ? r : undefined;
      }, 'audit to reach the observer through the service proxy', 45_000);
      assert.equal(answered.json.observer?.replica, 'tg-c');
      assert.match(answered.section, /^Observer: replica tg-c observes since \S+Z, but no TokenRequest has reached it yet: it judges no pod until one does/);
      const raw = JSON.parse((await must(['get', '--raw', observerProxyPath('tokenguard')])).stdout);
      assert.deepEqual([raw.replica, raw.observing, raw.observingSince, raw.overdue], ['tg-c', true, null, []]);

      // RBAC can narrow the proxy to this one Service and port: the name RBAC sees is `https:tokenguard-observer:443`.
      await must(['create', 'serviceaccount', 'auditor', '-n', 'tokenguard']);
      await must(['create', 'role', 'observer-reader', '-n', 'tokenguard', '--verb=get', '--resource=services/proxy', '--resource-name=https:tokenguard-observer:443']);
      await must(['create', 'rolebinding', 'observer-reader', '-n', 'tokenguard', '--role=observer-reader', '--serviceaccount=tokenguard:auditor']);
      const as = ['--as', 'system:serviceaccount:tokenguard:auditor'];
      const allowed = await e.kubectl(['get', '--raw', observerProxyPath('tokenguard'), ...as]);
      assert.equal(allowed.code, 0, allowed.stderr);
      assert.equal(JSON.parse(allowed.stdout).replica, 'tg-c');
      const other = await e.kubectl(['get', '--raw', '/api/v1/namespaces/tokenguard/services/https:tokenguard:443/proxy/metrics', ...as]);
      assert.match(other.stderr, /services "https:tokenguard:443" is forbidden: User "system:serviceaccount:tokenguard:auditor" cannot get resource "services\/proxy"/);
    } finally {
      await replica.stop();
    }
  });
}

/** What `tokenguard audit` says of token refresh, as JSON and as its table section. */
async function auditObserved(kubeconfig: string, args: string[] = []): Promise<{ json: AuditReport['tokenRefreshObserved']; section: string }> {
  const json = await tokenguardCli(['audit', '--kubeconfig', kubeconfig, '-o', 'json', ...args]);
  assert.ok(json.code === 0 || json.code === 1, `audit exited ${json.code}: ${json.stderr}`);
  const table = await tokenguardCli(['audit', '--kubeconfig', kubeconfig, ...args]);
  const start = table.stdout.indexOf('== Token refresh (observed)\n');
  assert.ok(start >= 0, table.stdout);
  const rest = table.stdout.slice(start).split('\n').slice(1);
  return { json: (JSON.parse(json.stdout) as AuditReport).tokenRefreshObserved, section: rest.slice(0, rest.findIndex((l) => l === '' || l.startsWith('Summary:'))).join('\n') };
}

/** Why the scenarios cannot run on this control plane, or false. */
export function tokenObserverSkip(assets: Assets): string | false {
  return atLeast(assets.serverVersion, 1, 30)
    ? false
    : `kube-apiserver ${assets.serverVersion.gitVersion} has no webhook matchConditions (GA in v1.30): the TokenRequest webhooks need them`;
}