// nfs-mount-options: PersistentVolumes (spec.mountOptions and the older annotation, which wins),
// StorageClasses of NFS provisioners, inline pod NFS volumes; warn only, also in enforce mode.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../../src/admission/engine.js';
import { resolveConfig } from '../../src/config/load.js';
import { nfsMountOptionsPolicy, parseNfsMountOptions, POLICY } from '../../src/policies/nfs-mount-options.js';
import { reviewByPrefix } from '../helpers/fixtures.js';
import { expectedManifests, manifest, manifestDocs, requestFor } from './manifest-reviews.js';

function engine(settings: Record<string, unknown> = {}) {
  const policies = [nfsMountOptionsPolicy];
  return new Engine({ config: resolveConfig({ mode: 'enforce', policies: { [POLICY]: settings } }, 'test', policies), policies });
}

const HARD_DEFAULT = 'NFS mount options do not set timeo and retrans; with hard (the default), I/O hangs through server or kubelet trouble';
const SOFT = 'NFS mount is soft: I/O errors instead of hangs when the server is slow, at the risk of partial writes';

describe('nfs-mount-options: reading mount options', () => {
  const table: [string, unknown[], ReturnType<typeof parseNfsMountOptions>][] = [
    ['nothing', [], { timeo: false, retrans: false, soft: false, explicitHard: false }],
    ['separate entries', ['hard', 'timeo=600', 'retrans=2'], { timeo: true, retrans: true, soft: false, explicitHard: true }],
    ['one comma-separated entry', ['soft,timeo=150,retrans=3'], { timeo: true, retrans: true, soft: true, explicitHard: false }],
    ['the last of hard/soft wins', ['soft', 'hard'], { timeo: false, retrans: false, soft: false, explicitHard: true }],
    ['case and spaces', [' SOFT , Timeo=10'], { timeo: true, retrans: false, soft: true, explicitHard: false }],
    ['non-strings are ignored', [42, null, { timeo: 1 }, 'retrans=2'], { timeo: false, retrans: true, soft: false, explicitHard: false }],
    ['look-alikes are not the option', ['timeout=5', 'retransmit=2', 'softer'], { timeo: false, retrans: false, soft: false, explicitHard: false }],
  ];
  for (const [what, entries, want] of table) it(what, () => assert.deepEqual(parseNfsMountOptions(entries), want));
});

describe('nfs-mount-options: PersistentVolumes and StorageClasses (storage.yaml)', () => {
  const expected = expectedManifests().storage;
  const e = engine();
  for (const object of manifestDocs('storage.yaml')) {
    const key = `${object.kind}/${object.metadata.name}`;
    it(key, async () => {
      assert.ok(key in expected, `expected.yaml has no entry for ${key}`);
      const d = await e.validate(requestFor(object));
      assert.equal(d.allowed, true, 'warn only, also in enforce mode');
      assert.deepEqual(
        d.findings.map(({ policy, severity, message, path }) => ({ policy, severity, message, path })),
        expected[key]!.map((f) => ({ policy: POLICY, severity: 'warn', ...f })),
      );
      for (const f of d.findings) assert.ok(f.message.length <= 120, f.message);
    });
  }

  it('says so when the annotation overrides spec.mountOptions', async () => {
    const annotated = manifestDocs('storage.yaml').find((o) => o.metadata.name === 'nfs-annotated')!;
    annotated.metadata.annotations['volume.beta.kubernetes.io/mount-options'] = 'hard';
    const d = await e.validate(requestFor(annotated));
    assert.match(d.findings[0]!.detail!, /uses the volume\.beta\.kubernetes\.io\/mount-options annotation and ignores spec\.mountOptions/);
  });

  it('a PersistentVolume UPDATE is checked too', async () => {
    const pv = manifestDocs('storage.yaml')[0]!;
    const d = await e.validate(requestFor(pv, 'UPDATE', structuredClone(pv)));
    assert.deepEqual(d.warnings, [HARD_DEFAULT]);
  });

  it('more provisioners can be declared NFS (EFS mounts over NFS too)', async () => {
    const efs = { apiVersion: 'storage.k8s.io/v1', kind: 'StorageClass', metadata: { name: 'efs' }, provisioner: 'efs.csi.aws.com' };
    assert.deepEqual((await e.validate(requestFor(efs))).warnings, []);
    const withEfs = engine({ provisioners: ['*nfs*', 'EFS.csi.aws.com'] });
    assert.deepEqual((await withEfs.validate(requestFor(efs))).warnings, [HARD_DEFAULT]);
  });
});

describe('nfs-mount-options: captured reviews', () => {
  const e = engine();
  const cases: [string, string[], string][] = [
    ['037', ['NFS mount options do not set timeo and retrans; with hard, I/O hangs through server or kubelet trouble'], 'spec.mountOptions'],
    ['038', [SOFT], 'spec.mountOptions'],
    ['039', [HARD_DEFAULT], 'mountOptions'],
    ['041', ['inline NFS volumes cannot carry mount options; use a PersistentVolume (volume "share")'], 'spec.volumes[0].nfs'],
  ];
  for (const [prefix, warnings, path] of cases) {
    it(prefix, async () => {
      const d = await e.validate(reviewByPrefix(prefix).request);
      assert.equal(d.allowed, true);
      assert.deepEqual(d.warnings, warnings);
      assert.ok(d.findings.every((f) => f.path === path));
      assert.ok(d.findings.every((f) => f.fix && f.detail));
    });
  }
});

describe('nfs-mount-options: paths index the volumes as written', () => {
  it('a malformed (null) volume before the NFS one does not shift the index', async () => {
    const review = reviewByPrefix('041');
    review.request.object.spec.volumes.unshift(null);
    const d = await engine().validate(review.request);
    assert.deepEqual(d.findings.map((f) => f.path), ['spec.volumes[1].nfs']);
  });
});

describe('nfs-mount-options: inline volumes in every kind with a pod spec', () => {
  const expected = expectedManifests();
  const e = engine();
  for (const [file, { kind, podSpecPath }] of Object.entries(expected.podSpecs)) {
    it(`${kind} (${file})`, async () => {
      const d = await e.validate(requestFor(manifest(file)));
      assert.equal(d.allowed, true);
      assert.deepEqual(
        d.findings.map(({ severity, message, path }) => ({ severity, message, path })),
        expected.podSpecFindings
          .filter((f) => f.policy === POLICY)
          .map((f) => ({ severity: f.severity, message: f.message, path: `${podSpecPath}.${f.path}` })),
      );
    });
  }
});
