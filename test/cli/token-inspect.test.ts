// `tokenguard token inspect`: tokens signed in the test, judged offline and against the fake API
// server (discovery, JWKS, kube-apiserver mirror pods) through the real client-node; inputs from a
// file, a mounted token directory and stdin; human and JSON output; exit codes 0/1/2.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runTokenInspect, type InspectIO } from '../../src/cli/token-inspect.js';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { CLUSTER_STATE_DIR, reviewByPrefix } from '../helpers/fixtures.js';
import { makeSigningKey, serveOidc, signToken, type OidcServer, type SigningKey } from '../helpers/oidc.js';
import { PROJECT_ROOT } from '../helpers/tls.js';
import { tempDir } from '../helpers/temp-dir.js';

const SERVED = 'https://kubernetes.default.svc';
const NOW = new Date('2026-11-24T12:00:00Z');
const NOW_S = NOW.getTime() / 1000;

interface Run {
  code: number;
  out: string;
  err: string;
}

async function inspect(args: string[], opts: { stdin?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  let out = '';
  let err = '';
  const io: InspectIO = {
    stdout: (s) => (out += s),
    stderr: (s) => (err += s),
    stdin: () => opts.stdin ?? '',
    env: opts.env ?? {},
    now: () => NOW,
  };
  const code = await runTokenInspect(args, io);
  return { code, out, err };
}

const dir = tempDir('token-inspect-');
function tokenFile(name: string, token: string): string {
  const path = join(dir, name);
  writeFileSync(path, token + '\n');
  return path;
}

describe('token inspect against a cluster', () => {
  let fake: FakeApiServer;
  let oidc: OidcServer;
  let key: SigningKey;
  let kubeconfig: string[];
  before(async () => {
    fake = await FakeApiServer.start();
    oidc = await serveOidc(fake, SERVED);
    key = oidc.keys[0]!;
    kubeconfig = ['--kubeconfig', fake.kubeconfigPath];
  });
  after(() => fake.close());

  it('a valid token: exit 0, the claims, the cluster it was verified against', async () => {
    const t = tokenFile('valid', await signToken(key, { issuer: SERVED, audience: [SERVED], iat: NOW_S - 600, pod: 'web-0', namespace: 'shop', serviceAccount: 'default' }));
    const r = await inspect([...kubeconfig, t]);
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /^Token .*\/valid\n/);
    assert.match(r.out, / {2}issuer {10}https:\/\/kubernetes\.default\.svc\n/);
    assert.match(r.out, / {2}subject {9}system:serviceaccount:shop:default\n/);
    assert.match(r.out, / {2}issued at {7}2026-11-24T11:50:00Z {2}\(10 min ago\)\n/);
    assert.match(r.out, / {2}expires {9}2026-11-24T12:50:00Z {2}\(in 50 min\)\n/);
    assert.match(r.out, / {2}bound to pod {4}web-0 \(uid /);
    assert.match(r.out, new RegExp(`Cluster ${fake.url.replace(/[.]/g, '\\.')} \\(--kubeconfig `));
    assert.match(r.out, / {2}served issuer {3}https:\/\/kubernetes\.default\.svc\n/);
    assert.match(r.out, / {2}keys {12}key-1\n/);
    assert.match(r.out, / {2}signature {7}verified against the cluster's JWKS \(key key-1\)\n/);
    assert.match(r.out, /\nVerdict: VALID\n$/);
  });

  it('expired: exit 1', async () => {
    const t = tokenFile('expired', await signToken(key, { issuer: SERVED, audience: SERVED, iat: NOW_S - 7200, lifetimeSeconds: 3600 }));
    const r = await inspect([...kubeconfig, t]);
    assert.equal(r.code, 1);
    assert.match(r.out, /Verdict: INVALID\n {2}x expired 1 h ago\n$/);
  });

  it('not yet valid beyond the leeway: exit 1, names clock skew plainly', async () => {
    const t = tokenFile('future', await signToken(key, { issuer: SERVED, audience: SERVED, iat: NOW_S + 120 }));
    const r = await inspect([...kubeconfig, t]);
    assert.equal(r.code, 1);
    assert.match(r.out, /x not valid yet: nbf is 2 min ahead of the local clock, beyond the fixed 60 s leeway/);
    assert.match(r.out, /\nClock skew beyond the 60 s leeway: the clock of the node or API server that judges this token is off/);
  });

  it('wrong issuer: exit 1, named as an issuer change (kops#16488); accepted once a kube-apiserver pod lists it as an extra issuer', async () => {
    const t = tokenFile('old-issuer', await signToken(key, { issuer: 'https://master.prod.example.com', audience: SERVED, iat: NOW_S - 60 }));
    const r = await inspect([...kubeconfig, t]);
    assert.equal(r.code, 1);
    assert.match(r.out, /x issuer "https:\/\/master\.prod\.example\.com" is not accepted \(the API server accepts https:\/\/kubernetes\.default\.svc\)/);
    assert.match(r.out, /\nIssuer no longer accepted \(kOps 1\.26 outage, kops#16488\): kube-apiserver no longer accepts the issuer/);
    // The captured kOps mirror pod accepts master... as its second issuer.
    fake.upsert('pods', reviewByPrefix('045').request.object);
    try {
      const ok = await inspect([...kubeconfig, t]);
      assert.equal(ok.code, 0, ok.out);
      assert.match(ok.out, / {2}also accepted {3}https:\/\/api\.internal\.prod\.example\.com, https:\/\/master\.prod\.example\.com\n/);
    } finally {
      fake.remove('pods', 'kube-system', 'kube-apiserver-ip-172-20-40-10.ec2.internal');
    }
  });

  it('wrong audience (with --audience) and wrong key: exit 1', async () => {
    const aud = tokenFile('aud', await signToken(key, { issuer: SERVED, audience: 'istio-ca', iat: NOW_S }));
    const a = await inspect([...kubeconfig, '--audience', 'vault', aud]);
    assert.equal(a.code, 1);
    assert.match(a.out, /x audiences \["istio-ca"\] do not include "vault"/);
    const other = await makeSigningKey('key-1');
    const k = await inspect([...kubeconfig, tokenFile('wrong-key', await signToken(other, { issuer: SERVED, audience: SERVED, iat: NOW_S }))]);
    assert.equal(k.code, 1);
    assert.match(k.out, /x the signature does not verify with the published key/);
    assert.match(k.out, / {2}signature {7}does NOT verify against the cluster's JWKS\n/);
    const unknown = await makeSigningKey('elsewhere');
    const u = await inspect([...kubeconfig, tokenFile('unknown-key', await signToken(unknown, { issuer: SERVED, audience: SERVED, iat: NOW_S }))]);
    assert.match(u.out, /x signed by a key the cluster does not publish \(kid "elsewhere"\)/);
  });

  it('--json: the same verdict for scripts', async () => {
    const t = tokenFile('json', await signToken(key, { issuer: 'https://master.prod.example.com', audience: SERVED, iat: NOW_S + 300 }));
    const r = await inspect([...kubeconfig, '--json', t]);
    assert.equal(r.code, 1);
    const j = JSON.parse(r.out);
    assert.equal(j.valid, false);
    assert.equal(j.verified, true);
    assert.deepEqual(j.causes.sort(), ['clock-skew', 'issuer-change']);
    assert.deepEqual(j.problems.map((p: any) => p.code).sort(), ['issuer-not-accepted', 'not-yet-valid']);
    assert.equal(j.cluster.servedIssuer, SERVED);
    assert.deepEqual(j.cluster.keyIds, ['key-1']);
    assert.equal(j.claims.iss, 'https://master.prod.example.com');
    assert.equal(j.times.issuedAt.relative, 'in 5 min');
  });

  it('a pod-bound token as 1.32+ mints it: its jti and the node the pod runs on, in text and JSON', async () => {
    const k8s = {
      namespace: 'shop',
      serviceaccount: { name: 'default', uid: '00000000-0000-0000-0000-000000000001' },
      pod: { name: 'web-0', uid: '00000000-0000-0000-0000-000000000002' },
      node: { name: 'node-a', uid: '00000000-0000-0000-0000-000000000003' },
    };
    const jti = '7b0c2f6e-5d7a-4d3e-9f1c-2a8e6b4d9c01';
    const t = tokenFile('jti', await signToken(key, { issuer: SERVED, audience: SERVED, iat: NOW_S - 60, namespace: 'shop', serviceAccount: 'default', extra: { jti, 'kubernetes.io': k8s } }));
    const r = await inspect([...kubeconfig, t]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, new RegExp(`\n  jti             ${jti}\n`));
    assert.match(r.out, /\n {2}bound to pod {4}web-0 \(uid 00000000-0000-0000-0000-000000000002\)\n {2}bound to node {3}node-a \(uid 00000000-0000-0000-0000-000000000003\)\n/);
    const j = JSON.parse((await inspect([...kubeconfig, '--json', t])).out);
    assert.equal(j.token.jti, jti);
    assert.deepEqual(j.token.node, { name: 'node-a', uid: '00000000-0000-0000-0000-000000000003' });
    assert.deepEqual(j.token.pod, { name: 'web-0', uid: '00000000-0000-0000-0000-000000000002' });
    assert.equal(j.claims.jti, jti, 'the claims as signed, too');
    // A token of 1.26 has neither: no row, no key.
    const old = await inspect([...kubeconfig, '--json', tokenFile('v126', await signToken(key, { issuer: SERVED, audience: SERVED, iat: NOW_S }))]);
    assert.equal(JSON.parse(old.out).token.jti, undefined);
    assert.doesNotMatch((await inspect([...kubeconfig, tokenFile('v126', await signToken(key, { issuer: SERVED, audience: SERVED, iat: NOW_S }))])).out, /\n {2}jti |bound to node/);
  });

  it('a KEP-6060 token: its webhook binding and attestation; longer than 600 s or malformed it is INVALID', async () => {
    const k8s = (binding: Record<string, unknown>) => ({
      namespace: 'kube-system',
      serviceaccount: { name: 'webhook-auth', uid: '00000000-0000-0000-0000-000000000001' },
      ...binding,
    });
    const bound = { validatingwebhookconfiguration: { name: 'tokenguard', uid: 'c0ffee00-0000-4000-8000-000000000001' }, attestations: { admissionReviewAPIGroups: ['*'] } };
    const sign = (lifetimeSeconds: number, binding: Record<string, unknown>) =>
      signToken(key, { issuer: SERVED, audience: 'https://tokenguard.tokenguard.svc:443/validate', iat: NOW_S - 60, lifetimeSeconds, namespace: 'kube-system', serviceAccount: 'webhook-auth', extra: { 'kubernetes.io': k8s(binding) } });
    const ok = await inspect([...kubeconfig, tokenFile('bound', await sign(600, bound))]);
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, /\n {2}webhook binding ValidatingWebhookConfiguration tokenguard \(uid c0ffee00-0000-4000-8000-000000000001\)\n {2}attestation {5}admissionReviewAPIGroups "\*"\n/);
    const j = JSON.parse((await inspect([...kubeconfig, '--json', tokenFile('bound', await sign(600, bound))])).out);
    assert.deepEqual(j.token.webhook, { kind: 'validating', name: 'tokenguard', uid: 'c0ffee00-0000-4000-8000-000000000001' });
    assert.equal(j.token.admissionReviewAPIGroup, '*');
    const long = await inspect([...kubeconfig, tokenFile('bound-long', await sign(3600, bound))]);
    assert.equal(long.code, 1);
    assert.match(long.out, /x bound to a webhook configuration and valid for 3600 s: kube-apiserver mints these for at most 600 s\n/);
    const malformed = await inspect(['--no-cluster', tokenFile('bound-bad', await sign(600, { mutatingwebhookconfiguration: { name: 'tokenguard' }, attestations: { admissionReviewAPIGroups: ['*'] } }))]);
    assert.equal(malformed.code, 1);
    assert.match(malformed.out, /x kubernetes\.io\.mutatingwebhookconfiguration is not \{name, uid\}\n/);
  });

  it('KUBECONFIG from the environment is used when --kubeconfig is not given', async () => {
    const t = tokenFile('env', await signToken(key, { issuer: SERVED, audience: SERVED, iat: NOW_S }));
    const r = await inspect([t], { env: { KUBECONFIG: fake.kubeconfigPath } });
    assert.equal(r.code, 0);
    assert.match(r.out, /Cluster .*\(KUBECONFIG /);
  });

  it('an unreachable cluster is an I/O error: exit 2, the token still shown', async () => {
    const down = await FakeApiServer.start();
    await down.close();
    const t = tokenFile('down', await signToken(key, { issuer: SERVED, audience: SERVED, iat: NOW_S }));
    const r = await inspect(['--kubeconfig', down.kubeconfigPath, t]);
    assert.equal(r.code, 2);
    assert.match(r.out, /issuer {10}https:\/\/kubernetes\.default\.svc/);
    assert.match(r.err, /^tokenguard token inspect: cannot verify against the cluster: GET \/\.well-known\/openid-configuration: /);
  });
});

describe('token inspect offline', () => {
  let key: SigningKey;
  before(async () => {
    key = await makeSigningKey('k');
  });

  it('reads a mounted token directory and stdin; says the signature was not verified', async () => {
    const token = await signToken(key, { issuer: SERVED, audience: SERVED, iat: NOW_S - 60 });
    const mount = tempDir('sa-mount-');
    writeFileSync(join(mount, 'token'), token);
    const d = await inspect(['--no-cluster', mount]);
    assert.equal(d.code, 0);
    assert.match(d.out, new RegExp(`^Token ${mount.replace(/[.]/g, '\\.')}/token\\n`));
    assert.match(d.out, /Signature and issuer not verified \(no cluster access: use --kubeconfig\)/);
    assert.match(d.out, /Verdict: VALID as far as the times go\n$/);
    const s = await inspect(['-'], { stdin: token + '\n' });
    assert.equal(s.code, 0);
    assert.match(s.out, /^Token stdin\n/);
  });

  it('notes: within the leeway, soon to expire, past warnafter', async () => {
    const within = await inspect([tokenFile('within', await signToken(key, { issuer: SERVED, audience: SERVED, iat: NOW_S + 30 }))]);
    assert.equal(within.code, 0);
    assert.match(within.out, /! nbf is 30 s ahead of the local clock: accepted only thanks to the fixed 60 s leeway/);
    const soon = await inspect([tokenFile('soon', await signToken(key, { issuer: SERVED, audience: SERVED, iat: NOW_S - 3300, lifetimeSeconds: 3600 }))]);
    assert.equal(soon.code, 0);
    assert.match(soon.out, /! expires in 5 min: past 80 % of its 1 h lifetime, when kubelet refreshes a mounted token/);
    const stale = await inspect([
      tokenFile('stale', await signToken(key, { issuer: SERVED, audience: SERVED, iat: NOW_S - 7200, lifetimeSeconds: 31536000, warnafter: NOW_S - 3600 })),
    ]);
    assert.equal(stale.code, 0);
    assert.match(stale.out, / {2}warn after {6}2026-11-24T11:00:00Z {2}\(1 h ago\)\n/);
    assert.match(stale.out, /! past its warnafter time by 1 h/);
  });

  it('the captured token, judged at its issue time and now (--at)', async () => {
    const file = join(CLUSTER_STATE_DIR, 'token-istio-ca.jwt');
    const then = await inspect(['--at', '2026-11-23T21:50:00Z', file]);
    assert.equal(then.code, 0);
    assert.match(then.out, / {2}audiences {7}istio-ca\n/);
    assert.match(then.out, / {2}lifetime {8}10 min\n/);
    const later = await inspect([file]);
    assert.equal(later.code, 1);
    assert.match(later.out, /x expired 14(\.\d)? h ago/);
  });

  it('garbage is a clear error (exit 1), never a stack trace', async () => {
    for (const garbage of ['', 'hello', 'a.b.c', '\u0000\u0001binary', 'eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln']) {
      const r = await inspect(['-'], { stdin: garbage });
      assert.equal(r.code, 1, JSON.stringify(garbage));
      assert.match(r.out, /Verdict: INVALID\n {2}x (the token is empty|not a JWT: )/);
      assert.doesNotMatch(r.out + r.err, /\bat .*\.js:\d+/);
    }
  });

  it('I/O and usage errors: exit 2 or a UsageError', async () => {
    const missing = await inspect([join(dir, 'missing')]);
    assert.equal(missing.code, 2);
    assert.match(missing.err, /cannot read .*missing: no such file/);
    await assert.rejects(inspect([]), /missing the token/);
    await assert.rejects(inspect(['a', 'b']), /give exactly one token source/);
    await assert.rejects(inspect(['--at', 'yesterday', 'x']), /--at must be an RFC 3339 time/);
    await assert.rejects(inspect(['--no-cluster', '--kubeconfig', 'x', 'y']), /contradict/);
    await assert.rejects(inspect(['--bogus', 'x']), /unknown flag --bogus$/);
  });
});

describe('tokenguard token inspect (the real binary)', () => {
  const run = (args: string[], input?: string) =>
    new Promise<Run>((resolve) => {
      const child = execFile(process.execPath, [join(PROJECT_ROOT, 'dist/src/cli/main.js'), ...args], { env: { PATH: process.env.PATH } }, (error, out, err) =>
        resolve({ code: (error as { code?: number } | null)?.code ?? 0, out, err }),
      );
      child.stdin!.end(input ?? '');
    });

  it('is registered as a two-word command: exit codes and messages, no stack traces', async () => {
    const garbage = await run(['token', 'inspect', '-'], 'not a token');
    assert.equal(garbage.code, 1);
    assert.match(garbage.out, /not a JWT: expected three dot-separated parts/);
    assert.equal(garbage.err, '');
    const usage = await run(['token', 'inspect']);
    assert.equal(usage.code, 2);
    assert.equal(usage.err, "tokenguard token inspect: missing the token: a file, a mounted token directory, or - for stdin (see tokenguard token inspect --help)\n");
    const help = await run(['token', 'inspect', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.out, /^Usage: tokenguard token inspect/);
  });
});
