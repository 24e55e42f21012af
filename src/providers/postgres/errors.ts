import { ProviderError } from '../provider.js';

/** SQLSTATE classes/codes worth retrying: the target is down, busy, restarting or timed out. */
const RETRYABLE_SQLSTATE = [/^08/, /^53/, /^57P0[1-3]$/, /^57014$/, /^55P03$/, /^40001$/, /^40P01$/];
const RETRYABLE_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND']);
/**
 * What node-postgres says when the socket dies or a connect times out (these carry no code), and
 * PostgreSQL's XX000 for a catalog row changed by a concurrent GRANT/REVOKE from outside hallpass.
 */
const RETRYABLE_MESSAGE = /connection terminated|connection ended|timeout|connection error|not queryable|tuple concurrently (updated|deleted)/i;

/** Raised when the admin password cannot be read: a configuration fault, not worth retrying. */
export class SecretUnavailableError extends Error {
  override name = 'SecretUnavailableError';
}

const codeOf = (err: unknown): string | undefined => {
  const code: unknown = typeof err === 'object' && err !== null && 'code' in err ? err.code : undefined;
  return typeof code === 'string' ? code : undefined;
};

export function isRetryable(err: unknown): boolean {
  if (err instanceof ProviderError) return err.retryable;
  if (err instanceof SecretUnavailableError) return false;
  const code = codeOf(err);
  if (code !== undefined && (RETRYABLE_ERRNO.has(code) || RETRYABLE_SQLSTATE.some((re) => re.test(code)))) return true;
  if (err instanceof AggregateError) return err.errors.some(isRetryable);
  return err instanceof Error && RETRYABLE_MESSAGE.test(err.message);
}

/**
 * Removes every known secret and anything shaped like one (URL userinfo, a PASSWORD clause, a
 * SCRAM verifier) from a message before it leaves the provider.
 */
export function scrub(message: string, secrets: readonly (string | undefined)[]): string {
  let out = message;
  for (const s of secrets) {
    if (s !== undefined && s.length > 0) {
      out = out.split(s).join('[redacted]');
      const encoded = encodeURIComponent(s);
      if (encoded !== s) out = out.split(encoded).join('[redacted]');
    }
  }
  return out
    .replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/?#\s@]*:)[^@\s]*@/gi, '$1[redacted]@')
    .replace(/PASSWORD\s+'(?:[^']|'')*'/gi, 'PASSWORD [redacted]')
    .replace(/SCRAM-SHA-256\$[^\s'"]+/g, '[redacted]');
}

/** Any failure as a ProviderError: what failed, the target's message with secrets stripped, and whether to retry. */
export function toProviderError(op: string, err: unknown, secrets: readonly (string | undefined)[]): ProviderError {
  if (err instanceof ProviderError) return new ProviderError(scrub(err.message, secrets), err.retryable);
  const code = codeOf(err);
  const raw =
    err instanceof AggregateError && err.errors.length > 0
      ? err.errors.map((e) => (e instanceof Error ? e.message : String(e))).join('; ')
      : err instanceof Error
        ? err.message || err.name
        : String(err);
  const suffix = code !== undefined ? ` (${code})` : '';
  return new ProviderError(scrub(`postgres ${op} failed: ${raw}${suffix}`, secrets), isRetryable(err));
}
