import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createRequest } from '../../src/access/requests.js';
import { ManualClock } from '../../src/domain/clock.js';
import { ProviderError } from '../../src/providers/provider.js';
import { getGrant } from '../../src/store/grants.js';
import { queryEvents, verifyChain } from '../../src/audit/index.js';
import { startPgTarget, type PgTarget } from '../support/pg-target.js';
import { startTestHallpass, testPolicy, type TestHallpass } from '../support/hallpass.js';
import { metricValue } from '../support/metrics.js';
import { managedRoles, roleExists, tryConnect } from '../support/target-checks.js';

/**
 * The request -> approval -> grant -> expiry/revocation lifecycle against a real PostgreSQL
 * target that demands scram-sha-256, with a manual clock: due work runs when the test ticks.
 */
describe('access lifecycle (manual clock, real PostgreSQL target)', () => {
  let target: PgTarget;
  let t: TestHallpass;
  let clock: ManualClock;

  beforeAll(async () => {
    target = await startPgTarget();
    const admin = await target.admin();
    await admin.query('create table orders (id int primary key, total numeric)');
    await admin.query('insert into orders values (1, 10), (2, 20)');
    await admin.end();
  });
  afterAll(async () => {
    await target?.stop();
  });

  const start = async (policy?: string) => {
    clock = new ManualClock(Date.now());
    t = await startTestHallpass({ target, clock, schedulerTimers: false, ...(policy ? { policy } : {}) });
  };
  afterEach(async () => {
    await t?.close();
  });

  const request = async (user: string, body: Record<string, unknown>) =>
    t.api(await t.token(user), 'POST', '/api/v1/requests', { resource: 'app-db', reason: 'lifecycle test', ...body });
  const events = async (filters: { type?: string; requestId?: string; grantId?: string }) =>
    queryEvents(t.h.deps.store.db, { ...filters, limit: 1000 });
  const scrape = () => fetch(`${t.h.url}/metrics`).then((r) => r.text());

  it('refuses self-approval, audits the attempt, and changes nothing', async () => {
    await start();
    const r = await request('alice', { role: 'write', duration: '30m' });
    expect(r.status).toBe(201);
    expect(r.body.request.status).toBe('pending');
    const id = r.body.request.id;
    // carol is in sre AND engineers: she may approve others' requests, never her own
    const own = await request('carol', { role: 'write', duration: '30m' });
    const self = await t.api(await t.token('carol'), 'POST', `/api/v1/requests/${own.body.request.id}/approve`, {});
    expect(self.status).toBe(403);
    expect(self.body.error.code).toBe('self_approval');
    const selfAlice = await t.api(await t.token('alice'), 'POST', `/api/v1/requests/${id}/approve`, {});
    expect(selfAlice.status).toBe(403);
    const after = await t.api(await t.token('alice'), 'GET', `/api/v1/requests/${id}`);
    expect(after.body.status).toBe('pending');
    expect(after.body.approvals).toEqual([]);
    expect((await events({ type: 'request.approve_refused' })).length).toBe(2);
    // a non-approver (dave, engineers only) is refused too
    const dave = await t.api(await t.token('dave'), 'POST', `/api/v1/requests/${id}/approve`, {});
    expect(dave.status).toBe(403);
    expect(dave.body.error.code).toBe('forbidden');
  });

  it('needs two distinct approvers for a threshold of two; a double approval counts once', async () => {
    await start();
    const r = await request('alice', { role: 'owner', duration: '30m', ticket: 'OPS-42' });
    expect(r.body.request.status).toBe('pending');
    const id = r.body.request.id;
    const first = await t.api(await t.token('bob'), 'POST', `/api/v1/requests/${id}/approve`, { comment: 'ok' });
    expect(first.status).toBe(200);
    expect(first.body.request.status).toBe('pending');
    const again = await t.api(await t.token('bob'), 'POST', `/api/v1/requests/${id}/approve`, {});
    expect(again.status).toBe(409);
    const mid = await t.api(await t.token('alice'), 'GET', `/api/v1/requests/${id}`);
    expect(mid.body.approvals).toHaveLength(1);
    expect(mid.body.status).toBe('pending');
    const second = await t.api(await t.token('carol'), 'POST', `/api/v1/requests/${id}/approve`, {});
    expect(second.status).toBe(200);
    expect(second.body.request.status).toBe('approved');
    expect(second.body.grant.status).toBe('active');
    expect(await roleExists(target, second.body.grant.principal)).toBe(true);
  });

  it('counts concurrent double approvals once (race-safe recordApprovalOnce)', async () => {
    await start();
    const r = await request('alice', { role: 'owner', duration: '30m', ticket: 'OPS-43' });
    const id = r.body.request.id;
    const bob = await t.token('bob');
    const results = await Promise.all(Array.from({ length: 5 }, () => t.api(bob, 'POST', `/api/v1/requests/${id}/approve`, {})));
    expect(results.filter((x) => x.status === 200)).toHaveLength(1);
    expect(results.filter((x) => x.status === 409)).toHaveLength(4);
    const after = await t.api(bob, 'GET', `/api/v1/requests/${id}`);
    expect(after.body.status).toBe('pending');
    expect(after.body.approvals).toHaveLength(1);
  });

  it('treats two accounts with one email as one person: no self-approval, no second vote', async () => {
    // alice-sso and bob-sso stand for SSO accounts named by the emails of local users alice and bob
    await start(testPolicy(target).replace('users:\n', `users:
  - { name: alice-sso, email: ALICE@example.com, groups: [sre] }
  - { name: bob-sso, email: bob@example.com, groups: [sre] }
`).replace('{ name: alice, groups: [engineers] }', '{ name: alice, email: alice@example.com, groups: [engineers] }')
      .replace('{ name: bob, groups: [sre] }', '{ name: bob, email: bob@example.com, groups: [sre] }'));
    const r = await request('alice', { role: 'owner', duration: '30m', ticket: 'OPS-44' });
    const id = r.body.request.id;
    const self = await t.api(await t.token('alice-sso'), 'POST', `/api/v1/requests/${id}/approve`, {});
    expect(self.status).toBe(403);
    expect(self.body.error.code).toBe('self_approval');
    expect((await t.api(await t.token('bob'), 'POST', `/api/v1/requests/${id}/approve`, {})).status).toBe(200);
    const twice = await t.api(await t.token('bob-sso'), 'POST', `/api/v1/requests/${id}/approve`, {});
    expect(twice.status).toBe(409);
    expect(twice.body.error.message).toMatch(/already approved .* under another account/);
    const after = await t.api(await t.token('alice'), 'GET', `/api/v1/requests/${id}`);
    expect(after.body.status).toBe('pending');
    expect(after.body.approvals).toHaveLength(1);
    // a different person still completes it
    expect((await t.api(await t.token('carol'), 'POST', `/api/v1/requests/${id}/approve`, {})).body.request.status).toBe('approved');
  });

  it('one person under an internationalised domain in either spelling: no self-approval (review 2026-12-02: the xn-- form approved)', async () => {
    await start(testPolicy(target).replace('users:\n', `users:
  - { name: alice-sso, email: alice@xn--bcher-kva.example, groups: [sre] }
`).replace('{ name: alice, groups: [engineers] }', '{ name: alice, email: Alice@Bücher.Example, groups: [engineers] }'));
    const r = await request('alice', { role: 'owner', duration: '30m', ticket: 'OPS-45' });
    const self = await t.api(await t.token('alice-sso'), 'POST', `/api/v1/requests/${r.body.request.id}/approve`, {});
    expect(self.status).toBe(403);
    expect(self.body.error.code).toBe('self_approval');
  });

  it('does not approve a request whose approval window has passed, even before the scheduler marks it expired', async () => {
    await start();
    const r = await request('alice', { role: 'write', duration: '30m' });
    const id = r.body.request.id;
    clock.advance(10 * 60_000 + 1000); // past the 10m pendingTtl; no scheduler tick
    const late = await t.api(await t.token('bob'), 'POST', `/api/v1/requests/${id}/approve`, {});
    expect(late.status).toBe(409);
    expect(late.body.error.message).toMatch(/lapsed at/);
    const deny = await t.api(await t.token('bob'), 'POST', `/api/v1/requests/${id}/deny`, { reason: 'too late' });
    expect(deny.status).toBe(409);
    expect((await t.api(await t.token('alice'), 'GET', `/api/v1/requests/${id}`)).body.status).toBe('pending');
    expect((await events({ requestId: id })).map((e) => e.type)).toEqual(['request.created', 'request.pending']);
    expect((await t.h.scheduler.tick()).pendingExpired).toBe(1);
  });

  it('lets an approver shorten the duration but not lengthen it', async () => {
    await start();
    const r = await request('alice', { role: 'write', duration: '30m' });
    const id = r.body.request.id;
    const longer = await t.api(await t.token('bob'), 'POST', `/api/v1/requests/${id}/approve`, { duration: '1h' });
    expect(longer.status).toBe(400);
    const ok = await t.api(await t.token('bob'), 'POST', `/api/v1/requests/${id}/approve`, { duration: '5m' });
    expect(ok.status).toBe(200);
    const g = ok.body.grant;
    const end = new Date(g.expiresAt).getTime();
    expect(end - new Date(g.startsAt).getTime()).toBe(5 * 60_000);
    // the target enforces the shortened end, not the requested 30 minutes
    const admin = await target.admin();
    const role = await admin.query<{ v: Date | null }>('select rolvaliduntil as v from pg_roles where rolname = $1', [g.principal]);
    await admin.end();
    expect(role.rows).toHaveLength(1);
    expect(Math.abs(role.rows[0]!.v!.getTime() - end)).toBeLessThan(1000);
  });

  it('expires a pending request after its TTL; deciding it afterwards is a 409 that changes nothing', async () => {
    await start(undefined);
    const r = await request('alice', { role: 'write', duration: '30m' });
    const id = r.body.request.id;
    clock.advance(10 * 60_000 - 1000);
    await t.h.scheduler.tick();
    expect((await t.api(await t.token('alice'), 'GET', `/api/v1/requests/${id}`)).body.status).toBe('pending');
    clock.advance(2000);
    const tick = await t.h.scheduler.tick();
    expect(tick.pendingExpired).toBe(1);
    expect((await t.api(await t.token('alice'), 'GET', `/api/v1/requests/${id}`)).body.status).toBe('expired');
    const late = await t.api(await t.token('bob'), 'POST', `/api/v1/requests/${id}/approve`, {});
    expect(late.status).toBe(409);
    expect((await events({ requestId: id })).map((e) => e.type)).toEqual(['request.created', 'request.pending', 'request.expired']);
  });

  it('answers illegal transitions with 409 and leaves state alone', async () => {
    await start();
    const alice = await t.token('alice');
    const bob = await t.token('bob');
    const pending = (await request('alice', { role: 'write' })).body.request.id;
    expect((await t.api(bob, 'POST', `/api/v1/requests/${pending}/deny`, { reason: 'not now' })).status).toBe(200);
    for (const [who, action, body] of [[bob, 'approve', {}], [bob, 'deny', { reason: 'x' }], [alice, 'cancel', undefined]] as const) {
      const res = await t.api(who, 'POST', `/api/v1/requests/${pending}/${action}`, body);
      expect(res.status, `${action} a denied request`).toBe(409);
    }
    const cancelled = (await request('alice', { role: 'write' })).body.request.id;
    expect((await t.api(alice, 'POST', `/api/v1/requests/${cancelled}/cancel`)).status).toBe(200);
    expect((await t.api(bob, 'POST', `/api/v1/requests/${cancelled}/approve`, {})).status).toBe(409);
    const approved = await request('alice', { role: 'read', duration: '5m' });
    expect(approved.body.request.status).toBe('approved');
    expect((await t.api(alice, 'POST', `/api/v1/requests/${approved.body.request.id}/cancel`)).status).toBe(409);
    const gid = approved.body.grant.id;
    expect((await t.api(alice, 'POST', `/api/v1/grants/${gid}/revoke`, { reason: 'done' })).status).toBe(200);
    const twice = await t.api(alice, 'POST', `/api/v1/grants/${gid}/revoke`, { reason: 'again' });
    expect(twice.status).toBe(409);
    expect((await t.api(alice, 'POST', `/api/v1/grants/${gid}/extend`, { by: '5m', reason: 'more' })).status).toBe(409);
    expect((await t.api(alice, 'GET', `/api/v1/grants/${gid}/credentials`)).status).toBe(409);
    expect((await t.api(alice, 'GET', `/api/v1/requests/${pending}`)).body.status).toBe('denied');
    expect((await t.api(alice, 'GET', `/api/v1/grants/${gid}`)).body.status).toBe('revoked');
  });

  it('treats a request for a role already held as an extension that moves VALID UNTIL', async () => {
    await start();
    const first = await request('alice', { role: 'read', duration: '5m' });
    const g = first.body.grant;
    const again = await request('alice', { role: 'read', duration: '10m', reason: 'need more time' });
    expect(again.status).toBe(201);
    expect(again.body.request.kind).toBe('extension');
    expect(again.body.request.extendsGrantId).toBe(g.id);
    expect(again.body.grant.id).toBe(g.id);
    const newEnd = new Date(again.body.grant.expiresAt).getTime();
    expect(newEnd - new Date(g.expiresAt).getTime()).toBe(10 * 60_000);
    const admin = await target.admin();
    const r = await admin.query<{ v: Date }>('select rolvaliduntil as v from pg_roles where rolname = $1', [g.principal]);
    await admin.end();
    expect(Math.abs(r.rows[0]!.v.getTime() - newEnd)).toBeLessThan(1000);
    // the old end passes: nothing happens; the new end passes: access goes
    clock.advance(6 * 60_000);
    await t.h.scheduler.tick();
    expect(await roleExists(target, g.principal)).toBe(true);
    clock.advance(10 * 60_000);
    await t.h.scheduler.tick();
    expect(await roleExists(target, g.principal)).toBe(false);
    expect((await t.api(await t.token('alice'), 'GET', `/api/v1/grants/${g.id}`)).body.status).toBe('expired');
  });

  it('regression: extensions cannot keep a grant past the rule max; the grant\'s whole window is judged', async () => {
    await start();
    const alice = await t.token('alice');
    // engineers-read: auto, max 1h
    const first = await request('alice', { role: 'read', duration: '30m' });
    const gid = first.body.grant.id as string;
    const ok = await t.api(alice, 'POST', `/api/v1/grants/${gid}/extend`, { by: '20m', reason: 'more' });
    expect(ok.status).toBe(201);
    expect(ok.body.request.status).toBe('approved');
    const end = ok.body.grant.expiresAt as string;
    clock.advance(10 * 60_000);
    const over = await t.api(alice, 'POST', `/api/v1/grants/${gid}/extend`, { by: '20m', reason: 'more again' });
    expect(over.status).toBe(403);
    expect(over.body.error.code).toBe('policy_denied');
    expect(over.body.error.message).toMatch(/extending a 50m grant by 20m would make it 1h10m long, more than the 1h max of rule engineers-read/);
    // The same through POST /requests (a request for a held role is an extension).
    const viaRequest = await request('alice', { role: 'read', duration: '1h' });
    expect(viaRequest.status).toBe(403);
    expect(viaRequest.body.error.message).toMatch(/would make it 1h50m long/);
    const g = await t.api(alice, 'GET', `/api/v1/grants/${gid}`);
    expect(g.body.expiresAt).toBe(end);
    expect(Date.parse(g.body.expiresAt) - Date.parse(g.body.startsAt)).toBe(50 * 60_000);
    const exact = await t.api(alice, 'POST', `/api/v1/grants/${gid}/extend`, { by: '10m', reason: 'up to the max' });
    expect(exact.status).toBe(201);
    expect(Date.parse(exact.body.grant.expiresAt) - Date.parse(exact.body.grant.startsAt)).toBe(3600_000);
  });

  // Regression: a request for a role whose grant was still scheduled became an approved
  // "extension" that could never be applied.
  it('refuses to extend a grant that has not started yet (409) and records nothing', async () => {
    await start();
    const startAt = new Date(clock.now().getTime() + 10 * 60_000).toISOString();
    const first = await request('alice', { role: 'read', duration: '5m', startAt });
    expect(first.body.grant.status).toBe('scheduled');
    const again = await request('alice', { role: 'read', duration: '5m' });
    expect(again.status).toBe(409);
    expect(again.body.error.details.grantId).toBe(first.body.grant.id);
    expect(await t.h.deps.store.db.selectFrom('requests').select('id').execute()).toHaveLength(1);
  });

  it('revokes early: the role is gone and an open connection is terminated', async () => {
    await start();
    const alice = await t.token('alice');
    const r = await request('alice', { role: 'read', duration: '30m' });
    const creds = await t.api(alice, 'GET', `/api/v1/grants/${r.body.grant.id}/credentials`);
    const conn = await tryConnect(creds.body.dsn);
    if (!('client' in conn)) throw conn.error;
    expect((await conn.client.query('select count(*)::int as n from orders')).rows[0].n).toBe(2);
    const revoked = await t.api(alice, 'POST', `/api/v1/grants/${r.body.grant.id}/revoke`, { reason: 'finished early' });
    expect(revoked.status).toBe(200);
    expect(revoked.body.status).toBe('revoked');
    await expect(conn.client.query('select 1')).rejects.toThrow();
    expect(await roleExists(target, r.body.grant.principal)).toBe(false);
    const again = await tryConnect(creds.body.dsn);
    expect('error' in again && again.error.message).toMatch(/password authentication failed|does not exist/);
    const types = (await events({ grantId: r.body.grant.id })).map((e) => e.type);
    expect(types).toEqual(['grant.created', 'grant.activating', 'grant.activated', 'grant.credentials_issued', 'grant.revoking', 'grant.revoked']);
  });

  it('a batch revoke that removes some principals and not others finishes those and retries only the rest (second review)', async () => {
    await start();
    const a1 = await request('alice', { role: 'read', duration: '5m' });
    const d1 = await request('dave', { role: 'read', duration: '5m' });
    const provider = t.h.deps.providers.get('app-db')!;
    const real = provider.revoke.bind(provider);
    let calls = 0;
    // The first batch: alice's role goes, dave's is refused (as an object of his might refuse it).
    provider.revoke = async (principals: readonly string[]) => {
      calls++;
      if (calls > 1) return real(principals);
      const stuck = principals.filter((p) => p === d1.body.grant.principal);
      await real(principals.filter((p) => !stuck.includes(p)));
      throw new ProviderError('postgres revoke: dependent objects (injected)', false, stuck);
    };
    try {
      clock.advance(5 * 60_000 + 1);
      await t.h.scheduler.tick();
      expect((await getGrant(t.h.deps.store.db, a1.body.grant.id))?.status).toBe('expired');
      const d = await getGrant(t.h.deps.store.db, d1.body.grant.id);
      expect(d?.status).toBe('revoking');
      expect(d?.revoke_attempts).toBe(1);
      expect(await roleExists(target, a1.body.grant.principal)).toBe(false);
      expect(await roleExists(target, d1.body.grant.principal)).toBe(true);
      clock.advance(70_000);
      await t.h.scheduler.tick();
      expect((await getGrant(t.h.deps.store.db, d1.body.grant.id))?.status).toBe('expired');
      expect(await roleExists(target, d1.body.grant.principal)).toBe(false);
    } finally {
      provider.revoke = real;
    }
  });

  it('keeps retrying a revocation while the target is down, flags revoke_failed with an alert, and finishes when it is back', async () => {
    await start();
    const r = await request('alice', { role: 'read', duration: '5m' });
    const gid = r.body.grant.id;
    await target.pause();
    try {
      clock.advance(5 * 60_000 + 1);
      await t.h.scheduler.tick();
      let g = await getGrant(t.h.deps.store.db, gid);
      expect(g?.status).toBe('revoking');
      expect(g?.revoke_attempts).toBe(1);
      for (let i = 0; i < 2; i++) {
        clock.advance(70_000);
        await t.h.scheduler.tick();
      }
      g = await getGrant(t.h.deps.store.db, gid);
      expect(g?.status).toBe('revoke_failed');
      expect(g?.revoke_attempts).toBe(3);
      expect(g?.last_error).toBeTruthy();
      expect(g?.last_error).not.toContain(target.adminPassword);
      expect((await events({ type: 'alert.revoke_failed', grantId: gid })).length).toBe(1);
      expect((await events({ type: 'grant.revoke_attempt_failed', grantId: gid })).length).toBe(3);
      const view = await t.api(await t.token('alice'), 'GET', `/api/v1/grants/${gid}`);
      expect(view.body.status).toBe('revoke_failed');
      // every failed attempt is counted on /metrics, for this resource
      expect(metricValue(await scrape(), 'hallpass_revocation_failures_total', 'resource="app-db"')).toBe(3);
      clock.advance(70_000);
      await t.h.scheduler.tick();
      expect((await getGrant(t.h.deps.store.db, gid))?.revoke_attempts).toBe(4);
      expect(metricValue(await scrape(), 'hallpass_revocation_failures_total', 'resource="app-db"')).toBe(4);
    } finally {
      await target.resume();
    }
    clock.advance(70_000);
    await t.h.scheduler.tick();
    const done = await getGrant(t.h.deps.store.db, gid);
    expect(done?.status).toBe('expired');
    expect(await roleExists(target, r.body.grant.principal)).toBe(false);
    expect((await verifyChain(t.h.deps.store.db)).ok).toBe(true);
    const metrics = await scrape();
    expect(metricValue(metrics, 'hallpass_expiry_lag_seconds_count')).toBe(1);
    expect(metricValue(metrics, 'hallpass_revocation_failures_total', 'resource="app-db"')).toBe(4);
    expect(metricValue(metrics, 'hallpass_active_grants')).toBe(0);
  });

  it('removes an orphan left by a crash between creating a role and recording it (reconciler)', async () => {
    await start();
    const provider = t.h.deps.providers.get('app-db')!;
    // The "crash": a principal exists on the target with no grant recorded for it.
    const orphan = 'hp_crashorphan00000000001';
    await provider.provision({ principal: orphan, secret: 'x'.repeat(40), privileges: { memberOf: ['pg_read_all_data'] }, validUntil: new Date(Date.now() + 3600_000) });
    const live = await request('alice', { role: 'read', duration: '30m' });
    expect(await roleExists(target, orphan)).toBe(true);
    const results = await t.h.reconcileNow();
    // (earlier tests' servers left their grants' roles behind on this shared target: orphans too)
    expect(results[0]?.ok).toBe(true);
    expect(results[0]?.removed).toContain(orphan);
    expect(results[0]?.removed).not.toContain(live.body.grant.principal);
    expect(await roleExists(target, orphan)).toBe(false);
    expect(await roleExists(target, live.body.grant.principal)).toBe(true);
    const alerts = await events({ type: 'alert.orphan_principal' });
    expect(alerts.map((e) => e.data.principal)).toContain(orphan);
  });

  it('reschedules a grant left revoking with no due work, and its role goes (reconciler safety net, review 2026-12-02)', async () => {
    await start();
    const r = await request('alice', { role: 'read', duration: '30m' });
    const gid = r.body.grant.id;
    // The state a lost due time left behind: revoking, no due_at, no lease; no round would take it.
    await t.h.deps.store.db.updateTable('grants').set({ status: 'revoking', end_reason: 'revoked', due_at: null, lease_owner: null, lease_until: null })
      .where('id', '=', gid).execute();
    await t.h.scheduler.tick();
    expect((await getGrant(t.h.deps.store.db, gid))?.status).toBe('revoking');
    expect(await roleExists(target, r.body.grant.principal)).toBe(true);
    await t.h.reconcileNow();
    await t.h.scheduler.tick();
    expect((await getGrant(t.h.deps.store.db, gid))?.status).toBe('revoked');
    expect(await roleExists(target, r.body.grant.principal)).toBe(false);
    const alerts = await events({ type: 'alert.grant_stranded' });
    expect(alerts.map((e) => e.grantId)).toContain(gid);
  });

  it('finishes an activation interrupted after the intent was recorded (crash mid-activation)', async () => {
    await start();
    const r = await request('alice', { role: 'read', duration: '30m' });
    const gid = r.body.grant.id;
    // Rewind to the state a crash would leave: intent recorded, lease held by a dead instance,
    // role possibly created. The lease runs out; the scheduler provisions again (idempotent).
    await t.h.deps.store.db.updateTable('grants').set({ status: 'activating', lease_owner: 'dead-instance', lease_until: clock.now().getTime() + 30_000, due_at: clock.now().getTime() })
      .where('id', '=', gid).execute();
    await t.h.scheduler.tick();
    expect((await getGrant(t.h.deps.store.db, gid))?.status).toBe('activating');
    clock.advance(31_000);
    await t.h.scheduler.tick();
    const g = await getGrant(t.h.deps.store.db, gid);
    expect(g?.status).toBe('active');
    expect(g?.lease_owner).toBeNull();
    expect(await roleExists(target, g!.principal)).toBe(true);
  });

  it('activates a scheduled grant at its start, its window ending at the requested start plus its duration', async () => {
    await start();
    const startAt = new Date(clock.now().getTime() + 10 * 60_000);
    const r = await request('alice', { role: 'read', duration: '5m', startAt: startAt.toISOString() });
    expect(r.body.grant.status).toBe('scheduled');
    expect(await roleExists(target, r.body.grant.principal)).toBe(false);
    clock.advance(10 * 60_000 + 2500);
    await t.h.scheduler.tick();
    const g = await getGrant(t.h.deps.store.db, r.body.grant.id);
    expect(g?.status).toBe('active');
    expect(g?.starts_at).toBe(clock.now().getTime());
    // Activated 2.5 s late (the scheduler's poll), it ends with the window approved, not 2.5 s after
    // it (it ran a full duration from the activation until a review on 2026-12-02).
    expect(g!.expires_at).toBe(startAt.getTime() + 5 * 60_000);
  });

  it('break-glass grants at once, raises an alert, and leaves a review only an admin can close', async () => {
    await start();
    const olga = await t.token('olga');
    const r = await request('olga', { role: 'write', duration: '30m', breakGlass: true, reason: 'prod down, INC-99' });
    expect(r.status).toBe(201);
    expect(r.body.request.kind).toBe('break_glass');
    expect(r.body.grant.status).toBe('active');
    expect((await events({ type: 'alert.break_glass' })).length).toBe(1);
    const reviews = await t.api(t.adminToken, 'GET', '/api/v1/reviews');
    expect(reviews.body.reviews).toHaveLength(1);
    const rid = reviews.body.reviews[0].id;
    expect((await t.api(olga, 'POST', `/api/v1/reviews/${rid}/close`, { note: 'fine' })).status).toBe(403);
    expect((await t.api(t.adminToken, 'POST', `/api/v1/reviews/${rid}/close`, { note: 'reviewed with olga' })).status).toBe(200);
    expect((await t.api(t.adminToken, 'POST', `/api/v1/reviews/${rid}/close`, { note: 'again' })).status).toBe(409);
    // someone outside the break-glass groups is denied
    const alice = await request('alice', { role: 'write', breakGlass: true });
    expect(alice.status).toBe(403);
  });

  it('keeps injection in reasons, tickets, resource and role names away from the target, through grants that really provision', async () => {
    const hostile = [`x'; drop table orders; --`, `"); drop role postgres; --`, `$$; drop table orders; $$`, `\\'; select pg_sleep(10); --`];
    // One engineer per hostile text, so each auto-approved read request creates its own grant
    // (a second one by the same user would be an extension); the read rule checks a ticket pattern.
    const injectors = hostile.map((_, i) => `inj${i}`);
    await start(testPolicy(target)
      .replace('  - { name: olga, groups: [oncall] }', ['  - { name: olga, groups: [oncall] }', ...injectors.map((u) => `  - { name: ${u}, groups: [engineers] }`)].join('\n'))
      .replace("roles: [read]\n    duration: { default: 5m, max: 1h }\n    approval: auto\n    reason: { required: true }",
        "roles: [read]\n    duration: { default: 5m, max: 1h }\n    approval: auto\n    reason: { required: true, ticketPattern: '.*' }")
      .replace("ticketPattern: '^OPS-[0-9]+$'", "ticketPattern: '.*'"));
    const before = await managedRoles(target);
    const provisioned: string[] = [];
    for (const [i, text] of hostile.entries()) {
      const user = injectors[i]!;
      const ticket = text.replace(/\s/g, '').slice(0, 90);
      const ok = await request(user, { role: 'read', duration: '30m', reason: text, ticket });
      expect(ok.status, JSON.stringify(ok.body)).toBe(201);
      expect(ok.body.request.status).toBe('approved');
      expect(ok.body.request.reason).toBe(text);
      expect(ok.body.request.ticket).toBe(ticket);
      expect(ok.body.grant.status).toBe('active');
      const principal: string = ok.body.grant.principal;
      expect(principal).toMatch(/^hp_[a-z0-9_]+$/);
      provisioned.push(principal);
      // the role is there, with exactly the read role's membership and no attributes beyond LOGIN
      const admin = await target.admin();
      try {
        const role = await admin.query('select rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolcanlogin from pg_roles where rolname = $1', [principal]);
        expect(role.rows).toEqual([{ rolsuper: false, rolcreaterole: false, rolcreatedb: false, rolreplication: false, rolbypassrls: false, rolcanlogin: true }]);
        const member = await admin.query<{ rolname: string }>(
          'select g.rolname from pg_auth_members m join pg_roles r on r.oid = m.member join pg_roles g on g.oid = m.roleid where r.rolname = $1 order by 1', [principal]);
        expect(member.rows.map((x) => x.rolname)).toEqual(['pg_read_all_data']);
      } finally {
        await admin.end();
      }
      // the text is kept verbatim as audit data, never turned into SQL
      const created = await events({ type: 'request.created', requestId: ok.body.request.id });
      expect(created).toHaveLength(1);
      expect(created[0]!.data.reason).toBe(text);
      expect(created[0]!.data.ticket).toBe(ticket);
      const badResource = await t.api(await t.token(user), 'POST', '/api/v1/requests', { resource: `app-db${text}`, role: 'read', reason: 'x' });
      expect(badResource.status).toBe(400);
      const badRole = await t.api(await t.token(user), 'POST', '/api/v1/requests', { resource: 'app-db', role: `read${text}`, reason: 'x' });
      expect(badRole.status).toBe(400);
    }
    const spaced = await request('alice', { role: 'owner', reason: 'x', ticket: 'OPS 1' });
    expect(spaced.status).toBe(400);
    const ctl = await t.api(await t.token('alice'), 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', reason: 'line1\nline2\u0000' });
    expect(ctl.status).toBe(400);
    const extra = await t.api(await t.token('alice'), 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', reason: 'x', privileges: 'superuser' });
    expect(extra.status).toBe(400);
    expect(extra.body.error.message).toContain('privileges');
    const admin = await target.admin();
    try {
      const orders = await admin.query('select count(*)::int as n from orders');
      expect(orders.rows[0].n).toBe(2);
      expect((await admin.query("select 1 from pg_roles where rolname = 'postgres' and rolsuper")).rowCount).toBe(1);
      // no role name and no role setting/comment anywhere on the target carries the hostile text
      const names = (await admin.query<{ rolname: string }>('select rolname from pg_roles')).rows.map((x) => x.rolname);
      for (const text of hostile) {
        for (const fragment of [text, text.replace(/\s/g, '').slice(0, 90), 'drop', 'pg_sleep']) {
          expect(names.filter((n) => n.includes(fragment)), fragment).toEqual([]);
        }
      }
      const described = await admin.query<{ d: string }>("select coalesce(shobj_description(oid, 'pg_authid'), '') || coalesce(array_to_string(rolconfig, ','), '') as d from pg_roles");
      expect(described.rows.filter((r) => /drop|pg_sleep/i.test(r.d))).toEqual([]);
    } finally {
      await admin.end();
    }
    // the only new roles are the four grants' principals
    expect((await managedRoles(target)).sort()).toEqual([...before, ...provisioned].sort());
  });

  const withoutDave = (policy: string) => {
    const out = policy.replace('  - { name: dave, groups: [engineers] }\n', '');
    expect(out).not.toBe(policy);
    return out;
  };

  it('regression: a user removed from the policy loses live grants (role dropped, session cut) and pending requests at reload', async () => {
    await start();
    const dave = await t.token('dave');
    const g = await request('dave', { role: 'read', duration: '1h' });
    expect(g.body.grant.status).toBe('active');
    const creds = await t.api(dave, 'GET', `/api/v1/grants/${g.body.grant.id}/credentials`);
    const conn = await tryConnect(creds.body.dsn);
    if (!('client' in conn)) throw conn.error;
    const pending = await request('dave', { role: 'write', duration: '30m' });
    expect(pending.body.request.status).toBe('pending');
    const alicePending = await request('alice', { role: 'write', duration: '30m' });

    writeFileSync(t.policyPath, withoutDave(readFileSync(t.policyPath, 'utf8')));
    expect(await t.h.policy.reload(t.h.deps)).toEqual({ changed: true });

    expect((await t.api(dave, 'GET', '/api/v1/me')).status).toBe(401);
    const grant = await getGrant(t.h.deps.store.db, g.body.grant.id);
    expect(grant).toMatchObject({ status: 'revoked', end_reason: 'revoked' });
    expect(await roleExists(target, g.body.grant.principal)).toBe(false);
    await expect(conn.client.query('select 1')).rejects.toThrow();
    const bob = await t.token('bob');
    expect((await t.api(bob, 'GET', `/api/v1/requests/${pending.body.request.id}`)).body.status).toBe('cancelled');
    const approve = await t.api(bob, 'POST', `/api/v1/requests/${pending.body.request.id}/approve`, {});
    expect(approve.status).toBe(409);
    // Others are untouched.
    expect((await t.api(bob, 'GET', `/api/v1/requests/${alicePending.body.request.id}`)).body.status).toBe('pending');
    const revoking = await events({ type: 'grant.revoking', grantId: g.body.grant.id });
    expect(revoking.map((e) => [e.actor, e.data.cause])).toEqual([['system', 'user_disabled']]);
    expect((await events({ type: 'request.cancelled', requestId: pending.body.request.id })).map((e) => [e.actor, e.data.reason]))
      .toEqual([['system', 'requester disabled']]);
    expect((await verifyChain(t.h.deps.store.db)).ok).toBe(true);
  });

  it('regression: a disabled requester\'s pending request cannot be approved, and a disabled principal cannot request', async () => {
    await start();
    const pending = await request('dave', { role: 'write', duration: '30m' });
    const principal = await t.principal('dave');
    // Disabled without the sweep having run (e.g. a reload that crashed halfway): the approval is still refused.
    await t.h.deps.store.db.updateTable('users').set({ disabled: 1 }).where('name', '=', 'dave').execute();
    const approve = await t.api(await t.token('bob'), 'POST', `/api/v1/requests/${pending.body.request.id}/approve`, {});
    expect(approve.status).toBe(409);
    expect(approve.body.error.message).toMatch(/disabled/);
    expect((await t.api(await t.token('bob'), 'GET', `/api/v1/requests/${pending.body.request.id}`)).body).toMatchObject({ status: 'pending', grantId: null });
    await expect(createRequest(t.h.deps, principal, { resource: 'app-db', role: 'read', reason: 'after offboarding' })).rejects.toThrow(/disabled/);
  });

  it('regression: a user removed from the policy while the server was down loses their grants when it starts', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'hp-offboard-'));
    try {
      clock = new ManualClock(Date.now());
      t = await startTestHallpass({ target, clock, schedulerTimers: false, dataDir });
      const g = await request('dave', { role: 'read', duration: '1h' });
      expect(g.body.grant.status).toBe('active');
      const pending = await request('dave', { role: 'write', duration: '30m' });
      const policy = withoutDave(readFileSync(t.policyPath, 'utf8'));
      await t.close();
      t = await startTestHallpass({ target, clock, schedulerTimers: false, dataDir, policy });
      await t.h.scheduler.tick();
      expect(await getGrant(t.h.deps.store.db, g.body.grant.id)).toMatchObject({ status: 'revoked' });
      expect(await roleExists(target, g.body.grant.principal)).toBe(false);
      expect((await t.h.deps.store.db.selectFrom('requests').select('status').where('id', '=', pending.body.request.id).executeTakeFirst())?.status).toBe('cancelled');
    } finally {
      await t.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('denies by policy with reasons (403) and records the denial', async () => {
    await start();
    const r = await request('bob', { role: 'read' });
    expect(r.status).toBe(403);
    expect(r.body.error.code).toBe('policy_denied');
    expect(r.body.error.details.reasons.length).toBeGreaterThan(0);
    const noReason = await t.api(await t.token('alice'), 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read' });
    expect(noReason.status).toBe(400);
    const tooLong = await request('alice', { role: 'read', duration: '2h' });
    expect(tooLong.status).toBe(403);
    expect(JSON.stringify(tooLong.body.error)).toMatch(/1h/);
    const denied = await events({ type: 'request.denied' });
    expect(denied.length).toBe(2);
  });
});
