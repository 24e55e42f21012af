/**
 * The shapes of secrets that the audit log masks inside strings (see redact.ts and sql-secrets.ts).
 * Each pattern matches only the secret itself, never the text around it.
 */

/**
 * The password of a URL (`postgres://app:PASSWORD@db`), made of the characters RFC 3986 allows
 * there unencoded except quotes, `$`, parentheses, `;`, `*` and `/`. The lookbehind anchors the
 * scheme at its first letter: without it the engine retried the scheme from every letter of a long
 * run of them, and a 64 KiB statement ending in `://` took seconds.
 */
export const URL_PASSWORD = /(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*:\/\/[^/\s:@]*:)[0-9A-Za-z._~%!&+,=:-]+(?=@)/gi;

/**
 * URL_PASSWORD for SQL text, where a "URL" may be the client's own construction around code (a
 * dollar-quoted function body, a string run by `query_to_xml`): only RFC 3986's unreserved
 * characters and percent escapes, none of which can end an expression or start a new one
 * (`,` `=` `:` `+` `!` `&` are left out, so `…:x::int,is_admin=@1` is not masked).
 */
export const URL_PASSWORD_IN_SQL = /(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*:\/\/[^/\s:@]*:)[0-9A-Za-z._~%-]+(?=@)/gi;

/**
 * hallpass's tokens in their exact shapes only (so an alias such as `hpg_a` in `hpg_a.balance-1`
 * is not one): API `hp_tok_` + 43 base62; refresh and web session `hp_ref_`/`hp_ses_` + 43
 * base64url; gateway `hpg_`/`hpgm_` grant.expiry.nonce.mac (src/gateway/tokens.ts).
 */
export const HALLPASS_TOKEN =
  /(?<![0-9A-Za-z_-])(?:hp_tok_[0-9A-Za-z]{43}|hp_(?:ref|ses)_[0-9A-Za-z_-]{43}|hpgm?_[0-9A-Za-z_-]{1,64}\.[0-9]{1,15}\.[0-9A-Za-z_-]{16,64}\.[0-9A-Za-z_-]{43})(?![0-9A-Za-z_-])/g;

/** Whether `s` may hold a URL or a hallpass token (a substring search before any pattern runs). */
export const mayHoldUrlOrToken = (s: string): boolean => s.includes('://') || s.includes('hp_') || s.includes('hpg');
