import { CliError, usageError, type CliIo } from './io.js';

/** What the server sends for every failure. */
export interface ApiErrorBody {
  error: { code: string; message: string; details?: Record<string, unknown> };
}

export type Query = Record<string, string | number | boolean | undefined>;

/** What onMfaRequired is told about the refused call. */
export interface MfaChallenge {
  readonly io: CliIo;
  readonly client: HallpassClient;
  readonly method: string;
  readonly path: string;
  readonly message: string;
  readonly details?: Record<string, unknown> | undefined;
}

let mfaPrompt: ((challenge: MfaChallenge) => Promise<string | undefined>) | undefined;

/** Installed by login.ts: asks for a TOTP (or recovery) code, or undefined when none can be had. */
export function setMfaPrompt(fn: typeof mfaPrompt): void {
  mfaPrompt = fn;
}

/**
 * Called when the server answers `mfa_required`. Resolves true when the caller has since
 * proved a fresh MFA factor and the refused call should be sent again (once); false to fail.
 * With a token, asks for a code and steps the token up (POST /auth/mfa/verify), then retries.
 */
export async function onMfaRequired(challenge: MfaChallenge): Promise<boolean> {
  const reason = challenge.details?.reason;
  if (reason === 'login') return false; // password login: the login command asks for the code itself
  const canStepUp = challenge.client.hasToken && reason !== 'login' && reason !== 'not_enrolled' && challenge.path !== '/api/v1/auth/mfa/verify';
  if (canStepUp && mfaPrompt) {
    const code = await mfaPrompt(challenge);
    if (code) {
      await challenge.client.post('/api/v1/auth/mfa/verify', { code });
      return true;
    }
  }
  challenge.io.stderr(`hallpass: ${challenge.message}\n`);
  challenge.io.stderr('hallpass: this action needs a fresh MFA check: run `hallpass login` (password + TOTP) and try again\n');
  return false;
}

/** Normalises and checks a server URL (usage error when it is not http(s)). */
export function normaliseServerUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw usageError(`--server ${JSON.stringify(raw)} is not a URL (e.g. http://127.0.0.1:8470)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw usageError(`--server ${JSON.stringify(raw)} must be an http:// or https:// URL`);
  }
  return url.toString().replace(/\/+$/, '');
}

function isApiError(v: unknown): v is ApiErrorBody {
  const e = (v as { error?: unknown } | null)?.error as { code?: unknown; message?: unknown } | undefined;
  return typeof e === 'object' && e !== null && typeof e.code === 'string' && typeof e.message === 'string';
}

/**
 * Renews a saved login after the server refused `staleToken` (401): resolves the access token to
 * use from now on. Only for tokens from the saved login, never --token / HALLPASS_TOKEN. Rejects
 * with a CliError coded `unauthenticated` (refresh token refused) or `nothing_to_renew` when the
 * login cannot be renewed; any other rejection (network, lock) is reported instead of the 401.
 */
export type RenewLogin = (staleToken: string) => Promise<string>;

/** The CliError code when there is no saved refresh token (for this server) to renew with. */
export const NOTHING_TO_RENEW = 'nothing_to_renew';

/** A small client for the hallpass HTTP API: bearer token, JSON in and out, errors as CliError. */
export class HallpassClient {
  constructor(
    readonly server: string,
    private token: string | undefined,
    private readonly io: CliIo,
    private readonly renew?: RenewLogin,
  ) {}

  get hasToken(): boolean {
    return this.token !== undefined && this.token !== '';
  }

  get<T>(path: string, query?: Query): Promise<T> {
    return this.json<T>('GET', withQuery(path, query));
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.json<T>('POST', path, body);
  }

  /** A streamed body (audit export). */
  async stream(path: string, query?: Query): Promise<ReadableStream<Uint8Array>> {
    const res = await this.send('GET', withQuery(path, query), undefined);
    if (!res.body) throw new CliError(`hallpass at ${this.server} sent an empty body`);
    return res.body;
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.send(method, path, body);
    const text = await res.text();
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new CliError(`hallpass at ${this.server} sent a response that is not JSON (${method} ${path.split('?')[0]})`);
    }
  }

  private async send(method: string, path: string, body: unknown, retried: { mfa?: boolean; renewed?: boolean } = {}): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(`${this.server}${path}`, {
        method,
        headers: {
          accept: 'application/json',
          ...(this.hasToken ? { authorization: `Bearer ${this.token}` } : {}),
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw this.networkError(err);
    }
    if (res.ok) return res;
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (!isApiError(parsed)) {
      throw new CliError(`hallpass at ${this.server} answered ${res.status} ${res.statusText} to ${method} ${path.split('?')[0]}`);
    }
    const { code, message, details } = parsed.error;
    if (code === 'mfa_required' && !retried.mfa) {
      const again = await onMfaRequired({ io: this.io, client: this, method, path, message, details });
      if (again) return this.send(method, path, body, { ...retried, mfa: true });
      throw new CliError('MFA required', 1, code, details);
    }
    if (res.status === 401 && code === 'unauthenticated' && this.renew && this.token && !retried.renewed) {
      // The access token expired (or was rotated): renew the saved login once, then send again.
      const fresh = await this.renew(this.token).catch((e: unknown) => {
        if (e instanceof CliError && (e.code === 'unauthenticated' || e.code === NOTHING_TO_RENEW)) return undefined;
        throw e;
      });
      if (fresh && fresh !== this.token) {
        this.token = fresh;
        return this.send(method, path, body, { ...retried, renewed: true });
      }
    }
    if (res.status === 401 && !this.hasToken) {
      throw new CliError(`${message}: not logged in (run \`hallpass login\` or set HALLPASS_TOKEN)`, 1, code, details);
    }
    throw new CliError(message, 1, code, details);
  }

  private networkError(err: unknown): CliError {
    const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
    const code = typeof cause?.code === 'string' ? cause.code : undefined;
    if (code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EHOSTUNREACH') {
      return new CliError(`cannot reach hallpass at ${this.server} (${code}; is \`hallpass server\` running?)`);
    }
    const why = typeof cause?.message === 'string' ? cause.message : (err as Error).message;
    return new CliError(`cannot reach hallpass at ${this.server}: ${why}`);
  }
}

function withQuery(path: string, query: Query | undefined): string {
  if (!query) return path;
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) qs.set(k, String(v));
  const s = qs.toString();
  return s ? `${path}?${s}` : path;
}
