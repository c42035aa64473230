// The generated admission policies (`tokenguard generate vap`) on a real kube-apiserver with no
// tokenguard running: what kubectl prints for the issue's cases, and the differential test that
// runs every fixture and a seeded corpus through both tokenguard's engine (as `tokenguard check`
// does) and the API server's CEL, object by object, and fails naming any object they disagree on.
//
// How the API server is read: server-side dry-run creates through kubectl, many objects per call
// (a List). kubectl prints each `Warning:` as its response arrives and each object's line after
// it, but it prints each distinct warning text once per run and collects errors at the end, so:
// - every object is followed by a marker ConfigMap, and stdout and stderr share one pipe: the
//   warnings between marker i-1 and marker i are object i's;
// - objects that could give the same warning text (the same volume names, or two NFS volumes)
//   never share a call;
// - denials are told apart by object name (each is unique in its call).
// Phase 1, before any policy exists, creates every object once to get it as the API server
// defaults it (expirationSeconds 3600 when left out, the injected kube-api-access volume, `sources:
// null`): that is what the webhook sees and what the engine is given. Objects API validation
// refuses (a token under 600 s or over 2^32 s) never reach admission: for those the test asserts
// that the API server refuses them in every namespace and that tokenguard's engine flags them
// with a deny finding (both refuse; the texts differ by design).

import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { denialText, Engine } from '../../src/admission/engine.js';
import { applyPatchCopyOnWrite } from '../../src/admission/patch.js';
import type { AdmissionRequest } from '../../src/admission/review.js';
import type { ClusterView } from '../../src/admission/policy.js';
import { evaluateCreate, syntheticCreate } from '../../src/cli/evaluate.js';
import { resolveConfig } from '../../src/config/load.js';
import type { KubeObject } from '../../src/k8s/object.js';
import { podSpecOf, volumesOf } from '../../src/k8s/pod-spec.js';
import { BUILTIN_POLICIES } from '../../src/policies/index.js';
import { nfsMountOptionsPolicy } from '../../src/policies/nfs-mount-options.js';
import { projectedTokenAudiencePolicy } from '../../src/policies/projected-token-audience.js';
import { projectedTokenLifetimePolicy } from '../../src/policies/projected-token-lifetime.js';
import { pvcTokenRiskPolicy, RISK_ANNOTATION, RISK_LABEL } from '../../src/policies/pvc-token-risk.js';
import type { Assets } from './harness/assets.js';
import { ControlPlane } from './harness/control-plane.js';
import { ensureNamespace } from './harness/environment.js';
import { eventually } from './harness/eventually.js';
import { kubectlFor, ok, warnings, type Kubectl } from './harness/kubectl.js';
import { tokenPod } from './harness/objects.js';
import { creatable, fixtureObjects, randomCorpus, type CorpusObject } from './vap-corpus.js';
import { tokenguardCli, yaml } from './harness/cli.js';

/** The configuration both sides run with: every kind of setting the generator translates. */
export const DIFF_CONFIG = {
  mode: 'warn',
  namespaceOverrides: [
    { namespaces: ['vap-enf*'], mode: 'enforce' },
    { namespaces: ['vap-mixed'], mode: 'enforce', policies: { 'projected-token-audience': 'warn' } },
  ],
  exemptions: { namespaces: ['vap-exempt-*'] },
  policies: {
    'projected-token-lifetime': {
      namespaces: [
        { namespaces: ['vap-tight'], minSeconds: 1200, maxSeconds: 7200 },
        { namespaces: ['vap-t?ght'], maxSeconds: 3600 },
        // Per ServiceAccount (the corpus's pods name these, the deprecated way too, or none: default).
        { namespaces: ['vap-tight', 'vap-enforce'], serviceAccounts: ['deployer'], maxSeconds: 172800 },
        { namespaces: ['vap-*'], serviceAccounts: ['build-?'], minSeconds: 3600 },
      ],
    },
    'projected-token-audience': {
      additionalAllowed: ['*.example.com'],
      namespaces: [
        { namespaces: ['vap-aud-*'], allowed: ['special', 'team-?'] },
        { namespaces: ['vap-aud-*', 'vap-enforce'], serviceAccounts: ['deployer'], allowed: ['unknown-audience'] },
        { namespaces: ['vap-mixed', 'vap-warn'], serviceAccounts: ['default'], allowed: ['team-ab'] },
      ],
    },
    'nfs-mount-options': { exemptions: { namespaces: ['vap-mixed'] } },
  },
};

/** The namespaces every namespaced object is judged in, with their labels. */
const NAMESPACES: Record<string, Record<string, string>> = {
  'vap-warn': {},
  'vap-enforce': {},
  'vap-enf-labelled-warn': { 'tokenguard.io/mode': 'warn' },
  'vap-tight': { 'tokenguard.io/mode': 'enforce' },
  'vap-aud-1': { 'tokenguard.io/mode': 'enforce' },
  'vap-mixed': {},
  'vap-off': { 'tokenguard.io/mode': 'off' },
  'vap-exempt-1': { 'tokenguard.io/mode': 'enforce' },
};
/** Where phase 1 creates the objects and the markers live; judged in warn mode like any other. */
const BASE = 'vap-base';
const CORPUS_SEED = 20260422;
const CORPUS_SIZE = 160;
/** Objects per kubectl call (plus as many markers). */
const BATCH = 150;

const POLICY_PREFIX = 'tokenguard-';
const WARNING = /^Warning: Validation failed for ValidatingAdmissionPolicy '(tokenguard-[^']+)' with binding '[^']+': (.*)$/;
const DENIAL = /ValidatingAdmissionPolicy '(tokenguard-[^']+)' with binding '[^']+' denied request: (.*)$/;

/** kubectl with stderr on stdout's pipe, so warnings and object lines keep their order. */
function kubectlMerged(binary: string, kubeconfig: string): (args: string[], input: string) => Promise<string> {
  return (args, input) =>
    new Promise((resolve, reject) => {
      const child = spawn('/bin/sh', ['-c', 'exec "$0" "$@" 2>&1', binary, `--kubeconfig=${kubeconfig}`, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (c) => (out += c));
      const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
      child.on('error', reject);
      child.on('close', () => {
        clearTimeout(timer);
        resolve(out);
      });
      // kubectl may exit before reading all of its input; its output then says why, EPIPE does not.
      child.stdin.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code !== 'EPIPE') reject(err);
      });
      child.stdin.end(input);
    });
}

const list = (items: KubeObject[]) => JSON.stringify({ apiVersion: 'v1', kind: 'List', items });

/** A stand-in for tokenguard's cluster cache: what the engine reads of it here is namespace labels. */
const namespaceView = { namespaceLabels: (ns: string) => NAMESPACES[ns] ?? {} } as unknown as ClusterView;

/** What the API server said about one object of a batch. */
interface Verdict {
  created: boolean;
  warnings: { policy: string; message: string }[];
  /** The error line kubectl printed for it. */
  error?: string;
}

/** Keys of the warning texts an object can cause: two objects sharing one never share a kubectl call. */
function warningKeys(object: KubeObject): string[] {
  if (object.kind === 'PersistentVolume' || object.kind === 'StorageClass') return ['<nfs>'];
  const loc = podSpecOf(object.kind, object);
  if (!loc) return [];
  // Every warning of the pod-spec policies names its volume, a projected token's or an NFS one's.
  const speaks = (v: KubeObject) => !!v.nfs || (Array.isArray(v.projected?.sources) && v.projected.sources.some((s: KubeObject) => s?.serviceAccountToken));
  return (volumesOf(loc.spec) as KubeObject[]).filter(speaks).map((v) => `volume ${v.name}`);
}

/** Greedy first fit: each item into the first batch with room and no shared warning key. */
function batches<T>(items: T[], keys: (item: T) => string[]): T[][] {
  const out: { items: T[]; keys: Set<string> }[] = [];
  for (const item of items) {
    const k = keys(item);
    let b = out.find((x) => x.items.length < BATCH && k.every((key) => !x.keys.has(key)));
    if (!b) out.push((b = { items: [], keys: new Set() }));
    b.items.push(item);
    for (const key of k) b.keys.add(key);
  }
  return out.map((b) => b.items);
}

export function vapScenarios(assets: Assets): void {
  let cp: ControlPlane;
  let kubectl: Kubectl;
  let merged: (args: string[], input: string) => Promise<string>;
  const config = resolveConfig(DIFF_CONFIG, 'DIFF_CONFIG', BUILTIN_POLICIES);
  const pure = [projectedTokenLifetimePolicy, projectedTokenAudiencePolicy, nfsMountOptionsPolicy];
  const engine = new Engine({ config, policies: pure, cluster: namespaceView });
  // The same configuration without its ServiceAccount entries: where the two engines answer
  // differently, a ServiceAccount entry decided, so the corpus does reach them.
  const withoutAccounts = new Engine({
    config: resolveConfig(
      {
        ...DIFF_CONFIG,
        policies: Object.fromEntries(
          Object.entries(DIFF_CONFIG.policies).map(([name, p]) => [name, 'namespaces' in p ? { ...p, namespaces: p.namespaces.filter((e) => !('serviceAccounts' in e)) } : p]),
        ),
      },
      'DIFF_CONFIG without serviceAccounts',
      BUILTIN_POLICIES,
    ),
    policies: pure,
    cluster: namespaceView,
  });
  /** The policies whose findings on `request` a ServiceAccount entry changed. */
  async function accountDecided(request: AdmissionRequest, ev: Awaited<ReturnType<typeof evaluateCreate>>): Promise<string[]> {
    const other = await evaluateCreate(withoutAccounts, request);
    const said = (e: typeof ev, policy: string) => JSON.stringify(e.findings.filter((f) => f.policy === policy).map((f) => [f.severity, f.message, f.detail]));
    return [projectedTokenLifetimePolicy.name, projectedTokenAudiencePolicy.name].filter((p) => said(ev, p) !== said(other, p));
  }
  const mutating = new Engine({ config, policies: [pvcTokenRiskPolicy], cluster: namespaceView });
  /** Every object, as the API server defaults it, or as written when API validation refuses it. */
  let objects: (CorpusObject & { refused?: string })[] = [];
  let servesMutatingPolicies = false;

  before(async () => {
    cp = await ControlPlane.start(assets);
    kubectl = kubectlFor(assets.kubectl, cp.kubeconfig, 120_000);
    merged = kubectlMerged(assets.kubectl, cp.kubeconfig);
    for (const [ns, labels] of Object.entries({ ...NAMESPACES, [BASE]: {} })) await ensureNamespace(kubectl, ns, labels);
    // Every ServiceAccount the fixture pods name, so the ServiceAccount admission plugin admits them.
    const all = [...fixtureObjects(), ...randomCorpus(CORPUS_SEED, CORPUS_SIZE)];
    const named = all.flatMap((o) => ['serviceAccountName', 'serviceAccount'].map((field) => podSpecOf(o.object.kind, o.object)?.spec[field]));
    const accounts = new Set(named.filter((n): n is string => typeof n === 'string' && n !== '' && n !== 'default'));
    for (const ns of [BASE, ...Object.keys(NAMESPACES)]) for (const sa of accounts) ok(await kubectl(['create', 'serviceaccount', sa, '-n', ns]), `ServiceAccount ${sa}`);
    const discovery = ok(await kubectl(['api-resources', '--api-group=admissionregistration.k8s.io', '-o', 'wide']), 'discovery').stdout;
    servesMutatingPolicies = /^mutatingadmissionpolicies\s+admissionregistration\.k8s\.io\/v1\s/m.test(discovery);

    // Phase 1, no policy yet: every object as the API server defaults it.
    objects = await defaulted(all);

    const configFile = join(cp.dir, 'tokenguard.yaml');
    writeFileSync(configFile, stringify(DIFF_CONFIG));
    const generated = await tokenguardCli(['generate', 'vap', '--config', configFile, ...(servesMutatingPolicies ? [] : ['--no-mutating'])]);
    assert.equal(generated.code, 0, generated.stderr);
    const applied = ok(await kubectl(['apply', '-f', '-'], generated.stdout), 'apply the generated policies');
    assert.deepEqual(warnings(applied), [], 'the API server accepts every generated object without a warning');
    await untilPoliciesJudge();
  });

  after(async () => {
    await cp?.stop();
  });

  /** Phase 1: create every object once (dry run) in BASE; keep what the API server returns. */
  async function defaulted(all: CorpusObject[]): Promise<(CorpusObject & { refused?: string })[]> {
    const named = all.map((o, i) => ({ ...o, object: { ...o.object, metadata: { ...o.object.metadata, name: `tgb-${i}`, namespace: BASE, generateName: undefined } } }));
    // --validate=false: an object kubectl would refuse to send (a string expirationSeconds) is the
    // API server's to refuse, alone, not the whole call.
    const out = await merged(['create', '--dry-run=server', '--validate=false', '-o', 'jsonpath={@}{"\\n"}', '-f', '-'], list(named.map((o) => o.object)));
    const byName = new Map<string, KubeObject>();
    const refused = new Map<string, string>();
    const unnamed: string[] = [];
    for (const line of out.split('\n')) {
      if (line.startsWith('{')) {
        const o = JSON.parse(line) as KubeObject;
        byName.set(o.metadata.name, o);
      } else if (line.trim() && !line.startsWith('Warning: ') && !line.startsWith('* ')) {
        const m = /"(tgb-\d+)"/.exec(line);
        if (m) refused.set(m[1]!, line);
        else unnamed.push(line);
      }
    }
    const missing = named.filter((o) => !byName.has(o.object.metadata.name) && !refused.has(o.object.metadata.name));
    // A body the API server cannot decode is refused without a name: as many such lines as objects unaccounted for.
    assert.equal(unnamed.length, missing.length, `phase 1: ${missing.map((o) => o.source).join(', ')} unaccounted for; unnamed errors:\n${unnamed.join('\n')}`);
    return named.map((o) => {
      const name = o.object.metadata.name as string;
      const got = byName.get(name);
      if (got) return { ...o, object: creatable(got) };
      return { ...o, refused: refused.get(name) ?? `refused before admission, unnamed: ${unnamed.join(' | ')}` };
    });
  }

  /** The generated policies apply a moment after they are created: wait until each one judges a probe. */
  async function untilPoliciesJudge(): Promise<void> {
    const probe = list([
      tokenPod('vap-enforce', 'probe-lifetime', 172800),
      tokenPod('vap-enforce', 'probe-audience', 3600, 'unknown-audience'),
    ]);
    const warnProbe = list([
      tokenPod('vap-warn', 'probe-warn', 172800, 'unknown-audience'),
      { apiVersion: 'v1', kind: 'PersistentVolume', metadata: { name: 'probe-nfs' }, spec: { capacity: { storage: '1Gi' }, accessModes: ['ReadWriteMany'], nfs: { server: 's', path: '/x' } } },
    ]);
    const riskPod = { ...tokenPod('vap-warn', 'probe-risk', 3600), spec: { containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.9' }], volumes: [{ name: 'd', persistentVolumeClaim: { claimName: 'd' } }] } };
    await eventually(async () => {
      const d = await kubectl(['create', '--dry-run=server', '-o', 'name', '-f', '-'], probe);
      const w = await kubectl(['create', '--dry-run=server', '-o', 'name', '-f', '-'], warnProbe);
      const denied = ['lifetime', 'audience'].every((p) => d.stderr.includes(`'tokenguard-projected-token-${p}-enforce'`));
      const warned = ['lifetime', 'audience', 'nfs-mount-options'].every((p) => w.stderr.includes(`Policy 'tokenguard-${p.startsWith('nfs') ? p : `projected-token-${p}`}-warn'`));
      if (!servesMutatingPolicies) return denied && warned;
      const m = await kubectl(['create', '--dry-run=server', '-o', 'jsonpath={.metadata.labels}', '-f', '-'], JSON.stringify(riskPod));
      return denied && warned && m.stdout.includes(RISK_LABEL);
    }, 'every generated policy to judge its probe', 60_000);
  }

  /**
   * Phase 2: create `items` (dry run), each followed by a marker; what the API server said of each.
   * Names are `tgd-<i>`: nothing else kubectl prints quotes such a word (it does quote "v1").
   */
  async function judge(items: KubeObject[]): Promise<Verdict[]> {
    const verdicts: Verdict[] = items.map(() => ({ created: false, warnings: [] }));
    const withMarkers = items.flatMap((o, i) => [
      { ...o, metadata: { ...o.metadata, name: `tgd-${i}` } },
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `m${i}`, namespace: BASE } },
    ]);
    const out = await merged(['create', '--dry-run=server', '--validate=false', '-o', 'name', '-f', '-'], list(withMarkers));
    let pending: Verdict['warnings'] = [];
    const unnamed: string[] = [];
    for (const line of out.split('\n')) {
      const w = WARNING.exec(line);
      if (w) {
        pending.push({ policy: w[1]!, message: w[2]! });
        continue;
      }
      if (line.startsWith('Warning: ')) continue; // the API server's own (a deprecated annotation, say)
      const marker = /^configmap\/m(\d+)$/.exec(line);
      if (marker) {
        verdicts[Number(marker[1])]!.warnings = pending;
        pending = [];
        continue;
      }
      const created = /^[a-z0-9.]+\/tgd-(\d+)$/.exec(line);
      if (created) {
        verdicts[Number(created[1])]!.created = true;
        continue;
      }
      if (line.startsWith('* ')) continue; // the next cause of a multi-line error (its first line has the name)
      const named = /"tgd-(\d+)"/.exec(line);
      const verdict = named ? verdicts[Number(named[1])] : undefined;
      if (verdict) verdict.error = line;
      else if (line.trim()) unnamed.push(line); // a body the API server cannot decode: refused without a name
    }
    const placed = verdicts.filter((v) => !v.created && !v.error);
    const unplaced = () => `${placed.length} objects without a line of their own (${items.filter((_, i) => !verdicts[i]!.created && !verdicts[i]!.error).map((o) => `${o.kind}/${o.metadata?.namespace}`).join(', ')}); lines:\n${out.split('\n').filter((l) => !l.startsWith('Warning: ') && !/^configmap\/m/.test(l)).join('\n').slice(0, 3000)}`;
    assert.equal(unnamed.length, placed.length, unplaced());
    for (const v of placed) v.error = `refused before admission, unnamed: ${unnamed.join(' | ')}`;
    return verdicts;
  }

  /** One object in one namespace (or none, cluster-scoped). */
  interface Case {
    source: string;
    object: KubeObject;
    refused?: string;
    namespace?: string;
  }

  function cases(): Case[] {
    const out: Case[] = [];
    for (const o of objects) {
      const namespaced = !['PersistentVolume', 'StorageClass'].includes(o.object.kind as string);
      for (const ns of namespaced ? [BASE, ...Object.keys(NAMESPACES)] : [undefined]) {
        const object = structuredClone(o.object);
        if (ns) object.metadata.namespace = ns;
        out.push({ source: o.source, object, refused: o.refused, namespace: ns });
      }
    }
    return out;
  }

  /** The per-policy parts of the engine's denial: a generated policy shows the first one it denies for. */
  function denialSegments(findings: Awaited<ReturnType<typeof evaluateCreate>>['findings']): Map<string, string> {
    const segments = new Map<string, string[]>();
    for (const f of findings) {
      if (f.severity !== 'deny' || f.mode !== 'enforce') continue;
      segments.set(f.policy, [...(segments.get(f.policy) ?? []), denialText(f)]);
    }
    return new Map([...segments].map(([p, texts]) => [p, texts.join('; ')]));
  }

  it('the API server accepts every generated object, and `generate vap --help` explains the command', async () => {
    const help = await tokenguardCli(['generate', 'vap', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: tokenguard generate vap/);
    const names = ok(await kubectl(['get', 'validatingadmissionpolicies', '-o', 'name']), 'list').stdout.split('\n').filter(Boolean);
    assert.ok(names.length >= 5, names.join(' '));
    for (const n of names) assert.ok(n.includes(POLICY_PREFIX), n);
  });

  it('with no tokenguard running: a 2-day token is refused in enforce and warned in warn with its message; a Deployment with a disallowed audience is refused; a compliant Pod is admitted', async () => {
    const denial =
      `Error from server (Forbidden): error when creating "STDIN": pods "two-days" is forbidden: ValidatingAdmissionPolicy 'tokenguard-projected-token-lifetime-enforce' ` +
      `with binding 'tokenguard-projected-token-lifetime-enforce' denied request: [projected-token-lifetime] token lifetime 172800 s is above the 86400 s maximum (volume "t") ` +
      '(at spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds). kubelet refreshes a projected token at 80 % of its lifetime or after 24 h anyway, ' +
      'so a longer lifetime only lengthens how long a leaked token stays valid. Fix: set expirationSeconds between 600 and 86400';
    const refused = await kubectl(['apply', '-f', '-'], yaml(tokenPod('vap-enforce', 'two-days', 172800)));
    assert.equal(refused.code, 1);
    assert.equal(refused.stderr.trim(), denial);

    const warned = await kubectl(['apply', '-f', '-'], yaml(tokenPod('vap-warn', 'two-days', 172800)));
    assert.equal(warned.code, 0, warned.stderr);
    assert.equal(warned.stdout.trim(), 'pod/two-days created');
    assert.deepEqual(warnings(warned), [
      "Validation failed for ValidatingAdmissionPolicy 'tokenguard-projected-token-lifetime-warn' with binding 'tokenguard-projected-token-lifetime-warn': " +
        'token lifetime 172800 s is above the 86400 s maximum (volume "t")',
    ]);

    const pod = tokenPod('vap-enforce', 'x', 3600, 'unknown-audience');
    const deployment = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'api', namespace: 'vap-enforce' },
      spec: { selector: { matchLabels: { app: 'api' } }, template: { metadata: { labels: { app: 'api' } }, spec: pod.spec } },
    };
    const d = await kubectl(['apply', '-f', '-'], yaml(deployment));
    assert.equal(d.code, 1);
    assert.equal(
      d.stderr.trim(),
      `Error from server (Forbidden): error when creating "STDIN": deployments.apps "api" is forbidden: ValidatingAdmissionPolicy 'tokenguard-projected-token-audience-enforce' ` +
        `with binding 'tokenguard-projected-token-audience-enforce' denied request: [projected-token-audience] token audience "unknown-audience" is not allowed (volume "t") ` +
        '(at spec.template.spec.volumes[0].projected.sources[0].serviceAccountToken.audience). Allowed here: istio-ca, identity.l5d.io, sts.amazonaws.com, ' +
        "api://AzureADTokenExchange, spire-server, vault, *.svc.id.goog, https://iam.googleapis.com/projects/*, *.example.com, or no audience (the API server's own). " +
        'Fix: use the audience your token consumer validates, or allow it under policies.projected-token-audience (additionalAllowed, or namespaces for one namespace)',
    );

    const compliant = await kubectl(['apply', '-f', '-'], yaml(tokenPod('vap-enforce', 'compliant', 3600, 'vault')));
    assert.equal(compliant.code, 0, compliant.stderr);
    assert.equal(compliant.stdout.trim(), 'pod/compliant created');
    assert.deepEqual(warnings(compliant), []);
  });

  it('differential: the engine and the generated ValidatingAdmissionPolicies decide and warn alike on every fixture and corpus object', async () => {
    const started = Date.now();
    const all = cases();
    const groups = batches(all, (c) => warningKeys(c.object));
    const verdicts = new Map<Case, Verdict>();
    for (const group of groups) {
      const got = await judge(group.map((c) => c.object));
      group.forEach((c, i) => verdicts.set(c, got[i]!));
    }
    const problems: string[] = [];
    let refusedByApi = 0;
    /** Policies whose ServiceAccount entries changed the engine's answer to some case. */
    const byAccount = new Set<string>();
    for (const c of all) {
      const v = verdicts.get(c)!;
      const where = `${c.source} (${c.object.kind}${c.namespace ? ` in ${c.namespace}` : ''})`;
      const request = syntheticCreate(c.object, { uid: 'vap-differential', defaultNamespace: BASE });
      const ev = await evaluateCreate(engine, request);
      if (!c.refused) for (const p of await accountDecided(request, ev)) byAccount.add(p);
      if (c.refused) {
        refusedByApi++;
        // The API server refuses it before any admission (validation, or decoding a string where a
        // number belongs): both refuse, and the engine's deny finding says why (and that it is the
        // API server's own rejection: what makes `check` fail in every mode).
        if (v.created || !v.error || DENIAL.test(v.error)) problems.push(`${where}: refused by API validation in phase 1, but now: ${v.error ?? 'created'}`);
        const judged = engine.matchingPolicies(request, 'validate').includes(projectedTokenLifetimePolicy.name);
        if (judged && !ev.findings.some((f) => f.policy === projectedTokenLifetimePolicy.name && f.severity === 'deny' && f.apiRejection !== undefined)) {
          problems.push(`${where}: the API server refuses it (${c.refused}), but the engine has no deny finding for it`);
        }
        continue;
      }
      const denial = v.error ? DENIAL.exec(v.error) : null;
      if (v.error && !denial) {
        problems.push(`${where}: refused, not by a generated policy: ${v.error}`);
        continue;
      }
      if (!ev.allowed !== !!denial) {
        problems.push(`${where}: engine ${ev.allowed ? 'allows' : `denies (${ev.denial})`}, API server ${denial ? `denies (${denial[2]})` : 'allows'}`);
        continue;
      }
      if (denial) {
        const segments = denialSegments(ev.findings);
        const policy = denial[1]!.slice(POLICY_PREFIX.length).replace(/-enforce$/, '');
        if (segments.get(policy) !== denial[2]) {
          problems.push(`${where}: ${denial[1]} says\n    ${denial[2]}\n  the engine's ${policy} part is\n    ${segments.get(policy)}`);
        }
      }
      const vapWarnings = v.warnings.map((w) => w.message).sort();
      const engineWarnings = [...ev.warnings].sort();
      if (JSON.stringify(vapWarnings) !== JSON.stringify(engineWarnings)) {
        problems.push(`${where}: warnings differ\n  API server: ${JSON.stringify(vapWarnings)}\n  engine:     ${JSON.stringify(engineWarnings)}`);
      }
    }
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    process.stdout.write(
      `# VAP differential: ${all.length} object×namespace cases (${objects.length} objects: fixtures and ${CORPUS_SIZE} from seed ${CORPUS_SEED}; ` +
        `${refusedByApi} refused by API validation) in ${groups.length} kubectl calls, ${seconds} s\n`,
    );
    assert.deepEqual(problems, []);
    // The corpus reaches every outcome: a test that compared nothing would pass too.
    const outcomes = [...verdicts.values()];
    assert.ok(outcomes.some((v) => v.error && DENIAL.test(v.error)), 'some denials');
    assert.ok(outcomes.some((v) => v.warnings.length > 0), 'some warnings');
    assert.ok(outcomes.some((v) => v.created && v.warnings.length === 0), 'some clean admissions');
    assert.ok(refusedByApi > 0, 'some API-validation refusals');
    assert.deepEqual([...byAccount].sort(), [projectedTokenAudiencePolicy.name, projectedTokenLifetimePolicy.name], 'ServiceAccount entries decide some cases of both token policies');
  });

  it('differential: the engine and the generated MutatingAdmissionPolicy label and annotate the same pods', async (t) => {
    if (!servesMutatingPolicies) {
      t.skip(`kube-apiserver ${assets.serverVersion.gitVersion} does not serve admissionregistration.k8s.io/v1 MutatingAdmissionPolicy`);
      return;
    }
    const pods = objects.filter((o) => o.object.kind === 'Pod' && !o.refused);
    const items: { source: string; object: KubeObject; named: boolean }[] = [];
    for (const ns of ['vap-warn', 'vap-off', 'vap-exempt-1']) {
      pods.forEach((o, i) => items.push({ source: o.source, named: true, object: { ...structuredClone(o.object), metadata: { ...o.object.metadata, namespace: ns, name: `p${items.length}-${i}` } } }));
    }
    const out = await merged(['create', '--dry-run=server', '-o', 'jsonpath={.metadata.name}{"\\t"}{.metadata.labels}{"\\t"}{.metadata.annotations}{"\\n"}', '-f', '-'], list(items.map((i) => i.object)));
    const got = new Map<string, { label?: string; annotation?: string }>();
    for (const line of out.split('\n')) {
      const [name, labels, annotations] = line.split('\t');
      if (!name || labels === undefined || line.startsWith('Warning: ')) continue;
      got.set(name, { label: labels ? JSON.parse(labels)[RISK_LABEL] : undefined, annotation: annotations ? JSON.parse(annotations)[RISK_ANNOTATION] : undefined });
    }
    const problems: string[] = [];
    let labelled = 0;
    for (const item of items) {
      const name = item.object.metadata.name as string;
      const request = syntheticCreate(item.object, { uid: 'map-differential', defaultNamespace: BASE });
      const decision = mutating.mutate(request);
      const after = decision.patch ? applyPatchCopyOnWrite(item.object, decision.patch) : item.object;
      const want = { label: after.metadata?.labels?.[RISK_LABEL], annotation: after.metadata?.annotations?.[RISK_ANNOTATION] };
      const have = got.get(name);
      if (!have) problems.push(`${item.source} in ${item.object.metadata.namespace}: not created:\n${out.slice(0, 1000)}`);
      else if (JSON.stringify(have) !== JSON.stringify(want)) problems.push(`${item.source} in ${item.object.metadata.namespace}: API server ${JSON.stringify(have)}, engine ${JSON.stringify(want)}`);
      if (want.label) labelled++;
    }
    assert.deepEqual(problems, []);
    assert.ok(labelled > 0 && labelled < items.length, `${labelled} of ${items.length} pods labelled: both outcomes occur`);
  });

  it('the MutatingAdmissionPolicy names a generic ephemeral claim <pod>-<volume> for a pod with only generateName, as the webhook does', async (t) => {
    if (!servesMutatingPolicies) {
      t.skip(`kube-apiserver ${assets.serverVersion.gitVersion} does not serve admissionregistration.k8s.io/v1 MutatingAdmissionPolicy`);
      return;
    }
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { generateName: 'scratch-', namespace: 'vap-warn' },
      spec: {
        containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.9' }],
        volumes: [{ name: 'scratch', ephemeral: { volumeClaimTemplate: { spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } } } } }],
      },
    };
    const r = ok(await kubectl(['create', '--dry-run=server', '-o', 'json', '-f', '-'], JSON.stringify(pod)), 'create');
    const created = JSON.parse(r.stdout) as KubeObject;
    const injected = (created.spec.volumes as KubeObject[]).find((v) => String(v.name).startsWith('kube-api-access-'))!.name as string;
    assert.equal(created.metadata.annotations[RISK_ANNOTATION], `claims=<pod>-scratch;tokens=${injected}`);
    // The engine, on the pod as it reached admission: no name yet, no label or annotation.
    const { name: _n, labels: _l, annotations: _a, ...metadata } = created.metadata;
    const before = { ...created, metadata };
    const decision = mutating.mutate(syntheticCreate(before, { uid: 'u', defaultNamespace: BASE }));
    const after = applyPatchCopyOnWrite(before, decision.patch ?? []);
    assert.equal(after.metadata.annotations[RISK_ANNOTATION], created.metadata.annotations[RISK_ANNOTATION]);
  });

}

