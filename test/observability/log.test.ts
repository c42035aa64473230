// The structured logger: one valid JSON object per line, time/level/msg first, levels filtered.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger, jsonString } from '../../src/observability/log.js';

describe('createLogger', () => {
  it('writes one JSON object per line with time, level, msg and the fields', () => {
    const lines: string[] = [];
    const log = createLogger('info', (l) => lines.push(l));
    const before = Date.now();
    log.info('admission decision', { uid: 'u"1', policies: ['a', 'b'], dryRun: false, skipped: undefined, latencyMs: 0.25 });
    log.warn('with "quotes"\nand a newline');
    assert.equal(lines.length, 2);
    for (const l of lines) {
      assert.ok(l.endsWith('\n'));
      assert.ok(!l.slice(0, -1).includes('\n'));
    }
    const first = JSON.parse(lines[0]!);
    assert.deepEqual(Object.keys(first), ['time', 'level', 'msg', 'uid', 'policies', 'dryRun', 'latencyMs']);
    assert.equal(first.level, 'info');
    assert.equal(first.uid, 'u"1');
    assert.ok(Date.parse(first.time) >= before - 1 && Date.parse(first.time) <= Date.now());
    assert.deepEqual(JSON.parse(lines[1]!).msg, 'with "quotes"\nand a newline');
  });

  it('drops levels below the configured one, and can be changed at run time', () => {
    const lines: string[] = [];
    const log = createLogger('warn', (l) => lines.push(l));
    log.debug('no');
    log.info('no');
    log.error('yes', {});
    assert.equal(lines.length, 1);
    assert.deepEqual(Object.keys(JSON.parse(lines[0]!)), ['time', 'level', 'msg']);
    assert.equal(log.enabled('info'), false);
    log.level = 'debug';
    assert.equal(log.enabled('debug'), true);
    log.debug('now');
    assert.equal(lines.length, 2);
  });
});

describe('members and jsonString', () => {
  it('jsonString is exactly JSON.stringify, on the fast path and off it', () => {
    const samples = ['', 'web-0', 'system:serviceaccount:kube-system:x', 'a"b', 'a\\b', 'tab\there', '\n', '\u0000', '\u007f', 'é', '…', '\u2028', '\ud800', '😀', '~/'];
    for (const s of samples) assert.equal(jsonString(s), JSON.stringify(s), JSON.stringify(s));
  });

  it('writes pre-serialised members as one JSON line after time, level and msg, at the level given if enabled', () => {
    const lines: string[] = [];
    const log = createLogger('info', (l) => lines.push(l));
    log.members('info', 'admission decision', `"uid":${jsonString('u"1')},"n":1`);
    log.members('info', 'no fields', '');
    log.members('debug', 'below the level', '"x":1');
    const { time, ...rest } = JSON.parse(lines[0]!);
    assert.ok(!Number.isNaN(Date.parse(time)));
    assert.deepEqual(rest, { level: 'info', msg: 'admission decision', uid: 'u"1', n: 1 });
    assert.deepEqual(Object.keys(JSON.parse(lines[1]!)), ['time', 'level', 'msg']);
    log.level = 'warn';
    log.members('debug', 'dropped', '"x":1');
    assert.equal(lines.length, 2);
  });
});

describe('batchedStdout', () => {
  it('writes every line, in order, even when the process exits in the same turn', async () => {
    const { execFileSync } = await import('node:child_process');
    const { fileURLToPath } = await import('node:url');
    const logModule = fileURLToPath(new URL('../../src/observability/log.js', import.meta.url));
    // 2000 lines cross the 64 KiB flush threshold several times, then exit before setImmediate runs.
    const script = `
      const { createLogger, batchedStdout } = await import(${JSON.stringify(logModule)});
      const log = createLogger('info', batchedStdout());
      for (let i = 0; i < 2000; i++) log.info('line', { i });
      process.exit(0);`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script]).toString();
    const lines = out.trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines.length, 2000);
    assert.deepEqual(lines.map((l) => l.i), Array.from({ length: 2000 }, (_, i) => i));
  });

  it('writes a lone line within the batching delay, without waiting for exit', async () => {
    const { spawnSync } = await import('node:child_process');
    const { fileURLToPath } = await import('node:url');
    const logModule = fileURLToPath(new URL('../../src/observability/log.js', import.meta.url));
    // SIGKILL skips the exit hook: the line shows up only if the timed flush wrote it.
    const script = `
      const { createLogger, batchedStdout } = await import(${JSON.stringify(logModule)});
      createLogger('info', batchedStdout(1, 10)).info('alone', { n: 1 });
      setTimeout(() => process.kill(process.pid, 'SIGKILL'), 300);`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script]);
    assert.equal(run.signal, 'SIGKILL');
    const lines = run.stdout.toString().trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => [l.msg, l.n]), [['alone', 1]]);
  });
});
