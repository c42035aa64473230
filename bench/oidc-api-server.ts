// The fake API server of the caller-authentication scenario of bench/run.ts, in a process of its
// own (on the load generator's CPU): OIDC discovery and the key set the servers verify bearer
// tokens against, and a token shaped like the one kube-apiserver sends (kube-system/webhook-auth,
// for tokenguard's Service URL). Its caches of pods, nodes and namespaces are empty.
//
//   fork: node dist/bench/oidc-api-server.js    -> { kind: 'ready', kubeconfigPath, token }

import { FakeApiServer } from '../test/helpers/fake-apiserver.js';
import { serveOidc, signToken } from '../test/helpers/oidc.js';

export type OidcApiServerMsg = { kind: 'ready'; kubeconfigPath: string; token: string };

async function main(): Promise<void> {
  const fake = await FakeApiServer.start();
  const oidc = await serveOidc(fake);
  const token = await signToken(oidc.keys[0]!, {
    issuer: oidc.issuer,
    audience: 'https://tokenguard.tokenguard.svc',
    namespace: 'kube-system',
    serviceAccount: 'webhook-auth',
    lifetimeSeconds: 24 * 3600,
  });
  process.send!({ kind: 'ready', kubeconfigPath: fake.kubeconfigPath, token } satisfies OidcApiServerMsg);
}

main().catch((err) => {
  process.stderr.write(`bench OIDC API server failed: ${err?.stack ?? err}\n`);
  process.exit(1);
});
