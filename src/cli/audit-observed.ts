// `tokenguard audit`'s section "Token refresh (observed)": it asks the token refresh observer
// (`GET /observer`, token-observer-state.ts) which running pods missed a refresh, or says plainly
// that nothing observes. Two ways to reach it:
// - through the API server with the user's kubeconfig (the default): the service proxy to the
//   token-observer component's Service, `/api/v1/namespaces/<ns>/services/https:tokenguard-observer:443/proxy/observer`,
//   which needs `get` on `services/proxy` there; the Service selects the Lease holder alone;
// - a direct address (`--observer-url`), where the API server cannot proxy (a process on
//   127.0.0.1: kube-apiserver proxies only to a Pod's IP).
// What each answer means (a real v1.36 kube-apiserver's, test/fixtures/service-proxy): 404 for the
// Service is no component; 503 "no endpoints available" is no replica observing (none holds the
// Lease, or tokenguard runs without --observer); a replica that answers but does not observe says
// why. Anything else (403, a timeout, an answer that is not the observer's) is "could not ask":
// never an empty section that looks like good news.

import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { ApiError, type ApiClient } from '../cluster/client.js';
import { signedByUnknownAuthority } from '../cluster/server-certificate.js';
import { OBSERVER_STATE_PATH, parseObserverState, type ObservedOverduePod, type ObserverState } from '../cluster/token-observer-state.js';
import { OBSERVER_SERVICE } from '../k8s/self-managed-tls.js';
import { errorMessage } from '../observability/errors.js';

export const NOTHING_OBSERVES = 'nothing observes TokenRequests: install manifests/components/token-observer (docs/monitoring.md)';

/** Where audit asks: tokenguard's namespace through the API server, or a direct URL (with the CA that signed its certificate). */
export type ObserverSource = { namespace: string } | { url: string; caFile?: string };

export interface ObservedTokenRefresh {
  /** Where the observer was asked. */
  asked: string;
  /**
   * `observing`: the observer answered (its overdue pods are in `overdue`); `waiting`: it observes but
   * no TokenRequest has reached it yet, so it judges nothing; `nothing observes`; `unknown`: it could
   * not be asked (`detail` says why).
   */
  status: 'observing' | 'waiting' | 'nothing observes' | 'unknown';
  /** One line: why nothing observes, why it could not be asked, or what the observer is. */
  detail: string;
  observer?: Pick<ObserverState, 'replica' | 'since' | 'observingSince' | 'reportedAt' | 'trackedPods'>;
  overdue: ObservedOverduePod[];
}

/** The service-proxy path of the observer's state in `namespace`. */
export function observerProxyPath(namespace: string): string {
  return `/api/v1/namespaces/${encodeURIComponent(namespace)}/services/https:${OBSERVER_SERVICE.name}:${OBSERVER_SERVICE.port}/proxy${OBSERVER_STATE_PATH}`;
}

/** Ask the observer; never throws (what went wrong is the answer's `detail`). */
export async function askObserver(client: ApiClient, source: ObserverSource, timeoutMs: number): Promise<ObservedTokenRefresh> {
  if ('url' in source) {
    const asked = new URL(OBSERVER_STATE_PATH, source.url).toString();
    let body: unknown;
    try {
      body = await getDirect(asked, source.caFile, timeoutMs);
    } catch (err) {
      return unknown(asked, signedByUnknownAuthority(err) ? `${errorMessage(err)}: pass --observer-ca with the CA that signed tokenguard's serving certificate` : errorMessage(err));
    }
    return fromState(asked, body);
  }
  const path = observerProxyPath(source.namespace);
  const service = `Service ${source.namespace}/${OBSERVER_SERVICE.name}`;
  const asked = `${service} (through the API server)`;
  let body: unknown;
  try {
    body = await client.getJson(path, { timeoutMs });
  } catch (err) {
    if (err instanceof ApiError) {
      const said = err.message.replace(/^GET \S+: /, '');
      if (err.statusCode === 404 && err.reason === 'NotFound') return nothing(asked, `no ${service} (${said})`);
      if (err.statusCode === 503 && /no endpoints available for service/.test(err.message)) {
        return nothing(asked, `${service} has no endpoint: no replica holds the Lease ${OBSERVER_SERVICE.name}, or tokenguard runs without --observer`);
      }
      if (err.statusCode === 403) return unknown(asked, `${said} (asking needs get on services/proxy in namespace ${source.namespace})`);
      // Anything else came from the replica itself (a tokenguard without the route), or the proxy could not reach it.
      return unknown(asked, said);
    }
    return unknown(asked, errorMessage(err));
  }
  return fromState(asked, body);
}

function fromState(asked: string, body: unknown): ObservedTokenRefresh {
  let state: ObserverState;
  try {
    state = parseObserverState(body);
  } catch (err) {
    return unknown(asked, `the answer is not a token refresh observer's: ${errorMessage(err)}`);
  }
  const observer = { replica: state.replica, since: state.since, observingSince: state.observingSince, reportedAt: state.reportedAt, trackedPods: state.trackedPods };
  if (!state.observing) return { ...nothing(asked, `replica ${state.replica}: ${state.reason ?? 'not observing'}`), observer };
  if (state.observingSince === null) {
    return {
      asked,
      status: 'waiting',
      detail:
        `replica ${state.replica} observes since ${state.since ?? '?'}, but no TokenRequest has reached it yet: it judges no pod until one does ` +
        '(is the webhook observe-tokenrequests.tokenguard.io registered, with its caBundle?)',
      observer,
      overdue: [],
    };
  }
  return {
    asked,
    status: 'observing',
    detail: `replica ${state.replica}, observing TokenRequests since ${state.observingSince}; ${state.trackedPods} pod(s) tracked; last report ${state.reportedAt ?? 'not yet run'}`,
    observer,
    overdue: state.overdue,
  };
}

const nothing = (asked: string, why: string): ObservedTokenRefresh => ({ asked, status: 'nothing observes', detail: why, overdue: [] });
const unknown = (asked: string, why: string): ObservedTokenRefresh => ({ asked, status: 'unknown', detail: why, overdue: [] });

/** GET a URL over HTTPS (verified against `caFile`, else the system's CAs) and parse its JSON. */
function getDirect(url: string, caFile: string | undefined, timeoutMs: number): Promise<unknown> {
  const ca = caFile === undefined ? undefined : readFileSync(caFile);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method: 'GET', headers: { accept: 'application/json' }, ca, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 200).replace(/\s+/g, ' ').trim()}`));
        try {
          resolve(JSON.parse(text));
        } catch {
          reject(new Error('the answer is not JSON'));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** The section's text (audit's table output). */
export function renderObserved(t: ObservedTokenRefresh, table: (headers: string[], rows: string[][]) => string): string {
  switch (t.status) {
    case 'nothing observes':
      return `${NOTHING_OBSERVES}\n  (asked ${t.asked}: ${t.detail})\n`;
    case 'unknown':
      return `Could not ask the observer (${t.asked}): ${t.detail}\n`;
    case 'waiting':
      return `Observer: ${t.detail}\n`;
    case 'observing':
      return (
        `Observer: ${t.detail}\n` +
        (t.overdue.length === 0
          ? 'No running pod is overdue.\n'
          : table(
              ['NAMESPACE', 'POD', 'NODE', 'KUBELET', 'TOKEN', 'LAST REFRESH', 'LATE', 'LIKELY CAUSE'],
              t.overdue.map((o) => [
                o.namespace,
                o.pod,
                o.node || '-',
                o.kubeletVersion ?? '-',
                o.requestedSeconds === null ? '(none seen)' : `${o.audiences?.length ? o.audiences.join(',') : '(API server)'} ${o.requestedSeconds} s`,
                o.lastRefresh ?? 'never seen',
                `${o.lateSeconds} s`,
                o.likelyCauses.map((c) => c.text).join('; ') || '-',
              ]),
            ))
      );
  }
}
