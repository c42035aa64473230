// projected-token-lifetime: every `serviceAccountToken` projection in a Pod or pod template must
// ask for a lifetime within configured bounds (default 600 to 86400 s, overridable per namespace
// and ServiceAccount).
//
// Facts (API validation and kubelet): the API rejects less than 600 s and more than 2^32 s; a missing value
// means 3600 s; kubelet refreshes a token at 80 % of its TTL or after 24 h, so lifetimes above a
// day only lengthen how long a leaked token stays valid. A 3607 s token bound to the default
// audiences is what the ServiceAccount plugin injects (`kube-api-access-*`); with
// `--service-account-extend-token-expiration` (default on) the API server issues such tokens for
// one year. The injected volume itself is never flagged; a user-written copy of it is warned about.

import { Type, type Static } from '@sinclair/typebox';
import { fitWarning, NamespaceGlobs, ServiceAccountGlobs, type Finding, type Policy, type PolicyContext } from '../admission/policy.js';
import type { AdmissionRequest } from '../admission/review.js';
import { namespaceScope } from '../k8s/glob.js';
import { podServiceAccount, podSpecOf, POD_SPEC_RULES, tokenProjections, type TokenProjection } from '../k8s/pod-spec.js';
import { requestingNode, TOKEN_REQUEST_KIND, TOKEN_REQUEST_RULE, tokenRequestSpec } from '../k8s/token-request.js';

export const POLICY = 'projected-token-lifetime';

/** The API server rejects shorter tokens (`may not specify a duration less than 10 minutes`). */
export const API_MIN_SECONDS = 600;
/** The API server rejects longer tokens. */
export const API_MAX_SECONDS = 2 ** 32;
/** What the API server uses when `expirationSeconds` is left out. */
export const DEFAULT_EXPIRATION_SECONDS = 3600;
/** The lifetime the API server extends to one year for tokens bound to its own audiences. */
export const EXTENDED_EXPIRATION_SECONDS = 3607;

const Seconds = (options: { default?: number; description?: string } = {}) =>
  Type.Integer({ minimum: API_MIN_SECONDS, maximum: API_MAX_SECONDS, ...options });

const Settings = Type.Object(
  {
    minSeconds: Seconds({ default: API_MIN_SECONDS, description: 'Shortest lifetime allowed.' }),
    maxSeconds: Seconds({ default: 86400, description: 'Longest lifetime allowed.' }),
    namespaces: Type.Array(
      Type.Object(
        {
          namespaces: NamespaceGlobs,
          serviceAccounts: Type.Optional(ServiceAccountGlobs),
          minSeconds: Type.Optional(Seconds({ description: 'Shortest lifetime in these namespaces (for those ServiceAccounts).' })),
          maxSeconds: Type.Optional(Seconds({ description: 'Longest lifetime in these namespaces (for those ServiceAccounts).' })),
        },
        { additionalProperties: false },
      ),
      { default: [], description: 'Bounds per namespace, or per ServiceAccount there; later entries win for the bounds they set, bounds an entry leaves out fall through.' },
    ),
  },
  { additionalProperties: false },
);
export type LifetimeSettings = Static<typeof Settings>;

/** Where a bound comes from: the global settings, a namespace entry, or one narrowed to ServiceAccounts. */
export type BoundSource = 'global' | 'namespace' | 'serviceAccount';

interface EffectiveBounds {
  min: number;
  max: number;
  /** Which entry set each bound: messages then say where it comes from. */
  minFrom: BoundSource;
  maxFrom: BoundSource;
  namespace?: string;
  serviceAccount?: string;
}

export interface PreparedLifetime {
  /**
   * The bounds for a ServiceAccount's tokens in a namespace: the global ones, then each matching
   * entry's (namespace, and ServiceAccount where the entry names some), in order.
   */
  boundsIn(namespace: string | undefined, serviceAccount: string): EffectiveBounds;
}

export function prepareBounds(settings: LifetimeSettings): PreparedLifetime {
  const scope = namespaceScope(settings.namespaces);
  const boundsIn = (namespace: string | undefined, serviceAccount: string): EffectiveBounds => {
    const out: EffectiveBounds = { min: settings.minSeconds, max: settings.maxSeconds, minFrom: 'global', maxFrom: 'global', namespace, serviceAccount };
    for (const entry of scope(namespace, serviceAccount)) {
      const from = entry.serviceAccounts ? 'serviceAccount' : 'namespace';
      if (entry.minSeconds !== undefined) {
        out.min = entry.minSeconds;
        out.minFrom = from;
      }
      if (entry.maxSeconds !== undefined) {
        out.max = entry.maxSeconds;
        out.maxFrom = from;
      }
    }
    return out;
  };
  return { boundsIn };
}

/** The common case, decided before any message is built: a whole number within every bound. */
function unremarkable(p: TokenProjection, bounds: EffectiveBounds): boolean {
  const value = p.expirationSeconds ?? DEFAULT_EXPIRATION_SECONDS;
  return (
    Number.isInteger(value) &&
    (value as number) >= Math.max(bounds.min, API_MIN_SECONDS) &&
    (value as number) <= Math.min(bounds.max, API_MAX_SECONDS) &&
    !(value === EXTENDED_EXPIRATION_SECONDS && !p.audience)
  );
}

/**
 * The texts of this policy's findings, as templates of already-rendered parts: the policy fills
 * them with values, the ValidatingAdmissionPolicy generator (src/vap/) with CEL expressions, so
 * both say the same words.
 */
export const LIFETIME_TEXT = {
  /** `quoted` is the volume name as JSON (`"t"`). */
  volume: (quoted: string) => ` (volume ${quoted})`,
  /** A TokenRequest's: `quoted` is the ServiceAccount's name as JSON. */
  tokenRequest: (quoted: string) => ` (token for ServiceAccount ${quoted})`,
  fix: (min: string, max: string) => `set expirationSeconds between ${min} and ${max}`,
  stated: (value: string) => `token lifetime ${value} s is`,
  statedDefault: (value: string) => `no expirationSeconds means ${value} s,`,
  /** What `below`/`above` call the bound, by where it comes from. */
  scope: { global: 'the', namespace: "this namespace's", serviceAccount: "this ServiceAccount's" } satisfies Record<BoundSource, string>,
  boundSource: (namespace: string) => ` That bound applies to namespace ${namespace} (policies.${POLICY}.namespaces).`,
  boundSourceServiceAccount: (serviceAccount: string, namespace: string) =>
    ` That bound applies to ServiceAccount ${serviceAccount} in namespace ${namespace} (policies.${POLICY}.namespaces[].serviceAccounts).`,
  below: (stated: string, scope: string, min: string, volume: string) => `${stated} below ${scope} ${min} s minimum${volume}`,
  above: (stated: string, scope: string, max: string, volume: string) => `${stated} above ${scope} ${max} s maximum${volume}`,
  belowDetail: 'Very short tokens are refreshed often and leave little room when the API server is briefly unreachable.',
  aboveDetail:
    'kubelet refreshes a projected token at 80 % of its lifetime or after 24 h anyway, so a longer lifetime ' +
    'only lengthens how long a leaked token stays valid.',
  extension: (volume: string) => `a 3607 s default-audience token really lives one year (token extension)${volume}`,
  extensionDetail:
    'With --service-account-extend-token-expiration (on by default) the API server issues 3607 s tokens bound to ' +
    'its own audiences for one year (a kubernetes.io.warnafter claim marks them): that value is reserved for the ' +
    'injected kube-api-access volume.',
  extensionFix: 'use another lifetime such as 3600, or set the audience of the consumer',
} as const;

/**
 * The finding for one requested lifetime, if any. `p` is a projection, or a TokenRequest's spec
 * (`volume` then names the ServiceAccount instead of a volume, and the one-year extension, which
 * only pod-bound projected tokens get, does not apply).
 */
function judge(p: Pick<TokenProjection, 'expirationSeconds' | 'audience'>, bounds: EffectiveBounds, path: string, volume: string, extensionApplies = true): Finding | undefined {
  // The gist first, the volume (or ServiceAccount) last. A valid volume name is a DNS label, but
  // `tokenguard check` and the mutating side see objects before the API server validates them, and
  // a ServiceAccount's name may be 253 characters: a name too long for the warning is left out
  // (the finding's path still says which).
  const T = LIFETIME_TEXT;
  const fit = (text: (volume: string) => string) => fitWarning(text(volume), text(''));
  const at = { policy: POLICY, path };
  const fix = T.fix(String(bounds.min), String(bounds.max));
  const boundSource = (from: BoundSource) =>
    from === 'global' ? ''
    : from === 'namespace' ? T.boundSource(String(bounds.namespace))
    : T.boundSourceServiceAccount(String(bounds.serviceAccount), String(bounds.namespace));
  // JSON null is no value to the API server: it defaults it like a missing one.
  const raw = p.expirationSeconds ?? undefined;

  if (raw !== undefined && (typeof raw !== 'number' || !Number.isInteger(raw))) {
    const shown = JSON.stringify(raw) ?? typeof raw;
    return {
      ...at,
      severity: 'deny',
      message: fitWarning(
        `expirationSeconds must be a whole number of seconds, got ${shown}; the API server rejects it${volume}`,
        `expirationSeconds must be a whole number of seconds; the API server rejects it${volume}`,
        'expirationSeconds must be a whole number of seconds; the API server rejects it',
      ),
      apiRejection: `${path}: Invalid value: ${shown}: the API server cannot decode it as a whole number of seconds`,
      fix,
    };
  }
  const value = raw ?? DEFAULT_EXPIRATION_SECONDS;
  const stated = raw === undefined ? T.statedDefault(String(value)) : T.stated(String(value));

  if (value < API_MIN_SECONDS) {
    return {
      ...at,
      severity: 'deny',
      message: fit((v) => `token lifetime ${value} s is below 600 s: the API server rejects it${v}`),
      detail: 'Kubernetes refuses projected tokens shorter than 10 minutes (may not specify a duration less than 10 minutes).',
      apiRejection: `${path}: Invalid value: ${value}: may not specify a duration less than 10 minutes`,
      fix,
    };
  }
  if (value > API_MAX_SECONDS) {
    return {
      ...at,
      severity: 'deny',
      message: fit((v) => `token lifetime ${value} s is above 2^32 s: the API server rejects it${v}`),
      apiRejection: `${path}: Invalid value: ${value}: may not specify a duration larger than 2^32 seconds`,
      fix,
    };
  }
  const side = value < bounds.min ? 'below' : value > bounds.max ? 'above' : undefined;
  if (side) {
    const [bound, from] = side === 'below' ? [bounds.min, bounds.minFrom] : [bounds.max, bounds.maxFrom];
    return {
      ...at,
      severity: 'deny',
      message: fit((v) => T[side](stated, T.scope[from], String(bound), v)),
      detail: T[`${side}Detail`] + boundSource(from),
      fix,
    };
  }
  if (extensionApplies && value === EXTENDED_EXPIRATION_SECONDS && !p.audience) {
    return { ...at, severity: 'warn', message: fit(T.extension), detail: T.extensionDetail, fix: T.extensionFix };
  }
  return undefined;
}

export const projectedTokenLifetimePolicy: Policy<LifetimeSettings, PreparedLifetime> = {
  name: POLICY,
  description: 'Projected service-account tokens must ask for a lifetime within bounds (default 600 to 86400 s).',
  // TokenRequests too: tokens made by people and CI (`kubectl create token --duration=...`), judged
  // like projected volumes. A node's requests for its pods never are: the pod was judged at admission.
  match: [...POD_SPEC_RULES, TOKEN_REQUEST_RULE],
  settings: Settings,
  prepare: prepareBounds,

  // A minimum above the maximum would flag every token; refuse it at start-up instead.
  checkSettings(s: LifetimeSettings): string[] {
    const problems: string[] = [];
    if (s.minSeconds > s.maxSeconds) problems.push(`minSeconds: ${s.minSeconds} is above maxSeconds (${s.maxSeconds})`);
    s.namespaces.forEach((entry, i) => {
      const min = entry.minSeconds ?? s.minSeconds;
      const max = entry.maxSeconds ?? s.maxSeconds;
      if (min <= max) return;
      const which = entry.minSeconds !== undefined ? 'minSeconds' : 'maxSeconds';
      problems.push(`namespaces[${i}].${which}: minSeconds ${min} would be above maxSeconds ${max} for these ${entry.serviceAccounts ? 'ServiceAccounts' : 'namespaces'}`);
    });
    return problems;
  },

  validate(req: AdmissionRequest, ctx: PolicyContext<PreparedLifetime>): Finding[] {
    if (req.kind.kind === TOKEN_REQUEST_KIND) {
      if (requestingNode(req.userInfo)) return [];
      // The API server has defaulted expirationSeconds (3600 s) before admission.
      const { expirationSeconds } = tokenRequestSpec(req.object);
      // The TokenRequest's name is its ServiceAccount's.
      const account = req.name ?? '';
      const f = judge({ expirationSeconds, audience: undefined }, ctx.settings.boundsIn(req.namespace, account), 'spec.expirationSeconds', LIFETIME_TEXT.tokenRequest(JSON.stringify(account)), false);
      return f ? [f] : [];
    }
    const loc = podSpecOf(req.kind.kind, req.object);
    if (!loc) return [];
    const projections = tokenProjections(loc.spec);
    if (projections.length === 0) return [];
    const bounds = ctx.settings.boundsIn(req.namespace, podServiceAccount(loc.spec));
    const findings: Finding[] = [];
    for (const p of projections) {
      if (p.injected || unremarkable(p, bounds)) continue;
      const f = judge(p, bounds, `${loc.path}.${p.relPath}.expirationSeconds`, LIFETIME_TEXT.volume(JSON.stringify(p.volume)));
      if (f) findings.push(f);
    }
    return findings;
  },
};
