/**
 * Validators for identifiers and free text that come from the policy file or from requests.
 * Names end up in URLs, logs, audit events and messages, so they are kept to a boring alphabet.
 * The API layer reuses these so the policy file and request bodies obey the same rules.
 */

/** Resource, role, user, group, rule and workload names. */
export const NAME_PATTERN = /^[a-z][a-z0-9_-]{0,62}$/;
/** Label and attribute keys: like names, plus dots and slashes (`team`, `app.kubernetes.io/name`). */
export const LABEL_KEY_PATTERN = /^[a-z][a-z0-9_./-]{0,62}$/;
/** Label values: short, printable, no spaces or quotes. */
export const LABEL_VALUE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,62}$|^$/;

export const MAX_REASON_LENGTH = 1000;
export const MAX_TICKET_LENGTH = 100;
export const MAX_ATTRIBUTE_VALUE_LENGTH = 256;

/**
 * What free text may not hold: C0/C1 controls and DEL, lone surrogates, line and paragraph
 * separators, and every format character (bidi marks, overrides and isolates, zero-width and
 * invisible characters, soft hyphens, interlinear annotations, tags): they make a log or a
 * terminal show something else than what is stored. Zero-width (non-)joiners stay: emoji and
 * several scripts need them. The API's free-text pattern is built from the same parts.
 */
export const UNSAFE_TEXT_CHAR = '(?![\\u200c\\u200d])[\\p{Cc}\\p{Cs}\\p{Zl}\\p{Zp}\\p{Cf}]';
/** A character that shows: a letter, digit, punctuation mark or symbol, but not the blank-looking fillers. */
export const VISIBLE_CHAR = '(?![\\u115f\\u1160\\u3164\\uffa0\\u2800])[\\p{L}\\p{N}\\p{P}\\p{S}]';
const UNSAFE_TEXT = new RegExp(UNSAFE_TEXT_CHAR, 'u');
const VISIBLE = new RegExp(VISIBLE_CHAR, 'u');
// Tickets: printable ASCII without spaces (OPS-123, JIRA#42, https://tracker/x/1).
const TICKET_PATTERN = /^[\x21-\x7e]+$/;

export const NAME_RULE = 'a lowercase letter, then up to 62 of a-z 0-9 _ -';

export function isSafeName(value: string): boolean {
  return NAME_PATTERN.test(value);
}

/** Returns why `value` is not an acceptable name, or undefined when it is. */
export function checkName(value: string): string | undefined {
  return isSafeName(value) ? undefined : `${quote(value)} is not a valid name (${NAME_RULE})`;
}

export function checkLabelKey(value: string): string | undefined {
  return LABEL_KEY_PATTERN.test(value)
    ? undefined
    : `${quote(value)} is not a valid key (a lowercase letter, then up to 62 of a-z 0-9 _ . / -)`;
}

export function checkLabelValue(value: string): string | undefined {
  return LABEL_VALUE_PATTERN.test(value)
    ? undefined
    : `${quote(value)} is not a valid label value (up to 63 of A-Z a-z 0-9 _ . : / -)`;
}

/** A request's reason: free text, 1..1000 characters, no control characters. */
export function checkReason(value: string): string | undefined {
  if (value.trim() === '' || !VISIBLE.test(value)) return 'reason is empty';
  if (value.length > MAX_REASON_LENGTH) return `reason is longer than ${MAX_REASON_LENGTH} characters`;
  if (UNSAFE_TEXT.test(value)) return 'reason contains control characters';
  return undefined;
}

/** A ticket id: 1..100 printable ASCII characters without spaces. */
export function checkTicket(value: string): string | undefined {
  if (value.length === 0) return 'ticket is empty';
  if (value.length > MAX_TICKET_LENGTH) return `ticket is longer than ${MAX_TICKET_LENGTH} characters`;
  if (!TICKET_PATTERN.test(value)) return 'ticket must be printable ASCII without spaces';
  return undefined;
}

/** Attribute values (SSO claims, departments): bounded, no control characters. */
export function checkAttributeValue(value: string): string | undefined {
  if (value.length > MAX_ATTRIBUTE_VALUE_LENGTH) return `value is longer than ${MAX_ATTRIBUTE_VALUE_LENGTH} characters`;
  if (UNSAFE_TEXT.test(value)) return 'value contains control characters';
  return undefined;
}

/** Quotes untrusted text for a message: JSON-escaped (no raw control characters) and truncated. */
export function quote(value: unknown): string {
  const text = typeof value === 'string' ? value : String(value);
  const short = text.length > 60 ? `${text.slice(0, 57)}...` : text;
  return JSON.stringify(short);
}
