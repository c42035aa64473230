// The `observe` route: the captured kubelet TokenRequests of a real v1.36 API server go to the
// observer and are always allowed, with nothing said; a failing recorder changes nothing.

import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Interner, projectPod } from '../../src/cluster/projection.js';
import { TokenObserverService } from '../../src/cluster/token-observer-service.js';
import type { PodSummary } from '../../src/cluster/view.js';
import { DEFAULT_CONFIG } from '../../src/config/schema.js';
import { silentLogger } from '../../src/observability/log.js';
import { FIXTURES } from '../helpers/fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const captured = (file: string): any => JSON.parse(readFileSync(join(FIXTURES, 'admission-reviews-v1.36', file), 'utf8'));
const KUBELET_600 = captured('104-kubelet-token-600-observe-CREATE-serviceaccounts-token-default.json');
const KUBELET_3607 = captured('105-kubelet-token-3607-observe-CREATE-serviceaccounts-token-default.json');
const USER_48H = captured('106-create-token-48h-validate-CREATE-serviceaccounts-token-default.json');

/** The pod the captured requests are bound to, as the pod cache holds it. */
function cacheWithCapturedPod() {
  const ref = KUBELET_600.request.object.spec.boundObjectRef;
  const pod = projectPod(
    {
      metadata: { namespace: 'shop', name: ref.name, uid: ref.uid },
      spec: { nodeName: 'node-a', volumes: [{ name: 'vault-token', projected: { sources: [{ serviceAccountToken: { audience: 'vault', expirationSeconds: 600 } }] } }] },
      status: { phase: 'Running' },
    },
    new Interner(),
  )!;
  const items = new Map<string, PodSummary>([[`shop/${ref.name}`, pod]]);
  return { pods: { items }, node: () => undefined };
}

describe('POST /observe', () => {
  const servers: TestServer[] = [];
  after(async () => {
    for (const s of servers) await s.shutdown();
  });

  it('records the kubelet TokenRequests and allows them, with no warning', async () => {
    const service = new TokenObserverService(cacheWithCapturedPod(), DEFAULT_CONFIG.observer, silentLogger);
    service.start();
    const server = await startTestServer({ observeTokenRequest: service.record });
    servers.push(server);
    for (const review of [KUBELET_600, KUBELET_3607]) {
      const res = await server.post('/observe?timeout=1s', review);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.json, { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: review.request.uid, allowed: true } });
    }
    assert.deepEqual({ ...service.observer.stats(), observingSince: undefined }, { observing: true, observingSince: undefined, pods: 1, tokens: 2 });
    const metrics = (await server.get('/metrics')).text;
    assert.match(metrics, /^tokenguard_token_requests_observed_total\{outcome="recorded"\} [1-9]/m);
    assert.match(metrics, /^tokenguard_admission_requests_total\{route="observe",decision="allowed"\} [1-9]/m);
    service.stop();
  });

  it("allows a person's TokenRequest too, unrecorded: the observe route judges nothing", async () => {
    const service = new TokenObserverService(cacheWithCapturedPod(), DEFAULT_CONFIG.observer, silentLogger);
    service.start();
    const server = await startTestServer({ observeTokenRequest: service.record, config: { mode: 'enforce' } });
    servers.push(server);
    const res = await server.post('/observe', USER_48H);
    assert.deepEqual(res.json.response, { uid: USER_48H.request.uid, allowed: true });
    assert.equal(service.observer.stats().tokens, 0);
    service.stop();
  });

  it('answers allowed when the recorder throws, or when nothing observes', async () => {
    const failing = await startTestServer({
      observeTokenRequest: () => {
        throw new Error('boom');
      },
    });
    const none = await startTestServer();
    servers.push(failing, none);
    for (const server of [failing, none]) {
      const res = await server.post('/observe', KUBELET_600);
      assert.deepEqual(res.json.response, { uid: KUBELET_600.request.uid, allowed: true });
    }
  });
});
