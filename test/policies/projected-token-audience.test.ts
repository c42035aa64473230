// projected-token-audience: the default allow-list (exact values and globs, where `*` spans `/` in
// URLs), empty audiences, bad values, additions globally and per namespace, replacing the list,
// settings validation, and the findings with exact paths for every kind that carries a pod spec.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../../src/admission/engine.js';
import { ConfigError, resolveConfig } from '../../src/config/load.js';
import { BUILTIN_POLICIES } from '../../src/policies/index.js';
import { projectedTokenAudiencePolicy, POLICY } from '../../src/policies/projected-token-audience.js';
import { reviewByPrefix } from '../helpers/fixtures.js';
import { expectedManifests, manifest, requestFor } from './manifest-reviews.js';
import type { KubeObject } from '../../src/k8s/object.js';

function engine(settings: Record<string, unknown> = {}) {
  const policies = [projectedTokenAudiencePolicy];
  return new Engine({ config: resolveConfig({ mode: 'enforce', policies: { [POLICY]: settings } }, 'test', policies), policies });
}

function pod(namespace: string, audience: unknown): KubeObject {
  const token: Record<string, unknown> = { path: 'token', expirationSeconds: 3600 };
  if (audience !== undefined) token.audience = audience;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p', namespace },
    spec: {
      containers: [{ name: 'app', image: 'registry.invalid/app:1' }],
      volumes: [{ name: 'tok', projected: { sources: [{ serviceAccountToken: token }] } }],
    },
  };
}

async function messages(e: Engine, object: KubeObject): Promise<string[]> {
  return (await e.validate(requestFor(object))).findings.map((f) => f.message);
}

const PATH = 'spec.volumes[0].projected.sources[0].serviceAccountToken.audience';

describe('projected-token-audience: the default allow-list', () => {
  const e = engine();
  const allowed = [
    'istio-ca',
    'identity.l5d.io',
    'sts.amazonaws.com',
    'api://AzureADTokenExchange',
    'spire-server',
    'vault',
    'my-project.svc.id.goog',
    'https://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/p/providers/q',
  ];
  for (const audience of allowed) {
    it(`allows ${audience}`, async () => assert.deepEqual(await messages(e, pod('shop', audience)), []));
  }
  for (const audience of [undefined, '']) {
    it(`allows ${JSON.stringify(audience) ?? 'a missing audience'} (the API server's own audiences)`, async () =>
      assert.deepEqual(await messages(e, pod('shop', audience)), []));
  }
  const refused = [
    'api',
    'svc.id.goog', // the glob needs a project before `.svc.id.goog`
    'https://iam.googleapis.com/projectsX/1',
    'http://iam.googleapis.com/projects/1',
    'ISTIO-CA', // audiences compare exactly, case included
    'vault.evil.example.com',
    ' vault',
  ];
  for (const audience of refused) {
    it(`refuses ${JSON.stringify(audience)}`, async () => {
      const d = await e.validate(requestFor(pod('shop', audience)));
      assert.equal(d.allowed, false);
      assert.deepEqual(
        d.findings.map(({ severity, message, path }) => ({ severity, message, path })),
        [{ severity: 'deny', message: `token audience ${JSON.stringify(audience)} is not allowed (volume "tok")`, path: PATH }],
      );
      assert.match(d.denial!.message, /Allowed here: istio-ca, identity\.l5d\.io, .*https:\/\/iam\.googleapis\.com\/projects\/\*, or no audience/);
    });
  }

  it('reports a non-string audience instead of crashing', async () => {
    assert.deepEqual(await messages(e, pod('shop', 42)), ['token audience must be a string, got 42; the API server rejects it (volume "tok")']);
    assert.deepEqual(await messages(e, pod('shop', ['vault'])), ['token audience must be a string, got ["vault"]; the API server rejects it (volume "tok")']);
  });

  it('never cuts an audience: one too long for a warning is left out of it, and the denial names it', async () => {
    const audience = `https://example.com/${'x'.repeat(300)}`;
    const [message] = await messages(e, pod('shop', audience));
    assert.equal(message, 'token audience of 320 characters is not allowed (volume "tok")');
    const d = await e.validate(requestFor(pod('shop', audience)));
    assert.ok(d.denial!.message.includes(`The audience is "${audience}".`), d.denial!.message);
    const [fits] = await messages(e, pod('shop', `https://example.com/${'x'.repeat(150)}`));
    assert.equal(fits, `token audience "https://example.com/${'x'.repeat(150)}" is not allowed (volume "tok")`);
  });

  it('checks every projection, not only the first (captured 012: audience api, 600 s)', async () => {
    const d = await e.validate(reviewByPrefix('012').request);
    assert.deepEqual(d.findings.map((f) => f.path), ['spec.volumes[0].projected.sources[0].serviceAccountToken.audience']);
  });
});

describe('projected-token-audience: configured audiences', () => {
  it('additionalAllowed adds to the defaults', async () => {
    const e = engine({ additionalAllowed: ['https://vault.example.com', 'nats-*'] });
    assert.deepEqual(await messages(e, pod('shop', 'https://vault.example.com')), []);
    assert.deepEqual(await messages(e, pod('shop', 'nats-eu')), []);
    assert.deepEqual(await messages(e, pod('shop', 'istio-ca')), []);
  });

  it('allowed replaces the defaults', async () => {
    const e = engine({ allowed: ['vault'] });
    assert.deepEqual(await messages(e, pod('shop', 'vault')), []);
    assert.deepEqual(await messages(e, pod('shop', 'istio-ca')), ['token audience "istio-ca" is not allowed (volume "tok")']);
  });

  it('per-namespace additions apply only where they match, and the denial lists them there', async () => {
    const e = engine({ namespaces: [{ namespaces: ['team-*'], allowed: ['kafka.example.com'] }] });
    assert.deepEqual(await messages(e, pod('team-a', 'kafka.example.com')), []);
    const d = await e.validate(requestFor(pod('shop', 'kafka.example.com')));
    assert.equal(d.allowed, false);
    assert.doesNotMatch(d.denial!.message, /kafka\.example\.com,/);
    const inTeam = await e.validate(requestFor(pod('team-a', 'other')));
    assert.match(inTeam.denial!.message, /https:\/\/iam\.googleapis\.com\/projects\/\*, kafka\.example\.com, or no audience/);
  });

  const cases: [string, unknown, string][] = [
    ['a namespace entry without allowed', { namespaces: [{ namespaces: ['a'] }] }, 'policies.projected-token-audience.namespaces[0].allowed: required'],
    ['an empty audience pattern', { additionalAllowed: [''] }, 'policies.projected-token-audience.additionalAllowed[0]: must NOT have fewer than 1 characters'],
    ['allowed as a string', { allowed: 'vault' }, 'policies.projected-token-audience.allowed: must be array'],
  ];
  for (const [what, settings, problem] of cases) {
    it(`rejects ${what} at start-up`, () => {
      assert.throws(
        () => resolveConfig({ policies: { [POLICY]: settings } }, 'tokenguard.yaml', BUILTIN_POLICIES),
        (err: unknown) => err instanceof ConfigError && err.problems.includes(problem),
      );
    });
  }
});

describe('projected-token-audience: every kind with a pod spec, exact paths', () => {
  const expected = expectedManifests();
  const e = engine();
  for (const [file, { kind, podSpecPath }] of Object.entries(expected.podSpecs)) {
    it(`${kind} (${file})`, async () => {
      const d = await e.validate(requestFor(manifest(file)));
      assert.deepEqual(
        d.findings.map(({ severity, message, path }) => ({ severity, message, path })),
        expected.podSpecFindings
          .filter((f) => f.policy === POLICY)
          .map((f) => ({ severity: f.severity, message: f.message, path: `${podSpecPath}.${f.path}` })),
      );
    });
  }
});

describe('projected-token-audience: characters outside the Basic Multilingual Plane', () => {
  it('never cuts an audience: shown whole when the warning fits, else its length in characters', async () => {
    const e = engine({ allowed: [] });
    const fits = 'x'.repeat(58) + '😀😀😀';
    assert.deepEqual(await messages(e, pod('shop', fits)), [`token audience ${JSON.stringify(fits)} is not allowed (volume "tok")`]);
    const long = '😀'.repeat(250);
    assert.deepEqual(await messages(e, pod('shop', long)), ['token audience of 250 characters is not allowed (volume "tok")']);
  });

  it('a glob `?` is one character, as the API server and CEL count them', async () => {
    const e = engine({ allowed: ['a?b'] });
    assert.deepEqual(await messages(e, pod('shop', 'a😀b')), []);
    assert.equal((await messages(e, pod('shop', 'a😀😀b'))).length, 1);
  });
});
