// `tokenguard check FILE|DIR|- ...`: the admission policies, offline, on manifests. Every object is
// judged as a CREATE would be at the API server (ServiceAccount plugin, then the mutating webhook,
// then the validating one), with the same engine, config and modes the server uses. Output reads
// like kubectl's, so a CI log looks like the `kubectl apply` it stands in for.

import { readFileSync } from 'node:fs';
import { Engine } from '../admission/engine.js';
import { resolveKind } from '../k8s/resources.js';
import { ConfigError, loadConfig } from '../config/load.js';
import type { TokenguardConfig } from '../config/schema.js';
import { BUILTIN_POLICIES } from '../policies/index.js';
import type { AnyPolicy } from '../admission/policy.js';
import { openClusterSession, type ClusterSession } from './cluster-session.js';
import { parseFlags, UsageError, type Command } from './command.js';
import { evaluateCreate, syntheticCreate, type Evaluation } from './evaluate.js';
import { readManifests, where, type InputProblem, type ManifestEntry } from './manifests.js';
import { errorMessage } from '../observability/errors.js';

/** The validating webhook's name in manifests/base/webhooks.yaml, as kubectl would quote it. */
export const VALIDATING_WEBHOOK = 'validate.tokenguard.io';

/** The help's example, run by test/cli/check.test.ts against the fixtures: it must print exactly this. */
export const EXAMPLE = `  $ tokenguard check --mode enforce test/fixtures/manifests/check/apps/web.yaml
  deployment.apps/api allowed (test/fixtures/manifests/check/apps/web.yaml, document 1)
  pod/web-0 allowed, mutated by pvc-token-risk (test/fixtures/manifests/check/apps/web.yaml, document 2)
  service/web allowed (test/fixtures/manifests/check/apps/web.yaml, document 3)
  Checked 3 objects in 1 file (mode enforce): 0 denied, 0 with warnings, 1 mutated.
`;

const HELP = `Usage: tokenguard check [flags] FILE|DIR|- ...

Run tokenguard's policies on manifests, offline, as the API server would on create: multi-document
YAML and JSON files, List objects, directories (recursively: *.yaml, *.yml, *.json; kustomization
files skipped) and - for stdin. Pods get the kube-api-access-* token volume the ServiceAccount
admission plugin would add. Render kustomize or Helm first: kubectl kustomize DIR | tokenguard check -

Flags:
  --config FILE          tokenguard configuration (modes, exemptions, policy settings) as deployed
  --mode MODE            enforce or warn: the default mode (per-policy and namespace modes in --config still apply)
  -o, --output FORMAT    text (default, like kubectl) or json
  -n, --namespace NS     namespace for objects that name none (default: default)
  --kubeconfig FILE      also run the policies that need cluster state, against this cluster
  --sync-timeout SECONDS how long to wait for the cluster caches (default 30)

An object the API server itself rejects (a projected token under 600 s or over 2^32 s, a value it
cannot decode) fails in every mode, printed as kubectl prints it: The Pod "x" is invalid: ...

Exit status: 0 nothing denied or invalid; 1 something would be denied, or the API server itself
rejects it; 2 usage error or unreadable input.

Example (from a checkout: npx tokenguard check ...):
${EXAMPLE}`;

export interface CheckIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  readStdin: () => string;
}

export interface ObjectResult {
  file: string;
  document: number;
  item?: number;
  line: number;
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string;
  allowed: boolean;
  denial?: string;
  /** What the API server itself rejects (kubectl's `is invalid:` part): refused in every mode. */
  invalid?: string[];
  warnings: string[];
  mutatedBy: string[];
  patch?: Evaluation['patch'];
  injected?: string;
  findings: { policy: string; severity: string; mode: string; message: string; path?: string; detail?: string; fix?: string }[];
}

export interface CheckReport {
  mode: TokenguardConfig['mode'];
  cluster?: string;
  objects: ObjectResult[];
  problems: InputProblem[];
  skippedPolicies: { policy: string; reason: string }[];
  summary: { files: number; objects: number; invalid: number; denied: number; warned: number; mutated: number; problems: number };
}

const processIO: CheckIO = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  // All input is read before anything is judged, so a synchronous read of fd 0 is all it takes.
  readStdin: () => readFileSync(0, 'utf8'),
};

export const CHECK_FLAGS = {
  config: { type: 'string' },
  mode: { type: 'string' },
  output: { type: 'string', short: 'o' },
  namespace: { type: 'string', short: 'n' },
  kubeconfig: { type: 'string' },
  'sync-timeout': { type: 'string' },
} as const;

export const checkCommand: Command = {
  name: 'check',
  help: HELP,
  flags: CHECK_FLAGS,
  run: (args) => runCheck(args, processIO),
};

export async function runCheck(args: string[], io: CheckIO): Promise<number> {
  const { values, positionals } = parseFlags(args, CHECK_FLAGS, true);
  if (positionals.length === 0) throw new UsageError('name at least one FILE, DIR or - (stdin)');
  const output = values.output ?? 'text';
  if (output !== 'text' && output !== 'json') throw new UsageError(`--output must be text or json, got ${JSON.stringify(output)}`);
  const mode = values.mode;
  if (mode !== undefined && mode !== 'enforce' && mode !== 'warn') throw new UsageError(`--mode must be enforce or warn, got ${JSON.stringify(mode)}`);
  const syncTimeout = Number(values['sync-timeout'] ?? 30);
  if (!(syncTimeout > 0)) throw new UsageError(`--sync-timeout must be a positive number of seconds, got ${JSON.stringify(values['sync-timeout'])}`);

  let config: TokenguardConfig;
  try {
    config = loadConfig(values.config, BUILTIN_POLICIES, mode ? { mode } : {});
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr(`tokenguard check: ${err.message}\n`);
    return 2;
  }

  const input = readManifests(positionals, io.readStdin);

  let session: ClusterSession | undefined;
  if (values.kubeconfig) {
    try {
      session = await openClusterSession(values.kubeconfig, config, syncTimeout);
    } catch (err) {
      io.stderr(`tokenguard check: ${errorMessage(err)}\n`);
      return 2;
    }
  }
  try {
    const report = await judge(input.entries, input.problems, config, session, values.namespace ?? 'default');
    if (output === 'json') io.stdout(JSON.stringify(report, null, 2) + '\n');
    else printText(report, io);
    if (report.problems.length > 0) return 2;
    return report.summary.denied > 0 || report.summary.invalid > 0 ? 1 : 0;
  } finally {
    session?.stop();
  }
}

async function judge(
  entries: ManifestEntry[],
  problems: InputProblem[],
  config: TokenguardConfig,
  session: ClusterSession | undefined,
  defaultNamespace: string,
): Promise<CheckReport> {
  // Without a cluster, policies that need one would only say they could not run, once per object.
  const needCluster: AnyPolicy[] = session ? [] : BUILTIN_POLICIES.filter((p) => p.needsCluster);
  const policies = BUILTIN_POLICIES.filter((p) => !needCluster.includes(p));
  const engine = new Engine({ config, policies, cluster: session?.cache });
  // Such a policy is reported as skipped only when it would have judged one of the objects.
  const skippedMatcher = needCluster.length ? new Engine({ config, policies: needCluster }) : undefined;
  const skipped = new Set<string>();
  const objects: ObjectResult[] = [];
  for (const [i, e] of entries.entries()) {
    const request = syntheticCreate(e.object, { uid: `tokenguard-check-${i + 1}`, defaultNamespace });
    for (const side of ['mutate', 'validate'] as const) for (const name of skippedMatcher?.matchingPolicies(request, side) ?? []) skipped.add(name);
    const ev = await evaluateCreate(engine, request);
    const r: ObjectResult = {
      file: e.file,
      document: e.document,
      ...(e.item !== undefined ? { item: e.item } : {}),
      line: e.line,
      apiVersion: e.object.apiVersion,
      kind: e.object.kind,
      name: request.name ?? (e.object.metadata?.generateName ? `${e.object.metadata.generateName}*` : ''),
      ...(request.namespace ? { namespace: request.namespace } : {}),
      allowed: ev.allowed,
      warnings: ev.warnings,
      mutatedBy: ev.mutatedBy,
      findings: ev.findings.map((f) => ({ policy: f.policy, severity: f.severity, mode: f.mode, message: f.message, path: f.path, detail: f.detail, fix: f.fix })),
    };
    if (ev.invalid) r.invalid = ev.invalid;
    else if (ev.denial) r.denial = ev.denial;
    if (ev.patch) r.patch = ev.patch;
    if (ev.injected) r.injected = ev.injected;
    objects.push(r);
  }
  const files = new Set([...entries.map((e) => e.file), ...problems.map((p) => p.file)]);
  return {
    mode: config.mode,
    cluster: session ? `${session.source.server} (${session.source.source})` : undefined,
    objects,
    problems,
    skippedPolicies: needCluster.filter((p) => skipped.has(p.name)).map((p) => ({ policy: p.name, reason: 'it needs cluster state (pass --kubeconfig to run it)' })),
    summary: {
      files: files.size,
      objects: objects.length,
      invalid: objects.filter((o) => o.invalid).length,
      denied: objects.filter((o) => !o.allowed && !o.invalid).length,
      warned: objects.filter((o) => o.warnings.length > 0).length,
      mutated: objects.filter((o) => o.mutatedBy.length > 0).length,
      problems: problems.length,
    },
  };
}

/** `deployment.apps/api`, as kubectl names objects. */
export function objectRef(r: Pick<ObjectResult, 'apiVersion' | 'kind' | 'name'>): string {
  const { gvk } = resolveKind(r.apiVersion, r.kind, false);
  return `${r.kind.toLowerCase()}${gvk.group ? `.${gvk.group}` : ''}/${r.name || '(no name)'}`;
}

function location(r: ObjectResult): string {
  return `document ${r.document}${r.item !== undefined ? `, item ${r.item}` : ''}`;
}

function printText(report: CheckReport, io: CheckIO): void {
  const out: string[] = [];
  for (const r of report.objects) {
    for (const w of r.warnings) out.push(`Warning: ${w}`);
    if (r.invalid) {
      // kubectl's words for an API validation error, then where the object is.
      const errors = r.invalid.length === 1 ? r.invalid[0] : `[${r.invalid.join(', ')}]`;
      out.push(`The ${r.kind} ${JSON.stringify(r.name)} is invalid: ${errors} (${r.file}, ${location(r)})`);
    } else if (!r.allowed) {
      out.push(
        `Error from server (Forbidden): error when creating ${JSON.stringify(r.file)} (${location(r)}): ` +
          `admission webhook "${VALIDATING_WEBHOOK}" denied the request: ${r.denial}`,
      );
    } else {
      const mutated = r.mutatedBy.length ? `, mutated by ${r.mutatedBy.join(', ')}` : '';
      out.push(`${objectRef(r)} allowed${mutated} (${r.file}, ${location(r)})`);
    }
  }
  for (const s of report.skippedPolicies) out.push(`Note: policy ${s.policy} skipped: ${s.reason}`);
  const { summary: n } = report;
  const parts = [`${n.denied} denied`, `${n.warned} with warnings`, `${n.mutated} mutated`];
  if (n.invalid) parts.unshift(`${n.invalid} rejected by the API server itself (in every mode)`);
  if (n.problems) parts.push(`${n.problems} input problem${n.problems === 1 ? '' : 's'}`);
  out.push(
    `Checked ${n.objects} object${n.objects === 1 ? '' : 's'} in ${n.files} file${n.files === 1 ? '' : 's'} (mode ${report.mode}` +
      `${report.cluster ? `, cluster ${report.cluster}` : ''}): ${parts.join(', ')}.`,
  );
  io.stdout(out.join('\n') + '\n');
  for (const p of report.problems) io.stderr(`error: ${where(p)}: ${p.reason}\n`);
}
