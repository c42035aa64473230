// Kubernetes objects as JSON, and the names the API uses for them: the leaf every layer reads
// Kubernetes through. Nothing here imports anything of the project.

/** A Kubernetes object as JSON; readers check the shapes of the fields they use. */
 
export type KubeObject = Record<string, any>;

export type Operation = 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT';
export const OPERATIONS: readonly Operation[] = ['CREATE', 'UPDATE', 'DELETE', 'CONNECT'];

export interface GroupVersionKind {
  group: string;
  version: string;
  kind: string;
}

export interface GroupVersionResource {
  group: string;
  version: string;
  resource: string;
}

/** Which requests a rule selects, as a webhook rule says it; `*` matches anything. */
export interface ResourceRule {
  groups: string[];
  versions?: string[];
  resources: string[];
  subresources?: string[];
  operations: Operation[];
}

/** `namespace/name`, or `name` for a cluster-scoped object: how caches key objects. */
export function objectKey(o: KubeObject): string {
  const m = o.metadata ?? {};
  return m.namespace ? `${m.namespace}/${m.name}` : String(m.name);
}
