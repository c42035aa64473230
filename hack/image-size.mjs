#!/usr/bin/env node
// How much the tokenguard image adds to its base: the sum of its layers above the base image (the
// Dockerfile's last FROM). Checks that the base's layers are the image's first layers.
//
//   node hack/image-size.mjs ENGINE IMAGE [--json]
//
// Prints the layers above the base and their sum (or, with --json, {base, baseBytes, imageBytes,
// aboveBaseBytes, layers: [{bytes, createdBy}]}).

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * What the image adds to its base, in MB, as the last build measured it: the one figure
 * docs/installation.md states (test/docs.test.ts holds the page to it) and the image test checks a
 * build against (test/image/image.test.ts, within RECORDED_TOLERANCE). A change of dependencies
 * that moves it: update it here, and the page.
 */
export const RECORDED_ABOVE_BASE_MB = 4.59;
export const RECORDED_TOLERANCE = 0.1;

/** The runtime base image named by the Dockerfile's last FROM, its ARG defaults substituted. */
export function runtimeBase(dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')) {
  const args = Object.fromEntries([...dockerfile.matchAll(/^ARG (\w+)=(\S+)/gm)].map((m) => [m[1], m[2]]));
  const froms = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
  return froms.at(-1).replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => args[a ?? b] ?? '');
}

export function imageSize(engine, image) {
  const base = runtimeBase();
  const inspect = (ref) => JSON.parse(execFileSync(engine, ['image', 'inspect', ref], { encoding: 'utf8' }))[0];
  const [img, bas] = [inspect(image), inspect(base)];
  const layers = img.RootFS.Layers;
  const baseLayers = bas.RootFS.Layers;
  if (!baseLayers.every((l, i) => layers[i] === l)) throw new Error(`${image} is not built on the local ${base}: its first layers differ`);
  let above;
  if (engine.endsWith('podman')) {
    // History: newest first, the base's entries last. Entries of 0 bytes are metadata (ENV, LABEL, ...).
    const history = (ref) => JSON.parse(execFileSync(engine, ['history', '--format', 'json', ref], { encoding: 'utf8' }));
    const mine = history(image);
    const own = mine.slice(0, mine.length - history(base).length);
    above = own.filter((h) => h.size > 0).map((h) => ({ bytes: h.size, createdBy: h.CreatedBy.replace(/^\/bin\/sh -c #\(nop\) /, '').trim() })).reverse();
  } else {
    above = [{ bytes: img.Size - bas.Size, createdBy: `${layers.length - baseLayers.length} layers` }];
  }
  const aboveBaseBytes = above.reduce((n, l) => n + l.bytes, 0);
  return { image, base, baseBytes: bas.Size, imageBytes: img.Size, aboveBaseBytes, layers: above };
}

const MB = (n) => `${(n / 1e6).toFixed(2)} MB`;

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [engine, image] = process.argv.slice(2);
  if (!engine || !image) {
    process.stderr.write('usage: node hack/image-size.mjs ENGINE IMAGE [--json]\n');
    process.exit(2);
  }
  const s = imageSize(engine, image);
  if (process.argv.includes('--json')) process.stdout.write(JSON.stringify(s) + '\n');
  else {
    process.stdout.write(
      `image size: ${MB(s.imageBytes)}; base ${s.base} ${MB(s.baseBytes)}; layers above the base: ${MB(s.aboveBaseBytes)}\n` +
        s.layers.map((l) => `  ${MB(l.bytes).padStart(10)}  ${l.createdBy}\n`).join(''),
    );
  }
}
