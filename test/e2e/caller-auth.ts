// Caller authentication end to end (run from e2e.test.ts): kube-apiserver restarted with an
// `--admission-control-config-file` whose webhook kubeconfig carries, for tokenguard's URL, a token
// minted by TokenRequest for kube-system/webhook-auth; tokenguard in `enforce`. Reviews pass
// through kubectl; direct POSTs without a token, with another audience, an expired token or a token
// of another ServiceAccount get 401; a second tokenguard in `audit` answers them, logs and counts.

import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { stringify } from 'yaml';
import { reviewByPrefix } from '../helpers/fixtures.js';
import { TokenguardProcess } from '../helpers/tokenguard-process.js';
import type { Assets } from './harness/assets.js';
import { SERVED_ISSUER } from './harness/control-plane.js';
import { ensureNamespace, startE2e, type E2e } from './harness/environment.js';
import { eventually } from './harness/eventually.js';
import { ok, warnings, type Kubectl } from './harness/kubectl.js';

const NS = 'e2e-auth';
const WEBHOOK_AUTH = 'system:serviceaccount:kube-system:webhook-auth';

/** The AdmissionConfiguration and webhook kubeconfig a kubeadm user writes (README, "Authenticating the API server"). */
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

export function callerAuthScenario(assets: Assets): void {
  let e: E2e;
  let url = '';
  const must = async (args: string[], input?: string) => ok(await e.kubectl(args, input), `kubectl ${args.join(' ')}`);
  const post = (target: TokenguardProcess, bearer?: string) =>
    target.call('POST', '/validate', JSON.stringify(reviewByPrefix('006')), {
      'content-type': 'application/json',
      ...(bearer ? { authorization: `Bearer ${bearer}` } : {}),
    });

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
      tokenguard: (tokenguardUrl) => ({ server: { callerAuth: { mode: 'enforce', bearerToken: { audiences: [tokenguardUrl] } } } }),
    });
    await ensureNamespace(e.kubectl, NS);
  });

  after(async () => {
    await e?.stop();
  });

  it('reviews from kube-apiserver pass: kubectl shows the warnings, the callers were its bearer token', async () => {
    const pod = stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'long-token', namespace: NS },
      spec: {
        containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.9' }],
        volumes: [{ name: 't', projected: { sources: [{ serviceAccountToken: { path: 'token', expirationSeconds: 172800, audience: 'vault' } }] } }],
      },
    });
    const r = await e.kubectl(['apply', '-f', '-'], pod);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(warnings(r), ['token lifetime 172800 s is above the 86400 s maximum (volume "t")']);
    assert.ok(((await e.tokenguard.metric('tokenguard_caller_auth_total{method="bearer_token",result="ok"}')) ?? 0) > 0);
    assert.equal(await e.tokenguard.metric('tokenguard_caller_auth_total{method="none",result="missing"}'), undefined, 'kube-apiserver never called without its token');
  });

  it('in enforce, a direct POST gets 401: no token, another audience, expired, another ServiceAccount', async () => {
    const expired = await expiredToken(e, url);
    const cases: [string, string | undefined, string, RegExp][] = [
      ['no token', undefined, 'missing', /no client certificate and no bearer token/],
      ['another audience', await createToken(e.kubectl, 'webhook-auth', 'https://elsewhere.example.com'), 'wrong_audience', /include none of/],
      ['expired', expired, 'expired', /expired \d+ s ago/],
      ['another ServiceAccount', await createToken(e.kubectl, 'bystander', url), 'wrong_subject', /subject "system:serviceaccount:kube-system:bystander"/],
    ];
    for (const [what, bearer, result, message] of cases) {
      const before = (await e.tokenguard.metric(`tokenguard_caller_auth_total{method="${bearer ? 'bearer_token' : 'none'}",result="${result}"}`)) ?? 0;
      const r = await post(e.tokenguard, bearer);
      assert.equal(r.status, 401, `${what}: ${r.text}`);
      assert.match(r.json.error.message, message, what);
      const after = await e.tokenguard.metric(`tokenguard_caller_auth_total{method="${bearer ? 'bearer_token' : 'none'}",result="${result}"}`);
      assert.equal(after, before + 1, what);
    }
    // The real token of the webhook kubeconfig passes.
    assert.equal((await post(e.tokenguard, await createToken(e.kubectl, 'webhook-auth', url))).status, 200);
  });

  it('in audit, the same callers are answered, logged and counted', async () => {
    const auditing = await TokenguardProcess.start({
      dir: e.cp.dir,
      kubeconfig: e.tokenguardKubeconfig,
      config: { server: { callerAuth: { mode: 'audit', bearerToken: { audiences: [url] } } } },
    });
    try {
      const r = await post(auditing, await createToken(e.kubectl, 'bystander', url));
      assert.equal(r.status, 200);
      assert.equal(r.json.response.allowed, true);
      assert.equal(await auditing.metric('tokenguard_caller_auth_total{method="bearer_token",result="wrong_subject"}'), 1);
      // Log lines are written in batches (up to 10 ms): wait for it.
      const line = await eventually(async () => auditing.logs.find((l) => l.msg === 'caller not authenticated'), 'the log line', 5000);
      assert.deepEqual([line?.result, line?.mode, line?.address], ['wrong_subject', 'audit', '127.0.0.1']);
    } finally {
      await auditing.stop();
    }
  });
}

/**
 * A token kube-apiserver would have issued two hours ago for kube-system/webhook-auth, with one hour
 * of life: signed with the cluster's own service-account key (this suite made the PKI), under the
 * key id the cluster publishes. TokenRequest cannot mint one in the past.
 */
async function expiredToken(e: E2e, audience: string): Promise<string> {
  const jwks = JSON.parse(ok(await e.kubectl(['get', '--raw', '/openid/v1/jwks']), 'JWKS').stdout);
  const iat = Math.floor(Date.now() / 1000) - 7200;
  return new SignJWT({ 'kubernetes.io': { namespace: 'kube-system', serviceaccount: { name: 'webhook-auth', uid: '00000000-0000-0000-0000-000000000000' } } })
    .setProtectedHeader({ alg: 'RS256', kid: jwks.keys[0].kid })
    .setIssuer(SERVED_ISSUER)
    .setSubject(WEBHOOK_AUTH)
    .setAudience([audience])
    .setIssuedAt(iat)
    .setNotBefore(iat)
    .setExpirationTime(iat + 3600)
    .sign(createPrivateKey(readFileSync(e.cp.pki.saKey)));
}
