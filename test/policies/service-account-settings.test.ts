// The token policies' per-namespace entries narrowed to ServiceAccounts (`serviceAccounts`): an
// entry applies only to tokens of a matching ServiceAccount, that is a TokenRequest's name, or a
// pod spec's `serviceAccountName` (the deprecated `serviceAccount`, else `default`). Pods, workload
// templates and TokenRequests (the captured `kubectl create token` review), globs, later entries
// winning, entries that do not match falling through, and the words that say where a bound comes from.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../../src/admission/engine.js';
import type { AdmissionRequest } from '../../src/admission/review.js';
import { MAX_WARNING_CHARS } from '../../src/admission/warnings.js';
import { resolveConfig } from '../../src/config/load.js';
import type { KubeObject } from '../../src/k8s/object.js';
import { podServiceAccount } from '../../src/k8s/pod-spec.js';
import { BUILTIN_POLICIES } from '../../src/policies/index.js';
import { projectedTokenAudiencePolicy } from '../../src/policies/projected-token-audience.js';
import { projectedTokenLifetimePolicy } from '../../src/policies/projected-token-lifetime.js';
import { FIXTURES } from '../helpers/fixtures.js';
import { requestFor } from './manifest-reviews.js';

const USER_48H = JSON.parse(readFileSync(join(FIXTURES, 'admission-reviews-v1.36', '106-create-token-48h-validate-CREATE-serviceaccounts-token-default.json'), 'utf8')).request as AdmissionRequest;

function engine(policies: Record<string, unknown>): Engine {
  const used = [projectedTokenLifetimePolicy, projectedTokenAudiencePolicy];
  return new Engine({ config: resolveConfig({ mode: 'enforce', policies }, 'test', BUILTIN_POLICIES), policies: used });
}

/** A pod (or, with `kind`, a Deployment whose template is that pod) with one projected token. */
function podWith(namespace: string, account: Record<string, string>, token: Record<string, unknown>, kind: 'Pod' | 'Deployment' = 'Pod'): KubeObject {
  const spec = { ...account, containers: [{ name: 'app', image: 'registry.invalid/app:1' }], volumes: [{ name: 't', projected: { sources: [{ serviceAccountToken: { path: 'token', ...token } }] } }] };
  if (kind === 'Pod') return { apiVersion: 'v1', kind, metadata: { name: 'p', namespace }, spec };
  const labels = { app: 'p' };
  return { apiVersion: 'apps/v1', kind, metadata: { name: 'p', namespace }, spec: { selector: { matchLabels: labels }, template: { metadata: { labels }, spec } } };
}

/** The captured `kubectl create token default --duration=48h`, for another ServiceAccount, namespace and spec. */
function tokenRequest(namespace: string, account: string, spec: Record<string, unknown>): AdmissionRequest {
  const req = structuredClone(USER_48H);
  req.namespace = namespace;
  req.name = account;
  req.object!.metadata.name = account;
  req.object!.metadata.namespace = namespace;
  Object.assign(req.object!.spec, spec);
  return req;
}

async function judged(e: Engine, req: AdmissionRequest) {
  const d = await e.validate(req);
  return d.findings.map(({ policy, message, detail }) => ({ policy, message, detail }));
}
const messages = async (e: Engine, req: AdmissionRequest) => (await judged(e, req)).map((f) => f.message);

describe('podServiceAccount: the ServiceAccount of a pod spec', () => {
  it('serviceAccountName, else the deprecated serviceAccount, else default', () => {
    assert.equal(podServiceAccount({ serviceAccountName: 'deployer', serviceAccount: 'old' }), 'deployer');
    assert.equal(podServiceAccount({ serviceAccount: 'old' }), 'old');
    assert.equal(podServiceAccount({ serviceAccountName: '', serviceAccount: '' }), 'default');
    assert.equal(podServiceAccount({}), 'default');
    assert.equal(podServiceAccount({ serviceAccountName: 42 }), 'default', 'not a name: the API server refuses it; no entry is chosen by it');
  });
});

describe('projected-token-lifetime per ServiceAccount', () => {
  const e = engine({
    'projected-token-lifetime': {
      namespaces: [
        { namespaces: ['ci'], maxSeconds: 3600 },
        { namespaces: ['ci'], serviceAccounts: ['deployer'], maxSeconds: 172800 },
        { namespaces: ['team-*'], serviceAccounts: ['build-*', 'release-?'], minSeconds: 1200 },
      ],
    },
  });
  const TWO_DAYS = { expirationSeconds: 172800 };

  it('in namespace ci, ServiceAccount deployer may get 48 h tokens: Pod, Deployment template, TokenRequest', async () => {
    assert.deepEqual(await messages(e, requestFor(podWith('ci', { serviceAccountName: 'deployer' }, TWO_DAYS))), []);
    assert.deepEqual(await messages(e, requestFor(podWith('ci', { serviceAccountName: 'deployer' }, TWO_DAYS, 'Deployment'))), []);
    assert.deepEqual(await messages(e, tokenRequest('ci', 'deployer', TWO_DAYS)), []);
  });

  it('... and only deployer: another ServiceAccount, or none (default), gets the namespace bound', async () => {
    const namespaceBound = 'token lifetime 172800 s is above this namespace\'s 3600 s maximum (volume "t")';
    assert.deepEqual(await messages(e, requestFor(podWith('ci', { serviceAccountName: 'web' }, TWO_DAYS))), [namespaceBound]);
    assert.deepEqual(await messages(e, requestFor(podWith('ci', {}, TWO_DAYS))), [namespaceBound]);
    assert.deepEqual(await messages(e, requestFor(podWith('ci', { serviceAccountName: 'web' }, TWO_DAYS, 'Deployment'))), [namespaceBound]);
    const [f] = await judged(e, tokenRequest('ci', 'default', TWO_DAYS));
    assert.equal(f!.message, 'token lifetime 172800 s is above this namespace\'s 3600 s maximum (token for ServiceAccount "default")');
    assert.match(f!.detail!, / That bound applies to namespace ci \(policies\.projected-token-lifetime\.namespaces\)\.$/);
  });

  it('the deprecated spec.serviceAccount names the ServiceAccount when serviceAccountName is left out', async () => {
    assert.deepEqual(await messages(e, requestFor(podWith('ci', { serviceAccount: 'deployer' }, TWO_DAYS))), []);
  });

  it('a bound from a ServiceAccount entry says so, in the message and in the detail', async () => {
    for (const req of [requestFor(podWith('ci', { serviceAccountName: 'deployer' }, { expirationSeconds: 200000 }, 'Deployment')), tokenRequest('ci', 'deployer', { expirationSeconds: 200000 })]) {
      const [f, ...rest] = await judged(e, req);
      assert.deepEqual(rest, []);
      assert.match(f!.message, /^token lifetime 200000 s is above this ServiceAccount's 172800 s maximum \((volume "t"|token for ServiceAccount "deployer")\)$/);
      assert.match(f!.detail!, / That bound applies to ServiceAccount deployer in namespace ci \(policies\.projected-token-lifetime\.namespaces\[\]\.serviceAccounts\)\.$/);
    }
  });

  it('globs for ServiceAccounts and namespaces; a bound the entry leaves out falls through to the global one', async () => {
    const below = (where: string) => `token lifetime 900 s is below this ServiceAccount's 1200 s minimum (${where})`;
    assert.deepEqual(await messages(e, requestFor(podWith('team-a', { serviceAccountName: 'build-x' }, { expirationSeconds: 900 }))), [below('volume "t"')]);
    assert.deepEqual(await messages(e, tokenRequest('team-b', 'release-1', { expirationSeconds: 900 })), [below('token for ServiceAccount "release-1"')]);
    assert.deepEqual(await messages(e, tokenRequest('team-b', 'release-10', { expirationSeconds: 900 })), [], '`?` is one character');
    assert.deepEqual(await messages(e, requestFor(podWith('team-a', { serviceAccountName: 'web' }, { expirationSeconds: 900 }))), [], 'another ServiceAccount: the global bounds');
    assert.deepEqual(await messages(e, requestFor(podWith('shop', { serviceAccountName: 'build-x' }, { expirationSeconds: 900 }))), [], 'another namespace: the global bounds');
    assert.deepEqual(await messages(e, requestFor(podWith('team-a', { serviceAccountName: 'build-x' }, TWO_DAYS))), ['token lifetime 172800 s is above the 86400 s maximum (volume "t")']);
  });

  it('later entries win, ServiceAccount or not; `default` names the pods that name none', async () => {
    const later = engine({
      'projected-token-lifetime': {
        namespaces: [
          { namespaces: ['ci'], serviceAccounts: ['deployer', 'default'], maxSeconds: 172800 },
          { namespaces: ['c*'], maxSeconds: 7200 },
          { namespaces: ['ci'], serviceAccounts: ['default'], maxSeconds: 3600 },
        ],
      },
    });
    assert.deepEqual(await messages(later, tokenRequest('ci', 'deployer', TWO_DAYS)), ['token lifetime 172800 s is above this namespace\'s 7200 s maximum (token for ServiceAccount "deployer")']);
    assert.deepEqual(await messages(later, requestFor(podWith('ci', {}, { expirationSeconds: 7200 }))), ['token lifetime 7200 s is above this ServiceAccount\'s 3600 s maximum (volume "t")']);
    assert.deepEqual(await messages(later, requestFor(podWith('ci', { serviceAccountName: 'deployer' }, { expirationSeconds: 7200 }))), []);
  });

  it('a minimum above the maximum for a ServiceAccount entry is refused at start-up', () => {
    assert.throws(
      () => engine({ 'projected-token-lifetime': { maxSeconds: 7200, namespaces: [{ namespaces: ['ci'], serviceAccounts: ['x'], minSeconds: 10000 }] } }),
      /policies\.projected-token-lifetime\.namespaces\[0\]\.minSeconds: minSeconds 10000 would be above maxSeconds 7200 for these ServiceAccounts/,
    );
  });
});

describe('projected-token-audience per ServiceAccount', () => {
  const e = engine({
    'projected-token-audience': {
      namespaces: [
        { namespaces: ['team-*'], serviceAccounts: ['x'], allowed: ['billing'] },
        { namespaces: ['team-a'], allowed: ['ledger'] },
        { namespaces: ['team-a'], serviceAccounts: ['default'], allowed: ['metrics-*'] },
      ],
    },
  });

  it('ServiceAccount x in team-* may use audience billing: Pod, Deployment template, TokenRequest', async () => {
    assert.deepEqual(await messages(e, requestFor(podWith('team-b', { serviceAccountName: 'x' }, { audience: 'billing' }))), []);
    assert.deepEqual(await messages(e, requestFor(podWith('team-b', { serviceAccountName: 'x' }, { audience: 'billing' }, 'Deployment'))), []);
    assert.deepEqual(await messages(e, tokenRequest('team-b', 'x', { expirationSeconds: 3600, audiences: ['billing'] })), []);
  });

  it('another ServiceAccount is refused, and the detail lists what it may use', async () => {
    const [f, ...rest] = await judged(e, tokenRequest('team-a', 'y', { expirationSeconds: 3600, audiences: ['billing'] }));
    assert.deepEqual(rest, []);
    assert.equal(f!.message, 'token audience "billing" is not allowed (token for ServiceAccount "y")');
    assert.match(f!.detail!, /https:\/\/iam\.googleapis\.com\/projects\/\*, ledger, or no audience/);
    assert.deepEqual(await messages(e, requestFor(podWith('team-a', { serviceAccountName: 'y' }, { audience: 'billing' }))), ['token audience "billing" is not allowed (volume "t")']);
  });

  it('entries add up; `default` names the pods that name none', async () => {
    assert.deepEqual(await messages(e, requestFor(podWith('team-a', {}, { audience: 'metrics-eu' }))), []);
    assert.deepEqual(await messages(e, requestFor(podWith('team-a', {}, { audience: 'ledger' }))), []);
    assert.deepEqual(await messages(e, requestFor(podWith('team-a', { serviceAccountName: 'x' }, { audience: 'metrics-eu' }))), ['token audience "metrics-eu" is not allowed (volume "t")']);
    const [f] = await judged(e, requestFor(podWith('team-a', {}, { audience: 'billing' })));
    assert.match(f!.detail!, /, ledger, metrics-\*, or no audience/);
  });
});

describe('per ServiceAccount: messages within one warning, names whole or left out', () => {
  const account = ('sa-' + 'x'.repeat(253)).slice(0, 253);
  const namespace = ('ns-' + 'y'.repeat(63)).slice(0, 63);
  const e = engine({
    'projected-token-lifetime': { namespaces: [{ namespaces: ['ns-*'], serviceAccounts: ['sa-*'], minSeconds: 3600, maxSeconds: 4294967295 }] },
    'projected-token-audience': { namespaces: [{ namespaces: ['ns-*'], serviceAccounts: ['sa-*'], allowed: ['billing'] }] },
  });

  it('a 253-character ServiceAccount in a 63-character namespace: the bound still says where it comes from', async () => {
    const cases = [
      tokenRequest(namespace, account, { expirationSeconds: 4294967296 }),
      tokenRequest(namespace, account, { expirationSeconds: 600, audiences: ['a'.repeat(200)] }),
      requestFor(podWith(namespace, { serviceAccountName: account }, { expirationSeconds: 600, audience: 'z'.repeat(300) })),
    ];
    const found = (await Promise.all(cases.map((req) => judged(e, req)))).flat();
    assert.equal(found.length, 5);
    for (const f of found) {
      assert.ok(Array.from(f.message).length <= MAX_WARNING_CHARS, `${Array.from(f.message).length} characters: ${f.message}`);
      if (f.message.includes(account.slice(0, 24))) assert.ok(f.message.includes(account), `cut: ${f.message}`);
    }
    const lifetime = found.filter((f) => f.policy === projectedTokenLifetimePolicy.name);
    assert.deepEqual(lifetime.map((f) => f.message), [
      "token lifetime 4294967296 s is above this ServiceAccount's 4294967295 s maximum",
      "token lifetime 600 s is below this ServiceAccount's 3600 s minimum",
      "token lifetime 600 s is below this ServiceAccount's 3600 s minimum (volume \"t\")",
    ]);
    for (const f of lifetime) assert.ok(f.detail!.includes(`That bound applies to ServiceAccount ${account} in namespace ${namespace}`), f.detail);
  });
});
