// An in-process fake kube-apiserver for tests and benchmarks. It speaks the wire protocol the
// real client uses, so @kubernetes/client-node is exercised for real (never stubbed):
//
// - HTTPS (the test CA) with bearer-token authentication, and a kubeconfig file pointing at it;
// - LIST   GET /api/v1/pods, /api/v1/namespaces/{ns}/pods, /api/v1/nodes, ... as a `<Kind>List`
//          with `metadata.resourceVersion`, `limit` + `continue` pagination (expired tokens: 410);
// - WATCH  the same paths with `?watch=true`: newline-delimited `{"type","object"}` events, replay
//          from `resourceVersion`, `BOOKMARK`s when `allowWatchBookmarks=true`, `timeoutSeconds`,
//          and a too-old resourceVersion answered as the real API server does: HTTP 200 and an
//          `ERROR` event carrying a 410 `Status` (or, with `expiredWatch: 'http'`, a plain HTTP 410);
// - GET    /api/v1/namespaces/{ns}/{resource}/{name} and /api/v1/{resource}/{name};
// - writes as the real API server answers them: POST creates (409 AlreadyExists when the name is
//          taken; 404 in a missing namespace and the NamespaceLifecycle plugin's 403 in a Terminating
//          one), PUT replaces (409 Conflict when `metadata.resourceVersion` is not the stored one,
//          404 when there is nothing to replace), DELETE removes; each sets a new resourceVersion;
//          names in messages are group-qualified as kube-apiserver writes them; LIST honours an
//          equality `labelSelector`;
// - Events (core/v1) written as the real one takes them: POST (generateName, the namespace of the
//          path, involvedObject.namespace checked against it: 422) and PATCH (JSON Patch or merge
//          patch; 404 for an unknown Event); they are then listed and watched like any object;
// - the service proxy `GET /api/v1/namespaces/{ns}/services/{[scheme:]name[:port]}/proxy/{path}` as
//          a real v1.36 kube-apiserver answers it (test/fixtures/service-proxy): 404 when the Service
//          or its Endpoints do not exist, 503 "no service port N found", 503 "no endpoints available"
//          when the Endpoints have no address or none that is a Pod with that IP; otherwise the
//          request goes to the address (TLS unverified, as kube-apiserver's proxy) without the
//          caller's Authorization header, with X-Forwarded-For and X-Forwarded-Uri, and the answer
//          comes back as it is. Unlike the real one it proxies to loopback addresses (tests run there);
// - faults: drop open watches, compact the event history, go down and come back on the same port;
// - extra routes: `route(method, pathRegex, handler)` (checked before the built-in ones), e.g. OIDC
//   discovery, TokenRequest or Events for other tests.
//
// Objects are stored as plain JSON (as the real API server would serve them); fixtures from
// test/fixtures/cluster-state can be loaded verbatim with `loadList`.

import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import fastJsonPatch from 'fast-json-patch';
import { clusterState } from './fixtures.js';
import { makeCerts, type CertSet } from './tls.js';
import { tempDir } from './temp-dir.js';

export type KubeObject = Record<string, any>;
export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

/** Answers the request, or returns `'next'` to leave it to the next route and the built-in ones. */
export type RouteHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  ctx: { match: RegExpMatchArray; url: URL; body: string; fake: FakeApiServer },
) => void | 'next' | Promise<void | 'next'>;

export interface FakeApiServerOptions {
  /** Serve HTTPS with the test CA (default) or plain HTTP. */
  tls?: boolean;
  certs?: CertSet;
  /** Bearer token the kubeconfig carries and the server requires; `null` disables authentication. */
  token?: string | null;
  /** How a watch from a compacted resourceVersion is refused: an ERROR event (as the real API) or HTTP 410. */
  expiredWatch?: 'event' | 'http';
  /** Send a BOOKMARK to watches that allow them every this many ms (0: only on `bookmark()`). */
  bookmarkIntervalMs?: number;
}

/**
 * The resources this fake serves, with the group/version the real API server serves them under
 * (v1.26). Anything else is a 404, as on the real server: an unknown resource of a served
 * group/version is a `NotFound` Status, an unknown group/version a plain-text `404 page not found`.
 */
const RESOURCES: Record<string, { kind: string; groupVersion: string; clusterScoped?: boolean }> = {
  pods: { kind: 'Pod', groupVersion: 'v1' },
  namespaces: { kind: 'Namespace', groupVersion: 'v1', clusterScoped: true },
  nodes: { kind: 'Node', groupVersion: 'v1', clusterScoped: true },
  persistentvolumeclaims: { kind: 'PersistentVolumeClaim', groupVersion: 'v1' },
  persistentvolumes: { kind: 'PersistentVolume', groupVersion: 'v1', clusterScoped: true },
  configmaps: { kind: 'ConfigMap', groupVersion: 'v1' },
  secrets: { kind: 'Secret', groupVersion: 'v1' },
  events: { kind: 'Event', groupVersion: 'v1' },
  serviceaccounts: { kind: 'ServiceAccount', groupVersion: 'v1' },
  services: { kind: 'Service', groupVersion: 'v1' },
  endpoints: { kind: 'Endpoints', groupVersion: 'v1' },
  podtemplates: { kind: 'PodTemplate', groupVersion: 'v1' },
  replicationcontrollers: { kind: 'ReplicationController', groupVersion: 'v1' },
  deployments: { kind: 'Deployment', groupVersion: 'apps/v1' },
  statefulsets: { kind: 'StatefulSet', groupVersion: 'apps/v1' },
  daemonsets: { kind: 'DaemonSet', groupVersion: 'apps/v1' },
  replicasets: { kind: 'ReplicaSet', groupVersion: 'apps/v1' },
  jobs: { kind: 'Job', groupVersion: 'batch/v1' },
  cronjobs: { kind: 'CronJob', groupVersion: 'batch/v1' },
  storageclasses: { kind: 'StorageClass', groupVersion: 'storage.k8s.io/v1', clusterScoped: true },
  validatingwebhookconfigurations: { kind: 'ValidatingWebhookConfiguration', groupVersion: 'admissionregistration.k8s.io/v1', clusterScoped: true },
  mutatingwebhookconfigurations: { kind: 'MutatingWebhookConfiguration', groupVersion: 'admissionregistration.k8s.io/v1', clusterScoped: true },
  leases: { kind: 'Lease', groupVersion: 'coordination.k8s.io/v1' },
  // The OpenReports CRDs (manifests/crds/openreports.io), as if installed.
  reports: { kind: 'Report', groupVersion: 'openreports.io/v1alpha1' },
  clusterreports: { kind: 'ClusterReport', groupVersion: 'openreports.io/v1alpha1', clusterScoped: true },
};
const SERVED_GROUP_VERSIONS = new Set(Object.values(RESOURCES).map((r) => r.groupVersion));

function kindOf(resource: string): { kind: string; groupVersion: string } {
  const r = RESOURCES[resource];
  if (!r) throw new Error(`the fake API server does not serve ${resource}`);
  return r;
}

/** `secrets`, `reports.openreports.io`: a resource as kube-apiserver names it in messages. */
function groupResource(resource: string): string {
  const { groupVersion } = kindOf(resource);
  return groupVersion.includes('/') ? `${resource}.${groupVersion.split('/')[0]}` : resource;
}

/** A Status's details for one object. */
function details(resource: string, name: string): { name: string; group?: string; kind: string } {
  const { groupVersion } = kindOf(resource);
  return { name, ...(groupVersion.includes('/') ? { group: groupVersion.split('/')[0]! } : {}), kind: resource };
}

export function statusBody(code: number, reason: string, message: string): KubeObject {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

interface StoredEvent {
  rv: number;
  resource: string;
  type: WatchEventType;
  object: KubeObject;
}

interface OpenWatch {
  resource: string;
  namespace?: string;
  bookmarks: boolean;
  res: ServerResponse;
  socket: Socket;
  timer?: NodeJS.Timeout;
}

interface ParsedPath {
  /** `v1` or `group/version`. */
  apiVersion: string;
  resource: string;
  namespace?: string;
  name?: string;
}

/** `/api/v1/namespaces/shop/pods/x` -> { apiVersion: 'v1', resource: 'pods', namespace: 'shop', name: 'x' }. */
function parsePath(pathname: string): ParsedPath | undefined {
  const seg = pathname.split('/').filter(Boolean).map(decodeURIComponent);
  let apiVersion: string;
  let rest: string[];
  if (seg[0] === 'api' && seg.length >= 3) {
    apiVersion = seg[1]!;
    rest = seg.slice(2);
  } else if (seg[0] === 'apis' && seg.length >= 4) {
    apiVersion = `${seg[1]}/${seg[2]}`;
    rest = seg.slice(3);
  } else return undefined;
  // namespaces/{ns}/{resource}[/{name}] for namespaced resources; namespaces[/{name}] is itself a resource.
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    return { apiVersion, namespace: rest[1], resource: rest[2]!, name: rest[3] };
  }
  if (rest.length === 1 || rest.length === 2) return { apiVersion, resource: rest[0]!, name: rest[1] };
  return undefined;
}

const COMMA = Buffer.from(',');
const LIST_END = Buffer.from(']}');
const keyOf = (namespace: string | undefined, name: string) => (namespace ? `${namespace}/${name}` : name);

export class FakeApiServer {
  readonly token: string | null;
  readonly certs: CertSet | undefined;
  readonly kubeconfigPath: string;
  /** Every request served, in order (method, path and query), for assertions. */
  readonly requests: { method: string; path: string; query: Record<string, string> }[] = [];
  expiredWatch: 'event' | 'http';

  private server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly routes: { method: string; pattern: RegExp; handler: RouteHandler }[] = [];
  private readonly store = new Map<string, Map<string, KubeObject>>();
  /** Sorted keys per resource, rebuilt after a write. */
  private readonly sorted = new Map<string, string[]>();
  /**
   * Each stored object's JSON, encoded on first serve (or by `fill`) and kept. A real API server
   * runs on other machines; this one shares the cores with the client a benchmark measures, and
   * a 100k-pod LIST costs it copies of kept bytes instead of 270 MB of fresh JSON.stringify and
   * UTF-8 encoding. Stored objects are replaced on write, never changed in place, so the bytes
   * cannot go stale.
   */
  private readonly serialized = new WeakMap<KubeObject, Buffer>();
  private events: StoredEvent[] = [];
  private rv = 1;
  /** Watches from a resourceVersion below this are expired (410). */
  private compactedRv = 0;
  private readonly watches = new Set<OpenWatch>();
  private bookmarkTimer: NodeJS.Timeout | undefined;
  private up = false;
  private _port = 0;

  private constructor(private readonly opts: FakeApiServerOptions) {
    this.token = opts.token === undefined ? `fake-token-${randomBytes(8).toString('hex')}` : opts.token;
    this.certs = opts.tls === false ? undefined : (opts.certs ?? sharedCerts());
    this.expiredWatch = opts.expiredWatch ?? 'event';
    this.server = this.createServer();
    this.kubeconfigPath = join(tempDir('fake-apiserver-'), 'kubeconfig');
  }

  static async start(opts: FakeApiServerOptions = {}): Promise<FakeApiServer> {
    const fake = new FakeApiServer(opts);
    await fake.listen(0);
    fake.writeKubeconfig();
    if (opts.bookmarkIntervalMs) {
      fake.bookmarkTimer = setInterval(() => fake.bookmark(), opts.bookmarkIntervalMs);
      fake.bookmarkTimer.unref();
    }
    return fake;
  }

  get port(): number {
    return this._port;
  }

  get url(): string {
    return `${this.certs ? 'https' : 'http'}://127.0.0.1:${this._port}`;
  }

  get resourceVersion(): string {
    return String(this.rv);
  }

  get isUp(): boolean {
    return this.up;
  }

  /** Number of open watch connections (optionally for one resource). */
  openWatches(resource?: string): number {
    let n = 0;
    for (const w of this.watches) if (!resource || w.resource === resource) n++;
    return n;
  }

  /** Register a route, checked before the built-in ones (latest registration first). */
  route(method: string, pattern: RegExp, handler: RouteHandler): void {
    this.routes.unshift({ method: method.toUpperCase(), pattern, handler });
  }

  // ---- objects -------------------------------------------------------------------------------

  /** Load a real `<Kind>List` body: its items keep their resourceVersions; no watch events. */
  loadList(resource: string, list: KubeObject): void {
    const items: KubeObject[] = Array.isArray(list.items) ? list.items : [];
    const bucket = this.writable(resource);
    for (const item of items) {
      const copy = structuredClone(item);
      bucket.set(keyOf(copy.metadata?.namespace, copy.metadata?.name), copy);
      this.rv = Math.max(this.rv, Number(copy.metadata?.resourceVersion) || 0);
    }
    this.rv = Math.max(this.rv, Number(list.metadata?.resourceVersion) || 0);
  }

  /**
   * Add objects in bulk without recording watch events (fast, for benchmarks); then compacts
   * history. The objects are taken as they are (not copied) and serialized here, ahead of the
   * first LIST.
   */
  fill(resource: string, objects: Iterable<KubeObject>): void {
    const bucket = this.writable(resource);
    for (const o of objects) {
      o.metadata ??= {};
      o.metadata.resourceVersion = String(++this.rv);
      bucket.set(keyOf(o.metadata.namespace, o.metadata.name), o);
      this.json(o);
    }
    this.compact();
  }

  /** Create or replace an object; open watches see ADDED or MODIFIED. Returns the stored copy. */
  upsert(resource: string, object: KubeObject): KubeObject {
    const copy = structuredClone(object);
    copy.metadata ??= {};
    const key = keyOf(copy.metadata.namespace, copy.metadata.name);
    const existed = this.bucket(resource).has(key);
    return this.apply(resource, { type: existed ? 'MODIFIED' : 'ADDED', object: copy });
  }

  /** Delete an object; open watches see DELETED. Returns false when it did not exist. */
  remove(resource: string, namespace: string | undefined, name: string): boolean {
    const existing = this.bucket(resource).get(keyOf(namespace, name));
    if (!existing) return false;
    this.apply(resource, { type: 'DELETED', object: structuredClone(existing) });
    return true;
  }

  /** Apply a watch event (e.g. a line of a recorded watch stream) to the store and broadcast it. */
  apply(resource: string, event: { type: WatchEventType; object: KubeObject }): KubeObject {
    const object = structuredClone(event.object);
    object.metadata ??= {};
    object.metadata.resourceVersion = String(++this.rv);
    const key = keyOf(object.metadata.namespace, object.metadata.name);
    if (event.type === 'DELETED') this.writable(resource).delete(key);
    else this.writable(resource).set(key, object);
    const stored: StoredEvent = { rv: this.rv, resource, type: event.type, object };
    this.events.push(stored);
    for (const w of this.watches) if (this.matches(w, stored)) this.send(w, { type: stored.type, object });
    return object;
  }

  /** The stored object itself: do not modify it (write with `upsert`). */
  get(resource: string, namespace: string | undefined, name: string): KubeObject | undefined {
    return this.bucket(resource).get(keyOf(namespace, name));
  }

  list(resource: string, namespace?: string): KubeObject[] {
    const all = [...this.bucket(resource).values()];
    return namespace ? all.filter((o) => o.metadata?.namespace === namespace) : all;
  }

  // ---- faults --------------------------------------------------------------------------------

  /** Forget the event history: watches from any older resourceVersion now get 410 Expired. */
  compact(): void {
    this.compactedRv = this.rv;
    this.events = [];
  }

  /** Send a BOOKMARK with the current resourceVersion to every watch that allows them. */
  bookmark(): void {
    for (const w of this.watches) {
      if (!w.bookmarks) continue;
      const { kind, groupVersion } = kindOf(w.resource);
      this.send(w, { type: 'BOOKMARK', object: { kind, apiVersion: groupVersion, metadata: { resourceVersion: String(this.rv) } } });
    }
  }

  /** Cut every open watch connection abruptly (as a load balancer or a crashed server would). */
  dropWatches(): void {
    for (const w of [...this.watches]) {
      this.watches.delete(w);
      clearTimeout(w.timer);
      w.socket.destroy();
    }
  }

  /** End every open watch cleanly (as the server does at `timeoutSeconds`). */
  endWatches(): void {
    for (const w of [...this.watches]) this.closeWatch(w);
  }

  /** Stop listening and cut every connection; objects are kept. */
  async down(): Promise<void> {
    if (!this.up) return;
    this.up = false;
    this.dropWatches();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      for (const s of this.sockets) s.destroy();
    });
  }

  /** Listen again on the same port, like an API server coming back after a restart. */
  async restart(): Promise<void> {
    if (this.up) return;
    this.server = this.createServer();
    await this.listen(this._port);
  }

  async close(): Promise<void> {
    clearInterval(this.bookmarkTimer);
    await this.down();
  }

  // ---- kubeconfig ----------------------------------------------------------------------------

  /** The kubeconfig text for this server (also written to `kubeconfigPath`). */
  kubeconfig(): string {
    const cluster: string[] = [`    server: ${this.url}`];
    if (this.certs) cluster.push(`    certificate-authority-data: ${this.certs.ca.toString('base64')}`);
    else cluster.push('    insecure-skip-tls-verify: true');
    const user = this.token ? [`    token: ${this.token}`] : ['    {}'];
    return [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: fake',
      '  cluster:',
      ...cluster,
      'users:',
      '- name: fake-user',
      '  user:',
      ...user,
      'contexts:',
      '- name: fake',
      '  context:',
      '    cluster: fake',
      '    user: fake-user',
      'current-context: fake',
      '',
    ].join('\n');
  }

  private writeKubeconfig(): void {
    writeFileSync(this.kubeconfigPath, this.kubeconfig(), { mode: 0o600 });
  }

  // ---- HTTP ----------------------------------------------------------------------------------

  private createServer(): Server {
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      this.handle(req, res).catch((err) => {
        if (!res.headersSent) this.sendJson(res, 500, statusBody(500, 'InternalError', String(err?.message ?? err)));
        else res.destroy();
      });
    };
    const server = this.certs
      ? createHttpsServer({ cert: readCert(this.certs), key: readKey(this.certs) }, handler)
      : createHttpServer(handler);
    server.keepAliveTimeout = 30_000;
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    server.on('secureConnection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    return server;
  }

  private listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', reject);
        this._port = (this.server.address() as AddressInfo).port;
        this.up = true;
        resolve();
      });
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const query = Object.fromEntries(url.searchParams);
    const method = (req.method ?? 'GET').toUpperCase();
    if (this.requests.length < 10_000) this.requests.push({ method, path: url.pathname, query });

    const body = await readBody(req);
    for (const r of this.routes) {
      if (r.method !== method && r.method !== '*') continue;
      const match = url.pathname.match(r.pattern);
      if (match && (await r.handler(req, res, { match, url, body, fake: this })) !== 'next') return;
    }

    // As kube-apiserver: no credentials is the anonymous user (authorized for nothing here: 403),
    // wrong credentials are 401.
    if (this.token && req.headers.authorization === undefined) {
      return this.sendJson(res, 403, statusBody(403, 'Forbidden', `forbidden: User "system:anonymous" cannot ${method.toLowerCase()} path "${url.pathname}"`));
    }
    if (this.token && req.headers.authorization !== `Bearer ${this.token}`) {
      return this.sendJson(res, 401, statusBody(401, 'Unauthorized', 'Unauthorized'));
    }
    const proxied = /^\/api\/v1\/namespaces\/([^/]+)\/services\/([^/]+)\/proxy(\/.*)?$/.exec(url.pathname);
    if (proxied && method === 'GET') return this.serviceProxy(req, res, decodeURIComponent(proxied[1]!), decodeURIComponent(proxied[2]!), `${proxied[3] ?? '/'}${url.search}`, url.pathname);
    const parsed = parsePath(url.pathname);
    if (!parsed || !SERVED_GROUP_VERSIONS.has(parsed.apiVersion)) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'content-length': 19 });
      return void res.end('404 page not found\n');
    }
    if (parsed.resource === 'events' && parsed.apiVersion === 'v1' && parsed.namespace && (method === 'POST' || method === 'PATCH')) {
      return method === 'POST' ? this.createEvent(res, parsed.namespace, body) : this.patchEvent(req, res, parsed.namespace, parsed.name, body);
    }
    const served = RESOURCES[parsed.resource];
    if (!served || served.groupVersion !== parsed.apiVersion || (served.clusterScoped && parsed.namespace)) {
      return this.sendJson(res, 404, statusBody(404, 'NotFound', 'the server could not find the requested resource'));
    }
    if (method === 'POST' && !parsed.name) return this.serveCreate(res, parsed, body);
    if (method === 'PUT' && parsed.name) return this.serveUpdate(res, parsed, body);
    if (method === 'DELETE' && parsed.name) return this.serveDelete(res, parsed);
    if (method !== 'GET') return this.sendJson(res, 405, statusBody(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`));
    if (parsed.name) return this.serveGet(res, parsed);
    if (url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1') {
      return this.serveWatch(req, res, parsed, url.searchParams);
    }
    return this.serveList(res, parsed, url.searchParams);
  }

  /** The service proxy, as kube-apiserver's (pkg/registry/core/service/storage ResourceLocation, then the proxy). */
  private serviceProxy(req: IncomingMessage, res: ServerResponse, namespace: string, id: string, target: string, uri: string): void {
    const parts = id.split(':');
    const [scheme, name, port] = parts.length === 3 ? parts : parts.length === 2 ? ['http', parts[0]!, parts[1]!] : ['http', parts[0]!, ''];
    const notFound = () => this.sendJson(res, 404, { ...statusBody(404, 'NotFound', `services "${name}" not found`), details: { name, kind: 'services' } });
    const service = this.get('services', namespace, name!);
    if (!service) return notFound();
    const servicePort = (service.spec?.ports ?? []).find((p: KubeObject) => (port ? String(p.port) === port || p.name === port : true));
    if (!servicePort) return this.sendJson(res, 503, statusBody(503, 'ServiceUnavailable', `no service port ${port} found for service "${name}"`));
    const endpoints = this.get('endpoints', namespace, name!);
    if (!endpoints) return notFound(); // what v1.36 answers for a Service without an Endpoints object
    const subsets: KubeObject[] = endpoints.subsets ?? [];
    if (subsets.length === 0) return this.sendJson(res, 503, statusBody(503, 'ServiceUnavailable', `no endpoints available for service "${name}"`));
    for (const subset of subsets) {
      const endpointPort = (subset.ports ?? []).find((p: KubeObject) => (p.name ?? '') === (servicePort.name ?? ''));
      if (!endpointPort) continue;
      // Only an address that is a Pod's IP counts (kube-apiserver's isValidAddress).
      const address = (subset.addresses ?? []).find((a: KubeObject) => {
        const ref = a.targetRef;
        const pod = ref?.kind === 'Pod' ? this.get('pods', ref.namespace ?? namespace, ref.name) : undefined;
        return pod !== undefined && (pod.status?.podIPs ?? [{ ip: pod.status?.podIP }]).some((ip: KubeObject) => ip.ip === a.ip);
      });
      if (!address) continue;
      const headers: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && k !== 'authorization' && k !== 'host') headers[k] = v;
      headers['x-forwarded-for'] = req.socket.remoteAddress ?? '';
      headers['x-forwarded-uri'] = uri;
      const upstream = (scheme === 'https' ? httpsRequest : httpRequest)(
        { host: address.ip, port: endpointPort.port, path: target, method: 'GET', headers, rejectUnauthorized: false },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, { 'content-type': answer.headers['content-type'] ?? 'application/octet-stream' });
          answer.pipe(res);
        },
      );
      upstream.on('error', (err) => {
        if (!res.headersSent) this.sendJson(res, 503, statusBody(503, 'ServiceUnavailable', `error trying to reach service: ${err.message}`));
      });
      upstream.end();
      return;
    }
    this.sendJson(res, 503, statusBody(503, 'ServiceUnavailable', `no endpoints available for service "${id}"`));
  }

  /** POST an Event, validated as kube-apiserver validates one (the parts tokenguard could get wrong). */
  private createEvent(res: ServerResponse, namespace: string, text: string): void {
    const event = JSON.parse(text) as KubeObject;
    const meta = (event.metadata ??= {});
    const invalid = (field: string, why: string) =>
      this.sendJson(res, 422, { ...statusBody(422, 'Invalid', `Event "${meta.name ?? meta.generateName ?? ''}" is invalid: ${field}: ${why}`) });
    if (meta.namespace && meta.namespace !== namespace) return invalid('metadata.namespace', 'does not match the namespace of the request');
    if (event.involvedObject?.namespace && event.involvedObject.namespace !== namespace) {
      return invalid('involvedObject.namespace', `Invalid value: "${event.involvedObject.namespace}": does not match event.namespace`);
    }
    if (!meta.name) {
      if (!meta.generateName) return invalid('metadata.name', 'Required value: name or generateName is required');
      meta.name = `${meta.generateName}${randomBytes(4).toString('hex').slice(0, 5)}`;
    }
    if (meta.name.length > 253) return invalid('metadata.name', 'Invalid value: must be no more than 253 characters');
    if (this.get('events', namespace, meta.name)) return this.sendJson(res, 409, statusBody(409, 'AlreadyExists', `events "${meta.name}" already exists`));
    meta.namespace = namespace;
    meta.uid = randomUUID();
    meta.creationTimestamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    this.sendJson(res, 201, this.apply('events', { type: 'ADDED', object: event }));
  }

  /** PATCH an Event: `application/json-patch+json` (client-node's default) or a merge patch. */
  private patchEvent(req: IncomingMessage, res: ServerResponse, namespace: string, name: string | undefined, text: string): void {
    const existing = name ? this.get('events', namespace, name) : undefined;
    if (!existing) return this.sendJson(res, 404, { ...statusBody(404, 'NotFound', `events "${name}" not found`), details: { name, kind: 'events' } });
    const patch = JSON.parse(text);
    let patched: KubeObject;
    if ((req.headers['content-type'] ?? '').startsWith('application/json-patch+json')) {
      try {
        patched = fastJsonPatch.applyPatch(structuredClone(existing), patch, true, false).newDocument;
      } catch (err) {
        return this.sendJson(res, 422, statusBody(422, 'Invalid', `the server rejected our request due to an error in our request: ${(err as Error).message}`));
      }
    } else {
      patched = { ...structuredClone(existing), ...patch, metadata: existing.metadata };
    }
    this.sendJson(res, 200, this.apply('events', { type: 'MODIFIED', object: patched }));
  }

  private serveGet(res: ServerResponse, p: ParsedPath): void {
    const obj = this.bucket(p.resource).get(keyOf(p.namespace, p.name!));
    if (!obj) {
      const status = statusBody(404, 'NotFound', `${p.resource} "${p.name}" not found`);
      return this.sendJson(res, 404, { ...status, details: { name: p.name, kind: p.resource } });
    }
    this.sendJson(res, 200, obj);
  }

  /** The body of a write, checked as the real API server checks it; undefined when refused (answered). */
  private writeBody(res: ServerResponse, p: ParsedPath, body: string): KubeObject | undefined {
    let object: KubeObject;
    try {
      object = JSON.parse(body);
    } catch {
      this.sendJson(res, 400, statusBody(400, 'BadRequest', 'the body of the request was in an unknown format'));
      return undefined;
    }
    const { kind, groupVersion } = kindOf(p.resource);
    if (object?.kind !== kind || object.apiVersion !== groupVersion) {
      this.sendJson(res, 400, statusBody(400, 'BadRequest', `the API version in the data (${object?.apiVersion}) does not match the expected API version (${groupVersion})`));
      return undefined;
    }
    object.metadata ??= {};
    if (p.namespace && object.metadata.namespace && object.metadata.namespace !== p.namespace) {
      this.sendJson(res, 400, statusBody(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request'));
      return undefined;
    }
    if (p.name && object.metadata.name !== p.name) {
      this.sendJson(res, 400, statusBody(400, 'BadRequest', 'the name of the object does not match the name on the URL'));
      return undefined;
    }
    if (p.namespace) object.metadata.namespace = p.namespace;
    return object;
  }

  private serveCreate(res: ServerResponse, p: ParsedPath, body: string): void {
    const object = this.writeBody(res, p, body);
    if (!object) return;
    const name = object.metadata.name;
    if (!name) return this.sendJson(res, 422, statusBody(422, 'Invalid', `${kindOf(p.resource).kind} "" is invalid: metadata.name: Required value: name or generateName is required`));
    if (p.namespace) {
      // The NamespaceLifecycle admission plugin: a Terminating namespace takes updates and deletes,
      // never a create. (Tests may leave a namespace unwritten: only a known one is checked.)
      const ns = this.get('namespaces', undefined, p.namespace);
      if (ns?.status?.phase === 'Terminating') {
        const message = `${groupResource(p.resource)} "${name}" is forbidden: unable to create new content in namespace ${p.namespace} because it is being terminated`;
        const causes = [{ reason: 'NamespaceTerminating', message: `namespace ${p.namespace} is being terminated`, field: 'metadata.namespace' }];
        return this.sendJson(res, 403, { ...statusBody(403, 'Forbidden', message), details: { ...details(p.resource, name), causes } });
      }
    }
    if (this.bucket(p.resource).has(keyOf(p.namespace, name))) {
      const status = statusBody(409, 'AlreadyExists', `${groupResource(p.resource)} "${name}" already exists`);
      return this.sendJson(res, 409, { ...status, details: details(p.resource, name) });
    }
    delete object.metadata.resourceVersion;
    object.metadata.uid = randomUUID();
    object.metadata.creationTimestamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    this.sendJson(res, 201, this.apply(p.resource, { type: 'ADDED', object }));
  }

  private serveUpdate(res: ServerResponse, p: ParsedPath, body: string): void {
    const object = this.writeBody(res, p, body);
    if (!object) return;
    const existing = this.bucket(p.resource).get(keyOf(p.namespace, p.name!));
    if (!existing) return this.notFound(res, p);
    const rv = object.metadata.resourceVersion;
    if (rv !== undefined && rv !== existing.metadata?.resourceVersion) {
      const message = `Operation cannot be fulfilled on ${groupResource(p.resource)} "${p.name}": the object has been modified; please apply your changes to the latest version and try again`;
      return this.sendJson(res, 409, { ...statusBody(409, 'Conflict', message), details: details(p.resource, p.name!) });
    }
    // What the server owns stays as it was.
    object.metadata.uid = existing.metadata?.uid;
    object.metadata.creationTimestamp = existing.metadata?.creationTimestamp;
    this.sendJson(res, 200, this.apply(p.resource, { type: 'MODIFIED', object }));
  }

  private notFound(res: ServerResponse, p: ParsedPath): void {
    this.sendJson(res, 404, { ...statusBody(404, 'NotFound', `${groupResource(p.resource)} "${p.name}" not found`), details: details(p.resource, p.name!) });
  }

  private serveDelete(res: ServerResponse, p: ParsedPath): void {
    const existing = this.bucket(p.resource).get(keyOf(p.namespace, p.name!));
    if (!existing) return this.notFound(res, p);
    this.remove(p.resource, p.namespace, p.name!);
    this.sendJson(res, 200, existing); // as kube-apiserver answers a delete with nothing left to finalize
  }

  private serveList(res: ServerResponse, p: ParsedPath, q: URLSearchParams): void {
    const { kind, groupVersion } = kindOf(p.resource);
    const limit = Number(q.get('limit')) || 0;
    let listRv = this.rv;
    let startAfter: string | undefined;
    const cont = q.get('continue');
    if (cont) {
      let token: { rv: number; start: string };
      try {
        token = JSON.parse(Buffer.from(cont, 'base64url').toString('utf8'));
      } catch {
        return this.sendJson(res, 400, statusBody(400, 'BadRequest', 'continue key is not valid: illegal base64 data'));
      }
      if (token.rv < this.compactedRv) {
        return this.sendJson(
          res,
          410,
          statusBody(
            410,
            'Expired',
            'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.',
          ),
        );
      }
      listRv = token.rv;
      startAfter = token.start;
    }
    // Keys in sorted order, as etcd returns them, so pages continue deterministically.
    const bucket = this.bucket(p.resource);
    const all = this.sortedKeys(p.resource);
    const selected = labelSelector(q.get('labelSelector'));
    const keys = all.filter((k) => (!p.namespace || k.startsWith(p.namespace + '/')) && (!selected || selected(bucket.get(k)!)));
    let from = 0;
    if (startAfter !== undefined) {
      // First key after startAfter (binary search: 100k-object lists are paged 500 at a time).
      let lo = 0;
      let hi = keys.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (keys[mid]! <= startAfter) lo = mid + 1;
        else hi = mid;
      }
      from = lo;
    }
    const to = limit > 0 ? Math.min(keys.length, from + limit) : keys.length;
    const metadata: KubeObject = { resourceVersion: String(listRv) };
    if (to < keys.length) {
      metadata.continue = Buffer.from(JSON.stringify({ rv: listRv, start: keys[to - 1] })).toString('base64url');
      metadata.remainingItemCount = keys.length - to;
    }
    // Assembled from each object's stored bytes: building one string of a 500-pod page and
    // encoding it again made this fake, not the client under test, the slow side of a large LIST.
    const parts: Buffer[] = [Buffer.from(`{"kind":"${kind}List","apiVersion":"${groupVersion}","metadata":${JSON.stringify(metadata)},"items":[`)];
    for (let i = from; i < to; i++) {
      if (i > from) parts.push(COMMA);
      parts.push(this.json(bucket.get(keys[i]!)!));
    }
    parts.push(LIST_END);
    const body = Buffer.concat(parts);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
  }

  private serveWatch(req: IncomingMessage, res: ServerResponse, p: ParsedPath, q: URLSearchParams): void {
    const rvParam = q.get('resourceVersion');
    const fromRv = rvParam ? Number(rvParam) : 0;
    if (fromRv > 0 && fromRv < this.compactedRv) {
      const status = statusBody(410, 'Expired', `too old resource version: ${fromRv} (${this.compactedRv})`);
      if (this.expiredWatch === 'http') return this.sendJson(res, 410, status);
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      res.end(JSON.stringify({ type: 'ERROR', object: status }) + '\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const w: OpenWatch = {
      resource: p.resource,
      namespace: p.namespace,
      bookmarks: q.get('allowWatchBookmarks') === 'true',
      res,
      socket: req.socket,
    };
    if (fromRv > 0) {
      for (const e of this.events) if (e.rv > fromRv && this.matches(w, e)) this.send(w, { type: e.type, object: e.object });
    } else {
      // No resourceVersion (or "0"): the current state as ADDED events, then changes.
      for (const o of this.list(p.resource, p.namespace)) this.send(w, { type: 'ADDED', object: o });
    }
    const timeoutSeconds = Number(q.get('timeoutSeconds')) || 0;
    if (timeoutSeconds > 0) w.timer = setTimeout(() => this.closeWatch(w), timeoutSeconds * 1000);
    this.watches.add(w);
    res.on('close', () => {
      clearTimeout(w.timer);
      this.watches.delete(w);
    });
  }

  private closeWatch(w: OpenWatch): void {
    clearTimeout(w.timer);
    this.watches.delete(w);
    w.res.end();
  }

  private matches(w: OpenWatch, e: StoredEvent): boolean {
    return w.resource === e.resource && (!w.namespace || e.object.metadata?.namespace === w.namespace);
  }

  private send(w: OpenWatch, event: KubeObject): void {
    if (!w.res.writableEnded) w.res.write(JSON.stringify(event) + '\n');
  }

  sendJson(res: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private json(obj: KubeObject): Buffer {
    let bytes = this.serialized.get(obj);
    if (bytes === undefined) this.serialized.set(obj, (bytes = Buffer.from(JSON.stringify(obj))));
    return bytes;
  }

  private sortedKeys(resource: string): string[] {
    let keys = this.sorted.get(resource);
    if (!keys) this.sorted.set(resource, (keys = [...this.bucket(resource).keys()].sort()));
    return keys;
  }

  /** The bucket of a resource about to be written: the sorted keys must be rebuilt. */
  private writable(resource: string): Map<string, KubeObject> {
    this.sorted.delete(resource);
    return this.bucket(resource);
  }

  private bucket(resource: string): Map<string, KubeObject> {
    kindOf(resource); // a resource the real API server would not serve is a mistake in the test
    let b = this.store.get(resource);
    if (!b) this.store.set(resource, (b = new Map()));
    return b;
  }
}

/** An equality label selector (`a=b,c==d,e!=f`) as a predicate; undefined for none. */
function labelSelector(text: string | null): ((o: KubeObject) => boolean) | undefined {
  if (!text) return undefined;
  const terms = text.split(',').map((t) => {
    const m = /^([^!=]+)(!=|==|=)(.*)$/.exec(t.trim());
    if (!m) throw new Error(`the fake API server does not understand the label selector term ${JSON.stringify(t)}`);
    return { key: m[1]!, equal: m[2] !== '!=', value: m[3]! };
  });
  return (o) => terms.every((t) => (o.metadata?.labels?.[t.key] === t.value) === t.equal);
}

let certsForProcess: CertSet | undefined;
/** One certificate set per process (RSA key generation takes a moment). */
function sharedCerts(): CertSet {
  return (certsForProcess ??= makeCerts());
}

const readCert = (c: CertSet) => readFileSync(c.certFile);
const readKey = (c: CertSet) => readFileSync(c.keyFile);

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Serve the real cluster state captured with the fixtures (pods, nodes, namespaces, claims). */
export function loadCapturedClusterState(fake: FakeApiServer): void {
  fake.loadList('pods', clusterState('pods.json'));
  fake.loadList('nodes', clusterState('nodes.json'));
  fake.loadList('namespaces', clusterState('namespaces.json'));
  fake.loadList('persistentvolumeclaims', clusterState('persistentvolumeclaims.json'));
}
