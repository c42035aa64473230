// Loading the configuration: built-in defaults <- config file <- flags/environment.
// A file that does not validate stops start-up with the path of each bad field and the reason.

import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject } from 'ajv';
import { unescapePointerToken } from '../k8s/json-pointer.js';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { acceptingDefaults, buildConfigSchema, DEFAULT_CONFIG, policySettings, type PolicySettingsSpec, type TokenguardConfig } from './schema.js';
import { errorMessage } from '../observability/errors.js';

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`invalid configuration in ${source}:\n` + problems.map((p) => `  - ${p}`).join('\n'));
  }
}

/** A deep partial, for flags and tests. */
export type ConfigOverrides = { [K in keyof TokenguardConfig]?: Partial<TokenguardConfig[K]> | TokenguardConfig[K] };

export function readConfigFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(path, [`cannot read file: ${errorMessage(err)}`]);
  }
  try {
    // YAML 1.2 is a superset of JSON, so one parser serves both.
    return parseYaml(text, { prettyErrors: true }) ?? {};
  } catch (err) {
    if (err instanceof YAMLParseError) {
      const pos = err.linePos?.[0];
      throw new ConfigError(path, [`${pos ? `line ${pos.line}, column ${pos.col}: ` : ''}${err.message.split('\n')[0]}`]);
    }
    throw err;
  }
}

function formatAjvError(e: ErrorObject, policyNames: readonly string[]): string | undefined {
  const path = e.instancePath
    .split('/')
    .filter(Boolean)
    .map(unescapePointerToken)
    .reduce((acc, seg) => (/^\d+$/.test(seg) ? `${acc}[${seg}]` : acc ? `${acc}.${seg}` : seg), '');
  const at = (key: string) => (path ? `${path}.${key}` : key);
  const known = policyNames.length ? `known policies: ${policyNames.join(', ')}` : 'no policies are registered';
  const p = e.params as Record<string, unknown>;
  // The failing enum under propertyNames repeats what the propertyNames error already says.
  if ((e as { propertyName?: string }).propertyName !== undefined) return undefined;
  if (e.keyword === 'additionalProperties') {
    const key = String(p.additionalProperty);
    const moved = MOVED_KEYS[at(key)];
    if (moved) return `${at(key)}: moved to ${moved}`;
    return path === 'policies' ? `${at(key)}: unknown policy (${known})` : `${at(key)}: unknown key`;
  }
  if (e.keyword === 'propertyNames') return `${at(String(p.propertyName))}: unknown policy (${known})`;
  if (e.keyword === 'required') return `${at(String(p.missingProperty))}: required`;
  if (e.keyword === 'enum') return `${path || '(root)'}: must be one of ${JSON.stringify(p.allowedValues)}`;
  return `${path || '(root)'}: ${e.message}`;
}

/** Keys of earlier versions, and where they went. */
const MOVED_KEYS: Record<string, string> = {
  'server.clientCAFile': 'server.callerAuth.clientCertificate.caFile (with server.callerAuth.mode: audit or enforce)',
};

/** What the schema cannot say about `server.callerAuth`. */
function callerAuthProblems(config: TokenguardConfig): string[] {
  const auth = config.server.callerAuth;
  if (auth.mode === 'off' && auth.clientCertificate) {
    // A CA that checks nothing would look like protection: say so instead of starting unprotected.
    return ['server.callerAuth.mode: off, but server.callerAuth.clientCertificate.caFile is set: set mode to audit or enforce'];
  }
  return [];
}

/** What the schema cannot say about `server.selfManagedTLS`; `file` is the file as written. */
function selfManagedTLSProblems(config: TokenguardConfig, file: unknown): string[] {
  const tls = config.server.selfManagedTLS;
  if (!tls.enabled) return [];
  const problems: string[] = [];
  const server = isPlainObject(file) && isPlainObject(file.server) ? file.server : {};
  for (const key of ['tlsCertFile', 'tlsKeyFile']) {
    if (server[key] !== undefined) {
      problems.push(`server.${key}: set, but server.selfManagedTLS.enabled is true: tokenguard serves either its own certificate or the file's; remove one`);
    }
  }
  if (tls.certLifetimeSeconds > tls.caLifetimeSeconds) problems.push('server.selfManagedTLS.certLifetimeSeconds: longer than caLifetimeSeconds');
  if (tls.overlapSeconds < 2 * tls.checkSeconds) {
    problems.push(`server.selfManagedTLS.overlapSeconds: must be at least twice checkSeconds (${2 * tls.checkSeconds}), so every replica re-reads the Secret within a rotation step`);
  }
  return problems;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Merge `over` onto `base`: objects recursively, everything else (arrays too) replaced. */
export function deepMerge<T>(base: T, over: unknown): T {
  if (!isPlainObject(base) || !isPlainObject(over)) return (over === undefined ? base : over) as T;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    out[k] = k in out ? deepMerge(out[k], v) : v;
  }
  return out as T;
}

export function validateConfig(raw: unknown, source: string, policies: readonly PolicySettingsSpec[]): void {
  const ajv = new Ajv({ allErrors: true, strict: false });
  const validate = ajv.compile(acceptingDefaults(buildConfigSchema(policies)) as object);
  if (!validate(raw)) {
    const names = policies.map((p) => p.name);
    const problems = [...new Set((validate.errors ?? []).map((e) => formatAjvError(e, names)).filter((p) => p !== undefined))];
    throw new ConfigError(source, problems);
  }
}

/**
 * The effective configuration. `raw` is the parsed file (or undefined for built-in defaults);
 * `overrides` come from flags and environment and are validated like the file.
 */
export function resolveConfig(
  raw: unknown,
  source: string,
  policies: readonly PolicySettingsSpec[],
  overrides: ConfigOverrides = {},
): TokenguardConfig {
  const fileConfig = raw ?? {};
  validateConfig(fileConfig, source, policies);
  validateConfig(overrides, 'flags and environment', policies);
  const config = deepMerge(deepMerge(DEFAULT_CONFIG, fileConfig), overrides);
  const problems = [
    ...callerAuthProblems(config),
    ...selfManagedTLSProblems(config, fileConfig),
    ...policies.flatMap((p) => (p.checkSettings?.(policySettings<never>(p, config)) ?? []).map((problem) => `policies.${p.name}.${problem}`)),
  ];
  if (problems.length > 0) throw new ConfigError(source, problems);
  return config;
}

export function loadConfig(
  path: string | undefined,
  policies: readonly PolicySettingsSpec[],
  overrides: ConfigOverrides = {},
): TokenguardConfig {
  if (!path) return resolveConfig(undefined, 'built-in defaults', policies, overrides);
  return resolveConfig(readConfigFile(path), path, policies, overrides);
}
