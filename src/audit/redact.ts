import { canonicalJSONReplacing, type Replacer } from './canonical.js';
import { HALLPASS_TOKEN, URL_PASSWORD, mayHoldUrlOrToken } from './secret-patterns.js';
import { sealer } from './seal.js';
import { maskSqlParameter, maskSqlText } from './sql-secrets.js';

/** The placeholder that replaces a secret-looking value in audit data. */
export const REDACTED = '[redacted]';

/**
 * Key names whose values are never written to the audit log (matched case-insensitively as a
 * substring, ignoring `_`, `-` and `.`): `dbPassword`, `API_KEY`, `x-auth-token` all match.
 */
const SECRET_KEY_PARTS = ['password', 'passwd', 'passphrase', 'secret', 'token', 'credential', 'dsn', 'key', 'authorization', 'cookie'];

export function isSecretKey(key: string): boolean {
  const k = key.toLowerCase().replace(/[_.-]/g, '');
  return SECRET_KEY_PARTS.some((part) => k.includes(part));
}

/**
 * Secrets inside any string, whatever its key, masked where they stand (not the whole string):
 * the password of a URL (`postgres://app:[redacted]@db/x`) and hallpass's own tokens (API,
 * refresh, web session and gateway tokens), see secret-patterns.ts. SQL text and statement
 * parameters are sealed instead (sealSqlSecrets, for every `sql` member and every string of a
 * `params` or `settings` member: values a session can read back and run).
 *
 * Only the secret itself is replaced, and only when it is made of characters that cannot carry
 * SQL structure (no whitespace, quotes, `$`, parentheses, `;`, `*` or `/`): a string that is not
 * under an `sql` key may still quote SQL (an error message, a parameter value).
 */
export function maskSecrets(v: string): string {
  // A substring search rules most strings out before a regular expression runs.
  if (!mayHoldUrlOrToken(v)) return v;
  let out = v;
  if (out.includes('://')) out = out.replace(URL_PASSWORD, `$1${REDACTED}`);
  if (out.includes('hp_') || out.includes('hpg')) out = out.replace(HALLPASS_TOKEN, REDACTED);
  return out;
}

/**
 * SQL text (`sql`), and values a session can read back (SEALED_VALUES, and the value of each
 * login setting in `settings`), with the secrets sql-secrets.ts finds in them sealed (seal.ts), not blanked: SQL can read its own text back and run what a blank hid, so
 * what was hidden must stay recoverable. Without a seal key (no master key in this process) they
 * are stored as sent. Masking never throws here: a failure stores the text as sent, since an
 * event without its statement would be worse than a secret on the record.
 */
function sealSqlSecrets(v: string, key: 'sql' | 'params'): string {
  const seal = sealer();
  if (seal === undefined) return v;
  try {
    return key === 'sql' ? maskSqlText(v, seal) : maskSqlParameter(v, seal);
  } catch {
    return v;
  }
}

/**
 * Members whose values a session can read back from the target and run (statement parameters, and
 * the names of prepared statements and portals, which `pg_prepared_statements` and `pg_cursors`
 * show): a URL password or token that is the whole value is sealed, not blanked (fourth review).
 */
const SEALED_VALUES = new Set(['params', 'name', 'statement', 'portal']);

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
  rewriteString: (v, key) => {
    if (key === 'sql') return sealSqlSecrets(v, 'sql');
    if (key !== undefined && SEALED_VALUES.has(key)) return sealSqlSecrets(v, 'params');
    if (key === 'settings') {
      // `name=value`: the value is what a session can read back.
      const eq = v.indexOf('=');
      return eq < 0 ? sealSqlSecrets(v, 'params') : v.slice(0, eq + 1) + sealSqlSecrets(v.slice(eq + 1), 'params');
    }
    return maskSecrets(v);
  },
};

/**
 * The text the audit log stores for an event's data: its canonical JSON with every secret-looking
 * key's value (at any depth, in objects and arrays; null kept) replaced by "[redacted]" and the
 * secrets inside every string masked (maskSecrets; sealSqlSecrets for `sql`, SEALED_VALUES and
 * `settings`). One pass, no copy of the data. Throws on cycles.
 */
export function redactedCanonicalJSON(data: Record<string, unknown>): string {
  return canonicalJSONReplacing(data, auditReplacer);
}
