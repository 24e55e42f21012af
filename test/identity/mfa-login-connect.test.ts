import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/auth/password.js';
import { hashToken } from '../../src/auth/tokens.js';
import { totpAt } from '../../src/auth/totp.js';
import { ManualClock } from '../../src/domain/clock.js';
import { gatewayExtension } from '../../src/server/gateway-extension.js';
import { testPolicy } from '../support/hallpass.js';
import { startIdentityHallpass, type IdentityHallpass } from '../support/oidc-hallpass.js';
import { freePort, startPgTarget, type PgTarget } from '../support/pg-target.js';

describe('MFA at password login and policy mfa.connect', () => {
  let target: PgTarget;
  let t: IdentityHallpass;
  const clock = new ManualClock(Date.now());
  const password = 'correct horse battery staple';
  let secret = '';
  let recovery: string[] = [];

  beforeAll(async () => {
    target = await startPgTarget();
    const hash = await hashPassword(password, { N: 2 ** 14, r: 8, p: 1 });
    let policy = testPolicy(target).replace('- { name: alice, groups: [engineers] }', `- { name: alice, groups: [engineers], passwordHash: "${hash}" }`);
    const anchor = '    roles: [read]\n    duration: { default: 5m, max: 1h }\n    approval: auto\n';
    if (!policy.includes(anchor) || !policy.includes(hash)) throw new Error('test policy changed: update this test');
    policy = policy.replace(anchor, `${anchor}    mfa: { connect: true, freshness: 5m }\n`);
    t = await startIdentityHallpass({ target, policy, clock, extensions: [gatewayExtension({ host: '127.0.0.1', port: await freePort(), requireTls: true })] });
  });
  afterAll(async () => {
    await t?.close();
    await target?.stop();
  });

  const login = (body: Record<string, string>) => t.call('POST', '/api/v1/auth/login', { body: { username: 'alice', ...body } });

  it('password login issues a 1 h access token and a rotating refresh token; reusing a spent refresh token revokes everything', async () => {
    const first = await login({ password });
    expect(first.status).toBe(200);
    expect(first.body.user).toBe('alice');
    expect(first.body.refreshToken).toMatch(/^hp_ref_/);
    expect(Date.parse(first.body.expiresAt) - clock.now().getTime()).toBe(3600_000);
    expect(Date.parse(first.body.refreshExpiresAt) - clock.now().getTime()).toBe(12 * 3600_000);

    const r1 = await t.call('POST', '/api/v1/auth/refresh', { body: { refreshToken: first.body.refreshToken } });
    expect(r1.status).toBe(200);
    expect(r1.body.user).toBe('alice');
    expect(r1.body.refreshToken).not.toBe(first.body.refreshToken);
    expect((await t.call('GET', '/api/v1/me', { token: first.body.token })).status).toBe(401); // rotated out
    expect((await t.call('GET', '/api/v1/me', { token: r1.body.token })).body.name).toBe('alice');

    // A stolen, already spent refresh token: refused, and every token of alice goes with it.
    const other = await login({ password });
    const reuse = await t.call('POST', '/api/v1/auth/refresh', { body: { refreshToken: first.body.refreshToken } });
    expect(reuse.status).toBe(401);
    expect((await t.call('GET', '/api/v1/me', { token: r1.body.token })).status).toBe(401);
    expect((await t.call('GET', '/api/v1/me', { token: other.body.token })).status).toBe(401);
    expect((await t.call('POST', '/api/v1/auth/refresh', { body: { refreshToken: r1.body.refreshToken } })).status).toBe(401);
    expect((await t.call('POST', '/api/v1/auth/refresh', { body: { refreshToken: other.body.refreshToken } })).status).toBe(401);
    expect((await t.audit('auth.refresh_reused')).map((e) => e.actor)).toEqual(['alice']);

    // The access token expires after an hour; its refresh token still renews the login.
    const again = await login({ password });
    clock.advance(3600_000 + 1000);
    expect((await t.call('GET', '/api/v1/me', { token: again.body.token })).status).toBe(401);
    const renewed = await t.call('POST', '/api/v1/auth/refresh', { body: { refreshToken: again.body.refreshToken } });
    expect(renewed.status).toBe(200);
    expect((await t.call('GET', '/api/v1/me', { token: renewed.body.token })).body.name).toBe('alice');
  });

  it('asks an enrolled user for a TOTP code after the password, and the token starts MFA-fresh', async () => {
    const before = await login({ password });
    expect(before.status).toBe(200); // not enrolled yet: password alone
    const tok = before.body.token as string;
    secret = (await t.call('POST', '/api/v1/auth/mfa/enroll', { token: tok })).body.secret;
    const confirmed = await t.call('POST', '/api/v1/auth/mfa/confirm', { token: tok, body: { code: await totpAt(secret, clock.now().getTime()) } });
    expect(confirmed.status).toBe(200);
    recovery = confirmed.body.recoveryCodes;
    clock.advance(30_000);

    const logins = (await t.audit('auth.login')).length;
    const wrongPassword = await login({ password: 'nope', totp: await totpAt(secret, clock.now().getTime()) });
    expect(wrongPassword.status).toBe(401);
    expect(wrongPassword.body.error.code).toBe('unauthenticated');
    expect((await t.audit('auth.login_failed')).at(-1)).toEqual({ actor: 'alice', data: { method: 'password', clientAddress: expect.stringMatching(/127\.0\.0\.1$/) } });
    const noCode = await login({ password });
    expect(noCode.status).toBe(401);
    expect(noCode.body.error).toMatchObject({ code: 'mfa_required', details: { reason: 'login' } });
    expect((await login({ password, totp: '000000' })).body.error.code).toBe('mfa_required');
    // Right password, missing or wrong second factor: no auth.login (the code failure is mfa.failed).
    expect((await t.audit('auth.login')).length).toBe(logins);
    expect((await t.audit('mfa.failed')).at(-1)).toMatchObject({ actor: 'alice', data: { purpose: 'login' } });
    const ok = await login({ password, totp: await totpAt(secret, clock.now().getTime()) });
    expect(ok.status).toBe(200);
    const events = await t.audit('auth.login');
    expect(events).toHaveLength(logins + 1);
    const tokenId = (await t.h.deps.store.db.selectFrom('api_tokens').select('id').where('token_hash', '=', hashToken(ok.body.token)).executeTakeFirstOrThrow()).id;
    expect(events.at(-1)).toEqual({ actor: 'alice', data: { method: 'password', handle: tokenId, clientAddress: expect.stringMatching(/127\.0\.0\.1$/) } });
    // An unknown user is recorded under the name tried; no password ever reaches the log.
    expect((await t.call('POST', '/api/v1/auth/login', { body: { username: 'mallory', password: 'guess-1' } })).status).toBe(401);
    expect((await t.audit('auth.login_failed')).at(-1)).toMatchObject({ actor: 'mallory', data: { method: 'password' } });
    const logged = (await t.h.deps.store.db.selectFrom('audit_events').select('data').execute()).map((r) => r.data).join('\n');
    for (const secretText of [password, 'nope', 'guess-1']) expect(logged).not.toContain(secretText);

    // mfa.connect: credentials need a fresh check; the login just did one.
    const r = await t.call('POST', '/api/v1/requests', { token: ok.body.token, body: { resource: 'app-db', role: 'read', reason: 'INC-11' } });
    expect(r.body.grant.status).toBe('active');
    const grant = r.body.grant.id as string;
    expect((await t.call('GET', `/api/v1/grants/${grant}/credentials`, { token: ok.body.token })).status).toBe(200);

    clock.advance(6 * 60_000);
    const stale = await t.call('GET', `/api/v1/grants/${grant}/credentials`, { token: ok.body.token });
    expect(stale.status).toBe(401);
    expect(stale.body.error.code).toBe('mfa_required');
    const fresh = await t.call('GET', `/api/v1/grants/${grant}/credentials`, { token: ok.body.token, headers: { 'x-hallpass-mfa': await totpAt(secret, clock.now().getTime()) } });
    expect(fresh.status).toBe(200);
    expect(fresh.body.dsn).toMatch(/^postgres/);
  });

  it('a recovery code stands in for the TOTP code at password login, once', async () => {
    const code = recovery[0]!;
    const ok = await login({ password, totp: code });
    expect(ok.status).toBe(200);
    expect(ok.body.refreshToken).toMatch(/^hp_ref_/);
    expect((await t.audit('mfa.verified')).at(-1)).toMatchObject({ actor: 'alice', data: { method: 'recovery_code', purpose: 'login' } });
    const again = await login({ password, totp: code });
    expect(again.status).toBe(401);
    expect(again.body.error).toMatchObject({ code: 'mfa_required', message: 'MFA code refused: wrong or already used recovery code' });
    expect((await login({ password, totp: code.toLowerCase() })).status).toBe(401); // case does not make it another code
    expect((await t.call('GET', '/api/v1/auth/mfa', { token: ok.body.token })).body.recoveryCodesLeft).toBe(recovery.length - 1);
    // The web sign-in takes one too (same body); over-long junk is refused before any check.
    const web = await t.call('POST', '/api/v1/auth/web-login', { body: { username: 'alice', password, totp: recovery[1]! } });
    expect(web.status).toBe(200);
    expect((await login({ password, totp: 'x'.repeat(33) })).status).toBe(400);
  });

  it('web sign-in for local users: password, then TOTP; a cookie session that starts MFA-fresh', async () => {
    clock.advance(30_000);
    const web = (body: Record<string, string>) => t.call('POST', '/api/v1/auth/web-login', { body: { username: 'alice', ...body } });
    expect((await web({ password: 'nope' })).status).toBe(401);
    const noCode = await web({ password });
    expect(noCode.body.error.code).toBe('mfa_required');
    expect(noCode.headers.get('set-cookie')).toBeNull();
    const ok = await web({ password, totp: await totpAt(secret, clock.now().getTime()) });
    expect(ok.status).toBe(200);
    const setCookie = ok.headers.get('set-cookie')!;
    expect(setCookie).toMatch(/^hallpass_session=hp_ses_[^;]+; Path=\/; HttpOnly; SameSite=Lax; Max-Age=43200$/);
    const cookie = setCookie.split(';')[0]!;
    const headers = { cookie, 'x-hallpass-csrf': ok.body.csrfToken as string };
    const body = { resource: 'app-db', role: 'write', reason: 'INC-12' };
    expect((await t.call('POST', '/api/v1/requests', { headers: { cookie }, body })).status).toBe(403); // no CSRF header
    const r = await t.call('POST', '/api/v1/requests', { headers, body });
    expect(r.status).toBe(201);
    expect(r.body.request.status).toBe('pending');
    const session = await t.call('GET', '/api/v1/auth/session', { headers: { cookie } });
    expect(Date.parse(session.body.mfaAt)).toBe(clock.now().getTime());
    const out = await t.call('POST', '/api/v1/auth/signout', { headers });
    expect(out.status).toBe(200);
    expect(out.headers.get('set-cookie')).toMatch(/Max-Age=0/);
    expect((await t.call('GET', '/api/v1/me', { headers: { cookie } })).status).toBe(401);
  });

  it('regression: an X-Hallpass-MFA code is not spent by a call refused for its input (400) or to no route (404)', async () => {
    clock.advance(30_000);
    const tok = await t.token('alice'); // a fresh token: no MFA stamp yet
    const code = await totpAt(secret, clock.now().getTime());
    const checks = async () => (await t.audit('mfa.verified')).length + (await t.audit('mfa.failed')).length;
    const before = await checks();
    const bad = await t.call('POST', '/api/v1/requests', { token: tok, body: { resource: 'app-db' }, headers: { 'x-hallpass-mfa': code } });
    expect(bad.status).toBe(400);
    const badQuery = await t.call('GET', '/api/v1/requests?status=nonsense', { token: tok, headers: { 'x-hallpass-mfa': code } });
    expect(badQuery.status).toBe(400);
    const noRoute = await t.call('POST', '/api/v1/no-such-route', { token: tok, body: {}, headers: { 'x-hallpass-mfa': code } });
    expect(noRoute.status).toBe(404);
    expect(await checks()).toBe(before); // the code was not even looked at

    // The same code then works on a valid call (credentials, which need mfa.connect), and stamps the token.
    const grant = await t.h.deps.store.db.selectFrom('grants').select('id').where('status', '=', 'active').where('role', '=', 'read').executeTakeFirstOrThrow();
    const credentials = `/api/v1/grants/${grant.id}/credentials`;
    expect((await t.call('GET', credentials, { token: tok })).body.error.code).toBe('mfa_required');
    const ok = await t.call('GET', credentials, { token: tok, headers: { 'x-hallpass-mfa': code } });
    expect(ok.status).toBe(200);
    expect((await t.audit('mfa.verified')).at(-1)).toMatchObject({ actor: 'alice', data: { method: 'totp', purpose: `GET ${credentials}` } });
    expect((await t.call('GET', credentials, { token: tok })).status).toBe(200);
    // ... and only once.
    const replay = await t.call('GET', '/api/v1/me', { token: await t.token('alice'), headers: { 'x-hallpass-mfa': code } });
    expect(replay.status).toBe(401);
    expect(replay.body.error.message).toMatch(/already used/);
  });

  it('policy mfa.connect covers gateway credentials too: ?via=gateway needs a fresh MFA check', async () => {
    // dave (alice already holds the read grant) enrols; confirming does not stamp his token.
    const tok = await t.token('dave');
    const daveSecret = (await t.call('POST', '/api/v1/auth/mfa/enroll', { token: tok })).body.secret as string;
    expect((await t.call('POST', '/api/v1/auth/mfa/confirm', { token: tok, body: { code: await totpAt(daveSecret, clock.now().getTime()) } })).status).toBe(200);
    clock.advance(30_000);
    const r = await t.call('POST', '/api/v1/requests', { token: tok, body: { resource: 'app-db', role: 'read', duration: '1h', reason: 'INC-14' } });
    expect(r.status).toBe(201);
    expect(r.body.grant.status).toBe('active');
    const url = `/api/v1/grants/${r.body.grant.id}/credentials?via=gateway`;
    const issued = (await t.audit('grant.credentials_issued')).length;
    for (const path of [url, `${url}&reusable=true`]) {
      const bare = await t.call('GET', path, { token: tok });
      expect(bare.status, path).toBe(401);
      expect(bare.body.error, path).toMatchObject({ code: 'mfa_required', details: { freshnessSeconds: 300 } });
      expect(bare.body.password, path).toBeUndefined();
    }
    expect((await t.audit('grant.credentials_issued')).length).toBe(issued); // no gateway token was minted

    const ok = await t.call('GET', url, { token: tok, headers: { 'x-hallpass-mfa': await totpAt(daveSecret, clock.now().getTime()) } });
    expect(ok.status).toBe(200);
    expect(ok.body.viaGateway).toBe(true);
    expect(ok.body.password).toMatch(/^hpg_/);
    expect((await t.audit('grant.credentials_issued')).at(-1)).toMatchObject({ actor: 'dave', data: { viaGateway: true } });

    // Stale again after the freshness window (the grant itself still has most of its hour).
    clock.advance(5 * 60_000 + 1000);
    const stale = await t.call('GET', url, { token: tok });
    expect(stale.status).toBe(401);
    expect(stale.body.error.code).toBe('mfa_required');
  });
});
