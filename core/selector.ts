/**
 * Equality-based label selectors (`k=v,k2=v2`, and `k` for "has the label"), the only kind this project writes
 * (core/names.ts, core/pool.ts): matched in memory against the worker's pod cache as the apiserver would match them.
 */

/** Whether `labels` satisfy `selector`. An empty selector matches everything. */
export function matchesSelector(labels: Record<string, string> | undefined, selector: string): boolean {
  for (const term of selector.split(',')) {
    const t = term.trim();
    if (t === '') continue;
    if (/!=|==|\s(in|notin)\s|^!/.test(t)) throw new Error(`unsupported label selector term: ${t}`);
    const eq = t.indexOf('=');
    if (eq < 0) {
      if (labels?.[t] === undefined) return false;
    } else if (labels?.[t.slice(0, eq)] !== t.slice(eq + 1)) return false;
  }
  return true;
}

/**
 * Whether resourceVersion `a` is newer than `b`. Kubernetes calls them opaque; every apiserver backed by etcd gives
 * its revision, so they are compared as numbers when both are, and `a` is taken as newer otherwise.
 */
export function newerVersion(a: string | undefined, b: string | undefined): boolean {
  if (!a || !b || !/^\d+$/.test(a) || !/^\d+$/.test(b)) return true;
  return BigInt(a) >= BigInt(b);
}
