// The "Expected decisions under the default policy" table of test/fixtures/README.md, for the token
// and NFS policies (fixtures 003-041 and 061-069), through a real tokenguard HTTPS server in enforce
// mode and in warn mode (where every denial becomes a warning with the same text). Patches are
// decoded from the wire, applied with fast-json-patch and compared with the exact expected object;
// sending the patched object again yields no patch. The hand-written manifests of every kind go
// through the same server.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { applyJsonPatch, markedAtRisk } from '../helpers/json-patch.js';
import { reviewByPrefix, reviewFiles } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { expectedManifests, manifest, manifestDocs, reviewFor, tokenPolicies } from './manifest-reviews.js';

type Mode = 'enforce' | 'warn';

interface Expected {
  /** [policy, message, path] of findings that deny in enforce mode. */
  denials?: [string, string, string][];
  /** Warnings in every mode. */
  warnings?: string[];
  /** /mutate: the pvc-token-risk annotation value the patch must add (with the label). */
  annotation?: string;
}

const RISK_WARNING = 'pod mounts a PVC and a projected token but lacks the tokenguard.io/pvc-token-risk label: was /mutate skipped?';
const TOKEN = 'projected.sources[0].serviceAccountToken';
const CRON = 'spec.jobTemplate.spec.template.spec.volumes[0]';
const risk = (annotation: string): Expected => ({ annotation });
const atRisk: Expected = { warnings: [RISK_WARNING] };

const TABLE: Record<string, Expected> = {
  '003': risk('claims=data;tokens=istio-token,kube-api-access-9zkc8'),
  '004': atRisk,
  '005': {},
  '006': {},
  '007': {},
  '008': {},
  '009': risk('claims=scratch-scratch;tokens=kube-api-access-q76rc'),
  '010': atRisk,
  '011': {},
  '012': { denials: [['projected-token-audience', 'token audience "api" is not allowed (volume "token-vol")', `spec.volumes[0].${TOKEN}.audience`]] },
  '013': {},
  '014': {
    denials: [['projected-token-lifetime', 'token lifetime 172800 s is above the 86400 s maximum (volume "t")', `spec.volumes[0].${TOKEN}.expirationSeconds`]],
    warnings: ['a 3607 s default-audience token really lives one year (token extension) (volume "u")'],
  },
  '015': risk('claims=data;tokens=kube-api-access-ncsc2'),
  '016': atRisk,
  '017': {},
  '018': {},
  '019': {},
  '020': risk('claims=state-kafka-0;tokens=aws,kube-api-access-zqp42'),
  '021': atRisk,
  '022': {},
  '023': {},
  '024': {},
  '025': {},
  '026': {},
  '027': {},
  '028': {},
  '029': {},
  '030': risk('claims=logs;tokens=vault-token,kube-api-access-xlvh6'),
  '031': atRisk,
  '032': {
    denials: [
      ['projected-token-lifetime', 'token lifetime 999999 s is above the 86400 s maximum (volume "t")', `${CRON}.${TOKEN}.expirationSeconds`],
      ['projected-token-audience', 'token audience "unknown-audience" is not allowed (volume "t")', `${CRON}.${TOKEN}.audience`],
    ],
  },
  '033': {},
  '034': {},
  '035': risk('claims=logs;tokens=vault-token,kube-api-access-l8nsf'),
  '036': atRisk,
  '037': { warnings: ['NFS mount options do not set timeo and retrans; with hard, I/O hangs through server or kubelet trouble'] },
  '038': { warnings: ['NFS mount is soft: I/O errors instead of hangs when the server is slow, at the risk of partial writes'] },
  '039': { warnings: ['NFS mount options do not set timeo and retrans; with hard (the default), I/O hangs through server or kubelet trouble'] },
  '040': {},
  '041': { warnings: ['inline NFS volumes cannot carry mount options; use a PersistentVolume (volume "share")'] },
  '061': {},
  '062': {},
  '063': {},
  '064': {},
  '066': risk('claims=shared;tokens=kube-api-access-24qx2'),
  '067': atRisk,
  '068': risk('claims=shared;tokens=kube-api-access-wdsl6'),
  '069': atRisk,
};

function decodePatch(response: any): unknown[] | undefined {
  if (response.patch === undefined) return undefined;
  assert.equal(response.patchType, 'JSONPatch');
  return JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8'));
}

const sorted = (list: readonly string[] | undefined) => [...(list ?? [])].sort();

/** Check a /validate response against what the table expects in `mode`. */
function checkValidate(mode: Mode, response: any, want: Expected): void {
  const denials = want.denials ?? [];
  const warnings = want.warnings ?? [];
  if (mode === 'enforce' && denials.length > 0) {
    assert.equal(response.allowed, false);
    assert.equal(response.status.code, 403);
    assert.equal(response.status.reason, 'Forbidden');
    for (const [policy, message, path] of denials) {
      assert.ok(response.status.message.includes(`[${policy}] ${message} (at ${path})`), response.status.message);
    }
    assert.deepEqual(sorted(response.warnings), sorted(warnings));
  } else {
    assert.equal(response.allowed, true, response.status?.message);
    assert.deepEqual(sorted(response.warnings), sorted([...denials.map(([, message]) => message), ...warnings]));
  }
}

const servers = {} as Record<Mode, TestServer>;

before(async () => {
  const policies = tokenPolicies();
  servers.enforce = await startTestServer({ config: { mode: 'enforce' }, policies });
  servers.warn = await startTestServer({ config: { mode: 'warn' }, policies });
});

after(async () => {
  await Promise.all([servers.enforce?.shutdown(), servers.warn?.shutdown()]);
});

describe('captured reviews: the README table, for the token and NFS policies', () => {
  it('covers every fixture from 003 to 041 and from 061 to 069', () => {
    const inRange = reviewFiles()
      .map((f) => f.slice(0, 3))
      .filter((p) => (p >= '003' && p <= '041') || (p >= '061' && p <= '069'));
    assert.deepEqual(Object.keys(TABLE).sort(), inRange);
  });

  for (const mode of ['enforce', 'warn'] as const) {
    describe(`${mode} mode`, () => {
      for (const [prefix, want] of Object.entries(TABLE)) {
        const file = reviewFiles().find((f) => f.startsWith(prefix + '-'))!;
        const route = file.includes('-mutate-') ? '/mutate' : '/validate';
        it(`${file.replace(/\.json$/, '')}`, async () => {
          const review = reviewByPrefix(prefix);
          const res = await servers[mode].post(route, review);
          assert.equal(res.status, 200);
          const response = res.json.response;
          assert.equal(response.uid, review.request.uid);
          if (route === '/validate') {
            checkValidate(mode, response, want);
            assert.equal(response.patch, undefined);
            return;
          }
          assert.equal(response.allowed, true);
          assert.equal(response.warnings, undefined);
          const ops = decodePatch(response);
          if (!want.annotation) {
            assert.equal(ops, undefined, 'no patch expected');
            return;
          }
          assert.ok(ops, 'a patch was expected');
          const patched = applyJsonPatch(review.request.object, ops);
          assert.deepEqual(patched, markedAtRisk(review.request.object, want.annotation));
          // reinvocationPolicy IfNeeded: the API server may call us again with our own result.
          const again = structuredClone(review);
          again.request.object = patched;
          const second = await servers[mode].post('/mutate', again);
          assert.equal(second.json.response.allowed, true);
          assert.equal(second.json.response.patch, undefined);
        });
      }

      it('a risk pod that went through /mutate passes /validate without the re-check warning', async () => {
        for (const [mutatePrefix, validatePrefix] of [['003', '004'], ['030', '031'], ['066', '067']] as const) {
          const mutated = await servers[mode].post('/mutate', reviewByPrefix(mutatePrefix));
          const review = reviewByPrefix(validatePrefix);
          review.request.object = applyJsonPatch(review.request.object, decodePatch(mutated.json.response)!);
          const res = await servers[mode].post('/validate', review);
          assert.equal(res.json.response.allowed, true);
          assert.equal(res.json.response.warnings, undefined, `${validatePrefix}: ${res.json.response.warnings}`);
        }
      });
    });
  }
});

describe('manifest fixtures of every kind, through the server', () => {
  const expected = expectedManifests();
  for (const mode of ['enforce', 'warn'] as const) {
    describe(`${mode} mode`, () => {
      for (const [file, { kind, podSpecPath }] of Object.entries(expected.podSpecs)) {
        const want: Expected = {
          denials: expected.podSpecFindings
            .filter((f) => f.severity === 'deny')
            .map((f) => [f.policy, f.message, `${podSpecPath}.${f.path}`]),
          warnings: expected.podSpecFindings.filter((f) => f.severity === 'warn').map((f) => f.message),
        };
        // A Pod that skipped /mutate also gets the pvc-token-risk re-check (it has a PVC and tokens).
        if (kind === 'Pod') want.warnings!.push(RISK_WARNING);
        it(`${kind} CREATE (${file})`, async () => {
          const res = await servers[mode].post('/validate', reviewFor(manifest(file)));
          checkValidate(mode, res.json.response, want);
        });
        if (kind !== 'Pod') {
          it(`${kind} UPDATE (${file})`, async () => {
            const object = manifest(file);
            const old = structuredClone(object);
            object.metadata.annotations = { 'example.com/owner': 'payments' };
            const res = await servers[mode].post('/validate', reviewFor(object, 'UPDATE', old));
            checkValidate(mode, res.json.response, want);
          });
        }
      }

      it('Pod CREATE (pod.yaml) through /mutate: label and annotation, then nothing more', async () => {
        const object = manifest('pod.yaml');
        const res = await servers[mode].post('/mutate', reviewFor(object));
        const patched = applyJsonPatch(object, decodePatch(res.json.response)!);
        assert.deepEqual(patched, markedAtRisk(object, expected.podRiskAnnotation));
        const again = await servers[mode].post('/mutate', reviewFor(patched));
        assert.equal(again.json.response.patch, undefined);
      });

      for (const object of manifestDocs('storage.yaml')) {
        const key = `${object.kind}/${object.metadata.name}`;
        it(`${key}: warnings only`, async () => {
          const res = await servers[mode].post('/validate', reviewFor(object));
          checkValidate(mode, res.json.response, { warnings: expected.storage[key]!.map((f) => f.message) });
        });
      }
    });
  }
});
