// The configuration's one definition. TypeBox schemas give everything else: the TypeScript types
// (`Static`), the built-in defaults (each key's `default`), the ajv validation of files and flags
// (the same schema, with every key that has a default made optional) and the configuration
// reference in the docs (config/reference.ts, checked by a test). Policies declare the schema of
// their own settings next to their code (`Policy.settings`); buildConfigSchema() puts them under
// `policies.<name>`, so the whole file is still validated at start-up, strictly.

import { Type, type Static, type TObject, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

/** A string enum as JSON Schema `enum`, so a bad value is reported as "must be one of [...]". */
export function StringEnum<const T extends readonly string[]>(values: T, options: { default?: T[number]; description?: string } = {}) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options });
}

/** A list of non-empty strings (names, globs, audiences). */
export function StringList(options: { default?: string[]; minItems?: number; description?: string } = {}) {
  return Type.Array(Type.String({ minLength: 1 }), options);
}

/** Where a per-namespace setting applies: at least one exact name or glob (`*`, `?`). */
export const NamespaceGlobs = StringList({ minItems: 1, description: 'Exact namespace names or globs: `*` any run of characters, `?` one character.' });

/**
 * Narrows a token policy's per-namespace entry to some ServiceAccounts (the token's subject: a
 * TokenRequest's name, a pod spec's `serviceAccountName`, `default` when it names none).
 */
export const ServiceAccountGlobs = StringList({
  minItems: 1,
  description: 'Only for these ServiceAccounts (exact names or globs; a pod naming none has `default`); unset: every ServiceAccount.',
});

export const MODES = ['enforce', 'warn', 'off'] as const;
export const ModeSchema = StringEnum(MODES);
export type Mode = Static<typeof ModeSchema>;

export const ExemptionsSchema = Type.Object(
  {
    users: StringList({ default: [], description: 'Usernames (`system:serviceaccount:<ns>:<name>` for service accounts) no policy checks.' }),
    groups: StringList({ default: [], description: 'Groups (e.g. `system:nodes`) no policy checks.' }),
    namespaces: StringList({ default: [], description: "Namespaces (exact or globs) no policy checks; also leave them out in the webhooks' `namespaceSelector`." }),
  },
  { additionalProperties: false, default: {} },
);
export type Exemptions = Static<typeof ExemptionsSchema>;

/** A policy's own exemptions: each list given replaces that list of the policy's defaults. */
const replaces = "this policy skips; replaces the policy's own default list";
const PolicyExemptionsSchema = Type.Object(
  {
    users: Type.Optional(StringList({ description: `Usernames ${replaces}.` })),
    groups: Type.Optional(StringList({ description: `Groups ${replaces}.` })),
    namespaces: Type.Optional(StringList({ description: `Namespaces (exact or globs) ${replaces}.` })),
  },
  { additionalProperties: false },
);

const Service = Type.Object(
  {
    name: Type.String({ minLength: 1, default: 'tokenguard', description: "tokenguard's Service, from which the default token audiences are derived." }),
    namespace: Type.String({ minLength: 1, default: 'tokenguard', description: 'Its namespace.' }),
    port: Type.Integer({ minimum: 1, maximum: 65535, default: 443, description: 'Its port.' }),
  },
  { additionalProperties: false, default: {} },
);

const CallerAuthSchema = Type.Object(
  {
    mode: StringEnum(['off', 'audit', 'enforce'], {
      default: 'off',
      description: 'off: no check; audit: check, log and count failures, answer anyway; enforce: 401 on failure.',
    }),
    clientCertificate: Type.Optional(
      Type.Object(
        { caFile: Type.String({ minLength: 1, description: 'Client certificates signed by this CA pass.' }) },
        { additionalProperties: false },
      ),
    ),
    bearerToken: Type.Object(
      {
        issuers: StringList({ default: [], description: 'Accepted token issuers; empty: the served issuer (OIDC discovery).' }),
        audiences: StringList({ default: [], description: 'Accepted audiences besides those derived from `service` and the route.' }),
        service: Service,
        // The ServiceAccount whose token kube-apiserver's webhook kubeconfig carries.
        subjects: StringList({ minItems: 1, default: ['system:serviceaccount:kube-system:webhook-auth'], description: 'Accepted token subjects.' }),
        // manifests/base/webhooks.yaml: the ValidatingWebhookConfiguration and the
        // MutatingWebhookConfiguration are both named tokenguard (a test checks it).
        webhookConfigurations: StringList({
          minItems: 1,
          default: ['tokenguard'],
          description: "Names of tokenguard's own Validating/MutatingWebhookConfigurations: a KEP-6060 token bound to another is refused.",
        }),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false, default: {} },
);
/** `server.callerAuth`: who may call /validate and /mutate (docs: "Authenticating the API server"). */
export type CallerAuthConfig = Static<typeof CallerAuthSchema>;

const DAY = 86400;
const SelfManagedTLSSchema = Type.Object(
  {
    enabled: Type.Boolean({
      default: false,
      description:
        'tokenguard keeps its own CA and serving certificate in a Secret, serves it, injects the CA into its webhook configurations and rotates both ' +
        '(`manifests/base`: true). Off when a certificate is given with `--tls-cert`/`--tls-key` (or their environment variables).',
    }),
    secretName: Type.String({ minLength: 1, default: 'tokenguard-tls', description: 'The Secret that holds the CA and the serving certificate (the source of truth).' }),
    namespace: Type.Optional(Type.String({ minLength: 1, description: "The Secret's namespace, also the Service's (default: the pod's, `POD_NAMESPACE`, else `tokenguard`)." })),
    serviceName: Type.String({ minLength: 1, default: 'tokenguard', description: 'The Service the API server calls: the certificate names `<service>.<namespace>.svc`, `.svc.cluster.local` and `<service>.<namespace>`.' }),
    extraSubjectAltNames: StringList({ default: [], description: 'More DNS names or IP addresses for the serving certificate (e.g. `127.0.0.1` when the API server calls a URL).' }),
    webhookConfigurations: StringList({
      minItems: 1,
      default: ['tokenguard'],
      description: 'Names of the ValidatingWebhookConfiguration and MutatingWebhookConfiguration whose caBundle tokenguard sets; no other is touched.',
    }),
    caLifetimeSeconds: Type.Integer({ minimum: 120, default: 365 * DAY, description: 'Lifetime of a CA (365 days); it is replaced, with an overlap, at `renewAtFraction` of it.' }),
    certLifetimeSeconds: Type.Integer({ minimum: 60, default: 90 * DAY, description: 'Lifetime of a serving certificate (90 days), never beyond its CA.' }),
    renewAtFraction: Type.Number({ exclusiveMinimum: 0, maximum: 0.9, default: 0.67, description: 'When in its lifetime a certificate or CA is renewed.' }),
    checkSeconds: Type.Number({ exclusiveMinimum: 0, maximum: 3600, default: 30, description: 'How often each replica re-reads the Secret and its webhook configurations.' }),
    overlapSeconds: Type.Number({
      minimum: 0,
      default: 120,
      description: 'How long each CA rotation step holds (the new CA trusted before it signs, the old one trusted after); at least twice `checkSeconds`.',
    }),
  },
  { additionalProperties: false, default: {} },
);
export type SelfManagedTLSConfig = Static<typeof SelfManagedTLSSchema>;

const ServerSchema = Type.Object(
  {
    address: Type.String({ minLength: 1, default: '0.0.0.0', description: 'Listen address (`::` for IPv6, `127.0.0.1` for local only).' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 8443, description: 'Listen port (`0`: any free port, logged at start-up).' }),
    tlsCertFile: Type.String({ minLength: 1, default: 'certs/tls.crt', description: 'Serving certificate, PEM (chain allowed); relative paths are from the working directory.' }),
    tlsKeyFile: Type.String({ minLength: 1, default: 'certs/tls.key', description: 'Its private key, PEM.' }),
    selfManagedTLS: SelfManagedTLSSchema,
    callerAuth: CallerAuthSchema,
    tlsReloadSeconds: Type.Number({
      exclusiveMinimum: 0,
      maximum: 3600,
      default: 10,
      description: 'How often the certificate, key and client CA files are re-read; a changed, consistent pair is served to new connections without a restart.',
    }),
    maxBodyBytes: Type.Integer({
      minimum: 1024,
      maximum: 268435456,
      default: 8 * 1024 * 1024,
      description:
        'Largest request body; a larger one gets 413 at once (before the body is read, with no `100 Continue`, when `Content-Length` says so), ' +
        'and the connection closes once what the client still sends is drained, so it can read the 413.',
    }),
    shutdownGraceSeconds: Type.Number({
      minimum: 0,
      maximum: 600,
      default: 25,
      description:
        'After the listener closes, how long the drain may take before remaining connections are cut. Keep ' +
        "`shutdownDelaySeconds + shutdownGraceSeconds` below the pod's `terminationGracePeriodSeconds`.",
    }),
    shutdownDelaySeconds: Type.Number({
      minimum: 0,
      maximum: 600,
      default: 0,
      description:
        'On SIGTERM, how long to keep accepting while `/readyz` already answers 503 and responses say `Connection: close`, so endpoint ' +
        'removal reaches every client first; 3-5 in a cluster (`manifests/base`: 5).',
    }),
  },
  { additionalProperties: false, default: {} },
);

const NamespaceOverrideSchema = Type.Object(
  {
    namespaces: NamespaceGlobs,
    mode: Type.Optional(StringEnum(MODES, { description: 'Mode of every policy in these namespaces.' })),
    policies: Type.Optional(Type.Record(Type.String(), ModeSchema)),
  },
  { additionalProperties: false },
);
export type NamespaceOverride = Static<typeof NamespaceOverrideSchema>;

const ClusterSchema = Type.Object(
  {
    enabled: Type.Unsafe<'auto' | boolean>({
      enum: ['auto', true, false],
      default: 'auto',
      description: '`auto`: use a cluster when credentials are found; `true`: fail start-up without one; `false`: never (`--no-cluster`).',
    }),
    kubeconfig: Type.Optional(Type.String({ minLength: 1, description: 'Kubeconfig file (else `KUBECONFIG`, in-cluster, `~/.kube/config`).' })),
    staleAfterSeconds: Type.Number({ exclusiveMinimum: 0, default: 60, description: 'A cache whose watch has been down this long is no longer trusted.' }),
    lookupTimeoutMs: Type.Integer({
      minimum: 50,
      maximum: 25000,
      default: 2000,
      description: 'Bound on a live lookup when the cache cannot answer (keep well under the webhook `timeoutSeconds`).',
    }),
    onLookupFailure: StringEnum(['allow', 'deny'], {
      default: 'allow',
      description: 'What a cluster-backed check decides when neither the cache nor a live lookup can answer.',
    }),
    issuerRefreshSeconds: Type.Number({ exclusiveMinimum: 0, default: 60, description: 'Interval between reads of the served OIDC discovery document and key set.' }),
    tokenSelfTestSeconds: Type.Number({ minimum: 0, default: 300, description: 'Interval of the token self-test (TokenRequest and verification); `0` disables it.' }),
    maxClockSkewSeconds: Type.Number({ exclusiveMinimum: 0, default: 30, description: 'Clock skew above which the self-test reports a problem.' }),
  },
  { additionalProperties: false, default: {} },
);

const ObserverSchema = Type.Object(
  {
    enabled: Type.Boolean({
      default: false,
      description:
        "Record the kubelets' TokenRequests (route `/observe`, manifests/components/token-observer) and report running pods whose " +
        'token refresh is overdue. Needs a cluster.',
    }),
    marginSeconds: Type.Integer({
      minimum: 0,
      maximum: 86400,
      default: 120,
      description:
        "How long after the kubelet's latest possible refresh (80 % of the requested lifetime or 24 h, plus 1.5 pod syncs) a pod's " +
        'refresh may still come before the pod is reported overdue: room for a retried TokenRequest and clock drift.',
    }),
    kubeletSyncFrequencySeconds: Type.Integer({
      minimum: 1,
      maximum: 3600,
      default: 60,
      description: "The kubelets' `syncFrequency` (KubeletConfiguration, default 1m): a refresh waits for the pod's next sync, up to 1.5 of it.",
    }),
    reportSeconds: Type.Integer({
      minimum: 5,
      maximum: 3600,
      default: 30,
      description: 'How often the observer frees the pods that left the cache and reports overdue ones (metric, Events, log).',
    }),
    leaderElection: Type.Boolean({
      default: true,
      description:
        'Observe only while holding the Lease `tokenguard-observer` in its own namespace, labelling its own pod `tokenguard.io/observer=true` ' +
        "(the token observer's Service selects that label); `false`: every replica observes (one replica only).",
    }),
    namespace: Type.String({
      minLength: 1,
      default: 'tokenguard',
      description:
        "Where `tokenguard audit` asks the observer: the namespace of the Service `tokenguard-observer` (tokenguard's own). " +
        "The server itself observes in its pod's namespace (`POD_NAMESPACE`).",
    }),
  },
  { additionalProperties: false, default: {} },
);
/** `observer`: the token refresh observer (docs/monitoring.md, "Token refresh"). */
export type ObserverConfig = Static<typeof ObserverSchema>;

/** `policies.<name>` as the file may write it: mode, exemptions, and the policy's own settings. */
export interface PolicyConfig {
  mode?: Mode;
  exemptions?: Partial<Exemptions>;
  [setting: string]: unknown;
}

/** The configuration without the policies' own settings (their schemas come with the policies). */
const CoreSchema = Type.Object(
  {
    server: ServerSchema,
    log: Type.Object(
      {
        level: StringEnum(['debug', 'info', 'warn', 'error'], {
          default: 'info',
          description: 'Decision lines with findings are `info`, plain allows and patches `debug`; rejected requests and reload problems `warn`.',
        }),
      },
      { additionalProperties: false, default: {} },
    ),
    mode: StringEnum(MODES, { default: 'warn', description: 'Default mode of every policy.' }),
    policies: Type.Unsafe<Record<string, PolicyConfig>>({ type: 'object', default: {}, description: 'Per policy: `mode`, `exemptions` and its own settings.' }),
    namespaceOverrides: Type.Array(NamespaceOverrideSchema, { default: [], description: 'Modes per namespace; later entries win over earlier ones.' }),
    exemptions: ExemptionsSchema,
    cluster: ClusterSchema,
    observer: ObserverSchema,
  },
  { additionalProperties: false },
);

export type TokenguardConfig = Static<typeof CoreSchema>;

/** What the configuration needs to know of a policy: its name and the schema of its settings. */
export interface PolicySettingsSpec {
  name: string;
  /** The policy's own settings under `policies.<name>`, each key with its `default`. */
  settings?: TObject;
  /** What JSON Schema cannot say (a minimum above a maximum), on the effective settings: `<path>: <message>`. */
  checkSettings?(settings: never): string[];
}

/** The schema of a whole configuration file, with the given policies under `policies`. */
export function buildConfigSchema(policies: readonly PolicySettingsSpec[]): TObject {
  const names = policies.map((p) => p.name);
  const perPolicy: Record<string, TSchema> = {};
  for (const p of policies) {
    perPolicy[p.name] = Type.Optional(
      Type.Object(
        {
          mode: Type.Optional(StringEnum(MODES, { description: 'Mode of this policy (default: the global `mode`).' })),
          exemptions: Type.Optional(PolicyExemptionsSchema),
          ...(p.settings?.properties ?? {}),
        },
        { additionalProperties: false },
      ),
    );
  }
  const override = Type.Object(
    {
      ...NamespaceOverrideSchema.properties,
      policies: Type.Optional(
        // An empty enum is not a valid schema, so with no policies no key is allowed at all.
        Type.Unsafe<Record<string, Mode>>({
          type: 'object',
          propertyNames: names.length ? { enum: names } : false,
          additionalProperties: ModeSchema,
          description: "Mode of one policy in these namespaces; beats the entry's `mode`.",
        }),
      ),
    },
    { additionalProperties: false },
  );
  return Type.Object(
    {
      ...CoreSchema.properties,
      policies: Type.Object(perPolicy, { additionalProperties: false, default: {} }),
      namespaceOverrides: Type.Array(override, { default: [], description: CoreSchema.properties.namespaceOverrides.description }),
    },
    { additionalProperties: false },
  );
}

/** A copy of `schema` in which a key that has a default may be left out: what a file may write. */
export function acceptingDefaults(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(acceptingDefaults);
  if (typeof schema !== 'object' || schema === null) return schema;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) out[key] = acceptingDefaults(value);
  const props = (schema as { properties?: Record<string, { default?: unknown }> }).properties;
  const required = (schema as { required?: string[] }).required;
  if (props && required) {
    const left = required.filter((k) => props[k]?.default === undefined);
    if (left.length) out.required = left;
    else delete out.required;
  }
  return out;
}

/** Every default of the configuration, from the schema. */
export const DEFAULT_CONFIG: TokenguardConfig = Object.freeze(Value.Default(CoreSchema, {}) as TokenguardConfig);

/** The client CA the TLS server must ask certificates for: only while caller authentication is on. */
export function callerAuthCAFile(config: CallerAuthConfig): string | undefined {
  return config.mode === 'off' ? undefined : config.clientCertificate?.caFile;
}

/** A policy's effective settings: the defaults of its schema under `policies.<name>` from config (less mode and exemptions). */
export function policySettings<S = Record<string, unknown>>(policy: PolicySettingsSpec, config: Pick<TokenguardConfig, 'policies'>): S {
  const { mode: _mode, exemptions: _exemptions, ...configured } = config.policies[policy.name] ?? {};
  return (policy.settings ? Value.Default(policy.settings, Value.Clone(configured)) : configured) as S;
}
