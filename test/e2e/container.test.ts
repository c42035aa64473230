// End to end with the webhook served from the container image (TOKENGUARD_IMAGE, hack/image.sh):
// a real control plane from KUBEBUILDER_ASSETS (harness/control-plane.ts), tokenguard's namespace
// and RBAC from the manifests, the image run as the Deployment runs it (test/helpers/container.ts)
// with its ServiceAccount's token, and the manifests' webhooks pointed at it. Driven by kubectl:
// a pod whose token lives too long gets the warning; a PVC in use is refused in enforce.
// Skips, saying why, without KUBEBUILDER_ASSETS or without the image and a container engine.
//
// The container shares the host's network (`--network=host`): kube-apiserver listens on loopback,
// and rootless podman has no other network here.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Container, imageUnderTest, podFiles } from '../helpers/container.js';
import { freePort } from '../helpers/ports.js';
import { makeCerts } from '../helpers/tls.js';
import { findAssets } from './harness/assets.js';
import { ControlPlane } from './harness/control-plane.js';
import { ensureNamespace, MANIFESTS, webhooksFor } from './harness/environment.js';
import { eventually } from './harness/eventually.js';
import { kubectlFor, mustWith, warnings, type Kubectl } from './harness/kubectl.js';
import { claim, podOn, tokenPod } from './harness/objects.js';
import { yaml } from './harness/cli.js';

const ENFORCE = 'e2e-image-enforce';
const WARN = 'e2e-image-warn';

const assetsFound = findAssets();
const imageFound = imageUnderTest();
const skip = 'skip' in assetsFound ? assetsFound.skip : 'skip' in imageFound ? imageFound.skip : false;


describe('end to end, the webhook served from the container image', { skip }, () => {
  if ('skip' in assetsFound || 'skip' in imageFound) return;
  const { assets } = assetsFound;
  const { engine, image } = imageFound;
  let cp: ControlPlane;
  let kubectl: Kubectl;
  let container: Container;
  const must = mustWith(() => kubectl);

  before(async () => {
    cp = await ControlPlane.start(assets);
    kubectl = kubectlFor(assets.kubectl, cp.kubeconfig);
    await must(['apply', '-f', join(MANIFESTS, 'namespace.yaml'), '-f', join(MANIFESTS, 'rbac.yaml')]);
    const token = (await must(['create', 'token', 'tokenguard', '-n', 'tokenguard', '--duration=6h'])).stdout.trim();

    // What the pod would have: config, serving certificate, and (instead of the in-cluster
    // credentials) a kubeconfig with its ServiceAccount's token and the API server's CA inline.
    const port = await freePort();
    const certs = makeCerts(join(cp.dir, 'tokenguard-certs'));
    const files = podFiles(join(cp.dir, 'pod'), certs, {
      server: { address: '127.0.0.1', port, shutdownDelaySeconds: 0, shutdownGraceSeconds: 5 },
      cluster: { enabled: true, kubeconfig: '/etc/tokenguard/kubeconfig' },
      log: { level: 'debug' },
    });
    const kubeconfig = join(cp.dir, 'pod', 'kubeconfig');
    writeFileSync(
      kubeconfig,
      cp
        .kubeconfigFor({ token })
        .replace(/certificate-authority: .*/, `certificate-authority-data: ${readFileSync(cp.pki.caCert).toString('base64')}`),
    );
    if (process.getuid?.() === 0) chownSync(kubeconfig, 0, 65532);
    chmodSync(kubeconfig, process.getuid?.() === 0 ? 0o440 : 0o444);
    container = await Container.start({
      engine,
      image,
      name: `tokenguard-e2e-image-${process.pid}`,
      port,
      ca: certs.ca,
      network: 'host',
      configFile: files.configFile,
      tlsDir: files.tlsDir,
      extraMounts: [[kubeconfig, '/etc/tokenguard/kubeconfig']],
      extraFlags: ['--env=TOKENGUARD_SERVICE_ACCOUNT=tokenguard/tokenguard'],
    });
    await container.untilReady(60_000);
    await must(['apply', '-f', '-'], webhooksFor(`https://127.0.0.1:${port}`, certs.ca.toString('base64')));

    await ensureNamespace(kubectl, ENFORCE, { 'tokenguard.io/mode': 'enforce' });
    await ensureNamespace(kubectl, WARN);
    await must(['apply', '-f', '-'], yaml({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-old' } }));
    await must(['patch', 'node', 'node-old', '--subresource=status', '--type=merge', '-p', '{"status":{"nodeInfo":{"kubeletVersion":"v1.31.2"}}}']);
    const pod = podOn(ENFORCE, 'db-0', 'node-old', 'data');
    // kube-apiserver picks the webhook configurations up a moment after they are written: the
    // pod's creation goes through /mutate once they are (the pvc-token-risk label).
    await eventually(async () => {
      const r = await kubectl(['create', '--dry-run=server', '-o', 'jsonpath={.metadata.labels}', '-f', '-'], yaml(pod));
      return r.stdout.includes('tokenguard.io/pvc-token-risk');
    }, 'the webhooks to be called');
    await must(['apply', '-f', '-'], yaml(claim(ENFORCE, 'data'), pod));
    await must(['patch', 'pod', 'db-0', '-n', ENFORCE, '--subresource=status', '--type=merge', '-p', '{"status":{"phase":"Running"}}']);
  });

  after(async () => {
    await container?.remove();
    await cp?.stop();
  });

  it('a pod whose projected token lives too long is admitted with the warning (warn)', async () => {
    const pod = yaml(tokenPod(WARN, 'long-token', 172800, 'vault'));
    const r = await kubectl(['apply', '-f', '-'], pod);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'pod/long-token created');
    assert.deepEqual(warnings(r), ['token lifetime 172800 s is above the 86400 s maximum (volume "t")']);
  });

  it('a PVC in use is refused in enforce, naming the pod, and stays', async () => {
    const denial =
      `Error from server (Forbidden): admission webhook "validate.tokenguard.io" denied the request: [pvc-in-use] ` +
      `PVC ${ENFORCE}/data would hang in Terminating: in use by db-0 (Running on node-old).`;
    // The container's cache follows the pods by watch: wait until it has seen db-0 running.
    const dry = await eventually(async () => {
      const r = await kubectl(['delete', 'pvc', 'data', '-n', ENFORCE, '--dry-run=server']);
      return r.code !== 0 && r.stderr.includes('db-0') ? r : undefined;
    }, 'the guard in the container to see db-0');
    assert.ok(dry.stderr.includes(denial), dry.stderr);
    const real = await kubectl(['delete', 'pvc', 'data', '-n', ENFORCE, '--wait=false']);
    assert.equal(real.code, 1);
    assert.ok(real.stderr.includes(denial), real.stderr);
    assert.equal((await must(['get', 'pvc', 'data', '-n', ENFORCE, '-o', 'jsonpath={.metadata.deletionTimestamp}'])).stdout, '', 'not Terminating');
    // The decisions were the container's: its own log has them.
    const decisions = (await container.logLines()).filter((l) => l.msg === 'admission decision' && l.resource === 'persistentvolumeclaims' && l.namespace === ENFORCE);
    assert.ok(decisions.some((l) => l.decision === 'denied' && l.user === 'e2e-admin'), JSON.stringify(decisions));
  });

  it('SIGTERM: the container drains and exits 0', async () => {
    await container.signal('SIGTERM');
    assert.equal(await container.exitCode(), 0, await container.logs());
  });
});
