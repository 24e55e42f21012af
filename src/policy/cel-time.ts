/**
 * Time-zone support for CEL conditions: a fast `now`, and load-time checking of zone names.
 */
const ZONED_GETTERS = new Set(['getDate', 'getDayOfMonth', 'getDayOfWeek', 'getDayOfYear', 'getFullYear', 'getHours', 'getMinutes', 'getMonth', 'getSeconds']);

/** Finds a literal time zone (`now.getHours("Mars/Base")`) that Intl does not know, at load time. */
export function unknownTimeZone(node: unknown): string | undefined {
  if (typeof node !== 'object' || node === null) return undefined;
  if (Array.isArray(node)) {
    for (const child of node) {
      const found = unknownTimeZone(child);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  const { op, args } = node as { op?: unknown; args?: unknown };
  if (op === 'rcall' && Array.isArray(args) && typeof args[0] === 'string' && ZONED_GETTERS.has(args[0])) {
    const zoneArg: unknown = Array.isArray(args[2]) ? args[2][0] : undefined;
    const { op: argOp, args: zone } = (zoneArg ?? {}) as { op?: unknown; args?: unknown };
    if (argOp === 'value' && typeof zone === 'string' && !isTimeZone(zone)) return zone;
  }
  return typeof op === 'string' ? unknownTimeZone(args) : undefined;
}

function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

const zoneFormats = new Map<string, Intl.DateTimeFormat>();
const MAX_ZONE_FORMATS = 64;

/**
 * `now` for CEL. The library computes `now.getHours("Europe/Paris")` through
 * `date.toLocaleString('en-US', {timeZone})`, which builds a new formatter on every call (~100 µs).
 * This Date answers that exact call from a cached formatter, with identical output; any other
 * call falls through to the standard method.
 */
export function celNow(at: Date): Date {
  const now = new Date(at.getTime());
  Object.defineProperty(now, 'toLocaleString', { value: zonedLocaleString, enumerable: false });
  return now;
}

function zonedLocaleString(this: Date, locales?: string | string[], options?: Intl.DateTimeFormatOptions): string {
  const zone = options?.timeZone;
  if (locales !== 'en-US' || zone === undefined || Object.keys(options ?? {}).length !== 1) {
    return Date.prototype.toLocaleString.call(this, locales, options);
  }
  let format = zoneFormats.get(zone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    if (zoneFormats.size < MAX_ZONE_FORMATS) zoneFormats.set(zone, format);
  }
  return format.format(this);
}
