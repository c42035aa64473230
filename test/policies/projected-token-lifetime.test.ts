// projected-token-lifetime: bounds (exactly 600 and 86400 pass), the API's own limits, a missing
// value meaning 3600, the one-year 3607 s trap, garbage values, per-namespace bounds, settings
// validation, and the same findings with exact paths for every kind that carries a pod spec.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../../src/admission/engine.js';
import { ConfigError, resolveConfig } from '../../src/config/load.js';
import { BUILTIN_POLICIES } from '../../src/policies/index.js';
import { projectedTokenLifetimePolicy, POLICY } from '../../src/policies/projected-token-lifetime.js';
import { reviewByPrefix } from '../helpers/fixtures.js';
import { expectedManifests, manifest, requestFor } from './manifest-reviews.js';
import type { KubeObject } from '../../src/k8s/object.js';

function engine(settings: Record<string, unknown> = {}) {
  const policies = [projectedTokenLifetimePolicy];
  return new Engine({ config: resolveConfig({ mode: 'enforce', policies: { [POLICY]: settings } }, 'test', policies), policies });
}

function pod(namespace: string, token: Record<string, unknown>, volumeName = 'tok'): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p', namespace },
    spec: {
      containers: [{ name: 'app', image: 'registry.invalid/app:1' }],
      volumes: [{ name: volumeName, projected: { sources: [{ serviceAccountToken: { path: 'token', ...token } }] } }],
    },
  };
}

async function findings(e: Engine, object: KubeObject) {
  const d = await e.validate(requestFor(object));
  return d.findings.map(({ severity, message, path }) => ({ severity, message, path }));
}

const PATH = 'spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds';

describe('projected-token-lifetime: bounds and values', () => {
  const e = engine();
  const table: [string, Record<string, unknown>, 'deny' | 'warn' | undefined, string?][] = [
    ['exactly 600 (the lower bound) passes', { expirationSeconds: 600 }, undefined],
    ['exactly 86400 (the upper bound) passes', { expirationSeconds: 86400 }, undefined],
    ['missing means 3600 and passes', {}, undefined],
    ['3607 with an audience is an ordinary lifetime', { expirationSeconds: 3607, audience: 'vault' }, undefined],
    ['599', { expirationSeconds: 599 }, 'deny', 'token lifetime 599 s is below 600 s: the API server rejects it (volume "tok")'],
    ['0', { expirationSeconds: 0 }, 'deny', 'token lifetime 0 s is below 600 s: the API server rejects it (volume "tok")'],
    ['-5', { expirationSeconds: -5 }, 'deny', 'token lifetime -5 s is below 600 s: the API server rejects it (volume "tok")'],
    ['86401', { expirationSeconds: 86401 }, 'deny', 'token lifetime 86401 s is above the 86400 s maximum (volume "tok")'],
    ['above 2^32', { expirationSeconds: 2 ** 32 + 1 }, 'deny', 'token lifetime 4294967297 s is above 2^32 s: the API server rejects it (volume "tok")'],
    ['3607 with the default audience', { expirationSeconds: 3607 }, 'warn', 'a 3607 s default-audience token really lives one year (token extension) (volume "tok")'],
    ['3607 with an empty audience', { expirationSeconds: 3607, audience: '' }, 'warn', 'a 3607 s default-audience token really lives one year (token extension) (volume "tok")'],
    ['a fraction', { expirationSeconds: 600.5 }, 'deny', 'expirationSeconds must be a whole number of seconds, got 600.5; the API server rejects it (volume "tok")'],
    ['a string', { expirationSeconds: '3600' }, 'deny', 'expirationSeconds must be a whole number of seconds, got "3600"; the API server rejects it (volume "tok")'],
    ['null means unset to the API server: 3600, and passes', { expirationSeconds: null }, undefined],
    ['an object', { expirationSeconds: { seconds: 1 } }, 'deny', 'expirationSeconds must be a whole number of seconds, got {"seconds":1}; the API server rejects it (volume "tok")'],
  ];
  for (const [what, token, severity, message] of table) {
    it(what, async () => {
      const got = await findings(e, pod('shop', token));
      assert.deepEqual(got, severity ? [{ severity, message, path: PATH }] : []);
    });
  }

  it('marks what the API server itself rejects with its own words (check fails those in every mode)', async () => {
    const rejection = async (token: Record<string, unknown>) => (await e.validate(requestFor(pod('shop', token)))).findings[0]?.apiRejection;
    assert.equal(await rejection({ expirationSeconds: 480 }), `${PATH}: Invalid value: 480: may not specify a duration less than 10 minutes`);
    assert.equal(await rejection({ expirationSeconds: 2 ** 32 + 1 }), `${PATH}: Invalid value: 4294967297: may not specify a duration larger than 2^32 seconds`);
    assert.equal(await rejection({ expirationSeconds: '1h' }), `${PATH}: Invalid value: "1h": the API server cannot decode it as a whole number of seconds`);
    assert.equal(await rejection({ expirationSeconds: 86401 }), undefined, 'over the configured maximum is tokenguard\'s rule, not the API server\'s');
  });

  it('never flags the injected kube-api-access volume, even when 3607 s is above a namespace maximum', async () => {
    const e2 = engine({ namespaces: [{ namespaces: ['shop'], maxSeconds: 1800 }] });
    const req = reviewByPrefix('014').request; // volumes t (172800 s), u (user-written 3607 s), kube-api-access-flr48
    const d = await e2.validate(req);
    assert.deepEqual(
      d.findings.map((f) => f.path),
      [
        'spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds',
        'spec.volumes[1].projected.sources[0].serviceAccountToken.expirationSeconds',
      ],
    );
    assert.equal(d.findings[1]!.message, 'token lifetime 3607 s is above this namespace\'s 1800 s maximum (volume "u")');
  });

  it('every message fits in one warning (256 characters, the API server\'s limit) with a 63-character volume name, the longest there is', async () => {
    for (const [, token] of table) {
      for (const f of await findings(e, pod('shop', token, 'v'.repeat(63)))) {
        assert.ok(Array.from(f.message).length <= 256, `${f.message.length}: ${f.message}`);
        assert.ok(f.message.includes('v'.repeat(63)), `the volume named whole: ${f.message}`);
      }
    }
  });
});

describe('projected-token-lifetime: per-namespace bounds', () => {
  const e = engine({
    namespaces: [
      { namespaces: ['batch-*'], maxSeconds: 1800 },
      { namespaces: ['*'], minSeconds: 900 },
      { namespaces: ['dev'], minSeconds: 600 },
    ],
  });

  it('a glob entry lowers the maximum, and a missing value (3600 s) is then too long', async () => {
    assert.deepEqual(await findings(e, pod('batch-ns', {})), [
      { severity: 'deny', message: 'no expirationSeconds means 3600 s, above this namespace\'s 1800 s maximum (volume "tok")', path: PATH },
    ]);
    assert.deepEqual(await findings(e, pod('batch-ns', { expirationSeconds: 1800 })), []);
  });

  it('a raised minimum applies where it matches, and a later entry wins', async () => {
    assert.deepEqual(await findings(e, pod('shop', { expirationSeconds: 700 })), [
      { severity: 'deny', message: 'token lifetime 700 s is below this namespace\'s 900 s minimum (volume "tok")', path: PATH },
    ]);
    assert.deepEqual(await findings(e, pod('dev', { expirationSeconds: 700 })), []);
  });

  it('bounds an entry leaves out fall through to the global ones', async () => {
    assert.deepEqual(await findings(e, pod('shop', { expirationSeconds: 86400 })), []);
    assert.equal((await findings(e, pod('shop', { expirationSeconds: 86401 })))[0]!.message, 'token lifetime 86401 s is above the 86400 s maximum (volume "tok")');
  });

  it('the global bounds can be changed', async () => {
    const narrow = engine({ minSeconds: 1200, maxSeconds: 7200 });
    assert.deepEqual(await findings(narrow, pod('shop', { expirationSeconds: 7200 })), []);
    assert.equal((await findings(narrow, pod('shop', { expirationSeconds: 900 })))[0]!.message, 'token lifetime 900 s is below the 1200 s minimum (volume "tok")');
  });
});

describe('projected-token-lifetime: settings are validated at start-up', () => {
  const cases: [string, unknown, string][] = [
    ['a minimum the API would reject', { minSeconds: 100 }, 'policies.projected-token-lifetime.minSeconds: must be >= 600'],
    ['a string maximum', { maxSeconds: '86400' }, 'policies.projected-token-lifetime.maxSeconds: must be integer'],
    ['an unknown key in a namespace entry', { namespaces: [{ namespaces: ['a'], maxSecs: 5 }] }, 'policies.projected-token-lifetime.namespaces[0].maxSecs: unknown key'],
    ['a namespace entry without namespaces', { namespaces: [{ maxSeconds: 900 }] }, 'policies.projected-token-lifetime.namespaces[0].namespaces: required'],
  ];
  for (const [what, settings, problem] of cases) {
    it(what, () => {
      assert.throws(
        () => resolveConfig({ policies: { [POLICY]: settings } }, 'tokenguard.yaml', BUILTIN_POLICIES),
        (err: unknown) => err instanceof ConfigError && err.problems.includes(problem),
      );
    });
  }
});

describe('projected-token-lifetime: every kind with a pod spec, exact paths', () => {
  const expected = expectedManifests();
  const e = engine();
  for (const [file, { kind, podSpecPath }] of Object.entries(expected.podSpecs)) {
    const want = expected.podSpecFindings
      .filter((f) => f.policy === POLICY)
      .map((f) => ({ severity: f.severity, message: f.message, path: `${podSpecPath}.${f.path}` }));
    it(`${kind} CREATE (${file})`, async () => {
      const object = manifest(file);
      assert.equal(object.kind, kind);
      assert.deepEqual(await findings(e, object), want);
    });
    if (kind === 'Pod') {
      it('Pod UPDATE is not checked (a pod spec cannot change its volumes)', () => {
        const object = manifest(file);
        assert.deepEqual(e.matchingPolicies(requestFor(object, 'UPDATE', manifest(file)), 'validate'), []);
      });
    } else {
      it(`${kind} UPDATE`, async () => {
        const object = manifest(file);
        const old = structuredClone(object);
        object.metadata.labels = { team: 'payments' };
        const d = await e.validate(requestFor(object, 'UPDATE', old));
        assert.deepEqual(d.findings.map(({ severity, message, path }) => ({ severity, message, path })), want);
      });
    }
  }
});
