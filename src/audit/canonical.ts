/**
 * Canonical JSON: object keys sorted by UTF-16 code unit order, no whitespace, JSON.stringify's
 * escaping for strings and numbers. The same value always serializes to the same bytes, so it
 * can be hashed. Rejects what JSON cannot represent faithfully (NaN, Infinity, bigint, cycles).
 */
export function canonicalJSON(value: unknown): string {
  return write(value, [], undefined);
}

/**
 * How a serializer may replace values on the way out (the audit log's redaction): `hidesKey` says
 * whether a member's value is hidden whatever it is (written as `replacement`), `rewriteString`
 * what a string is written as (itself, or with parts masked).
 */
export interface Replacer {
  readonly replacement: string;
  hidesKey(key: string): boolean;
  /** `key` names the object member whose value the string is, or whose array holds it. */
  rewriteString(value: string, key: string | undefined): string;
}

/**
 * canonicalJSON of `value` with `r` applied, in one pass and without copying the value: a member
 * whose key `r` hides (and whose value is not null or undefined) is written as `r.replacement`,
 * and every string as `r.rewriteString` makes it. A date's toJSON() text is not inspected.
 */
export function canonicalJSONReplacing(value: unknown, r: Replacer): string {
  return write(value, [], r);
}

/** Scalars as canonicalJSON writes them; exported for hot paths that splice known fields. */
export function canonicalScalar(value: string | number | boolean | null): string {
  if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError(`canonicalJSON: non-finite number ${value}`);
  return value === null ? 'null' : JSON.stringify(value);
}

/** `stack` holds the objects being written (for cycle detection): a path, not every object seen. */
function write(value: unknown, stack: object[], r: Replacer | undefined, key?: string): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(r === undefined ? value : r.rewriteString(value, key));
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`canonicalJSON: non-finite number ${value}`);
      return JSON.stringify(value);
    case 'object':
      break;
    default:
      throw new TypeError(`canonicalJSON: cannot serialize a ${typeof value}`);
  }
  const obj = value as object;
  // A date's ISO text needs no inspection; any other toJSON() result is still subject to `r`.
  if (hasToJSON(obj)) return write(obj.toJSON(), stack, obj instanceof Date ? undefined : r);
  if (stack.includes(obj)) throw new TypeError('canonicalJSON: cyclic structure');
  stack.push(obj);
  try {
    if (Array.isArray(obj)) {
      let out = '[';
      for (let i = 0; i < obj.length; i++) {
        const v: unknown = obj[i];
        if (i > 0) out += ',';
        out += v === undefined || typeof v === 'function' ? 'null' : write(v, stack, r, key);
      }
      return `${out}]`;
    }
    const rec = obj as Record<string, unknown>;
    const keys = Object.keys(rec).sort();
    let out = '{';
    let first = true;
    for (const key of keys) {
      const v = rec[key];
      if (v === undefined) continue;
      const hidden = r !== undefined && v !== null && r.hidesKey(key);
      if (!hidden && typeof v === 'function') continue;
      out += `${first ? '' : ','}${JSON.stringify(key)}:${hidden ? JSON.stringify(r.replacement) : write(v, stack, r, key)}`;
      first = false;
    }
    return `${out}}`;
  } finally {
    stack.pop();
  }
}

function hasToJSON(v: object): v is { toJSON(): unknown } {
  return typeof (v as { toJSON?: unknown }).toJSON === 'function';
}
