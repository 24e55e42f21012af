import { issueToken } from '../../src/auth/tokens.js';
import { getUserByName } from '../../src/store/users.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { totpAt } from '../../src/auth/totp.js';
import { ManualClock } from '../../src/domain/clock.js';
import { testPolicy } from '../support/hallpass.js';
import { startIdentityHallpass, type IdentityHallpass } from '../support/oidc-hallpass.js';
import { startPgTarget, type PgTarget } from '../support/pg-target.js';
import { createTestDatabase } from '../support/services.js';

/**
 * The lifecycle policy, with MFA required to approve write access and to request read access
 * (fresh within 5 minutes).
 */
function mfaPolicy(target: PgTarget): string {
  const p = testPolicy(target);
  const anchor = '    roles: [write]\n    duration: { default: 30m, max: 2h }\n    approval: { approvals: 1, from: [sre] }\n';
  const read = '    roles: [read]\n    duration: { default: 5m, max: 1h }\n    approval: auto\n';
  if (!p.includes(anchor) || !p.includes(read)) throw new Error('test policy changed: update mfaPolicy');
  return p.replace(anchor, `${anchor}    mfa: { approve: true, freshness: 5m }\n`).replace(read, `${read}    mfa: { request: true, freshness: 5m }\n`);
}

describe.each(['sqlite', 'postgres'] as const)('TOTP MFA: policy requires a fresh code to approve (%s store)', (dialect) => {
  let target: PgTarget;
  let t: IdentityHallpass;
  const clock = new ManualClock(Date.now());
  const step = () => clock.advance(30_000);
  let bobSecret = '';
  let recovery: string[] = [];
  const secrets = new Map<string, string>();

  let db: { url: string; drop: () => Promise<void> } | undefined;
  beforeAll(async () => {
    if (dialect === 'postgres') db = await createTestDatabase('hp_identity');
    target = await startPgTarget();
    t = await startIdentityHallpass({ target, databaseUrl: db?.url, policy: mfaPolicy(target), clock });
  });
  afterAll(async () => {
    await t?.close();
    await target?.stop();
    await db?.drop();
  });

  const request = async (who: string) => {
    const r = await t.call('POST', '/api/v1/requests', { token: await t.token(who), body: { resource: 'app-db', role: 'write', duration: '30m', reason: 'deploy fix INC-7' } });
    expect(r.status).toBe(201);
    expect(r.body.request.status).toBe('pending');
    return r.body.request.id as string;
  };

  it('enrols with an otpauth URI, refuses a wrong confirmation code, and hands out recovery codes once', async () => {
    const bob = await t.token('bob');
    const e = await t.call('POST', '/api/v1/auth/mfa/enroll', { token: bob });
    expect(e.status).toBe(200);
    bobSecret = e.body.secret;
    expect(e.body.otpauthUri).toMatch(/^otpauth:\/\/totp\/hallpass:bob\?.*secret=/);
    const wrong = String((Number(await totpAt(bobSecret, clock.now().getTime())) + 1) % 1_000_000).padStart(6, '0');
    expect((await t.call('POST', '/api/v1/auth/mfa/confirm', { token: bob, body: { code: wrong } })).status).toBe(401);
    const c = await t.call('POST', '/api/v1/auth/mfa/confirm', { token: bob, body: { code: await totpAt(bobSecret, clock.now().getTime()) } });
    expect(c.status).toBe(200);
    recovery = c.body.recoveryCodes;
    expect(recovery).toHaveLength(10);
    expect((await t.call('GET', '/api/v1/auth/mfa', { token: bob })).body).toEqual({ enrolled: true, pendingConfirmation: false, recoveryCodesLeft: 10 });
    // Enrolled users cannot silently re-enrol (that would replace the factor without proof).
    expect((await t.call('POST', '/api/v1/auth/mfa/enroll', { token: bob })).status).toBe(409);
  });

  it('enrols only with a credential from a recent sign-in: not a refreshed or admin-made token, not a sign-in over 10 minutes old (review 2026-12-02)', async () => {
    const row = await getUserByName(t.h.deps.store.db, 'carol');
    for (const name of ['refresh', 'ci-token']) {
      const tok = (await issueToken(t.h.deps.store.db, { userId: row!.id, name, now: clock.now().getTime() })).token;
      const r = await t.call('POST', '/api/v1/auth/mfa/enroll', { token: tok });
      expect(r.status, name).toBe(403);
      expect(r.body.error.message).toMatch(/needs a sign-in from the last 10 minutes/);
    }
    const old = (await issueToken(t.h.deps.store.db, { userId: row!.id, name: 'login', now: clock.now().getTime() - 11 * 60_000 })).token;
    expect((await t.call('POST', '/api/v1/auth/mfa/enroll', { token: old })).status).toBe(403);
    expect((await t.call('GET', '/api/v1/auth/mfa', { token: old })).body).toMatchObject({ enrolled: false, pendingConfirmation: false });
  });

  it('refuses an approval without a fresh code, accepts one with it, refuses the same code twice', async () => {
    step();
    const first = await request('alice');
    const bob = await t.token('bob');
    const bare = await t.call('POST', `/api/v1/requests/${first}/approve`, { token: bob, body: {} });
    expect(bare.status).toBe(401);
    expect(bare.body.error.code).toBe('mfa_required');

    const code = await totpAt(bobSecret, clock.now().getTime());
    const ok = await t.call('POST', `/api/v1/requests/${first}/approve`, { token: bob, body: {}, headers: { 'x-hallpass-mfa': code } });
    expect(ok.status).toBe(200);
    expect(ok.body.request.status).toBe('approved');
    expect(ok.body.grant.status).toBe('active');

    const second = await request('dave');
    const replay = await t.call('POST', `/api/v1/requests/${second}/approve`, { token: await t.token('bob'), body: {}, headers: { 'x-hallpass-mfa': code } });
    expect(replay.status).toBe(401);
    expect(replay.body.error.code).toBe('mfa_required');
    expect(replay.body.error.message).toMatch(/already used/);
    expect((await t.call('GET', `/api/v1/requests/${second}`, { token: await t.token('dave') })).body.status).toBe('pending');

    // An older code than the last accepted one is refused too (no replay within the drift window).
    const older = await totpAt(bobSecret, clock.now().getTime() - 30_000);
    expect((await t.call('POST', `/api/v1/requests/${second}/approve`, { token: await t.token('bob'), body: {}, headers: { 'x-hallpass-mfa': older } })).status).toBe(401);
  });

  it('a step-up stamps the token: fresh for the policy window, then required again', async () => {
    step();
    const bob = await t.token('bob');
    const up = await t.call('POST', '/api/v1/auth/mfa/verify', { token: bob, body: { code: await totpAt(bobSecret, clock.now().getTime()) } });
    expect(up.status).toBe(200);
    const r1 = await request('carol');
    expect((await t.call('POST', `/api/v1/requests/${r1}/approve`, { token: bob, body: {} })).status).toBe(200);
    clock.advance(5 * 60_000 + 1000);
    const r2 = await t.call('GET', '/api/v1/requests?status=pending', { token: bob });
    const pending = (r2.body.requests as Array<{ id: string }>)[0]!.id;
    const stale = await t.call('POST', `/api/v1/requests/${pending}/approve`, { token: bob, body: {} });
    expect(stale.status).toBe(401);
    expect(stale.body.error.code).toBe('mfa_required');
  });

  it('recovery codes work once', async () => {
    const pending = (await t.call('GET', '/api/v1/requests?status=pending', { token: await t.token('bob') })).body.requests[0].id as string;
    const code = recovery[0]!;
    const ok = await t.call('POST', `/api/v1/requests/${pending}/approve`, { token: await t.token('bob'), body: {}, headers: { 'x-hallpass-mfa': code.toLowerCase() } });
    expect(ok.status).toBe(200);
    expect(ok.body.request.status).toBe('approved');
    const again = await t.call('POST', '/api/v1/auth/mfa/verify', { token: await t.token('bob'), body: { code } });
    expect(again.status).toBe(401);
    expect((await t.call('GET', '/api/v1/auth/mfa', { token: await t.token('bob') })).body.recoveryCodesLeft).toBe(9);
  });

  it('throttles failed codes per user and per address, then lets them through after the window', async () => {
    const olga = await t.token('olga');
    const secret = (await t.call('POST', '/api/v1/auth/mfa/enroll', { token: olga })).body.secret as string;
    expect((await t.call('POST', '/api/v1/auth/mfa/confirm', { token: olga, body: { code: await totpAt(secret, clock.now().getTime()) } })).status).toBe(200);
    step();
    for (let i = 0; i < 5; i++) {
      expect((await t.call('POST', '/api/v1/auth/mfa/verify', { token: olga, body: { code: '000000' } })).status).toBe(401);
    }
    const right = await totpAt(secret, clock.now().getTime());
    const limited = await t.call('POST', '/api/v1/auth/mfa/verify', { token: olga, body: { code: right } });
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe('rate_limited');
    // Failures add up per client address too: 20 from one address throttle everyone there, even
    // users below their own limit of 5 (olga's 5 + at most 4 each from four more users >= 20).
    let throttledAt: string | undefined;
    for (const who of ['alice', 'dave', 'carol', 'bob']) {
      const tok = await t.token(who);
      if (who !== 'bob') {
        const s = (await t.call('POST', '/api/v1/auth/mfa/enroll', { token: tok })).body.secret as string;
        secrets.set(who, s);
        expect((await t.call('POST', '/api/v1/auth/mfa/confirm', { token: tok, body: { code: await totpAt(s, clock.now().getTime()) } })).status).toBe(200);
      }
      for (let i = 0; i < 4 && !throttledAt; i++) {
        const r = await t.call('POST', '/api/v1/auth/mfa/verify', { token: tok, body: { code: '000000' } });
        if (r.status === 429) throttledAt = `${who}#${i + 1}`;
        else expect(r.status).toBe(401);
      }
    }
    expect(throttledAt).toBeDefined();
    clock.advance(16 * 60_000);
    expect((await t.call('POST', '/api/v1/auth/mfa/verify', { token: olga, body: { code: await totpAt(secret, clock.now().getTime()) } })).status).toBe(200);
  });

  it('an admin reset removes MFA (audited); only admins may reset', async () => {
    const denied = await t.call('POST', '/api/v1/users/bob/mfa/reset', { token: await t.token('alice'), body: { reason: 'lost phone' } });
    expect(denied.status).toBe(403);
    const r = await t.call('POST', '/api/v1/users/bob/mfa/reset', { token: t.adminToken, body: { reason: 'lost phone' } });
    expect(r.status).toBe(200);
    expect(r.body.reset).toBe(true);
    expect((await t.call('GET', '/api/v1/auth/mfa', { token: await t.token('bob') })).body).toEqual({ enrolled: false, pendingConfirmation: false, recoveryCodesLeft: 0 });
    const resets = await t.audit('mfa.reset');
    expect(resets).toEqual([{ actor: 'admin', data: { user: 'bob', hadMfa: true, reason: 'lost phone' } }]);
  });

  it('audits enrolment, checks and failures, and never records a secret or code', async () => {
    expect((await t.audit('mfa.enrolled')).map((e) => e.actor)).toEqual(['bob', 'olga', 'alice', 'dave', 'carol']);
    expect((await t.audit('mfa.verified')).map((e) => e.data.method)).toContain('recovery_code');
    expect((await t.audit('mfa.failed')).length).toBeGreaterThanOrEqual(8);
    expect((await t.audit('mfa.challenged')).map((e) => [e.actor, e.data.route])).toContainEqual(['bob', '/api/v1/requests/:id/approve']);
    const all = await t.h.deps.store.db.selectFrom('audit_events').select('data').execute();
    const text = all.map((r) => r.data).join('\n');
    expect(text).not.toContain(bobSecret);
    for (const c of recovery) expect(text).not.toContain(c);
    const stored = await t.h.deps.store.db.selectFrom('mfa_recovery_codes').select('code_hash').execute();
    for (const s of stored) expect(recovery).not.toContain(s.code_hash);
  });

  it('policy mfa.request: a request is refused without a fresh code and accepted with one; other rules are unaffected', async () => {
    step();
    const secret = secrets.get('alice')!;
    const alice = await t.token('alice');
    const body = { resource: 'app-db', role: 'read', reason: 'look at INC-21' };
    const bare = await t.call('POST', '/api/v1/requests', { token: alice, body });
    expect(bare.status).toBe(401);
    expect(bare.body.error).toMatchObject({ code: 'mfa_required', details: { freshnessSeconds: 300 } });
    expect((await t.call('GET', '/api/v1/requests', { token: alice })).body.requests.filter((r: { role: string }) => r.role === 'read')).toEqual([]);
    expect((await t.audit('mfa.challenged')).at(-1)).toMatchObject({ actor: 'alice', data: { method: 'POST', route: '/api/v1/requests' } });

    const wrong = await t.call('POST', '/api/v1/requests', { token: alice, body, headers: { 'x-hallpass-mfa': '000000' } });
    expect(wrong.status).toBe(401);
    const ok = await t.call('POST', '/api/v1/requests', { token: alice, body, headers: { 'x-hallpass-mfa': await totpAt(secret, clock.now().getTime()) } });
    expect(ok.status).toBe(201);
    expect(ok.body.request.status).toBe('approved');
    // The token is stamped: fresh for the window, then asked again.
    expect((await t.call('POST', '/api/v1/requests', { token: alice, body })).status).toBe(201);
    clock.advance(5 * 60_000 + 1000);
    expect((await t.call('POST', '/api/v1/requests', { token: alice, body })).body.error.code).toBe('mfa_required');
    // Write access has no mfa.request: requested without any code.
    expect((await t.call('POST', '/api/v1/requests', { token: await t.token('dave'), body: { ...body, role: 'write' } })).status).toBe(201);
  });

  it('an admin enrolled in MFA reveals sealed audit text only with a fresh code; the reveal is audited', async () => {
    step();
    // The bootstrap admin token is no sign-in: it cannot enrol (see above); the admin signs in.
    expect((await t.call('POST', '/api/v1/auth/mfa/enroll', { token: t.adminToken })).status).toBe(403);
    const admin = await t.token('admin');
    const secret = (await t.call('POST', '/api/v1/auth/mfa/enroll', { token: admin })).body.secret as string;
    const confirmed = await t.call('POST', '/api/v1/auth/mfa/confirm', { token: admin, body: { code: await totpAt(secret, clock.now().getTime()) } });
    expect(confirmed.status, JSON.stringify(confirmed.body)).toBe(200);
    step();
    const first = await t.h.deps.store.db.selectFrom('audit_events').select('seq').where('type', '=', 'mfa.enrolled').orderBy('seq').executeTakeFirstOrThrow();
    const path = `/api/v1/audit/${first.seq}/reveal`;
    const bare = await t.call('POST', path, { token: admin, body: { reason: 'INC-9' } });
    expect(bare.status, JSON.stringify(bare.body)).toBe(401);
    expect(bare.body.error).toMatchObject({ code: 'mfa_required', details: { freshnessSeconds: 300 } });
    for (const reason of ['   ', 'ok\u202egnp.exe']) {
      step(); // a code passes once
      expect((await t.call('POST', path, { token: admin, body: { reason }, headers: { 'x-hallpass-mfa': await totpAt(secret, clock.now().getTime()) } })).status).toBe(400);
    }
    step();
    const ok = await t.call('POST', path, { token: admin, body: { reason: 'INC-9' }, headers: { 'x-hallpass-mfa': await totpAt(secret, clock.now().getTime()) } });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect((await t.audit('audit.revealed')).at(-1)).toMatchObject({ data: { seq: Number(first.seq), reason: 'INC-9', mfa: true } });
    expect((await t.call('POST', '/api/v1/audit/99999999999999999/reveal', { token: admin, body: { reason: 'x' } })).status).toBe(400);
  });

  it('recovery-code regeneration needs a fresh step-up; the old codes stop working, each new one works once', async () => {
    // bob was reset by the admin above: enrol again, keeping the recovery codes confirm hands out.
    step();
    const bob = await t.token('bob');
    const secret = (await t.call('POST', '/api/v1/auth/mfa/enroll', { token: bob })).body.secret as string;
    const confirmed = await t.call('POST', '/api/v1/auth/mfa/confirm', { token: bob, body: { code: await totpAt(secret, clock.now().getTime()) } });
    expect(confirmed.status).toBe(200);
    const old = confirmed.body.recoveryCodes as string[];
    step();

    const regenerate = (token: string, headers: Record<string, string> = {}) => t.call('POST', '/api/v1/auth/mfa/recovery-codes', { token, headers });
    const bare = await regenerate(bob);
    expect(bare.status).toBe(401);
    expect(bare.body.error).toMatchObject({ code: 'mfa_required', details: { freshnessSeconds: 300 } });
    const wrong = await regenerate(bob, { 'x-hallpass-mfa': '000000' });
    expect(wrong.status).toBe(401);
    expect(wrong.body.recoveryCodes).toBeUndefined();

    const ok = await regenerate(bob, { 'x-hallpass-mfa': await totpAt(secret, clock.now().getTime()) });
    expect(ok.status).toBe(200);
    const fresh = ok.body.recoveryCodes as string[];
    expect(fresh).toHaveLength(10);
    expect(new Set(fresh).size).toBe(10);
    expect(fresh.filter((c) => old.includes(c))).toEqual([]);
    expect((await t.call('GET', '/api/v1/auth/mfa', { token: bob })).body.recoveryCodesLeft).toBe(10);
    expect((await t.audit('mfa.recovery_codes_regenerated')).at(-1)).toMatchObject({ actor: 'bob', data: { count: 10 } });

    // Old codes no longer pass, as a step-up or as the header; a new one passes once.
    const other = await t.token('bob');
    const verify = (code: string) => t.call('POST', '/api/v1/auth/mfa/verify', { token: other, body: { code } });
    expect((await verify(old[0]!)).body.error.message).toBe('MFA code refused: wrong or already used recovery code');
    expect((await t.call('GET', '/api/v1/me', { token: other, headers: { 'x-hallpass-mfa': old[1]! } })).status).toBe(401);
    expect((await verify(fresh[0]!)).status).toBe(200);
    expect((await verify(fresh[0]!)).status).toBe(401);
    expect((await t.call('GET', '/api/v1/auth/mfa', { token: bob })).body.recoveryCodesLeft).toBe(9);

    // The step-up goes stale after 5 minutes; a recovery code is a step-up too.
    clock.advance(5 * 60_000 + 1000);
    expect((await regenerate(bob)).body.error.code).toBe('mfa_required');
    const again = await regenerate(bob, { 'x-hallpass-mfa': fresh[1]! });
    expect(again.status).toBe(200);
    expect((await verify(fresh[2]!)).status).toBe(401); // replaced by this second regeneration
    expect((await verify((again.body.recoveryCodes as string[])[0]!)).status).toBe(200);
  });
});
