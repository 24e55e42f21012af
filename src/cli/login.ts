import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { HallpassClient, setMfaPrompt } from './http.js';
import { CliError } from './io.js';
import { cliContext, type CliContext } from './program.js';
import { forgetLogin, renewSavedLogin, saveLogin, type LoginTokens as Tokens } from './saved-login.js';

/** `login`, `logout`, `mfa enroll|confirm|recovery`. */
export function registerLoginCommands(program: Command): void {
  // When the server says a call needs a fresh MFA check, ask for a code (or read HALLPASS_MFA_CODE).
  setMfaPrompt(async (c) => {
    if (!c.io.env.HALLPASS_MFA_CODE && !process.stdin.isTTY) return undefined; // onMfaRequired explains
    c.io.stderr(`hallpass: ${c.message}\n`);
    return ask('TOTP or recovery code: ', { env: c.io.env, envName: 'HALLPASS_MFA_CODE' });
  });
  program.command('login')
    .description('sign in: a local user (password, then a TOTP or recovery code when enrolled) or --sso through the identity provider')
    .option('--user <name>', 'local user name (env HALLPASS_USER)')
    .option('--sso', 'single sign-on in the browser')
    .option('--no-browser', 'with --sso: do not open a browser; open the printed URL anywhere and paste the code shown')
    .option('--totp <code>', 'the current TOTP code, or a recovery code (else prompted, or env HALLPASS_MFA_CODE)')
    .option('--refresh', 'renew the saved login with its refresh token (no password, no browser)')
    .action(async (o: { user?: string; sso?: boolean; browser: boolean; totp?: string; refresh?: boolean }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const server = ctx.serverUrl();
      const anon = new HallpassClient(server, undefined, ctx.io);
      // A renewal saves the new pair itself, under the lock concurrent renewals share.
      const t = o.refresh ? await renewSavedLogin(ctx.io, server)
        : o.sso ? await ssoLogin(ctx, anon, o.browser) : await passwordLogin(ctx, anon, o.user, o.totp);
      if (!o.refresh) saveLogin(ctx.io.env, server, t);
      ctx.out(`logged in to ${server} as ${t.user}${t.expiresAt ? ` (token expires ${t.expiresAt})` : ''}\n`);
    });

  program.command('logout')
    .description('revoke your token on the server and forget it here')
    .option('--everywhere', 'also end every other token and web session of yours')
    .action(async (o: { everywhere?: boolean }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const client = ctx.client();
      let had = false;
      try {
        // An expired access token is renewed first (the client does it on 401), so signing out
        // also revokes the refresh token on the server.
        if (client.hasToken) await client.post(o.everywhere ? '/api/v1/auth/signout-everywhere' : '/api/v1/auth/signout', {});
      } catch (e) {
        // Still refused after renewing: neither token works on the server any more.
        if (!(e instanceof CliError && e.code === 'unauthenticated')) {
          throw new CliError(`forgot the login here, but could not revoke it on the server: ${(e as Error).message}`);
        }
      } finally {
        had = forgetLogin(ctx.io.env);
      }
      ctx.out(had || client.hasToken ? 'logged out\n' : 'not logged in\n');
    });

  const mfa = program.command('mfa').description('your TOTP second factor');
  mfa.command('status')
    .description('whether you are enrolled, and how many recovery codes are left')
    .option('--json', 'print the API response as JSON')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const s = await ctx.client().get<{ enrolled: boolean; pendingConfirmation: boolean; recoveryCodesLeft: number }>('/api/v1/auth/mfa');
      if (o.json) return ctx.out(`${JSON.stringify(s, null, 2)}\n`);
      ctx.out(s.enrolled ? `MFA: enrolled (TOTP), ${s.recoveryCodesLeft} recovery codes left\n`
        : s.pendingConfirmation ? 'MFA: enrolment started, not confirmed (run: hallpass mfa confirm CODE)\n' : 'MFA: not enrolled (run: hallpass mfa enroll)\n');
    });
  mfa.command('enroll')
    .description('start enrolment: add the printed otpauth:// URI (or secret) to your authenticator app')
    .action(async (_o: unknown, cmd: Command) => {
      const ctx = cliContext(cmd);
      const r = await ctx.client().post<{ secret: string; otpauthUri: string }>('/api/v1/auth/mfa/enroll', {});
      ctx.out(`${r.otpauthUri}\n\nsecret: ${r.secret}\nthen run: hallpass mfa confirm CODE\n`);
    });
  mfa.command('confirm')
    .description('finish enrolment with a code from the app; prints single-use recovery codes once')
    .argument('<code>', 'the 6-digit code')
    .action(async (code: string, _o: unknown, cmd: Command) => {
      const ctx = cliContext(cmd);
      const r = await ctx.client().post<{ recoveryCodes: string[] }>('/api/v1/auth/mfa/confirm', { code });
      ctx.out(`MFA enrolled. Recovery codes (each works once; keep them safe):\n${r.recoveryCodes.join('\n')}\n`);
    });
  mfa.command('recovery')
    .description('replace your recovery codes (asks for a current code)')
    .option('--code <code>', 'current TOTP code (else prompted, or env HALLPASS_MFA_CODE)')
    .action(async (o: { code?: string }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const client = ctx.client();
      const code = o.code ?? await ask('TOTP code: ', { env: ctx.io.env, envName: 'HALLPASS_MFA_CODE' });
      await client.post('/api/v1/auth/mfa/verify', { code });
      const r = await client.post<{ recoveryCodes: string[] }>('/api/v1/auth/mfa/recovery-codes', {});
      ctx.out(`New recovery codes (the old ones no longer work):\n${r.recoveryCodes.join('\n')}\n`);
    });
}

async function passwordLogin(ctx: CliContext, anon: HallpassClient, user: string | undefined, totp: string | undefined): Promise<Tokens> {
  const env = ctx.io.env;
  const username = user ?? await ask('user: ', { env, envName: 'HALLPASS_USER' });
  const password = await ask('password: ', { secret: true, env, envName: 'HALLPASS_PASSWORD' });
  try {
    return await anon.post<Tokens>('/api/v1/auth/login', { username, password, ...(totp ? { totp } : {}) });
  } catch (e) {
    if (!(e instanceof CliError) || e.code !== 'mfa_required' || totp) throw e;
    const code = await ask('TOTP or recovery code: ', { env, envName: 'HALLPASS_MFA_CODE' });
    return anon.post<Tokens>('/api/v1/auth/login', { username, password, totp: code });
  }
}

async function ssoLogin(ctx: CliContext, anon: HallpassClient, browser: boolean): Promise<Tokens> {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const loop = browser ? await loopbackReceiver(5 * 60_000) : undefined;
  try {
    const { authorizationUrl } = await anon.post<{ authorizationUrl: string }>('/api/v1/auth/oidc/cli', { challenge, ...(loop ? { redirect: loop.redirect } : {}) });
    ctx.err(`Sign in at:\n  ${authorizationUrl}\n`);
    let code: string;
    if (loop) {
      if (!(await openBrowser(authorizationUrl))) ctx.err('(could not open a browser: open the URL above on this machine)\n');
      code = await loop.code;
    } else {
      code = await ask('code shown after sign-in: ', { env: ctx.io.env, envName: 'HALLPASS_SSO_CODE' });
    }
    return await anon.post<Tokens>('/api/v1/auth/oidc/exchange', { code, verifier });
  } finally {
    loop?.close();
  }
}

/**
 * Asks on the terminal (hidden for secrets). Non-interactive runs read `envName` instead, so
 * scripts and tests never hang on a prompt.
 */
export async function ask(question: string, opts: { secret?: boolean; env: Readonly<Record<string, string | undefined>>; envName: string }): Promise<string> {
  const fromEnv = opts.env[opts.envName];
  if (fromEnv) return fromEnv;
  if (!process.stdin.isTTY) throw new CliError(`${question.replace(/:\s*$/, '')} is needed: run in a terminal or set ${opts.envName}`);
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  const out = rl as unknown as { _writeToOutput?: (s: string) => void; output?: NodeJS.WritableStream };
  if (opts.secret) {
    out._writeToOutput = (s: string) => {
      if (s.includes(question)) process.stderr.write(s);
    };
  }
  try {
    return (await rl.question(question)).trim();
  } finally {
    rl.close();
    if (opts.secret) process.stderr.write('\n');
  }
}

/** Opens a URL in the desktop browser; false when none could be started (the caller prints the URL anyway). */
export function openBrowser(url: string): Promise<boolean> {
  const cmd = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'explorer' : 'xdg-open';
  return new Promise((resolve) => {
    execFile(cmd, [url], { timeout: 5000 }, (err) => resolve(!err));
  });
}

/**
 * A one-shot loopback listener for the SSO redirect: resolves with the `code` query parameter of
 * the first request to /callback, then closes. Listens on 127.0.0.1 only, on a free port.
 */
export async function loopbackReceiver(timeoutMs: number): Promise<{ redirect: string; code: Promise<string>; close(): void }> {
  let settle: { ok: (code: string) => void; fail: (e: Error) => void } | undefined;
  const code = new Promise<string>((ok, fail) => {
    settle = { ok, fail };
  });
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const c = url.searchParams.get('code');
    if (url.pathname !== '/callback' || !c || !/^[0-9a-f]{64}$/.test(c)) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('hallpass: this is not a sign-in response\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end('hallpass: signed in. You can close this window.\n');
    settle?.ok(c);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const timer = setTimeout(() => settle?.fail(new CliError('timed out waiting for the browser sign-in')), timeoutMs);
  const close = () => {
    clearTimeout(timer);
    server.close();
  };
  void code.then(close, close);
  return { redirect: `http://127.0.0.1:${port}/callback`, code, close };
}