// Talking to the API server: raw JSON LIST/GET requests and client-node's Watch, both
// authenticated by client-node's KubeConfig (TLS, tokens, exec plugins, proxies).
//
// Why LIST is a raw request and not CoreV1Api.listPodForAllNamespaces: the generated client
// deserializes every item into model classes (V1Pod, V1Container, ... with Date objects) after
// JSON.parse, a second full copy of every object that we would throw away at once. Measured on
// 5,000 captured-shape pods in pages of 500 against the fake API server (same process, so the
// server's serialization is in both figures): the generated client took 1.4-1.8x the time of
// this raw path. We only need a few fields of each object, so we JSON.parse a page, project it
// and drop it. Authentication still comes entirely from KubeConfig.applyToHTTPSOptions.

import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Watch, type KubeConfig } from '@kubernetes/client-node';

/** A non-2xx answer from the API server, with its `Status` body's reason and cause reasons when it sent one. */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly reason?: string,
    /** `details.causes[].reason`: e.g. `NamespaceTerminating` on a create refused by NamespaceLifecycle. */
    readonly causes: string[] = [],
  ) {
    super(message);
  }
}

/** The resourceVersion we asked for is gone (410 Expired / Gone): the caller must relist. */
export function isExpired(err: unknown): boolean {
  return (err as { statusCode?: number })?.statusCode === 410;
}

export interface RequestBounds {
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * The `Accept` header (default `application/json`). kube-apiserver negotiates strictly: it
   * answers /openid/v1/jwks with 406 unless `application/jwk-set+json` (or a wildcard) is accepted.
   */
  accept?: string;
}

export class ApiClient {
  readonly server: string;
  private readonly watcher: Watch;
  private keepAlive?: { material: string; agent: HttpsAgent };

  constructor(readonly kc: KubeConfig) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('kubeconfig has no current cluster');
    this.server = cluster.server.replace(/\/+$/, '');
    this.watcher = new Watch(kc);
  }

  /** GET `path` (with query) and parse the JSON body; rejects with ApiError on a non-2xx status. */
  async getJson<T = any>(path: string, bounds: RequestBounds = {}): Promise<T> {
    const body = await this.getBody(path, bounds);
    try {
      return JSON.parse(body.toString('utf8')) as T;
    } catch {
      throw new Error(`GET ${new URL(this.server + path).pathname}: response is not JSON`);
    }
  }

  /**
   * GET `path` (with query) and return the body's bytes, unparsed: the reflector reads a LIST
   * page's continue token from its head and cuts managedFields out before parsing it (see
   * list-body.ts). Rejects with ApiError (its `Status` message when the body is one) on a
   * non-2xx status.
   */
  async getBody(path: string, bounds: RequestBounds = {}): Promise<Buffer> {
    return this.send('GET', path, undefined, bounds);
  }

  /**
   * A write (POST, PUT, DELETE; PATCH as a JSON merge patch) of a JSON body to `path`, answered with
   * the parsed JSON the API server returns; rejects with ApiError (its `Status` message and reason)
   * on a non-2xx status.
   */
  async writeJson<T = any>(method: 'POST' | 'PUT' | 'DELETE' | 'PATCH', path: string, body?: unknown, bounds: RequestBounds = {}): Promise<T> {
    const text = (await this.send(method, path, body === undefined ? undefined : JSON.stringify(body), bounds)).toString('utf8');
    try {
      return (text ? JSON.parse(text) : {}) as T;
    } catch {
      throw new Error(`${method} ${new URL(this.server + path).pathname}: response is not JSON`);
    }
  }

  private async send(method: string, path: string, body: string | undefined, bounds: RequestBounds): Promise<Buffer> {
    const opts: RequestOptions & { headers: Record<string, string> } = { headers: {} };
    await this.kc.applyToHTTPSOptions(opts);
    opts.agent = this.reusableAgent(opts.agent);
    const url = new URL(this.server + path);
    const request = url.protocol === 'http:' ? httpRequest : httpsRequest;
    const headers: Record<string, string | number> = { ...(opts.headers as Record<string, string>), accept: bounds.accept ?? 'application/json' };
    if (body !== undefined) {
      headers['content-type'] = method === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
      headers['content-length'] = Buffer.byteLength(body);
    }
    return new Promise<Buffer>((resolve, reject) => {
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.destroy();
        reject(err);
      };
      const req = request(url, { ...opts, method, headers, signal: bounds.signal }, (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => fail(err));
        res.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          const bytes = Buffer.concat(chunks);
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) return resolve(bytes);
          const text = bytes.toString('utf8');
          let parsed: any;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          // A plain-text body ("404 page not found\n" for a group/version not served) on one line.
          const message = typeof parsed?.message === 'string' ? parsed.message : text.slice(0, 200).replace(/\s+/g, ' ').trim() || res.statusMessage;
          const causes: unknown[] = Array.isArray(parsed?.details?.causes) ? parsed.details.causes : [];
          const causeReasons = causes.map((c) => (c as { reason?: unknown })?.reason).filter((r): r is string => typeof r === 'string');
          reject(new ApiError(status, `${method} ${url.pathname}: ${status} ${message}`, parsed?.reason, causeReasons));
        });
      });
      const timer = bounds.timeoutMs
        ? setTimeout(() => fail(new Error(`${method} ${url.pathname}: no answer within ${bounds.timeoutMs} ms`)), bounds.timeoutMs)
        : undefined;
      req.on('error', (err) => fail(new Error(`${method} ${url.pathname}: ${err.message}`, { cause: err })));
      req.end(body);
    });
  }

  /**
   * client-node makes a new agent without keep-alive for every request, so a paginated LIST of
   * 100k pods opened ~200 TLS connections. For a plain HTTPS agent (no proxy) we keep one
   * keep-alive agent with the same TLS options, replaced when they change (rotated client certs).
   */
  private reusableAgent(agent: RequestOptions['agent']): RequestOptions['agent'] {
    if (!(agent instanceof HttpsAgent) || agent.constructor !== HttpsAgent) return agent;
    const tls = (agent as HttpsAgent & { options: Record<string, unknown> }).options;
    const material = ['ca', 'cert', 'key', 'pfx', 'rejectUnauthorized', 'servername'].map((k) => JSON.stringify(tls[k] ?? '')).join('\0');
    if (this.keepAlive?.material !== material) {
      this.keepAlive?.agent.destroy();
      this.keepAlive = { material, agent: new HttpsAgent({ ...tls, keepAlive: true, maxSockets: 4 }) };
    }
    return this.keepAlive.agent;
  }

  /** Close the kept-alive connections (the process can then exit). */
  close(): void {
    this.keepAlive?.agent.destroy();
    this.keepAlive = undefined;
  }

  /**
   * Open a watch with client-node's Watch. Resolves once the stream is open (true) or failed to
   * open (false: `done` was already called with the error); `abort` ends it.
   */
  async watch(
    path: string,
    query: Record<string, string | number | boolean>,
    onEvent: (type: string, object: any) => void,
    done: (err: unknown) => void,
  ): Promise<{ open: boolean; abort: () => void }> {
    let ended = false;
    const controller = await this.watcher.watch(path, query, onEvent, (err: unknown) => {
      ended = true;
      done(err);
    });
    return { open: !ended, abort: () => controller.abort() };
  }
}
