// `tokenguard token inspect`: decode a service-account token and say whether kube-apiserver would
// accept it, and if not why, naming the known outages: an issuer no longer accepted (the kOps 1.26
// outage, kops#16488) and clock skew beyond the fixed 60 s leeway. Offline it judges the times
// against the local clock; with cluster access it also verifies the signature against the
// cluster's JWKS and the issuer against the served one (and any extra issuers the kube-apiserver
// pods accept). The checks are src/cluster/token-verify.ts's, shared with the token self-test and
// caller authentication.

import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { JSONWebKeySet } from 'jose';
import { ApiClient } from '../cluster/client.js';
import { readDiscovery } from '../cluster/issuers.js';
import { findKubeConfig } from '../cluster/kubeconfig.js';
import { apiserverArgv, isApiserverMirrorPod } from '../k8s/apiserver-flags.js';
import {
  CAUSES,
  claimsProblems,
  decodeToken,
  humanDuration,
  TokenFormatError,
  verifyToken,
  WEBHOOK_KINDS,
  type DecodedToken,
  type TokenCause,
  type ObjectRef,
  type TokenClaims,
  type TokenProblem,
} from '../cluster/token-verify.js';
import { acceptedIssuers } from '../cluster/token-selftest.js';
import { parseFlags, UsageError, type Command } from './command.js';

const HELP = `Usage: tokenguard token inspect [flags] <FILE | DIR | ->

Decode a service-account token (a JWT) and say whether kube-apiserver would accept it: times
against the local clock (with kube-apiserver's fixed 60 s leeway), and, with cluster access, the
signature against the cluster's JWKS and the issuer against the ones the API server accepts. Shows
what the token is bound to (pod, node, secret, or a KEP-6060 webhook configuration and the API
group it attests) and its id (jti).

Input:
  FILE                 a token file
  DIR                  a pod's mounted token directory (reads DIR/token), e.g.
                       /var/run/secrets/kubernetes.io/serviceaccount
  -                    read the token from stdin

Flags:
  --kubeconfig FILE    verify against this cluster (default: KUBECONFIG or the in-cluster account)
  --no-cluster         decode and check times only
  --audience AUD       also require this audience
  --at TIME            judge at this time (RFC 3339) instead of now
  --json               machine-readable output

Exit codes: 0 valid, 1 invalid (or not a token), 2 usage or I/O error (including an unreachable cluster).
`;

/** A readable input could not be read: exit 2. */
class InputError extends Error {}

function readInput(arg: string, stdin: () => string): { source: string; text: string } {
  if (arg === '-') return { source: 'stdin', text: stdin() };
  let path = arg;
  try {
    if (statSync(arg).isDirectory()) path = join(arg, 'token');
    return { source: path, text: readFileSync(path, 'utf8') };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new InputError(`cannot read ${path}: ${why}`);
  }
}

export interface ClusterFacts {
  server: string;
  source: string;
  servedIssuer: string;
  /** The served issuer first, then extra ones kube-apiserver pods accept. */
  acceptedIssuers: string[];
  jwksUri?: string;
  keys: JSONWebKeySet;
  /** Why the kube-apiserver pods could not be read (their extra issuers are then unknown). */
  note?: string;
}

/** Discovery, JWKS and the kube-apiserver mirror pods' issuers, through the cluster client. */
export async function readClusterFacts(kubeconfig: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<ClusterFacts | undefined> {
  // ~/.kube/config is not looked at unless named: it often points at another cluster than the token's.
  const found = findKubeConfig({ kubeconfig, env, home: '' });
  if (!found) return undefined;
  const client = new ApiClient(found.kc);
  const bounds = { timeoutMs: 10_000 };
  const { issuer, jwksUri, keys } = await readDiscovery(client, bounds.timeoutMs);
  let pods: { namespace: string; name: string; nodeName: string; argv: string[] }[] = [];
  let note: string | undefined;
  try {
    const list = await client.getJson('/api/v1/namespaces/kube-system/pods', bounds);
    pods = (Array.isArray(list?.items) ? list.items : []).filter(isApiserverMirrorPod).map((p: any) => ({
      namespace: 'kube-system',
      name: p.metadata.name,
      nodeName: p.spec?.nodeName ?? '',
      argv: apiserverArgv(p),
    }));
  } catch (err) {
    note = `extra issuers of the kube-apiserver pods unknown (${(err as Error).message})`;
  }
  return {
    server: found.server,
    source: found.source,
    servedIssuer: issuer,
    acceptedIssuers: acceptedIssuers(issuer, { apiserverPods: () => pods }),
    jwksUri,
    keys,
    note,
  };
}

export interface InspectReport {
  source: string;
  valid: boolean;
  /** Whether the signature and issuer were checked against a cluster. */
  verified: boolean;
  header?: DecodedToken['header'];
  /** The claims exactly as in the token. */
  claims?: DecodedToken['payload'];
  /** The same, read as kube-apiserver reads them (what the text output shows). */
  token?: TokenClaims;
  times?: Record<string, { unix: number; iso: string; relative: string } | undefined>;
  cluster?: Omit<ClusterFacts, 'keys'> & { keyIds: string[] };
  problems: TokenProblem[];
  /** The known outages the fatal problems are. */
  causes: TokenCause[];
}

function timeEntry(unix: unknown, now: Date) {
  if (typeof unix !== 'number') return undefined;
  const delta = unix - now.getTime() / 1000;
  const rel = Math.abs(delta) < 1 ? 'now' : delta > 0 ? `in ${humanDuration(delta)}` : `${humanDuration(delta)} ago`;
  return { unix, iso: new Date(unix * 1000).toISOString().replace('.000Z', 'Z'), relative: rel };
}

export async function inspectToken(source: string, text: string, now: Date, cluster: ClusterFacts | undefined, audience?: string): Promise<InspectReport> {
  let decoded: DecodedToken;
  try {
    decoded = decodeToken(text);
  } catch (err) {
    if (!(err instanceof TokenFormatError)) throw err;
    const problems: TokenProblem[] = [{ code: 'malformed', fatal: true, message: err.message }];
    return { source, valid: false, verified: false, problems, causes: [] };
  }
  const problems = cluster
    ? (await verifyToken(text, { keys: cluster.keys, acceptedIssuers: cluster.acceptedIssuers, audience, now })).problems
    : claimsProblems(decoded.claims, { acceptedIssuers: [], audience, now });
  const c = decoded.claims;
  const { keys, ...facts } = cluster ?? ({} as Partial<ClusterFacts>);
  return {
    source,
    valid: !problems.some((p) => p.fatal),
    verified: !!cluster,
    header: decoded.header,
    claims: decoded.payload,
    token: c,
    times: {
      issuedAt: timeEntry(c.iat, now),
      notBefore: timeEntry(c.nbf, now),
      expiresAt: timeEntry(c.exp, now),
      warnAfter: timeEntry(c.warnafter, now),
    },
    ...(cluster ? { cluster: { ...(facts as Omit<ClusterFacts, 'keys'>), keyIds: (keys?.keys ?? []).map((k) => k.kid ?? '(no kid)') } } : {}),
    problems,
    causes: [...new Set(problems.flatMap((p) => (p.fatal && p.cause ? [p.cause] : [])))],
  };
}

/** What each known outage means for the token, and what to do. */
const CAUSE_ADVICE: Record<TokenCause, string> = {
  'issuer-change':
    'kube-apiserver no longer accepts the issuer this token was signed with, so it is rejected ("Unauthorized") ' +
    'however fresh. Keep the old issuer as an additional --service-account-issuer until every token it signed has expired.',
  'clock-skew':
    'the clock of the node or API server that judges this token is off by more than the fixed 60 s leeway, so the ' +
    'token is rejected ("service account token is not valid yet"). Fix time sync (chrony/NTP).',
};
const capitalized = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

export function formatReport(r: InspectReport): string {
  const lines: string[] = [`Token ${r.source}`];
  const row = (k: string, v: string | undefined) => {
    if (v !== undefined && v !== '') lines.push(`  ${k.padEnd(16)}${v}`);
  };
  if (r.token) {
    const c = r.token;
    row('issuer', c.iss);
    row('subject', c.sub);
    row('audiences', c.aud.join(', '));
    row('key id', r.header?.kid);
    row('algorithm', r.header?.alg);
    row('jti', c.jti);
    const t = r.times ?? {};
    const when = (e: { iso: string; relative: string } | undefined) => (e ? `${e.iso}  (${e.relative})` : undefined);
    row('issued at', when(t.issuedAt));
    row('not before', when(t.notBefore));
    row('expires', when(t.expiresAt));
    if (c.iat !== undefined && c.exp !== undefined) row('lifetime', humanDuration(c.exp - c.iat));
    row('warn after', when(t.warnAfter));
    row('namespace', c.namespace);
    const ref = (o: ObjectRef | undefined) => (o ? `${o.name}${o.uid ? ` (uid ${o.uid})` : ''}` : undefined);
    row('serviceaccount', ref(c.serviceAccount));
    row('bound to pod', ref(c.pod));
    row('bound to node', ref(c.node));
    row('bound to secret', ref(c.secret));
    if (c.webhook) row('webhook binding', `${WEBHOOK_KINDS[c.webhook.kind]} ${ref(c.webhook)}`);
    if (c.admissionReviewAPIGroup !== undefined) row('attestation', `admissionReviewAPIGroups ${JSON.stringify(c.admissionReviewAPIGroup)}`);
    lines.push('');
  }
  if (r.cluster) {
    lines.push(`Cluster ${r.cluster.server} (${r.cluster.source})`);
    row('served issuer', r.cluster.servedIssuer);
    const extra = r.cluster.acceptedIssuers.slice(1);
    if (extra.length) row('also accepted', extra.join(', '));
    row('keys', r.cluster.keyIds.join(', '));
    if (r.claims) {
      const forged = r.problems.some((p) => p.code === 'unknown-key' || p.code === 'bad-signature');
      row('signature', forged ? "does NOT verify against the cluster's JWKS" : `verified against the cluster's JWKS (key ${r.header?.kid ?? 'without kid'})`);
    }
    if (r.cluster.note) row('note', r.cluster.note);
  } else if (r.claims) {
    lines.push('Signature and issuer not verified (no cluster access: use --kubeconfig)');
  }
  lines.push('');
  lines.push(`Verdict: ${r.valid ? (r.verified ? 'VALID' : 'VALID as far as the times go') : 'INVALID'}`);
  for (const p of r.problems) lines.push(`  ${p.fatal ? 'x' : '!'} ${p.message}`);
  for (const cause of r.causes) lines.push('', `${capitalized(CAUSES[cause])}: ${CAUSE_ADVICE[cause]}`);
  return lines.join('\n') + '\n';
}

export interface InspectIO {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  stdin: () => string;
  env: NodeJS.ProcessEnv;
  now: () => Date;
}

const defaultIO: InspectIO = {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
  stdin: () => readFileSync(0, 'utf8'),
  env: process.env,
  now: () => new Date(),
};

export const TOKEN_INSPECT_FLAGS = {
  kubeconfig: { type: 'string' },
  'no-cluster': { type: 'boolean' },
  audience: { type: 'string' },
  at: { type: 'string' },
  json: { type: 'boolean' },
} as const;

export async function runTokenInspect(args: string[], io: InspectIO = defaultIO): Promise<number> {
  const { values, positionals } = parseFlags(args, TOKEN_INSPECT_FLAGS, true);
  if (positionals.length !== 1) throw new UsageError(positionals.length ? 'give exactly one token source' : 'missing the token: a file, a mounted token directory, or - for stdin');
  if (values.kubeconfig && values['no-cluster']) throw new UsageError('--kubeconfig and --no-cluster contradict each other');
  let now = io.now();
  if (values.at !== undefined) {
    now = new Date(values.at);
    if (Number.isNaN(now.getTime())) throw new UsageError(`--at must be an RFC 3339 time, got ${JSON.stringify(values.at)}`);
  }
  let input: { source: string; text: string };
  try {
    input = readInput(positionals[0]!, io.stdin);
  } catch (err) {
    if (err instanceof InputError) {
      io.stderr(`tokenguard token inspect: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  let cluster: ClusterFacts | undefined;
  let clusterError: string | undefined;
  if (!values['no-cluster']) {
    try {
      cluster = await readClusterFacts(values.kubeconfig, io.env);
    } catch (err) {
      clusterError = (err as Error).message;
    }
  }
  const report = await inspectToken(input.source, input.text, now, cluster, values.audience);
  if (values.json) io.stdout(JSON.stringify(clusterError ? { ...report, clusterError } : report, null, 2) + '\n');
  else io.stdout(formatReport(report));
  if (clusterError) {
    io.stderr(`tokenguard token inspect: cannot verify against the cluster: ${clusterError}\n`);
    return 2;
  }
  return report.valid ? 0 : 1;
}

export const tokenInspectCommand: Command = {
  name: 'token inspect',
  help: HELP,
  flags: TOKEN_INSPECT_FLAGS,
  run: (args) => runTokenInspect(args),
};
