// The admission routes end to end over real HTTPS with test-only policies: the response format
// (uid, allowed, status, warnings, auditAnnotations, base64 JSON Patch), idempotence through the
// wire, dry-run, and the one JSON log line per decision; then each step of the pipeline alone.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fastJsonPatch from 'fast-json-patch';
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { Engine } from '../../src/admission/engine.js';
import type { AnyPolicy, Decision } from '../../src/admission/policy.js';
import { decodeBody, evaluate, headerRefusal, readBody, type Refusal } from '../../src/server/admission-pipeline.js';
import { createLogger } from '../../src/observability/log.js';
import { RateLimitedLog } from '../../src/observability/log-limit.js';
import { reviewByPrefix } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { denyPolicy, labelPolicy, PODS_CREATE, slowPolicy, warnPolicy } from '../admission/test-policies.js';

const auditing: AnyPolicy = {
  name: 'auditing',
  description: 'records an audit annotation',
  match: [PODS_CREATE],
  validate: (req) => [{ policy: 'auditing', severity: 'warn', message: 'audited', audit: { subject: req.object?.metadata?.name ?? '' } }],
};

const longWarning = 'this warning is far too long for the API server: ' + 'blah '.repeat(60);
const POLICIES: AnyPolicy[] = [
  denyPolicy('strict', { match: [PODS_CREATE] }),
  warnPolicy('chatty', ['same text', 'same text', longWarning, ...Array.from({ length: 50 }, (_, i) => `filler ${i} ` + 'f'.repeat(100))], [PODS_CREATE]),
  auditing,
  labelPolicy('labeler', { 'tokenguard.io/pvc-token-risk': 'true' }, { 'tokenguard.io/why~1': 'claim data' }),
];

describe('admission responses over HTTPS', () => {
  let server: TestServer;
  const lines: string[] = [];
  before(async () => {
    server = await startTestServer({
      policies: POLICIES,
      config: { policies: { strict: { mode: 'enforce' } } },
      logger: createLogger('debug', (l) => lines.push(l)),
    });
  });
  after(() => server.shutdown());

  it('a denial echoes the uid, sets allowed=false and status 403 with the policy message', async () => {
    const review = reviewByPrefix('004');
    const res = await server.post('/validate', review);
    assert.equal(res.status, 200);
    const r = res.json.response;
    assert.equal(r.uid, review.request.uid);
    assert.equal(r.allowed, false);
    assert.equal(r.status.code, 403);
    assert.equal(r.status.reason, 'Forbidden');
    assert.match(r.status.message, /^\[strict\] strict says no to Pod \(at spec.volumes\[0\]\)\. strict detail Fix: strict fix$/);
    assert.equal(r.patch, undefined);
  });

  it('warnings are deduplicated, an over-long one shortened at a space (never inside a word) with an ellipsis, and within 4096 in total', async () => {
    const res = await server.post('/validate', reviewByPrefix('004'));
    const warnings: string[] = res.json.response.warnings;
    assert.equal(warnings.filter((w) => w === 'same text').length, 1);
    const cut = warnings.find((w) => w.startsWith('this warning is far too long'))!;
    assert.ok(Array.from(cut).length <= 256);
    assert.ok(cut.endsWith(' blah…'), cut);
    assert.ok(warnings.every((w) => Array.from(w).length <= 256));
    assert.ok(warnings.join('').length <= 4096);
    assert.match(warnings.at(-1)!, /^tokenguard: \d+ more warnings omitted/);
    assert.deepEqual(res.json.response.auditAnnotations, { 'auditing.subject': 'web-0' });
  });

  it('/mutate returns a base64 JSONPatch that applies, and the patched object gets no patch', async () => {
    const review = reviewByPrefix('005'); // Pod without labels
    const first = await server.post('/mutate', review);
    assert.equal(first.status, 200);
    const r = first.json.response;
    assert.equal(r.allowed, true);
    assert.equal(r.patchType, 'JSONPatch');
    const ops = JSON.parse(Buffer.from(r.patch, 'base64').toString('utf8'));
    assert.deepEqual(ops, [
      { op: 'add', path: '/metadata/labels', value: { 'tokenguard.io/pvc-token-risk': 'true' } },
      { op: 'add', path: '/metadata/annotations/tokenguard.io~1why~01', value: 'claim data' },
    ]);
    const patched = fastJsonPatch.applyPatch(structuredClone(review.request.object), ops as any, true, false).newDocument;
    assert.equal(patched.metadata.annotations['tokenguard.io/why~1'], 'claim data');

    review.request.object = patched;
    const second = await server.post('/mutate', review);
    assert.equal(second.json.response.allowed, true);
    assert.equal(second.json.response.patch, undefined);
    assert.equal(second.json.response.patchType, undefined);
  });

  it('/validate never carries a patch, /mutate never runs validating policies', async () => {
    const review = reviewByPrefix('005');
    const v = await server.post('/validate', review);
    assert.equal(v.json.response.patch, undefined);
    const m = await server.post('/mutate', review);
    assert.equal(m.json.response.allowed, true, 'the strict validating policy is not consulted on /mutate');
    assert.equal(m.json.response.warnings, undefined);
  });

  it('a dry-run request gets exactly the decision of the real one', async () => {
    for (const [prefix, route] of [['004', '/validate'], ['005', '/validate'], ['005', '/mutate'], ['053', '/validate'], ['053', '/mutate']] as const) {
      const real = reviewByPrefix(prefix);
      const dry = reviewByPrefix(prefix);
      real.request.dryRun = false;
      dry.request.dryRun = true;
      const a = await server.post(route, real);
      const b = await server.post(route, dry);
      assert.equal(a.status, 200);
      assert.deepEqual(b.json, a.json, `${prefix} ${route}`);
    }
  });

  it('logs one JSON line per decision with who, what, the decision, the policies and the latency', async () => {
    lines.length = 0;
    const review = reviewByPrefix('030'); // Pod from a controller, no name yet
    review.request.dryRun = true;
    await server.post('/validate?timeout=10s', review);
    await server.post('/mutate', reviewByPrefix('005'));
    const decisions = lines.map((l) => JSON.parse(l)).filter((e) => e.msg === 'admission decision');
    assert.equal(decisions.length, 2, lines.join(''));
    const [v, m] = decisions;
    assert.equal(v.level, 'info');
    assert.ok(!Number.isNaN(Date.parse(v.time)));
    assert.equal(v.uid, review.request.uid);
    assert.equal(v.route, 'validate');
    assert.equal(v.kind, 'Pod');
    assert.equal(v.namespace, 'shop');
    assert.equal(v.name, review.request.object.metadata.generateName);
    assert.equal(v.operation, 'CREATE');
    assert.equal(v.user, 'system:serviceaccount:kube-system:replicaset-controller');
    assert.equal(v.dryRun, true);
    assert.equal(v.decision, 'denied');
    assert.deepEqual(v.policies, ['strict', 'chatty', 'auditing']);
    assert.equal(typeof v.latencyMs, 'number');
    assert.ok(v.latencyMs >= 0);
    assert.ok(v.findings.some((f: any) => f.policy === 'strict' && f.mode === 'enforce' && f.severity === 'deny'));
    assert.equal(m.route, 'mutate');
    assert.equal(m.decision, 'patched');
    assert.equal(m.level, 'debug', 'a patch without findings is routine: debug');
    assert.equal(m.dryRun, false);
    assert.deepEqual(m.policies, ['labeler']);
    assert.ok(lines.every((l) => l.endsWith('\n') && !l.slice(0, -1).includes('\n')), 'one line each');
  });

  it('a plain allow (no finding, no patch) is logged at debug, not at info', async () => {
    for (const level of ['info', 'debug'] as const) {
      const logged: string[] = [];
      const plain = await startTestServer({ logger: createLogger(level, (l) => logged.push(l)) });
      try {
        const r = await plain.post('/validate', reviewByPrefix('006')); // a pod no policy has anything to say about
        assert.equal(r.json.response.allowed, true);
        await plain.post('/validate', reviewByPrefix('014')); // warned: always at info
      } finally {
        await plain.shutdown();
      }
      const decisions = logged.map((l) => JSON.parse(l)).filter((e) => e.msg === 'admission decision');
      assert.deepEqual(
        decisions.map((d) => [d.level, d.decision]),
        level === 'info' ? [['info', 'warned']] : [['debug', 'allowed'], ['info', 'warned']],
        level,
      );
    }
  });

  it('keeps the decision line valid JSON whatever the strings hold (quotes, backslashes, newlines, unicode)', async () => {
    lines.length = 0;
    const review = reviewByPrefix('030');
    review.request.userInfo.username = 'o\'brien "the\\admin"\n\u2028é';
    review.request.object.metadata.generateName = 'wéb-\u0007-';
    await server.post('/validate', review);
    const decision = lines.map((l) => JSON.parse(l)).find((e) => e.msg === 'admission decision');
    assert.ok(decision, lines.join(''));
    assert.equal(decision.user, review.request.userInfo.username);
    assert.equal(decision.name, review.request.object.metadata.generateName);
    assert.ok(decision.findings.every((f: any) => typeof f.message === 'string' && typeof f.policy === 'string'));
    assert.ok(lines.every((l) => !l.slice(0, -1).includes('\n')), 'still one line');
  });

  it('logs a rejected request once, naming the error', async () => {
    lines.length = 0;
    await server.post('/validate', '{');
    const entries = lines.map((l) => JSON.parse(l));
    assert.equal(entries.length, 1);
    assert.equal(entries[0].level, 'warn');
    assert.equal(entries[0].status, 400);
    assert.match(entries[0].error, /not valid JSON/);
  });
});

describe('async gather on the validating side', () => {
  it('waits for a slow gather and answers with what it found', async () => {
    const server = await startTestServer({ policies: [slowPolicy('slow', 50)] });
    try {
      const res = await server.post('/validate', reviewByPrefix('006'));
      assert.deepEqual(res.json.response.warnings, ['slow waited 50 ms']);
    } finally {
      await server.shutdown();
    }
  });
});

describe('policies with bugs', () => {
  const returnsNothing: AnyPolicy = {
    name: 'returns-nothing',
    description: 'returns undefined from both sides',
    match: [PODS_CREATE],
    validate: () => undefined as never,
    mutate: () => undefined as never,
  };
  const malformed: AnyPolicy = {
    name: 'malformed',
    description: 'a finding without a message',
    match: [PODS_CREATE],
    validate: () => [{ policy: 'malformed', severity: 'deny' } as never],
  };

  it('never break the answer: the request is allowed with a warning naming the policy, and the server keeps serving', async () => {
    const server = await startTestServer({ policies: [returnsNothing, malformed], config: { mode: 'enforce' } });
    try {
      for (const route of ['/validate', '/mutate']) {
        const review = reviewByPrefix('006');
        const res = await server.post(route, review);
        assert.equal(res.status, 200, res.text);
        assert.equal(res.json.response.uid, review.request.uid);
        assert.equal(res.json.response.allowed, true);
        assert.equal(res.json.response.patch, undefined);
        assert.ok(res.json.response.warnings.some((w: string) => w.includes('policy returns-nothing could not run')), res.text);
        if (route === '/validate') assert.ok(res.json.response.warnings.some((w: string) => w.includes('policy malformed could not run (validate returned a malformed finding')));
      }
      assert.equal((await server.get('/healthz')).status, 200);
    } finally {
      await server.shutdown();
    }
  });
});

// Each step of the pipeline alone (src/server/admission-pipeline.ts), without a server.
describe('pipeline steps', () => {
  const headers = (h: Record<string, string>) => ({ headers: h }) as unknown as IncomingMessage;

  it('headerRefusal: a body that is not JSON (415) or declared over the limit (413, closing)', () => {
    assert.equal(headerRefusal(headers({ 'content-type': 'application/json; charset=utf-8', 'content-length': '10' }), 100), undefined);
    assert.deepEqual(headerRefusal(headers({ 'content-type': 'text/plain' }), 100), { status: 415, reason: 'unsupported_media_type', message: 'Content-Type must be application/json, got "text/plain"' });
    assert.deepEqual(headerRefusal(headers({ 'content-type': 'application/json', 'content-length': '101' }), 100), {
      status: 413,
      reason: 'too_large',
      message: 'request body of 101 bytes exceeds the limit of 100 bytes',
      close: true,
    });
  });

  it('readBody: the bytes of several chunks, or a 413 once the limit is passed (reported once)', () => {
    const read = (chunks: string[], limit: number) => {
      const req = new EventEmitter() as IncomingMessage;
      const got: (Buffer | Refusal)[] = [];
      readBody(req, limit, (b) => got.push(b));
      for (const c of chunks) req.emit('data', Buffer.from(c));
      req.emit('end');
      return got;
    };
    assert.deepEqual(read(['{"a":', '1}'], 100).map(String), ['{"a":1}']);
    assert.deepEqual(read(['12345', '67890', 'x'], 8), [{ status: 413, reason: 'too_large', message: 'request body exceeds the limit of 8 bytes', close: true }]);
  });

  it('decodeBody: the request, or why there is none (empty, not JSON, not an AdmissionReview)', () => {
    const review = reviewByPrefix('006');
    const decoded = decodeBody(Buffer.from(JSON.stringify(review)));
    assert.equal((decoded as { uid: string }).uid, review.request.uid);
    assert.deepEqual(decodeBody(Buffer.alloc(0)), { status: 400, reason: 'empty_body', message: 'empty body: expected an admission.k8s.io/v1 AdmissionReview' });
    assert.match((decodeBody(Buffer.from('{"apiVersion":')) as Refusal).message, /^body is not valid JSON: /);
    assert.deepEqual(decodeBody(Buffer.from('{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}')), {
      status: 400,
      reason: 'invalid_review',
      message: 'invalid AdmissionReview: request: must have required property \'request\'',
    });
  });

  it('evaluate: a throwing or rejecting engine fails open with a warning, once', async () => {
    const request = reviewByPrefix('006').request;
    const lines: string[] = [];
    const logger = createLogger('debug', (l) => lines.push(l));
    const broken = (validate: () => unknown) => ({ validate, mutate: validate }) as unknown as Engine;
    const answers: Decision[] = [];
    const log = new RateLimitedLog(logger);
    evaluate(broken(() => { throw new Error('boom'); }), 'validate', request, log, (d) => answers.push(d));
    await new Promise<void>((resolve) => evaluate(broken(() => Promise.reject(new Error('late boom'))), 'validate', request, log, (d) => resolve(void answers.push(d))));
    assert.equal(answers.length, 2);
    for (const d of answers) assert.deepEqual([d.allowed, d.warnings], [true, ['tokenguard: internal error, request not checked; see the tokenguard logs']]);
    assert.deepEqual(lines.map((l) => JSON.parse(l).msg), ['engine failed', 'engine failed']);
  });

  it('evaluate: a decision whose answer throws fails open instead of escaping', () => {
    const request = reviewByPrefix('006').request;
    const engine = { validate: () => ({ allowed: true, warnings: [], auditAnnotations: {}, findings: [], fired: [] }) } as unknown as Engine;
    const answers: Decision[] = [];
    let first = true;
    evaluate(engine, 'validate', request, new RateLimitedLog(createLogger('error', () => {})), (d) => {
      if (first) {
        first = false;
        throw new Error('socket gone');
      }
      answers.push(d);
    });
    assert.equal(answers[0]?.warnings[0], 'tokenguard: internal error, request not checked; see the tokenguard logs');
  });
});
