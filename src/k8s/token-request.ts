// TokenRequests (`serviceaccounts/token` CREATE, authentication.k8s.io/v1) as validating admission
// sees them: the API server has filled in the defaults (3600 s, its own audiences) and cleared the
// status, so a webhook sees the audiences, the lifetime and the bound object, never a token.

import type { KubeObject, ResourceRule } from './object.js';

/** The rule that selects TokenRequests: the `token` subresource of ServiceAccounts, CREATE. */
export const TOKEN_REQUEST_RULE: ResourceRule = {
  groups: [''],
  versions: ['v1'],
  resources: ['serviceaccounts'],
  subresources: ['token'],
  operations: ['CREATE'],
};

/** The kind the API server sends for a TokenRequest (its group is authentication.k8s.io). */
export const TOKEN_REQUEST_KIND = 'TokenRequest';

const NODE_USER = 'system:node:';

/** The requesting node's name, when a node made the request (user `system:node:<name>` in group `system:nodes`). */
export function requestingNode(userInfo: { username?: string; groups?: string[] }): string | undefined {
  const user = userInfo.username ?? '';
  if (!user.startsWith(NODE_USER) || !(userInfo.groups ?? []).includes('system:nodes')) return undefined;
  return user.slice(NODE_USER.length) || undefined;
}

/** The TokenRequest's spec fields as sent (unchecked: readers check what they use). */
export function tokenRequestSpec(object: KubeObject | null | undefined): { expirationSeconds: unknown; audiences: unknown; boundObjectRef: unknown } {
  const spec = (object?.spec ?? {}) as Record<string, unknown>;
  return { expirationSeconds: spec.expirationSeconds, audiences: spec.audiences, boundObjectRef: spec.boundObjectRef };
}
