// projected-token-lifetime: every `serviceAccountToken` projection in a Pod or pod template must
// ask for a lifetime within configured bounds (default 600 to 86400 s, overridable per namespace).
//
// Facts (BRIEF section 2): the API rejects less than 600 s and more than 2^32 s; a missing value
// means 3600 s; kubelet refreshes a token at 80 % of its TTL or after 24 h, so lifetimes above a
// day only lengthen how long a leaked token stays valid. A 3607 s token bound to the default
// audiences is what the ServiceAccount plugin injects (`kube-api-access-*`); with
// `--service-account-extend-token-expiration` (default on) the API server issues such tokens for
// one year. The injected volume itself is never flagged; a user-written copy of it is warned about.

import type { AdmissionRequest } from '../admission/review.js';
import { globMatcher } from '../k8s/glob.js';
import { namespaceGlobsSchema } from '../config/schema.js';
import { podSpecOf, POD_SPEC_RULES, tokenProjections, type TokenProjection } from '../k8s/pod-spec.js';
import type { Finding, Policy, PolicyContext } from '../admission/policy.js';

export const POLICY = 'projected-token-lifetime';

/** The API server rejects shorter tokens (`may not specify a duration less than 10 minutes`). */
export const API_MIN_SECONDS = 600;
/** The API server rejects longer tokens. */
export const API_MAX_SECONDS = 2 ** 32;
/** What the API server uses when `expirationSeconds` is left out. */
export const DEFAULT_EXPIRATION_SECONDS = 3600;
/** The lifetime the API server extends to one year for tokens bound to its own audiences. */
export const EXTENDED_EXPIRATION_SECONDS = 3607;

export interface LifetimeBounds {
  minSeconds?: number;
  maxSeconds?: number;
}

export interface NamespaceLifetimeBounds extends LifetimeBounds {
  /** Exact namespace names or globs (`*`, `?`). */
  namespaces: string[];
}

export interface LifetimeSettings {
  minSeconds: number;
  maxSeconds: number;
  /** Later entries win for the bounds they set; bounds an entry leaves out fall through. */
  namespaces: NamespaceLifetimeBounds[];
}

const seconds = { type: 'integer', minimum: API_MIN_SECONDS, maximum: API_MAX_SECONDS };

interface CompiledBounds {
  matches: (namespace: string) => boolean;
  bounds: LifetimeBounds;
}

// Settings objects live as long as the engine; compile their globs once, not per request.
const compiledCache = new WeakMap<LifetimeSettings, CompiledBounds[]>();

function compiled(settings: LifetimeSettings): CompiledBounds[] {
  let out = compiledCache.get(settings);
  if (!out) {
    out = (settings.namespaces ?? []).map((e) => ({ matches: globMatcher(e.namespaces), bounds: e }));
    compiledCache.set(settings, out);
  }
  return out;
}

interface EffectiveBounds {
  min: number;
  max: number;
  /** Whether a namespace entry set the bound: messages then say where it comes from. */
  minFromNamespace: boolean;
  maxFromNamespace: boolean;
  namespace?: string;
}

export function boundsFor(settings: LifetimeSettings, namespace: string | undefined): EffectiveBounds {
  const out: EffectiveBounds = {
    min: settings.minSeconds,
    max: settings.maxSeconds,
    minFromNamespace: false,
    maxFromNamespace: false,
    namespace,
  };
  if (!namespace) return out;
  for (const { matches, bounds } of compiled(settings)) {
    if (!matches(namespace)) continue;
    if (bounds.minSeconds !== undefined) {
      out.min = bounds.minSeconds;
      out.minFromNamespace = true;
    }
    if (bounds.maxSeconds !== undefined) {
      out.max = bounds.maxSeconds;
      out.maxFromNamespace = true;
    }
  }
  return out;
}

/** The common case, decided before any message is built: a whole number within every bound. */
function unremarkable(p: TokenProjection, bounds: EffectiveBounds): boolean {
  const value = p.expirationSeconds === undefined ? DEFAULT_EXPIRATION_SECONDS : p.expirationSeconds;
  return (
    Number.isInteger(value) &&
    (value as number) >= Math.max(bounds.min, API_MIN_SECONDS) &&
    (value as number) <= Math.min(bounds.max, API_MAX_SECONDS) &&
    !(value === EXTENDED_EXPIRATION_SECONDS && !p.audience)
  );
}

function judge(p: TokenProjection, bounds: EffectiveBounds, path: string): Finding | undefined {
  // The gist first, the volume last: the engine cuts warnings at 120 characters.
  const volume = ` (volume ${JSON.stringify(p.volume)})`;
  const at = { policy: POLICY, path };
  const fix = `set expirationSeconds between ${bounds.min} and ${bounds.max}`;
  const scope = (fromNamespace: boolean) => (fromNamespace ? "this namespace's" : 'the');
  const boundSource = (fromNamespace: boolean) =>
    fromNamespace ? ` That bound applies to namespace ${bounds.namespace} (policies.${POLICY}.namespaces).` : '';
  const raw = p.expirationSeconds;

  if (raw !== undefined && (typeof raw !== 'number' || !Number.isInteger(raw))) {
    return {
      ...at,
      severity: 'deny',
      message: `expirationSeconds must be a whole number of seconds, got ${JSON.stringify(raw)?.slice(0, 40)}${volume}`,
      fix,
    };
  }
  const value = raw ?? DEFAULT_EXPIRATION_SECONDS;
  const stated = raw === undefined ? `no expirationSeconds means ${value} s,` : `token lifetime ${value} s is`;

  if (value < API_MIN_SECONDS) {
    return {
      ...at,
      severity: 'deny',
      message: `token lifetime ${value} s is below 600 s; the API server rejects it anyway${volume}`,
      detail: 'Kubernetes refuses projected tokens shorter than 10 minutes (may not specify a duration less than 10 minutes).',
      fix,
    };
  }
  if (value > API_MAX_SECONDS) {
    return {
      ...at,
      severity: 'deny',
      message: `token lifetime ${value} s is above 2^32 s; the API server rejects it anyway${volume}`,
      fix,
    };
  }
  if (value < bounds.min) {
    return {
      ...at,
      severity: 'deny',
      message: `${stated} below ${scope(bounds.minFromNamespace)} ${bounds.min} s minimum${volume}`,
      detail: 'Very short tokens are refreshed often and leave little room when the API server is briefly unreachable.' + boundSource(bounds.minFromNamespace),
      fix,
    };
  }
  if (value > bounds.max) {
    return {
      ...at,
      severity: 'deny',
      message: `${stated} above ${scope(bounds.maxFromNamespace)} ${bounds.max} s maximum${volume}`,
      detail:
        'kubelet refreshes a projected token at 80 % of its lifetime or after 24 h anyway, so a longer lifetime ' +
        'only lengthens how long a leaked token stays valid.' + boundSource(bounds.maxFromNamespace),
      fix,
    };
  }
  if (value === EXTENDED_EXPIRATION_SECONDS && !p.audience) {
    return {
      ...at,
      severity: 'warn',
      message: `a 3607 s default-audience token really lives one year (token extension)${volume}`,
      detail:
        'With --service-account-extend-token-expiration (on by default) the API server issues 3607 s tokens bound to ' +
        'its own audiences for one year (a kubernetes.io.warnafter claim marks them): that value is reserved for the ' +
        'injected kube-api-access volume.',
      fix: 'use another lifetime such as 3600, or set the audience of the consumer',
    };
  }
  return undefined;
}

export const projectedTokenLifetimePolicy: Policy<LifetimeSettings> = {
  name: POLICY,
  description: 'Projected service-account tokens must ask for a lifetime within bounds (default 600 to 86400 s).',
  match: [...POD_SPEC_RULES],
  settingsSchema: {
    minSeconds: seconds,
    maxSeconds: seconds,
    namespaces: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['namespaces'],
        properties: {
          namespaces: namespaceGlobsSchema,
          minSeconds: seconds,
          maxSeconds: seconds,
        },
      },
    },
  },
  defaultSettings: { minSeconds: API_MIN_SECONDS, maxSeconds: 86400, namespaces: [] },

  // A minimum above the maximum would flag every token; refuse it at start-up instead.
  checkSettings(s: LifetimeSettings): string[] {
    const problems: string[] = [];
    if (s.minSeconds > s.maxSeconds) problems.push(`minSeconds: ${s.minSeconds} is above maxSeconds (${s.maxSeconds})`);
    s.namespaces.forEach((entry, i) => {
      const min = entry.minSeconds ?? s.minSeconds;
      const max = entry.maxSeconds ?? s.maxSeconds;
      if (min <= max) return;
      const which = entry.minSeconds !== undefined ? 'minSeconds' : 'maxSeconds';
      problems.push(`namespaces[${i}].${which}: minSeconds ${min} would be above maxSeconds ${max} for these namespaces`);
    });
    return problems;
  },

  validate(req: AdmissionRequest, ctx: PolicyContext<LifetimeSettings>): Finding[] {
    const loc = podSpecOf(req.kind.kind, req.object);
    if (!loc) return [];
    const projections = tokenProjections(loc.spec);
    if (projections.length === 0) return [];
    const bounds = boundsFor(ctx.settings, req.namespace);
    const findings: Finding[] = [];
    for (const p of projections) {
      if (p.injected || unremarkable(p, bounds)) continue;
      const f = judge(p, bounds, `${loc.path}.${p.relPath}.expirationSeconds`);
      if (f) findings.push(f);
    }
    return findings;
  },
};
