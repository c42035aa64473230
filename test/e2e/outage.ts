// An API outage, end to end (run from e2e.test.ts): kube-apiserver stopped for 10 s and started again while PVC DELETE
// reviews keep arriving. tokenguard must answer every one (no 5xx, never a silent pass: each
// answer carries a warning), stay ready, and have its caches synced again afterwards, seeing
// changes made after the restart.

import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { stringify } from 'yaml';
import { reviewByPrefix } from '../helpers/fixtures.js';
import type { Assets } from './harness/assets.js';
import { ensureNamespace, startE2e, type E2e } from './harness/environment.js';
import { eventually } from './harness/eventually.js';
import { mustWith, warnings } from './harness/kubectl.js';
import { claim, podOn } from './harness/objects.js';
import { PacedLoad } from '../helpers/paced-load.js';

const NS = 'e2e-outage';
const OUTAGE_MS = 10_000;
/** Short, so the outage outlasts the cache's trust and the live-lookup fallback is exercised too. */
const STALE_AFTER_SECONDS = 4;

/** The captured DELETE review (054), for claim e2e-outage/data. */
function deleteReview(): any {
  const r = reviewByPrefix('054');
  r.request.uid = randomUUID();
  r.request.namespace = NS;
  r.request.oldObject.metadata.namespace = NS;
  return r;
}

export function outageScenario(assets: Assets): void {
  let e: E2e;
  const must = mustWith(() => e.kubectl);

  before(async () => {
    e = await startE2e(assets, { tokenguard: { cluster: { staleAfterSeconds: STALE_AFTER_SECONDS, lookupTimeoutMs: 1000 } } });
    await ensureNamespace(e.kubectl, NS);
    await must(['apply', '-f', '-'], 'apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\n');
    await must(['apply', '-f', '-'], stringify(claim(NS, 'data')));
    await must(['apply', '-f', '-'], stringify(podOn(NS, 'db-0', 'node-a', 'data')));
    await eventually(async () => warnings(await e.kubectl(['delete', 'pvc', 'data', '-n', NS, '--dry-run=server'])).some((w) => w.includes('db-0')), 'the guard to see db-0');
  });

  after(async () => {
    await e?.stop();
  });

  it('reviews are answered throughout, with warnings and no 5xx; the caches sync again and see new pods', async (t) => {
    // The fault suite's paced keep-alive load (nothing may be lost or time out), and beside it a
    // slower loop that looks at each answer's warnings and at /readyz.
    const load = new PacedLoad({
      port: e.tokenguard.port,
      ca: e.tokenguard.certs.ca,
      path: '/validate',
      body: JSON.stringify(deleteReview()),
      rate: 100,
      expect: '"warnings":["',
    });
    load.start();
    const answers: { status: number; allowed?: boolean; warnings: string[]; ready: number }[] = [];
    let reviewing = true;
    const loop = (async () => {
      while (reviewing) {
        const r = await e.tokenguard.review('/validate', deleteReview());
        const ready = (await e.tokenguard.call('GET', '/readyz')).status;
        answers.push({ status: r.status, allowed: r.json?.response?.allowed, warnings: r.json?.response?.warnings ?? [], ready });
        await new Promise((res) => setTimeout(res, 100));
      }
    })();

    const down = Date.now();
    await e.cp.stopApiserver();
    const stopped = Date.now();
    await new Promise((res) => setTimeout(res, OUTAGE_MS));
    await e.cp.startApiserver();
    const back = Date.now();
    reviewing = false;
    await loop;
    const counts = await load.stop();
    t.diagnostic(`outage, paced load: ok ${counts.ok}, bad ${counts.bad}, refused ${counts.refused}, lost ${counts.lost}, timeout ${counts.timeout}`);
    assert.deepEqual([counts.bad, counts.refused, counts.lost, counts.timeout], [0, 0, 0, 0], JSON.stringify(counts));

    assert.ok(answers.length >= 50, `${answers.length} reviews during ${back - down} ms`);
    assert.deepEqual([...new Set(answers.map((a) => a.status))], [200], 'every review answered 200');
    assert.ok(answers.every((a) => a.allowed === true), 'warn mode: every review allowed');
    assert.ok(answers.every((a) => a.warnings.length > 0), 'never a silent pass');
    assert.ok(answers.every((a) => a.ready === 200), 'stays ready: a stale cache must not take the webhook out of the Service');
    // First from the cache (it still names the pod), then, once stale, the live lookup fails and says so.
    const named = answers.filter((a) => a.warnings.some((w) => w.includes('in use by db-0 (Pending on node-a)')));
    const unchecked = answers.filter((a) => a.warnings.some((w) => w === `could not check which pods use PVC ${NS}/data; deletion not checked`));
    assert.ok(named.length > 0 && unchecked.length > 0, `${named.length} from the cache, ${unchecked.length} unchecked`);
    assert.equal(named.length + unchecked.length, answers.length);

    // Back: every watch open again, and a pod created after the restart is seen by the guard.
    const resynced = await eventually(async () => {
      const samples = await Promise.all(['pods', 'nodes', 'namespaces'].map((r) => e.tokenguard.metric(`tokenguard_cache_stale_seconds{resource="${r}"}`)));
      return samples.every((v) => v === 0) ? Date.now() : undefined;
    }, 'every watch to reopen', 45_000);
    await must(['apply', '-f', '-'], stringify(podOn(NS, 'db-1', 'node-a', 'data')));
    const r = await eventually(async () => {
      const d = await e.kubectl(['delete', 'pvc', 'data', '-n', NS, '--dry-run=server']);
      return warnings(d).some((w) => w.includes('db-1')) ? d : undefined;
    }, 'the guard to see db-1');
    assert.ok(warnings(r).includes(`PVC ${NS}/data would hang in Terminating: in use by db-0 (Pending on node-a), db-1 (Pending on node-a)`), r.stderr);
    t.diagnostic(
      `outage: kube-apiserver took ${stopped - down} ms to stop, was down ${OUTAGE_MS} ms and ${back - stopped - OUTAGE_MS} ms to be ready again; ` +
        `${answers.length} reviews answered meanwhile (${named.length} from the cache, ${unchecked.length} unchecked), ` +
        `caches synced ${resynced - back} ms after the API server was back`,
    );
  });
}
