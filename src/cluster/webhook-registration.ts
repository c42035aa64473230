// Writing and removing webhook configurations for `tokenguard dev register` / `unregister`,
// through client-node's generic object API (create, or replace what is there).

import { KubernetesObjectApi, type KubeConfig } from '@kubernetes/client-node';
import type { KubeObject } from '../k8s/object.js';

function statusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** What the API server said, without client-node's wrapping: the Status message when there is one. */
export function apiMessage(err: unknown): string {
  const body = (err as { body?: unknown } | null)?.body;
  let parsed: unknown = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      parsed = undefined;
    }
  }
  const message = (parsed as { message?: unknown } | undefined)?.message;
  if (typeof message === 'string') return message;
  const code = statusOf(err);
  const text = err instanceof Error ? err.message.split('\n')[0]! : String(err);
  return code ? `HTTP ${code}` : text;
}

export class WebhookRegistrar {
  private readonly api: KubernetesObjectApi;

  constructor(kc: KubeConfig) {
    this.api = KubernetesObjectApi.makeApiClient(kc);
  }

  /** The configuration named like `spec` in the cluster, if any. */
  async get(spec: KubeObject): Promise<KubeObject | undefined> {
    try {
      return await this.api.read<KubeObject>(header(spec));
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw new Error(`cannot read ${spec.kind} ${spec.metadata?.name}: ${apiMessage(err)}`, { cause: err });
    }
  }

  /** Create `spec`, or replace `existing` with it. */
  async put(spec: KubeObject, existing: KubeObject | undefined): Promise<'created' | 'replaced'> {
    try {
      if (!existing) {
        await this.api.create(spec);
        return 'created';
      }
      const withVersion = { ...spec, metadata: { ...spec.metadata, resourceVersion: existing.metadata?.resourceVersion } };
      await this.api.replace(withVersion);
      return 'replaced';
    } catch (err) {
      throw new Error(`cannot write ${spec.kind} ${spec.metadata?.name}: ${apiMessage(err)}`, { cause: err });
    }
  }

  async remove(spec: KubeObject): Promise<void> {
    try {
      await this.api.delete(header(spec));
    } catch (err) {
      if (statusOf(err) === 404) return;
      throw new Error(`cannot delete ${spec.kind} ${spec.metadata?.name}: ${apiMessage(err)}`, { cause: err });
    }
  }
}

function header(spec: KubeObject): { apiVersion: string; kind: string; metadata: { name: string } } {
  return { apiVersion: spec.apiVersion, kind: spec.kind, metadata: { name: spec.metadata?.name } };
}
