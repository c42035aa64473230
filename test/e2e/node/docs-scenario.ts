// Runs the blocks of docs/installation.md, docs/runbooks.md and docs/troubleshooting.md on the node
// (see docs-run.ts for how they are read): first the uninstall steps against the suite's install,
// then the install and verify steps, then every runbook and troubleshooting block. Commands run as
// the page writes them, with bash, inside the cluster's network namespace, from a folder holding a
// copy of manifests/ whose overlays map the published image to the one under test (the documented
// override for a registry of one's own: the only change).

import { before, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../helpers/tls.js';
import { eventually } from '../harness/eventually.js';
import { ok } from '../harness/kubectl.js';
import type { NodeCluster } from '../harness/node.js';
import { missingLines, pages, type DocBlock } from './docs-run.js';
import { PUBLISHED_IMAGE, splitImage, untilWebhooksServe } from './install.js';
import { boundClaim, runningPod, waitForPhase } from './workloads.js';

interface Ran {
  code: number;
  out: string;
}

export function docsScenario(cluster: () => NodeCluster, image: string): void {
  const blocks = pages();
  let workdir = '';
  let env: NodeJS.ProcessEnv = {};

  /** One shell script, inside the namespace, from the work folder. */
  const sh = (script: string): Promise<Ran> =>
    new Promise((resolve) => {
      const c = cluster();
      const child = spawn(c.inside[0]!, [...c.inside.slice(1), 'bash', '-c', script], { cwd: workdir, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code: code ?? -1, out });
      });
    });

  /**
   * The pages' placeholders, as a reader fills them in on this cluster: the claim two running pods
   * use (made for the Verify section), one of those pods, the node, the admin's kubeconfig.
   */
  const filled = (command: string): string =>
    command
      .replaceAll('<namespace>', 'shop')
      .replaceAll('<name>', 'shared')
      .replaceAll('<pod>', 'db-1')
      .replaceAll('<node>', cluster().node)
      .replaceAll('~/.kube/config', cluster().kubeconfig);

  /** A block as one script: stop at the first failure; background jobs (port-forward) end with it. */
  const runBlock = async (raw: DocBlock): Promise<void> => {
    const b = { ...raw, commands: raw.commands.map(filled) };
    const where = `${b.file}:${b.line} (${b.section})`;
    if (b.expected.length) {
      for (const [i, command] of b.commands.entries()) {
        const r = await sh(`set -o pipefail; ${command}`);
        // A page that shows `Error from server` shows a command that fails: kubectl exits 1.
        const refused = b.expected[i]!.some((l) => l.startsWith('Error from server'));
        assert.equal(r.code === 0, !refused, `${where}: \`${command}\` exited ${r.code}:\n${r.out}`);
        const missing = missingLines(b.expected[i]!, r.out);
        assert.deepEqual(missing, [], `${where}: \`${command}\` printed:\n${r.out}\nwhich lacks the lines above, as the page shows them`);
      }
      return;
    }
    // A human types the next line a moment after starting a port-forward in the background.
    const script = b.commands.map((c) => (c.trimEnd().endsWith('&') ? `${c}\nsleep 3` : c)).join('\n');
    const r = await sh(`set -eo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n${script}`);
    const grepFoundNothing = r.code === 1 && /\|\s*grep [^|]*$/.test(b.commands.at(-1)!);
    if (grepFoundNothing && b.mayFindNothing) return;
    // `tokenguard audit` exits 1 when it finds a claim Terminating in use (docs/cli.md): what the alert is about.
    if (r.code === 1 && b.exitsOneOnFindings && /^tokenguard audit\b/.test(b.commands.at(-1)!) && /^== Claims Terminating while scheduled pods use them/m.test(r.out)) return;
    assert.equal(r.code, 0, `${where} exited ${r.code}:\n${b.commands.join('\n')}\n--- printed:\n${r.out}`);
  };

  before(() => {
    const c = cluster();
    workdir = mkdtempSync(join(tmpdir(), 'tokenguard-docs-'));
    // What a clone holds that the pages' commands use.
    for (const dir of ['manifests']) cpSync(join(PROJECT_ROOT, dir), join(workdir, dir), { recursive: true });
    const { newName, newTag } = splitImage(image);
    for (const overlay of readdirSync(join(workdir, 'manifests', 'overlays'))) {
      appendFileSync(join(workdir, 'manifests', 'overlays', overlay, 'kustomization.yaml'), `\nimages:\n  - name: ${PUBLISHED_IMAGE}\n    newName: ${newName}\n    newTag: "${newTag}"\n`);
    }
    // kubectl is the cluster's version; tokenguard is this checkout's CLI, as `npx tokenguard` runs it.
    const bin = join(workdir, '.bin');
    mkdirSync(bin);
    symlinkSync(c.assets.controlPlane.kubectl, join(bin, 'kubectl'));
    writeFileSync(join(bin, 'tokenguard'), `#!/bin/sh\nexec ${process.execPath} ${join(PROJECT_ROOT, 'dist', 'src', 'cli', 'main.js')} "$@"\n`, { mode: 0o755 });
    env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, KUBECONFIG: c.kubeconfig };
  });

  const install = blocks.filter((b) => b.file === 'docs/installation.md' && b.section !== 'Uninstall');
  const uninstall = blocks.filter((b) => b.file === 'docs/installation.md' && b.section === 'Uninstall');

  it('docs/installation.md, Uninstall: every step succeeds and nothing of tokenguard is left', async () => {
    // As on a cluster that ran components/audit-reports: the report CRDs exist.
    ok(await cluster().kubectl(['apply', '-k', join(workdir, 'manifests', 'crds', 'openreports.io')]), 'the report CRDs');
    for (const b of uninstall.filter((x) => !x.skip)) await runBlock(b);
    const c = cluster();
    await eventually(async () => (await c.kubectl(['get', 'namespace', 'tokenguard'])).code !== 0, 'namespace tokenguard gone', 120_000);
    for (const kind of ['validatingwebhookconfiguration', 'mutatingwebhookconfiguration', 'clusterrole', 'clusterrolebinding']) {
      const r = await c.kubectl(['get', kind, '-o', 'name']);
      assert.ok(!/\/tokenguard\b/.test(r.stdout), `${kind} left: ${r.stdout}`);
    }
  });

  it('docs/installation.md, install and verify: every step succeeds and prints what the page shows', async () => {
    const c = cluster();
    // What the Verify section looks at: a claim two running pods mount.
    ok(await c.kubectl(['create', 'namespace', 'shop']), 'namespace shop');
    await c.apply(boundClaim(c, 'shop', 'shared') + '---\n' + runningPod('shop', 'db-1', 'shared') + '---\n' + runningPod('shop', 'reader-1', 'shared'));
    await waitForPhase(c, 'shop', 'db-1', 'Running');
    await waitForPhase(c, 'shop', 'reader-1', 'Running');
    let verified = false;
    for (const b of install.filter((x) => !x.skip)) {
      // Verifying needs what the install steps before it made: the webhooks answering.
      if (b.section === 'Verify' && !verified) {
        await untilWebhooksServe(c);
        verified = true;
      }
      await runBlock(b);
    }
    assert.ok(verified, 'docs/installation.md has a Verify section with commands');
  });

  for (const file of ['docs/runbooks.md', 'docs/troubleshooting.md']) {
    it(`${file}: every kubectl block succeeds on a healthy install`, async () => {
      const c = cluster();
      // A refused request, so that the runbooks' greps for refusals find one.
      await c.kubectl(['create', '--raw', '/api/v1/namespaces/tokenguard/services/https:tokenguard:443/proxy/validate', '-f', '-'], 'not an AdmissionReview');
      const run = blocks.filter((b) => b.file === file);
      assert.ok(run.length > 0, `${file} has kubectl blocks`);
      for (const b of run.filter((x) => !x.skip)) await runBlock(b);
      const skipped = run.filter((b) => b.skip).map((b) => `${b.file}:${b.line} ${b.skip}`);
      if (skipped.length) process.stdout.write(`# not run on the node (each marked in the page): ${skipped.join('; ')}\n`);
    });
  }
}
