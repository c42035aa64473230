// `tokenguard audit`, section "Token refresh (observed)": the observer asked through the fake API
// server's service proxy (answering as a real v1.36 kube-apiserver does: test/fixtures/service-proxy)
// or at a direct address, a real tokenguard server answering GET /observer. An observer that reports
// an overdue pod makes audit exit 1; nothing observing is said plainly, never an empty section.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { runAudit, type AuditReport } from '../../src/cli/audit.js';
import { NOTHING_OBSERVES, observerProxyPath } from '../../src/cli/audit-observed.js';
import type { TokenObserverService } from '../../src/cluster/token-observer-service.js';
import { observerOffState } from '../../src/cluster/token-observer-state.js';
import { OBSERVER_SERVICE } from '../../src/k8s/self-managed-tls.js';
import { DEFAULT_CONFIG } from '../../src/config/schema.js';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { FIXTURES } from '../helpers/fixtures.js';
import { serveOidc } from '../helpers/oidc.js';
import { observerWithOverduePod } from '../helpers/observer.js';
import { startTestServer, testCerts, type TestServer } from '../helpers/server.js';

const SERVED = 'https://kubernetes.default.svc';
const T0 = Date.now() - 900_000;
const captured = (file: string): Record<string, any> => JSON.parse(readFileSync(join(FIXTURES, 'service-proxy', file), 'utf8'));

async function audit(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runAudit(args, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  return { code, stdout, stderr };
}

/** The text of one `== title` section of audit's table output. */
function section(stdout: string, title: string): string {
  const start = stdout.indexOf(`== ${title}\n`);
  assert.ok(start >= 0, stdout);
  const body = stdout.slice(start + title.length + 4);
  return body.slice(0, body.search(/^(== |Summary: )/m));
}

describe('tokenguard audit: Token refresh (observed)', () => {
  let fake: FakeApiServer;
  let tokenguard: TestServer;
  let observer: TokenObserverService;
  let answering: 'observer' | 'off' = 'observer';

  before(async () => {
    fake = await FakeApiServer.start();
    await serveOidc(fake, SERVED);
    fake.upsert('nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-a' }, status: { nodeInfo: { kubeletVersion: 'v1.33.1' } } });
    fake.upsert('namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } });
    observer = await observerWithOverduePod(T0, 900);
    tokenguard = await startTestServer({ observerState: () => (answering === 'observer' ? observer.state('tokenguard-abc') : observerOffState('tokenguard-abc', DEFAULT_CONFIG.observer)) });
  });
  after(async () => {
    observer.stop();
    await tokenguard.shutdown();
    await fake.close();
  });

  /** The component's Service, its Endpoints (the controller's: the labelled pod, or none), and the replica's pod. */
  function install(endpoint: boolean): void {
    fake.upsert('services', {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { namespace: 'tokenguard', name: OBSERVER_SERVICE.name },
      spec: { selector: { 'tokenguard.io/observer': 'true' }, ports: [{ name: 'https', port: 443, targetPort: 'https', protocol: 'TCP' }] },
    });
    fake.upsert('pods', { apiVersion: 'v1', kind: 'Pod', metadata: { namespace: 'tokenguard', name: 'tokenguard-abc', uid: 'uid-tg' }, spec: {}, status: { phase: 'Running', podIP: '127.0.0.1' } });
    fake.upsert('endpoints', {
      apiVersion: 'v1',
      kind: 'Endpoints',
      metadata: { namespace: 'tokenguard', name: OBSERVER_SERVICE.name },
      ...(endpoint
        ? { subsets: [{ addresses: [{ ip: '127.0.0.1', targetRef: { kind: 'Pod', namespace: 'tokenguard', name: 'tokenguard-abc' } }], ports: [{ name: 'https', port: tokenguard.port, protocol: 'TCP' }] }] }
        : {}),
    });
  }

  it('no component: says plainly that nothing observes; not a finding', async () => {
    const r = await audit(['--kubeconfig', fake.kubeconfigPath]);
    assert.equal(r.code, 0, r.stdout);
    assert.equal(
      section(r.stdout, 'Token refresh (observed)'),
      `${NOTHING_OBSERVES}\n  (asked Service tokenguard/tokenguard-observer (through the API server): no Service tokenguard/tokenguard-observer (404 services "tokenguard-observer" not found))\n\n`,
    );
    assert.match(r.stdout, /, token refresh not observed\.\n$/);
  });

  it('the Service without an endpoint (no replica holds the Lease): nothing observes, as the 503 says', async () => {
    install(false);
    const r = await audit(['--kubeconfig', fake.kubeconfigPath, '-o', 'json']);
    assert.equal(r.code, 0, r.stdout);
    const rep: AuditReport = JSON.parse(r.stdout);
    assert.deepEqual(rep.tokenRefreshObserved, {
      asked: 'Service tokenguard/tokenguard-observer (through the API server)',
      status: 'nothing observes',
      detail: 'Service tokenguard/tokenguard-observer has no endpoint: no replica holds the Lease tokenguard-observer, or tokenguard runs without --observer',
      overdue: [],
    });
    assert.equal(rep.summary.tokenRefreshOverdue, 0);
  });

  it('the observer, through the service proxy: lists the overdue pod with every field, and exits 1', async () => {
    install(true);
    const r = await audit(['--kubeconfig', fake.kubeconfigPath]);
    assert.equal(r.code, 1, r.stdout);
    const text = section(r.stdout, 'Token refresh (observed)');
    const lines = text.trimEnd().split('\n');
    assert.match(lines[0]!, /^Observer: replica tokenguard-abc, observing TokenRequests since \S+Z; 1 pod\(s\) tracked; last report \S+Z$/);
    assert.deepEqual(lines[1]!.split(/\s{3,}/), ['NAMESPACE', 'POD', 'NODE', 'KUBELET', 'TOKEN', 'LAST REFRESH', 'LATE', 'LIKELY CAUSE']);
    assert.deepEqual(lines[2]!.split(/\s{3,}/), ['shop', 'stuck', 'node-a', '-', 'vault 600 s', new Date(T0).toISOString(), '210 s', '-']);
    assert.equal(lines.length, 3);
    assert.match(r.stdout, /, 1 overdue token refresh\(es\) observed\.\n$/);
    const asked = fake.requests.filter((q) => q.path === observerProxyPath('tokenguard'));
    assert.ok(asked.length >= 1, 'through the API server');
  });

  it('a replica that does not observe says why', async () => {
    answering = 'off';
    try {
      const rep: AuditReport = JSON.parse((await audit(['--kubeconfig', fake.kubeconfigPath, '-o', 'json'])).stdout);
      assert.equal(rep.tokenRefreshObserved.status, 'nothing observes');
      assert.match(rep.tokenRefreshObserved.detail, /^replica tokenguard-abc: the token refresh observer is off on this replica \(observer\.enabled: false/);
    } finally {
      answering = 'observer';
    }
  });

  it('--observer-url: the same answer from a direct address, verified with --observer-ca', async () => {
    const url = `https://127.0.0.1:${tokenguard.port}`;
    const r = await audit(['--kubeconfig', fake.kubeconfigPath, '-o', 'json', '--observer-url', url, '--observer-ca', tokenguard.certs.caFile]);
    assert.equal(r.code, 1, r.stdout);
    const rep: AuditReport = JSON.parse(r.stdout);
    assert.equal(rep.tokenRefreshObserved.asked, `${url}/observer`);
    assert.equal(rep.tokenRefreshObserved.status, 'observing');
    assert.deepEqual(rep.tokenRefreshObserved.overdue, observer.state('x').overdue);
    assert.equal(rep.summary.tokenRefreshOverdue, 1);

    // Not verified without the CA: could not ask, and not a finding.
    const untrusted = await audit(['--kubeconfig', fake.kubeconfigPath, '-o', 'json', '--observer-url', url]);
    assert.equal(untrusted.code, 0);
    const u: AuditReport = JSON.parse(untrusted.stdout);
    assert.deepEqual([u.tokenRefreshObserved.status, u.tokenRefreshObserved.detail], ['unknown', "unable to verify the first certificate: pass --observer-ca with the CA that signed tokenguard's serving certificate"]);

    await assert.rejects(audit(['--observer-ca', tokenguard.certs.caFile]), /--observer-ca needs --observer-url/);
    await assert.rejects(audit(['--observer-url', 'http://127.0.0.1:1']), /--observer-url must be https:\/\/HOST:PORT/);
  });

  it('RBAC refuses services/proxy: could not ask, naming the permission; something else on the port: named, not misread', async () => {
    fake.route('GET', /\/services\/https:tokenguard-observer:443\/proxy\//, (_req, res, { fake: f }) => f.sendJson(res, 403, captured('forbidden-403.json')));
    const r = await audit(['--kubeconfig', fake.kubeconfigPath]);
    assert.equal(r.code, 0);
    assert.equal(
      section(r.stdout, 'Token refresh (observed)'),
      'Could not ask the observer (Service tokenguard/tokenguard-observer (through the API server)): 403 ' +
        `${captured('forbidden-403.json').message} (asking needs get on services/proxy in namespace tokenguard)\n\n`,
    );
    fake.route('GET', /\/services\/https:tokenguard-observer:443\/proxy\//, (_req, res, { fake: f }) => f.sendJson(res, 200, { ok: true }));
    const other: AuditReport = JSON.parse((await audit(['--kubeconfig', fake.kubeconfigPath, '-o', 'json'])).stdout);
    assert.deepEqual([other.tokenRefreshObserved.status, other.tokenRefreshObserved.detail], ['unknown', "the answer is not a token refresh observer's: overdue is undefined, not a list"]);
  });
});

describe('the fake API server\'s service proxy answers as the real one (test/fixtures/service-proxy)', () => {
  it('404 without the Service, 503 without an endpoint or port, and the request passed on without the caller\'s credentials', async () => {
    const fake = await FakeApiServer.start();
    const seen: IncomingHttpHeaders[] = [];
    const certs = testCerts();
    const backend = createHttpsServer({ cert: readFileSync(certs.certFile), key: readFileSync(certs.keyFile) }, (req, res) => {
      seen.push(req.headers);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ path: req.url }));
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    try {
      const get = (path: string) => proxied(fake, path);
      const path = observerProxyPath('tokenguard');
      assert.deepEqual(await get(path), { status: 404, body: captured('service-not-found-404.json') });
      fake.upsert('services', { apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'tokenguard', name: 'tokenguard-observer' }, spec: { ports: [{ name: 'https', port: 443 }] } });
      fake.upsert('endpoints', { apiVersion: 'v1', kind: 'Endpoints', metadata: { namespace: 'tokenguard', name: 'tokenguard-observer' } });
      assert.deepEqual(await get(path), { status: 503, body: captured('no-endpoints-503.json') });
      assert.deepEqual(await get(path.replace(':443/', ':8443/')), { status: 503, body: captured('no-service-port-503.json') });
      // An address that is no Pod's IP is not proxied to.
      fake.upsert('endpoints', {
        apiVersion: 'v1',
        kind: 'Endpoints',
        metadata: { namespace: 'tokenguard', name: 'tokenguard-observer' },
        subsets: [{ addresses: [{ ip: '127.0.0.1', targetRef: { kind: 'Pod', namespace: 'tokenguard', name: 'p' } }], ports: [{ name: 'https', port: (backend.address() as AddressInfo).port }] }],
      });
      assert.equal((await get(path)).status, 503);
      assert.equal(seen.length, 0);
      fake.upsert('pods', { apiVersion: 'v1', kind: 'Pod', metadata: { namespace: 'tokenguard', name: 'p' }, spec: {}, status: { podIP: '127.0.0.1' } });
      assert.deepEqual(await get(`${path}?x=1`), { status: 200, body: { path: '/observer?x=1' } });
      // As captured from v1.36 (backend-request-headers.json): no Authorization, the forwarding headers added.
      const headers = seen[0]!;
      assert.equal(headers.authorization, undefined);
      assert.equal(headers['x-forwarded-uri'], path);
      assert.equal(headers['x-forwarded-for'], '127.0.0.1');
      assert.deepEqual(Object.keys(captured('backend-request-headers.json').headers).filter((h) => h.startsWith('x-')), ['x-forwarded-for', 'x-forwarded-uri']);
    } finally {
      backend.close();
      await fake.close();
    }
  });
});

/** GET `path` from the fake as the kubeconfig's user: the status and the parsed body, as they came. */
function proxied(fake: FakeApiServer, path: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(`${fake.url}${path}`, { ca: fake.certs!.ca, headers: { authorization: `Bearer ${fake.token}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) }));
    });
    req.on('error', reject);
    req.end();
  });
}
