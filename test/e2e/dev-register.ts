// `tokenguard dev register` / `dev unregister` against a real control plane, as a developer uses
// them: tokenguard runs on this machine with the admin kubeconfig (what `npm start` does with
// KUBECONFIG set), `dev register` points the cluster's webhooks at it, kubectl then gets its
// warnings and denials, and `dev unregister` takes the webhooks away again.

import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { TokenguardProcess } from '../helpers/tokenguard-process.js';
import type { Assets } from './harness/assets.js';
import { ControlPlane } from './harness/control-plane.js';
import { ensureNamespace, MANIFESTS, webhookManifests } from './harness/environment.js';
import { eventually } from './harness/eventually.js';
import { kubectlFor, mustWith, warnings, type Kubectl } from './harness/kubectl.js';
import { claim, podOn, tokenPod } from './harness/objects.js';
import { tokenguardCli, yaml } from './harness/cli.js';

const WARN_NS = 'dev-warn';
const ENFORCE_NS = 'dev-enforce';

export function devRegisterScenario(assets: Assets): void {
  let cp: ControlPlane;
  let tokenguard: TokenguardProcess;
  let kubectl: Kubectl;
  const must = mustWith(() => kubectl);

  before(async () => {
    cp = await ControlPlane.start(assets);
    kubectl = kubectlFor(assets.kubectl, cp.kubeconfig);
    // As `npm start` runs with the developer's kubeconfig: cluster admin, no ServiceAccount of its own.
    tokenguard = await TokenguardProcess.start({ dir: cp.dir, kubeconfig: cp.kubeconfig });
    await ensureNamespace(kubectl, WARN_NS);
    await ensureNamespace(kubectl, ENFORCE_NS, { 'tokenguard.io/mode': 'enforce' });
  });

  after(async () => {
    await tokenguard?.stop();
    await cp?.stop();
  });

  it('dev register writes the manifests\' webhooks at the URL, with the CA of the certificates', async () => {
    const r = await tokenguardCli(['dev', 'register', '--kubeconfig', cp.kubeconfig, '--url', tokenguard.url, '--certs', tokenguard.certs.dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        `ValidatingWebhookConfiguration tokenguard created: validate.tokenguard.io, validate-kube-system.tokenguard.io, validate-tokenrequests.tokenguard.io -> ${tokenguard.url}/validate`,
        `MutatingWebhookConfiguration tokenguard created: mutate.tokenguard.io -> ${tokenguard.url}/mutate`,
        `The API server ${cp.url} (--kubeconfig ${cp.kubeconfig}) now sends tokenguard's admission reviews to ${tokenguard.url}.`,
        'Undo with: npx tokenguard dev unregister',
        '',
      ].join('\n'),
    );
    // Everything but clientConfig is the manifest's: names, rules, selectors, failure policies.
    const manifests = parseAllDocuments(readFileSync(join(MANIFESTS, 'webhooks.yaml'), 'utf8')).map((d) => d.toJS());
    for (const m of manifests) {
      const live = JSON.parse((await must(['get', m.kind.toLowerCase(), m.metadata.name, '-o', 'json'])).stdout);
      assert.equal(live.metadata.labels['tokenguard.io/dev-registration'], 'true');
      for (const [i, w] of m.webhooks.entries()) {
        const got = live.webhooks[i];
        assert.equal(got.name, w.name);
        assert.equal(got.clientConfig.url, tokenguard.url + w.clientConfig.service.path);
        assert.equal(got.clientConfig.caBundle, tokenguard.certs.ca.toString('base64'));
        assert.deepEqual(got.namespaceSelector, w.namespaceSelector);
        assert.equal(got.failurePolicy, w.failurePolicy);
        assert.deepEqual(
          got.rules.map((x: { resources: string[]; operations: string[] }) => [x.resources, x.operations]),
          w.rules.map((x: { resources: string[]; operations: string[] }) => [x.resources, x.operations]),
        );
      }
    }
  });

  it('a pod with a bad token gets its warnings through kubectl', async () => {
    const pod = yaml(tokenPod(WARN_NS, 'long-token', 172800, 'unknown-audience'));
    // kube-apiserver picks new webhook configurations up from a watch, a moment later.
    await eventually(async () => warnings(await kubectl(['apply', '--dry-run=server', '-f', '-'], pod)).length > 0, 'the webhooks to be called');
    const r = await must(['apply', '-f', '-'], pod);
    assert.deepEqual(warnings(r), ['token lifetime 172800 s is above the 86400 s maximum (volume "t")', 'token audience "unknown-audience" is not allowed (volume "t")']);
    assert.equal(r.stdout.trim(), 'pod/long-token created');
  });

  it('a PVC in use is refused in enforce, naming the pod and its phase', async () => {
    await must(['apply', '-f', '-'], yaml({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'dev-node' } }));
    await must(['apply', '-f', '-'], yaml(claim(ENFORCE_NS, 'data'), podOn(ENFORCE_NS, 'db-0', 'dev-node', 'data')));
    const denial =
      `Error from server (Forbidden): admission webhook "validate.tokenguard.io" denied the request: [pvc-in-use] ` +
      `PVC ${ENFORCE_NS}/data would hang in Terminating: in use by db-0 (Pending on dev-node). 1 scheduled pod still uses it: `;
    // tokenguard's cache follows the pod by watch, a moment behind kubectl.
    await eventually(async () => (await kubectl(['delete', 'pvc', 'data', '-n', ENFORCE_NS, '--dry-run=server'])).stderr.includes(denial), 'the guard to see db-0');
    const r = await kubectl(['delete', 'pvc', 'data', '-n', ENFORCE_NS, '--wait=false']);
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(denial), r.stderr);
    const left = await must(['get', 'pvc', 'data', '-n', ENFORCE_NS, '-o', 'jsonpath={.metadata.deletionTimestamp}']);
    assert.equal(left.stdout, '', 'not Terminating: the deletion was refused');
  });

  it('dev unregister removes them: the configurations are gone and kubectl gets no warning', async () => {
    const r = await tokenguardCli(['dev', 'unregister', '--kubeconfig', cp.kubeconfig]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'ValidatingWebhookConfiguration tokenguard deleted\nMutatingWebhookConfiguration tokenguard deleted\n');
    const left = await must(['get', 'validatingwebhookconfigurations,mutatingwebhookconfigurations', '-o', 'name']);
    assert.equal(left.stdout.trim(), '');
    await eventually(async () => {
      const dry = await kubectl(['apply', '--dry-run=server', '-f', '-'], yaml(tokenPod(WARN_NS, 'long-token-2', 172800, 'unknown-audience')));
      return dry.code === 0 && warnings(dry).length === 0;
    }, 'kube-apiserver to stop calling the webhooks');
    const again = await tokenguardCli(['dev', 'unregister', '--kubeconfig', cp.kubeconfig]);
    assert.equal(again.stdout, 'ValidatingWebhookConfiguration tokenguard: not registered\nMutatingWebhookConfiguration tokenguard: not registered\n');
  });

  it('leaves an installed tokenguard alone: register refuses, unregister skips it, without --force', async () => {
    const installed = yaml(...webhookManifests(assets.serverVersion));
    await must(['apply', '-f', '-'], installed);
    const reg = await tokenguardCli(['dev', 'register', '--kubeconfig', cp.kubeconfig, '--url', tokenguard.url, '--certs', tokenguard.certs.dir]);
    assert.equal(reg.code, 1);
    assert.equal(
      reg.stderr,
      'tokenguard dev register: ValidatingWebhookConfiguration tokenguard already exists and it calls Service tokenguard/tokenguard: an installed tokenguard; ' +
        'uninstall it first (docs/installation.md#uninstall), or pass --force to replace it\n',
    );
    const unreg = await tokenguardCli(['dev', 'unregister', '--kubeconfig', cp.kubeconfig]);
    assert.match(unreg.stdout, /^ValidatingWebhookConfiguration tokenguard: left alone: it calls Service tokenguard\/tokenguard: an installed tokenguard \(--force removes it\)$/m);
    await must(['delete', '-f', '-'], installed);
  });
}
