// The pure policies as CEL: for each, the findings the webhook would report on the request's object,
// as a CEL list of `{'s': severity, 'm': message, 'd': denial text}` in the webhook's order. The
// texts come from the policies' own templates (LIFETIME_TEXT, AUDIENCE_TEXT, NFS_TEXT) and the
// settings from the same configuration the webhook loads, so only the control flow is written
// twice: here and in src/policies/. The differential e2e test (test/e2e/vap-differential.ts) runs
// both on the same objects through a real kube-apiserver.

import type { AnyPolicy } from '../admission/policy.js';
import { MAX_WARNING_CHARS } from '../admission/warnings.js';
import { policySettings, type TokenguardConfig } from '../config/schema.js';
import { DEFAULT_SERVICE_ACCOUNT, POD_SPEC_TOKENS } from '../k8s/pod-spec.js';
import {
  AUDIENCE_TEXT,
  POLICY as AUDIENCE,
  projectedTokenAudiencePolicy,
  type AudienceSettings,
} from '../policies/projected-token-audience.js';
import {
  DEFAULT_EXPIRATION_SECONDS,
  EXTENDED_EXPIRATION_SECONDS,
  LIFETIME_TEXT,
  POLICY as LIFETIME,
  projectedTokenLifetimePolicy,
  type LifetimeSettings,
} from '../policies/projected-token-lifetime.js';
import { MOUNT_OPTIONS_ANNOTATION, NFS_TEXT, POLICY as NFS, nfsMountOptionsPolicy, type NfsSettings } from '../policies/nfs-mount-options.js';
import { bind, celDenial, celJsonString, celText, matchesAny, str, strList } from './cel.js';
import { NAMESPACE } from './scope.js';

export interface Variable {
  name: string;
  expression: string;
}

/** A pure policy in CEL: the variables its findings need, and the findings. */
export interface CelPolicy {
  policy: AnyPolicy;
  variables: Variable[];
  /** CEL: a list of maps `{'s': 'deny'|'warn', 'm': message, 'd': denial text}`, in the webhook's order. */
  findings: string;
  /** The severities its findings can have (which generated policies it needs). */
  severities: ReadonlySet<'deny' | 'warn'>;
}

/** One finding as a CEL map; `condition` empty for an unconditional one. */
function finding(policy: string, severity: 'deny' | 'warn', message: string, path: string, detail: string, fix: string): string {
  return `{'s': ${str(severity)}, 'm': ${message}, 'd': ${celDenial(policy, message, path, detail, fix)}}`;
}

/** CEL optional chain `object.?a.?b...` over the tokens, for a field that may be missing at any level. */
function optionalPath(root: string, tokens: readonly string[]): string {
  return root + tokens.map((t) => `.?${t}`).join('');
}

/**
 * The variables every pod-spec policy starts from: `specPath` (the dotted path of the pod spec, as
 * the webhook's paths start) and `volumes` (the pod spec's volumes, `[]` when there are none), by
 * the request's kind, from the same table podSpecOf reads (POD_SPEC_TOKENS).
 */
export function podSpecVariables(): Variable[] {
  const kinds = Object.entries(POD_SPEC_TOKENS);
  let specPath = "''";
  let volumes = '[]';
  for (const [kind, tokens] of [...kinds].reverse()) {
    const isKind = `request.kind.kind == ${str(kind)}`;
    specPath = `${isKind} ? ${str(tokens.join('.'))} : ${specPath}`;
    volumes = `${isKind} ? ${optionalPath('object', [...tokens, 'volumes'])}.orValue([]) : ${volumes}`;
  }
  return [
    { name: 'specPath', expression: specPath },
    { name: 'volumes', expression: volumes },
  ];
}

/** A volume `v` whose projected sources are a list (the API server writes `sources: null` for none). */
const PROJECTED = 'has(v.projected) && type(v.projected.sources) == list';
/** The path of source `j` of volume `i`, as the webhook writes it. */
const sourcePath = (leaf: string) =>
  `variables.specPath + '.volumes[' + string(i) + '].projected.sources[' + string(j) + '].serviceAccountToken.${leaf}'`;
const QUOTED_VOLUME = `'"' + v.name + '"'`; // volume names are DNS labels: JSON.stringify adds only the quotes

/** isInjectedApiAccessVolume (src/k8s/pod-spec.ts) for volume `v`, whose sources are a list. */
const INJECTED =
  `v.name.matches('^kube-api-access-[a-z0-9]+$') && ` +
  `v.projected.sources.filter(s, has(s.serviceAccountToken)).size() == 1 && ` +
  `v.projected.sources.exists(s, has(s.serviceAccountToken) && s.serviceAccountToken.path == 'token' && ` +
  `has(s.serviceAccountToken.expirationSeconds) && s.serviceAccountToken.expirationSeconds == ${EXTENDED_EXPIRATION_SECONDS} && ` +
  `(!has(s.serviceAccountToken.audience) || s.serviceAccountToken.audience == '')) && ` +
  `v.projected.sources.exists(s, has(s.configMap) && has(s.configMap.name) && s.configMap.name == 'kube-root-ca.crt')`;

/**
 * The variable `serviceAccount`: the pod spec's ServiceAccount as podServiceAccount reads it
 * (`serviceAccountName`, else the deprecated `serviceAccount`, else `default`), by kind.
 */
export function serviceAccountVariable(): Variable {
  const named = (tokens: readonly string[], field: string, fallback: string) =>
    bind(field, `${optionalPath('object', [...tokens, field])}.orValue('')`, `${field} != '' ? ${field} : ${fallback}`);
  let account = str(DEFAULT_SERVICE_ACCOUNT);
  for (const [kind, tokens] of [...Object.entries(POD_SPEC_TOKENS)].reverse()) {
    const name = named(tokens, 'serviceAccountName', named(tokens, 'serviceAccount', str(DEFAULT_SERVICE_ACCOUNT)));
    account = `request.kind.kind == ${str(kind)} ? ${name} : ${account}`;
  }
  return { name: 'serviceAccount', expression: account };
}

/** CEL that is true where a per-namespace entry applies: its namespaces, and its ServiceAccounts when it names some (namespaceScope). */
function entryApplies(entry: { namespaces: string[]; serviceAccounts?: string[] }): string {
  const namespace = matchesAny(NAMESPACE, entry.namespaces);
  return entry.serviceAccounts ? `(${namespace} && ${matchesAny('variables.serviceAccount', entry.serviceAccounts)})` : namespace;
}

/** A per-namespace value: the last matching entry's, else `fallback` (CEL), as prepareBounds folds them. */
function perNamespace<E extends { namespaces: string[]; serviceAccounts?: string[] }>(entries: readonly E[], pick: (e: E) => string | undefined, fallback: string): string {
  let expr = fallback;
  for (const entry of entries) {
    const value = pick(entry);
    if (value === undefined) continue;
    expr = `${entryApplies(entry)} ? ${value} : ${expr}`;
  }
  return expr;
}

/** The variables a token policy needs to scope its entries: `serviceAccount` only where an entry names ServiceAccounts. */
function scopeVariables(entries: readonly { serviceAccounts?: string[] }[]): Variable[] {
  return entries.some((e) => e.serviceAccounts) ? [serviceAccountVariable()] : [];
}

export function lifetimeCel(config: TokenguardConfig): CelPolicy {
  const s = policySettings<LifetimeSettings>(projectedTokenLifetimePolicy, config);
  const T = LIFETIME_TEXT;
  const boundVars = (bound: 'min' | 'max', key: 'minSeconds' | 'maxSeconds'): Variable[] => {
    // Each value where an entry sets this bound, else the fallback: the same fold for the bound, its scope and its source.
    const fold = (value: (e: LifetimeSettings['namespaces'][number]) => string, fallback: string) =>
      perNamespace(s.namespaces, (e) => (e[key] === undefined ? undefined : value(e)), fallback);
    return [
      { name: bound, expression: fold((e) => String(e[key]), String(s[key])) },
      { name: `${bound}Scope`, expression: fold((e) => str(T.scope[e.serviceAccounts ? 'serviceAccount' : 'namespace']), str(T.scope.global)) },
      {
        name: `${bound}Source`,
        expression: fold((e) => (e.serviceAccounts ? celText(T.boundSourceServiceAccount, 'variables.serviceAccount', NAMESPACE) : celText(T.boundSource, NAMESPACE)), "''"),
      },
    ];
  };
  const e = `(has(s.serviceAccountToken.expirationSeconds) ? s.serviceAccountToken.expirationSeconds : ${DEFAULT_EXPIRATION_SECONDS})`;
  const noAudience = `(!has(s.serviceAccountToken.audience) || s.serviceAccountToken.audience == '')`;
  const volume = celText(T.volume, QUOTED_VOLUME);
  const stated = celText(T.stated, 'string(e)');
  const fix = celText(T.fix, 'string(variables.min)', 'string(variables.max)');
  const path = sourcePath('expirationSeconds');
  const below = finding(LIFETIME, 'deny', celText(T.below, stated, 'variables.minScope', 'string(variables.min)', volume), path, `${str(T.belowDetail)} + variables.minSource`, fix);
  const above = finding(LIFETIME, 'deny', celText(T.above, stated, 'variables.maxScope', 'string(variables.max)', volume), path, `${str(T.aboveDetail)} + variables.maxSource`, fix);
  const extension = finding(LIFETIME, 'warn', celText(T.extension, volume), path, str(T.extensionDetail), str(T.extensionFix));
  const isExtension = `e == ${EXTENDED_EXPIRATION_SECONDS} && ${noAudience}`;
  const findings =
    `variables.volumes.transformList(i, v, ${PROJECTED} && !(${INJECTED}), ` +
    `v.projected.sources.transformList(j, s, has(s.serviceAccountToken) && ${bind('e', e, `e < variables.min || e > variables.max || ${isExtension}`)}, ` +
    `${bind('e', e, `e < variables.min ? ${below} : e > variables.max ? ${above} : ${extension}`)})).flatten()`;
  return {
    policy: projectedTokenLifetimePolicy,
    variables: [...podSpecVariables(), ...scopeVariables(s.namespaces), ...boundVars('min', 'minSeconds'), ...boundVars('max', 'maxSeconds'), { name: 'findings', expression: findings }],
    findings: 'variables.findings',
    severities: new Set(['deny', 'warn']),
  };
}

export function audienceCel(config: TokenguardConfig): CelPolicy {
  const s = policySettings<AudienceSettings>(projectedTokenAudiencePolicy, config);
  const T = AUDIENCE_TEXT;
  const everywhere = [...s.allowed, ...s.additionalAllowed];
  const a = 's.serviceAccountToken.audience';
  const allowed = [matchesAny(a, everywhere), ...s.namespaces.map((e) => `(${entryApplies(e)} && ${matchesAny(a, e.allowed)})`)].join(' || ');
  const allowedHere = s.namespaces.reduce((acc, e) => `${acc} + (${entryApplies(e)} ? ${strList(e.allowed)} : [])`, strList(everywhere));
  // fitWarning: the whole audience when the message fits in one warning, else its length, and the
  // detail names it.
  const quoted = celJsonString(a);
  const full = celText(T.notAllowed, quoted, QUOTED_VOLUME);
  const fits = `size(${full}) <= ${MAX_WARNING_CHARS}`;
  const message = `(${fits} ? ${full} : ${celText(T.notAllowedLong, `string(size(${a}))`, QUOTED_VOLUME)})`;
  const allowedText = celText(T.detail, `variables.allowedHere.size() == 0 ? ${str(T.none)} : variables.allowedHere.join(', ')`);
  const detail = `(${fits} ? '' : ${celText(T.named, quoted)}) + ${allowedText}`;
  const bad = finding(AUDIENCE, 'deny', message, sourcePath('audience'), detail, str(T.fix));
  const findings =
    `variables.volumes.transformList(i, v, ${PROJECTED}, ` +
    `v.projected.sources.transformList(j, s, has(s.serviceAccountToken) && has(${a}) && ${a} != '' && !(${allowed}), ${bad})).flatten()`;
  return {
    policy: projectedTokenAudiencePolicy,
    variables: [...podSpecVariables(), ...scopeVariables(s.namespaces), { name: 'allowedHere', expression: allowedHere }, { name: 'findings', expression: findings }],
    findings: 'variables.findings',
    severities: new Set(['deny']),
  };
}

/**
 * parseNfsMountOptions and judgeOptions (src/policies/nfs-mount-options.ts) for the CEL list of
 * strings `list`: each entry may itself be comma-separated, so the entries joined with commas and
 * split again are the options in order; the last of `soft`/`hard` wins.
 */
function nfsOptionFindings(list: string, path: string, note: string): string {
  const T = NFS_TEXT;
  const hardNote = `soft ? '' : ${celText(T.hardNote, `hard ? ${str(T.hardExplicit)} : ${str(T.hardDefault)}`)}`;
  const notSet = finding(NFS, 'warn', celText(T.notSet, "missing.join(' and ')", hardNote), path, `${str(T.notSetDetail)} + ${note}`, str(T.timeoutFix));
  const soft = finding(NFS, 'warn', str(T.soft), path, `${str(T.softDetail)} + ${note}`, str(T.softFix));
  const keys = `${list}.join(',').split(',').map(o, o.split('=')[0].trim().lowerAscii())`;
  const last = "sh.size() > 0 && sh[sh.size() - 1] == ";
  const missing = "(keys.exists(k, k == 'timeo') ? [] : ['timeo']) + (keys.exists(k, k == 'retrans') ? [] : ['retrans'])";
  return bind(
    'keys',
    keys,
    bind('sh', "keys.filter(k, k == 'soft' || k == 'hard')", bind('soft', `${last}'soft'`, bind('hard', `${last}'hard'`, bind('missing', missing, `(missing.size() > 0 ? [${notSet}] : []) + (soft ? [${soft}] : [])`)))),
  );
}

export function nfsCel(config: TokenguardConfig): CelPolicy {
  const s = policySettings<NfsSettings>(nfsMountOptionsPolicy, config);
  const T = NFS_TEXT;
  const annotation = `object.metadata.?annotations[?${str(MOUNT_OPTIONS_ANNOTATION)}]`;
  const listed = 'object.spec.?mountOptions.orValue([])';
  const pv =
    `!has(object.spec.nfs) ? [] : ${annotation}.hasValue() ` +
    `? ${nfsOptionFindings(`[${annotation}.value()]`, str(T.annotationPath), `(${listed}.size() > 0 ? ${str(T.annotationNote)} : '')`)} ` +
    `: ${nfsOptionFindings(listed, str('spec.mountOptions'), "''")}`;
  const provisioners = s.provisioners.map((p) => p.toLowerCase());
  const storageClass =
    `has(object.provisioner) && ${matchesAny('object.provisioner.lowerAscii()', provisioners)} ` +
    `? ${nfsOptionFindings('object.?mountOptions.orValue([])', str('mountOptions'), str(T.storageClassNote))} : []`;
  const inline = finding(
    NFS,
    'warn',
    celText(T.inline, QUOTED_VOLUME),
    `variables.specPath + '.volumes[' + string(i) + '].nfs'`,
    str(T.inlineDetail),
    str(T.inlineFix),
  );
  const findings =
    `request.resource.resource == 'persistentvolumes' ? (${pv}) : ` +
    `request.resource.resource == 'storageclasses' ? (${storageClass}) : ` +
    `variables.volumes.transformList(i, v, has(v.nfs), ${inline})`;
  return {
    policy: nfsMountOptionsPolicy,
    variables: [...podSpecVariables(), { name: 'findings', expression: findings }],
    findings: 'variables.findings',
    severities: new Set(['warn']),
  };
}

/** The policies generated as ValidatingAdmissionPolicies; the others need cluster state (or mutate). */
export const PURE_POLICIES: readonly ((config: TokenguardConfig) => CelPolicy)[] = [lifetimeCel, audienceCel, nfsCel];
