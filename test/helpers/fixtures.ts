// The captured AdmissionReviews and cluster state, copied into test/fixtures/ (see its README).

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from './tls.js';

export const FIXTURES = join(PROJECT_ROOT, 'test', 'fixtures');
export const REVIEWS_DIR = join(FIXTURES, 'admission-reviews');
export const CLUSTER_STATE_DIR = join(FIXTURES, 'cluster-state');

export function reviewFiles(): string[] {
  return readdirSync(REVIEWS_DIR).filter((f) => f.endsWith('.json')).sort();
}

/** A captured review by file-name prefix, e.g. `reviewByPrefix('070')`; a fresh copy each call. */
export function reviewByPrefix(prefix: string): any {
  const file = reviewFiles().find((f) => f.startsWith(prefix + '-'));
  if (!file) throw new Error(`no fixture ${prefix}-*`);
  return JSON.parse(readFileSync(join(REVIEWS_DIR, file), 'utf8'));
}

export function clusterState(file: string): any {
  const text = readFileSync(join(CLUSTER_STATE_DIR, file), 'utf8');
  return file.endsWith('.jsonl') ? text.trim().split('\n').map((l) => JSON.parse(l)) : JSON.parse(text);
}
