// The objects the differential test (vap.ts) runs through both tokenguard's engine and the generated
// admission policies: every captured admission review's object, every manifest fixture, and a
// seeded random corpus of pod specs (projected tokens at the edges of every bound, missing fields,
// several volumes and sources, every workload kind, ServiceAccounts named, named the deprecated way
// or not at all) and NFS PersistentVolumes and StorageClasses.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readManifests } from '../../src/cli/manifests.js';
import { POD_SPEC_TOKENS } from '../../src/k8s/pod-spec.js';
import type { KubeObject } from '../../src/k8s/object.js';
import { FIXTURES } from '../helpers/fixtures.js';

export interface CorpusObject {
  /** Where it comes from, for a failure message: a fixture file, or `corpus #<n>`. */
  source: string;
  object: KubeObject;
}

/**
 * The object as a new create may carry it: without what the API server set on it (uid,
 * resourceVersion, status, ...) and without the Job controller's selector and template labels.
 */
export function creatable(object: KubeObject): KubeObject {
  const o = structuredClone(object);
  const m = o.metadata ?? {};
  for (const k of ['uid', 'resourceVersion', 'creationTimestamp', 'managedFields', 'generation', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'selfLink']) delete m[k];
  delete o.status;
  o.metadata = m;
  if (o.kind === 'Job' && o.spec) {
    delete o.spec.selector;
    for (const k of ['controller-uid', 'job-name', 'batch.kubernetes.io/controller-uid', 'batch.kubernetes.io/job-name']) delete o.spec.template?.metadata?.labels?.[k];
  }
  return o;
}

const KINDS = new Set([...Object.keys(POD_SPEC_TOKENS), 'PersistentVolume', 'StorageClass']);

/** The objects of the captured reviews (CREATE and UPDATE of the kinds the pure policies judge). */
export function fixtureObjects(): CorpusObject[] {
  const out: CorpusObject[] = [];
  for (const dir of ['admission-reviews', 'admission-reviews-v1.36']) {
    for (const file of readdirSync(join(FIXTURES, dir)).filter((f) => f.endsWith('.json')).sort()) {
      const review = JSON.parse(readFileSync(join(FIXTURES, dir, file), 'utf8'));
      const object = review.request?.object;
      if (!object || !KINDS.has(object.kind)) continue;
      out.push({ source: `${dir}/${file}`, object: creatable(object) });
    }
  }
  const manifests = readManifests([join(FIXTURES, 'manifests')], () => '');
  for (const e of manifests.entries) {
    if (KINDS.has(e.object.kind)) out.push({ source: `${e.file.slice(FIXTURES.length + 1)} document ${e.document}${e.item ? ` item ${e.item}` : ''}`, object: creatable(e.object) });
  }
  return out;
}

/** mulberry32: a small seeded generator, so the corpus is the same on every run. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const LIFETIMES: (number | undefined)[] = [undefined, 599, 600, 601, 1199, 1200, 3599, 3600, 3601, 3607, 7200, 7201, 86399, 86400, 86401, 172800, 2 ** 32, 2 ** 32 + 1];
const AUDIENCES: (string | undefined)[] = [
  undefined,
  '',
  'istio-ca',
  'vault',
  'my-project.svc.id.goog',
  'https://iam.googleapis.com/projects/42/locations/global',
  'unknown-audience',
  'special',
  'team-a',
  'team-ab',
  'api.example.com',
  'say "hi" \\ there',
  'ünïcödé-audiënce',
  'https://a-very-long-audience.example.org/with/a/path/that/goes/on/and/on/and/on',
  'x'.repeat(57) + '😀😀😀😀',
];
/** How a pod spec names its ServiceAccount: not at all (default), by name, or by the deprecated alias. */
const SERVICE_ACCOUNTS: KubeObject[] = [{}, {}, { serviceAccountName: 'deployer' }, { serviceAccountName: 'build-1' }, { serviceAccountName: 'other' }, { serviceAccount: 'deployer' }];
const PROVISIONERS = ['nfs.csi.k8s.io', 'example.com/NFS-Client', 'ebs.csi.aws.com'];
const MOUNT_OPTIONS: string[][] = [[], ['hard'], ['soft'], ['hard', 'timeo=600', 'retrans=2'], ['soft,timeo=150,retrans=3'], ['nfsvers=4.1', 'TIMEO=600'], [' hard , retrans=3 '], ['soft', 'hard'], ['hard', 'soft', 'timeo=1']];

/** `n` random objects from `seed`: pod-spec objects of every kind, and some PVs and StorageClasses. */
export function randomCorpus(seed: number, n: number): CorpusObject[] {
  const rnd = random(seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rnd() * list.length)]!;
  const kinds = Object.keys(POD_SPEC_TOKENS);
  const out: CorpusObject[] = [];
  for (let i = 0; i < n; i++) {
    const name = `c${i}`;
    let object: KubeObject;
    if (i % 10 === 9) {
      object = i % 20 === 9 ? persistentVolume(name, pick, rnd) : storageClass(name, pick);
    } else {
      object = workload(kinds[i % kinds.length]!, name, podSpec(name, pick, rnd));
    }
    out.push({ source: `corpus #${i} (seed ${seed})`, object });
  }
  return out;
}

function token(pick: <T>(l: readonly T[]) => T, path: string): KubeObject {
  const t: KubeObject = { path };
  const e = pick(LIFETIMES);
  if (e !== undefined) t.expirationSeconds = e;
  const a = pick(AUDIENCES);
  if (a !== undefined) t.audience = a;
  return t;
}

/** 1 to 4 volumes, each named after the object (unique in the corpus: see the batching in vap.ts). */
function podSpec(prefix: string, pick: <T>(l: readonly T[]) => T, rnd: () => number): KubeObject {
  const volumes: KubeObject[] = [];
  const count = 1 + Math.floor(rnd() * 4);
  for (let k = 0; k < count; k++) {
    const name = `${prefix}-v${k}`;
    const kind = pick(['token', 'token', 'token', 'tokens', 'lookalike', 'empty', 'pvc', 'nfs', 'nosources'] as const);
    if (kind === 'token') volumes.push({ name, projected: { sources: [{ serviceAccountToken: token(pick, 'token') }] } });
    else if (kind === 'tokens') {
      volumes.push({
        name,
        projected: { sources: [{ serviceAccountToken: token(pick, 'a') }, { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } }, { serviceAccountToken: token(pick, 'b') }] },
      });
    } else if (kind === 'lookalike') {
      // The injected volume's shape under a user's name: flagged like any other 3607 s token.
      volumes.push({
        name: `kube-api-access-${prefix.replace(/[^a-z0-9]/g, '')}${k}`,
        projected: { sources: [{ serviceAccountToken: { path: 'token', expirationSeconds: 3607 } }, { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } }] },
      });
    } else if (kind === 'empty') volumes.push({ name, emptyDir: {} });
    else if (kind === 'pvc') volumes.push({ name, persistentVolumeClaim: { claimName: pick(['data', 'logs', `${prefix}-claim`]) } });
    else if (kind === 'nfs') volumes.push({ name, nfs: { server: 'nfs.example', path: '/export' } });
    else volumes.push({ name, projected: {} });
  }
  return { containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.9' }], volumes, ...(rnd() < 0.2 ? { automountServiceAccountToken: false } : {}), ...pick(SERVICE_ACCOUNTS) };
}

function workload(kind: string, name: string, spec: KubeObject): KubeObject {
  const labels = { app: name };
  const meta = { name };
  const template = { metadata: { labels }, spec };
  const jobTemplate = { metadata: { labels }, spec: { ...spec, restartPolicy: 'Never' } };
  switch (kind) {
    case 'Pod':
      return { apiVersion: 'v1', kind, metadata: meta, spec };
    case 'PodTemplate':
      return { apiVersion: 'v1', kind, metadata: meta, template };
    case 'ReplicationController':
      return { apiVersion: 'v1', kind, metadata: meta, spec: { selector: labels, template } };
    case 'Deployment':
    case 'ReplicaSet':
    case 'DaemonSet':
      return { apiVersion: 'apps/v1', kind, metadata: meta, spec: { selector: { matchLabels: labels }, template } };
    case 'StatefulSet':
      return { apiVersion: 'apps/v1', kind, metadata: meta, spec: { serviceName: name, selector: { matchLabels: labels }, template } };
    case 'Job':
      return { apiVersion: 'batch/v1', kind, metadata: meta, spec: { template: jobTemplate } };
    case 'CronJob':
      return { apiVersion: 'batch/v1', kind, metadata: meta, spec: { schedule: '0 * * * *', jobTemplate: { spec: { template: jobTemplate } } } };
    default:
      throw new Error(`no corpus template for ${kind}`);
  }
}

function persistentVolume(name: string, pick: <T>(l: readonly T[]) => T, rnd: () => number): KubeObject {
  const pv: KubeObject = {
    apiVersion: 'v1',
    kind: 'PersistentVolume',
    metadata: { name },
    spec: { capacity: { storage: '1Gi' }, accessModes: ['ReadWriteMany'], mountOptions: pick(MOUNT_OPTIONS), nfs: { server: 'nfs.example', path: '/export' } },
  };
  if (rnd() < 0.4) pv.metadata.annotations = { 'volume.beta.kubernetes.io/mount-options': pick(MOUNT_OPTIONS).join(',') };
  if (rnd() < 0.2) {
    // Not NFS: nothing to say (and the API refuses mount options on hostPath).
    delete pv.spec.nfs;
    delete pv.metadata.annotations;
    pv.spec.mountOptions = [];
    pv.spec.hostPath = { path: '/tmp/x' };
  }
  if (pv.spec.mountOptions.length === 0) delete pv.spec.mountOptions;
  return pv;
}

function storageClass(name: string, pick: <T>(l: readonly T[]) => T): KubeObject {
  const mountOptions = pick(MOUNT_OPTIONS);
  return { apiVersion: 'storage.k8s.io/v1', kind: 'StorageClass', metadata: { name }, provisioner: pick(PROVISIONERS), ...(mountOptions.length ? { mountOptions } : {}) };
}
