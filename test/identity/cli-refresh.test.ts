import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { revokeEverything } from '../../src/auth/login-tokens.js';
import { hashPassword } from '../../src/auth/password.js';
import { hashToken } from '../../src/auth/tokens.js';
import { memoryIo } from '../../src/cli/io.js';
import { registerLoginCommands } from '../../src/cli/login.js';
import { buildProgram, runCli } from '../../src/cli/program.js';
import { ManualClock } from '../../src/domain/clock.js';
import { testPolicy } from '../support/hallpass.js';
import { startIdentityHallpass, type IdentityHallpass } from '../support/oidc-hallpass.js';
import { freePort, startPgTarget, type PgTarget } from '../support/pg-target.js';

/** The server's clock is injected, so access tokens (1 h) expire without waiting an hour. */
describe('CLI: a saved login renews itself when its access token has expired', () => {
  let target: PgTarget;
  let t: IdentityHallpass;
  let home: string;
  const clock = new ManualClock(Date.now());
  const password = 'renew me please 7';
  const expire = () => clock.advance(3600_000 + 1000);

  beforeAll(async () => {
    target = await startPgTarget();
    const hash = await hashPassword(password, { N: 2 ** 14, r: 8, p: 1 });
    const policy = testPolicy(target).replace('- { name: bob, groups: [sre] }', `- { name: bob, groups: [sre], passwordHash: "${hash}" }`);
    if (!policy.includes(hash)) throw new Error('test policy changed: update this test');
    t = await startIdentityHallpass({ target, policy, clock });
    home = mkdtempSync(join(tmpdir(), 'hp-cli-refresh-'));
  });
  afterAll(async () => {
    await t?.close();
    await target?.stop();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  const configFile = () => join(home, 'hallpass', 'config.json');
  const refreshFile = () => join(home, 'hallpass', 'refresh.json');
  const savedToken = () => (JSON.parse(readFileSync(configFile(), 'utf8')) as { token: string }).token;
  const refreshes = async () => (await t.audit('token.issued')).filter((e) => e.data.via === 'refresh').length;
  const cli = async (args: string[], env: Record<string, string> = {}) => {
    const io = memoryIo({ XDG_CONFIG_HOME: home, HALLPASS_SERVER: t.h.url, ...env });
    const program = buildProgram(io);
    registerLoginCommands(program);
    const code = await runCli(program, args);
    return { code, out: io.out, err: io.err };
  };
  /** bob's refresh tokens the server would still honour, and his live access tokens. */
  const bobId = async () => (await t.h.deps.store.db.selectFrom('users').select('id').where('name', '=', 'bob').executeTakeFirstOrThrow()).id;
  const live = async () => {
    const db = t.h.deps.store.db;
    const bob = { id: await bobId() };
    const at = clock.now().getTime();
    const refresh = await db.selectFrom('refresh_tokens').select('id').where('user_id', '=', bob.id)
      .where('revoked_at', 'is', null).where('used_at', 'is', null).where('expires_at', '>', at).execute();
    const access = await db.selectFrom('api_tokens').select('id').where('user_id', '=', bob.id).where('revoked_at', 'is', null)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', at)])).execute();
    return { refresh: refresh.length, access: access.length };
  };
  const login = async () => {
    const r = await cli(['login', '--user', 'bob'], { HALLPASS_PASSWORD: password });
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
  };

  it('a call answered 401 renews the saved login once (new pair saved 0600) and is sent again', async () => {
    await login();
    const first = savedToken();
    expire();
    expect((await t.call('GET', '/api/v1/me', { token: first })).status).toBe(401);
    const me = await cli(['me']);
    expect(me.err).toBe('');
    expect(me.out).toMatch(/^bob/);
    expect(savedToken()).not.toBe(first);
    expect(statSync(configFile()).mode & 0o777).toBe(0o600);
    expect(statSync(refreshFile()).mode & 0o777).toBe(0o600);
    expect(await refreshes()).toBe(1);
    // The next call uses the saved new token as it is: no further renewal.
    expect((await cli(['me'])).code).toBe(0);
    expect(await refreshes()).toBe(1);
  });

  it('concurrent renewals by several CLI runs spend the refresh token once, and nobody is logged out', async () => {
    await login();
    const before = await refreshes();
    expire();
    // Each run reads the expired token, gets 401, and wants to renew; unlocked, the second use of
    // the single-use refresh token would count as theft and revoke every token of bob.
    const runs = await Promise.all([cli(['me']), cli(['me']), cli(['me'])]);
    for (const r of runs) {
      expect(r.err).toBe('');
      expect(r.out).toMatch(/^bob/);
    }
    expect(await refreshes()).toBe(before + 1);
    expect(await t.audit('auth.refresh_reused')).toEqual([]);
    expect((await cli(['me'])).out).toMatch(/^bob/); // still logged in afterwards
    expect(existsSync(join(home, 'hallpass', 'login.lock'))).toBe(false);
  });

  it('a lock left by a crashed run is broken once stale (10 s); a fresh one is waited for', async () => {
    await login();
    const lock = join(home, 'hallpass', 'login.lock');
    writeFileSync(lock, '99999 someone-else\n');
    const old = new Date(Date.now() - 11_000);
    utimesSync(lock, old, old);
    expire();
    expect((await cli(['me'])).out).toMatch(/^bob/);
    expect(existsSync(lock)).toBe(false);

    // Held by a live renewal: the run waits for it to go away, then renews.
    expire();
    writeFileSync(lock, '99999 someone-else\n');
    const waiting = cli(['me']);
    await new Promise((r) => setTimeout(r, 300));
    rmSync(lock);
    expect((await waiting).out).toMatch(/^bob/);
  });

  it('a token given by HALLPASS_TOKEN is never renewed with the saved refresh token', async () => {
    await login();
    const before = await refreshes();
    const explicit = savedToken();
    expire();
    const r = await cli(['me'], { HALLPASS_TOKEN: explicit });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/invalid, expired or revoked token/);
    expect(await refreshes()).toBe(before);
    expect(savedToken()).toBe(explicit);
  });

  it('regression: logout after the access token expired renews, then revokes on the server (refresh token too) and removes the files', async () => {
    const id = await bobId();
    await t.h.deps.store.db.transaction().execute((tx) => revokeEverything(tx, id, clock.now().getTime())); // earlier tests' logins
    await login();
    expire();
    expect(await live()).toEqual({ refresh: 1, access: 0 }); // the expired token is refused, its refresh token is not
    const out = await cli(['logout']);
    expect(out.err).toBe('');
    expect(out.out).toBe('logged out\n');
    expect(out.code).toBe(0);
    expect(existsSync(configFile())).toBe(false);
    expect(existsSync(refreshFile())).toBe(false);
    expect(await live()).toEqual({ refresh: 0, access: 0 });
  });

  it('logout once the refresh token has expired too: nothing is valid on the server, the files go', async () => {
    await login();
    clock.advance(12 * 3600_000 + 1000);
    expect(await live()).toEqual({ refresh: 0, access: 0 });
    const out = await cli(['logout']);
    expect(out.code).toBe(0);
    expect(out.out).toBe('logged out\n');
    expect(existsSync(configFile())).toBe(false);
    expect(existsSync(refreshFile())).toBe(false);
  });

  it('logout with the server unreachable still removes the files, and says the login was not revoked', async () => {
    await login();
    const dead = `http://127.0.0.1:${await freePort()}`;
    const saved = JSON.parse(readFileSync(configFile(), 'utf8')) as Record<string, string>;
    writeFileSync(configFile(), JSON.stringify({ ...saved, server: dead }));
    const out = await cli(['logout'], { HALLPASS_SERVER: dead });
    expect(out.code).toBe(1);
    expect(out.err).toMatch(/^hallpass: forgot the login here, but could not revoke it on the server: cannot reach hallpass/);
    expect(existsSync(configFile())).toBe(false);
    expect(existsSync(refreshFile())).toBe(false);
  });

  it('the older POST /api/v1/auth/logout also revokes the refresh token issued with the access token', async () => {
    const r = await t.call('POST', '/api/v1/auth/login', { body: { username: 'bob', password } });
    expect(r.status).toBe(200);
    expect((await t.call('POST', '/api/v1/auth/logout', { token: r.body.token })).status).toBe(200);
    expect((await t.call('GET', '/api/v1/me', { token: r.body.token })).status).toBe(401);
    const db = t.h.deps.store.db;
    const rows = await db.selectFrom('refresh_tokens as r').innerJoin('api_tokens as a', 'a.id', 'r.access_token_id')
      .select(['r.revoked_at', 'r.used_at']).where('a.token_hash', '=', hashToken(r.body.token)).execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]!.revoked_at).not.toBeNull();
    expect(rows[0]!.used_at).toBeNull();
    expect((await t.call('POST', '/api/v1/auth/refresh', { body: { refreshToken: r.body.refreshToken } })).status).toBe(401);
  });
});
