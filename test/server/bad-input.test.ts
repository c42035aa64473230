// Bad input never crashes the server and never yields a decision: each case gets a 4xx JSON error
// naming what was wrong, and the next valid review on the same server still gets its answer.
// The table runs over real HTTPS, and again through supertest against the same request listener.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import supertest from 'supertest';
import { Readiness } from '../../src/observability/readiness.js';
import { createRequestListener } from '../../src/server/server.js';
import { Engine } from '../../src/admission/engine.js';
import { resolveConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/observability/log.js';
import { reviewByPrefix } from '../helpers/fixtures.js';
import { httpsCall, startTestServer, type HttpResult, type TestServer } from '../helpers/server.js';

const valid = () => reviewByPrefix('006'); // Pod CREATE shop/plain
const validDelete = () => reviewByPrefix('054'); // PVC DELETE shop/data
const validUpdate = () => reviewByPrefix('018'); // Pod UPDATE shop/plain

function edit(base: any, change: (r: any) => void): string {
  change(base);
  return JSON.stringify(base);
}

interface Case {
  name: string;
  method?: string;
  path?: string;
  body?: string;
  contentType?: string | null;
  status: number;
  error: RegExp;
  headers?: Record<string, RegExp>;
}

const CASES: Case[] = [
  { name: 'body not JSON', body: '{"apiVersion": "admission.k8s.io/v1", kind: ', status: 400, error: /^body is not valid JSON: / },
  { name: 'empty body', body: '', status: 400, error: /^empty body: expected an admission.k8s.io\/v1 AdmissionReview$/ },
  { name: 'JSON that is not an object', body: '[1, 2]', status: 400, error: /^invalid AdmissionReview: body: must be object$/ },
  { name: 'JSON null', body: 'null', status: 400, error: /^invalid AdmissionReview: body: must be object$/ },
  { name: 'wrong Content-Type', body: JSON.stringify(valid()), contentType: 'text/plain', status: 415, error: /^Content-Type must be application\/json, got "text\/plain"$/ },
  { name: 'no Content-Type', body: JSON.stringify(valid()), contentType: null, status: 415, error: /^Content-Type must be application\/json, got ""$/ },
  {
    name: 'wrong apiVersion',
    body: edit(valid(), (r) => (r.apiVersion = 'admission.k8s.io/v1beta1')),
    status: 400,
    error: /^invalid AdmissionReview: apiVersion: must be "admission.k8s.io\/v1"$/,
  },
  { name: 'wrong kind', body: edit(valid(), (r) => (r.kind = 'TokenReview')), status: 400, error: /^invalid AdmissionReview: kind: must be "AdmissionReview"$/ },
  { name: 'missing request', body: edit(valid(), (r) => delete r.request), status: 400, error: /^invalid AdmissionReview: request: must have required property 'request'$/ },
  { name: 'request not an object', body: edit(valid(), (r) => (r.request = 'hello')), status: 400, error: /^invalid AdmissionReview: request: must be object$/ },
  { name: 'missing uid', body: edit(valid(), (r) => delete r.request.uid), status: 400, error: /^invalid AdmissionReview: request.uid: must have required property 'uid'$/ },
  { name: 'empty uid', body: edit(valid(), (r) => (r.request.uid = '')), status: 400, error: /^invalid AdmissionReview: request.uid: must NOT have fewer than 1 characters$/ },
  { name: 'uid not a string', body: edit(valid(), (r) => (r.request.uid = 42)), status: 400, error: /^invalid AdmissionReview: request.uid: must be string$/ },
  {
    name: 'unknown operation',
    body: edit(valid(), (r) => (r.request.operation = 'PATCH')),
    status: 400,
    error: /^invalid AdmissionReview: request.operation: must be \["CREATE","UPDATE","DELETE","CONNECT"\]$/,
  },
  { name: 'missing userInfo', body: edit(valid(), (r) => delete r.request.userInfo), status: 400, error: /^invalid AdmissionReview: request.userInfo: must have required property 'userInfo'$/ },
  { name: 'resource without group', body: edit(valid(), (r) => delete r.request.resource.group), status: 400, error: /^invalid AdmissionReview: request.resource.group: must have required property 'group'$/ },
  { name: 'object is a string', body: edit(valid(), (r) => (r.request.object = 'a pod')), status: 400, error: /^invalid AdmissionReview: request.object: must be object,null$/ },
  { name: 'object is an array', body: edit(valid(), (r) => (r.request.object = [{ kind: 'Pod' }])), status: 400, error: /^invalid AdmissionReview: request.object: must be object,null$/ },
  { name: 'oldObject is a number', body: edit(validUpdate(), (r) => (r.request.oldObject = 7)), status: 400, error: /^invalid AdmissionReview: request.oldObject: must be object,null$/ },
  { name: 'CREATE without object', body: edit(valid(), (r) => delete r.request.object), status: 400, error: /^invalid AdmissionReview: request.object: required for CREATE$/ },
  { name: 'CREATE with object null', body: edit(valid(), (r) => (r.request.object = null)), status: 400, error: /^invalid AdmissionReview: request.object: required for CREATE$/ },
  { name: 'DELETE without oldObject', body: edit(validDelete(), (r) => (r.request.oldObject = null)), status: 400, error: /^invalid AdmissionReview: request.oldObject: required for DELETE$/ },
  { name: 'UPDATE without oldObject', body: edit(validUpdate(), (r) => delete r.request.oldObject), status: 400, error: /^invalid AdmissionReview: request.oldObject: required for UPDATE$/ },
  { name: 'UPDATE without object', body: edit(validUpdate(), (r) => delete r.request.object), status: 400, error: /^invalid AdmissionReview: request.object: required for UPDATE$/ },
  { name: 'dryRun not a boolean', body: edit(valid(), (r) => (r.request.dryRun = 'yes')), status: 400, error: /^invalid AdmissionReview: request.dryRun: must be boolean$/ },
  { name: 'GET on the POST route /validate', method: 'GET', path: '/validate', status: 405, error: /^method GET not allowed on \/validate: use POST/, headers: { allow: /^POST$/ } },
  { name: 'PUT on the POST route /mutate', method: 'PUT', path: '/mutate', body: JSON.stringify(valid()), status: 405, error: /^method PUT not allowed on \/mutate: use POST/, headers: { allow: /^POST$/ } },
  { name: 'unknown route', method: 'GET', path: '/nope', status: 404, error: /^no route GET \/nope; routes: POST \/validate, POST \/mutate/ },
  { name: 'POST to an unknown route', path: '/validating', body: JSON.stringify(valid()), status: 404, error: /^no route POST \/validating;/ },
  { name: 'POST to /validate/ (not the registered path)', path: '/validate/', body: JSON.stringify(valid()), status: 404, error: /^no route POST \/validate\/;/ },
];

function checkError(c: Case, res: { status: number; headers: Record<string, unknown>; text: string }) {
  assert.equal(res.status, c.status, res.text);
  assert.match(String(res.headers['content-type']), /^application\/json/);
  const body = JSON.parse(res.text);
  assert.equal(body.error.code, c.status);
  assert.match(body.error.message, c.error);
  for (const [h, re] of Object.entries(c.headers ?? {})) assert.match(String(res.headers[h]), re);
}

describe('bad input over HTTPS', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.shutdown());

  async function send(c: Case): Promise<HttpResult> {
    const headers: Record<string, string> = {};
    if (c.contentType !== null) headers['content-type'] = c.contentType ?? 'application/json';
    if (c.method && c.method !== 'POST') {
      return httpsRaw(server, c.method, c.path ?? '/validate', c.body, headers);
    }
    return httpsRaw(server, 'POST', c.path ?? '/validate', c.body ?? '', headers);
  }

  for (const c of CASES) {
    for (const route of c.path ? [c.path] : ['/validate', '/mutate']) {
      it(`${c.name} (${c.method ?? 'POST'} ${route}) -> ${c.status}`, async () => {
        checkError(c, await send({ ...c, path: route }));
        await assertStillServes(server);
      });
    }
  }

  it('a body over the default limit of 8 MiB, with Content-Length -> 413', async () => {
    assert.equal(server.config.server.maxBodyBytes, 8 * 1024 * 1024);
    const res = await postLarge(server, 8 * 1024 * 1024 + 1, true);
    assert.equal(res.status, 413);
    assert.match(res.json.error.message, /^request body of 8388609 bytes exceeds the limit of 8388608 bytes$/);
    await assertStillServes(server);
  });

  it('a body over the default limit, chunked without Content-Length -> 413', async () => {
    const res = await postLarge(server, 9 * 1024 * 1024, false);
    assert.equal(res.status, 413);
    assert.match(res.json.error.message, /^request body exceeds the limit of 8388608 bytes$/);
    await assertStillServes(server);
  });

  it('a body just under the limit is read (and judged on its content)', async () => {
    const res = await postLarge(server, 8 * 1024 * 1024, true);
    assert.equal(res.status, 400, 'padding is not JSON, but the size was accepted');
    assert.match(res.json.error.message, /^body is not valid JSON/);
  });

  it('a malformed HTTP request gets 400 and the server keeps serving', async () => {
    const { connect } = await import('node:tls');
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port: server.port, ca: server.certs.ca, servername: 'localhost' }, () => {
        socket.write('POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: banana\r\n\r\n');
      });
      let text = '';
      socket.on('data', (d) => (text += d));
      socket.on('end', () => resolve(text));
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
    });
    assert.match(reply, /^HTTP\/1.1 400 Bad Request/);
    await assertStillServes(server);
  });
});

describe('configurable body limit', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ config: { server: { maxBodyBytes: 4096 } } });
  });
  after(() => server.shutdown());

  it('a 6 KB Pod review is refused under a 4 KiB limit, both ways', async () => {
    const body = JSON.stringify(reviewByPrefix('004'));
    assert.ok(body.length > 4096);
    const declared = await server.post('/validate', body);
    assert.equal(declared.status, 413);
    assert.match(declared.json.error.message, new RegExp(`^request body of ${body.length} bytes exceeds the limit of 4096 bytes$`));
    const chunked = await httpsRaw(server, 'POST', '/validate', body, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    assert.equal(chunked.status, 413);
    assert.match(chunked.json.error.message, /^request body exceeds the limit of 4096 bytes$/);
    const small = reviewByPrefix('056'); // a 2 KB PVC DELETE
    const ok = await server.post('/validate', small);
    assert.equal(ok.status, 200);
    assert.equal(ok.json.response.uid, small.request.uid);
  });
});

describe('bad input through supertest (same listener, plain HTTP)', () => {
  const config = resolveConfig(undefined, 'test', []);
  const listener = createRequestListener({
    engine: () => new Engine({ config, policies: [] }),
    logger: silentLogger,
    maxBodyBytes: config.server.maxBodyBytes,
    readiness: new Readiness(),
  });
  const agent = supertest(listener);

  // superagent always sets a Content-Type on a body, so "no Content-Type" is covered over HTTPS only.
  for (const c of CASES.filter((c) => c.contentType !== null)) {
    it(`${c.name} -> ${c.status}`, async () => {
      const method = (c.method ?? 'POST').toLowerCase() as 'get' | 'post' | 'put';
      const req = agent[method](c.path ?? '/validate').set('content-type', c.contentType ?? 'application/json');
      const res = await (c.body !== undefined ? req.send(c.body) : req);
      checkError(c, { status: res.status, headers: res.headers, text: res.text });
      const next = await agent.post('/validate').set('content-type', 'application/json').send(JSON.stringify(valid()));
      assert.equal(next.status, 200);
      assert.equal(next.body.response.uid, valid().request.uid);
    });
  }
});

/** The server still answers a valid review correctly, on both routes. */
async function assertStillServes(server: TestServer) {
  for (const route of ['/validate', '/mutate']) {
    const review = valid();
    const res = await server.post(route, review);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.response.uid, review.request.uid);
    assert.equal(res.json.response.allowed, true);
  }
}

function httpsRaw(server: TestServer, method: string, path: string, body: string | undefined, headers: Record<string, string>): Promise<HttpResult> {
  return httpsCall(server.port, method, path, body, headers, { ca: server.certs.ca });
}

/** POST `bytes` of padding, with a Content-Length or chunked, writing as the socket drains. */
function postLarge(server: TestServer, bytes: number, withLength: boolean): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (withLength) headers['content-length'] = String(bytes);
    const req = httpsRequest({ host: '127.0.0.1', port: server.port, method: 'POST', path: '/validate', headers, ca: server.certs.ca, servername: 'localhost' }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: JSON.parse(text) });
      });
    });
    req.on('error', reject);
    const chunk = Buffer.alloc(256 * 1024, ' ');
    let left = bytes;
    const pump = () => {
      while (left > 0) {
        const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
        left -= piece.length;
        if (!req.write(piece)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}
