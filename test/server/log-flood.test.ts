// A flood of malformed reviews over real HTTPS (bad JSON, a wrong kind, no JSON content type, an
// empty body, a body over the limit): every one is answered and counted by the metric and its
// reason, and the log gets a few whole lines per reason and one summary each, not a line per request.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../../src/observability/log.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const REQUESTS = 10_000;
const CONCURRENCY = 16;
const MAX_BODY = 1024;

/** The malformed requests, sent in turn: [reason, body, content type]. */
const MALFORMED: [string, string, string][] = [
  ['bad_json', '{"apiVersion":"admission.k8s.io/v1","kind":', 'application/json'],
  ['invalid_review', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'ConfigMap', request: { uid: 'x' } }), 'application/json'],
  ['unsupported_media_type', '{}', 'text/plain'],
  ['empty_body', '', 'application/json'],
  ['too_large', JSON.stringify({ pad: 'x'.repeat(MAX_BODY) }), 'application/json'],
];

/** `tokenguard_admission_rejected_total{route="validate",reason=...}` from a scrape. */
async function rejected(server: TestServer): Promise<Record<string, number>> {
  const text = (await server.get('/metrics')).text;
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^tokenguard_admission_rejected_total\{route="validate",reason="([a-z_]+)"\} (\d+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

describe(`a flood of ${REQUESTS} malformed reviews`, () => {
  const lines: Record<string, any>[] = [];
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ config: { server: { maxBodyBytes: MAX_BODY } }, logger: createLogger('debug', (l) => lines.push(JSON.parse(l))) });
  });
  after(() => server.shutdown());

  it('is answered and counted in full by the metric and reason; the log gets a few lines per reason and a summary each', async () => {
    const before_ = await rejected(server);
    const statuses = new Map<number, number>();
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < REQUESTS) {
          const [, body, type] = MALFORMED[next++ % MALFORMED.length]!;
          const r = await server.post('/validate', body, { 'content-type': type });
          statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        }
      }),
    );
    assert.deepEqual(Object.fromEntries(statuses), { 400: REQUESTS * 0.6, 413: REQUESTS * 0.2, 415: REQUESTS * 0.2 });
    const after_ = await rejected(server);
    const counted = Object.fromEntries(MALFORMED.map(([reason]) => [reason, (after_[reason] ?? 0) - (before_[reason] ?? 0)]));
    assert.deepEqual(counted, Object.fromEntries(MALFORMED.map(([reason]) => [reason, REQUESTS / MALFORMED.length])), 'every request counted, by reason');
    const total = Object.values(counted).reduce((a, b) => a + b, 0);

    await server.shutdown(); // writes the summaries of the interval still open
    const rejections = lines.filter((l) => l.msg === 'rejected admission request');
    const summaries = lines.filter((l) => l.msg === 'log lines suppressed');
    const others = lines.filter((l) => !rejections.includes(l) && !summaries.includes(l)).map((l) => l.msg);
    process.stdout.write(
      `# ${REQUESTS} malformed requests: metric counted ${total}; ${lines.length} log lines (${rejections.length} whole, ${summaries.length} summaries, others: ${others.join('; ') || 'none'})\n`,
    );
    assert.equal(total, REQUESTS);
    assert.equal(rejections.length, 5 * MALFORMED.length, 'the first 5 of each reason whole');
    for (const l of rejections) {
      assert.equal(l.address, '127.0.0.1', 'each whole line names the client address');
      assert.ok(l.event.startsWith('rejected_') && l.error, JSON.stringify(l));
    }
    assert.deepEqual(
      summaries.map((s) => [s.event, s.suppressed, s.example.msg, s.example.address]).sort(),
      MALFORMED.map(([reason]) => [`rejected_${reason}`, REQUESTS / MALFORMED.length - 5, 'rejected admission request', '127.0.0.1']).sort(),
      'one summary per reason, with the count suppressed and an example',
    );
    assert.ok(lines.length <= 40, `at most a few dozen lines in all, got ${lines.length}`);
  });
});
