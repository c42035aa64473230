// The node suite: tokenguard as users run it, on a real one-node cluster (containerd, kubelet,
// kube-proxy, kube-scheduler beside a v1.36 control plane, inside a network namespace of its own;
// see harness/node.ts). tokenguard is installed from manifests/ with `kubectl apply -k`, with the
// token-observer component, from the image built from the Dockerfile; workloads are busybox pods
// that really run. Without the node's binaries it skips, in one line saying what to set.
//
// The token observer's cases wait about 9 minutes for a kubelet's first refresh of a 600 s token;
// the scenarios that leave the observer in place (its pod and its Service) run meanwhile, the ones
// that move tokenguard's pods (a hand-over would restart the wait) after it. Two settings:
// - TOKENGUARD_NODE_START_AFTER=<file>: those scenarios also wait for the file to exist. .ci/run
//   starts the suite before `npm test` and creates the file when `npm test` is done, so the wait
//   overlaps `npm test` and the scenarios that load the node do not;
// - TOKENGUARD_NODE_OBSERVER_ONLY=1: the observer's cases alone (npm run test:node:observer), for a
//   kubelet other than the bundle's (TOKENGUARD_NODE_KUBELET, e.g. v1.29.14's for kubernetes#130442).

import { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { findNodeAssets, NodeCluster } from './harness/node.js';
import { inClusterScenario } from './node/in-cluster.js';
import { install, ownKustomization } from './node/install.js';
import { outcomeScenario } from './node/pvc-outcomes.js';
import { disruptionScenario } from './node/disruption.js';
import { docsScenario } from './node/docs-scenario.js';
import { observedInstall, observerScenarios } from './node/observer.js';
import { stagingScenario } from './node/staging.js';
import { tlsRotationScenario } from './node/tls-rotation.js';

const found = findNodeAssets();
const startAfter = process.env.TOKENGUARD_NODE_START_AFTER;
const observerOnly = process.env.TOKENGUARD_NODE_OBSERVER_ONLY ? 'TOKENGUARD_NODE_OBSERVER_ONLY is set: the token observer\'s cases only' : false;

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
    // Self-managed TLS with lifetimes of minutes: certificates renew and CAs rotate during the suite,
    // the observer's wait included.
    await install(cluster, ownKustomization(process.env.TOKENGUARD_NODE_OVERLAY ?? 'default', assets.image, observedInstall('base')));
    process.stdout.write(`# tokenguard installed and serving in ${((Date.now() - t) / 1000).toFixed(1)} s\n`);
  });
  after(async () => {
    if (!cluster) return;
    const left = await cluster.stop();
    // Leave nothing behind: processes, mounts, network namespaces, iptables rules on the machine.
    assert.equal(left, '', `the node cluster left this behind:\n${left}`);
  });

  const observer = observerScenarios(get);
  let observedPodsSet!: () => void;
  const whenObservedPodsSet = new Promise<void>((resolve) => (observedPodsSet = resolve));

  describe('while the token observer waits for a first refresh', { concurrency: true }, () => {
    describe('the token refresh observer: 600 s tokens through their first refresh', { concurrency: 1 }, () => {
      describe('set up: observed pods, refused refreshes, a Terminating claim, hand-made tokens', () => {
        after(() => observedPodsSet());
        observer.setUp();
      });
      describe('at the first refresh', () => observer.refresh());
    });
    describe('meanwhile, the scenarios that leave the observer in place', { concurrency: 1, skip: observerOnly }, () => {
      before(async () => {
        // Started once the observed pods run (their first fetches recorded, their claims set), so the
        // two sets of cases never see each other's objects half made.
        await whenObservedPodsSet;
        if (!startAfter) return;
        process.stdout.write(`# waiting for ${startAfter} (TOKENGUARD_NODE_START_AFTER) before the scenarios that load the node\n`);
        while (!existsSync(startAfter)) await new Promise((r) => setTimeout(r, 1000));
      });
      describe('in the cluster: Service, probes, RBAC, self-test, events', () => inClusterScenario(get));
      describe('self-managed TLS: renewals and CA rotation under fail-closed load; a deleted Secret with 3 replicas', () => tlsRotationScenario(get));
      describe('prediction equals outcome: tokenguard says a claim will hang exactly when it does', () => outcomeScenario(get));
    });
  });
  describe('the token observer handed over, and what it costs a TokenRequest', () => observer.handOver());
  describe('nothing lost while tokenguard itself moves (fail-closed webhooks)', { skip: observerOnly }, () => disruptionScenario(get));
  describe('the staging overlay over the running install: enforce, fail closed, nothing else installed', { skip: observerOnly }, () => stagingScenario(get, assets.image));
  // Last: it uninstalls the suite's tokenguard and installs it again the way the docs say.
  describe('the docs, run: installation, runbooks and troubleshooting commands', { skip: observerOnly }, () => docsScenario(get, assets.image));
});
