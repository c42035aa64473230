// projected-token-audience: every `serviceAccountToken` projection must ask for an audience that
// is allowed. An empty audience (the API server's own audiences, `--api-audiences`) is always
// allowed. A token for an audience nobody validates is useless, and one for an audience nobody
// told us about is a credential handed to an unknown party; both are worth stopping at admission.
//
// The default allow-list covers the real consumers of BRIEF section 2: Istio, Linkerd, AWS IRSA,
// Azure workload identity, SPIRE, Vault and GCP workload identity (both audience forms).

import type { AdmissionRequest } from '../admission/review.js';
import { globMatcher } from '../k8s/glob.js';
import { namespaceGlobsSchema, stringListSchema } from '../config/schema.js';
import { podSpecOf, POD_SPEC_RULES, tokenProjections } from '../k8s/pod-spec.js';
import type { Finding, Policy, PolicyContext } from '../admission/policy.js';

export const POLICY = 'projected-token-audience';

export const DEFAULT_ALLOWED_AUDIENCES: readonly string[] = [
  'istio-ca',
  'identity.l5d.io',
  'sts.amazonaws.com',
  'api://AzureADTokenExchange',
  'spire-server',
  'vault',
  '*.svc.id.goog',
  'https://iam.googleapis.com/projects/*',
];

export interface NamespaceAudiences {
  /** Exact namespace names or globs. */
  namespaces: string[];
  /** Audiences allowed in addition, in those namespaces (exact values or globs). */
  allowed: string[];
}

export interface AudienceSettings {
  /** Replaces the default list when set in config. */
  allowed: string[];
  /** Added to `allowed`, so the defaults can be kept without copying them. */
  additionalAllowed: string[];
  namespaces: NamespaceAudiences[];
}

interface CompiledAudiences {
  everywhere: (audience: string) => boolean;
  everywhereList: string[];
  perNamespace: { matches: (ns: string) => boolean; allowed: (audience: string) => boolean; list: string[] }[];
}

// Settings objects live as long as the engine; compile their globs once, not per request.
const compiledCache = new WeakMap<AudienceSettings, CompiledAudiences>();

function compiled(settings: AudienceSettings): CompiledAudiences {
  let out = compiledCache.get(settings);
  if (!out) {
    const everywhereList = [...(settings.allowed ?? []), ...(settings.additionalAllowed ?? [])];
    out = {
      everywhere: globMatcher(everywhereList),
      everywhereList,
      perNamespace: (settings.namespaces ?? []).map((e) => ({
        matches: globMatcher(e.namespaces),
        allowed: globMatcher(e.allowed),
        list: e.allowed,
      })),
    };
    compiledCache.set(settings, out);
  }
  return out;
}

export function audienceAllowed(settings: AudienceSettings, namespace: string | undefined, audience: string): boolean {
  const c = compiled(settings);
  if (c.everywhere(audience)) return true;
  if (!namespace) return false;
  return c.perNamespace.some((e) => e.matches(namespace) && e.allowed(audience));
}

function allowedHere(settings: AudienceSettings, namespace: string | undefined): string[] {
  const c = compiled(settings);
  const out = [...c.everywhereList];
  if (namespace) for (const e of c.perNamespace) if (e.matches(namespace)) out.push(...e.list);
  return out;
}

const FIX =
  'use the audience your token consumer validates, or allow it under policies.projected-token-audience ' +
  '(additionalAllowed, or namespaces for one namespace)';

export const projectedTokenAudiencePolicy: Policy<AudienceSettings> = {
  name: POLICY,
  description: 'Projected service-account tokens must name an allowed audience (or none: the API server audiences).',
  match: [...POD_SPEC_RULES],
  settingsSchema: {
    allowed: stringListSchema,
    additionalAllowed: stringListSchema,
    namespaces: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['namespaces', 'allowed'],
        properties: { namespaces: namespaceGlobsSchema, allowed: stringListSchema },
      },
    },
  },
  defaultSettings: { allowed: [...DEFAULT_ALLOWED_AUDIENCES], additionalAllowed: [], namespaces: [] },

  validate(req: AdmissionRequest, ctx: PolicyContext<AudienceSettings>): Finding[] {
    const loc = podSpecOf(req.kind.kind, req.object);
    if (!loc) return [];
    const findings: Finding[] = [];
    for (const p of tokenProjections(loc.spec)) {
      const audience = p.audience;
      if (audience === undefined || audience === null || audience === '') continue;
      const volume = ` (volume ${JSON.stringify(p.volume)})`;
      const path = `${loc.path}.${p.relPath}.audience`;
      if (typeof audience !== 'string') {
        findings.push({
          policy: POLICY,
          severity: 'deny',
          message: `token audience must be a string, got ${JSON.stringify(audience)?.slice(0, 40)}${volume}`,
          path,
          fix: FIX,
        });
        continue;
      }
      if (audienceAllowed(ctx.settings, req.namespace, audience)) continue;
      const shown = audience.length > 60 ? `${audience.slice(0, 59)}…` : audience;
      findings.push({
        policy: POLICY,
        severity: 'deny',
        message: `token audience ${JSON.stringify(shown)} is not allowed${volume}`,
        detail: `Allowed here: ${allowedHere(ctx.settings, req.namespace).join(', ') || '(none)'}, or no audience (the API server's own).`,
        path,
        fix: FIX,
      });
    }
    return findings;
  },
};
