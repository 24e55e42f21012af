/** Human output: compact tables and relative times ("expires in 4m 59s", "2m ago"). */

/** 299 -> "4m 59s", 90061 -> "1d 1h" (two most significant units). */
export function humanSeconds(totalSeconds: number): string {
  let rest = Math.max(0, Math.round(totalSeconds));
  if (rest === 0) return '0s';
  const parts: string[] = [];
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) parts.push(`${n}${unit}`);
    rest -= n * size;
  }
  return parts.slice(0, 2).join(' ');
}

/** "in 4m 59s" or "3m 2s ago" relative to now. */
export function relative(iso: string | null | undefined, now: number): string {
  if (!iso) return '-';
  const delta = (new Date(iso).getTime() - now) / 1000;
  if (Math.abs(delta) < 1) return 'now';
  return delta > 0 ? `in ${humanSeconds(delta)}` : `${humanSeconds(-delta)} ago`;
}

/** Text safe for one terminal line: control characters removed, long text cut with an ellipsis. */
export function cell(text: string | null | undefined, max = 40): string {
  const clean = printable(text ?? '-');
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}

/** Text from the server as a terminal should show it: control characters and bidi overrides become spaces. */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, ' ');
}

/** Left-aligned columns under upper-case headers; "(none)" for an empty list. */
export function table(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  if (rows.length === 0) return '(none)\n';
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cols: readonly string[]) =>
    cols.map((c, i) => (i === cols.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(headers.map((h) => h.toUpperCase())), ...rows.map(line)].join('\n') + '\n';
}

export const json = (value: unknown): string => `${JSON.stringify(value, null, 2)}\n`;
