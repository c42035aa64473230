// The admission routes, defined once: the HTTP server routes by them, the metrics label by them,
// caller authentication derives token audiences and webhook bindings from them, and tests hold
// the webhook manifests and the docs to them.

import type { WebhookKind } from '../cluster/token-verify.js';

/** Each route (named for the pipeline it runs): its path and the kind of webhook configuration that calls it. */
export const ADMISSION_ROUTES = {
  validate: { path: '/validate', webhook: 'validating' },
  mutate: { path: '/mutate', webhook: 'mutating' },
  // Kubelets' TokenRequests (`serviceaccounts/token` CREATE), recorded by the token refresh
  // observer and always allowed: no policy runs there (manifests/components/token-observer).
  observe: { path: '/observe', webhook: 'validating' },
} as const satisfies Record<string, { path: string; webhook: WebhookKind }>;

export type AdmissionRoute = keyof typeof ADMISSION_ROUTES;

export const ROUTES = Object.keys(ADMISSION_ROUTES) as AdmissionRoute[];

/** `POST /validate?timeout=10s` -> 'validate' (the API server appends its timeout as a query); other requests: undefined. */
export function admissionRoute(method: string | undefined, url: string | undefined): AdmissionRoute | undefined {
  if (method !== 'POST' || !url) return undefined;
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  if (path === ADMISSION_ROUTES.validate.path) return 'validate';
  if (path === ADMISSION_ROUTES.mutate.path) return 'mutate';
  return path === ADMISSION_ROUTES.observe.path ? 'observe' : undefined;
}
