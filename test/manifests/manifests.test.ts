// The kustomize manifests, rendered by the real kubectl, checked against what the code actually
// does: the webhook paths the server answers, the rules the registered policies match, the API
// calls the cluster layer makes, the config the loader accepts, and the certificate the server
// presents (made by the overlay's own generator and verified with the rendered caBundle).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { isNamespaced, resolveKind } from '../../src/k8s/resources.js';
import { VALIDATING_WEBHOOK } from '../../src/cli/check.js';
import { CLUSTER_API_ACCESS, NAMESPACE_API_ACCESS, type ApiAccess } from '../../src/cluster/access.js';
import { resolveConfig } from '../../src/config/load.js';
import { flagOverrides } from '../../src/cli/serve.js';
import { BUILTIN_POLICIES } from '../../src/policies/index.js';
import { admissionRoute } from '../../src/admission/routes.js';
import { generateAdmissionPolicies } from '../../src/vap/generate.js';
import { reviewByPrefix } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { PROJECT_ROOT } from '../helpers/tls.js';
import { tempDir } from '../helpers/temp-dir.js';
import { kubectlMissing, MANIFESTS, namespaceLabels, OVERLAYS, render, Rendered, selectorMatches, type K8sObject, type OverlayName } from './kustomize.js';

const skip = kubectlMissing();
if (skip) console.log(`# SKIP manifest tests: ${skip}`);

type Side = 'validate' | 'mutate';
const SIDES: Side[] = ['validate', 'mutate'];
const OWN_NAMESPACE = 'tokenguard';
/** Namespaces every namespaced rule is evaluated in: user ones, kube-system and our own. */
const NAMESPACES = ['default', 'shop', 'kube-system', OWN_NAMESPACE];

interface PolicyTuple {
  policy: string;
  group: string;
  resource: string;
  operation: string;
  versions?: string[];
  /** The rule's `namespaces`: elsewhere no webhook needs to send it. */
  namespaces?: string[];
}

/** What the registered policies ask for, per side, one (group, resource, operation) at a time. */
function policyTuples(side: Side): PolicyTuple[] {
  const out: PolicyTuple[] = [];
  for (const p of BUILTIN_POLICIES) {
    if (!p[side]) continue;
    for (const rule of p.match) {
      const resources = rule.subresources
        ? rule.resources.flatMap((r) => rule.subresources!.map((s) => (s ? `${r}/${s}` : r)))
        : rule.resources;
      for (const group of rule.groups)
        for (const resource of resources)
          for (const operation of rule.operations) out.push({ policy: p.name, group, resource, operation, versions: rule.versions, namespaces: rule.namespaces });
    }
  }
  return out;
}

const has = (list: readonly string[] | undefined, v: string) => !!list && (list.includes('*') || list.includes(v));
const hasResource = (list: readonly string[] | undefined, v: string) =>
  has(list, v) || (!!list && list.includes('*/*')) || (!v.includes('/') && !!list?.includes('*'));

/** Whether a webhook rule's scope admits objects of this resource (unknown resources: namespaced). */
function scopeAdmits(scope: string | undefined, group: string, resource: string): boolean {
  const namespaced = isNamespaced(group, resource.split('/')[0]!) ?? true;
  return !scope || scope === '*' || (scope === 'Namespaced') === namespaced;
}

function ruleCovers(rule: K8sObject, t: PolicyTuple): boolean {
  return (
    has(rule.apiGroups, t.group) &&
    hasResource(rule.resources, t.resource) &&
    has(rule.operations, t.operation) &&
    (t.versions ?? []).every((v) => has(rule.apiVersions, v)) &&
    scopeAdmits(rule.scope, t.group, t.resource)
  );
}

/** Webhooks the API server would call for a request matching `t` in `namespace` (undefined: cluster-scoped). */
function webhooksCalled(r: Rendered, side: Side, t: PolicyTuple, namespace: string | undefined): string[] {
  return r
    .webhooks()
    .filter((w) => w.side === side)
    .filter((w) => namespace === undefined || selectorMatches(w.namespaceSelector, namespaceLabels(namespace)))
    .filter((w) => (w.rules ?? []).some((rule: K8sObject) => ruleCovers(rule, t)))
    .map((w) => w.name);
}

/** Policy tuples no webhook sends, or sends to more than one webhook, or sends from tokenguard's namespace. */
function coverageProblems(r: Rendered): string[] {
  const problems: string[] = [];
  for (const side of SIDES) {
    for (const t of policyTuples(side)) {
      const what = `${side} ${t.operation} ${t.group || 'core'}/${t.resource} (policy ${t.policy})`;
      if (isNamespaced(t.group, t.resource.split('/')[0]!) === false) {
        const called = webhooksCalled(r, side, t, undefined);
        if (called.length !== 1) problems.push(`${what}: cluster-scoped, called by ${JSON.stringify(called)}`);
        continue;
      }
      for (const ns of NAMESPACES) {
        if (t.namespaces && !t.namespaces.includes(ns)) continue;
        const called = webhooksCalled(r, side, t, ns);
        if (called.length !== (ns === OWN_NAMESPACE ? 0 : 1)) problems.push(`${what} in namespace ${ns}: called by ${JSON.stringify(called)}`);
      }
    }
  }
  return problems;
}

/**
 * Webhook rules (group, resource, operation) no policy of that side matches in the namespaces the
 * webhook serves, or whose scope can never match.
 */
function unusedRuleProblems(r: Rendered): string[] {
  const problems: string[] = [];
  for (const w of r.webhooks()) {
    const serves = (namespaces: string[] | undefined) =>
      !namespaces || namespaces.some((ns) => selectorMatches(w.namespaceSelector, namespaceLabels(ns)));
    const wanted = policyTuples(w.side).filter((t) => serves(t.namespaces));
    for (const rule of w.rules ?? []) {
      for (const group of rule.apiGroups)
        for (const resource of rule.resources) {
          if (!scopeAdmits(rule.scope, group, resource)) problems.push(`${w.name}: ${resource} can never match scope ${rule.scope}`);
          for (const operation of rule.operations) {
            const used = wanted.some(
              (t) => (t.group === group || t.group === '*') && (t.resource === resource || t.resource === '*') && (t.operation === operation || t.operation === '*'),
            );
            if (!used) problems.push(`${w.name}: rule ${operation} ${group || 'core'}/${resource} matches no ${w.side} policy`);
          }
        }
    }
  }
  return problems;
}

describe('manifests (kubectl kustomize)', { skip }, () => {
  const rendered = {} as Record<OverlayName | 'base', Rendered>;
  let server: TestServer;

  before(async () => {
    const all = await Promise.all((['base', ...OVERLAYS.map((o) => `overlays/${o}`)] as const).map((d) => render(d)));
    rendered.base = all[0]!;
    OVERLAYS.forEach((o, i) => (rendered[o] = all[i + 1]!));
    server = await startTestServer();
  });
  after(() => server?.shutdown());

  it('renders the base and every overlay with the objects an install needs', () => {
    for (const name of ['base', ...OVERLAYS] as const) {
      const r = rendered[name];
      for (const kind of ['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Deployment', 'Service', 'PodDisruptionBudget', 'ConfigMap', 'ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration']) {
        assert.equal(r.all(kind).length, 1, `${name}: one ${kind}`);
      }
      assert.equal(r.one('Namespace').metadata.name, OWN_NAMESPACE);
      for (const o of r.objects) {
        const kind = resolveKind(o.apiVersion, o.kind, false);
        assert.ok(kind.known, `${name}: ${o.kind} is in KNOWN_RESOURCES`);
        if (!kind.namespaced) continue;
        assert.ok(o.metadata?.namespace, `${name}: ${o.kind}/${o.metadata?.name} has an explicit namespace`);
      }
    }
  });

  for (const name of OVERLAYS) {
    describe(`overlay ${name}`, () => {
      it('points every webhook at the Service, whose port reaches the container the config listens on', () => {
        const r = rendered[name];
        const svc = r.one('Service');
        const deploy = r.one('Deployment');
        const container = deploy.spec.template.spec.containers[0];
        const config = loadRenderedConfig(r);
        for (const w of r.webhooks()) {
          const ref = w.clientConfig.service;
          assert.equal(w.clientConfig.url, undefined, `${w.name}: uses the Service, not a URL`);
          assert.equal(ref.name, svc.metadata.name, w.name);
          assert.equal(ref.namespace, svc.metadata.namespace, w.name);
          const port = svc.spec.ports.find((p: K8sObject) => p.port === (ref.port ?? 443));
          assert.ok(port, `${w.name}: Service has port ${ref.port ?? 443}`);
          const target = container.ports.find((p: K8sObject) => p.name === port.targetPort || p.containerPort === port.targetPort);
          assert.ok(target, `${w.name}: Service targetPort ${port.targetPort} is a container port`);
          assert.equal(target.containerPort, config.server.port, 'the container port is the port the config listens on');
        }
        assert.ok(selectorMatches({ matchLabels: svc.spec.selector }, deploy.spec.template.metadata.labels), 'Service selects the pods');
      });

      it('uses webhook paths the server routes to the matching side, and answers them over HTTPS', async () => {
        for (const w of rendered[name].webhooks()) {
          const path: string = w.clientConfig.service.path;
          assert.equal(admissionRoute('POST', `${path}?timeout=${w.timeoutSeconds}s`), w.side, `${w.name}: ${path} is the ${w.side} route`);
          const review = reviewByPrefix('005');
          const res = await server.post(`${path}?timeout=${w.timeoutSeconds}s`, review);
          assert.equal(res.status, 200, `${w.name}: POST ${path}: ${res.text}`);
          assert.equal(res.json.response.uid, review.request.uid);
        }
      });

      it('follows the webhook good practices', () => {
        const r = rendered[name];
        assert.ok(r.webhooks().some((w) => w.side === 'validate') && r.webhooks().some((w) => w.side === 'mutate'));
        for (const w of r.webhooks()) {
          // All let kubectl --dry-run=server preview decisions; the validating ones record Events (a
          // denial, a break-glass deletion, a mirror pod that drops a trusted issuer), never on
          // dry-run, so they say so. /mutate records nothing.
          const expected = w.side === 'validate' ? 'NoneOnDryRun' : 'None';
          assert.equal(w.sideEffects, expected, `${w.name}: sideEffects`);
          assert.deepEqual(w.admissionReviewVersions, ['v1'], w.name);
          assert.ok(w.timeoutSeconds >= 1 && w.timeoutSeconds <= 10, `${w.name}: short timeout, got ${w.timeoutSeconds}`);
          assert.equal(w.matchPolicy, 'Equivalent', `${w.name}: requests in other versions are converted, not missed`);
          assert.match(w.name, /\.tokenguard\.io$/);
          if (w.side === 'mutate') {
            assert.equal(w.failurePolicy, 'Ignore', `${w.name}: the mutating side fails open`);
            assert.equal(w.reinvocationPolicy, 'IfNeeded', `${w.name}: re-run after later mutations`);
          }
          // kube-system is never fail-closed: tokenguard needs its CNI and DNS pods to recover.
          if (selectorMatches(w.namespaceSelector, namespaceLabels('kube-system'))) {
            assert.equal(w.failurePolicy, 'Ignore', `${w.name}: applies to kube-system, so it must fail open`);
          }
        }
        const main = r.webhooks().find((w) => w.name === VALIDATING_WEBHOOK);
        assert.ok(main, `${VALIDATING_WEBHOOK} (the name check's output quotes) exists`);
        assert.equal(main.failurePolicy, name === 'staging' ? 'Fail' : 'Ignore', 'staging fails closed; the default overlays warn and fail open');
      });

      it("covers every registered policy's match rules, each request reaching exactly one webhook, never tokenguard's namespace", () => {
        assert.deepEqual(coverageProblems(rendered[name]), []);
      });

      it('has no rule that no registered policy needs', () => {
        assert.deepEqual(unusedRuleProblems(rendered[name]), []);
      });

      it('runs a restricted, probed, spread Deployment with its config and certificate mounted', () => {
        const r = rendered[name];
        const deploy = r.one('Deployment');
        const pod = deploy.spec.template.spec;
        const c = pod.containers[0];
        assert.equal(pod.containers.length, 1);
        assert.ok(deploy.spec.replicas >= 2, 'at least two replicas');
        assert.ok(pod.affinity?.podAntiAffinity, 'pod anti-affinity spreads replicas');
        assert.equal(pod.serviceAccountName, r.one('ServiceAccount').metadata.name);
        assert.equal(pod.securityContext.runAsNonRoot, true);
        assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
        assert.equal(c.securityContext.allowPrivilegeEscalation, false);
        assert.equal(c.securityContext.readOnlyRootFilesystem, true);
        assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
        assert.ok(c.resources.requests.cpu && c.resources.requests.memory && c.resources.limits.memory, 'requests and a memory limit');
        for (const [probe, path] of [['livenessProbe', '/healthz'], ['readinessProbe', '/readyz']] as const) {
          assert.equal(c[probe].httpGet.scheme, 'HTTPS', probe);
          assert.equal(c[probe].httpGet.path, path, probe);
          assert.ok(c.ports.some((p: K8sObject) => p.name === c[probe].httpGet.port), `${probe} uses a named container port`);
        }
        const pdb = r.one('PodDisruptionBudget');
        assert.ok(selectorMatches(pdb.spec.selector, deploy.spec.template.metadata.labels), 'the PDB covers the pods');
        assert.ok(pdb.spec.maxUnavailable === 1 || pdb.spec.minAvailable === 1, 'one replica stays up during disruptions');

        const config = loadRenderedConfig(r);
        const env = Object.fromEntries((c.env ?? []).map((e: K8sObject) => [e.name, e.value]));
        if (env.TOKENGUARD_TLS_CERT === undefined) {
          // Self-managed TLS: nothing mounted, the certificate comes from the API.
          assert.equal(config.server.selfManagedTLS.enabled, true, 'no certificate given: tokenguard manages its own');
          assert.ok(!(pod.volumes ?? []).some((v: K8sObject) => v.secret), 'no Secret is mounted');
        } else {
          const tls = mountOf(deploy, (v) => v.secret);
          assert.ok(env.TOKENGUARD_TLS_CERT.startsWith(tls.mount.mountPath + '/'), 'the certificate is read from the Secret mount');
          assert.ok(env.TOKENGUARD_TLS_KEY.startsWith(tls.mount.mountPath + '/'));
          assert.equal(tls.mount.subPath, undefined, 'the Secret is mounted as a folder so renewals reach the pod');
          assert.equal(tlsSecretName(r), tls.volume.secret.secretName, 'the mounted Secret is the one the overlay produces');
          const overridden = resolveConfig(renderedConfigRaw(r), r.name, BUILTIN_POLICIES, flagOverrides({}, env));
          assert.equal(overridden.server.selfManagedTLS.enabled, false, 'a mounted certificate turns self-managed TLS off');
        }
        // A rolling update that loses nothing (docs/operations.md, "Graceful shutdown"): a new pod is ready
        // before an old one goes, the old one stays up unready while its endpoint removal
        // propagates, drains, and is not killed before it is done.
        assert.deepEqual(deploy.spec.strategy.rollingUpdate, { maxSurge: 1, maxUnavailable: 0 });
        assert.ok(config.server.shutdownDelaySeconds >= 1, 'shutdownDelaySeconds covers endpoint propagation');
        const stopAfter = config.server.shutdownDelaySeconds + config.server.shutdownGraceSeconds;
        assert.ok(pod.terminationGracePeriodSeconds > stopAfter, `grace period above ${stopAfter} s of delay + drain`);
      });

      it('ships a config the real loader accepts, in the overlay\'s mode', () => {
        const config = loadRenderedConfig(rendered[name]);
        assert.equal(config.mode, name === 'staging' ? 'enforce' : 'warn');
        // Caller authentication is rolled out with its own overlay, in audit first.
        assert.equal(config.server.callerAuth.mode, name === 'caller-auth-audit' ? 'audit' : 'off');
      });

      it('serves /healthz and /readyz with the rendered config', async () => {
        const raw = renderedConfigRaw(rendered[name]);
        const s = await startTestServer({ config: raw });
        try {
          assert.equal((await s.get('/healthz')).status, 200);
          assert.equal((await s.get('/readyz')).status, 200);
        } finally {
          await s.shutdown();
        }
      });

      it('grants exactly the API access the cluster layer declares, and nothing else', () => {
        const r = rendered[name];
        const sa = r.one('ServiceAccount');
        const boundTo = (b: K8sObject) => (b.subjects ?? []).some((s: K8sObject) => s.kind === 'ServiceAccount' && s.name === sa.metadata.name && s.namespace === sa.metadata.namespace);
        const clusterRules = r
          .all('ClusterRoleBinding')
          .filter(boundTo)
          .flatMap((b) => r.one('ClusterRole', b.roleRef.name).rules as K8sObject[]);
        const declared = (list: readonly ApiAccess[]) =>
          list.flatMap((a) => a.verbs.map((v) => `${a.group}|${a.resource}|${v}|${(a.resourceNames ?? []).join(',')}`)).sort();
        assert.deepEqual(expandRules(clusterRules).sort(), declared(CLUSTER_API_ACCESS), 'cluster-wide rules == CLUSTER_API_ACCESS');

        // Namespaced Roles, in tokenguard's own namespace only: a TokenRequest for its own
        // ServiceAccount and its own certificate Secret (Events, in any namespace, are in CLUSTER_API_ACCESS).
        const bindings = r.all('RoleBinding').filter(boundTo);
        const roleRules = bindings.flatMap((b) => {
          assert.equal(b.roleRef.kind, 'Role', `${b.metadata.name}: binds a Role, not a ClusterRole`);
          const role = r.all('Role').find((x) => x.metadata.name === b.roleRef.name && x.metadata.namespace === b.metadata.namespace);
          assert.ok(role, `${b.metadata.namespace}/${b.roleRef.name} exists`);
          assert.equal(role.metadata.namespace, sa.metadata.namespace, 'only in its own namespace');
          return role.rules as K8sObject[];
        });
        assert.deepEqual(expandRules(roleRules).sort(), declared(NAMESPACE_API_ACCESS), 'namespaced rules == NAMESPACE_API_ACCESS');
        const config = loadRenderedConfig(r);
        assert.ok(
          NAMESPACE_API_ACCESS.some((a) => a.resource === 'secrets' && a.resourceNames?.includes(config.server.selfManagedTLS.secretName)),
          'the Secret granted by name is the one the config names',
        );
        assert.ok(
          NAMESPACE_API_ACCESS.some((a) => a.resource === 'serviceaccounts/token' && a.resourceNames?.includes(sa.metadata.name)),
          'TokenRequest only for its own ServiceAccount',
        );
        for (const kind of ['ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration']) {
          assert.deepEqual(config.server.selfManagedTLS.webhookConfigurations, [r.one(kind).metadata.name], `the config names the ${kind}`);
        }
        for (const role of [...r.all('ClusterRole'), ...r.all('Role')]) {
          for (const key of expandRules(role.rules)) assert.ok(!key.includes('*'), `no wildcard: ${key}`);
        }
      });
    });
  }

  it('cert-manager: the injector fills both webhook configurations from the Certificate the Deployment mounts', () => {
    for (const name of ['cert-manager', 'caller-auth-audit', 'admission-policies'] as const) {
      const r = rendered[name];
      const svc = r.one('Service');
      for (const kind of ['ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration']) {
        const cfg = r.one(kind);
        const from: string | undefined = cfg.metadata.annotations?.['cert-manager.io/inject-ca-from'];
        assert.ok(from, `${name} ${kind}: cert-manager.io/inject-ca-from`);
        const [ns, certName] = from.split('/');
        const cert = r.all('Certificate').find((c) => c.metadata.namespace === ns && c.metadata.name === certName);
        assert.ok(cert, `${name}: Certificate ${from} is rendered`);
        assert.equal(cert.spec.secretName, tlsSecretName(r));
        assert.ok(cert.spec.dnsNames.includes(`${svc.metadata.name}.${svc.metadata.namespace}.svc`), 'names the Service');
        const issuer = r.all('Issuer').find((i) => i.metadata.name === cert.spec.issuerRef.name && i.metadata.namespace === ns);
        assert.ok(issuer?.spec.ca, `${name}: signed by a CA Issuer, so renewals keep the same caBundle`);
        const caCert = r.all('Certificate').find((c) => c.spec.secretName === issuer.spec.ca.secretName);
        assert.equal(caCert?.spec.isCA, true, 'the CA comes from an isCA Certificate');
        for (const w of cfg.webhooks) assert.equal(w.clientConfig.caBundle, undefined, `${w.name}: no stale caBundle for the injector to fight`);
      }
    }
  });

  it('staging differs from the default only in mode and the main validating failurePolicy', () => {
    const base = renderedConfigRaw(rendered.default);
    const staging = renderedConfigRaw(rendered.staging);
    assert.deepEqual({ ...staging, mode: base.mode }, base);
    // The ConfigMap's content (compared above) changes its hashed name; everything else is equal.
    const normalized = (r: Rendered) =>
      JSON.stringify(r.objects.filter((o) => o.kind !== 'ConfigMap'))
        .replace(/tokenguard-config-[a-z0-9]+/g, 'tokenguard-config')
        .replace(/"failurePolicy":"(Fail|Ignore)"/g, '');
    assert.equal(normalized(rendered.staging), normalized(rendered.default));
  });

  it('the rule checks catch drift: a policy rule without a webhook rule, and a webhook rule without a policy', () => {
    const r = rendered['cert-manager'];
    const withRules = (edit: (w: K8sObject) => void) => {
      const objects = structuredClone(r.objects);
      for (const o of objects) for (const w of o.webhooks ?? []) edit(w);
      return new Rendered('edited', objects);
    };
    // Every validating policy tuple, dropped in turn from the webhooks, is reported missing.
    const first = policyTuples('validate')[0]!;
    const dropped = withRules((w) => {
      w.rules = (w.rules ?? []).map((rule: K8sObject) => (ruleCovers(rule, first) ? { ...rule, operations: rule.operations.filter((o: string) => o !== first.operation) } : rule));
    });
    assert.ok(coverageProblems(dropped).some((p) => p.includes(`${first.operation} ${first.group || 'core'}/${first.resource}`)), 'missing rule reported');
    const extra = withRules((w) => w.rules.push({ apiGroups: [''], apiVersions: ['v1'], operations: ['DELETE'], resources: ['secrets'], scope: 'Namespaced' }));
    assert.ok(unusedRuleProblems(extra).some((p) => p.includes('DELETE core/secrets')), 'unused rule reported');
    // A rule its policy limits to kube-system (configmaps: kubeadm-config) is unused in a webhook
    // that never serves kube-system, and missing where it does.
    const cmEverywhere = withRules((w) => w.rules.push({ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['configmaps'], scope: 'Namespaced' }));
    assert.deepEqual(
      unusedRuleProblems(cmEverywhere).filter((p) => p.includes('core/configmaps')),
      ['validate.tokenguard.io: rule CREATE core/configmaps matches no validate policy', 'mutate.tokenguard.io: rule CREATE core/configmaps matches no mutate policy'],
    );
    const cmNowhere = withRules((w) => {
      w.rules = (w.rules ?? []).map((rule: K8sObject) => ({ ...rule, resources: rule.resources.filter((res: string) => res !== 'configmaps') }));
    });
    assert.ok(coverageProblems(cmNowhere).some((p) => p.includes('CREATE core/configmaps (policy service-account-issuer) in namespace kube-system')), 'kube-system configmaps missing reported');
  });

  it('admission-policies: the committed policies are what `generate vap` makes of the base config, and the webhook turns exactly those off', () => {
    const r = rendered['admission-policies'];
    const baseConfig = resolveConfig(parseYaml(readFileSync(join(MANIFESTS, 'base', 'config.yaml'), 'utf8')), 'base config', BUILTIN_POLICIES);
    const expected = generateAdmissionPolicies(baseConfig);
    const policyKinds = new Set(['ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding', 'MutatingAdmissionPolicy', 'MutatingAdmissionPolicyBinding']);
    const byName = (a: K8sObject, b: K8sObject) => `${a.kind}/${a.metadata.name}`.localeCompare(`${b.kind}/${b.metadata.name}`);
    const committed = r.objects.filter((o) => policyKinds.has(o.kind)).sort(byName);
    assert.deepEqual(committed, (JSON.parse(JSON.stringify(expected)) as K8sObject[]).sort(byName), 'regenerate: npx tokenguard generate vap --config manifests/base/config.yaml > manifests/overlays/admission-policies/admission-policies.yaml');
    // What kube-apiserver enforces, the webhook does not: no warning twice, nothing left out.
    const enforcedByApiserver = new Set(committed.filter((o) => o.kind === 'ValidatingAdmissionPolicy').map((o) => o.metadata.labels['tokenguard.io/policy'] as string));
    assert.deepEqual([...enforcedByApiserver].sort(), ['nfs-mount-options', 'projected-token-audience', 'projected-token-lifetime']);
    const config = loadRenderedConfig(r);
    const off = BUILTIN_POLICIES.filter((p) => config.policies[p.name]?.mode === 'off').map((p) => p.name);
    assert.deepEqual(off.sort(), [...enforcedByApiserver].sort());
    // Everything else is the cert-manager install, unchanged but for the config.
    const rest = (x: Rendered) => JSON.stringify(x.objects.filter((o) => !policyKinds.has(o.kind) && o.kind !== 'ConfigMap')).replace(/tokenguard-config-[a-z0-9]+/g, 'tokenguard-config');
    assert.equal(rest(r), rest(rendered['cert-manager']));
  });

  it('a registry of your own: the one images: entry docs/installation.md gives changes every container, over any overlay', async () => {
    const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8'));
    // As published: every container runs the released image, its tag the package version.
    const published = await render('overlays/audit-reports');
    const images = (r: Rendered) =>
      [...r.all('Deployment').map((d) => d.spec.template.spec), ...r.all('CronJob').map((c) => c.spec.jobTemplate.spec.template.spec)].flatMap((p) =>
        p.containers.map((c: K8sObject) => c.image as string),
      );
    assert.deepEqual(images(published), [`ghcr.io/tokenguard/tokenguard:${pkg.version}`, `ghcr.io/tokenguard/tokenguard:${pkg.version}`]);
    // What the docs tell an air-gapped user to write (and what kustomize edit set image writes).
    const doc = readFileSync(join(PROJECT_ROOT, 'docs', 'installation.md'), 'utf8');
    const entry = /```yaml\n(images:\n {2}- name: ghcr\.io\/tokenguard\/tokenguard\n[^`]*?)```/.exec(doc);
    assert.ok(entry, 'docs/installation.md shows the images: entry for ghcr.io/tokenguard/tokenguard');
    assert.match(doc, /kustomize edit set image ghcr\.io\/tokenguard\/tokenguard=/);
    const mine = tempDir('tokenguard-own-overlay-');
    cpSync(MANIFESTS, join(mine, 'manifests'), { recursive: true });
    for (const overlay of OVERLAYS) {
      writeFileSync(join(mine, 'kustomization.yaml'), `resources:\n  - manifests/overlays/${overlay}\ncomponents:\n  - manifests/components/audit-reports\n${entry[1]!.replace('<registry>/<name>', 'registry.example/tokenguard').replace('<tag>', '9.9.9')}`);
      const r = await render(mine);
      assert.deepEqual(images(r), ['registry.example/tokenguard:9.9.9', 'registry.example/tokenguard:9.9.9'], overlay);
    }
  });

  it('the container image runs the way the Deployment expects', () => {
    const dockerfile = readFileSync(join(PROJECT_ROOT, 'Dockerfile'), 'utf8');
    const deploy = rendered['cert-manager'].one('Deployment');
    const pod = deploy.spec.template.spec;
    const user = /^USER (\d+)/m.exec(dockerfile)?.[1];
    assert.equal(Number(user), pod.securityContext.runAsUser, 'image user == runAsUser');
    assert.ok((dockerfile.match(/^FROM /gm) ?? []).length >= 2, 'multi-stage');
    const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    assert.doesNotMatch(runtime, /node_modules/, 'the runtime stage takes nothing from node_modules: the bundle holds what it needs');
    assert.match(dockerfile, /node hack\/check-deps\.mjs/, 'the build stops when npm ci left the dependency tree incomplete');
    const entry = /^ENTRYPOINT \[.*"\/app\/(dist\/bundle\/cli\/main\.js)"\]/m.exec(dockerfile)?.[1];
    assert.ok(entry && existsSync(join(PROJECT_ROOT, entry)), 'the entrypoint is the bundled CLI (npm run build makes it)');
    for (const label of ['source', 'version', 'revision', 'licenses', 'title', 'description']) {
      assert.match(runtime, new RegExp(`org\\.opencontainers\\.image\\.${label}=`), `OCI label ${label}`);
    }
    const configArg = pod.containers[0].args.find((a: string) => a.startsWith('--config='));
    const mount = pod.containers[0].volumeMounts.find((m: K8sObject) => m.mountPath === configArg.slice('--config='.length));
    assert.ok(mount, '--config points at the mounted ConfigMap');
  });

  it('the image build context is an allow-list holding what the Dockerfile copies, and tools never come from the registry', () => {
    const dockerfile = readFileSync(join(PROJECT_ROOT, 'Dockerfile'), 'utf8');
    const patterns = readFileSync(join(PROJECT_ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    assert.equal(patterns[0], '*', 'everything is excluded first');
    const allowed = patterns.slice(1).map((p) => {
      assert.ok(p.startsWith('!'), `after "*", only re-inclusions: ${p}`);
      return p.slice(1).replace(/\/$/, '');
    });
    for (const path of allowed) {
      assert.doesNotMatch(path, /^(node_modules|dist|certs|\.git)(\/|$)|\*/, `never re-included: ${path}`);
      assert.ok(existsSync(join(PROJECT_ROOT, path)), `re-included path exists: ${path}`);
    }
    const copied = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.trim().split(/\s+/));
    for (const source of copied) assert.ok(allowed.includes(source.replace(/\/$/, '')), `${source} is copied from the context, so re-included`);
    // `npx tsc` without --no-install fetched an unrelated package named tsc when typescript was missing.
    for (const file of ['Dockerfile', 'hack/image.sh', 'hack/ci-image.sh']) {
      const text = readFileSync(join(PROJECT_ROOT, file), 'utf8');
      for (const m of text.matchAll(/\bnpx\s+(\S+)/g)) assert.equal(m[1], '--no-install', `${file}: npx ${m[1]}`);
    }
  });
});

function expandRules(rules: K8sObject[]): string[] {
  return rules.flatMap((rule) =>
    (rule.apiGroups ?? []).flatMap((g: string) =>
      (rule.resources ?? []).flatMap((res: string) => (rule.verbs ?? []).map((v: string) => `${g}|${res}|${v}|${(rule.resourceNames ?? []).join(',')}`)),
    ),
  );
}

function mountOf(deploy: K8sObject, pick: (v: K8sObject) => unknown): { volume: K8sObject; mount: K8sObject } {
  const pod = deploy.spec.template.spec;
  const volume = pod.volumes.find(pick);
  assert.ok(volume, 'volume present');
  const mount = pod.containers[0].volumeMounts.find((m: K8sObject) => m.name === volume.name);
  assert.ok(mount, `volume ${volume.name} is mounted`);
  return { volume, mount };
}

/** The raw config file inside the ConfigMap the Deployment passes with --config. */
function renderedConfigRaw(r: Rendered): any {
  const deploy = r.one('Deployment');
  const c = deploy.spec.template.spec.containers[0];
  const path: string = c.args.find((a: string) => a.startsWith('--config=')).slice('--config='.length);
  const { volume, mount } = mountOf(deploy, (v) => v.configMap);
  assert.equal(mount.mountPath, path, '--config is the mounted file');
  const cm = r.one('ConfigMap', volume.configMap.name);
  const text = cm.data[mount.subPath];
  assert.ok(text, `ConfigMap ${cm.metadata.name} has key ${mount.subPath}`);
  return parseYaml(text);
}

function loadRenderedConfig(r: Rendered) {
  return resolveConfig(renderedConfigRaw(r), `${r.name} ConfigMap`, BUILTIN_POLICIES);
}

/** The Secret the overlay makes: rendered directly or by a cert-manager Certificate. */
function tlsSecretName(r: Rendered): string {
  const fromCert = r.all('Certificate').filter((c) => !c.spec.isCA).map((c) => c.spec.secretName);
  const direct = r.all('Secret').filter((s) => s.type === 'kubernetes.io/tls').map((s) => s.metadata.name);
  const names = [...fromCert, ...direct];
  assert.equal(names.length, 1, `${r.name}: one serving-certificate Secret, found ${JSON.stringify(names)}`);
  return names[0]!;
}
