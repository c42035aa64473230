// The URLs a listener actually serves, for the start-up log line. Bound to a wildcard (0.0.0.0, as
// in a pod), `https://127.0.0.1:8443` is only one of them, and the one nobody else uses: the pod IP
// is what the Service and the API server reach.

import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';

/**
 * Every `https://host:port` a listener bound to `address` answers on: that address alone, or for a
 * wildcard each address of the machine's interfaces (0.0.0.0: IPv4; `::`: IPv4 and IPv6), link-local
 * IPv6 left out (it needs a zone to be reached). Non-loopback addresses first.
 */
export function servedUrls(
  address: string,
  port: number,
  interfaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces(),
): string[] {
  const url = (host: string) => `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  if (address !== '0.0.0.0' && address !== '::') return [url(address)];
  const all = Object.values(interfaces).flatMap((list) => list ?? []);
  const wanted = all.filter((i) => (i.family === 'IPv4' || (address === '::' && i.family === 'IPv6' && !i.address.toLowerCase().startsWith('fe80:'))));
  const sorted = [...wanted.filter((i) => !i.internal), ...wanted.filter((i) => i.internal)];
  return [...new Set(sorted.map((i) => url(i.address)))];
}
