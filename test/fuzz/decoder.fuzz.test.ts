// Property-based tests of the AdmissionReview decoder (admission/review.ts and the server's decode
// step): arbitrary JSON and bytes, and mutations of every recorded review. Whatever arrives, decoding
// never throws; what it refuses is a 400 with a message (never a 5xx, checked through the real HTTP
// handler for a subset); what it accepts, the engine judges without throwing. Seed and run counts:
// fuzz-support.ts.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import supertest from 'supertest';
import { Engine } from '../../src/admission/engine.js';
import type { AdmissionRequest } from '../../src/admission/review.js';
import { resolveConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/observability/log.js';
import { Readiness } from '../../src/observability/readiness.js';
import { BUILTIN_POLICIES } from '../../src/policies/index.js';
import { decodeBody } from '../../src/server/admission-pipeline.js';
import { createRequestListener } from '../../src/server/server.js';
import { anyJson, byteMutation, fuzzParams, mutateAll, mutateBytes, mutations, RECORDED, RECORDED_BYTES } from './fuzz-support.js';
import { fuzzCluster } from './fuzz-cluster.js';

const config = resolveConfig({ mode: 'enforce' }, 'fuzz', BUILTIN_POLICIES);
const engine = new Engine({
  config,
  policies: BUILTIN_POLICIES,
  cluster: fuzzCluster({ pods: [], kubeletVersion: 'v1.31.2' }),
  onPolicyError: (policy, err) => {
    throw new Error(`policy ${policy} threw: ${err instanceof Error ? err.stack : String(err)}`);
  },
});

/** Decode `body`; a refusal must be a 400 with a message; an accepted request must be judged without a throw. */
async function decodesSafely(body: Buffer): Promise<void> {
  const out = decodeBody(body);
  if ('status' in out) {
    assert.equal(out.status, 400, out.message);
    assert.equal(typeof out.message, 'string');
    assert.ok(out.message.length > 0, 'a refusal says why');
    return;
  }
  assert.equal(typeof out.uid, 'string');
  await judgedSafely(out);
}

async function judgedSafely(request: AdmissionRequest): Promise<void> {
  const validated = await engine.validate(request);
  assert.equal(typeof validated.allowed, 'boolean');
  const mutated = engine.mutate(request);
  assert.equal(typeof mutated.allowed, 'boolean');
}

const recorded = fc.constantFrom(...RECORDED.map((r) => r.review));
const recordedBytes = fc.constantFrom(...RECORDED_BYTES);

describe('fuzz: the AdmissionReview decoder', () => {
  it('arbitrary JSON values never throw; a refusal is a 400 with a message', async () => {
    await fc.assert(fc.asyncProperty(anyJson, (v) => decodesSafely(Buffer.from(JSON.stringify(v) ?? 'null'))), fuzzParams(300));
  });

  it('arbitrary bytes never throw', async () => {
    await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), (b) => decodesSafely(Buffer.from(b))), fuzzParams(200));
  });

  it('recorded reviews with fields deleted, nulled, retyped, huge, deeply nested, NUL and lone surrogates', async () => {
    await fc.assert(
      fc.asyncProperty(recorded, mutations, (review, ms) => decodesSafely(Buffer.from(JSON.stringify(mutateAll(review, ms))))),
      fuzzParams(600),
    );
  });

  it('recorded reviews with bytes flipped, inserted and truncated', async () => {
    await fc.assert(
      fc.asyncProperty(recordedBytes, fc.array(byteMutation, { minLength: 1, maxLength: 3 }), (bytes, ms) => decodesSafely(mutateBytes(bytes, ms))),
      fuzzParams(600),
    );
  });
});

describe('fuzz: the HTTP handler never answers a bad review with a 5xx', () => {
  const listener = createRequestListener({
    engine: () => engine,
    logger: silentLogger,
    maxBodyBytes: config.server.maxBodyBytes,
    readiness: new Readiness(),
  });
  const agent = supertest(listener);
  const body = fc.oneof(
    fc.tuple(recorded, mutations).map(([review, ms]) => Buffer.from(JSON.stringify(mutateAll(review, ms)))),
    fc.tuple(recordedBytes, fc.array(byteMutation, { minLength: 1, maxLength: 2 })).map(([b, ms]) => mutateBytes(b, ms)),
  );

  it('200 with an AdmissionReview for the same uid, or 400 with an error message', async () => {
    await fc.assert(
      fc.asyncProperty(body, fc.constantFrom('/validate', '/mutate'), async (bytes, path) => {
        const res = await agent.post(path).set('content-type', 'application/json').send(bytes);
        assert.ok(res.status === 200 || res.status === 400, `status ${res.status}: ${res.text.slice(0, 300)}`);
        const answer = JSON.parse(res.text);
        if (res.status === 400) {
          assert.equal(answer.error.code, 400);
          assert.ok(typeof answer.error.message === 'string' && answer.error.message.length > 0);
          return;
        }
        const sent = JSON.parse(bytes.toString('utf8'));
        assert.equal(answer.response.uid, sent.request.uid);
        assert.equal(typeof answer.response.allowed, 'boolean');
        if (answer.response.patch) assert.ok(Array.isArray(JSON.parse(Buffer.from(answer.response.patch, 'base64').toString('utf8'))));
      }),
      fuzzParams(150),
    );
  });
});
