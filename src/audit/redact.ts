/** The placeholder that replaces a secret-looking value in audit data. */
export const REDACTED = '[redacted]';

/**
 * Key names whose values are never written to the audit log (matched case-insensitively as a
 * substring, ignoring `_`, `-` and `.`): `dbPassword`, `API_KEY`, `x-auth-token` all match.
 */
const SECRET_KEY_PARTS = ['password', 'passwd', 'passphrase', 'secret', 'token', 'credential', 'dsn', 'key', 'authorization', 'cookie'];

/** Values that carry a secret whatever their key: URLs with a password, hallpass API tokens. */
const SECRET_VALUE_PATTERNS = [/[a-z][a-z0-9+.-]*:\/\/[^/\s:@]*:[^@\s]*@/i, /\bhp_tok_[0-9A-Za-z]+/];

export function isSecretKey(key: string): boolean {
  const k = key.toLowerCase().replace(/[_.-]/g, '');
  return SECRET_KEY_PARTS.some((part) => k.includes(part));
}

/**
 * Returns a deep copy of `data` with every secret-looking key's value (at any depth, in objects
 * and arrays) and every secret-looking string value replaced by "[redacted]". Throws on cycles.
 */
export function redact(data: Record<string, unknown>): Record<string, unknown> {
  return redactObject(data, new Set());
}

function redactValue(v: unknown, seen: Set<object>): unknown {
  if (typeof v === 'string') return SECRET_VALUE_PATTERNS.some((re) => re.test(v)) ? REDACTED : v;
  if (v === null || typeof v !== 'object') return v;
  if (v instanceof Date) return v;
  if (seen.has(v)) throw new TypeError('audit data is cyclic');
  seen.add(v);
  try {
    if (Array.isArray(v)) return v.map((x: unknown) => redactValue(x, seen));
    return redactObject(v as Record<string, unknown>, seen);
  } finally {
    seen.delete(v);
  }
}

function redactObject(obj: Record<string, unknown>, seen: Set<object>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(obj)) {
    out[key] = isSecretKey(key) && v !== null && v !== undefined ? REDACTED : redactValue(v, seen);
  }
  return out;
}
