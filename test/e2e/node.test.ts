// The node suite: tokenguard as users run it, on a real one-node cluster (containerd, kubelet,
// kube-proxy, kube-scheduler beside a v1.36 control plane, inside a network namespace of its own;
// see harness/node.ts). tokenguard is installed from manifests/ with `kubectl apply -k`, from the
// image built from the Dockerfile; workloads are busybox pods that really run. Without the node's
// binaries it skips, in one line saying what to set.

import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { findNodeAssets, NodeCluster } from './harness/node.js';
import { inClusterScenario } from './node/in-cluster.js';
import { install, ownKustomization } from './node/install.js';
import { outcomeScenario } from './node/pvc-outcomes.js';
import { disruptionScenario } from './node/disruption.js';
import { docsScenario } from './node/docs-scenario.js';
import { stagingScenario } from './node/staging.js';
import { shortTlsConfig, tlsRotationScenario } from './node/tls-rotation.js';

const found = findNodeAssets();

describe('on a real node: tokenguard installed from manifests/ and its image', { skip: 'skip' in found ? found.skip : false }, () => {
  if (!('assets' in found)) return;
  const { assets } = found;
  let cluster: NodeCluster;
  const get = () => cluster;
  before(async () => {
    const started = Date.now();
    cluster = await NodeCluster.start(assets);
    process.stdout.write(`# node cluster ready in ${((Date.now() - started) / 1000).toFixed(1)} s (${cluster.dir}, netns ${cluster.netns})\n`);
    const t = Date.now();
    // Self-managed TLS with lifetimes of minutes: certificates renew and CAs rotate during the suite.
    await install(cluster, ownKustomization(process.env.TOKENGUARD_NODE_OVERLAY ?? 'default', assets.image, shortTlsConfig));
    process.stdout.write(`# tokenguard installed and serving in ${((Date.now() - t) / 1000).toFixed(1)} s\n`);
  });
  after(async () => {
    if (!cluster) return;
    const left = await cluster.stop();
    // Leave nothing behind: processes, mounts, network namespaces, iptables rules on the machine.
    assert.equal(left, '', `the node cluster left this behind:\n${left}`);
  });

  describe('in the cluster: Service, probes, RBAC, self-test, events', () => inClusterScenario(get));
  describe('self-managed TLS: renewals and CA rotation under fail-closed load; a deleted Secret with 3 replicas', () => tlsRotationScenario(get));
  describe('prediction equals outcome: tokenguard says a claim will hang exactly when it does', () => outcomeScenario(get));
  describe('nothing lost while tokenguard itself moves (fail-closed webhooks)', () => disruptionScenario(get));
  describe('the staging overlay over the running install: enforce, fail closed, nothing else installed', () => stagingScenario(get, assets.image));
  // Last: it uninstalls the suite's tokenguard and installs it again the way the docs say.
  describe('the docs, run: installation, runbooks and troubleshooting commands', () => docsScenario(get, assets.image));
});
