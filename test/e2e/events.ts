// Events where admins look, on a real control plane through the real kubectl: a denial and a
// break-glass deletion each leave an Event on the PVC (`kubectl describe pvc`, `kubectl get events`),
// a dry run leaves none, and a retry loop of 50 denials is one Event whose count says 51, not 51
// Events. tokenguard runs with the manifests' RBAC, so the Events are written as the
// ServiceAccount the manifests grant (create and patch on core events, cluster-wide).

import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Assets } from './harness/assets.js';
import { ensureNamespace, startE2e, type E2e } from './harness/environment.js';
import { mustWith } from './harness/kubectl.js';
import { claim, podOn } from './harness/objects.js';
import { eventually } from './harness/eventually.js';
import { yaml } from './harness/cli.js';

const NS = 'e2e-events';

export function eventsScenario(assets: Assets): void {
  let e: E2e;
  const must = mustWith(() => e.kubectl);

  /** tokenguard's Events in the namespace, as kubectl returns them. */
  const events = async (reason: string) =>
    (JSON.parse((await must(['get', 'events', '-n', NS, '--field-selector', `reason=${reason}`, '-o', 'json'])).stdout).items as any[]).filter(
      (ev) => ev.source?.component === 'tokenguard',
    );

  /** Once there are some: the Events are written after the review is answered. */
  const recorded = (reason: string) =>
    eventually(async () => {
      const found = await events(reason);
      return found.length > 0 && found;
    }, `a ${reason} Event`);

  before(async () => {
    e = await startE2e(assets);
    await ensureNamespace(e.kubectl, NS, { 'tokenguard.io/mode': 'enforce' });
    await must(['apply', '-f', '-'], yaml({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-old' } }));
    await must(['apply', '-f', '-'], yaml(claim(NS, 'data'), podOn(NS, 'db-0', 'node-old', 'data')));
    await must(['patch', 'pod', 'db-0', '-n', NS, '--subresource=status', '--type=merge', '-p', '{"status":{"phase":"Running"}}']);
    await eventually(async () => (await e.kubectl(['delete', 'pvc', 'data', '-n', NS, '--dry-run=server'])).stderr.includes('db-0 (Running on node-old)'), 'the guard to see db-0');
  });

  after(async () => {
    await e?.stop();
  });

  it('a denial: an Event on the PVC that kubectl describe and kubectl get events show; the dry runs before it left none', async () => {
    const denied = await e.kubectl(['delete', 'pvc', 'data', '-n', NS, '--wait=false']);
    assert.equal(denied.code, 1, denied.stderr);
    const [ev] = await recorded('PolicyViolation');
    assert.equal(ev.count, 1, 'the dry runs of before() were not recorded (they would have aggregated into this one)');
    assert.equal(ev.type, 'Warning');
    assert.equal(ev.involvedObject.kind, 'PersistentVolumeClaim');
    assert.equal(ev.involvedObject.name, 'data');
    assert.match(ev.message, /^DELETE by \S+ denied: \[pvc-in-use\] PVC e2e-events\/data would hang in Terminating: in use by db-0 \(Running on node-old\)/);

    const described = (await must(['describe', 'pvc', 'data', '-n', NS])).stdout;
    assert.match(described, /Events:[\s\S]*Warning\s+PolicyViolation\s+\S+\s+tokenguard\s+DELETE by \S+ denied: \[pvc-in-use\] PVC e2e-events\/data would hang/);
    const listed = (await must(['get', 'events', '-n', NS])).stdout;
    assert.match(listed, /Warning\s+PolicyViolation\s+persistentvolumeclaim\/data\s+DELETE by \S+ denied: \[pvc-in-use\]/);
  });

  it('a retry loop of 50 denials: one Event, its count 51', async () => {
    for (let i = 0; i < 50; i++) {
      const r = await e.kubectl(['delete', 'pvc', 'data', '-n', NS, '--wait=false']);
      assert.equal(r.code, 1, r.stderr);
    }
    // Writes are rate-limited per object (5 at once, then one each 10 s): the last count lands soon after.
    const found = await eventually(async () => {
      const all = await events('PolicyViolation');
      return all.length === 1 && all[0].count === 51 && all;
    }, 'one Event with count 51');
    assert.equal(found.length, 1);
    const described = (await must(['describe', 'pvc', 'data', '-n', NS])).stdout;
    assert.match(described, /\(x51 over \S+\)\s+tokenguard\s+DELETE by/);
  });

  it('break glass: the deletion is allowed and recorded as a BreakGlassDeletion Event on the PVC', async () => {
    await must(['annotate', 'pvc', 'data', '-n', NS, 'tokenguard.io/allow-delete=true']);
    const dry = await e.kubectl(['delete', 'pvc', 'data', '-n', NS, '--dry-run=server']);
    assert.equal(dry.code, 0, dry.stderr);
    const r = await e.kubectl(['delete', 'pvc', 'data', '-n', NS, '--wait=false']);
    assert.equal(r.code, 0, r.stderr);
    const [ev] = await recorded('BreakGlassDeletion');
    assert.equal(ev.count, 1, 'the dry run was not recorded');
    assert.match(ev.message, /^\[pvc-in-use\] DELETE by \S+: PVC e2e-events\/data deletion allowed by tokenguard\.io\/allow-delete=true \(break glass\); 1 pod still uses it\. Pods using it: db-0/);
    // The claim is Terminating behind pvc-protection: describe still finds it, with both Events.
    const described = (await must(['describe', 'pvc', 'data', '-n', NS])).stdout;
    assert.match(described, /Warning\s+BreakGlassDeletion\s+\S+\s+tokenguard\s+\[pvc-in-use\] DELETE by/);
    assert.match(described, /Warning\s+PolicyViolation/);
  });
}
