// GET /metrics over HTTPS, scraped from a real server after real reviews: every family a running
// `tokenguard serve` registers follows the Prometheus naming conventions, the families docs/monitoring.md
// promises exist with their types and labels, and the counts move by exactly what was served.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../helpers/tls.js';
// What `tokenguard serve` imports with a cluster, caller authentication and the observer on (it loads those
// modules only then), so every module that registers metrics has registered them.
import '../../src/cli/serve.js';
import '../../src/cluster/issuer-services.js';
import '../../src/server/caller-auth.js';
import '../../src/cluster/token-observer-service.js';
import { BUILTIN_POLICIES } from '../../src/policies/index.js';
import { startCacheRig, type CacheRig } from '../cluster/helpers.js';
import { until } from '../helpers/eventually.js';
import { clusterState, reviewByPrefix } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
interface Family {
  name: string;
  help: string;
  type: string;
  samples: Sample[];
}

/** The Prometheus text exposition format (0.0.4), as prom-client writes it. */
function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const family = (name: string) => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { name, help: '', type: 'untyped', samples: [] }));
    return f;
  };
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m = /^# HELP (\S+) (.*)$/.exec(line);
    if (m) {
      family(m[1]!).help = m[2]!;
      continue;
    }
    m = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (m) {
      family(m[1]!).type = m[2]!;
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparseable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, '$1');
    // Histogram and summary samples belong to the family without their suffix.
    const base = [...families.keys()].find((n) => m[1] === n || (/^(_bucket|_sum|_count)$/.test(m[1]!.slice(n.length)) && m[1]!.startsWith(n)));
    family(base ?? m[1]!).samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return families;
}

const sum = (f: Family | undefined, match: Record<string, string>, sampleName = f?.name) =>
  (f?.samples ?? []).filter((s) => s.name === sampleName && Object.entries(match).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);

const DEFAULT_COLLECTORS = /^tokenguard_(process|nodejs)_/;

/**
 * The families docs/monitoring.md's metrics reference lists, with their types and labels (checked against it below).
 * `afterSelfTest`: registered with the first token self-test's result (test/cluster/token-selftest.test.ts checks that); none runs here.
 */
const PROMISED: { name: string; type: string; labels: string[]; afterSelfTest?: boolean }[] = [
  { name: 'tokenguard_admission_requests_total', type: 'counter', labels: ['route', 'decision'] },
  { name: 'tokenguard_admission_rejected_total', type: 'counter', labels: ['route', 'reason'] },
  { name: 'tokenguard_policy_decisions_total', type: 'counter', labels: ['route', 'policy', 'decision', 'mode'] },
  { name: 'tokenguard_admission_duration_seconds', type: 'histogram', labels: ['route'] },
  { name: 'tokenguard_warnings_emitted_total', type: 'counter', labels: ['route'] },
  { name: 'tokenguard_cache_objects', type: 'gauge', labels: ['resource'] },
  { name: 'tokenguard_cache_synced', type: 'gauge', labels: ['resource'] },
  { name: 'tokenguard_cache_stale_seconds', type: 'gauge', labels: ['resource'] },
  { name: 'tokenguard_watch_restarts_total', type: 'counter', labels: ['resource', 'reason'] },
  { name: 'tokenguard_cluster_live_lookups_total', type: 'counter', labels: ['outcome'] },
  { name: 'tokenguard_pods_token_refresh_at_risk', type: 'gauge', labels: ['claim'] },
  { name: 'tokenguard_claims_terminating_in_use', type: 'gauge', labels: [] },
  { name: 'tokenguard_events_total', type: 'counter', labels: ['outcome'] },
  { name: 'tokenguard_issuer_changes_total', type: 'counter', labels: [] },
  { name: 'tokenguard_jwks_changes_total', type: 'counter', labels: [] },
  { name: 'tokenguard_issuer_discovery_failures_total', type: 'counter', labels: [] },
  { name: 'tokenguard_token_selftest_success', type: 'gauge', labels: [], afterSelfTest: true },
  { name: 'tokenguard_clock_skew_seconds', type: 'gauge', labels: [], afterSelfTest: true },
  { name: 'tokenguard_token_selftest_last_success_timestamp_seconds', type: 'gauge', labels: [], afterSelfTest: true },
  { name: 'tokenguard_clock_skew_bound_seconds', type: 'gauge', labels: [], afterSelfTest: true },
  { name: 'tokenguard_caller_auth_total', type: 'counter', labels: ['method', 'result'] },
  { name: 'tokenguard_caller_auth_mode', type: 'gauge', labels: ['mode'] },
  { name: 'tokenguard_build_info', type: 'gauge', labels: ['version', 'revision', 'node_version'] },
  { name: 'tokenguard_tls_certificate_not_after_seconds', type: 'gauge', labels: ['certificate'] },
  { name: 'tokenguard_ready', type: 'gauge', labels: [] },
  { name: 'tokenguard_token_refresh_overdue_pods', type: 'gauge', labels: [] },
  { name: 'tokenguard_token_observer_active', type: 'gauge', labels: [] },
  { name: 'tokenguard_token_observer_tracked_pods', type: 'gauge', labels: [] },
  { name: 'tokenguard_token_requests_observed_total', type: 'counter', labels: ['outcome'] },
];

describe('GET /metrics', () => {
  let server: TestServer;
  let rig: CacheRig;
  let before_: Map<string, Family>;
  let after_: Map<string, Family>;
  let contentType: string | undefined;
  const served = { validate: { allowed: 0, denied: 0 }, mutate: { allowed: 0, denied: 0 }, warnings: { validate: 0, mutate: 0 } };

  before(async () => {
    server = await startTestServer({ overrides: { mode: 'enforce' } });
    before_ = parseExposition((await server.get('/metrics')).text);
    // 032: a CronJob two policies deny; 014: a pod with a deny and a warning; 003: a pod the mutating side patches;
    // 006: a plain pod. Each on the route it was captured for; then one invalid body.
    for (const [prefix, route] of [['032', 'validate'], ['014', 'validate'], ['003', 'mutate'], ['006', 'validate'], ['005', 'mutate']] as const) {
      const res = await server.post(`/${route}?timeout=10s`, reviewByPrefix(prefix));
      assert.equal(res.status, 200);
      served[route][res.json.response.allowed ? 'allowed' : 'denied']++;
      served.warnings[route] += res.json.response.warnings?.length ?? 0;
    }
    assert.equal((await server.post('/validate', '{"not":"a review"}')).status, 400);
    // The cluster caches, synced from the fake API server, then one routine watch end (a restart).
    rig = await startCacheRig();
    await until(() => rig.fake.openWatches() === 3, 'the three watches');
    rig.fake.endWatches(); // synchronous: no watch is open until the caches reconnect
    await until(() => rig.fake.openWatches() === 3, 'the watches to reconnect');
    const res = await server.get('/metrics');
    contentType = res.headers['content-type'] as string;
    after_ = parseExposition(res.text);
  });
  after(async () => {
    await rig?.close();
    await server.shutdown();
  });

  it('is served in the Prometheus text format', () => {
    assert.match(contentType ?? '', /^text\/plain; version=0\.0\.4/);
    assert.ok(after_.size > PROMISED.length);
  });

  it('follows the naming conventions: tokenguard_ prefix, _total only on counters, base units, snake_case labels, help', () => {
    for (const f of after_.values()) {
      assert.match(f.name, /^tokenguard_[a-z0-9_]+$/, `${f.name}: tokenguard_ prefix, snake_case`);
      // prom-client's default process and Node.js families keep their standard names (one of them,
      // nodejs_active_resources_total, is a gauge): dashboards expect them as they are.
      if (DEFAULT_COLLECTORS.test(f.name)) continue;
      assert.ok(f.help.length > 10, `${f.name}: has help text`);
      if (f.type === 'counter') assert.ok(f.name.endsWith('_total'), `${f.name}: a counter ends in _total`);
      else assert.ok(!f.name.endsWith('_total'), `${f.name}: only counters end in _total (type ${f.type})`);
      // Base units: seconds and bytes, never milliseconds; the unit is the last word (before _total).
      assert.doesNotMatch(f.name, /_(ms|milliseconds|minutes|hours|kilobytes|megabytes)(_|$)/, `${f.name}: base units`);
      if (/seconds/.test(f.name)) assert.match(f.name, /_seconds(_total)?$/, `${f.name}: unit suffix last`);
      if (f.type === 'histogram' || f.type === 'summary') assert.match(f.name, /_(seconds|bytes)$/, `${f.name}: observes a unit`);
      for (const s of f.samples) {
        for (const label of Object.keys(s.labels)) {
          assert.match(label, /^[a-z][a-z0-9_]*$/, `${f.name}: label ${label} is snake_case`);
        }
      }
    }
  });

  it('has every family docs/monitoring.md lists, with its type and labels (the self-test gauges: not yet)', () => {
    for (const p of PROMISED) {
      const f = after_.get(p.name);
      if (p.afterSelfTest) {
        assert.equal(f, undefined, `${p.name}: absent before any self-test`);
        continue;
      }
      assert.ok(f, `${p.name} is registered`);
      assert.equal(f.type, p.type, `${p.name}: type`);
      for (const s of f.samples.filter((x) => x.name === p.name || x.name === `${p.name}_bucket`)) {
        const labels = Object.keys(s.labels).filter((l) => l !== 'le');
        assert.deepEqual(labels.sort(), [...p.labels].sort(), `${p.name}: labels`);
      }
    }
  });

  it('lists exactly the families of the docs\' metrics reference, with the same types', () => {
    // The one document (README.md or docs/*.md) with a "Metrics reference" heading.
    const docs = [join(PROJECT_ROOT, 'README.md'), ...readdirSync(join(PROJECT_ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => join(PROJECT_ROOT, 'docs', f))];
    const holders = docs.filter((f) => /^#{2,3} Metrics reference$/m.test(readFileSync(f, 'utf8')));
    assert.equal(holders.length, 1, `one metrics reference, found in: ${holders.join(', ') || 'none'}`);
    const text = readFileSync(holders[0]!, 'utf8');
    const start = text.search(/^#{2,3} Metrics reference$/m);
    const next = text.indexOf('\n## ', start + 1);
    const section = text.slice(start, next === -1 ? undefined : next);
    const rows = [...section.matchAll(/^\| `(tokenguard_[a-z_]+)` \| (counter|gauge|histogram) \|/gm)].map((m) => [m[1], m[2]]);
    assert.deepEqual(
      rows.sort(),
      PROMISED.map((p) => [p.name, p.type]).sort(),
    );
  });

  it('has no family docs/monitoring.md does not list (a new metric must be documented, and added above)', () => {
    const documented = new Set(PROMISED.map((p) => p.name));
    const undocumented = [...after_.keys()].filter((n) => !DEFAULT_COLLECTORS.test(n) && !documented.has(n));
    assert.deepEqual(undocumented, []);
  });

  it('counts each review by route and decision, and the invalid one', () => {
    const delta = (name: string, match: Record<string, string>, sample?: string) => sum(after_.get(name), match, sample) - sum(before_.get(name), match, sample);
    for (const route of ['validate', 'mutate'] as const) {
      for (const decision of ['allowed', 'denied'] as const) {
        assert.equal(delta('tokenguard_admission_requests_total', { route, decision }), served[route][decision], `${route} ${decision}`);
      }
      const answered = served[route].allowed + served[route].denied;
      assert.equal(delta('tokenguard_admission_duration_seconds', { route }, 'tokenguard_admission_duration_seconds_count'), answered, `${route}: one latency observation per answer`);
      assert.equal(delta('tokenguard_admission_duration_seconds', { route, le: '+Inf' }, 'tokenguard_admission_duration_seconds_bucket'), answered);
      assert.equal(delta('tokenguard_warnings_emitted_total', { route }), served.warnings[route], `${route}: warnings sent`);
    }
    assert.equal(delta('tokenguard_admission_requests_total', { route: 'validate', decision: 'invalid' }), 1);
  });

  it('reports the cluster caches per resource', () => {
    const objects = after_.get('tokenguard_cache_objects')!;
    for (const [resource, file] of [['pods', 'pods.json'], ['nodes', 'nodes.json'], ['namespaces', 'namespaces.json']] as const) {
      assert.equal(sum(objects, { resource }), clusterState(file).items.length, `${resource} cached`);
      assert.equal(sum(after_.get('tokenguard_cache_synced'), { resource }), 1, `${resource} synced`);
      assert.equal(sum(after_.get('tokenguard_cache_stale_seconds'), { resource }), 0, `${resource} watch up`);
    }
    assert.ok(sum(after_.get('tokenguard_watch_restarts_total'), { reason: 'closed' }) >= 1, 'the routine watch end is counted as closed');
  });

  it('attributes decisions to registered policies, with the mode they were judged in', () => {
    const f = after_.get('tokenguard_policy_decisions_total')!;
    const names = new Set(BUILTIN_POLICIES.map((p) => p.name));
    assert.ok(f.samples.length > 0);
    for (const s of f.samples) {
      assert.ok(names.has(s.labels.policy!), `policy label ${s.labels.policy} is a registered policy`);
      assert.ok(['allowed', 'denied', 'warned', 'patched'].includes(s.labels.decision!), s.labels.decision);
      if (s.labels.decision === 'denied') assert.equal(s.labels.mode, 'enforce');
      if (s.labels.decision === 'patched') assert.equal(s.labels.mode, 'n/a');
      else assert.ok(['enforce', 'warn'].includes(s.labels.mode!), `${s.labels.decision}: mode ${s.labels.mode}`);
    }
    assert.ok(sum(f, { route: 'validate', decision: 'allowed' }) >= 1, 'the plain pod: every policy that ran on it allowed it');
    assert.ok(sum(f, { route: 'validate', decision: 'denied' }) >= 2, 'the CronJob alone has two denying findings');
    assert.ok(sum(f, { route: 'mutate', decision: 'patched' }) >= 1, 'the pod with a claim was patched');
  });
});
