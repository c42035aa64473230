// Policies that exist only for tests of the engine and the server: each does one obvious thing,
// so a test can tell from the response exactly which rule of the engine applied.

import { setMapEntries } from '../../src/admission/patch.js';
import type { AdmissionRequest } from '../../src/admission/review.js';
import type { ClusterView, CacheStatus } from '../../src/cluster/view.js';
import type { AnyPolicy, Exemptions, Finding, MatchRule, Policy } from '../../src/admission/policy.js';

export const PODS_CREATE: MatchRule = { groups: [''], versions: ['v1'], resources: ['pods'], operations: ['CREATE'] };
export const ANYTHING: MatchRule = { groups: ['*'], resources: ['*'], operations: ['*' as never] };

/** Always one `deny` finding: enforce denies, warn turns it into a warning. */
export function denyPolicy(name: string, opts: { match?: MatchRule[]; message?: string; defaultExemptions?: Partial<Exemptions> } = {}): AnyPolicy {
  return {
    name,
    description: `test policy ${name}: always denies`,
    match: opts.match ?? [ANYTHING],
    defaultExemptions: opts.defaultExemptions,
    validate: (req) => [
      {
        policy: name,
        severity: 'deny',
        message: opts.message ?? `${name} says no to ${req.kind.kind}`,
        path: 'spec.volumes[0]',
        detail: `${name} detail`,
        fix: `${name} fix`,
      },
    ],
  };
}

/** Warnings with exactly the given texts. */
export function warnPolicy(name: string, messages: string[], match: MatchRule[] = [ANYTHING]): AnyPolicy {
  return {
    name,
    description: `test policy ${name}: fixed warnings`,
    match,
    validate: (): Finding[] => messages.map((message) => ({ policy: name, severity: 'warn', message })),
  };
}

/** Sets labels and annotations on the object (keys chosen by the test, e.g. with `/` and `~`). */
export function labelPolicy(name: string, labels: Record<string, string>, annotations: Record<string, string> = {}): AnyPolicy {
  return {
    name,
    description: `test policy ${name}: sets labels and annotations`,
    match: [ANYTHING],
    mutate: (req: AdmissionRequest) => {
      const object = req.object ?? {};
      return [...setMapEntries(object, ['metadata', 'labels'], labels), ...setMapEntries(object, ['metadata', 'annotations'], annotations)];
    },
  };
}

/** A validating policy whose gather step waits `ms` (a slow live lookup) before allowing. */
export function slowPolicy(name: string, ms: number, onGather?: () => void): Policy<Record<string, unknown>, Record<string, unknown>, number> {
  return {
    name,
    description: `test policy ${name}: waits ${ms} ms in gather`,
    match: [ANYTHING],
    gather: async () => {
      onGather?.();
      await new Promise((r) => setTimeout(r, ms));
      return ms;
    },
    validate: (_req, _ctx, waited) => [{ policy: name, severity: 'warn', message: `${name} waited ${waited} ms` }],
  };
}

/** A ClusterView that knows only namespace labels: enough for mode-by-label tests. */
export function fakeCluster(namespaceLabels: Record<string, Record<string, string>>): ClusterView {
  const status: CacheStatus = { synced: true, stale: false };
  return {
    status: () => status,
    podsUsingClaim: () => [],
    listPodsUsingClaimLive: async () => [],
    namespaceLabels: (name) => namespaceLabels[name],
    node: () => undefined,
    apiserverPods: () => [],
  };
}
