const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };
const DURATION_RE = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/;

/**
 * Parses "90s", "30m", "1h30m", "2d" into whole seconds. Returns undefined for anything else
 * (including "", "0m", negative numbers and bare numbers), so callers can report bad input.
 */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (trimmed === '' || trimmed.length > 32) return undefined;
  const m = DURATION_RE.exec(trimmed);
  if (!m) return undefined;
  const [, d, h, mi, s] = m;
  const total =
    Number(d ?? 0) * UNIT_SECONDS.d! +
    Number(h ?? 0) * UNIT_SECONDS.h! +
    Number(mi ?? 0) * UNIT_SECONDS.m! +
    Number(s ?? 0);
  return total > 0 && Number.isSafeInteger(total) ? total : undefined;
}

/** Formats seconds the way parseDuration reads them: 5400 -> "1h30m". */
export function formatDuration(seconds: number): string {
  if (seconds <= 0) return '0s';
  let rest = Math.floor(seconds);
  let out = '';
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return out;
}
