import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type StoreConnection } from './db.js';
import { claimDueGrants, getGrant, insertGrant, transitionGrant, tryLeaseGrant, type GrantRow } from './grants.js';
import { insertRequest, recordApprovalOnce, transitionRequest, listApprovals, type RequestRow } from './requests.js';
import { upsertUser, disableMissingUsers } from './users.js';

/**
 * One suite, every dialect: the store's atomic primitives must mean the same on SQLite (the
 * embedded default) and PostgreSQL (shared by several instances).
 */
export function storeConformance(name: string, makeUrl: () => Promise<{ url: string; drop: () => Promise<void> }>): void {
  describe(`store conformance: ${name}`, () => {
    let store: StoreConnection;
    let drop: () => Promise<void>;
    let userId: string;
    const now = 1_800_000_000_000;

    beforeAll(async () => {
      const made = await makeUrl();
      drop = made.drop;
      store = await openStore({ url: made.url });
      userId = (await upsertUser(store.db, { name: 'u1', kind: 'user', groups: ['b', 'a'], attributes: {}, isAdmin: false, source: 'policy' }, now)).row.id;
    });
    afterAll(async () => {
      await store?.close();
      await drop?.();
    });

    const request = (id: string): RequestRow => ({
      id, requester_id: userId, resource: 'db', role: 'read', duration_s: 60, reason: 'r', ticket: null, start_at: null,
      status: 'pending', kind: 'new', extends_grant_id: null, decision: '{}', rule: 'x', policy_version: 'v', approvals_required: 2,
      approver_groups: '[]', pending_expires_at: now + 1000, decided_at: null, decided_by: null, decision_note: null, grant_id: null,
      created_at: now, updated_at: now, holder_binding: null,
    });
    const grant = (id: string, requestId: string, patch: Partial<GrantRow> = {}): GrantRow => ({
      id, request_id: requestId, user_id: userId, resource: 'db', role: 'read', status: 'active', principal: `hp_${id}`, secret_enc: 'e',
      duration_s: 60, starts_at: now, expires_at: now + 60_000, end_reason: null, ended_at: null, revoke_attempts: 0, last_error: null,
      due_at: now + 60_000, lease_owner: null, lease_until: null, created_at: now, updated_at: now, holder_binding: null, target_pending_at: null, ...patch,
    });

    it('upserts users and reports what changed', async () => {
      const same = await upsertUser(store.db, { name: 'u1', kind: 'user', groups: ['a', 'b'], attributes: {}, isAdmin: false, source: 'policy' }, now);
      expect(same.created).toBe(false);
      expect(same.changes).toEqual([]);
      const changed = await upsertUser(store.db, { name: 'u1', kind: 'user', groups: ['a'], attributes: {}, isAdmin: true, source: 'policy' }, now);
      expect(changed.changes.sort()).toEqual(['groups', 'is_admin']);
      await upsertUser(store.db, { name: 'u2', kind: 'user', groups: [], attributes: {}, isAdmin: false, source: 'policy' }, now);
      expect(await disableMissingUsers(store.db, 'policy', new Set(['u1']), now)).toEqual(['u2']);
    });

    it('transitionRequest is a compare-and-set: only the first of two racing moves wins', async () => {
      await insertRequest(store.db, request('req_cas0000000000001'));
      const [x, y] = await Promise.all([
        store.db.transaction().execute((tx) => transitionRequest(tx, 'req_cas0000000000001', 'pending', 'approved', { updated_at: now })),
        store.db.transaction().execute((tx) => transitionRequest(tx, 'req_cas0000000000001', 'pending', 'denied', { updated_at: now })),
      ]);
      expect([x, y].filter(Boolean)).toHaveLength(1);
    });

    it('recordApprovalOnce counts one vote per approver, however often it is sent', async () => {
      await insertRequest(store.db, request('req_vote000000000001'));
      const votes = await Promise.all(Array.from({ length: 6 }, () =>
        store.db.transaction().execute((tx) => recordApprovalOnce(tx, { request_id: 'req_vote000000000001', approver_id: userId, duration_s: null, comment: null, at: now })),
      ));
      expect(votes.filter(Boolean)).toHaveLength(1);
      expect(await listApprovals(store.db, 'req_vote000000000001')).toHaveLength(1);
    });

    it('claimDueGrants leases only due, unleased work, and takes over expired leases', async () => {
      await insertRequest(store.db, request('req_claim00000000001'));
      await insertGrant(store.db, grant('grt_due0000000000001', 'req_claim00000000001', { due_at: now - 1 }));
      await insertGrant(store.db, grant('grt_later00000000001', 'req_claim00000000001', { due_at: now + 10_000 }));
      await insertGrant(store.db, grant('grt_held00000000001x', 'req_claim00000000001', { due_at: now - 1, lease_owner: 'other', lease_until: now + 5000 }));
      await insertGrant(store.db, grant('grt_stale0000000001x', 'req_claim00000000001', { due_at: now - 1, lease_owner: 'dead', lease_until: now - 1 }));
      const claimed = await store.db.transaction().execute((tx) => claimDueGrants(tx, store.dialect, { now, owner: 'me', leaseMs: 1000, limit: 10 }));
      expect(claimed.map((g) => g.id).sort()).toEqual(['grt_due0000000000001', 'grt_stale0000000001x']);
      expect(claimed.every((g) => g.lease_owner === 'me' && g.lease_until === now + 1000)).toBe(true);
      const again = await store.db.transaction().execute((tx) => claimDueGrants(tx, store.dialect, { now, owner: 'you', leaseMs: 1000, limit: 10 }));
      expect(again).toEqual([]);
    });

    it('claimDueGrants under concurrency never hands one grant to two owners', async () => {
      await insertRequest(store.db, request('req_race000000000001'));
      for (let i = 0; i < 60; i++) {
        await insertGrant(store.db, grant(`grt_race${String(i).padStart(12, '0')}`, 'req_race000000000001', { due_at: now - 5, principal: `hp_race_${i}` }));
      }
      const owners = ['a', 'b', 'c'];
      const results = await Promise.all(owners.flatMap((o) => [0, 1, 2, 3].map(() =>
        store.db.transaction().execute((tx) => claimDueGrants(tx, store.dialect, { now: now + 1, owner: o, leaseMs: 60_000, limit: 7 })))));
      const ids = results.flat().map((g) => g.id).filter((id) => id.startsWith('grt_race'));
      expect(new Set(ids).size).toBe(ids.length);
    });

    it('transitionGrant honours the lease owner; tryLeaseGrant refuses a held lease', async () => {
      await insertRequest(store.db, request('req_lease00000000001'));
      await insertGrant(store.db, grant('grt_lease00000000001', 'req_lease00000000001', { status: 'activating', lease_owner: 'me', lease_until: now + 1000 }));
      expect(await transitionGrant(store.db, 'grt_lease00000000001', ['activating'], { status: 'active' }, 'not-me')).toBeUndefined();
      expect(await tryLeaseGrant(store.db, 'grt_lease00000000001', { now, owner: 'not-me', leaseMs: 1000 })).toBeUndefined();
      expect((await transitionGrant(store.db, 'grt_lease00000000001', ['activating'], { status: 'active' }, 'me'))?.status).toBe('active');
      expect(await transitionGrant(store.db, 'grt_lease00000000001', ['activating'], { status: 'revoking' })).toBeUndefined();
      expect((await getGrant(store.db, 'grt_lease00000000001'))?.status).toBe('active');
    });

    it('rolls back every write of a failed transaction', async () => {
      await expect(store.db.transaction().execute(async (tx) => {
        await insertRequest(tx, request('req_rollback00000001'));
        throw new Error('boom');
      })).rejects.toThrow('boom');
      expect(await store.db.selectFrom('requests').select('id').where('id', '=', 'req_rollback00000001').executeTakeFirst()).toBeUndefined();
    });
  });
}
