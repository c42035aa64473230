// The policy engine on its own: mode resolution (global, per policy, namespace overrides with exact
// names and globs, per policy inside an override, the namespace label), exemptions, how findings
// fold into a decision, patch composition and idempotence. Requests are captured fixtures.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fastJsonPatch from 'fast-json-patch';
import { Engine, MODE_LABEL } from '../../src/admission/engine.js';
import type { AdmissionRequest } from '../../src/admission/review.js';
import { resolveConfig } from '../../src/config/load.js';
import type { AnyPolicy } from '../../src/admission/policy.js';
import { reviewByPrefix } from '../helpers/fixtures.js';
import { ANYTHING, denyPolicy, fakeCluster, labelPolicy, PODS_CREATE, warnPolicy } from './test-policies.js';

/** Apply our patch with an independent RFC 6902 implementation (validating each operation). */
function applyJsonPatch(doc: unknown, ops: unknown): any {
  return fastJsonPatch.applyPatch(structuredClone(doc), ops as any, true, false).newDocument;
}

function engineWith(policies: AnyPolicy[], config: unknown = {}, cluster = fakeCluster({})) {
  return new Engine({ config: resolveConfig(config, 'test', policies), policies, cluster });
}

/** A captured Pod CREATE (`shop/web-0`, by user `admin`), with the namespace and user replaced as asked. */
function podRequest(namespace = 'shop', user = 'admin', groups = ['system:masters', 'system:authenticated']): AdmissionRequest {
  const req = reviewByPrefix('004').request as AdmissionRequest;
  req.namespace = namespace;
  req.object!.metadata.namespace = namespace;
  req.userInfo = { ...req.userInfo, username: user, groups };
  return req;
}

describe('mode resolution', () => {
  const a = denyPolicy('a');
  const b = denyPolicy('b');
  const config = {
    mode: 'warn',
    policies: { b: { mode: 'enforce' } },
    namespaceOverrides: [
      { namespaces: ['prod-*'], mode: 'enforce' },
      { namespaces: ['prod-legacy'], mode: 'off', policies: { b: 'warn' } },
      { namespaces: ['team-?'], policies: { a: 'enforce' } },
    ],
  };
  const engine = engineWith([a, b], config, fakeCluster({ labelled: { [MODE_LABEL]: 'enforce' }, junk: { [MODE_LABEL]: 'bogus' } }));

  const table: [string, string | undefined, 'a' | 'b', string][] = [
    ['global default', 'shop', 'a', 'warn'],
    ['per-policy mode beats the global one', 'shop', 'b', 'enforce'],
    ['glob override', 'prod-eu', 'a', 'enforce'],
    ['a later exact override beats an earlier glob', 'prod-legacy', 'a', 'off'],
    ['per-policy mode inside an override beats its general mode', 'prod-legacy', 'b', 'warn'],
    ['an override without a mode for this policy falls through', 'team-x', 'b', 'enforce'],
    ['per-policy entry of a `?` glob', 'team-x', 'a', 'enforce'],
    ['`?` matches exactly one character', 'team-xy', 'a', 'warn'],
    ['namespace label beats everything', 'labelled', 'a', 'enforce'],
    ['an invalid label value is ignored', 'junk', 'b', 'enforce'],
    ['cluster-scoped requests use the policy mode', undefined, 'a', 'warn'],
  ];
  for (const [what, ns, policy, expected] of table) {
    it(`${what}: ${policy} in ${ns ?? '(cluster scope)'} is ${expected}`, () => {
      assert.equal(engine.modeFor(policy, ns), expected);
    });
  }

  it('the resolved mode decides the answer: enforce denies, warn warns, off is silent', async () => {
    const enforce = await engine.validate(podRequest('prod-eu'));
    assert.equal(enforce.allowed, false);
    assert.match(enforce.denial!.message, /\[a\] a says no to Pod \(at spec.volumes\[0\]\)\. a detail Fix: a fix/);
    assert.equal(enforce.denial!.code, 403);

    const mixed = await engine.validate(podRequest('shop'));
    assert.equal(mixed.allowed, false, 'b is enforced globally');
    assert.deepEqual(mixed.warnings, ['a says no to Pod']);
    assert.doesNotMatch(mixed.denial!.message, /\[a\]/);

    const legacy = await engine.validate(podRequest('prod-legacy'));
    assert.equal(legacy.allowed, true);
    assert.deepEqual(legacy.warnings, ['b says no to Pod'], 'a is off, b warns');
    assert.deepEqual(legacy.fired, ['b']);
  });

  it('with no config at all the built-in default is warn', async () => {
    const d = await engineWith([denyPolicy('a')]).validate(podRequest());
    assert.equal(d.allowed, true);
    assert.deepEqual(d.warnings, ['a says no to Pod']);
  });
});

describe('exemptions', () => {
  const cases: { what: string; config: unknown; req: AdmissionRequest; exempt: boolean; policy?: AnyPolicy }[] = [
    { what: 'global user', config: { exemptions: { users: ['ci-bot'] } }, req: podRequest('shop', 'ci-bot'), exempt: true },
    { what: 'global user, someone else', config: { exemptions: { users: ['ci-bot'] } }, req: podRequest('shop', 'admin'), exempt: false },
    { what: 'global group', config: { exemptions: { groups: ['system:masters'] } }, req: podRequest(), exempt: true },
    { what: 'global namespace glob', config: { exemptions: { namespaces: ['kube-*'] } }, req: podRequest('kube-system'), exempt: true },
    { what: 'global namespace glob, no match', config: { exemptions: { namespaces: ['kube-*'] } }, req: podRequest('shop'), exempt: false },
    { what: 'per-policy user', config: { policies: { a: { exemptions: { users: ['admin'] } } } }, req: podRequest(), exempt: true },
    { what: 'per-policy namespace', config: { policies: { a: { exemptions: { namespaces: ['shop'] } } } }, req: podRequest(), exempt: true },
    {
      what: 'policy default exemption applies when nothing is configured',
      config: {},
      req: podRequest('shop', 'system:serviceaccount:kube-system:namespace-controller'),
      exempt: true,
      policy: denyPolicy('a', { defaultExemptions: { users: ['system:serviceaccount:kube-system:namespace-controller'] } }),
    },
    {
      what: 'configured users replace the policy default users',
      config: { policies: { a: { exemptions: { users: ['someone-else'] } } } },
      req: podRequest('shop', 'system:serviceaccount:kube-system:namespace-controller'),
      exempt: false,
      policy: denyPolicy('a', { defaultExemptions: { users: ['system:serviceaccount:kube-system:namespace-controller'] } }),
    },
    {
      what: 'configuring users leaves the default groups in place (replacement is per list)',
      config: { policies: { a: { exemptions: { users: ['someone-else'] } } } },
      req: podRequest('shop', 'admin', ['system:nodes']),
      exempt: true,
      policy: denyPolicy('a', { defaultExemptions: { groups: ['system:nodes'] } }),
    },
  ];
  for (const c of cases) {
    it(`${c.what}: ${c.exempt ? 'skipped' : 'checked'}`, async () => {
      const policy = c.policy ?? denyPolicy('a');
      const engine = engineWith([policy, warnPolicy('other', ['other ran'])], c.config);
      const d = await engine.validate(c.req);
      assert.equal(d.fired.includes('a'), !c.exempt, JSON.stringify(d.fired));
      const globalExemption = (c.config as any).exemptions !== undefined && c.exempt;
      // A per-policy exemption skips that policy only; a global one skips every policy.
      assert.equal(d.fired.includes('other'), !globalExemption);
    });
  }
});

describe('matching', () => {
  it('runs only the policies whose rules match the request', async () => {
    const engine = engineWith([denyPolicy('pods', { match: [PODS_CREATE] }), denyPolicy('deployments', { match: [{ groups: ['apps'], resources: ['deployments'], operations: ['CREATE'] }] })]);
    assert.deepEqual(engine.matchingPolicies(podRequest(), 'validate'), ['pods']);
    const deployment = reviewByPrefix('028').request;
    assert.deepEqual(engine.matchingPolicies(deployment, 'validate'), ['deployments']);
    const update = reviewByPrefix('018').request;
    assert.deepEqual(engine.matchingPolicies(update, 'validate'), [], 'UPDATE is not in either rule');
  });

  it('a rule limited to some namespaces calls its policy only there; another rule of the policy still applies elsewhere', async () => {
    const mirror = denyPolicy('kube-system-only', { match: [{ ...PODS_CREATE, namespaces: ['kube-system'] }] });
    const both = denyPolicy('both', { match: [{ ...PODS_CREATE, namespaces: ['kube-system'] }, { ...PODS_CREATE, namespaces: ['shop'] }] });
    const mixed = denyPolicy('mixed', { match: [{ ...PODS_CREATE, namespaces: ['kube-system'] }, PODS_CREATE] });
    const engine = engineWith([mirror, both, mixed]);
    assert.deepEqual(engine.matchingPolicies(podRequest('kube-system'), 'validate'), ['kube-system-only', 'both', 'mixed']);
    assert.deepEqual(engine.matchingPolicies(podRequest('shop'), 'validate'), ['both', 'mixed']);
    assert.deepEqual(engine.matchingPolicies(podRequest('elsewhere'), 'validate'), ['mixed']);
    const decision = await engine.validate(podRequest('elsewhere'));
    assert.deepEqual(decision.fired, ['mixed']);
  });

  it('a policy that throws fails open with a warning naming it', async () => {
    const errors: string[] = [];
    const broken: AnyPolicy = {
      name: 'broken',
      description: 'throws',
      match: [ANYTHING],
      validate: () => {
        throw new Error('boom');
      },
    };
    const engine = new Engine({ config: resolveConfig({ mode: 'enforce' }, 'test', [broken]), policies: [broken], onPolicyError: (p) => errors.push(p) });
    const d = await engine.validate(podRequest());
    assert.equal(d.allowed, true);
    assert.match(d.warnings[0]!, /policy broken could not run \(boom\)/);
    assert.deepEqual(errors, ['broken']);
  });
});

describe('mutating pipeline', () => {
  const tricky = { 'example.com/risk': 'pvc', 'a~b/c': 'tilde' };

  it('adds metadata.labels and metadata.annotations when the object has none, with escaped pointers', () => {
    const req = reviewByPrefix('005').request as AdmissionRequest; // a Pod without labels
    assert.equal(req.object!.metadata.labels, undefined);
    const engine = engineWith([labelPolicy('labeler', tricky, tricky)]);
    const d = engine.mutate(req);
    assert.ok(d.patch, 'a patch');
    assert.deepEqual(d.fired, ['labeler']);
    assert.deepEqual(d.patch.find((op) => op.path === '/metadata/labels'), { op: 'add', path: '/metadata/labels', value: tricky });
    const patched = applyJsonPatch(req.object, d.patch);
    assert.deepEqual(patched.metadata.labels, tricky);
    assert.deepEqual(patched.metadata.annotations['a~b/c'], 'tilde');
  });

  it('escapes `/` as ~1 and `~` as ~0 when adding keys to an existing map', () => {
    const req = reviewByPrefix('021').request as AdmissionRequest; // labels present, no annotations
    assert.ok(req.object!.metadata.labels);
    assert.equal(req.object!.metadata.annotations, undefined);
    const d = engineWith([labelPolicy('labeler', tricky, { 'x/y': '1' })]).mutate(req);
    const paths = d.patch!.map((op) => op.path);
    assert.deepEqual(paths, ['/metadata/labels/example.com~1risk', '/metadata/labels/a~0b~1c', '/metadata/annotations']);
    const patched = applyJsonPatch(req.object, d.patch);
    assert.equal(patched.metadata.labels['example.com/risk'], 'pvc');
    assert.equal(patched.metadata.labels['a~b/c'], 'tilde');
    assert.equal(patched.metadata.labels['statefulset.kubernetes.io/pod-name'], req.object!.metadata.labels['statefulset.kubernetes.io/pod-name'], 'existing labels kept');
    assert.deepEqual(patched.metadata.annotations, { 'x/y': '1' });
  });

  it('is idempotent: the already-patched object gets no patch', () => {
    const engine = engineWith([labelPolicy('labeler', tricky, tricky)]);
    const req = reviewByPrefix('005').request as AdmissionRequest;
    const first = engine.mutate(req);
    const patched = applyJsonPatch(req.object, first.patch);
    const second = engine.mutate({ ...req, object: patched });
    assert.equal(second.patch, undefined);
    assert.deepEqual(second.fired, []);
  });

  it('later policies see earlier patches, so the composed patch applies cleanly', () => {
    const engine = engineWith([labelPolicy('one', { 'a/1': 'x' }), labelPolicy('two', { 'b/2': 'y' })]);
    const req = reviewByPrefix('005').request as AdmissionRequest;
    const d = engine.mutate(req);
    // `two` must add a key under the map `one` created, not create the map a second time.
    assert.deepEqual(d.patch, [
      { op: 'add', path: '/metadata/labels', value: { 'a/1': 'x' } },
      { op: 'add', path: '/metadata/labels/b~12', value: 'y' },
    ]);
    const patched = applyJsonPatch(req.object, d.patch);
    assert.deepEqual(patched.metadata.labels, { 'a/1': 'x', 'b/2': 'y' });
  });

  it('drops a patch that nets to no change', () => {
    const readd: AnyPolicy = {
      name: 'readd',
      description: 're-adds the name it already has',
      match: [ANYTHING],
      mutate: (req) => [{ op: 'replace', path: '/metadata/name', value: req.object!.metadata.name }],
    };
    const d = engineWith([readd]).mutate(reviewByPrefix('005').request);
    assert.equal(d.patch, undefined);
    assert.deepEqual(d.fired, []);
  });

  it('a policy whose patch does not apply is skipped whole: later policies see the object without it', () => {
    const halfBroken: AnyPolicy = {
      name: 'half-broken',
      description: 'first operation fine, second one does not resolve',
      match: [ANYTHING],
      mutate: () => [
        { op: 'add', path: '/metadata/labels', value: { half: 'applied' } },
        { op: 'add', path: '/no/such/parent', value: 1 },
      ],
    };
    let seenLabels: unknown = 'not called';
    const observer: AnyPolicy = {
      name: 'observer',
      description: 'records what it sees',
      match: [ANYTHING],
      mutate: (req) => {
        seenLabels = req.object?.metadata?.labels;
        return [];
      },
    };
    const req = reviewByPrefix('005').request as AdmissionRequest;
    const d = engineWith([halfBroken, observer]).mutate(req);
    assert.equal(seenLabels, undefined);
    assert.equal(d.patch, undefined);
    assert.match(d.warnings[0]!, /policy half-broken could not run \(patch path \/no\/such\/parent does not resolve\)/);
    assert.equal(req.object!.metadata.labels, undefined, 'the request object itself is never modified');
  });

  it('a mutating policy that throws is skipped, the others still patch', () => {
    const broken: AnyPolicy = {
      name: 'broken',
      description: 'throws',
      match: [ANYTHING],
      mutate: () => {
        throw new Error('nope');
      },
    };
    const d = engineWith([broken, labelPolicy('ok', { k: 'v' })]).mutate(reviewByPrefix('005').request);
    assert.deepEqual(d.fired, ['broken', 'ok']);
    assert.equal(d.patch!.length, 1);
    assert.match(d.warnings[0]!, /policy broken could not run \(nope\)/);
  });
});
