// What policies may read about the cluster. Read-only and synchronous (backed by in-memory caches),
// except `listPodsUsingClaimLive`, which is only for a policy's `gather` step (I/O at the edge).

export interface OwnerRef {
  kind: string;
  name: string;
}

/** A compact projection of a Pod: only what the policies need, so 100k pods fit in < 1 KB each. */
export interface PodSummary {
  namespace: string;
  name: string;
  uid: string;
  /** `spec.nodeName`, empty when unscheduled. */
  nodeName: string;
  /** `status.phase` (Pending, Running, Succeeded, Failed, Unknown). */
  phase: string;
  /** The top owner when ownerReferences allow (ReplicaSet -> Deployment by name convention). */
  owner?: OwnerRef;
  /** Claim names the pod uses: `persistentVolumeClaim.claimName`s and `<pod>-<volume>` of generic ephemeral volumes. */
  claims: string[];
  /**
   * The subset of `claims` that come from generic ephemeral volumes (absent when none): such a
   * claim is the pod's only if the PVC is owned by the pod (as the pvc-protection controller checks).
   */
  ephemeralClaims?: string[];
  /** Whether any volume projects a serviceAccountToken (the injected kube-api-access-* counts). */
  hasProjectedToken: boolean;
  /**
   * The longest the kubelet waits before it fetches one of the pod's projected tokens again (the
   * refresh threshold of k8s/token-refresh-schedule.ts, without jitter); absent without a token.
   */
  tokenRefreshSeconds?: number;
  /** Set when `metadata.deletionTimestamp` is: the pod is Terminating. */
  deleting?: true;
}

export interface NodeSummary {
  name: string;
  /** `status.nodeInfo.kubeletVersion`, e.g. `v1.31.4-eks-1234`. */
  kubeletVersion: string;
  /** Set when the node's `Ready` condition is not `True`: its kubelet is down or unreachable. */
  notReady?: true;
}

/** A kube-apiserver mirror pod in kube-system, with the flags of its kube-apiserver container. */
export interface ApiserverPod {
  namespace: string;
  name: string;
  nodeName: string;
  /** `command` followed by `args` of the kube-apiserver container, as written. */
  argv: string[];
}

export interface CacheStatus {
  /** Every informer has completed its first LIST. */
  synced: boolean;
  /** A watch has been down for longer than `cluster.staleAfterSeconds`. */
  stale: boolean;
  /** Human-readable reason when not synced or stale (shown by /readyz and in warnings). */
  reason?: string;
}

export interface IssuerView {
  /** `issuer` of the served /.well-known/openid-configuration, when it could be read. */
  servedIssuer?: string;
  /** When discovery was last read successfully. */
  fetchedAt?: Date;
  /** Why the last read failed, if it did. */
  error?: string;
  /**
   * Record a Kubernetes Event about an issuer risk found at admission (a mirror pod that drops a
   * trusted issuer: it cannot be denied, so the warning must outlive the request). Fire and
   * forget: never blocks or fails the admission request. Only for requests that are not dry-run.
   */
  reportIssuerRisk?(risk: IssuerRisk): void;
}

export interface IssuerRisk {
  /** The object the risk is about (becomes the Event's `related` object). */
  object: { kind: string; namespace: string; name: string; uid?: string };
  /** Event reason, e.g. `ServiceAccountIssuerDropped`. */
  reason: string;
  message: string;
}

export interface ClusterView {
  status(): CacheStatus;
  /** Pods in `namespace` that use claim `claim`, from the index (O(pods using it)). */
  podsUsingClaim(namespace: string, claim: string): PodSummary[];
  /** Live LIST of the namespace's pods using the claim, bounded by `timeoutMs`; rejects on failure. */
  listPodsUsingClaimLive(namespace: string, claim: string, timeoutMs: number): Promise<PodSummary[]>;
  /** Labels of a Namespace from the cache, undefined when unknown. */
  namespaceLabels(name: string): Record<string, string> | undefined;
  node(name: string): NodeSummary | undefined;
  /** kube-apiserver mirror pods currently in the Pod cache. */
  apiserverPods(): ApiserverPod[];
  /** Issuer discovery, when enabled. */
  issuers?: IssuerView;
}
