/** Small statistics and text-table helpers for the benchmark. Pure. */

/** The q-quantile (0..1) by linear interpolation between closest ranks; NaN for no values. */
export function quantile(values: number[], q: number): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const pos = (v.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

export const median = (values: number[]): number => quantile(values, 0.5);

export interface Summary {
  n: number;
  p50: number;
  p95: number;
  max: number;
  min: number;
  mean: number;
}

export function summarize(values: number[]): Summary {
  const v = values.filter((x) => Number.isFinite(x));
  return {
    n: v.length,
    p50: quantile(v, 0.5),
    p95: quantile(v, 0.95),
    max: v.length ? Math.max(...v) : NaN,
    min: v.length ? Math.min(...v) : NaN,
    mean: v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN,
  };
}

export function fmt(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return '-';
  return n.toFixed(digits);
}

/** A plain-text table (also valid Markdown): first row is the header. */
export function table(rows: (string | number)[][], align?: ('l' | 'r')[]): string {
  const cells = rows.map((r) => r.map((c) => String(c)));
  const widths = cells[0].map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const al = align ?? widths.map((_, i) => (i === 0 ? 'l' : 'r'));
  const line = (r: string[]): string =>
    `| ${r.map((c, i) => (al[i] === 'l' ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`;
  const sep = `|${widths.map((w, i) => (al[i] === 'l' ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return [line(cells[0]), sep, ...cells.slice(1).map(line)].join('\n');
}

/** Sums counters by key. */
export function addCounts(into: Record<string, number>, from: Record<string, number>): Record<string, number> {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
  return into;
}
