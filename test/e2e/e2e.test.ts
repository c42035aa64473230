// The end-to-end suite: tokenguard against a real control plane (etcd, kube-apiserver and, when
// present, kube-controller-manager from the envtest assets named by KUBEBUILDER_ASSETS), driven by
// the real kubectl. Without KUBEBUILDER_ASSETS it skips, in one line saying how to enable it.
// Each part starts its own control plane, so one part's leftovers never leak into another.

import { before, describe } from 'node:test';
import { callerAuthScenario } from './caller-auth.js';
import { devRegisterScenario } from './dev-register.js';
import { eventsScenario } from './events.js';
import { atLeast, findAssets } from './harness/assets.js';
import { outageScenario } from './outage.js';
import { vapScenarios } from './vap.js';
import { reportsScenario } from './reports.js';
import { selfManagedTlsScenario } from './self-managed-tls.js';
import { tokenObserverScenarios, tokenObserverSkip } from './token-observer.js';
import { webhookScenarios } from './webhook.js';

const found = findAssets();

describe('end to end against a real kube-apiserver, through kubectl', { skip: 'skip' in found ? found.skip : false }, () => {
  if (!('assets' in found)) return;
  const { assets } = found;
  before(() => {
    // CI runs the suite once per control-plane version: say which one this run is.
    process.stdout.write(`# control plane: kube-apiserver ${assets.serverVersion.gitVersion} from ${assets.dir}; kubectl ${assets.kubectlVersion.gitVersion}\n`);
  });
  describe('admission: PVC guard, token policies, issuer guard; self-test, token inspect, audit', () => webhookScenarios(assets));
  describe('Events: a denial, a retry loop of denials, a break-glass deletion, on the PVC', () => eventsScenario(assets));
  describe('a kube-apiserver outage of 10 s', () => outageScenario(assets));
  describe('caller authentication: kube-apiserver with a webhook kubeconfig, tokenguard in enforce', () => callerAuthScenario(assets));
  // The generated policies need admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy (GA in
  // 1.30) and the CEL of a current kube-apiserver (two-variable comprehensions, optional fields).
  const vap = atLeast(assets.serverVersion, 1, 30)
    ? false
    : `kube-apiserver ${assets.serverVersion.gitVersion} serves ValidatingAdmissionPolicy only as v1alpha1 behind a feature gate, without the CEL the generated policies use (needs v1.30+, tested on v1.36)`;
  describe('generated admission policies (tokenguard generate vap), tokenguard not running', { skip: vap }, () => vapScenarios(assets));
  describe('audit --report: findings as OpenReports and wgpolicyk8s.io reports, replaced run after run', () => reportsScenario(assets));
  describe('tokenguard dev register and unregister: a local server registered with a real cluster', () => devRegisterScenario(assets));
  // On v1.36 the node suite runs self-managed TLS as users do (the Deployment behind its Service,
  // renewals and a CA rotation under fail-closed load): this control-plane copy is for the versions
  // without a node build, and keeps the suite's longest minute off v1.36's run.
  const tls = atLeast(assets.serverVersion, 1, 36)
    ? `on v1.36 the node suite runs it with tokenguard installed from manifests/ (test/e2e/node/tls-rotation.ts: npm run test:node)`
    : false;
  describe('self-managed TLS: replicas at once, renewals and a CA rotation under a fail-closed webhook, a deleted Secret', { skip: tls }, () =>
    selfManagedTlsScenario(assets),
  );
  describe('TokenRequests: hand-made tokens judged, kubelets untouched and observed, one observer by Lease', { skip: tokenObserverSkip(assets) }, () =>
    tokenObserverScenarios(assets),
  );
});
