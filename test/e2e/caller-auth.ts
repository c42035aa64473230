// Caller authentication end to end (run from e2e.test.ts): kube-apiserver restarted with an
// `--admission-control-config-file` whose webhook kubeconfig carries, for tokenguard's URL, a token
// minted by TokenRequest for kube-system/webhook-auth; tokenguard in `enforce`. Reviews pass
// through kubectl; direct POSTs without a token, with another audience, an expired token or a token
// of another ServiceAccount get 401; a second tokenguard in `audit` answers them, logs and counts.
//
// KEP-6060 tokens: no released API server mints them yet (alpha in v1.37), so the suite mints them
// as kube-apiserver would, with the control plane's own service-account signing key (it made the
// PKI) under the key id the cluster publishes, bound to the webhook configurations really
// registered (their live uids), and tokenguard verifies them through the real /openid/v1/jwks and
// checks the bindings against its watch of the real ValidatingWebhookConfiguration and
// MutatingWebhookConfiguration objects.
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { stringify } from 'yaml';
import { reviewByPrefix } from '../helpers/fixtures.js';
import { TokenguardProcess } from '../helpers/tokenguard-process.js';
import type { Assets } from './harness/assets.js';
import { SERVED_ISSUER } from './harness/control-plane.js';
import { ensureNamespace, startE2e, webhooksFor, type E2e } from './harness/environment.js';
import { eventually } from './harness/eventually.js';
import { mustWith, ok, warnings, type Kubectl } from './harness/kubectl.js';
import { tokenPod } from './harness/objects.js';
import { tokenguardCli } from './harness/cli.js';

const NS = 'e2e-auth';
const WEBHOOK_AUTH = 'system:serviceaccount:kube-system:webhook-auth';
/** A Node for the pod a bound TokenRequest token names (no kubelet: it is only an object). */
const NODE = 'e2e-auth-node';
/** Another webhook's configuration, registered beside tokenguard's. */
const BYSTANDER = 'e2e-bystander';

/** The AdmissionConfiguration and webhook kubeconfig a kubeadm user writes (docs/operations.md, "Authenticating the API server"). */
function admissionConfig(dir: string, host: string, token: string): string {
  const kubeconfig = join(dir, 'webhook-auth.kubeconfig');
  writeFileSync(kubeconfig, stringify({ apiVersion: 'v1', kind: 'Config', users: [{ name: host, user: { token } }] }), { mode: 0o600 });
  const file = join(dir, 'admission-config.yaml');
  const webhook = { apiVersion: 'apiserver.config.k8s.io/v1', kind: 'WebhookAdmissionConfiguration', kubeConfigFile: kubeconfig };
  writeFileSync(
    file,
    stringify({
      apiVersion: 'apiserver.config.k8s.io/v1',
      kind: 'AdmissionConfiguration',
      plugins: [
        { name: 'ValidatingAdmissionWebhook', configuration: webhook },
        { name: 'MutatingAdmissionWebhook', configuration: webhook },
      ],
    }),
  );
  return file;
}

const createToken = async (kubectl: Kubectl, account: string, audience: string) =>
  ok(await kubectl(['create', 'token', account, '-n', 'kube-system', `--audience=${audience}`, '--duration=24h']), 'TokenRequest').stdout.trim();

type Kind = 'validating' | 'mutating';
const RESOURCE: Record<Kind, string> = { validating: 'validatingwebhookconfiguration', mutating: 'mutatingwebhookconfiguration' };
const ROUTE: Record<Kind, string> = { validating: '/validate', mutating: '/mutate' };

/** What a KEP-6060 token says, over what kube-apiserver would put in it for tokenguard. */
interface Minted {
  kind?: Kind;
  name?: string;
  /** Default: the live uid of the configuration. */
  uid?: string;
  /** The admissionReviewAPIGroups attestation (default `*`, what kube-apiserver attests). */
  group?: string;
  lifetimeSeconds?: number;
  /** Sign with this key instead of the cluster's (a forgery under the published kid). */
  key?: KeyObject;
}

export function callerAuthScenario(assets: Assets): void {
  let e: E2e;
  let url = '';
  let signing: { key: KeyObject; kid: string };
  const must = mustWith(() => e.kubectl);
  const post = (target: TokenguardProcess, bearer?: string, route = '/validate', review = '006') =>
    target.call('POST', route, JSON.stringify(reviewByPrefix(review)), {
      'content-type': 'application/json',
      ...(bearer ? { authorization: `Bearer ${bearer}` } : {}),
    });
  const count = async (target: TokenguardProcess, method: string, result: string) =>
    (await target.metric(`tokenguard_caller_auth_total{method="${method}",result="${result}"}`)) ?? 0;
  const liveUid = async (kind: Kind, name: string) => (await must(['get', RESOURCE[kind], name, '-o', 'jsonpath={.metadata.uid}'])).stdout.trim();
  /** Until `target`'s watch of webhook configurations holds (at least) these many of each kind. */
  const untilWatched = (target: TokenguardProcess, validating: number, mutating: number) =>
    eventually(async () => {
      const v = (await target.metric('tokenguard_cache_objects{resource="validatingwebhookconfigurations"}')) ?? 0;
      const m = (await target.metric('tokenguard_cache_objects{resource="mutatingwebhookconfigurations"}')) ?? 0;
      return v >= validating && m >= mutating;
    }, 'tokenguard watching the webhook configurations');

  /** A KEP-6060 token as kube-apiserver v1.37 would mint it to call tokenguard (by URL). */
  const mint = async (spec: Minted = {}): Promise<string> => {
    const kind = spec.kind ?? 'validating';
    const name = spec.name ?? 'tokenguard';
    return signAs(spec.key ? { ...signing, key: spec.key } : signing, {
      audience: url + ROUTE[kind],
      iat: Math.floor(Date.now() / 1000),
      lifetimeSeconds: spec.lifetimeSeconds ?? 600,
      jti: randomUUID(),
      k8s: {
        namespace: 'kube-system',
        serviceaccount: { name: 'webhook-auth', uid: await liveServiceAccountUid() },
        [RESOURCE[kind]]: { name, uid: spec.uid ?? (await liveUid(kind, name)) },
        attestations: { admissionReviewAPIGroups: [spec.group ?? '*'] },
      },
    });
  };
  let saUid = '';
  const liveServiceAccountUid = async () => (saUid ||= (await must(['get', 'serviceaccount', 'webhook-auth', '-n', 'kube-system', '-o', 'jsonpath={.metadata.uid}'])).stdout.trim());

  before(async () => {
    e = await startE2e(assets, {
      beforeTokenguard: async ({ cp, kubectl, url: tokenguardUrl }) => {
        url = tokenguardUrl;
        ok(await kubectl(['create', 'serviceaccount', 'webhook-auth', '-n', 'kube-system']), 'webhook-auth');
        ok(await kubectl(['create', 'serviceaccount', 'bystander', '-n', 'kube-system']), 'another ServiceAccount');
        const token = await createToken(kubectl, 'webhook-auth', url);
        // kube-apiserver reads the webhook kubeconfig at start: restart it with the flag (a kill
        // is enough here, the restart is only a means).
        await cp.stopApiserver('SIGKILL');
        await cp.startApiserver([`--admission-control-config-file=${admissionConfig(cp.dir, new URL(url).host, token)}`]);
      },
      // Called by URL: kube-apiserver mints a KEP-6060 token for the webhook's URL, path included.
      tokenguard: (tokenguardUrl) => ({ server: { callerAuth: { mode: 'enforce', bearerToken: { audiences: [tokenguardUrl, `${tokenguardUrl}/validate`, `${tokenguardUrl}/mutate`] } } } }),
    });
    await ensureNamespace(e.kubectl, NS);
    await must(['apply', '-f', '-'], `apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: ${BYSTANDER}}\nwebhooks: []\n`);
    const jwks = JSON.parse((await must(['get', '--raw', '/openid/v1/jwks'])).stdout);
    signing = { key: createPrivateKey(readFileSync(e.cp.pki.saKey)), kid: jwks.keys[0].kid };
    // tokenguard's two configurations and the bystander, as tokenguard's own watch sees them.
    await untilWatched(e.tokenguard, 2, 1);
  });

  after(async () => {
    await e?.stop();
  });

  it('reviews from kube-apiserver pass: kubectl shows the warnings, the callers were its bearer token', async () => {
    const pod = stringify(tokenPod(NS, 'long-token', 172800, 'vault'));
    const r = await e.kubectl(['apply', '-f', '-'], pod);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(warnings(r), ['token lifetime 172800 s is above the 86400 s maximum (volume "t")']);
    assert.ok((await count(e.tokenguard, 'bearer_token', 'ok')) > 0);
    assert.equal(await e.tokenguard.metric('tokenguard_caller_auth_total{method="none",result="missing"}'), undefined, 'kube-apiserver never called without its token');
  });

  it('in enforce, a direct POST gets 401: no token, another audience, expired, another ServiceAccount', async () => {
    // Issued two hours ago with one hour of life: TokenRequest cannot mint one in the past.
    const expired = await signAs(signing, {
      audience: url,
      iat: Math.floor(Date.now() / 1000) - 7200,
      lifetimeSeconds: 3600,
      k8s: { namespace: 'kube-system', serviceaccount: { name: 'webhook-auth', uid: await liveServiceAccountUid() } },
    });
    const cases: [string, string | undefined, string, RegExp][] = [
      ['no token', undefined, 'missing', /no client certificate and no bearer token/],
      ['another audience', await createToken(e.kubectl, 'webhook-auth', 'https://elsewhere.example.com'), 'wrong_audience', /include none of/],
      ['expired', expired, 'expired', /expired 1 h ago/],
      ['another ServiceAccount', await createToken(e.kubectl, 'bystander', url), 'wrong_subject', /subject "system:serviceaccount:kube-system:bystander"/],
    ];
    for (const [what, bearer, result, message] of cases) {
      const method = bearer ? 'bearer_token' : 'none';
      const before = await count(e.tokenguard, method, result);
      const r = await post(e.tokenguard, bearer);
      assert.equal(r.status, 401, `${what}: ${r.text}`);
      assert.match(r.json.error.message, message, what);
      assert.equal(await count(e.tokenguard, method, result), before + 1, what);
    }
    // The real token of the webhook kubeconfig passes.
    assert.equal((await post(e.tokenguard, await createToken(e.kubectl, 'webhook-auth', url))).status, 200);
  });

  it('KEP-6060: a token bound to tokenguard\'s live configuration of the route\'s kind passes; "*" or the reviewed group', async () => {
    const before = await count(e.tokenguard, 'bearer_token', 'ok');
    const passes: [string, string, string][] = [
      ['validating, "*", a Pod', await mint(), '006'],
      ['validating, "apps", a Deployment', await mint({ group: 'apps' }), '028'],
    ];
    for (const [what, bearer, review] of passes) {
      const r = await post(e.tokenguard, bearer, '/validate', review);
      assert.equal(r.status, 200, `${what}: ${r.text}`);
      assert.equal(r.json.response.uid, reviewByPrefix(review).request.uid, what);
    }
    const m = await post(e.tokenguard, await mint({ kind: 'mutating' }), '/mutate');
    assert.equal(m.status, 200, m.text);
    assert.equal(await count(e.tokenguard, 'bearer_token', 'ok'), before + 3);
  });

  it('KEP-6060: refused with 401, each with its reason and result', async () => {
    const forged = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const cases: [string, string, string, string, RegExp][] = [
      ['wrong route', await mint({ kind: 'validating' }), '/mutate', 'wrong_route', /bound to ValidatingWebhookConfiguration tokenguard, presented for a mutating webhook/],
      ['another configuration', await mint({ name: BYSTANDER }), '/validate', 'wrong_binding', new RegExp(`bound to ValidatingWebhookConfiguration "${BYSTANDER}", not one of tokenguard`)],
      ['a uid not the live one', await mint({ uid: '0b5e1e7e-0000-4000-8000-000000000000' }), '/validate', 'stale_uid', /uid 0b5e1e7e-0000-4000-8000-000000000000, but it is now uid [0-9a-f-]{36} \(deleted and re-created\)/],
      ['an attestation for another group', await mint({ group: 'apps' }), '/validate', 'wrong_attestation', /attested for API group "apps", asked about the core group ""/],
      ['longer than 600 s', await mint({ lifetimeSeconds: 3600 }), '/validate', 'lifetime_too_long', /valid for 3600 s: kube-apiserver mints these for at most 600 s/],
      ['a forged signature under the published kid', await mint({ key: forged }), '/validate', 'invalid_signature', /the signature does not verify with the published key/],
    ];
    for (const [what, bearer, route, result, message] of cases) {
      const before = await count(e.tokenguard, 'bearer_token', result);
      const r = await post(e.tokenguard, bearer, route);
      assert.equal(r.status, 401, `${what}: ${r.text}`);
      assert.equal(r.headers['www-authenticate'], 'Bearer', what);
      assert.match(r.json.error.message, message, what);
      assert.equal(await count(e.tokenguard, 'bearer_token', result), before + 1, what);
    }
  });

  it('in audit, the same callers are answered, and every failure is logged and counted by its result', async () => {
    const auditing = await TokenguardProcess.start({
      dir: e.cp.dir,
      // The same serving certificate: fresh ones would be written over the files the first
      // tokenguard reloads its certificate from (then signed by a CA nobody trusts).
      certs: e.tokenguard.certs,
      kubeconfig: e.tokenguardKubeconfig,
      config: { server: { callerAuth: { mode: 'audit', bearerToken: { audiences: [url, `${url}/validate`, `${url}/mutate`] } } } },
    });
    try {
      await untilWatched(auditing, 2, 1);
      const failures: [string, string | Promise<string>, string][] = [
        ['wrong_subject', createToken(e.kubectl, 'bystander', url), '/validate'],
        ['wrong_route', mint({ kind: 'mutating' }), '/validate'],
        ['wrong_binding', mint({ name: BYSTANDER }), '/validate'],
        ['stale_uid', mint({ uid: '0b5e1e7e-0000-4000-8000-000000000000' }), '/validate'],
        ['wrong_attestation', mint({ group: 'storage.k8s.io' }), '/validate'],
        ['lifetime_too_long', mint({ lifetimeSeconds: 601 }), '/validate'],
        ['invalid_signature', mint({ key: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey }), '/validate'],
      ];
      for (const [result, bearer, route] of failures) {
        const r = await post(auditing, await bearer, route);
        assert.equal(r.status, 200, `${result}: ${r.text}`);
        assert.equal(r.json.response.allowed, true, result);
        assert.equal(await auditing.metric(`tokenguard_caller_auth_total{method="bearer_token",result="${result}"}`), 1, result);
      }
      // Log lines are written in batches (up to 10 ms): wait for them.
      const expected = failures.map(([result]) => result).sort();
      const lines = await eventually(async () => {
        const found = auditing.logs.filter((l) => l.msg === 'caller not authenticated');
        return found.length >= expected.length && found;
      }, 'a log line per failure', 5000);
      assert.deepEqual(lines.map((l) => l.result).sort(), expected);
      for (const l of lines) assert.deepEqual([l.mode, l.address, typeof l.reason], ['audit', '127.0.0.1', 'string'], l.result);
    } finally {
      await auditing.stop();
    }
  });

  it('token inspect: a KEP-6060 token\'s binding and attestation; a pod-bound TokenRequest token\'s jti and node (1.30+)', async () => {
    const minted = await mint();
    const file = join(e.cp.dir, 'kep6060.jwt');
    writeFileSync(file, minted);
    const b = await inspectCli(e.cp.kubeconfig, file);
    assert.equal(b.code, 0, b.stdout + b.stderr);
    assert.match(b.stdout, new RegExp(`\\n  webhook binding ValidatingWebhookConfiguration tokenguard \\(uid ${await liveUid('validating', 'tokenguard')}\\)\\n  attestation     admissionReviewAPIGroups "\\*"\\n`));
    assert.match(b.stdout, /\n {2}signature {7}verified against the cluster's JWKS/);

    // A pod scheduled to a node (an object only: nothing runs it), and a token bound to the pod.
    await must(['apply', '-f', '-'], `apiVersion: v1\nkind: Node\nmetadata: {name: ${NODE}}\n`);
    await must(['apply', '-f', '-'], stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'bound', namespace: NS }, spec: { nodeName: NODE, containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.9' }] } }));
    const token = (await must(['create', 'token', 'default', '-n', NS, '--bound-object-kind', 'Pod', '--bound-object-name', 'bound'])).stdout.trim();
    writeFileSync(file, token);
    const r = await inspectCli(e.cp.kubeconfig, file, '--json');
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.token.pod.name, 'bound');
    const text = (await inspectCli(e.cp.kubeconfig, file)).stdout;
    const minor = Number(JSON.parse((await must(['version', '-o', 'json'])).stdout).serverVersion.minor.replace(/\D/g, ''));
    // KEP-4193 (ServiceAccountTokenJTI, ServiceAccountTokenPodNodeInfo): on by default since 1.30.
    if (minor >= 30) {
      const nodeUid = (await must(['get', 'node', NODE, '-o', 'jsonpath={.metadata.uid}'])).stdout.trim();
      assert.match(report.token.jti, /^[0-9a-f-]{36}$/);
      assert.deepEqual(report.token.node, { name: NODE, uid: nodeUid });
      assert.match(text, new RegExp(`\\n  jti             ${report.token.jti}\\n`));
      assert.match(text, new RegExp(`\\n  bound to node   ${NODE} \\(uid ${nodeUid}\\)\\n`));
    } else {
      assert.deepEqual([report.token.jti, report.token.node], [undefined, undefined], `v1.${minor} mints neither`);
      assert.doesNotMatch(text, /\n {2}jti |\n {2}bound to node /);
    }
  });

  it('KEP-6060: a ValidatingWebhookConfiguration deleted and re-created: tokens bound to the old one get 401 (stale_uid)', async () => {
    const old = await mint();
    const oldUid = await liveUid('validating', 'tokenguard');
    assert.equal((await post(e.tokenguard, old)).status, 200, 'passes (and is cached) before');
    await must(['delete', RESOURCE.validating, 'tokenguard']);
    await must(['apply', '-f', '-'], webhooksFor(e.tokenguard.url, e.tokenguard.certs.ca.toString('base64'), e.assets.serverVersion));
    const newUid = await liveUid('validating', 'tokenguard');
    assert.notEqual(newUid, oldUid);
    // Until tokenguard's watch has seen the new object, a token for it is refused (stale_uid) too.
    const fresh = await mint();
    await eventually(async () => (await post(e.tokenguard, fresh)).status === 200, 'a token for the re-created configuration to pass');
    const before = await count(e.tokenguard, 'bearer_token', 'stale_uid');
    const r = await post(e.tokenguard, old);
    assert.equal(r.status, 401, r.text);
    assert.match(r.json.error.message, new RegExp(`uid ${oldUid}, but it is now uid ${newUid} \\(deleted and re-created\\)`));
    assert.equal(await count(e.tokenguard, 'bearer_token', 'stale_uid'), before + 1);
  });
}

/** `tokenguard token inspect --kubeconfig KUBECONFIG [--json] FILE`, as a user runs it. */
const inspectCli = (kubeconfig: string, file: string, ...flags: string[]) => tokenguardCli(['token', 'inspect', '--kubeconfig', kubeconfig, ...flags, file]);

/**
 * A token signed as kube-apiserver signs them, for kube-system/webhook-auth: with the cluster's own
 * service-account key (this suite made the PKI) and the key id the cluster publishes.
 */
function signAs(
  signer: { key: KeyObject; kid: string },
  t: { audience: string; iat: number; lifetimeSeconds: number; k8s: Record<string, unknown>; jti?: string },
): Promise<string> {
  return new SignJWT({ ...(t.jti ? { jti: t.jti } : {}), 'kubernetes.io': t.k8s })
    .setProtectedHeader({ alg: 'RS256', kid: signer.kid })
    .setIssuer(SERVED_ISSUER)
    .setSubject(WEBHOOK_AUTH)
    .setAudience([t.audience])
    .setIssuedAt(t.iat)
    .setNotBefore(t.iat)
    .setExpirationTime(t.iat + t.lifetimeSeconds)
    .sign(signer.key);
}
