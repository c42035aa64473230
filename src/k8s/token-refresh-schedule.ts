// When the kubelet fetches a projected service-account token again: the arithmetic of its token
// manager, so an observer of TokenRequests can tell when a pod's next refresh is due.
//
// kubernetes/kubernetes pkg/kubelet/token/token_manager.go, `requiresRefresh` (the returned
// TokenRequest `tr`, unchanged from v1.12 to v1.36):
//
//     iat := exp.Add(-1 * time.Duration(*tr.Spec.ExpirationSeconds) * time.Second)
//     jitter := time.Duration(rand.Float64()*maxJitter.Seconds()) * time.Second
//     if now.After(iat.Add(maxTTL - jitter)) { return true }
//     if now.After(exp.Add(-1*time.Duration((*tr.Spec.ExpirationSeconds*20)/100)*time.Second - jitter)) { return true }
//     if now.Before(iat) { return true }
//
// with `maxTTL = 24 * time.Hour` and `maxJitter = 10 * time.Second`. Two details matter:
// - `time.Duration(rand.Float64()*10)` truncates a float below 10 to whole nanoseconds, then
//   `* time.Second` makes whole seconds: the jitter is 0 to 9 s, never a fraction;
// - `(expirationSeconds*20)/100` is integer division: 20 % of 3607 s is 721 s, not 721.4.
//
// `exp` is the returned `status.expirationTimestamp`, which the API server sets to the time of the
// request plus `spec.expirationSeconds` (pkg/registry/core/serviceaccount/storage/token.go:
// `ExpirationTimestamp: metav1.Time{Time: nowTime.Add(time.Duration(out.Spec.ExpirationSeconds) * time.Second)}`),
// even when it extends the token itself: with --service-account-extend-token-expiration (on by
// default) a 3607 s token bound to the API server's audiences carries a one-year `exp` claim, but
// its status still says 3607 s. So the kubelet refreshes the default `kube-api-access` token after
// 3607 - 721 = 2886 s (48 min 6 s, less the jitter), like any other 3607 s token.
//
// The kubelet asks `requiresRefresh` only when it sets the volume up again: each sync of the pod
// (the pod worker requeues a pod after `wait.Jitter(resyncInterval, 0.5)`, pkg/kubelet/pod_workers.go
// `workerResyncIntervalJitterFactor = 0.5`; resyncInterval is the kubelet's `syncFrequency`,
// default 1 min) remounts its projected volumes, and the projection calls the token manager.
// So the refresh comes at the first pod sync after the threshold: up to 1.5 x syncFrequency later.

/** pkg/kubelet/token: `maxTTL`, the longest the kubelet keeps a token before fetching again. */
export const KUBELET_MAX_TTL_SECONDS = 24 * 60 * 60;
/** pkg/kubelet/token: the jitter is a whole number of seconds from 0 to this. */
export const KUBELET_MAX_JITTER_SECONDS = 9;
/** KubeletConfiguration `syncFrequency` default: how often a pod is synced (and its volumes set up). */
export const DEFAULT_SYNC_FREQUENCY_SECONDS = 60;
/** pkg/kubelet/pod_workers.go `workerResyncIntervalJitterFactor`: a resync comes after 1 to 1.5 periods. */
export const RESYNC_JITTER_FACTOR = 0.5;

/** Whole seconds, as the kubelet's arithmetic needs; anything else is a bug of the caller. */
function checkSeconds(name: string, value: number, min = 1): void {
  if (!Number.isInteger(value) || value < min) throw new RangeError(`${name} must be a whole number of seconds >= ${min}, got ${value}`);
}

/**
 * Seconds after the issue time from which `requiresRefresh` answers true, for a token requested
 * for `requestedSeconds` and a given jitter (0 to 9): `min(24 h, lifetime - floor(20 % of it)) - jitter`.
 * The kubelet refreshes strictly after that instant (`now.After`).
 */
export function refreshThresholdSeconds(requestedSeconds: number, jitterSeconds = 0): number {
  checkSeconds('requestedSeconds', requestedSeconds);
  checkSeconds('jitterSeconds', jitterSeconds, 0);
  if (jitterSeconds > KUBELET_MAX_JITTER_SECONDS) throw new RangeError(`jitterSeconds must be at most ${KUBELET_MAX_JITTER_SECONDS}, got ${jitterSeconds}`);
  const beforeExpiry = requestedSeconds - Math.floor((requestedSeconds * 20) / 100);
  return Math.min(KUBELET_MAX_TTL_SECONDS, beforeExpiry) - jitterSeconds;
}

/**
 * `requiresRefresh` itself, in milliseconds since the epoch: `expirationMs` is the returned
 * status.expirationTimestamp, `requestedSeconds` the returned spec.expirationSeconds.
 */
export function requiresRefresh(nowMs: number, expirationMs: number, requestedSeconds: number, jitterSeconds: number): boolean {
  const issuedMs = expirationMs - requestedSeconds * 1000;
  if (nowMs > issuedMs + (KUBELET_MAX_TTL_SECONDS - jitterSeconds) * 1000) return true;
  if (nowMs > expirationMs - (Math.floor((requestedSeconds * 20) / 100) + jitterSeconds) * 1000) return true;
  return nowMs < issuedMs;
}

/** When, in seconds after the issue time, a healthy kubelet fetches the next token. */
export interface RefreshWindow {
  /** The earliest: the threshold with the largest jitter (a pod sync may come at once). */
  earliestSeconds: number;
  /** The latest: the threshold without jitter, plus the longest wait for the next pod sync. */
  latestSeconds: number;
}

/**
 * The window in which the kubelet refreshes a token requested for `requestedSeconds`, on a kubelet
 * whose `syncFrequency` is `syncFrequencySeconds`. A 600 s token: 471 to 570 s; a 3607 s token
 * (the default kube-api-access volume, extended or not): 2877 to 2976 s.
 */
export function refreshWindow(requestedSeconds: number, syncFrequencySeconds = DEFAULT_SYNC_FREQUENCY_SECONDS): RefreshWindow {
  if (!(syncFrequencySeconds > 0)) throw new RangeError(`syncFrequencySeconds must be above 0, got ${syncFrequencySeconds}`);
  return {
    earliestSeconds: refreshThresholdSeconds(requestedSeconds, KUBELET_MAX_JITTER_SECONDS),
    latestSeconds: refreshThresholdSeconds(requestedSeconds, 0) + syncFrequencySeconds * (1 + RESYNC_JITTER_FACTOR),
  };
}
