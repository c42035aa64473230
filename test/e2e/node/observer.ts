// The token refresh observer on a real node (issue 29), beside the node suite's other scenarios:
// the kubelet's own TokenRequests for pods with a 600 s projected token (the shortest the API server
// issues), seen by the observing webhook at the first fetch and again at the first refresh, about 8
// minutes later; a pod whose refreshes the API server refuses (a ValidatingAdmissionPolicy: policies
// run before webhooks, so tokenguard sees only the refreshes that succeed, the failure of
// kubernetes#138689) reported overdue with its details; a pod whose claim is Terminating refreshed
// on a fixed kubelet and reported overdue, naming the claim and kubernetes#130442, on a kubelet that
// still has the bug (TOKENGUARD_NODE_KUBELET, e.g. v1.29.14); hand-made tokens judged by mode while
// the kubelet's refreshes pass in enforce; a hand-over to the other replica with nothing reported on
// missing data; and what the observing webhook costs a TokenRequest, as kube-apiserver measures it.
// In three parts (observerScenarios): the set-up, the wait for the first refresh (the suite's
// scenarios that leave the observer in place run meanwhile), then the hand-over and the cost.

import { it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AuditReport } from '../../../src/cli/audit.js';
import { kubeletAffectedBy130442 } from '../../../src/k8s/kubelet.js';
import { refreshWindow } from '../../../src/k8s/token-refresh-schedule.js';
import { eventually as poll } from '../../helpers/eventually.js';
import { metricSample } from '../../helpers/tokenguard-process.js';
import { histogram, minus, quantile } from '../harness/apiserver-metrics.js';
import { tokenguardCli, yaml } from '../harness/cli.js';
import { eventually } from '../harness/eventually.js';
import { kubectlFor, ok, warnings } from '../harness/kubectl.js';
import { NODE_SYNC_SECONDS, type NodeCluster } from '../harness/node.js';
import { untilServing } from './install.js';
import { shortTlsConfig } from './tls-rotation.js';
import { boundClaim, runningPod, waitForPhase } from './workloads.js';

const NS = 'observed';
/** The projected token every observed pod has: 600 s (the API server's minimum), audience vault. */
const TOKEN = { volume: 'vault-token', audience: 'vault', seconds: 600 };
const OBSERVER = { reportSeconds: 5, marginSeconds: 30 };
const ABOVE = 'token lifetime 172800 s is above the 86400 s maximum (token for ServiceAccount "default")';

/**
 * The observer's settings over a tokenguard config: its report pace and margin, and a lifetime
 * minimum of 1200 s in namespace `observed` (its 600 s tokens are warned at creation, and its
 * kubelet refreshes must still pass once the namespace enforces).
 */
function observeConfig(config: Record<string, any>): void {
  config.observer = { ...(config.observer ?? {}), ...OBSERVER, kubeletSyncFrequencySeconds: NODE_SYNC_SECONDS };
  config.policies ??= {};
  config.policies['projected-token-lifetime'] = { ...(config.policies['projected-token-lifetime'] ?? {}), namespaces: [{ namespaces: [NS], minSeconds: 1200 }] };
}

/**
 * What the node suite installs over `from` (manifests/base, or an overlay with a config.yaml of its
 * own): its config with SHORT_TLS and the observer's settings, and the token-observer component,
 * added as docs/monitoring.md tells users to.
 */
export function observedInstall(from: string): (dir: string) => string {
  return (dir) => `${shortTlsConfig(dir, from, observeConfig)}\ncomponents:\n  - manifests/components/token-observer`;
}

interface Observed {
  uid: string;
  /** The token's iat as the kubelet wrote it (seconds): the first fetch, then each refresh. */
  issued: number[];
}

/** A busybox pod with the 600 s vault token (and a claim, when given). */
function tokenPod(name: string, claim?: string): string {
  const volumes = [{ name: TOKEN.volume, projected: { sources: [{ serviceAccountToken: { path: 'token', audience: TOKEN.audience, expirationSeconds: TOKEN.seconds } }] } }];
  return runningPod(NS, name, claim, { volumes, labels: { observed: 'true' } });
}

/** The token file the kubelet wrote for the pod (its root dir is under the cluster's folder). */
function tokenIat(cluster: NodeCluster, uid: string): number | undefined {
  const file = join(cluster.dir, 'run', 'kubelet', 'pods', uid, 'volumes', 'kubernetes.io~projected', TOKEN.volume, 'token');
  if (!existsSync(file)) return undefined;
  const payload = readFileSync(file, 'utf8').split('.')[1];
  return payload ? (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { iat: number }).iat : undefined;
}

async function leader(cluster: NodeCluster): Promise<string> {
  return eventually(async () => {
    const r = await cluster.kubectl(['-n', 'tokenguard', 'get', 'pods', '-l', 'tokenguard.io/observer=true', '-o', 'jsonpath={.items[*].metadata.name}']);
    const names = r.stdout.split(' ').filter(Boolean);
    return names.length === 1 && names[0];
  }, 'one pod labelled tokenguard.io/observer=true', 60_000);
}

/** One sample of a replica's /metrics (`name{labels}`); NaN when absent, so no comparison holds. */
const sample = (text: string, name: string): number => metricSample(text, name) ?? NaN;

/** Minutes of waiting are polled every few seconds (a kubectl run each), not five times a second. */
const SLOW_POLL_MS = 3000;

/**
 * The observer's cases in three parts that share what they saw: `setUp` (the observed pods started,
 * the victim's refreshes refused, the frozen pod's claim deleted, hand-made tokens judged), `refresh`
 * (the wait for the first refresh, about 9 minutes, and what is reported then), `handOver` (the
 * observer pod deleted; then what the webhook costs, ending with the Deployment back at 2 replicas).
 */
export function observerScenarios(get: () => NodeCluster): { setUp: () => void; refresh: () => void; handOver: () => void } {
  const pods: Record<'healthy' | 'victim' | 'frozen', Observed> = {} as never;
  let firstLeader = '';
  let kubeletVersion = '';
  let bugged = false;
  let created = 0;

  const setUp = () => {
    it('one replica observes (the Lease holder, labelled); the first fetch of each pod is recorded by it', async () => {
      const c = get();
      firstLeader = await leader(c);
      assert.equal(ok(await c.kubectl(['-n', 'tokenguard', 'get', 'lease', 'tokenguard-observer', '-o', 'jsonpath={.spec.holderIdentity}']), 'Lease').stdout, firstLeader);
      kubeletVersion = ok(await c.kubectl(['get', 'node', c.node, '-o', 'jsonpath={.status.nodeInfo.kubeletVersion}']), 'node').stdout;
      bugged = kubeletAffectedBy130442(kubeletVersion) === true;
      process.stdout.write(`# kubelet ${kubeletVersion}: ${bugged ? 'has' : 'fixed for'} kubernetes#130442\n`);
      const before = sample(await c.tokenguardMetrics(firstLeader), 'tokenguard_token_observer_tracked_pods');

      ok(await c.kubectl(['create', 'namespace', NS]), 'namespace');
      const created_ = await c.kubectl(['apply', '-f', '-'], [boundClaim(c, NS, 'frozen'), tokenPod('healthy'), tokenPod('victim'), tokenPod('frozen', 'frozen')].join('---\n'));
      ok(created_, 'pods');
      // Warn mode in the namespace for now: 600 s is below its 1200 s minimum, so each pod is warned.
      assert.ok(warnings(created_).some((w) => w.includes('below this namespace\'s 1200 s minimum')), created_.stderr);
      created = Date.now();
      for (const name of ['healthy', 'victim', 'frozen'] as const) {
        const pod = await waitForPhase(c, NS, name, 'Running');
        const uid = pod.metadata.uid as string;
        const iat = await eventually(async () => tokenIat(c, uid), `the token file of ${name}`, 30_000);
        pods[name] = { uid, issued: [iat] };
      }
      // Each pod's TokenRequests (the vault token and kube-api-access) reached the observer.
      const m = await poll(async () => {
        const text = await c.tokenguardMetrics(firstLeader);
        return sample(text, 'tokenguard_token_observer_tracked_pods') >= before + 3 && text;
      }, 'the observer tracking the three pods', 60_000, SLOW_POLL_MS);
      assert.ok(sample(m, 'tokenguard_token_requests_observed_total{outcome="recorded"}') >= 6, 'two TokenRequests per pod recorded');
    });

    it("the API server refuses the victim's TokenRequests (a ValidatingAdmissionPolicy); the frozen pod's claim is deleted", async () => {
      const c = get();
      const policy = {
        apiVersion: 'admissionregistration.k8s.io/v1',
        kind: 'ValidatingAdmissionPolicy',
        metadata: { name: 'refuse-victim-tokens' },
        spec: {
          failurePolicy: 'Fail',
          matchConstraints: {
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': NS } },
            resourceRules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['serviceaccounts/token'] }],
          },
          validations: [{ expression: "!has(object.spec.boundObjectRef) || !has(object.spec.boundObjectRef.name) || object.spec.boundObjectRef.name != 'victim'", message: 'TokenRequests for pod victim refused (kubernetes#138689, as a test)' }],
        },
      };
      const binding = { apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingAdmissionPolicyBinding', metadata: { name: 'refuse-victim-tokens' }, spec: { policyName: 'refuse-victim-tokens', validationActions: ['Deny'] } };
      ok(await c.kubectl(['apply', '-f', '-'], yaml(policy, binding)), 'the policy');
      const nodeKubectl = kubectlFor(c.assets.controlPlane.kubectl, join(c.dir, 'kubelet.kubeconfig'), 30_000, c.inside);
      // As the kubelet asks: the node's credentials, bound to the pod.
      await eventually(async () => {
        const r = await nodeKubectl(['create', 'token', 'default', '-n', NS, '--bound-object-kind=Pod', '--bound-object-name=victim', `--bound-object-uid=${pods.victim.uid}`, `--audience=${TOKEN.audience}`, '--duration=600s']);
        return r.code !== 0 && r.stderr.includes('TokenRequests for pod victim refused');
      }, 'the policy refusing the victim\'s TokenRequests', 60_000);
      ok(await c.kubectl(['delete', 'pvc', 'frozen', '-n', NS, '--wait=false']), 'claim delete');
      const ts = ok(await c.kubectl(['get', 'pvc', 'frozen', '-n', NS, '-o', 'jsonpath={.metadata.deletionTimestamp}']), 'claim').stdout;
      assert.ok(ts, 'the claim is Terminating under its Running pod');
    });

    it("hand-made tokens are judged by mode, in the lifetime policy's words", async () => {
      const c = get();
      const warned = await c.kubectl(['create', 'token', 'default', '-n', 'default', '--duration=48h']);
      assert.equal(warned.code, 0, warned.stderr);
      assert.ok(warnings(warned).some((w) => w.includes(ABOVE)), warned.stderr);
      // The observed pods' namespace now enforces: hand-made tokens denied there; the kubelet's
      // refreshes of its 600 s tokens (below the namespace's minimum) must still pass (next test).
      ok(await c.kubectl(['label', 'namespace', NS, 'tokenguard.io/mode=enforce']), 'label');
      await eventually(async () => {
        const r = await c.kubectl(['create', 'token', 'default', '-n', NS, '--duration=48h']);
        return r.code !== 0 && r.stderr.includes(ABOVE) && r;
      }, 'a 48 h token denied in the enforcing namespace', 30_000);
    });

  };

  const refresh = () => {
    it('at the first refresh: healthy refreshed and seen; victim reported overdue with its details; frozen as its kubelet does', async () => {
      const c = get();
      // The kubelet refreshes at 80 % of 600 s (+ up to 10 s jitter), at the next pod sync.
      await poll(async () => {
        const iat = tokenIat(c, pods.healthy.uid);
        if (iat !== undefined && iat !== pods.healthy.issued.at(-1)) pods.healthy.issued.push(iat);
        return pods.healthy.issued.length > 1;
      }, 'the healthy pod refreshed by its kubelet', 12 * 60_000, SLOW_POLL_MS);
      const refreshedAfter = pods.healthy.issued[1]! - pods.healthy.issued[0]!;
      const window = refreshWindow(TOKEN.seconds, NODE_SYNC_SECONDS);
      process.stdout.write(`# healthy refreshed ${refreshedAfter} s after its first fetch (the kubelet's window: ${window.earliestSeconds} to ${window.latestSeconds} s)\n`);
      // A second of slack each way: the token's iat is the API server's second, not the kubelet's.
      assert.ok(refreshedAfter >= window.earliestSeconds - 1 && refreshedAfter <= window.latestSeconds + 1, `refreshed after ${refreshedAfter} s`);
      const expected = bugged ? ['victim', 'frozen'] : ['victim'];
      const metrics = await poll(async () => {
        const text = await c.tokenguardMetrics(firstLeader);
        return sample(text, 'tokenguard_token_refresh_overdue_pods') === expected.length && text;
      }, `the observer's gauge at ${expected.length}`, 6 * 60_000, SLOW_POLL_MS);
      const overdueAt = (Date.now() - created) / 1000;
      process.stdout.write(`# overdue reported ${overdueAt.toFixed(0)} s after the pods started; the missed refresh was due about ${refreshedAfter} s after\n`);
      assert.ok(metrics);
      const events = JSON.parse(ok(await c.kubectl(['get', 'events', '-n', NS, '--field-selector', 'reason=TokenRefreshOverdue', '-o', 'json']), 'events').stdout) as {
        items: { involvedObject: { kind: string; name: string }; message: string; type: string }[];
      };
      const byPod = new Map(events.items.map((e) => [e.involvedObject.name, e]));
      assert.deepEqual([...byPod.keys()].sort(), [...expected].sort(), JSON.stringify(events.items.map((e) => e.message)));
      const victim = byPod.get('victim')!;
      assert.equal(victim.type, 'Warning');
      assert.equal(victim.involvedObject.kind, 'Pod');
      for (const part of [`pod ${NS}/victim on node ${c.node} (kubelet ${kubeletVersion})`, `token for ${TOKEN.audience} (${TOKEN.seconds} s) not refreshed since`, 's past due']) {
        assert.ok(victim.message.includes(part), `${victim.message} lacks ${part}`);
      }
      if (bugged) {
        const frozen = byPod.get('frozen')!;
        assert.match(frozen.message, /likely cause: claim frozen Terminating: .*kubernetes#130442/);
        assert.equal(tokenIat(c, pods.frozen.uid), pods.frozen.issued[0], 'the bugged kubelet never refreshed the frozen pod');
      } else {
        // By now (past every healthy kubelet's window) a fixed kubelet has refreshed it too.
        assert.notEqual(tokenIat(c, pods.frozen.uid), pods.frozen.issued[0], 'a fixed kubelet refreshes a pod whose claim is Terminating');
      }
      assert.ok(!byPod.has('healthy'));

      // `tokenguard audit` as an admin runs it: it asks the observer through the API server's
      // service proxy, and lists the same pods (overdue pods are findings: exit 1).
      const audit = await tokenguardCli(['audit', '--kubeconfig', c.kubeconfig, '-o', 'json'], { wrap: c.inside });
      assert.equal(audit.code, 1, audit.stderr);
      const observed = (JSON.parse(audit.stdout) as AuditReport).tokenRefreshObserved;
      assert.equal(observed.status, 'observing', observed.detail);
      assert.deepEqual(observed.overdue.map((o) => o.pod).sort(), [...expected].sort());
      const v = observed.overdue.find((o) => o.pod === 'victim')!;
      assert.deepEqual([v.namespace, v.node, v.kubeletVersion, v.audiences, v.requestedSeconds], [NS, c.node, kubeletVersion, [TOKEN.audience], TOKEN.seconds]);
      // The Event's line, but for how late it is now.
      const sameLine = (m: string) => m.replace(/, \d+ s past due/, '');
      assert.ok(victim.message.includes(sameLine(v.message)), `${v.message} / ${victim.message}`);
      const table = await tokenguardCli(['audit', '--kubeconfig', c.kubeconfig], { wrap: c.inside });
      assert.match(table.stdout, /Token refresh \(observed\)/);
      assert.ok(table.stdout.includes(`${NS}/victim`) || table.stdout.includes('victim'), table.stdout);
    });

  };

  const handOver = () => {
    it('hand-over: the observer pod deleted, the other replica observes and reports nothing on missing data', async () => {
      const c = get();
      ok(await c.kubectl(['-n', 'tokenguard', 'delete', 'pod', firstLeader, '--wait=false']), 'delete the observer');
      const next = await poll(async () => {
        const l = await leader(c).catch(() => '');
        return l && l !== firstLeader && l;
      }, 'another replica labelled observer', 90_000, SLOW_POLL_MS);
      assert.equal(ok(await c.kubectl(['-n', 'tokenguard', 'get', 'lease', 'tokenguard-observer', '-o', 'jsonpath={.spec.holderIdentity}']), 'Lease').stdout, next);
      // The new observer has seen none of the observed pods' TokenRequests: for a whole refresh
      // period it may report none of them, not even the victim that is overdue.
      const until = Date.now() + 30_000;
      while (Date.now() < until) {
        const text = await c.tokenguardMetrics(next);
        assert.equal(sample(text, 'tokenguard_token_refresh_overdue_pods'), 0, 'the new observer reports a pod overdue on data it never had');
        assert.equal(sample(text, 'tokenguard_token_observer_active'), 1);
        await new Promise((r) => setTimeout(r, 3000));
      }
    });

    it("what the observing webhook adds to a kubelet's TokenRequest, as kube-apiserver measures it; fail-open at once with tokenguard down", async () => {
      const c = get();
      const nodeKubectl = kubectlFor(c.assets.controlPlane.kubectl, join(c.dir, 'kubelet.kubeconfig'), 30_000, c.inside);
      const N = 60;
      const metric = 'apiserver_admission_webhook_admission_duration_seconds';
      const labels = { name: 'observe-tokenrequests.tokenguard.io', type: 'validating' };
      const measure = async () => {
        const before = histogram(ok(await c.kubectl(['get', '--raw', '/metrics']), 'metrics').stdout, metric, labels);
        for (let i = 0; i < N; i++) {
          ok(await nodeKubectl(['create', 'token', 'default', '-n', NS, '--bound-object-kind=Pod', '--bound-object-name=healthy', `--bound-object-uid=${pods.healthy.uid}`, '--duration=600s']), 'node TokenRequest');
        }
        const h = minus(histogram(ok(await c.kubectl(['get', '--raw', '/metrics']), 'metrics').stdout, metric, labels), before);
        return { count: h.get(Infinity) ?? 0, p50: quantile(h, 0.5), p99: quantile(h, 0.99) };
      };
      const up = await measure();
      process.stdout.write(`# observing webhook, tokenguard up: ${up.count} calls, p50 ${(up.p50 * 1000).toFixed(1)} ms, p99 ${(up.p99 * 1000).toFixed(1)} ms\n`);
      assert.equal(up.count, N, 'every node TokenRequest called the observing webhook');
      ok(await c.kubectl(['-n', 'tokenguard', 'scale', 'deployment/tokenguard', '--replicas=0']), 'scale to 0');
      await eventually(async () => (await c.tokenguardPods().catch(() => undefined))?.length === 0, 'no tokenguard pod left', 90_000);
      const down = await measure();
      process.stdout.write(`# observing webhook, tokenguard down (fails open): ${down.count} calls, p50 ${(down.p50 * 1000).toFixed(1)} ms, p99 ${(down.p99 * 1000).toFixed(1)} ms\n`);
      assert.ok(down.p99 < 0.1, `a call with tokenguard down took ${down.p99} s at p99: it must fail open at once`);
      // Back to 2 replicas serving, for the scenarios after this one.
      ok(await c.kubectl(['-n', 'tokenguard', 'scale', 'deployment/tokenguard', '--replicas=2']), 'scale to 2');
      await untilServing(c, 2);
    });
  };

  return { setUp, refresh, handOver };
}
