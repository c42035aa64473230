// tokenguard's webhook configurations (manifests/base/webhooks.yaml) pointed at a URL instead of
// the in-cluster Service: the same names, rules, namespace selectors and failure policies, with
// `clientConfig.url` (URL + each webhook's path) and the CA that signed the server's certificate.
// `tokenguard dev register` and the end-to-end suite both register them this way.

import type { KubeObject } from './object.js';

/** Marks configurations `tokenguard dev register` made, so `dev unregister` removes only those. */
export const DEV_REGISTRATION_LABEL = 'tokenguard.io/dev-registration';
/** Where a dev registration points (an annotation: a URL is no label value). */
export const DEV_URL_ANNOTATION = 'tokenguard.io/dev-url';

/**
 * Copies of the webhook configurations `docs` with every webhook's `clientConfig` replaced by
 * `{url: url + path, caBundle}`; `labels` and `annotations` join the metadata. Throws naming a
 * webhook whose clientConfig has no Service path (the manifests always route by path).
 */
export function webhooksAtUrl(
  docs: readonly KubeObject[],
  url: string,
  caBundle: string,
  extra: { labels?: Record<string, string>; annotations?: Record<string, string> } = {},
): KubeObject[] {
  const base = url.replace(/\/+$/, '');
  return docs.map((doc) => {
    const copy = structuredClone(doc);
    if (extra.labels) copy.metadata = { ...copy.metadata, labels: { ...copy.metadata?.labels, ...extra.labels } };
    if (extra.annotations) copy.metadata = { ...copy.metadata, annotations: { ...copy.metadata?.annotations, ...extra.annotations } };
    for (const webhook of Array.isArray(copy.webhooks) ? copy.webhooks : []) {
      const path = webhook?.clientConfig?.service?.path;
      if (typeof path !== 'string') throw new Error(`webhook ${webhook?.name ?? '(unnamed)'} of ${copy.kind} ${copy.metadata?.name}: no clientConfig.service.path`);
      webhook.clientConfig = { url: base + path, caBundle };
    }
    return copy;
  });
}
