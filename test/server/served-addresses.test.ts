// The start-up line's `addresses`: what a listener bound to a wildcard really serves (a pod's IP
// first), not a loopback URL.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { NetworkInterfaceInfo } from 'node:os';
import { servedUrls } from '../../src/server/served-addresses.js';

const iface = (address: string, family: 'IPv4' | 'IPv6', internal = false) =>
  ({ address, family, internal, netmask: '', mac: '00:00:00:00:00:00', cidr: null, ...(family === 'IPv6' ? { scopeid: 0 } : {}) }) as NetworkInterfaceInfo;

/** The interfaces of a dual-stack pod: loopback and eth0. */
const POD = {
  lo: [iface('127.0.0.1', 'IPv4', true), iface('::1', 'IPv6', true)],
  eth0: [iface('10.244.1.7', 'IPv4'), iface('fd00:10:244:1::7', 'IPv6'), iface('fe80::a8b1:2ff:fe3c:4d5e', 'IPv6')],
};

describe('servedUrls', () => {
  it('0.0.0.0 in a pod: the pod IP first, then loopback; IPv4 only', () => {
    assert.deepEqual(servedUrls('0.0.0.0', 8443, POD), ['https://10.244.1.7:8443', 'https://127.0.0.1:8443']);
  });

  it(':: serves IPv6 too, without link-local addresses', () => {
    assert.deepEqual(servedUrls('::', 8443, POD), ['https://10.244.1.7:8443', 'https://[fd00:10:244:1::7]:8443', 'https://127.0.0.1:8443', 'https://[::1]:8443']);
  });

  it('a specific address is the one URL', () => {
    assert.deepEqual(servedUrls('127.0.0.1', 9443, POD), ['https://127.0.0.1:9443']);
    assert.deepEqual(servedUrls('fd00::1', 9443, POD), ['https://[fd00::1]:9443']);
  });

  it('this machine\'s own interfaces by default', () => {
    assert.ok(servedUrls('0.0.0.0', 1).includes('https://127.0.0.1:1'));
  });
});
