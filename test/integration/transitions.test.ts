import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/domain/clock.js';
import { startPgTarget, type PgTarget } from '../support/pg-target.js';
import { startTestHallpass, testPolicy, type TestHallpass } from '../support/hallpass.js';

/**
 * Every request status x {approve, deny, cancel} and every reachable grant status x
 * {revoke, extend, credentials}, through the HTTP API against a real scram-sha-256 PostgreSQL
 * target, with a manual clock. A legal move answers with its success status; an illegal one
 * answers 409 and leaves the store (requests, approvals, grants, reviews), the audit log and the
 * target's roles exactly as they were.
 */
describe('request and grant transitions through the API (manual clock, real PostgreSQL target)', () => {
  let target: PgTarget;
  let t: TestHallpass;
  let clock: ManualClock;
  const USERS = Array.from({ length: 16 }, (_, i) => `u${i}`);
  let next = 0;
  /** A fresh engineer for each fixture: one user may hold one pending request / live grant per role. */
  const fresh = () => USERS[next++]!;

  beforeAll(async () => {
    target = await startPgTarget();
    clock = new ManualClock(Date.now());
    const policy = testPolicy(target).replace(
      '  - { name: olga, groups: [oncall] }',
      ['  - { name: olga, groups: [oncall] }', ...USERS.map((u) => `  - { name: ${u}, groups: [engineers] }`)].join('\n'),
    );
    t = await startTestHallpass({ target, clock, policy, schedulerTimers: false });
  });
  afterAll(async () => {
    await t?.close();
    await target?.stop();
  });

  const tok = (user: string) => t.token(user);
  const request = async (user: string, body: Record<string, unknown>) => {
    const r = await t.api(await tok(user), 'POST', '/api/v1/requests', { resource: 'app-db', reason: 'transition test', ...body });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    return r.body;
  };
  const requestStatus = async (id: string) => (await t.h.deps.store.db.selectFrom('requests').select('status').where('id', '=', id).executeTakeFirstOrThrow()).status;
  const grantStatus = async (id: string) => (await t.h.deps.store.db.selectFrom('grants').select('status').where('id', '=', id).executeTakeFirstOrThrow()).status;

  /** Everything an illegal move must leave alone. */
  const snapshot = async (opts: { targetUp?: boolean } = {}) => {
    const db = t.h.deps.store.db;
    const roles = opts.targetUp === false ? null : await (async () => {
      const c = await target.admin();
      try {
        return (await c.query("select rolname, rolvaliduntil from pg_roles where rolname like 'hp\\_%' order by rolname")).rows;
      } finally {
        await c.end();
      }
    })();
    return {
      requests: await db.selectFrom('requests').selectAll().orderBy('id').execute(),
      approvals: await db.selectFrom('approvals').selectAll().orderBy('request_id').orderBy('approver_id').execute(),
      grants: await db.selectFrom('grants').selectAll().orderBy('id').execute(),
      reviews: await db.selectFrom('reviews').selectAll().orderBy('id').execute(),
      audit: await db.selectFrom('audit_events').select(['seq', 'type']).orderBy('seq').execute(),
      roles,
    };
  };
  const auditTypesAfter = async (seq: number, filter: { requestId?: string; grantId?: string }) => {
    let q = t.h.deps.store.db.selectFrom('audit_events').select(['type']).where('seq', '>', seq);
    if (filter.requestId) q = q.where('request_id', '=', filter.requestId);
    if (filter.grantId) q = q.where('grant_id', '=', filter.grantId);
    return (await q.orderBy('seq').execute()).map((e) => e.type);
  };
  const lastSeq = async () => Number((await t.h.deps.store.db.selectFrom('audit_events').select((e) => e.fn.max('seq').as('m')).executeTakeFirst())?.m ?? 0);

  type RequestAction = 'approve' | 'deny' | 'cancel';
  /** approve/deny by bob (an eligible sre approver), cancel by the requester. */
  const actOnRequest = async (action: RequestAction, id: string, requester: string) => {
    if (action === 'cancel') return t.api(await tok(requester), 'POST', `/api/v1/requests/${id}/cancel`);
    return t.api(await tok('bob'), 'POST', `/api/v1/requests/${id}/${action}`, action === 'deny' ? { reason: 'no' } : {});
  };

  it('request: pending -> approved | denied | cancelled are legal; every move out of approved, denied, cancelled, expired is a 409 that changes nothing', async () => {
    // expired first: the TTL is 10m and advancing the clock must not expire the other fixtures
    const expiredBy = fresh();
    const expired = (await request(expiredBy, { role: 'write' })).request.id as string;
    clock.advance(10 * 60_000 + 1000);
    expect((await t.h.scheduler.tick()).pendingExpired).toBe(1);
    expect(await requestStatus(expired)).toBe('expired');

    const legal: { action: RequestAction; status: number; to: string; audited: string }[] = [
      { action: 'approve', status: 200, to: 'approved', audited: 'request.approved' },
      { action: 'deny', status: 200, to: 'denied', audited: 'request.denied' },
      { action: 'cancel', status: 200, to: 'cancelled', audited: 'request.cancelled' },
    ];
    const inState: Record<string, { id: string; requester: string }> = { expired: { id: expired, requester: expiredBy } };
    for (const move of legal) {
      const requester = fresh();
      const created = await request(requester, { role: 'write' });
      expect(created.request.status).toBe('pending');
      const id = created.request.id as string;
      const seq = await lastSeq();
      const res = await actOnRequest(move.action, id, requester);
      expect(res.status, `${move.action} a pending request: ${JSON.stringify(res.body)}`).toBe(move.status);
      expect(await requestStatus(id)).toBe(move.to);
      expect(await auditTypesAfter(seq, { requestId: id })).toContain(move.audited);
      inState[move.to] = { id, requester };
    }
    // the approved one really provisioned a grant
    const approvedGrant = (await t.h.deps.store.db.selectFrom('requests').select('grant_id').where('id', '=', inState.approved!.id).executeTakeFirstOrThrow()).grant_id;
    expect(approvedGrant && (await grantStatus(approvedGrant))).toBe('active');

    for (const status of ['approved', 'denied', 'cancelled', 'expired']) {
      const { id, requester } = inState[status]!;
      for (const action of ['approve', 'deny', 'cancel'] as const) {
        await tok(requester);
        const before = await snapshot();
        const res = await actOnRequest(action, id, requester);
        expect(res.status, `${action} a ${status} request: ${JSON.stringify(res.body)}`).toBe(409);
        expect(res.body.error.code).toBe('conflict');
        expect(await snapshot(), `${action} a ${status} request changed state`).toEqual(before);
        expect(await requestStatus(id)).toBe(status);
      }
    }
  });

  type GrantAction = 'revoke' | 'extend' | 'credentials';
  const actOnGrant = async (action: GrantAction, id: string, holder: string) => {
    const token = await tok(holder);
    if (action === 'credentials') return t.api(token, 'GET', `/api/v1/grants/${id}/credentials`);
    if (action === 'extend') return t.api(token, 'POST', `/api/v1/grants/${id}/extend`, { by: '5m', reason: 'more time' });
    return t.api(token, 'POST', `/api/v1/grants/${id}/revoke`, { reason: 'done' });
  };
  const readGrant = async (holder: string, opts: { startAt?: string } = {}) => {
    const out = await request(holder, { role: 'read', duration: '5m', ...(opts.startAt ? { startAt: opts.startAt } : {}) });
    return { id: out.grant.id as string, principal: out.grant.principal as string, holder };
  };
  /** Illegal moves: 409 and nothing changed (the target too, unless it is down). */
  const expectAllRefused = async (g: { id: string; holder: string }, status: string, actions: readonly GrantAction[], targetUp = true) => {
    for (const action of actions) {
      await tok(g.holder);
      const before = await snapshot({ targetUp });
      const res = await actOnGrant(action, g.id, g.holder);
      expect(res.status, `${action} a ${status} grant: ${JSON.stringify(res.body)}`).toBe(409);
      expect(res.body.error.code).toBe('conflict');
      expect(await snapshot({ targetUp }), `${action} a ${status} grant changed state`).toEqual(before);
      expect(await grantStatus(g.id)).toBe(status);
    }
  };
  const roleValidUntil = async (principal: string) => {
    const c = await target.admin();
    try {
      return (await c.query<{ v: Date }>('select rolvaliduntil as v from pg_roles where rolname = $1', [principal])).rows[0]?.v ?? null;
    } finally {
      await c.end();
    }
  };

  it('grant: active allows revoke, extend, credentials; scheduled allows only revoke', async () => {
    // active x credentials: 200, audited, nothing else moves
    const a = await readGrant(fresh());
    let seq = await lastSeq();
    const creds = await actOnGrant('credentials', a.id, a.holder);
    expect(creds.status).toBe(200);
    expect(creds.body.user).toBe(a.principal);
    expect(await auditTypesAfter(seq, {})).toEqual(['grant.credentials_issued']);
    expect(await grantStatus(a.id)).toBe('active');

    // active x extend: 201, auto-approved extension moves the end on the target too
    const end = (await t.h.deps.store.db.selectFrom('grants').select('expires_at').where('id', '=', a.id).executeTakeFirstOrThrow()).expires_at!;
    const ext = await actOnGrant('extend', a.id, a.holder);
    expect(ext.status, JSON.stringify(ext.body)).toBe(201);
    expect(ext.body.request.kind).toBe('extension');
    expect(new Date(ext.body.grant.expiresAt).getTime()).toBe(end + 5 * 60_000);
    expect(Math.abs((await roleValidUntil(a.principal))!.getTime() - (end + 5 * 60_000))).toBeLessThan(1000);
    expect(await grantStatus(a.id)).toBe('active');

    // active x revoke: 200, revoked, role gone
    seq = await lastSeq();
    const rev = await actOnGrant('revoke', a.id, a.holder);
    expect(rev.status).toBe(200);
    expect(await grantStatus(a.id)).toBe('revoked');
    expect(await roleValidUntil(a.principal)).toBeNull();
    expect(await auditTypesAfter(seq, { grantId: a.id })).toEqual(['grant.revoking', 'grant.revoked']);
    // revoked x everything: 409
    await expectAllRefused(a, 'revoked', ['revoke', 'extend', 'credentials']);

    // scheduled x extend, credentials: 409; scheduled x revoke: 200 -> revoked, nothing ever on the target
    const s = await readGrant(fresh(), { startAt: new Date(clock.now().getTime() + 10 * 60_000).toISOString() });
    expect(await grantStatus(s.id)).toBe('scheduled');
    await expectAllRefused(s, 'scheduled', ['extend', 'credentials']);
    const revS = await actOnGrant('revoke', s.id, s.holder);
    expect(revS.status).toBe(200);
    expect(await grantStatus(s.id)).toBe('revoked');
    expect(await roleValidUntil(s.principal)).toBeNull();
    // the start passing does not bring it back
    clock.advance(10 * 60_000 + 1000);
    await t.h.scheduler.tick();
    expect(await grantStatus(s.id)).toBe('revoked');
    expect(await roleValidUntil(s.principal)).toBeNull();
  });

  it('grant: expired refuses revoke, extend, credentials', async () => {
    const e = await readGrant(fresh());
    clock.advance(5 * 60_000 + 1);
    await t.h.scheduler.tick();
    expect(await grantStatus(e.id)).toBe('expired');
    expect(await roleValidUntil(e.principal)).toBeNull();
    await expectAllRefused(e, 'expired', ['revoke', 'extend', 'credentials']);
  });

  it('grant: revoking and revoke_failed (target down) refuse revoke, extend, credentials', async () => {
    const f = await readGrant(fresh());
    await target.pause();
    try {
      clock.advance(5 * 60_000 + 1);
      await t.h.scheduler.tick();
      expect(await grantStatus(f.id)).toBe('revoking');
      await expectAllRefused(f, 'revoking', ['revoke', 'extend', 'credentials'], false);
      for (let i = 0; i < 2; i++) {
        clock.advance(70_000);
        await t.h.scheduler.tick();
      }
      expect(await grantStatus(f.id)).toBe('revoke_failed');
      await expectAllRefused(f, 'revoke_failed', ['revoke', 'extend', 'credentials'], false);
    } finally {
      await target.resume();
    }
    clock.advance(70_000);
    await t.h.scheduler.tick();
    expect(await grantStatus(f.id)).toBe('expired');
    expect(await roleValidUntil(f.principal)).toBeNull();
  });
});
