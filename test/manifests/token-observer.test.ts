// The token-observer component (kubectl kustomize): a webhook for kubelets' TokenRequests only,
// failing open at once, routed by a Service that selects the elected observer alone; the
// `--observer` flag on the Deployment; RBAC exactly the observer's declared API calls.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ADMISSION_ROUTES } from '../../src/admission/routes.js';
import { OBSERVER_API_ACCESS, OBSERVER_LABEL, OBSERVER_LEASE } from '../../src/cluster/token-observer-service.js';
import { OBSERVER_SERVICE, servingNames } from '../../src/k8s/self-managed-tls.js';
import { kubectlMissing, OVERLAYS, render, renderWith, selectorMatches, type K8sObject } from './kustomize.js';

const skip = kubectlMissing();

describe('the token-observer component (kubectl kustomize)', { skip }, () => {
  for (const overlay of OVERLAYS) {
    it(`adds to overlays/${overlay}: the observer's webhook, Service, RBAC and flag, nothing else changed`, async () => {
      const r = await renderWith([`overlays/${overlay}`], ['components/token-observer']);
      const plain = await render(`overlays/${overlay}`);
      const key = (o: K8sObject) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
      const added = r.objects.filter((o) => !plain.objects.some((p) => key(p) === key(o))).map(key).sort();
      assert.deepEqual(added, [
        'ClusterRole//tokenguard-observer',
        'ClusterRoleBinding//tokenguard-observer',
        'Role/tokenguard/tokenguard-observer',
        'RoleBinding/tokenguard/tokenguard-observer',
        'Service/tokenguard/tokenguard-observer',
      ]);

      const deployment = r.one('Deployment', 'tokenguard');
      assert.deepEqual(deployment.spec.template.spec.containers[0].args.slice(-1), ['--observer']);
      const env = deployment.spec.template.spec.containers[0].env.map((e: K8sObject) => e.name);
      assert.ok(env.includes('POD_NAME') && env.includes('POD_NAMESPACE'), 'leader election needs the pod name and namespace');

      // One webhook more in the configuration tokenguard fills the caBundle of (self-managed TLS, cert-manager).
      const before = plain.one('ValidatingWebhookConfiguration', 'tokenguard').webhooks as K8sObject[];
      const hooks = r.one('ValidatingWebhookConfiguration', 'tokenguard').webhooks as K8sObject[];
      assert.deepEqual(hooks.slice(0, -1), before);
      const hook = hooks.at(-1)!;
      assert.equal(hook.name, 'observe-tokenrequests.tokenguard.io');
      assert.equal(hook.failurePolicy, 'Ignore');
      assert.equal(hook.timeoutSeconds, 1);
      assert.equal(hook.sideEffects, 'None');
      assert.deepEqual(hook.rules, [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['serviceaccounts/token'], scope: 'Namespaced' }]);
      assert.deepEqual(hook.matchConditions, [{ name: 'from-a-node', expression: "'system:nodes' in request.userInfo.groups" }]);
      assert.equal(hook.clientConfig.service.path, ADMISSION_ROUTES.observe.path);
      // The Service the code names (the certificate's names, audit's service proxy) is the component's.
      assert.deepEqual([hook.clientConfig.service.name, hook.clientConfig.service.port], [OBSERVER_SERVICE.name, OBSERVER_SERVICE.port]);

      // The Service the webhook calls selects the tokenguard pods that carry the observer label, and only those.
      const service = r.one('Service', hook.clientConfig.service.name);
      assert.equal(service.metadata.namespace, hook.clientConfig.service.namespace);
      const podLabels = deployment.spec.template.metadata.labels as Record<string, string>;
      assert.ok(!selectorMatches({ matchLabels: service.spec.selector }, podLabels), 'not every replica');
      assert.ok(selectorMatches({ matchLabels: service.spec.selector }, { ...podLabels, [OBSERVER_LABEL]: 'true' }), 'the labelled one');
    });
  }

  for (const overlay of OVERLAYS) {
    it(`overlays/${overlay} with it: the serving certificate names every Service a webhook calls`, async () => {
      // Found on a real node: a certificate without the observer's Service name fails the API
      // server's TLS verification, and the fail-open webhook is then silently skipped.
      const r = await renderWith([`overlays/${overlay}`], ['components/token-observer']);
      const hooks = ['ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration'].flatMap((kind) => r.objects.filter((o) => o.kind === kind).flatMap((o) => o.webhooks as K8sObject[]));
      const called = [...new Set(hooks.map((h) => `${h.clientConfig.service.name}.${h.clientConfig.service.namespace}.svc`))];
      assert.ok(called.includes('tokenguard-observer.tokenguard.svc'), called.join(' '));
      const certificate = r.objects.find((o) => o.kind === 'Certificate' && o.metadata.name === 'tokenguard-serving');
      // cert-manager's Certificate, else the names self-managed TLS gives (the component sets --observer).
      const named: string[] = certificate ? certificate.spec.dnsNames : servingNames('tokenguard', 'tokenguard', [], true);
      assert.deepEqual(called.filter((n) => !named.includes(n)), [], `named: ${named.join(' ')}`);
    });
  }

  it("grants exactly the observer's declared API calls", async () => {
    const r = await renderWith(['overlays/default'], ['components/token-observer']);
    const granted = [
      ...r.one('Role', 'tokenguard-observer').rules.map((rule: K8sObject) => ({ ...rule, namespace: 'own' })),
      ...r.one('ClusterRole', 'tokenguard-observer').rules,
    ].flatMap((rule: K8sObject) =>
      rule.resources.flatMap((res: string) => rule.verbs.map((v: string) => `${rule.apiGroups[0]}|${res}|${v}|${rule.namespace ?? ''}|${rule.resourceNames?.join(',') ?? ''}`)),
    );
    const declared = OBSERVER_API_ACCESS.flatMap((a) => a.verbs.map((v) => `${a.group}|${a.resource}|${v}|${a.namespace ?? ''}|${a.resourceName ?? ''}`));
    assert.deepEqual(granted.sort(), declared.sort());
    assert.ok(declared.some((d) => d.includes(OBSERVER_LEASE)));
  });
});
