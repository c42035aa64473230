// What this build of tokenguard is: its version (package.json) and the source revision (the git
// commit, with `-dirty` when the tree had uncommitted changes) it was built from.
//
// The bundle (hack/bundle.mjs, what the container image runs) has both stamped in at bundle time.
// The tsc build, run from a checkout, reads package.json and asks git once, on first use; outside a
// git checkout (or without git) the revision is `unknown`.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BuildInfo {
  version: string;
  revision: string;
}

/** Replaced by hack/bundle.mjs (esbuild `define`); absent at run time in the tsc build. */
declare const TOKENGUARD_BUILD_INFO: BuildInfo | undefined;

export const UNKNOWN_REVISION = 'unknown';

/**
 * What `tokenguard --version` prints. A build that was not told its revision (a plain `docker
 * build .`, a copy outside git) says so, rather than printing an empty one.
 */
export function versionText(info: BuildInfo): string {
  const revision = info.revision.trim();
  return `tokenguard ${info.version} (revision ${revision && revision !== UNKNOWN_REVISION ? revision : `${UNKNOWN_REVISION}: built without a source revision`})`;
}

let cached: BuildInfo | undefined;

export function buildInfo(): BuildInfo {
  cached ??= typeof TOKENGUARD_BUILD_INFO === 'undefined' ? fromCheckout(fileURLToPath(new URL('../../../', import.meta.url))) : TOKENGUARD_BUILD_INFO;
  return cached;
}

/** Version and revision of the checkout at `root` (the folder holding package.json). */
export function fromCheckout(root: string): BuildInfo {
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  return { version, revision: gitRevision(root) };
}

/**
 * `git describe` with every tag excluded: the full commit hash, `-dirty` appended when tracked files
 * changed. Only when `root` itself is the checkout (a `.git` entry), so a copy installed inside some
 * other repository never reports that repository's commit.
 */
export function gitRevision(root: string): string {
  if (!existsSync(join(root, '.git'))) return UNKNOWN_REVISION;
  try {
    const out = execFileSync('git', ['describe', '--always', '--dirty', '--abbrev=40', '--exclude=*'], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 5000,
    });
    return out.trim() || UNKNOWN_REVISION;
  } catch {
    return UNKNOWN_REVISION;
  }
}
