/** Small helpers shared by the benchmarks: percentiles and aligned output. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export interface Distribution {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

export function distribution(values: readonly number[]): Distribution {
  const s = [...values].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / Math.max(1, s.length);
  return { n: s.length, p50: percentile(s, 50), p95: percentile(s, 95), p99: percentile(s, 99), max: s[s.length - 1] ?? NaN, mean };
}

export function fmt(d: Distribution, unit: string, digits = 2): string {
  const f = (x: number) => x.toFixed(digits);
  return `n=${d.n} p50=${f(d.p50)}${unit} p95=${f(d.p95)}${unit} p99=${f(d.p99)}${unit} max=${f(d.max)}${unit} mean=${f(d.mean)}${unit}`;
}
