// Structured logging: one JSON object per line on stdout, which is what log pipelines expect.

import { writeSync } from 'node:fs';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  level: LogLevel;
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  enabled(level: LogLevel): boolean;
}

/**
 * A logger writing one JSON object per line: `time`, `level`, `msg`, then the fields (which must
 * not reuse those three names). It runs once per admission decision, so the line is assembled
 * directly instead of through an intermediate object, and the timestamp is formatted once per ms.
 */
export function createLogger(level: LogLevel = 'info', write: (line: string) => void = (l) => process.stdout.write(l)): Logger {
  const logger: Logger = {
    level,
    enabled: (l) => ORDER[l] >= ORDER[logger.level],
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
  let lastMs = -1;
  let lastIso = '';
  function emit(l: LogLevel, msg: string, fields?: Record<string, unknown>) {
    if (ORDER[l] < ORDER[logger.level]) return;
    const now = Date.now();
    if (now !== lastMs) {
      lastMs = now;
      lastIso = new Date(now).toISOString();
    }
    const head = `{"time":"${lastIso}","level":"${l}","msg":${JSON.stringify(msg)}`;
    const rest = fields ? JSON.stringify(fields) : '{}';
    write(rest.length > 2 ? `${head},${rest.slice(1)}\n` : `${head}}\n`);
  }
  return logger;
}

/**
 * A stdout writer that batches the lines of one event-loop turn into one write: under load that
 * is one system call for many decisions instead of one each. Lines still pending when the process
 * exits are written synchronously, so none are lost on a clean exit or process.exit().
 */
export function batchedStdout(fd = 1): (line: string) => void {
  let pending = '';
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (pending === '') return;
    const out = pending;
    pending = '';
    process.stdout.write(out);
  };
  process.once('exit', () => {
    if (pending !== '') writeSync(fd, pending);
    pending = '';
  });
  return (line) => {
    pending += line;
    if (pending.length > 65536) flush();
    else if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
}

/** For tests and commands that must stay quiet. */
export const silentLogger: Logger = createLogger('error', () => {});
