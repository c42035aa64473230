// The rate-limited log: per event, the first lines of each interval whole, then one summary line
// with the count suppressed and an example, written when the interval ends (or on flush).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../../src/observability/log.js';
import { RateLimitedLog } from '../../src/observability/log-limit.js';

function rig(limits = { burst: 2, intervalMs: 1000 }) {
  const lines: Record<string, any>[] = [];
  let now = 0;
  const log = new RateLimitedLog(createLogger('info', (l) => lines.push(JSON.parse(l))), limits, () => now);
  return { lines, log, advance: (ms: number) => (now += ms) };
}

describe('RateLimitedLog', () => {
  it('logs the burst whole, counts the rest, and summarises them once the interval is over', () => {
    const { lines, log, advance } = rig();
    for (let i = 0; i < 10; i++) log.log('warn', 'rejected_bad_json', 'rejected admission request', { n: i, address: '10.0.0.1' });
    assert.deepEqual(lines.map((l) => [l.level, l.msg, l.event, l.n]), [
      ['warn', 'rejected admission request', 'rejected_bad_json', 0],
      ['warn', 'rejected admission request', 'rejected_bad_json', 1],
    ]);
    advance(1000);
    log.log('warn', 'rejected_bad_json', 'rejected admission request', { n: 10, address: '10.0.0.2' });
    assert.deepEqual(lines.slice(2), [
      {
        time: lines[2]!.time,
        level: 'warn',
        msg: 'log lines suppressed',
        event: 'rejected_bad_json',
        suppressed: 8,
        intervalSeconds: 1,
        example: { msg: 'rejected admission request', n: 9, address: '10.0.0.1' },
      },
      { time: lines[3]!.time, level: 'warn', msg: 'rejected admission request', event: 'rejected_bad_json', n: 10, address: '10.0.0.2' },
    ]);
  });

  it('limits each event apart: one flooding never silences another', () => {
    const { lines, log } = rig();
    for (let i = 0; i < 100; i++) log.log('warn', 'rejected_bad_json', 'rejected admission request', {});
    log.log('warn', 'caller_missing', 'caller not authenticated', {});
    assert.deepEqual(lines.map((l) => l.event), ['rejected_bad_json', 'rejected_bad_json', 'caller_missing']);
  });

  it('flush writes the pending summaries; nothing suppressed, nothing written', () => {
    const { lines, log } = rig();
    log.log('warn', 'a', 'm', {});
    log.flush();
    assert.equal(lines.length, 1, 'no summary when nothing was suppressed');
    for (let i = 0; i < 5; i++) log.log('error', 'b', 'engine failed', { uid: String(i) });
    log.flush();
    assert.deepEqual(lines.slice(-1).map((l) => [l.level, l.msg, l.event, l.suppressed, l.example.uid]), [['error', 'log lines suppressed', 'b', 3, '4']]);
  });

  it('a summary is written when the interval ends even if the flood stopped (a timer)', async () => {
    const lines: Record<string, any>[] = [];
    const log = new RateLimitedLog(createLogger('info', (l) => lines.push(JSON.parse(l))), { burst: 1, intervalMs: 50 });
    for (let i = 0; i < 3; i++) log.log('warn', 'x', 'm', {});
    assert.equal(lines.length, 1);
    await new Promise((r) => setTimeout(r, 120));
    assert.deepEqual(lines.slice(1).map((l) => [l.msg, l.suppressed]), [['log lines suppressed', 2]]);
  });

  it('below the logger\'s level: nothing counted, nothing written', () => {
    const lines: string[] = [];
    const log = new RateLimitedLog(createLogger('info', (l) => lines.push(l)), { burst: 1, intervalMs: 1000 });
    for (let i = 0; i < 3; i++) log.log('debug', 'tls_handshake_failed', 'TLS handshake failed', {});
    log.flush();
    assert.deepEqual(lines, []);
  });
});
