import { createSecretBox, SecretBoxError, type SecretBox, type SecretKey } from '../secrets/envelope.js';

/**
 * Sealing the secrets found in audited SQL text. A mask that hides its bytes for good is a hidden
 * channel: SQL can read a statement's own text back (`current_query()`, `pg_stat_activity`, a
 * trigger) and run what the mask hid, so a client could keep code off the record by writing it as
 * a "password" (third review, 2026-12-02). A sealed span is encrypted with a key derived from the
 * master key instead (AES-256-GCM, secrets/envelope.ts): the log shows `[sealed:v1.…]`, and an
 * admin can open it with `hallpass audit reveal SEQ --reason …`, which is itself audited.
 *
 * One key per process: the server sets it at start (setAuditSealKey) and hands it to the audit
 * writer thread. Without one, SQL text is stored as sent (see redact.ts).
 */

const AAD = 'audit-sql';
const MARKER = /\[sealed:(v1\.[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*)\]/g;

/** The data members redact.ts seals secrets in. */
const SEALED_MEMBERS = new Set(['sql', 'params', 'settings', 'name', 'statement', 'portal']);

let current: { key: SecretKey; box: SecretBox; previous: readonly SecretKey[] } | undefined;

/** `previous`: the seal keys of earlier master keys (a rotation), for the reveal of older spans. */
export function setAuditSealKey(key: SecretKey | undefined, previous: readonly SecretKey[] = []): void {
  current = key === undefined ? undefined : { key, box: createSecretBox({ current: key }), previous: previous.filter((p) => p.id !== key.id) };
}

/** The key in use (the writer thread gets a copy). */
export function auditSealKeyInUse(): SecretKey | undefined {
  return current?.key;
}

/** The earlier master keys' seal keys: what they sealed still opens with the reveal. */
export function previousAuditSealKeys(): readonly SecretKey[] {
  return current?.previous ?? [];
}

/** `secret` sealed as `[sealed:v1.…]`; undefined when no key is set. */
export function sealer(): ((secret: string) => string) | undefined {
  const c = current;
  return c === undefined ? undefined : (secret) => `[sealed:${c.box.seal(secret, AAD)}]`;
}

/**
 * Event data with the sealed spans of its SEALED_MEMBERS (where the sealer writes them)
 * opened with `key` or one of `previous` (master keys before a rotation); counts what was opened and
 * what could not be (another master key, an altered marker, or one the client typed itself).
 */
export function revealSealed(value: unknown, key: SecretKey, previous: readonly SecretKey[] = []): { value: unknown; opened: number; failed: number } {
  const box = createSecretBox({ current: key, previous });
  let opened = 0;
  let failed = 0;
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') {
      return v.replace(MARKER, (whole, envelope: string) => {
        try {
          const text = box.open(envelope, AAD);
          opened++;
          return text;
        } catch (e) {
          if (!(e instanceof SecretBoxError)) throw e;
          failed++;
          return whole;
        }
      });
    }
    if (Array.isArray(v)) return v.map(walk);
    return v;
  };
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return { value, opened, failed };
  const out = Object.fromEntries(Object.entries(value).map(([k, x]) => [k, SEALED_MEMBERS.has(k) ? walk(x) : x]));
  return { value: out, opened, failed };
}
