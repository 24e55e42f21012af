/** A fault in configuration or in our own code: not the caller's doing. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Registered error codes, each with the HTTP status it maps to. */
export const ERROR_CODES = {
  bad_request: 400,
  unauthenticated: 401,
  mfa_required: 401,
  forbidden: 403,
  policy_denied: 403,
  self_approval: 403,
  not_found: 404,
  conflict: 409,
  rate_limited: 429,
  target_unavailable: 502,
  internal: 500,
} as const;
export type ErrorCode = keyof typeof ERROR_CODES;

/** An error meant for the caller: a registered code, a status, a message safe to show. */
export class AppError extends Error {
  override name = 'AppError';
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.status = ERROR_CODES[code];
  }
}

export const badRequest = (msg: string, details?: Record<string, unknown>) => new AppError('bad_request', msg, details);
export const notFound = (msg: string) => new AppError('not_found', msg);
export const conflict = (msg: string, details?: Record<string, unknown>) => new AppError('conflict', msg, details);
export const forbidden = (msg: string) => new AppError('forbidden', msg);
