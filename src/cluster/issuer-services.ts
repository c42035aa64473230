// Starting issuer discovery and the token self-test next to the cluster caches (called by
// `serve`): discovery always when there is a cluster, the self-test when tokenguard knows its own
// ServiceAccount (in-cluster, or TOKENGUARD_SERVICE_ACCOUNT) and `cluster.tokenSelfTestSeconds` > 0.

import type { TokenguardConfig } from '../config/schema.js';
import type { Logger } from '../observability/log.js';
import type { ClusterCache } from './cache.js';
import { EventRecorder } from './events.js';
import { IssuerMonitor } from './issuers.js';
import { ownServiceAccount, TokenSelfTest } from './token-selftest.js';

export interface IssuerServices {
  monitor: IssuerMonitor;
  /** The one Event recorder: issuer findings on the Deployment, admission outcomes on their objects. */
  events: EventRecorder;
  selfTest?: TokenSelfTest;
  stop(): void;
}

export function startIssuerServices(cache: ClusterCache, config: TokenguardConfig, logger: Logger, env: NodeJS.ProcessEnv = process.env): IssuerServices {
  const events = new EventRecorder({ kc: cache.client.kc, logger });
  const monitor = new IssuerMonitor({ client: cache.client, logger, events, refreshSeconds: config.cluster.issuerRefreshSeconds });
  cache.issuers = monitor;
  monitor.start();

  let selfTest: TokenSelfTest | undefined;
  let stopped = false;
  const serviceAccount = config.cluster.tokenSelfTestSeconds > 0 ? ownServiceAccount(env) : undefined;
  if (serviceAccount) {
    selfTest = new TokenSelfTest({
      kc: cache.client.kc,
      issuers: monitor,
      cluster: cache,
      serviceAccount,
      intervalSeconds: config.cluster.tokenSelfTestSeconds,
      maxClockSkewSeconds: config.cluster.maxClockSkewSeconds,
      logger,
      events,
    });
    // Discovery's first read has been started above; refresh() joins it, so the test sees the keys.
    void monitor.refresh().then(() => {
      if (!stopped) selfTest?.start();
    });
    logger.info('token self-test enabled', { serviceAccount, everySeconds: config.cluster.tokenSelfTestSeconds });
  } else if (config.cluster.tokenSelfTestSeconds > 0) {
    logger.info('token self-test off: own ServiceAccount unknown (not in-cluster; set TOKENGUARD_SERVICE_ACCOUNT=<namespace>/<name>)');
  }
  return {
    monitor,
    events,
    selfTest,
    stop: () => {
      stopped = true;
      monitor.stop();
      selfTest?.stop();
    },
  };
}
