// projected-token-audience: every `serviceAccountToken` projection must ask for an audience that
// is allowed. An empty audience (the API server's own audiences, `--api-audiences`) is always
// allowed. A token for an audience nobody validates is useless, and one for an audience nobody
// told us about is a credential handed to an unknown party; both are worth stopping at admission.
//
// The default allow-list covers the real consumers of projected tokens: Istio, Linkerd, AWS IRSA,
// Azure workload identity, SPIRE, Vault and GCP workload identity (both audience forms).

import { Type, type Static } from '@sinclair/typebox';
import { fitWarning, NamespaceGlobs, ServiceAccountGlobs, StringList, type Finding, type Policy, type PolicyContext } from '../admission/policy.js';
import type { AdmissionRequest } from '../admission/review.js';
import { globMatcher, namespaceScope } from '../k8s/glob.js';
import { LIFETIME_TEXT } from './projected-token-lifetime.js';
import { podServiceAccount, podSpecOf, POD_SPEC_RULES, tokenProjections } from '../k8s/pod-spec.js';
import { requestingNode, TOKEN_REQUEST_KIND, TOKEN_REQUEST_RULE, tokenRequestSpec } from '../k8s/token-request.js';

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

/** The usual in-cluster issuers, and so the API server's audiences, of kubeadm, kind and most distributions. */
export const DEFAULT_API_SERVER_AUDIENCES: readonly string[] = ['https://kubernetes.default.svc', 'https://kubernetes.default.svc.cluster.local'];

const Settings = Type.Object(
  {
    allowed: StringList({ default: [...DEFAULT_ALLOWED_AUDIENCES], description: 'Audiences allowed everywhere (exact or globs); replaces the default list.' }),
    additionalAllowed: StringList({ default: [], description: 'Added to `allowed`, so the defaults can be kept without copying them.' }),
    namespaces: Type.Array(
      Type.Object(
        {
          namespaces: NamespaceGlobs,
          serviceAccounts: Type.Optional(ServiceAccountGlobs),
          allowed: StringList({ description: 'Audiences allowed in addition, in those namespaces (for those ServiceAccounts).' }),
        },
        { additionalProperties: false },
      ),
      { default: [], description: 'Audiences allowed in addition in some namespaces, or for some ServiceAccounts there; every matching entry adds its own.' },
    ),
    apiServerAudiences: StringList({
      default: [...DEFAULT_API_SERVER_AUDIENCES],
      description:
        "The API server's own audiences (`--api-audiences`, by default its issuers), always allowed: a TokenRequest that names no audience " +
        'arrives with them filled in. The issuer the API server serves (OIDC discovery) counts too.',
    }),
  },
  { additionalProperties: false },
);
export type AudienceSettings = Static<typeof Settings>;

export interface PreparedAudiences {
  /** Whether `audience` is one of the API server's own (configured; the served issuer is checked by the caller). */
  apiServer(audience: string): boolean;
  /** Whether `audience` may be asked for in `namespace` for a token of `serviceAccount`. */
  allowed(namespace: string | undefined, serviceAccount: string, audience: string): boolean;
  /** Everything allowed in `namespace` for `serviceAccount`, for the message. */
  allowedIn(namespace: string | undefined, serviceAccount: string): string[];
}

export function prepareAudiences(settings: AudienceSettings): PreparedAudiences {
  const everywhereList = [...settings.allowed, ...settings.additionalAllowed];
  const everywhere = globMatcher(everywhereList);
  const scope = namespaceScope(settings.namespaces.map((e) => ({ ...e, matches: globMatcher(e.allowed) })));
  const apiServer = new Set(settings.apiServerAudiences);
  return {
    apiServer: (audience) => apiServer.has(audience),
    allowed: (namespace, serviceAccount, audience) => everywhere(audience) || scope(namespace, serviceAccount).some((e) => e.matches(audience)),
    allowedIn: (namespace, serviceAccount) => [...everywhereList, ...scope(namespace, serviceAccount).flatMap((e) => e.allowed)],
  };
}

/**
 * The texts of this policy's findings, as templates of already-rendered parts: the policy fills
 * them with values, the ValidatingAdmissionPolicy generator (src/vap/) with CEL expressions.
 * An audience has no length limit: too long for one warning, the message gives its length
 * instead (never a cut audience) and the detail names it.
 */
export const AUDIENCE_TEXT = {
  /** `quoted`: the audience as JSON; `quotedVolume`: the volume name as JSON (`"t"`). */
  notAllowed: (quoted: string, quotedVolume: string) => `token audience ${quoted} is not allowed (volume ${quotedVolume})`,
  /** A TokenRequest's: `where` is LIFETIME_TEXT.tokenRequest's ` (token for ServiceAccount "x")`. */
  notAllowedRequested: (quoted: string, where: string) => `token audience ${quoted} is not allowed${where}`,
  notAllowedRequestedLong: (length: string) => `token audience of ${length} characters is not allowed`,
  /** `length`: the audience's length in characters. */
  notAllowedLong: (length: string, quotedVolume: string) => `token audience of ${length} characters is not allowed (volume ${quotedVolume})`,
  /** Before the detail when the message could not show the audience. */
  named: (quoted: string) => `The audience is ${quoted}. `,
  /** `allowed`: the audiences allowed here joined with ", ", or `(none)`. */
  detail: (allowed: string) => `Allowed here: ${allowed}, or no audience (the API server's own).`,
  none: '(none)',
  fix:
    'use the audience your token consumer validates, or allow it under policies.projected-token-audience ' +
    '(additionalAllowed, or namespaces for one namespace)',
} as const;

/** A TokenRequest's audiences (the API server has filled in its own when none was asked for). */
function judgeTokenRequest(req: AdmissionRequest, ctx: PolicyContext<PreparedAudiences>): Finding[] {
  const { audiences } = tokenRequestSpec(req.object);
  if (!Array.isArray(audiences)) return [];
  const served = ctx.cluster?.issuers?.servedIssuer;
  // The TokenRequest's name is its ServiceAccount's.
  const account = req.name ?? '';
  const where = LIFETIME_TEXT.tokenRequest(JSON.stringify(account));
  const findings: Finding[] = [];
  audiences.forEach((audience: unknown, i) => {
    if (typeof audience !== 'string' || audience === served || ctx.settings.apiServer(audience) || ctx.settings.allowed(req.namespace, account, audience)) return;
    const quoted = JSON.stringify(audience);
    const message = fitWarning(AUDIENCE_TEXT.notAllowedRequested(quoted, where), AUDIENCE_TEXT.notAllowedRequested(quoted, ''), AUDIENCE_TEXT.notAllowedRequestedLong(String(Array.from(audience).length)));
    findings.push({
      policy: POLICY,
      severity: 'deny',
      message,
      detail: (message.includes(quoted) ? '' : AUDIENCE_TEXT.named(quoted)) + AUDIENCE_TEXT.detail(ctx.settings.allowedIn(req.namespace, account).join(', ') || AUDIENCE_TEXT.none),
      path: `spec.audiences[${i}]`,
      fix: AUDIENCE_TEXT.fix,
    });
  });
  return findings;
}

export const projectedTokenAudiencePolicy: Policy<AudienceSettings, PreparedAudiences> = {
  name: POLICY,
  description: 'Projected service-account tokens must name an allowed audience (or none: the API server audiences).',
  // TokenRequests made by people and CI too; never a node's (see projected-token-lifetime).
  match: [...POD_SPEC_RULES, TOKEN_REQUEST_RULE],
  settings: Settings,
  prepare: prepareAudiences,

  validate(req: AdmissionRequest, ctx: PolicyContext<PreparedAudiences>): Finding[] {
    if (req.kind.kind === TOKEN_REQUEST_KIND) return requestingNode(req.userInfo) ? [] : judgeTokenRequest(req, ctx);
    const loc = podSpecOf(req.kind.kind, req.object);
    if (!loc) return [];
    const findings: Finding[] = [];
    const account = podServiceAccount(loc.spec);
    for (const p of tokenProjections(loc.spec)) {
      const audience = p.audience;
      if (audience === undefined || audience === null || audience === '') continue;
      const path = `${loc.path}.${p.relPath}.audience`;
      if (typeof audience !== 'string') {
        findings.push({
          policy: POLICY,
          severity: 'deny',
          message: fitWarning(
            `token audience must be a string, got ${JSON.stringify(audience)}; the API server rejects it (volume ${JSON.stringify(p.volume)})`,
            `token audience must be a string; the API server rejects it (volume ${JSON.stringify(p.volume)})`,
            'token audience must be a string; the API server rejects it',
          ),
          apiRejection: `${path}: Invalid value: ${JSON.stringify(audience)}: the API server cannot decode it as a string`,
          path,
          fix: AUDIENCE_TEXT.fix,
        });
        continue;
      }
      if (ctx.settings.allowed(req.namespace, account, audience)) continue;
      const quoted = JSON.stringify(audience);
      const volume = JSON.stringify(p.volume);
      // A volume name too long for the warning (only in objects the API server has not validated yet) is left out.
      const length = String(Array.from(audience).length);
      const message = fitWarning(
        AUDIENCE_TEXT.notAllowed(quoted, volume),
        AUDIENCE_TEXT.notAllowedLong(length, volume),
        `token audience of ${length} characters is not allowed`,
      );
      findings.push({
        policy: POLICY,
        severity: 'deny',
        message,
        detail: (message.includes(quoted) ? '' : AUDIENCE_TEXT.named(quoted)) + AUDIENCE_TEXT.detail(ctx.settings.allowedIn(req.namespace, account).join(', ') || AUDIENCE_TEXT.none),
        path,
        fix: AUDIENCE_TEXT.fix,
      });
    }
    return findings;
  },
};
