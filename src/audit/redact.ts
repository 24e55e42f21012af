import { canonicalJSONReplacing, type Replacer } from './canonical.js';

/** The placeholder that replaces a secret-looking value in audit data. */
export const REDACTED = '[redacted]';

/**
 * Key names whose values are never written to the audit log (matched case-insensitively as a
 * substring, ignoring `_`, `-` and `.`): `dbPassword`, `API_KEY`, `x-auth-token` all match.
 */
const SECRET_KEY_PARTS = ['password', 'passwd', 'passphrase', 'secret', 'token', 'credential', 'dsn', 'key', 'authorization', 'cookie'];

/** Values that carry a secret whatever their key: URLs with a password, hallpass API tokens. */
const URL_WITH_PASSWORD = /[a-z][a-z0-9+.-]*:\/\/[^/\s:@]*:[^@\s]*@/i;
const API_TOKEN = /\bhp_tok_[0-9A-Za-z]+/;

export function isSecretKey(key: string): boolean {
  const k = key.toLowerCase().replace(/[_.-]/g, '');
  return SECRET_KEY_PARTS.some((part) => k.includes(part));
}

function isSecretValue(v: string): boolean {
  // Each pattern needs its literal ("://", "hp_tok_"): a substring search rules most strings out
  // (every audited SQL text passes through here) before a regular expression runs.
  return (v.includes('://') && URL_WITH_PASSWORD.test(v)) || (v.includes('hp_tok_') && API_TOKEN.test(v));
}

/** Audit data keys repeat endlessly (sessionId, sql, ...): remember the verdict for a bounded few. */
const keyVerdicts = new Map<string, boolean>();
const MAX_REMEMBERED_KEYS = 4096;

const auditReplacer: Replacer = {
  replacement: REDACTED,
  hidesKey(key) {
    let v = keyVerdicts.get(key);
    if (v === undefined) {
      v = isSecretKey(key);
      if (keyVerdicts.size < MAX_REMEMBERED_KEYS) keyVerdicts.set(key, v);
    }
    return v;
  },
  hidesString: isSecretValue,
};

/**
 * The text the audit log stores for an event's data: its canonical JSON with every secret-looking
 * key's value (at any depth, in objects and arrays; null kept) and every secret-looking string
 * replaced by "[redacted]". One pass, no copy of the data. Throws on cycles.
 */
export function redactedCanonicalJSON(data: Record<string, unknown>): string {
  return canonicalJSONReplacing(data, auditReplacer);
}
