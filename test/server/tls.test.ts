// TLS from files: a rotated pair is picked up without a restart (new connections see the new
// certificate, an open keep-alive connection keeps working), a half-written or mismatched pair is
// skipped, and client certificates are checked per route when a client CA is configured.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { Agent, request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { createLogger } from '../../src/observability/log.js';
import { earliestNotAfter } from '../../src/server/tls.js';
import { certificateNotAfter } from '../../src/observability/metrics.js';
import { eventually } from '../helpers/eventually.js';
import { reviewByPrefix } from '../helpers/fixtures.js';
import { startTestServer, httpsCall, type TestServer } from '../helpers/server.js';
import { makeCerts, type CertSet } from '../helpers/tls.js';
import { tempDir } from '../helpers/temp-dir.js';

const fingerprint = (pem: Buffer) => new X509Certificate(pem).fingerprint256;
const notAfter = (file: string) => Date.parse(new X509Certificate(readFileSync(file)).validTo) / 1000;
/** tokenguard_tls_certificate_not_after_seconds{certificate}, as the next scrape reads it. */
const published = async (certificate: string) => (await certificateNotAfter.get()).values.find((v) => v.labels.certificate === certificate)?.value;

/** Replace a file the way a Secret volume update or cert-manager does: write aside, rename over. */
function replaceFile(target: string, content: Buffer) {
  const tmp = `${target}.tmp-${process.pid}`;
  writeFileSync(tmp, content);
  renameSync(tmp, target);
}

interface Answer {
  status: number;
  peer: string;
  reused: boolean;
  socket: TLSSocket;
}

function get(port: number, path: string, tls: { agent?: Agent; ca?: Buffer[] | Buffer; cert?: Buffer; key?: Buffer }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    // Without an agent of the caller's, a fresh connection (node's global agent would reuse one).
    const req = httpsRequest({ host: '127.0.0.1', port, path, servername: 'localhost', agent: false, ...tls }, (res) => {
      // Read the socket now: once the response ends it goes back to the agent (or away).
      const socket = res.socket as TLSSocket;
      const peer = socket.getPeerCertificate().fingerprint256;
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, peer, reused: req.reusedSocket, socket }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('certificate rotation', () => {
  let a: CertSet;
  let b: CertSet;
  let live: CertSet;
  let server: TestServer;
  const lines: string[] = [];
  before(async () => {
    a = makeCerts();
    // Its own CA: a different chain, not just a re-issued leaf; and a shorter life, so its expiry differs from A's.
    process.env.TOKENGUARD_CERT_DAYS = '30';
    try {
      b = makeCerts();
    } finally {
      delete process.env.TOKENGUARD_CERT_DAYS;
    }
    const dir = tempDir('tokenguard-live-');
    for (const f of ['tls.crt', 'tls.key', 'ca.crt']) copyFileSync(join(a.dir, f), join(dir, f));
    live = { ...a, dir, certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key'), caFile: join(dir, 'ca.crt') };
    server = await startTestServer({ certs: live, config: { server: { tlsReloadSeconds: 0.2 } }, logger: createLogger('info', (l) => lines.push(l)) });
  });
  after(() => server.shutdown());

  it('serves certificate A at first', async () => {
    const first = await get(server.port, '/healthz', { ca: a.ca });
    assert.equal(first.status, 200);
    assert.equal(first.peer, fingerprint(readFileSync(a.certFile)));
    assert.equal(await published('serving'), notAfter(a.certFile), 'the expiry of A is published');
    assert.equal(await published('client_ca'), undefined, 'no client CA: no series for it');
  });

  it('a mismatched pair (new cert, old key) is skipped and A stays; the complete pair B is then taken up', async () => {
    const keepAlive = new Agent({ keepAlive: true, maxSockets: 1, ca: [a.ca, b.ca] });
    const before = await get(server.port, '/healthz', { agent: keepAlive });
    assert.equal(before.peer, fingerprint(readFileSync(a.certFile)));

    // Half-way through a rotation: the certificate is B's, the key still A's.
    replaceFile(live.certFile, readFileSync(b.certFile));
    await eventually(() => lines.join('').includes('TLS reload skipped'), 'the reload to be skipped', 5000, 50);
    const skipped = JSON.parse(lines.find((l) => l.includes('TLS reload skipped'))!);
    assert.match(skipped.error, /do not form a usable pair: .*key values mismatch/);
    const during = await get(server.port, '/healthz', { ca: [a.ca, b.ca] });
    assert.equal(during.peer, fingerprint(readFileSync(a.certFile)), 'still A while the pair is inconsistent');

    // A truncated certificate is skipped the same way.
    replaceFile(live.certFile, readFileSync(b.certFile).subarray(0, 300));
    await eventually(() => /bad end line|no start line|PEM/.test(lines.join('')), 'the truncated file to be skipped', 5000, 50);
    assert.equal((await get(server.port, '/healthz', { ca: [a.ca, b.ca] })).peer, fingerprint(readFileSync(a.certFile)));

    replaceFile(live.keyFile, readFileSync(b.keyFile));
    replaceFile(live.certFile, readFileSync(b.certFile));
    const fresh = await eventually(
      async () => {
        const r = await get(server.port, '/healthz', { ca: [a.ca, b.ca] });
        return r.peer === fingerprint(readFileSync(b.certFile)) && r;
      },
      'a new connection to see certificate B',
      5000,
      50,
    );
    assert.equal(fresh.status, 200);
    assert.ok(lines.some((l) => l.includes('TLS certificate reloaded')));
    assert.equal(await published('serving'), notAfter(b.certFile), 'after the reload, the expiry of B (30 days) is published');
    assert.ok(notAfter(b.certFile) < notAfter(a.certFile) - 300 * 86400);
    // A client that trusts only the old CA can no longer connect anew.
    await assert.rejects(get(server.port, '/healthz', { ca: a.ca }), /self[- ]signed|unable to verify|certificate/i);

    // The keep-alive connection opened before the swap still works, on the same socket, with A.
    const review = reviewByPrefix('004');
    const res = await httpsCall(server.port, 'POST', '/validate', JSON.stringify(review), { 'content-type': 'application/json' }, { agent: keepAlive });
    assert.equal(res.status, 200);
    assert.equal(res.json.response.uid, review.request.uid);
    const again = await get(server.port, '/healthz', { agent: keepAlive });
    assert.equal(again.reused, true, 'the request went over the connection opened before the swap');
    assert.equal(again.socket, before.socket);
    assert.equal(again.peer, fingerprint(readFileSync(a.certFile)));
    keepAlive.destroy();
  });
});

describe('earliestNotAfter', () => {
  it('is the first expiry among the certificates of a file (a leaf and its chain, a CA bundle); none: undefined', () => {
    const a = makeCerts();
    process.env.TOKENGUARD_CERT_DAYS = '10';
    let short: CertSet;
    try {
      short = makeCerts();
    } finally {
      delete process.env.TOKENGUARD_CERT_DAYS;
    }
    const bundle = Buffer.concat([readFileSync(a.caFile), readFileSync(short.certFile), readFileSync(a.certFile)]);
    assert.equal(earliestNotAfter(bundle), notAfter(short.certFile));
    assert.equal(earliestNotAfter('not a certificate'), undefined);
  });
});

describe('client certificates', () => {
  let serving: CertSet;
  let clients: CertSet; // its CA is the configured client CA; its tls.crt (clientAuth) is the client
  let stranger: CertSet;
  let server: TestServer;
  before(async () => {
    serving = makeCerts();
    clients = makeCerts();
    stranger = makeCerts();
    server = await startTestServer({ certs: serving, config: { server: { callerAuth: { mode: 'enforce', clientCertificate: { caFile: clients.caFile } } } } });
  });
  after(() => server.shutdown());

  const review = () => JSON.stringify(reviewByPrefix('006'));
  const post = (route: string, tls: { cert?: Buffer; key?: Buffer }) =>
    httpsCall(server.port, 'POST', route, review(), { 'content-type': 'application/json' }, { ca: serving.ca, ...tls });

  it('publishes the expiry of the serving certificate and of the client CA', async () => {
    assert.equal(await published('serving'), notAfter(serving.certFile));
    assert.equal(await published('client_ca'), notAfter(clients.caFile));
  });

  it('/validate and /mutate without a client certificate -> 401', async () => {
    for (const route of ['/validate', '/mutate']) {
      const res = await post(route, {});
      assert.equal(res.status, 401);
      assert.equal(res.json.error.message, 'caller not authenticated: no client certificate and no bearer token');
      assert.equal(res.headers['www-authenticate'], 'Bearer');
    }
  });

  it('with a certificate signed by another CA -> 401', async () => {
    const res = await post('/validate', { cert: readFileSync(stranger.certFile), key: readFileSync(stranger.keyFile) });
    assert.equal(res.status, 401);
    assert.match(res.json.error.message, /^caller not authenticated: client certificate not accepted: /);
  });

  it('with a certificate signed by the client CA -> 200', async () => {
    for (const route of ['/validate', '/mutate']) {
      const res = await post(route, { cert: readFileSync(clients.certFile), key: readFileSync(clients.keyFile) });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.response.allowed, true);
    }
  });

  it('/healthz and /readyz stay reachable without one (kubelet probes present none)', async () => {
    for (const path of ['/healthz', '/readyz']) {
      const res = await httpsCall(server.port, 'GET', path, undefined, {}, { ca: serving.ca });
      assert.equal(res.status, 200, path);
    }
  });
});
