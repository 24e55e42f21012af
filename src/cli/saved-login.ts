import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { open, readFile, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { clearClientConfig, clientConfigPath, readClientConfig, writeClientConfig, writePrivateFile } from './config.js';
import { HallpassClient, normaliseServerUrl, NOTHING_TO_RENEW } from './http.js';
import { CliError, type CliIo } from './io.js';

type Env = CliIo['env'];

/** What the login endpoints answer (password login, SSO exchange, refresh). */
export interface LoginTokens {
  token: string;
  expiresAt: string | null;
  refreshToken?: string;
  refreshExpiresAt?: string;
  user: string;
}

/** A lock older than this is left over from a process that died; it is broken. */
const STALE_LOCK_MS = 10_000;
/** How long to wait for another process's renewal before giving up (past the stale age). */
const LOCK_WAIT_MS = 15_000;

const refreshPath = (env: Env) => join(dirname(clientConfigPath(env)), 'refresh.json');
const lockPath = (env: Env) => join(dirname(clientConfigPath(env)), 'login.lock');

/** Saves the access token (config.json) and the refresh token (refresh.json), both 0600, each replaced atomically. */
export function saveLogin(env: Env, server: string, t: LoginTokens): void {
  writeClientConfig({ server, token: t.token, user: t.user }, env);
  if (t.refreshToken) writePrivateFile(refreshPath(env), `${JSON.stringify({ server, refreshToken: t.refreshToken, expiresAt: t.refreshExpiresAt })}\n`);
  else rmSync(refreshPath(env), { force: true });
}

/** Forgets the saved login (both files). Returns whether there was an access token. */
export function forgetLogin(env: Env): boolean {
  const had = clearClientConfig(env);
  rmSync(refreshPath(env), { force: true });
  return had;
}

function readRefreshToken(env: Env, server: string): string | undefined {
  try {
    const saved = JSON.parse(readFileSync(refreshPath(env), 'utf8')) as { server?: unknown; refreshToken?: unknown };
    return saved.server === server && typeof saved.refreshToken === 'string' ? saved.refreshToken : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Trades the saved refresh token for a new pair and saves it. Refresh tokens work once and a
 * reused one revokes every token of the user, so concurrent CLI processes renew one at a time
 * under an exclusive lock file, and with `staleToken` (the access token the server refused) a
 * process skips the renewal when, by the time it holds the lock, another one has already saved a
 * new access token: it uses that one.
 */
export async function renewSavedLogin(io: CliIo, server: string, staleToken?: string): Promise<LoginTokens> {
  return withLock(io.env, async () => {
    const saved = readClientConfig(io.env);
    if (staleToken !== undefined) {
      if (!saved || normaliseServerUrl(saved.server) !== server) throw new CliError('you are no longer logged in here (run: hallpass login)', 1, NOTHING_TO_RENEW);
      if (saved.token !== staleToken) return { token: saved.token, expiresAt: null, user: saved.user };
    }
    const refreshToken = readRefreshToken(io.env, server);
    if (!refreshToken) throw new CliError(`no saved login for ${server} to renew: run \`hallpass login\``, 1, NOTHING_TO_RENEW);
    let t: LoginTokens;
    try {
      t = await new HallpassClient(server, undefined, io).post<LoginTokens>('/api/v1/auth/refresh', { refreshToken });
    } catch (e) {
      if (e instanceof CliError && e.code === 'unauthenticated') rmSync(refreshPath(io.env), { force: true }); // spent or expired: useless
      throw e;
    }
    saveLogin(io.env, server, t);
    return t;
  });
}

/** Runs fn holding `login.lock` next to the config (created with O_EXCL; broken when stale). */
async function withLock<T>(env: Env, fn: () => Promise<T>): Promise<T> {
  const path = lockPath(env);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const nonce = randomBytes(16).toString('hex');
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      const fh = await open(path, 'wx', 0o600);
      await fh.writeFile(`${process.pid} ${nonce}\n`);
      await fh.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new CliError(`cannot create ${path}: ${(e as Error).message}`);
    }
    const age = await stat(path).then((s) => Date.now() - s.mtimeMs, () => 0);
    if (age > STALE_LOCK_MS) {
      await unlink(path).catch(() => undefined);
      continue;
    }
    if (Date.now() > deadline) throw new CliError(`another hallpass is renewing the login (${path}); try again`);
    await new Promise((r) => setTimeout(r, 25 + Math.random() * 50));
  }
  try {
    return await fn();
  } finally {
    // Remove the lock only if it is still ours (a slow holder may have had it broken as stale).
    const mine = await readFile(path, 'utf8').then((s) => s.includes(nonce), () => false);
    if (mine) await unlink(path).catch(() => undefined);
  }
}
