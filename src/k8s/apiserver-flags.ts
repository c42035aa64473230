// Reading kube-apiserver flags from the three places the API can see them: the kube-apiserver
// mirror pod's command line, kubeadm's `kubeadm-config` ConfigMap and a Cluster API
// KubeadmControlPlane. Pure functions; bad input yields an `error` string, never a throw.
//
// Used by the service-account-issuer policy for the object under review, by the cluster cache for
// the argv it keeps of every kube-apiserver mirror pod (ApiserverPod.argv), and by `token inspect`.

import { parse as parseYaml } from 'yaml';
import type { KubeObject } from './object.js';

/** One flag occurrence, in command-line order. `value` is undefined for a bare boolean flag. */
export interface Flag {
  name: string;
  value: string | undefined;
}

const SHELLS = /(^|\/)(ba|da|a|z)?sh$/;

/**
 * Split a shell command line the way `sh -c` would for plain words: whitespace separates,
 * single quotes are literal, double quotes allow `\"` `\\` `\$` escapes, a backslash outside quotes
 * escapes the next character. Expansions (`$VAR`, globs) are left as written.
 */
export function shellWords(script: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  for (let i = 0; i < script.length; i++) {
    const c = script[i]!;
    if (c === "'") {
      const end = script.indexOf("'", i + 1);
      const stop = end === -1 ? script.length : end;
      cur += script.slice(i + 1, stop);
      i = stop;
      inWord = true;
    } else if (c === '"') {
      i++;
      for (; i < script.length && script[i] !== '"'; i++) {
        if (script[i] === '\\' && i + 1 < script.length && '"\\$`'.includes(script[i + 1]!)) i++;
        cur += script[i];
      }
      inWord = true;
    } else if (c === '\\' && i + 1 < script.length) {
      // A backslash-newline is a line continuation, not a character.
      if (script[i + 1] !== '\n') cur += script[i + 1];
      i++;
      inWord = true;
    } else if (/\s/.test(c) || c === ';') {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) words.push(cur);
  return words;
}

/** `"x"` or `'x'` -> `x`: a value quoted in a manifest means the value inside the quotes. */
function unquote(value: string): string {
  if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.at(-1) === value[0]) return value.slice(1, -1);
  return value;
}

/**
 * The words kube-apiserver receives: `argv` itself, or, for `sh -c "<script>"`, the script's words
 * (some installers start kube-apiserver through a shell to redirect its output).
 */
export function effectiveArgv(argv: readonly string[]): string[] {
  const c = argv.indexOf('-c');
  if (c >= 1 && c + 1 < argv.length && SHELLS.test(argv[0]!)) return shellWords(argv[c + 1]!);
  return [...argv];
}

/**
 * Flags of a command line, in order, repeated ones kept: `--name=value`, `--name value` (the next
 * word is the value unless it is itself a flag) and bare `--name`. Words that are not flags
 * (the binary, `/go-runner`'s target) are skipped. `-` single-dash flags are read the same way.
 */
export function parseArgv(argv: readonly string[]): Flag[] {
  const words = effectiveArgv(argv);
  const flags: Flag[] = [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (!w.startsWith('-') || w === '-' || w === '--') continue;
    const body = w.replace(/^--?/, '');
    const eq = body.indexOf('=');
    if (eq !== -1) {
      flags.push({ name: body.slice(0, eq), value: unquote(body.slice(eq + 1)) });
    } else if (i + 1 < words.length && !words[i + 1]!.startsWith('-')) {
      flags.push({ name: body, value: unquote(words[++i]!) });
    } else {
      flags.push({ name: body, value: undefined });
    }
  }
  return flags;
}

/**
 * kubeadm `extraArgs`: a map (v1beta3 and older) or a list of `{name, value}` (v1beta4, where a
 * name may repeat). Returns the flags in order, or an error naming what is wrong with the shape.
 */
export function parseExtraArgs(extraArgs: unknown): { flags: Flag[]; error?: string } {
  if (extraArgs === undefined || extraArgs === null) return { flags: [] };
  if (Array.isArray(extraArgs)) {
    const flags: Flag[] = [];
    for (const [i, item] of extraArgs.entries()) {
      if (!item || typeof item !== 'object' || typeof (item as KubeObject).name !== 'string') {
        return { flags, error: `extraArgs[${i}] is not a {name, value} entry` };
      }
      const value = (item as KubeObject).value;
      flags.push({ name: (item as KubeObject).name, value: value === undefined || value === null ? '' : String(value) });
    }
    return { flags };
  }
  if (typeof extraArgs === 'object') {
    return { flags: Object.entries(extraArgs as KubeObject).map(([name, v]) => ({ name, value: v === null ? '' : String(v) })) };
  }
  return { flags: [], error: `extraArgs is a ${typeof extraArgs}, expected a map or a list of {name, value}` };
}

/** All values of one flag, in order. */
export function flagValues(flags: readonly Flag[], name: string): string[] {
  return flags.filter((f) => f.name === name && f.value !== undefined).map((f) => f.value!);
}

/** What the issuer policy needs from a set of kube-apiserver flags. */
export interface IssuerFlags {
  /** `--service-account-issuer` values in order: the first signs new tokens, all are accepted. */
  issuers: string[];
  /** `--service-account-jwks-uri`, when set. */
  jwksUri?: string;
  /** `--api-audiences` (comma-separated, repeatable), undefined when unset. */
  apiAudiences?: string[];
  /** Set when the issuers are kubeadm's default rather than written (no `service-account-issuer` in extraArgs). */
  defaulted?: boolean;
}

export function issuerFlags(flags: readonly Flag[]): IssuerFlags {
  const out: IssuerFlags = { issuers: flagValues(flags, 'service-account-issuer') };
  const jwks = flagValues(flags, 'service-account-jwks-uri');
  if (jwks.length) out.jwksUri = jwks.at(-1);
  const audiences = flagValues(flags, 'api-audiences');
  if (audiences.length) {
    out.apiAudiences = audiences.flatMap((a) => a.split(',')).map((a) => a.trim()).filter(Boolean);
  }
  return out;
}

// ---- where the flags live ----------------------------------------------------------------------

/** A kube-apiserver mirror pod: kube-system, the mirror annotation, a kubeadm or kOps component label. */
export function isApiserverMirrorPod(obj: KubeObject): boolean {
  const meta = obj.metadata;
  if (meta?.namespace !== 'kube-system' || !meta.annotations?.['kubernetes.io/config.mirror']) return false;
  const labels = meta.labels ?? {};
  return labels.component === 'kube-apiserver' || labels['k8s-app'] === 'kube-apiserver';
}

/**
 * `command` then `args` of the kube-apiserver container: the one named `kube-apiserver` (kubeadm,
 * kOps), else the one whose command or image is kube-apiserver, else the one that carries
 * `--service-account-issuer`, else the first. The static pod may hold sidecars, listed first: an
 * external token signer (`--service-account-signing-endpoint`, GA in 1.36), a log forwarder.
 */
export function apiserverArgv(obj: KubeObject): string[] {
  const containers: KubeObject[] = Array.isArray(obj.spec?.containers) ? obj.spec.containers : [];
  const strings = (v: unknown) => (Array.isArray(v) ? v.filter((s): s is string => typeof s === 'string') : []);
  const argv = (c: KubeObject | undefined) => [...strings(c?.command), ...strings(c?.args)];
  const isApiserver = (c: KubeObject) =>
    (typeof c?.command?.[0] === 'string' && /(^|\/)kube-apiserver$/.test(c.command[0])) ||
    (typeof c?.image === 'string' && /(^|\/)kube-apiserver(:|@|$)/.test(c.image));
  const setsIssuer = (c: KubeObject) => argv(c).some((w) => /^--?service-account-issuer(=|$)/.test(w));
  return argv(
    containers.find((x) => x?.name === 'kube-apiserver') ?? containers.find(isApiserver) ?? containers.find(setsIssuer) ?? containers[0],
  );
}


/** kubeadm's issuer when extraArgs set none: `https://kubernetes.default.svc.<dnsDomain>`. */
function kubeadmDefaultIssuer(clusterConfiguration: KubeObject): string {
  const domain = clusterConfiguration?.networking?.dnsDomain;
  return `https://kubernetes.default.svc.${typeof domain === 'string' && domain ? domain : 'cluster.local'}`;
}

/** Issuer flags of a kubeadm ClusterConfiguration object (from the ConfigMap or a KubeadmControlPlane). */
export function clusterConfigurationIssuerFlags(clusterConfiguration: unknown): { flags?: IssuerFlags; error?: string } {
  if (clusterConfiguration === undefined || clusterConfiguration === null) return {};
  if (typeof clusterConfiguration !== 'object' || Array.isArray(clusterConfiguration)) {
    return { error: 'ClusterConfiguration is not a mapping' };
  }
  const cc = clusterConfiguration as KubeObject;
  const { flags, error } = parseExtraArgs(cc.apiServer?.extraArgs);
  if (error) return { error: `apiServer.${error}` };
  const out = issuerFlags(flags);
  if (out.issuers.length === 0) {
    out.issuers = [kubeadmDefaultIssuer(cc)];
    out.defaulted = true;
  }
  return { flags: out };
}

/** Issuer flags from `data.ClusterConfiguration` of the kubeadm-config ConfigMap (YAML text). */
export function kubeadmConfigMapIssuerFlags(configMap: KubeObject | null | undefined): { flags?: IssuerFlags; error?: string } {
  const text = configMap?.data?.ClusterConfiguration;
  if (text === undefined) return {};
  if (typeof text !== 'string') return { error: 'data.ClusterConfiguration is not a string' };
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (err) {
    // The yaml package throws its own Error subclasses; anything else would be a bug worth seeing as is.
    const message = err instanceof Error ? err.message : String(err);
    return { error: `data.ClusterConfiguration is not valid YAML: ${message.split('\n')[0]}` };
  }
  return clusterConfigurationIssuerFlags(parsed);
}

/** Issuer flags of a KubeadmControlPlane (`spec.kubeadmConfigSpec.clusterConfiguration`). */
export function kubeadmControlPlaneIssuerFlags(kcp: KubeObject | null | undefined): { flags?: IssuerFlags; error?: string } {
  return clusterConfigurationIssuerFlags(kcp?.spec?.kubeadmConfigSpec?.clusterConfiguration);
}

/** Issuer flags of a kube-apiserver mirror pod (undefined for any other pod). */
export function mirrorPodIssuerFlags(pod: KubeObject | null | undefined): IssuerFlags | undefined {
  if (!pod || !isApiserverMirrorPod(pod)) return undefined;
  return issuerFlags(parseArgv(apiserverArgv(pod)));
}
