import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/domain/clock.js';
import { startTestHallpass, testPolicy, type TestHallpass } from '../support/hallpass.js';
import { startPgTarget, type PgTarget } from '../support/pg-target.js';

/**
 * What a review of the access lifecycle found on 2026-12-02, each against the real API and a real
 * target: a grant activated late kept its full duration past the window approved, a vote of
 * someone no longer an approver still counted, a requester no longer allowed to ask was still
 * granted, a removed user's tokens came back with the name, and an admin closed the review of
 * their own break-glass access.
 */
const EXTRA_USERS = [
  '  - { name: frank, groups: [engineers] }',
  '  - { name: gina, groups: [engineers] }',
  '  - { name: hank, groups: [engineers] }',
  '  - { name: ivan, groups: [engineers] }',
  '  - { name: sam, groups: [sre] }',
  '  - { name: tess, groups: [sre] }',
  '  - { name: root-olga, groups: [oncall], admin: true }',
  '  - { name: root-otto, groups: [sre], admin: true }',
];

describe('approval and the window approved', () => {
  let target: PgTarget;
  let t: TestHallpass;
  let clock: ManualClock;
  let base: string;
  const usePolicy = async (edit: (p: string) => string = (p) => p): Promise<void> => {
    writeFileSync(t.policyPath, edit(base));
    await t.h.policy.reload(t.h.deps);
  };
  beforeAll(async () => {
    target = await startPgTarget();
    clock = new ManualClock(Date.now());
    base = testPolicy(target).replace('  - { name: olga, groups: [oncall] }', ['  - { name: olga, groups: [oncall] }', ...EXTRA_USERS].join('\n'));
    t = await startTestHallpass({ target, clock, policy: base, schedulerTimers: false });
  });
  afterAll(async () => {
    await t?.close();
    await target?.stop();
  });
  const ask = async (user: string, body: Record<string, unknown>) =>
    t.api(await t.token(user), 'POST', '/api/v1/requests', { resource: 'app-db', reason: 'review case', ...body });
  const approve = async (user: string, id: string) => t.api(await t.token(user), 'POST', `/api/v1/requests/${id}/approve`, {});

  it('a scheduled grant activated late ends when its window does, and one whose window passed is never activated', async () => {
    const start = clock.now().getTime() + 120_000;
    const r = await ask('frank', { role: 'read', duration: '30m', startAt: new Date(start).toISOString() });
    expect(r.body.grant.status).toBe('scheduled');
    // The server was down at the start: it runs again 10 minutes after it.
    clock.advance(12 * 60_000);
    await t.h.scheduler.tick();
    const g = (await t.api(await t.token('frank'), 'GET', `/api/v1/grants/${r.body.grant.id}`)).body;
    expect(g.status).toBe('active');
    // It was a full 30 minutes from the activation.
    expect(new Date(g.expiresAt).getTime()).toBe(start + 30 * 60_000);

    const late = clock.now().getTime() + 60_000;
    const r2 = await ask('dave', { role: 'read', duration: '5m', startAt: new Date(late).toISOString() });
    expect(r2.body.grant.status).toBe('scheduled');
    clock.advance(3 * 3_600_000);
    await t.h.scheduler.tick();
    const g2 = (await t.api(await t.token('dave'), 'GET', `/api/v1/grants/${r2.body.grant.id}`)).body;
    expect(g2.status).not.toBe('active');
    expect((await t.api(await t.token('dave'), 'GET', `/api/v1/grants/${r2.body.grant.id}/credentials`)).status).not.toBe(200);
  });

  it('a request approved after its requested start ends when the window approved does', async () => {
    const start = clock.now().getTime() + 60_000;
    const r = await ask('gina', { role: 'write', duration: '30m', startAt: new Date(start).toISOString() });
    expect(r.body.request.status).toBe('pending');
    clock.advance(9 * 60_000);
    const a = await approve('bob', r.body.request.id);
    expect(a.status).toBe(200);
    expect(new Date(a.body.grant.expiresAt).getTime()).toBe(start + 30 * 60_000);
  });

  it('a request whose whole window has passed is not approved (it was, for a grant that ended before it started)', async () => {
    const start = clock.now().getTime() + 60_000;
    const r = await ask('frank', { role: 'write', duration: '5m', startAt: new Date(start).toISOString() });
    expect(r.body.request.status).toBe('pending');
    clock.advance(8 * 60_000);
    const a = await approve('bob', r.body.request.id);
    expect(a.status).toBe(409);
    expect(a.body.error.message).toMatch(/has passed: ask again/);
  });

  it('only the votes of people who may still approve count', async () => {
    const r = await ask('gina', { role: 'owner', ticket: 'OPS-1' });
    const id = r.body.request.id as string;
    expect((await approve('sam', id)).status).toBe(200);
    // sam leaves sre: his vote no longer counts, so tess's is the first of two.
    await usePolicy((p) => p.replace('{ name: sam, groups: [sre] }', '{ name: sam, groups: [engineers] }'));
    try {
      const a = await approve('tess', id);
      expect(a.status).toBe(200);
      expect(a.body.request.status).toBe('pending');
      expect(a.body.grant ?? null).toBeNull();
      const b = await approve('bob', id);
      expect(b.body.request.status).toBe('approved');
    } finally {
      await usePolicy();
    }
  });

  it('a request whose rule was renamed since is still approved: some rule for the requester offers the role', async () => {
    const r = await ask('hank', { role: 'write' });
    await usePolicy((p) => p.replace('name: engineers-write', 'name: engineers-write-v2'));
    try {
      expect((await approve('bob', r.body.request.id)).body.request.status).toBe('approved');
    } finally {
      await usePolicy();
    }
    await t.api(await t.token('hank'), 'POST', `/api/v1/grants/${(await t.api(t.adminToken, 'GET', `/api/v1/requests/${r.body.request.id}`)).body.grantId}/revoke`, { reason: 'done' });
  });

  it('a requester moved out of the rule\'s groups since asking is not granted', async () => {
    const r = await ask('hank', { role: 'write' });
    await usePolicy((p) => p.replace('{ name: hank, groups: [engineers] }', '{ name: hank, groups: [oncall] }'));
    try {
      const a = await approve('bob', r.body.request.id);
      expect(a.status).toBe(409);
      expect(a.body.error.message).toMatch(/may no longer ask for write on app-db/);
      expect((await t.api(t.adminToken, 'GET', `/api/v1/requests/${r.body.request.id}`)).body.status).toBe('pending');
    } finally {
      await usePolicy();
    }
  });

  it('a user removed from the policy loses their tokens for good: adding the name back brings none back', async () => {
    const token = await t.token('ivan');
    expect((await t.api(token, 'GET', '/api/v1/me')).status).toBe(200);
    const ivan = (await t.principal('ivan')).id;
    await t.h.deps.store.db.insertInto('mfa_totp').values({ user_id: ivan, secret_enc: t.h.deps.sealer.seal('JBSWY3DPEHPK3PXP', `totp:${ivan}`), created_at: 0, confirmed_at: 0, last_step: null }).execute();
    await usePolicy((p) => p.replace('  - { name: ivan, groups: [engineers] }\n', ''));
    expect((await t.api(token, 'GET', '/api/v1/me')).status).toBe(401);
    await usePolicy();
    expect((await t.api(token, 'GET', '/api/v1/me')).status).toBe(401);
    // Nor their second factor: the name's next holder enrols their own (fourth review).
    expect(await t.h.deps.store.db.selectFrom('mfa_totp').select('user_id').where('user_id', '=', ivan).execute()).toEqual([]);
  });

  it('an admin does not close the review of their own break-glass access; another admin does', async () => {
    const r = await ask('root-olga', { role: 'owner', breakGlass: true, duration: '15m' });
    expect(r.status).toBe(201);
    const reviews = (await t.api(t.adminToken, 'GET', '/api/v1/reviews')).body.reviews as Array<{ id: string; requestId: string }>;
    const review = reviews.find((x) => x.requestId === r.body.request.id)!;
    const own = await t.api(await t.token('root-olga'), 'POST', `/api/v1/reviews/${review.id}/close`, { note: 'all fine' });
    expect(own.status).toBe(403);
    const refused = (await t.api(t.adminToken, 'GET', `/api/v1/audit?type=review.close_refused`)).body.events;
    expect(refused.map((e: { actor: string }) => e.actor)).toEqual(['root-olga']);
    expect((await t.api(await t.token('root-otto'), 'POST', `/api/v1/reviews/${review.id}/close`, { note: 'checked' })).status).toBe(200);
  });
});
