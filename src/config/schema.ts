// The configuration file's schema. Every key is documented in README.md ("Configuration").
// Policies contribute the schema of their own settings (`Policy.settingsSchema`), so a policy's
// knobs live next to its code while the whole file is still validated at start-up, strictly.

import type { AnyPolicy, Exemptions, Mode } from '../policies/types.js';

export interface NamespaceOverride {
  /** Exact names or globs (`*`, `?`). */
  namespaces: string[];
  mode?: Mode;
  /** Per-policy modes for these namespaces; beats `mode` of the same entry. */
  policies?: Record<string, Mode>;
}

export interface PolicyConfig {
  mode?: Mode;
  exemptions?: Partial<Exemptions>;
  [setting: string]: unknown;
}

/** `server.callerAuth` (README, "Authenticating the API server"). */
export interface CallerAuthConfig {
  /** off: no check; audit: check, log and count failures, answer anyway; enforce: 401 on failure. */
  mode: 'off' | 'audit' | 'enforce';
  /** Client certificates signed by this CA pass (kube-apiserver's webhook kubeconfig can carry one). */
  clientCertificate?: { caFile: string };
  bearerToken: {
    /** Accepted token issuers; empty means the served issuer (OIDC discovery). */
    issuers: string[];
    /** Accepted audiences besides those derived from `service` and the route. */
    audiences: string[];
    /** tokenguard's Service, from which the default audiences are derived. */
    service: { name: string; namespace: string; port: number };
    /** Accepted token subjects. */
    subjects: string[];
    /** Names of tokenguard's own Validating/MutatingWebhookConfigurations: a KEP-6060 token bound to another is refused. */
    webhookConfigurations: string[];
  };
}

/** The client CA the TLS server must ask certificates for: only while caller authentication is on. */
export function callerAuthCAFile(config: CallerAuthConfig): string | undefined {
  return config.mode === 'off' ? undefined : config.clientCertificate?.caFile;
}

export interface TokenguardConfig {
  server: {
    address: string;
    port: number;
    tlsCertFile: string;
    tlsKeyFile: string;
    /** Who may call /validate and /mutate: kube-apiserver, by client certificate or bearer token. */
    callerAuth: CallerAuthConfig;
    /** How often the certificate files are checked for a new pair. */
    tlsReloadSeconds: number;
    maxBodyBytes: number;
    /** Upper bound on how long in-flight requests may take to finish at shutdown. */
    shutdownGraceSeconds: number;
    /** At shutdown, how long to stay up while unready before closing the listener (endpoint removal). */
    shutdownDelaySeconds: number;
  };
  log: { level: 'debug' | 'info' | 'warn' | 'error' };
  /** Default mode for every policy. */
  mode: Mode;
  policies: Record<string, PolicyConfig>;
  namespaceOverrides: NamespaceOverride[];
  exemptions: Exemptions;
  cluster: {
    /** `auto`: in-cluster or kubeconfig when one is found; `false`: never talk to a cluster. */
    enabled: 'auto' | boolean;
    kubeconfig?: string;
    /** A cache whose watch has been down this long is stale and no longer trusted. */
    staleAfterSeconds: number;
    /** Bound on a live lookup when the cache cannot answer (well under the webhook timeout). */
    lookupTimeoutMs: number;
    onLookupFailure: 'allow' | 'deny';
    /** Interval between reads of /.well-known/openid-configuration and the JWKS. */
    issuerRefreshSeconds: number;
    /** Periodic TokenRequest + verification of tokenguard's own token (0 disables). */
    tokenSelfTestSeconds: number;
    /** Clock skew above which the self-test reports a problem. */
    maxClockSkewSeconds: number;
  };
}

const modeSchema = { enum: ['enforce', 'warn', 'off'] };
/** A list of non-empty strings; policies use it for their own settings too. */
export const stringListSchema = { type: 'array', items: { type: 'string', minLength: 1 } };
/** At least one namespace name or glob: how every per-namespace setting says where it applies. */
export const namespaceGlobsSchema = { ...stringListSchema, minItems: 1 };
const stringList = stringListSchema;
const exemptionsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: { users: stringList, groups: stringList, namespaces: stringList },
};

export function buildConfigSchema(policies: readonly AnyPolicy[]): object {
  const policyProps: Record<string, object> = {};
  for (const p of policies) {
    policyProps[p.name] = {
      type: 'object',
      additionalProperties: false,
      properties: { mode: modeSchema, exemptions: exemptionsSchema, ...(p.settingsSchema ?? {}) },
    };
  }
  const policyNames = policies.map((p) => p.name);
  return {
    type: 'object',
    additionalProperties: false,
    properties: {
      server: {
        type: 'object',
        additionalProperties: false,
        properties: {
          address: { type: 'string', minLength: 1 },
          port: { type: 'integer', minimum: 0, maximum: 65535 },
          tlsCertFile: { type: 'string', minLength: 1 },
          tlsKeyFile: { type: 'string', minLength: 1 },
          callerAuth: {
            type: 'object',
            additionalProperties: false,
            properties: {
              mode: { enum: ['off', 'audit', 'enforce'] },
              clientCertificate: {
                type: 'object',
                additionalProperties: false,
                required: ['caFile'],
                properties: { caFile: { type: 'string', minLength: 1 } },
              },
              bearerToken: {
                type: 'object',
                additionalProperties: false,
                properties: {
                  issuers: stringList,
                  audiences: stringList,
                  service: {
                    type: 'object',
                    additionalProperties: false,
                    properties: {
                      name: { type: 'string', minLength: 1 },
                      namespace: { type: 'string', minLength: 1 },
                      port: { type: 'integer', minimum: 1, maximum: 65535 },
                    },
                  },
                  subjects: { ...stringList, minItems: 1 },
                  webhookConfigurations: { ...stringList, minItems: 1 },
                },
              },
            },
          },
          tlsReloadSeconds: { type: 'number', exclusiveMinimum: 0, maximum: 3600 },
          maxBodyBytes: { type: 'integer', minimum: 1024, maximum: 268435456 },
          shutdownGraceSeconds: { type: 'number', minimum: 0, maximum: 600 },
          shutdownDelaySeconds: { type: 'number', minimum: 0, maximum: 600 },
        },
      },
      log: {
        type: 'object',
        additionalProperties: false,
        properties: { level: { enum: ['debug', 'info', 'warn', 'error'] } },
      },
      mode: modeSchema,
      policies: { type: 'object', additionalProperties: false, properties: policyProps },
      namespaceOverrides: {
        type: 'array',
        items: {
          type: 'object',
          additionalProperties: false,
          required: ['namespaces'],
          properties: {
            namespaces: namespaceGlobsSchema,
            mode: modeSchema,
            policies: {
              type: 'object',
              // An empty enum is not a valid schema, so with no policies no key is allowed at all.
              propertyNames: policyNames.length ? { enum: policyNames } : false,
              additionalProperties: modeSchema,
            },
          },
        },
      },
      exemptions: exemptionsSchema,
      cluster: {
        type: 'object',
        additionalProperties: false,
        properties: {
          enabled: { enum: ['auto', true, false] },
          kubeconfig: { type: 'string', minLength: 1 },
          staleAfterSeconds: { type: 'number', exclusiveMinimum: 0 },
          lookupTimeoutMs: { type: 'integer', minimum: 50, maximum: 25000 },
          onLookupFailure: { enum: ['allow', 'deny'] },
          issuerRefreshSeconds: { type: 'number', exclusiveMinimum: 0 },
          tokenSelfTestSeconds: { type: 'number', minimum: 0 },
          maxClockSkewSeconds: { type: 'number', exclusiveMinimum: 0 },
        },
      },
    },
  };
}

export const DEFAULT_CONFIG: TokenguardConfig = {
  server: {
    address: '0.0.0.0',
    port: 8443,
    tlsCertFile: 'certs/tls.crt',
    tlsKeyFile: 'certs/tls.key',
    tlsReloadSeconds: 10,
    maxBodyBytes: 8 * 1024 * 1024,
    shutdownGraceSeconds: 25,
    shutdownDelaySeconds: 0,
    callerAuth: {
      mode: 'off',
      bearerToken: {
        issuers: [],
        audiences: [],
        service: { name: 'tokenguard', namespace: 'tokenguard', port: 443 },
        // The ServiceAccount KEP-6060 has kube-apiserver request webhook tokens for.
        subjects: ['system:serviceaccount:kube-system:webhook-auth'],
        // manifests/base/webhooks.yaml: the ValidatingWebhookConfiguration and the
        // MutatingWebhookConfiguration are both named tokenguard (a test checks it).
        webhookConfigurations: ['tokenguard'],
      },
    },
  },
  log: { level: 'info' },
  mode: 'warn',
  policies: {},
  namespaceOverrides: [],
  exemptions: { users: [], groups: [], namespaces: [] },
  cluster: {
    enabled: 'auto',
    staleAfterSeconds: 60,
    lookupTimeoutMs: 2000,
    onLookupFailure: 'allow',
    issuerRefreshSeconds: 60,
    tokenSelfTestSeconds: 300,
    maxClockSkewSeconds: 30,
  },
};

/** A policy's effective settings: its declared defaults, then `policies.<name>` from config (less mode and exemptions). */
export function policySettings(policy: AnyPolicy, config: TokenguardConfig): Record<string, unknown> {
  const { mode: _mode, exemptions: _exemptions, ...configured } = config.policies[policy.name] ?? {};
  return { ...(policy.defaultSettings ?? {}), ...configured };
}
