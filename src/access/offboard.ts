import { tryLeaseGrant } from '../store/grants.js';
import { transitionRequest } from '../store/requests.js';
import { inTx, type AccessDeps } from './context.js';
import { beginEnd, revokeLeased } from './grant-lifecycle.js';

export interface OffboardResult {
  /** Grants whose revocation this call began. */
  readonly revoked: readonly string[];
  /** Pending requests this call cancelled. */
  readonly cancelled: readonly string[];
}

/**
 * Ends the access of every disabled user (e.g. removed from the policy): their live grants are
 * revoked through the normal path (the gateway cuts their sessions, the target role is dropped)
 * and their pending requests are cancelled, each with its audit event. The disabled flag is the
 * recorded intent; this is idempotent, so running it after each policy sync and at start-up
 * finishes what a crash between disabling and revoking left. `inline` removes access from the
 * targets in this call where the lease is free; otherwise the scheduler does, due at once.
 */
export async function endAccessOfDisabledUsers(deps: AccessDeps, opts: { inline: boolean }): Promise<OffboardResult> {
  const db = deps.store.db;
  const grants = await db.selectFrom('grants').innerJoin('users', 'users.id', 'grants.user_id').selectAll('grants')
    .where('users.disabled', '<>', 0).where('grants.status', 'in', ['scheduled', 'activating', 'active']).execute();
  const moved = await beginEnd(deps, grants, 'revoked', 'system', { reason: 'user disabled', cause: 'user_disabled' });
  const nowMs = deps.clock.now().getTime();
  if (opts.inline && moved.length > 0) {
    const leased: string[] = [];
    for (const g of moved) {
      if (await tryLeaseGrant(db, g.id, { now: nowMs, owner: deps.instanceId, leaseMs: deps.leaseMs })) leased.push(g.id);
    }
    if (leased.length > 0) await revokeLeased(deps, leased);
    if (leased.length < moved.length) deps.wake(nowMs);
  } else if (moved.length > 0) {
    deps.wake(nowMs);
  }

  const cancelled = await inTx(deps, async (tx, audit) => {
    const pending = await tx.selectFrom('requests').innerJoin('users', 'users.id', 'requests.requester_id')
      .select(['requests.id', 'users.name']).where('users.disabled', '<>', 0).where('requests.status', '=', 'pending').execute();
    const out: string[] = [];
    for (const r of pending) {
      const row = await transitionRequest(tx, r.id, 'pending', 'cancelled', {
        decided_at: nowMs, decided_by: 'system', decision_note: `requester ${r.name} is disabled`, updated_at: nowMs,
      });
      if (!row) continue;
      out.push(r.id);
      audit({ type: 'request.cancelled', actor: 'system', requestId: r.id, at: nowMs, data: { reason: 'requester disabled', requester: r.name } });
    }
    return out;
  });
  return { revoked: moved.map((g) => g.id), cancelled };
}
