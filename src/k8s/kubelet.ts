// Kubelet versions, and which have kubernetes#130442 (projected volumes of pods whose claim is
// Terminating are never refreshed): the PVC guard, the cache's gauges and `audit` ask.

export interface KubeletVersion {
  major: number;
  minor: number;
  patch: number;
}

/** `v1.31.4`, `v1.31.4-eks-1234abc`, `v1.30.14+k3s1`, `v1.29.3-gke.1` -> numbers; undefined when unparsable. */
export function parseKubeletVersion(v: string | undefined): KubeletVersion | undefined {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(v?.trim() ?? '');
  return m ? { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]) } : undefined;
}

/**
 * Whether a kubelet has kubernetes#130442 (projected volumes of pods whose claim is Terminating
 * are never refreshed). Fixed in 1.33.0 and back-ported to 1.32.4, 1.31.8 and 1.30.12 (PR #130335).
 * Undefined when the version cannot be read.
 */
export function kubeletAffectedBy130442(version: string | undefined): boolean | undefined {
  const v = parseKubeletVersion(version);
  if (!v) return undefined;
  if (v.major !== 1) return v.major < 1;
  if (v.minor < 30) return true;
  if (v.minor === 30) return v.patch < 12;
  if (v.minor === 31) return v.patch < 8;
  if (v.minor === 32) return v.patch < 4;
  return false;
}
