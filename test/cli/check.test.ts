// `tokenguard check` on the manifests in test/fixtures/manifests/check (see its README): reading
// (multi-document YAML, JSON, Lists, directories, stdin), kubectl-style and JSON output, exit codes,
// modes, input errors with file and line, cluster-backed policies, and, most of all, the same
// verdict the real server gives for the same object.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import jsonPatch from 'fast-json-patch';
import { EXAMPLE, runCheck, VALIDATING_WEBHOOK, type CheckReport } from '../../src/cli/check.js';
import { syntheticCreate, withInjectedApiAccess } from '../../src/cli/evaluate.js';
import { parseManifests } from '../../src/cli/manifests.js';
import { BUILTIN_POLICIES } from '../../src/policies/index.js';
import { FakeApiServer, loadCapturedClusterState } from '../helpers/fake-apiserver.js';
import { FIXTURES } from '../helpers/fixtures.js';
import { startTestServer } from '../helpers/server.js';
import { makeCerts, PROJECT_ROOT } from '../helpers/tls.js';
import { tempDir } from '../helpers/temp-dir.js';

const DIR = join(FIXTURES, 'manifests', 'check');
const at = (rel: string) => join(DIR, rel);
const MAIN = join(PROJECT_ROOT, 'dist', 'src', 'cli', 'main.js');

async function check(args: string[], stdin = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCheck(args, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), readStdin: () => stdin });
  return { code, stdout, stderr };
}

async function checkJson(args: string[]): Promise<{ code: number; report: CheckReport; stderr: string }> {
  const r = await check(['-o', 'json', ...args]);
  return { code: r.code, report: JSON.parse(r.stdout), stderr: r.stderr };
}

const byName = (report: CheckReport, name: string) => {
  const o = report.objects.find((x) => x.name === name);
  assert.ok(o, `object ${name} in the report`);
  return o;
};

const needsCluster = BUILTIN_POLICIES.filter((p) => p.needsCluster).map((p) => p.name);
const mutating = BUILTIN_POLICIES.filter((p) => p.mutate).map((p) => p.name);

describe('tokenguard check', () => {
  it('reads a directory recursively: YAML documents and JSON, skipping kustomization, hidden and other files', async () => {
    const { code, report, stderr } = await checkJson(['--mode', 'enforce', at('apps')]);
    assert.equal(stderr, '');
    assert.deepEqual(
      report.objects.map((o) => [o.file.slice(DIR.length + 1), o.document, o.kind, o.name]),
      [
        ['apps/nested/nightly.json', 1, 'CronJob', 'nightly'],
        ['apps/web.yaml', 1, 'Deployment', 'api'],
        ['apps/web.yaml', 2, 'Pod', 'web-0'],
        ['apps/web.yaml', 3, 'Service', 'web'],
      ],
    );
    assert.deepEqual(report.objects.map((o) => o.line), [1, 2, 27, 51], 'line where each document starts');
    assert.equal(report.summary.files, 2);
    assert.equal(code, 1, 'the CronJob would be denied');
  });

  it('in enforce mode prints the denial as kubectl does, with file and document, and exits 1', async () => {
    const { code, stdout } = await check(['--mode', 'enforce', at('apps')]);
    assert.equal(code, 1);
    const lines = stdout.trim().split('\n');
    const denial = lines.find((l) => l.startsWith('Error from server (Forbidden): '));
    assert.ok(denial, stdout);
    assert.ok(
      denial.startsWith(`Error from server (Forbidden): error when creating "${at('apps/nested/nightly.json')}" (document 1): admission webhook "${VALIDATING_WEBHOOK}" denied the request: `),
      denial,
    );
    // Both problems of the CronJob's token, each at its exact field.
    assert.match(denial, /"unknown-audience"/);
    assert.match(denial, /999999/);
    assert.match(denial, /spec\.jobTemplate\.spec\.template\.spec\.volumes\[0\]\.projected\.sources\[0\]\.serviceAccountToken\.audience/);
    assert.match(denial, /spec\.jobTemplate\.spec\.template\.spec\.volumes\[0\]\.projected\.sources\[0\]\.serviceAccountToken\.expirationSeconds/);
    assert.ok(lines.includes(`deployment.apps/api allowed (${at('apps/web.yaml')}, document 1)`), stdout);
    assert.ok(lines.includes(`service/web allowed (${at('apps/web.yaml')}, document 3)`), stdout);
    assert.match(lines.at(-1)!, /^Checked 4 objects in 2 files \(mode enforce\): 1 denied, 0 with warnings, 1 mutated\.$/);
  });

  it('in warn mode turns the same denials into kubectl warnings and exits 0', async () => {
    const enforce = await checkJson(['--mode', 'enforce', at('apps/nested/nightly.json')]);
    const { code, stdout } = await check(['--mode', 'warn', at('apps/nested/nightly.json')]);
    assert.equal(code, 0);
    assert.doesNotMatch(stdout, /Error from server/);
    const warnings = stdout.split('\n').filter((l) => l.startsWith('Warning: '));
    const denied = enforce.report.objects[0]!.findings.filter((f) => f.severity === 'deny');
    assert.equal(denied.length, 2);
    assert.equal(warnings.length, denied.length);
    for (const f of denied) assert.ok(warnings.some((w) => w.startsWith(`Warning: ${f.message.slice(0, 60)}`)), `warning for: ${f.message}`);
    assert.ok(stdout.includes(`cronjob.batch/nightly allowed (${at('apps/nested/nightly.json')}, document 1)`));
  });

  it('adds the ServiceAccount plugin token volume to Pods, so the mutating policies see what the server sees', async () => {
    const { report } = await checkJson([at('apps/web.yaml')]);
    const web = byName(report, 'web-0');
    assert.equal(web.injected, 'kube-api-access-check');
    assert.ok(mutating.length > 0 && web.mutatedBy.length > 0 && web.mutatedBy.every((p) => mutating.includes(p)));
    assert.ok(web.patch && web.patch.length > 0);
    const pod = parseManifests(readFileSync(at('apps/web.yaml'), 'utf8'), 'web').entries[1]!.object;
    const patched = jsonPatch.applyPatch(structuredClone(pod), web.patch as jsonPatch.Operation[], false, false).newDocument;
    assert.ok(JSON.stringify(patched.metadata).includes('data'), 'the patch records claim data on the pod');
    // A pod that opts out gets no token volume, so nothing to mark.
    const list = await checkJson([at('storage-list.yaml')]);
    const noToken = byName(list.report, 'no-token');
    assert.equal(noToken.injected, undefined);
    assert.deepEqual(noToken.mutatedBy, []);
  });

  it('flattens List objects, keeps item positions, and puts namespaced objects without one in -n', async () => {
    const { report } = await checkJson(['-n', 'team-a', at('storage-list.yaml')]);
    assert.deepEqual(
      report.objects.map((o) => [o.document, o.item, o.line, o.kind, o.name, o.namespace]),
      [
        [1, 1, 4, 'PersistentVolume', 'nfs-share', undefined],
        [1, 2, 15, 'Pod', 'no-token', 'shop'],
        [1, 3, 29, 'Pod', 'plain', 'team-a'],
      ],
    );
    assert.equal(byName(report, 'nfs-share').warnings.length > 0, true, 'the NFS PersistentVolume warns');
    const text = await check([at('storage-list.yaml')]);
    assert.ok(text.stdout.includes(`persistentvolume/nfs-share allowed (${at('storage-list.yaml')}, document 1, item 1)`), text.stdout);
  });

  it('reports unparseable YAML with file, line and reason, still checks the rest, and exits 2', async () => {
    const { code, stdout, stderr } = await check(['--mode', 'enforce', at('broken'), at('apps/web.yaml')]);
    assert.equal(code, 2, 'input problems beat "nothing denied"');
    assert.ok(stdout.includes(`configmap/fine allowed (${at('broken/bad.yaml')}, document 1)`), 'the valid document before the broken one is checked');
    assert.ok(stdout.includes('pod/web-0 allowed'), 'other files are checked');
    const errors = stderr.trim().split('\n');
    assert.equal(errors.length, 2, stderr);
    assert.match(errors[0]!, new RegExp(`^error: ${escape(at('broken/bad.yaml'))}:10:1: document 2: Flow sequence .*\\]$`));
    assert.equal(errors[1], `error: ${at('broken/not-object.yaml')}:2: document 1: not a Kubernetes object (a list, expected a mapping with apiVersion and kind)`);
    const json = await checkJson([at('broken')]);
    assert.deepEqual(json.report.problems.map((p) => [p.file, p.line, p.column]), [
      [at('broken/bad.yaml'), 10, 1],
      [at('broken/not-object.yaml'), 2, undefined],
    ]);
    assert.equal(json.code, 2);
  });

  it('says a cluster-only policy was skipped only when an object it would judge is present', async () => {
    // pvc-in-use judges PVC deletions; check judges creates: a file never holds one, so no note.
    assert.deepEqual(needsCluster, ['pvc-in-use']);
    const { stdout } = await check([at('apps/web.yaml'), at('storage-list.yaml')]);
    const { report } = await checkJson([at('apps/web.yaml')]);
    assert.deepEqual(report.skippedPolicies, []);
    assert.doesNotMatch(stdout, /skipped/);
  });

  it('the example in check --help prints exactly what it shows', async () => {
    const lines = EXAMPLE.split('\n').filter(Boolean).map((l) => l.slice(2));
    const args = lines[0]!.replace(/^\$ tokenguard check /, '').split(' ');
    const { code, stdout } = await check(args);
    assert.equal(code, 0);
    assert.equal(stdout, lines.slice(1).join('\n') + '\n');
  });

  it('an object the API server itself rejects fails in every mode, printed as kubectl prints it', async () => {
    const dir = tempDir('tokenguard-check-');
    const file = join(dir, 'cron.yaml');
    writeFileSync(
      file,
      'apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly, namespace: default}\nspec:\n  schedule: "0 3 * * *"\n  jobTemplate:\n    spec:\n      template:\n        spec:\n' +
        '          restartPolicy: OnFailure\n          containers: [{name: app, image: busybox}]\n' +
        '          volumes: [{name: t, projected: {sources: [{serviceAccountToken: {path: token, expirationSeconds: 480}}]}}]\n',
    );
    const path = 'spec.jobTemplate.spec.template.spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds';
    for (const mode of ['warn', 'enforce']) {
      const { code, stdout } = await check(['--mode', mode, file]);
      assert.equal(code, 1, `mode ${mode}: the API server refuses it whatever tokenguard's mode`);
      assert.equal(
        stdout,
        // What kubectl apply prints for it (captured from kube-apiserver v1.36.3), then where it is.
        `The CronJob "nightly" is invalid: ${path}: Invalid value: 480: may not specify a duration less than 10 minutes (${file}, document 1)\n` +
          `Checked 1 object in 1 file (mode ${mode}): 1 rejected by the API server itself (in every mode), 0 denied, 0 with warnings, 0 mutated.\n`,
      );
    }
    const { report } = await checkJson([file]);
    assert.deepEqual(report.objects[0]!.invalid, [`${path}: Invalid value: 480: may not specify a duration less than 10 minutes`]);
    assert.equal(report.objects[0]!.allowed, false);
    assert.equal(report.summary.invalid, 1);
  });

  it('applies the modes of a --config file (per-policy and per-namespace) like the server', async () => {
    const dir = tempDir('tokenguard-check-');
    const denying = (await checkJson(['--mode', 'enforce', at('apps/nested/nightly.json')])).report.objects[0]!.findings.map((f) => f.policy);
    const config = join(dir, 'config.yaml');
    // Enforce everywhere except the CronJob's namespace, where one of the two denying policies is off.
    writeFileSync(config, `mode: enforce\nnamespaceOverrides:\n  - namespaces: [sho?]\n    policies:\n      ${denying[0]}: off\n`);
    const { report, code } = await checkJson(['--config', config, at('apps/nested/nightly.json')]);
    assert.equal(report.mode, 'enforce');
    assert.deepEqual(report.objects[0]!.findings.map((f) => f.policy), denying.slice(1));
    assert.equal(code, 1);
    writeFileSync(config, 'mode: sometimes\n');
    const bad = await check(['--config', config, at('apps')]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /invalid configuration in .*config\.yaml:\n {2}- mode: must be one of \["enforce","warn","off"\]/);
  });

  it('gives each object the verdict the real server gives it over HTTPS', async () => {
    const server = await startTestServer({ overrides: { mode: 'enforce' }, policies: BUILTIN_POLICIES.filter((p) => !p.needsCluster) });
    try {
      const { report } = await checkJson(['--mode', 'enforce', at('apps'), at('storage-list.yaml')]);
      const entries = [at('apps/nested/nightly.json'), at('apps/web.yaml'), at('storage-list.yaml')].flatMap((f) => parseManifests(readFileSync(f, 'utf8'), f).entries);
      assert.equal(entries.length, report.objects.length);
      for (const [i, entry] of entries.entries()) {
        const mine = report.objects[i]!;
        let request = syntheticCreate(entry.object, { uid: `server-${i}`, defaultNamespace: 'default' });
        if (entry.object.kind === 'Pod') request = { ...request, object: withInjectedApiAccess(request.object!).object };
        const review = (req: typeof request) => ({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: req });
        const mutated = (await server.post('/mutate', review(request))).json.response;
        let object = request.object;
        if (mutated.patch) {
          const ops: jsonPatch.Operation[] = JSON.parse(Buffer.from(mutated.patch, 'base64').toString());
          object = jsonPatch.applyPatch(structuredClone(object), ops, false, false).newDocument;
          assert.deepEqual(ops, mine.patch, `${mine.name}: same patch`);
        } else {
          assert.equal(mine.patch, undefined, `${mine.name}: no patch`);
        }
        const validated = (await server.post('/validate', review({ ...request, object }))).json.response;
        assert.equal(mine.allowed, validated.allowed, `${mine.name}: same decision`);
        assert.deepEqual(mine.warnings, [...(mutated.warnings ?? []), ...(validated.warnings ?? [])], `${mine.name}: same warnings`);
        if (!validated.allowed) assert.equal(mine.denial, validated.status.message, `${mine.name}: same denial`);
      }
    } finally {
      await server.shutdown();
    }
  });

  it('rejects bad usage with exit 2', async () => {
    await assert.rejects(check([]), /name at least one FILE, DIR or -/);
    await assert.rejects(check(['--mode', 'off', at('apps')]), /--mode must be enforce or warn/);
    await assert.rejects(check(['-o', 'yaml', at('apps')]), /--output must be text or json/);
    const missing = await check([at('nope.yaml')]);
    assert.equal(missing.code, 2);
    assert.equal(missing.stderr, `error: ${at('nope.yaml')}: no such file or directory\n`);
  });
});

describe('tokenguard check as a process', () => {
  const cli = (args: string[], input: string) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, [MAIN, 'check', ...args], (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
      child.stdin!.end(input);
    });

  it('reads - from stdin (e.g. kubectl kustomize | tokenguard check -) and exits with the verdict', async () => {
    const text = readFileSync(at('apps/nested/nightly.json'), 'utf8') + '\n---\n' + readFileSync(at('apps/web.yaml'), 'utf8');
    const denied = await cli(['--mode', 'enforce', '-'], text);
    assert.equal(denied.code, 1, denied.stderr);
    assert.match(denied.stdout, /^Error from server \(Forbidden\): error when creating "<stdin>" \(document 1\): /m);
    assert.match(denied.stdout, /^pod\/web-0 allowed, mutated by .* \(<stdin>, document 3\)$/m);
    const warned = await check(['-o', 'json', '-'], text);
    assert.equal(warned.code, 0);
    assert.equal(JSON.parse(warned.stdout).objects.length, 4);
  });

  it('exits 2 with a pointer to --help on a usage error', async () => {
    const r = await cli(['--bogus', at('apps')], '');
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'tokenguard check: unknown flag --bogus (see tokenguard check --help)\n');
  });
});

describe('tokenguard check --kubeconfig', () => {
  let fake: FakeApiServer;
  before(async () => {
    fake = await FakeApiServer.start();
    loadCapturedClusterState(fake);
  });
  after(() => fake.close());

  it('runs the cluster-backed policies and honours the namespace mode label the cluster holds', async () => {
    const shop = fake.get('namespaces', undefined, 'shop')!;
    fake.upsert('namespaces', { ...shop, metadata: { ...shop.metadata, labels: { ...shop.metadata.labels, 'tokenguard.io/mode': 'warn' } } });
    const { code, report } = await checkJson(['--mode', 'enforce', '--kubeconfig', fake.kubeconfigPath, at('apps/nested/nightly.json')]);
    assert.deepEqual(report.skippedPolicies, [], 'nothing skipped with a cluster');
    assert.ok(report.cluster?.startsWith(fake.url), report.cluster);
    assert.equal(report.objects[0]!.allowed, true, 'namespace shop is labelled warn in the cluster');
    assert.ok(report.objects[0]!.findings.every((f) => f.mode === 'warn'));
    assert.equal(code, 0);
  });

  it('exits 2 naming the cluster when it cannot sync', async () => {
    const down = await FakeApiServer.start();
    const kubeconfig = down.kubeconfigPath;
    await down.close();
    const r = await check(['--kubeconfig', kubeconfig, '--sync-timeout', '0.5', at('apps')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^tokenguard check: cannot reach the API server https:\/\/127\.0\.0\.1:\d+ \(--kubeconfig .*\): connection refused \(is the API server running, and is this its address\?\)\n$/);
  });

  it('exits 2 saying the API server\'s certificate is signed by an unknown authority when the kubeconfig trusts another CA', async () => {
    const kubeconfig = join(tempDir('tokenguard-check-'), 'kubeconfig');
    writeFileSync(kubeconfig, fake.kubeconfig().replace(/certificate-authority-data: \S+/, `certificate-authority-data: ${makeCerts().ca.toString('base64')}`));
    const r = await check(['--kubeconfig', kubeconfig, at('apps')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^tokenguard check: the API server https:\/\/127\.0\.0\.1:\d+ \(--kubeconfig .*\) was reached, but its certificate did not verify: x509: certificate signed by unknown authority: .*\(fix: set the cluster's certificate-authority-data to that CA, /);
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
