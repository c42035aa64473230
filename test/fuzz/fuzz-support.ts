// Shared ground for the property-based (fast-check) tests: the seed and run counts, the recorded
// reviews they mutate, and generators of Kubernetes-shaped objects of every kind a policy handles.
//
// `npm test` runs a fixed seed and a bounded number of cases (a few thousand over all the files),
// so CI is repeatable and fast. A long session with a new seed (docs/development.md):
//   FUZZ_SEED=$RANDOM FUZZ_RUNS=20 node --test dist/test/fuzz/
// FUZZ_RUNS multiplies every property's run count; a failure prints its seed, path and
// counterexample, which then becomes a fixed regression case in the normal tests.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { POD_SPEC_TOKENS } from '../../src/k8s/pod-spec.js';
import { FIXTURES } from '../helpers/fixtures.js';

const DEFAULT_SEED = 28;

function envNumber(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer, got ${JSON.stringify(raw)}`);
  return n;
}

/** fast-check parameters for a property run `runs` times in CI (times FUZZ_RUNS in a long session). */
export function fuzzParams(runs: number): fc.Parameters<unknown> {
  return { seed: envNumber('FUZZ_SEED') ?? DEFAULT_SEED, numRuns: runs * (envNumber('FUZZ_RUNS') ?? 1), endOnFailure: true };
}

/** Every recorded AdmissionReview (both capture sets), parsed, with its file name. */
export const RECORDED: readonly { file: string; review: any }[] = ['admission-reviews', 'admission-reviews-v1.36'].flatMap((dir) =>
  readdirSync(join(FIXTURES, dir))
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({ file: `${dir}/${f}`, review: JSON.parse(readFileSync(join(FIXTURES, dir, f), 'utf8')) })),
);

/** The recorded reviews as bytes, as the API server sent them. */
export const RECORDED_BYTES: readonly Buffer[] = RECORDED.map((r) => Buffer.from(JSON.stringify(r.review)));

const LONE_SURROGATES = ['\ud800', '\udfff', 'a\ud83d', '\ude00b'];

/** Strings that break naive code: empty, NUL, control characters, lone surrogates, RTL, very long. */
export const nastyString: fc.Arbitrary<string> = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom('', '\u0000', 'a\u0000b', '\n\r\t', '\u202e', '__proto__', 'constructor', '-', '/', '~1', ...LONE_SURROGATES),
  fc.nat({ max: 70_000 }).map((n) => 'x'.repeat(n)),
  fc.tuple(fc.nat({ max: 300 }), fc.constantFrom(' ', '-', '/', '\u0000', '\ud800')).map(([n, c]) => `w${c}`.repeat(n)),
);

/** A JSON value nested `depth` levels deep in arrays or objects. */
export function deeplyNested(depth: number, inArrays: boolean): unknown {
  let v: unknown = 'leaf';
  for (let i = 0; i < depth; i++) v = inArrays ? [v] : { a: v };
  return v;
}

/** Any JSON value, including the nasty strings (deep nesting: see Mutation `deep`). */
export const anyJson: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 2, arbitrary: nastyString },
  { weight: 1, arbitrary: fc.constantFrom(null, true, 0, -1, 1e308, -0, 3.5, 2 ** 53 + 2, '600', []) },
);

// ---- structural mutations of a JSON document -------------------------------------------------

/** Every path (as keys) in a JSON value down to depth 40 (an earlier mutation may have nested deeper), the root first. */
export function pathsOf(value: unknown): (string | number)[][] {
  const out: (string | number)[][] = [];
  const todo: [unknown, (string | number)[]][] = [[value, []]];
  while (todo.length) {
    const [v, path] = todo.shift()!;
    out.push(path);
    if (path.length >= 40 || v === null || typeof v !== 'object') continue;
    for (const [k, child] of Object.entries(v)) todo.push([child, [...path, Array.isArray(v) ? Number(k) : k]]);
  }
  return out;
}

export type Mutation =
  | { kind: 'null' | 'delete' | 'empty-array' | 'empty-object' | 'stringify' }
  | { kind: 'set'; value: unknown }
  /** Built when applied: fast-check's reporting recurses into what it generates. */
  | { kind: 'deep'; depth: number; arrays: boolean };

export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.constantFrom<Mutation>({ kind: 'null' }, { kind: 'delete' }, { kind: 'empty-array' }, { kind: 'empty-object' }, { kind: 'stringify' }),
  anyJson.map((value): Mutation => ({ kind: 'set', value })),
  fc.record({ kind: fc.constant('deep' as const), depth: fc.integer({ min: 50, max: 3000 }), arrays: fc.boolean() }),
);

/** Apply `m` to `doc`, in place, at its `pick`-th path (modulo the number of paths; never the root). */
function mutateInPlace(doc: unknown, pick: number, m: Mutation): void {
  const paths = pathsOf(doc).slice(1);
  if (paths.length === 0) return;
  const path = paths[pick % paths.length]!;
  let parent: any = doc;
  for (const k of path.slice(0, -1)) parent = parent[k];
  const key = path[path.length - 1]!;
  switch (m.kind) {
    case 'null': parent[key] = null; break;
    case 'delete': if (Array.isArray(parent)) parent.splice(key as number, 1); else delete parent[key]; break;
    case 'empty-array': parent[key] = []; break;
    case 'empty-object': parent[key] = {}; break;
    case 'stringify': parent[key] = JSON.stringify(parent[key]) ?? 'undefined'; break;
    case 'set': parent[key] = structuredClone(m.value); break;
    case 'deep': parent[key] = deeplyNested(m.depth, m.arrays); break;
  }
}

/** A few mutations of one document. */
export const mutations = fc.array(fc.tuple(fc.nat(), mutation), { minLength: 1, maxLength: 4 });

/**
 * A copy of `doc` with the mutations applied; deep nesting last, so no later step has to copy or
 * walk it (this process's stack, like any JSON implementation's, has a depth it cannot recurse past).
 */
export function mutateAll(doc: unknown, ms: [number, Mutation][]): unknown {
  const copy = structuredClone(doc);
  const ordered = [...ms.filter(([, m]) => m.kind !== 'deep'), ...ms.filter(([, m]) => m.kind === 'deep')];
  for (const [pick, m] of ordered) mutateInPlace(copy, pick, m);
  return copy;
}

// ---- byte mutations of a serialised review ---------------------------------------------------

export type ByteMutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array };

export const byteMutation: fc.Arbitrary<ByteMutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.nat(),
    bytes: fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 8 }), fc.constantFrom(...['\\u0000', '\\ud800', '\u0000', '"', '{', ']', ',,', '\xff\xfe'].map((s) => new Uint8Array(Buffer.from(s, 'latin1'))))),
  }),
);

export function mutateBytes(bytes: Buffer, ms: ByteMutation[]): Buffer {
  let b = Buffer.from(bytes);
  for (const m of ms) {
    if (b.length === 0) break;
    const at = m.at % b.length;
    if (m.kind === 'flip') b[at] = b[at]! ^ (1 << m.bit);
    else if (m.kind === 'truncate') b = b.subarray(0, at);
    else b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
  }
  return b;
}

// ---- objects of each kind a policy handles ---------------------------------------------------

const name = fc.oneof(
  { weight: 5, arbitrary: fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?$/) },
  { weight: 1, arbitrary: fc.constant('n'.repeat(253)) },
  { weight: 1, arbitrary: nastyString },
);
/** Usually the expected type, sometimes anything at all. */
const usually = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<unknown> => fc.oneof({ weight: 6, arbitrary: a }, { weight: 1, arbitrary: anyJson });

const tokenSource = fc.record(
  {
    serviceAccountToken: usually(
      fc.record(
        {
          audience: usually(fc.oneof(name, fc.constantFrom('vault', 'https://kubernetes.default.svc', 'api', ''))),
          expirationSeconds: usually(fc.oneof(fc.integer({ min: -10, max: 2 ** 32 }), fc.constantFrom(600, 3600, 3607, 86400, 1e30, 0.5))),
          path: usually(name),
        },
        { requiredKeys: [] },
      ),
    ),
  },
  { requiredKeys: [] },
);
const otherSource = fc.oneof(
  fc.record({ configMap: fc.record({ name }) }),
  fc.record({ downwardAPI: fc.record({ items: fc.array(fc.record({ path: name })) }) }),
);

const volume = fc.record(
  {
    name: usually(name),
    projected: usually(fc.record({ sources: usually(fc.array(usually(fc.oneof(tokenSource, otherSource)), { maxLength: 4 })) }, { requiredKeys: [] })),
    persistentVolumeClaim: usually(fc.record({ claimName: usually(name), readOnly: fc.boolean() }, { requiredKeys: [] })),
    ephemeral: usually(fc.record({ volumeClaimTemplate: usually(fc.record({ spec: fc.object({ maxDepth: 1 }) })) })),
    nfs: usually(fc.record({ server: usually(name), path: usually(fc.constantFrom('/', '/export', '')), readOnly: fc.boolean() }, { requiredKeys: [] })),
  },
  { requiredKeys: [] },
);

const mountOptions = usually(fc.array(usually(fc.oneof(fc.constantFrom('nfsvers=4.1', 'hard', 'soft', 'timeo=600', 'nolock', 'vers=3'), nastyString)), { maxLength: 5 }));

const container = fc.record(
  {
    name: usually(name),
    image: fc.constant('busybox'),
    volumeMounts: usually(fc.array(fc.record({ name: usually(name), mountPath: usually(name) }, { requiredKeys: [] }), { maxLength: 3 })),
    command: usually(fc.array(nastyString, { maxLength: 3 })),
  },
  { requiredKeys: [] },
);

export const podSpec: fc.Arbitrary<unknown> = usually(
  fc.record(
    {
      volumes: usually(fc.array(usually(volume), { maxLength: 5 })),
      containers: usually(fc.array(container, { maxLength: 2 })),
      initContainers: usually(fc.array(container, { maxLength: 1 })),
      automountServiceAccountToken: usually(fc.boolean()),
      serviceAccountName: usually(name),
      nodeName: usually(name),
    },
    { requiredKeys: [] },
  ),
);

export const metadata = usually(
  fc.record(
    {
      name: usually(name),
      generateName: usually(name),
      namespace: usually(name),
      uid: fc.uuid(),
      labels: usually(fc.dictionary(name, usually(name), { maxKeys: 3 })),
      annotations: usually(
        fc.dictionary(
          fc.oneof(name, fc.constantFrom('tokenguard.io/allow-delete', 'tokenguard.io/pvc-token-risk', 'kubernetes.io/config.mirror')),
          usually(fc.oneof(fc.constantFrom('true', 'false', 'TRUE', ''), nastyString)),
          { maxKeys: 3 },
        ),
      ),
      ownerReferences: usually(fc.array(fc.record({ kind: usually(fc.constantFrom('Pod', 'ReplicaSet', 'StatefulSet')), name: usually(name), uid: fc.uuid() }, { requiredKeys: [] }), { maxLength: 2 })),
      deletionTimestamp: fc.oneof(fc.constant(undefined), fc.constant('2026-01-01T00:00:00Z'), anyJson),
    },
    { requiredKeys: [] },
  ),
);

/** An object of a kind with a pod spec: the spec where that kind keeps it (POD_SPEC_TOKENS). */
export function workloadOf(kind: string): fc.Arbitrary<unknown> {
  const tokens = POD_SPEC_TOKENS[kind]!;
  return fc.tuple(metadata, podSpec, anyJson).map(([meta, spec, extra]) => {
    let inner: any = spec;
    for (let i = tokens.length - 1; i >= 1; i--) inner = { [tokens[i]!]: inner, ...(i === 1 && kind !== 'Pod' ? { extra } : {}) };
    return { apiVersion: kind === 'Pod' ? 'v1' : 'x', kind, metadata: meta, [tokens[0]!]: inner };
  });
}

/** A kube-apiserver flag list with issuers, as a mirror pod, kubeadm-config or a KubeadmControlPlane carries it. */
const apiserverArgs = fc.array(
  fc.oneof(
    fc.constantFrom('kube-apiserver', '--service-account-issuer=https://kubernetes.default.svc', '--service-account-issuer=https://old.example', '--api-audiences=x'),
    name.map((n) => `--service-account-issuer=${n}`),
    nastyString,
  ),
  { maxLength: 6 },
);

export const persistentVolume = fc.tuple(metadata, mountOptions, fc.option(fc.record({ server: usually(name), path: usually(name) }))).map(([meta, opts, nfs]) => ({
  apiVersion: 'v1',
  kind: 'PersistentVolume',
  metadata: meta,
  spec: { mountOptions: opts, ...(nfs ? { nfs } : {}) },
}));

export const storageClass = fc.tuple(metadata, mountOptions, usually(fc.constantFrom('nfs.csi.k8s.io', 'kubernetes.io/nfs', 'ebs.csi.aws.com'))).map(([meta, opts, provisioner]) => ({
  apiVersion: 'storage.k8s.io/v1',
  kind: 'StorageClass',
  metadata: meta,
  provisioner,
  mountOptions: opts,
}));

export const persistentVolumeClaim = metadata.map((meta) => ({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: meta, spec: {} }));

export const mirrorPod = fc.tuple(metadata, apiserverArgs, name).map(([meta, argv, node]) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { ...(typeof meta === 'object' && meta ? meta : {}), name: `kube-apiserver-${node}`, namespace: 'kube-system', labels: { component: 'kube-apiserver' }, annotations: { 'kubernetes.io/config.mirror': 'x' } },
  spec: { nodeName: node, containers: [{ name: 'kube-apiserver', command: argv }] },
}));

export const kubeadmConfig = fc.tuple(apiserverArgs, nastyString).map(([argv, junk]) => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name: 'kubeadm-config', namespace: 'kube-system' },
  data: {
    ClusterConfiguration:
      'apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\napiServer:\n  extraArgs:\n' +
      argv.map((a, i) => `    arg${i}: ${JSON.stringify(a.replace(/^--[^=]*=/, ''))}`).join('\n') +
      `\n# ${JSON.stringify(junk)}`,
  },
}));

export const kubeadmControlPlane = fc.tuple(metadata, apiserverArgs, anyJson).map(([meta, argv, extra]) => ({
  apiVersion: 'controlplane.cluster.x-k8s.io/v1beta1',
  kind: 'KubeadmControlPlane',
  metadata: meta,
  spec: {
    kubeadmConfigSpec: {
      clusterConfiguration: { apiServer: { extraArgs: Object.fromEntries(argv.map((a, i) => [i % 2 ? 'service-account-issuer' : `x${i}`, a])), extra } },
    },
  },
}));

/** A TokenRequest as validating admission sees it (`serviceaccounts/token` CREATE): audiences, lifetime, bound object. */
export const tokenRequest = fc.tuple(metadata, fc.array(usually(fc.oneof(name, fc.constantFrom('vault', 'https://kubernetes.default.svc', ''))), { maxLength: 3 }), anyJson).map(([meta, audiences, extra]) => ({
  apiVersion: 'authentication.k8s.io/v1',
  kind: 'TokenRequest',
  metadata: meta,
  spec: {
    audiences,
    expirationSeconds: (extra as number | undefined) ?? 3600,
    boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: (meta as { name?: unknown })?.name ?? 'p', uid: 'uid-p' },
  },
}));
