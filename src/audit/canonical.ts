/**
 * Canonical JSON: object keys sorted by UTF-16 code unit order, no whitespace, JSON.stringify's
 * escaping for strings and numbers. The same value always serializes to the same bytes, so it
 * can be hashed. Rejects what JSON cannot represent faithfully (NaN, Infinity, bigint, cycles).
 */
export function canonicalJSON(value: unknown): string {
  return write(value, new Set());
}

function write(value: unknown, seen: Set<object>): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`canonicalJSON: non-finite number ${value}`);
      return JSON.stringify(value);
    case 'object':
      break;
    default:
      throw new TypeError(`canonicalJSON: cannot serialize a ${typeof value}`);
  }
  const obj = value as object;
  if (hasToJSON(obj)) return write(obj.toJSON(), seen);
  if (seen.has(obj)) throw new TypeError('canonicalJSON: cyclic structure');
  seen.add(obj);
  try {
    if (Array.isArray(obj)) {
      return `[${obj.map((v: unknown) => (v === undefined || typeof v === 'function' ? 'null' : write(v, seen))).join(',')}]`;
    }
    const rec = obj as Record<string, unknown>;
    const parts: string[] = [];
    for (const key of Object.keys(rec).sort()) {
      const v = rec[key];
      if (v === undefined || typeof v === 'function') continue;
      parts.push(`${JSON.stringify(key)}:${write(v, seen)}`);
    }
    return `{${parts.join(',')}}`;
  } finally {
    seen.delete(obj);
  }
}

function hasToJSON(v: object): v is { toJSON(): unknown } {
  return typeof (v as { toJSON?: unknown }).toJSON === 'function';
}
