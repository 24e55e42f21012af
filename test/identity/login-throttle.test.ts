import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/auth/password.js';
import { ManualClock } from '../../src/domain/clock.js';
import { testPolicy } from '../support/hallpass.js';
import { startIdentityHallpass, type IdentityHallpass } from '../support/oidc-hallpass.js';
import { startPgTarget, type PgTarget } from '../support/pg-target.js';

/**
 * Password guessing against the two sign-in routes (CLI `/auth/login`, web `/auth/web-login`):
 * 5 failures per user name and 20 per client address, in one budget shared by both routes, then
 * back-off (1 s, doubling). Client addresses are set per call through Fastify's inject.
 */
describe('password login throttling (CLI and web sign-in share one budget)', () => {
  let target: PgTarget;
  let t: IdentityHallpass;
  const clock = new ManualClock(Date.now());
  const password = 'correct horse battery staple';
  const users = ['alice', 'dave', 'bob', 'carol', 'olga'];

  const policyWithPasswords = async () => {
    const hash = await hashPassword(password, { N: 2 ** 14, r: 8, p: 1 });
    let policy = testPolicy(target);
    for (const u of users) {
      const m = new RegExp(`- \\{ name: ${u}, groups: (\\[[^\\]]*\\]) \\}`).exec(policy);
      if (!m) throw new Error('test policy changed: update this test');
      policy = policy.replace(m[0], `- { name: ${u}, groups: ${m[1]}, passwordHash: "${hash}" }`);
    }
    return policy;
  };

  beforeAll(async () => {
    target = await startPgTarget();
    t = await startIdentityHallpass({ target, policy: await policyWithPasswords(), clock });
  });
  afterAll(async () => {
    await t?.close();
    await target?.stop();
  });

  type Route = 'login' | 'web-login';
  const attempt = async (route: Route, username: string, pw: string, address: string) => {
    const res = await t.h.api.inject({ method: 'POST', url: `/api/v1/auth/${route}`, payload: { username, password: pw }, remoteAddress: address });
    return { status: res.statusCode, body: res.json(), cookie: res.headers['set-cookie'] };
  };
  const refused = (r: { status: number; body: any; cookie: unknown }) => {
    expect(r.status).toBe(429);
    expect(r.body.error.code).toBe('rate_limited');
    expect(r.body.token).toBeUndefined();
    expect(r.cookie).toBeUndefined();
  };
  const fresh = () => clock.advance(16 * 60_000); // past the 15-minute window of earlier tests

  it('per user: after 5 wrong passwords (from 5 addresses) even the right password is refused, on both routes, until the back-off passes', async () => {
    fresh();
    for (let i = 1; i <= 5; i++) expect((await attempt('login', 'alice', `guess-${i}`, `10.0.0.${i}`)).status).toBe(401);
    const logins = (await t.audit('auth.login')).length;
    refused(await attempt('login', 'alice', password, '10.0.0.9'));
    refused(await attempt('web-login', 'alice', password, '10.0.0.9'));
    expect((await t.audit('auth.login')).length).toBe(logins); // no token, no session
    // Not the address: another user signs in from there.
    expect((await attempt('login', 'dave', password, '10.0.0.9')).status).toBe(200);
    // Back-off, not a lock-out: after 1 s the right password works (and clears alice's record).
    clock.advance(1001);
    expect((await attempt('login', 'alice', password, '10.0.0.9')).status).toBe(200);
    expect((await attempt('web-login', 'alice', 'one more guess', '10.0.0.10')).status).toBe(401);
  });

  it('per address: 20 wrong passwords spread over users throttle that address, not others', async () => {
    fresh();
    for (let i = 0; i < 20; i++) expect((await attempt('login', users[i % users.length] as string, 'guess', '10.0.1.1')).status).toBe(401);
    refused(await attempt('login', 'alice', password, '10.0.1.1'));
    refused(await attempt('web-login', 'bob', password, '10.0.1.1'));
    refused(await attempt('login', 'mallory', 'anything', '10.0.1.1'));
    expect((await attempt('login', 'alice', password, '10.0.1.2')).status).toBe(200);
  });

  it('regression: failures split across /auth/login and /auth/web-login count as one budget (per user and per address)', async () => {
    fresh();
    // One user, alternating routes and addresses: 3 + 2 failures.
    for (let i = 1; i <= 5; i++) expect((await attempt(i % 2 ? 'login' : 'web-login', 'carol', 'guess', `10.0.2.${i}`)).status).toBe(401);
    refused(await attempt('login', 'carol', password, '10.0.2.9'));
    refused(await attempt('web-login', 'carol', password, '10.0.2.9'));
    // One address, different users, alternating routes.
    for (let i = 0; i < 20; i++) {
      const u = ['alice', 'dave', 'bob', 'olga', 'mallory'][i % 5] as string;
      expect((await attempt(i % 2 ? 'web-login' : 'login', u, 'guess', '10.0.3.1')).status).toBe(401);
    }
    refused(await attempt('web-login', 'alice', password, '10.0.3.1'));
    refused(await attempt('login', 'alice', password, '10.0.3.1'));
  });

  it('guesses sent all at once get no more than the budget: attempts in flight count (review 2026-12-02: 60 at once, the right one last, logged in)', async () => {
    fresh();
    const failedBefore = (await t.audit('auth.login_failed')).length;
    const results = await Promise.all([
      ...Array.from({ length: 30 }, (_, i) => attempt(i % 2 ? 'login' : 'web-login', 'olga', `guess-${i}`, `10.0.4.${i}`)),
      attempt('login', 'olga', password, '10.0.4.99'),
    ]);
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 401)).toHaveLength(5);
    expect(statuses.filter((s) => s === 429)).toHaveLength(26);
    // Refused while the budget was taken by attempts still running: said so, not "failed".
    expect(results.filter((r) => r.status === 429).map((r) => r.body.error.message)).toContain('too many login attempts at once; try again in 1s');
    expect(statuses.filter((s) => s === 200)).toHaveLength(0);
    expect((await t.audit('auth.login_failed')).length - failedBefore).toBe(5);
    // Past the back-off, one attempt at a time, not another burst.
    clock.advance(1001);
    const burst = await Promise.all(Array.from({ length: 10 }, (_, i) => attempt('login', 'olga', `again-${i}`, `10.0.5.${i}`)));
    expect(burst.map((r) => r.status).sort()).toEqual([401, ...Array(9).fill(429)]);
    clock.advance(2001);
    expect((await attempt('login', 'olga', password, '10.0.4.99')).status).toBe(200);
  });

  it('refuses a user name with control characters with 400, before it reaches the audit log (review 2026-12-02)', async () => {
    const failedBefore = (await t.audit('auth.login_failed')).length;
    for (const route of ['login', 'web-login'] as const) {
      const r = await attempt(route, 'mallory\u001b[2K\u001b]0;owned\u0007', 'x', '10.0.9.1');
      expect(r.status).toBe(400);
    }
    expect((await t.audit('auth.login_failed')).length).toBe(failedBefore);
  });

  it('reads the client address from X-Forwarded-For only when the peer is a configured proxy (review 2026-12-02: behind a proxy everyone shared one budget)', async () => {
    const proxied = await startIdentityHallpass({ target, policy: await policyWithPasswords(), clock, trustedProxies: ['10.9.9.0/24'] });
    try {
      const via = async (h: IdentityHallpass, peer: string, forwarded: string) => {
        await h.h.api.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { username: 'mallory', password: 'x' }, remoteAddress: peer, headers: { 'x-forwarded-for': forwarded } });
        return (await h.audit('auth.login_failed')).at(-1)?.data.clientAddress;
      };
      expect(await via(proxied, '10.9.9.1', '203.0.113.7')).toBe('203.0.113.7');
      expect(await via(proxied, '10.8.8.8', '203.0.113.7')).toBe('10.8.8.8'); // not a proxy: its own address
      expect(await via(t, '10.9.9.1', '203.0.113.7')).toBe('10.9.9.1'); // no proxies configured
    } finally {
      await proxied.close();
    }
  });
});
