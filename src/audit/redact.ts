import { canonicalJSONReplacing, type Replacer } from './canonical.js';
import { maskSqlPasswords } from './sql-secrets.js';

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
 * the password of a URL (`postgres://app:[redacted]@db/x`), hallpass's own tokens (API,
 * refresh, web session and gateway tokens), and passwords written into SQL (sql-secrets.ts).
 *
 * Only the secret itself is replaced, and only when it is made of characters that cannot carry
 * SQL structure (no whitespace, quotes, `$`, parentheses, `;`, `*` or `/`). Statement text is the
 * point of the gateway's audit: when a secret-looking pattern swallowed the whole string (as it
 * once did), a client could make any statement's text unrecorded by adding a comment such as
 * `-- x://a:b@`; and a mask over any run of characters up to `@` could still swallow a statement
 * written between two comments (a `/*` comment holding `x://a:`, then the statement with comments
 * for spaces, then a comment holding `@`). A URL password with such characters is therefore left
 * as it is (percent-encoded ones are masked).
 */
const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^/\s:@]*:)[0-9A-Za-z._~%!&+,=:-]+(?=@)/gi;
/**
 * hallpass's tokens in their exact shapes only (so an alias such as `hpg_a` in `hpg_a.balance-1`
 * is not one): API `hp_tok_` + 43 base62; refresh and web session `hp_ref_`/`hp_ses_` + 43
 * base64url; gateway `hpg_`/`hpgm_` grant.expiry.nonce.mac (src/gateway/tokens.ts).
 */
const HALLPASS_TOKEN =
  /(?<![0-9A-Za-z_-])(?:hp_tok_[0-9A-Za-z]{43}|hp_(?:ref|ses)_[0-9A-Za-z_-]{43}|hpgm?_[0-9A-Za-z_-]{1,64}\.[0-9]{1,15}\.[0-9A-Za-z_-]{16,64}\.[0-9A-Za-z_-]{43})(?![0-9A-Za-z_-])/g;

/** `v` with every secret it carries masked; `v` itself (no copy) when it carries none. */
export function maskSecrets(v: string): string {
  // A substring search rules most strings out (every audited SQL text passes through here)
  // before a regular expression runs.
  let out = v;
  if (out.includes('://')) out = out.replace(URL_PASSWORD, `$1${REDACTED}`);
  if (out.includes('hp_') || out.includes('hpg')) out = out.replace(HALLPASS_TOKEN, REDACTED);
  return maskSqlPasswords(out, REDACTED);
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
  rewriteString: maskSecrets,
};

/**
 * The text the audit log stores for an event's data: its canonical JSON with every secret-looking
 * key's value (at any depth, in objects and arrays; null kept) replaced by "[redacted]" and the
 * secrets inside every string masked (maskSecrets). One pass, no copy of the data. Throws on cycles.
 */
export function redactedCanonicalJSON(data: Record<string, unknown>): string {
  return canonicalJSONReplacing(data, auditReplacer);
}
