// The kubelet's token refresh schedule (pkg/kubelet/token requiresRefresh): exact arithmetic,
// the jitter's bounds, the 24-hour cap, and what it means for the extended 3607 s token.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_SYNC_FREQUENCY_SECONDS,
  KUBELET_MAX_JITTER_SECONDS,
  KUBELET_MAX_TTL_SECONDS,
  refreshThresholdSeconds,
  refreshWindow,
  requiresRefresh,
} from '../../src/k8s/token-refresh-schedule.js';

const ISSUED = Date.UTC(2026, 11, 6, 12, 0, 0);
const at = (seconds: number) => ISSUED + seconds * 1000;

describe('refreshThresholdSeconds', () => {
  it('is 80 % of the lifetime, with the 20 % rounded down as the kubelet divides integers', () => {
    assert.equal(refreshThresholdSeconds(600), 480);
    assert.equal(refreshThresholdSeconds(3600), 2880);
    // 3607 * 20 / 100 = 721 (not 721.4): 3607 - 721 = 2886.
    assert.equal(refreshThresholdSeconds(3607), 2886);
    // 20 % of 601 is 120.2, rounded down to 120: the threshold is 481, not 480.8.
    assert.equal(refreshThresholdSeconds(601), 481);
  });

  it('is capped at 24 hours, from 108000 s on (80 % of it is one day)', () => {
    assert.equal(refreshThresholdSeconds(86400), 69120);
    assert.equal(refreshThresholdSeconds(107999), 107999 - 21599);
    assert.equal(refreshThresholdSeconds(108000), KUBELET_MAX_TTL_SECONDS);
    assert.equal(refreshThresholdSeconds(48 * 3600), KUBELET_MAX_TTL_SECONDS);
    assert.equal(refreshThresholdSeconds(2 ** 32), KUBELET_MAX_TTL_SECONDS);
  });

  it('subtracts the jitter, a whole number of seconds from 0 to 9', () => {
    assert.equal(refreshThresholdSeconds(600, 9), 471);
    assert.equal(refreshThresholdSeconds(2 ** 32, 9), KUBELET_MAX_TTL_SECONDS - 9);
    assert.throws(() => refreshThresholdSeconds(600, 10), /at most 9/);
    assert.throws(() => refreshThresholdSeconds(600, 1.5), /whole number/);
    assert.throws(() => refreshThresholdSeconds(0), /requestedSeconds must be a whole number of seconds >= 1, got 0/);
  });
});

describe('requiresRefresh (the kubelet function, in milliseconds)', () => {
  it('answers true strictly after the threshold, for every jitter', () => {
    for (let jitter = 0; jitter <= KUBELET_MAX_JITTER_SECONDS; jitter++) {
      const threshold = refreshThresholdSeconds(600, jitter);
      const exp = at(600);
      assert.equal(requiresRefresh(at(threshold), exp, 600, jitter), false, `jitter ${jitter}: at the threshold`);
      assert.equal(requiresRefresh(at(threshold) + 1, exp, 600, jitter), true, `jitter ${jitter}: 1 ms after`);
    }
  });

  it('uses the 24-hour rule when it comes first', () => {
    const requested = 7 * 24 * 3600;
    const exp = at(requested);
    assert.equal(requiresRefresh(at(KUBELET_MAX_TTL_SECONDS), exp, requested, 0), false);
    assert.equal(requiresRefresh(at(KUBELET_MAX_TTL_SECONDS) + 1, exp, requested, 0), true);
    assert.equal(requiresRefresh(at(KUBELET_MAX_TTL_SECONDS - 9) + 1, exp, requested, 9), true);
  });

  it('refreshes a token whose issue time is in the future (the clock leapt back)', () => {
    assert.equal(requiresRefresh(at(-1), at(600), 600, 0), true);
    assert.equal(requiresRefresh(at(0), at(600), 600, 0), false);
  });

  it('schedules an extended 3607 s token from its requested lifetime: about 48 minutes, not a year', () => {
    // The API server issues the kube-api-access token for a year but returns
    // status.expirationTimestamp = request time + 3607 s; the kubelet computes from that.
    const exp = at(3607);
    assert.equal(requiresRefresh(at(2886), exp, 3607, 0), false);
    assert.equal(requiresRefresh(at(2886) + 1, exp, 3607, 0), true);
    assert.equal(requiresRefresh(at(2877) + 1, exp, 3607, 9), true);
  });
});

describe('refreshWindow', () => {
  it('runs from the threshold less the largest jitter to the threshold plus 1.5 pod-sync periods', () => {
    assert.deepEqual(refreshWindow(600), { earliestSeconds: 471, latestSeconds: 480 + 90 });
    assert.deepEqual(refreshWindow(3607), { earliestSeconds: 2877, latestSeconds: 2886 + 90 });
    assert.deepEqual(refreshWindow(48 * 3600), { earliestSeconds: 86391, latestSeconds: 86400 + 90 });
    assert.deepEqual(refreshWindow(600, 10), { earliestSeconds: 471, latestSeconds: 495 });
    assert.equal(DEFAULT_SYNC_FREQUENCY_SECONDS, 60);
  });

  it('contains every refresh a kubelet with any jitter and any resync delay can make', () => {
    for (const requested of [600, 3600, 3607, 86400, 200000]) {
      const { earliestSeconds, latestSeconds } = refreshWindow(requested);
      for (let jitter = 0; jitter <= KUBELET_MAX_JITTER_SECONDS; jitter++) {
        const threshold = refreshThresholdSeconds(requested, jitter);
        // The first pod sync after the threshold comes within (0, 1.5 x syncFrequency].
        assert.ok(threshold >= earliestSeconds && threshold + 1.5 * DEFAULT_SYNC_FREQUENCY_SECONDS <= latestSeconds, `${requested} s, jitter ${jitter}`);
      }
    }
  });

  it('refuses a non-positive sync period', () => {
    assert.throws(() => refreshWindow(600, 0), /syncFrequencySeconds must be above 0, got 0/);
  });
});
