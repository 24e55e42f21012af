import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/auth/password.js';
import { testPolicy } from '../support/hallpass.js';
import { startIdentityHallpass, type IdentityHallpass } from '../support/oidc-hallpass.js';
import { startPgTarget, type PgTarget } from '../support/pg-target.js';

/**
 * The web session cookie is `Secure` when the server's public URL is https:// (TLS ends at a proxy
 * in front of it, so the request itself arrives over plain HTTP), and not when it is http://.
 * The server is reached through Fastify's inject: the public URL names no listening address.
 */
describe('web session cookie: Secure per the public URL', () => {
  let target: PgTarget;
  const servers: IdentityHallpass[] = [];
  const password = 'correct horse battery staple';
  let policy = '';

  beforeAll(async () => {
    target = await startPgTarget();
    const hash = await hashPassword(password, { N: 2 ** 14, r: 8, p: 1 });
    policy = testPolicy(target).replace('- { name: alice, groups: [engineers] }', `- { name: alice, groups: [engineers], passwordHash: "${hash}" }`);
    if (!policy.includes(hash)) throw new Error('test policy changed: update this test');
  });
  afterAll(async () => {
    for (const s of servers) await s.close();
    await target?.stop();
  });

  const cookies = async (publicUrl: string) => {
    const t = await startIdentityHallpass({ target, policy, publicUrl });
    servers.push(t);
    const login = await t.h.api.inject({ method: 'POST', url: '/api/v1/auth/web-login', payload: { username: 'alice', password } });
    expect(login.statusCode).toBe(200);
    const set = String(login.headers['set-cookie']);
    const session = set.split(';')[0]!;
    const out = await t.h.api.inject({ method: 'POST', url: '/api/v1/auth/signout', headers: { cookie: session, 'x-hallpass-csrf': login.json().csrfToken } });
    expect(out.statusCode).toBe(200);
    return { set, cleared: String(out.headers['set-cookie']) };
  };

  it('https:// public URL: the session cookie (and the one clearing it at sign-out) is Secure', async () => {
    const { set, cleared } = await cookies('https://hallpass.example.com');
    expect(set).toMatch(/^hallpass_session=hp_ses_[^;]+; Path=\/; HttpOnly; SameSite=Lax; Max-Age=43200; Secure$/);
    expect(cleared).toMatch(/^hallpass_session=; .*Max-Age=0; Secure$/);
  });

  it('http:// public URL: no Secure attribute (the browser would never send it back)', async () => {
    const { set, cleared } = await cookies('http://hallpass.internal:8080');
    expect(set).toMatch(/^hallpass_session=hp_ses_[^;]+; Path=\/; HttpOnly; SameSite=Lax; Max-Age=43200$/);
    expect(set).not.toMatch(/secure/i);
    expect(cleared).not.toMatch(/secure/i);
  });

  it('the older /auth/logout ends a web session too, as /auth/signout does (review 2026-12-02: it answered ok and the session lived on)', async () => {
    const t = await startIdentityHallpass({ target, policy, publicUrl: 'http://hallpass.internal:8080' });
    servers.push(t);
    const login = await t.h.api.inject({ method: 'POST', url: '/api/v1/auth/web-login', payload: { username: 'alice', password } });
    const session = String(login.headers['set-cookie']).split(';')[0]!;
    const headers = { cookie: session, 'x-hallpass-csrf': login.json().csrfToken };
    expect((await t.h.api.inject({ method: 'GET', url: '/api/v1/me', headers })).statusCode).toBe(200);
    const out = await t.h.api.inject({ method: 'POST', url: '/api/v1/auth/logout', headers });
    expect(out.statusCode).toBe(200);
    expect(String(out.headers['set-cookie'])).toMatch(/^hallpass_session=; .*Max-Age=0/);
    expect((await t.h.api.inject({ method: 'GET', url: '/api/v1/me', headers })).statusCode).toBe(401);
  });
});
