// Self-managed TLS on the node, under fail-closed webhooks: the suite installs tokenguard with
// lifetimes of minutes (shortTlsConfig), so serving certificates renew and CAs rotate while the
// other scenarios run; here admissions stream through kubectl until at least two serving renewals
// and one whole CA rotation (new CA trusted, then signing, then the old one dropped) have happened,
// and every one must be answered. Then the Secret is deleted and the Deployment scaled to 3: all
// converge to one Secret whose CA is in both webhook configurations, and admissions keep working.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { parse, stringify } from 'yaml';
import { PROJECT_ROOT } from '../../helpers/tls.js';
import { eventually } from '../harness/eventually.js';
import { ok } from '../harness/kubectl.js';
import type { NodeCluster } from '../harness/node.js';
import { setFailurePolicy, stream, streamNamespace } from './disruption.js';
import { untilWebhooksServe } from './install.js';

/** What the suite's install sets (over manifests/base/config.yaml): the shortest lifetimes the config allows, so a CA rotates every minute. */
export const SHORT_TLS = { caLifetimeSeconds: 120, certLifetimeSeconds: 60, renewAtFraction: 0.5, checkSeconds: 3, overlapSeconds: 10 };

/**
 * The config of `from` (manifests/base, or an overlay with a config.yaml of its own) with SHORT_TLS
 * and any further `edits`, written to `dir`; the kustomization lines that use it.
 */
export function shortTlsConfig(dir: string, from = 'base', ...edits: ((config: Record<string, any>) => void)[]): string {
  const config = parse(readFileSync(join(PROJECT_ROOT, 'manifests', from, 'config.yaml'), 'utf8')) as Record<string, any>;
  config.server.selfManagedTLS = { ...config.server.selfManagedTLS, ...SHORT_TLS };
  for (const edit of edits) edit(config);
  writeFileSync(join(dir, 'config.yaml'), stringify(config));
  return ['configMapGenerator:', '  - name: tokenguard-config', '    namespace: tokenguard', '    behavior: replace', '    files: [config.yaml]'].join('\n');
}

/** tokenguard_tls_rotations_total by kind, summed over the running replicas (each counts its own writes). */
async function rotations(cluster: NodeCluster): Promise<Record<string, number>> {
  const sum: Record<string, number> = {};
  for (const pod of await cluster.tokenguardPods()) {
    const text = await cluster.tokenguardMetrics(pod);
    for (const m of text.matchAll(/^tokenguard_tls_rotations_total\{kind="([^"]+)"[^}]*\} (\d+)/gm)) sum[m[1]!] = (sum[m[1]!] ?? 0) + Number(m[2]);
  }
  return sum;
}

const delta = (after: Record<string, number>, before: Record<string, number>, kind: string) => (after[kind] ?? 0) - (before[kind] ?? 0);

async function secretCa(cluster: NodeCluster): Promise<string> {
  return ok(await cluster.kubectl(['-n', 'tokenguard', 'get', 'secret', 'tokenguard-tls', '-o', 'jsonpath={.data.ca\\.crt}']), 'the Secret').stdout;
}

async function bundles(cluster: NodeCluster): Promise<string[]> {
  const out: string[] = [];
  for (const kind of ['validatingwebhookconfiguration', 'mutatingwebhookconfiguration']) {
    out.push(...ok(await cluster.kubectl(['get', kind, 'tokenguard', '-o', 'jsonpath={.webhooks[*].clientConfig.caBundle}']), kind).stdout.split(' '));
  }
  return out;
}

export function tlsRotationScenario(cluster: () => NodeCluster): void {
  it('serving renewals and a whole CA rotation under fail-closed webhooks: every admission answered', async () => {
    const c = cluster();
    await streamNamespace(c);
    await setFailurePolicy(c, 'Fail');
    try {
      const before = await rotations(c);
      const s = stream(c);
      const seen = await eventually(
        async () => {
          const now = await rotations(c);
          const counts = { renewals: delta(now, before, 'renew-serving'), started: delta(now, before, 'start-ca-rotation'), finished: delta(now, before, 'finish-ca-rotation') };
          return counts.renewals >= 2 && counts.started >= 1 && counts.finished >= 1 && counts;
        },
        'two serving renewals and a whole CA rotation',
        300_000,
      );
      const { total, failures } = await s.stop();
      process.stdout.write(`# TLS rotation: ${total} admissions, ${failures.length} failed; ${seen.renewals} serving renewals, ${seen.started} CA rotations started, ${seen.finished} finished\n`);
      assert.ok(total > 20, `only ${total} admissions`);
      assert.deepEqual(failures, []);
    } finally {
      await setFailurePolicy(c, 'Ignore');
    }
  });

  it('the Secret deleted while running, then 3 replicas: one Secret, its CA in both configurations, admissions answered', async () => {
    const c = cluster();
    ok(await c.kubectl(['-n', 'tokenguard', 'delete', 'secret', 'tokenguard-tls']), 'delete the Secret');
    ok(await c.kubectl(['-n', 'tokenguard', 'scale', 'deployment/tokenguard', '--replicas=3']), 'scale to 3');
    ok(await c.kubectl(['-n', 'tokenguard', 'rollout', 'status', 'deployment/tokenguard', '--timeout=120s']), 'rollout status');
    await eventually(async () => {
      const r = await c.kubectl(['-n', 'tokenguard', 'get', 'secret', 'tokenguard-tls', '-o', 'name']);
      if (r.code !== 0) return false;
      const ca = await secretCa(c);
      const all = await bundles(c);
      return all.length > 0 && all.every((b) => b === ca);
    }, 'one Secret whose ca.crt is every webhook\'s caBundle', 120_000);
    await untilWebhooksServe(c);
    ok(await c.kubectl(['-n', 'tokenguard', 'scale', 'deployment/tokenguard', '--replicas=2']), 'back to 2');
    ok(await c.kubectl(['-n', 'tokenguard', 'rollout', 'status', 'deployment/tokenguard', '--timeout=120s']), 'rollout status');
  });
}
