// kube-apiserver's own histograms (its /metrics text), read as Prometheus reads them: the
// benchmark (bench/apiserver-admission.ts) and the node suites take latencies from them.

export type Histogram = Map<number, number>; // upper bound -> cumulative count

/** The cumulative buckets of `metric` whose labels include every one of `labels`, summed over the rest. */
export function histogram(text: string, metric: string, labels: Record<string, string>): Histogram {
  const h: Histogram = new Map();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}_bucket{`)) continue;
    const m = /\{(.*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const pairs = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (!Object.entries(labels).every(([k, v]) => pairs[k] === v)) continue;
    const le = pairs.le === '+Inf' ? Infinity : Number(pairs.le);
    h.set(le, (h.get(le) ?? 0) + Number(m[2]));
  }
  return h;
}

/** The observations made between two scrapes. */
export function minus(after: Histogram, before: Histogram): Histogram {
  return new Map([...after].map(([le, n]) => [le, n - (before.get(le) ?? 0)]));
}

/** The q-quantile by linear interpolation inside the bucket, as Prometheus' histogram_quantile does. */
export function quantile(h: Histogram, q: number): number {
  const bounds = [...h.keys()].sort((a, b) => a - b);
  const total = h.get(Infinity) ?? 0;
  if (!total) return NaN;
  const rank = q * total;
  let prevBound = 0;
  let prevCount = 0;
  for (const le of bounds) {
    const count = h.get(le)!;
    if (count >= rank) {
      if (le === Infinity) return prevBound;
      return prevBound + ((le - prevBound) * (rank - prevCount)) / Math.max(count - prevCount, 1e-9);
    }
    prevBound = le;
    prevCount = count;
  }
  return prevBound;
}
