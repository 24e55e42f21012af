import { AppError, conflict, notFound } from '../domain/errors.js';
import { isHolder, type Principal } from '../domain/principal.js';
import { ProviderError } from '../providers/provider.js';
import { getGrant, tryLeaseGrant, type GrantRow } from '../store/grants.js';
import type { RequestRow } from '../store/requests.js';
import { inTx, type AccessDeps } from './context.js';
import { beginEnd, revokeLeased } from './grant-lifecycle.js';

async function ownGrant(deps: AccessDeps, actor: Principal, id: string): Promise<GrantRow> {
  const grant = await getGrant(deps.store.db, id);
  // Someone else's grant is "not found" to a non-admin: ids are not an oracle. A workload's grant
  // is its job's alone: another job mapping to the same workload name is someone else.
  if (!grant || (!holdsGrant(actor, grant) && !actor.isAdmin)) throw notFound(`no grant ${id}`);
  return grant;
}

/** Whether `p` holds `grant` (same user and, for a workload, the same job). */
export function holdsGrant(p: Principal, grant: GrantRow): boolean {
  return isHolder(p, { userId: grant.user_id, binding: grant.holder_binding });
}

export async function readGrant(deps: AccessDeps, actor: Principal, id: string): Promise<GrantRow> {
  return ownGrant(deps, actor, id);
}

/**
 * Early revocation by the grant's holder or an admin. Recorded as intent first (revoking, the
 * gateway cuts sessions at once), then removed from the target inline when we can take the
 * lease; otherwise the lease holder / scheduler finishes within a tick.
 */
export async function revokeGrant(deps: AccessDeps, actor: Principal, id: string, reason: string | undefined): Promise<GrantRow> {
  const grant = await ownGrant(deps, actor, id);
  if (!['scheduled', 'activating', 'active'].includes(grant.status)) {
    throw conflict(`grant ${id} is ${grant.status.replace('_', ' ')}: it cannot be revoked`, { status: grant.status });
  }
  const moved = await beginEnd(deps, [grant], 'revoked', actor.name, { reason: reason ?? null, by: actor.name });
  if (moved.length === 0) {
    const now = await getGrant(deps.store.db, id);
    throw conflict(`grant ${id} is ${now?.status ?? 'gone'}: it cannot be revoked`);
  }
  const nowMs = deps.clock.now().getTime();
  const leased = await tryLeaseGrant(deps.store.db, id, { now: nowMs, owner: deps.instanceId, leaseMs: deps.leaseMs });
  if (leased) await revokeLeased(deps, [id]);
  else deps.wake(nowMs);
  return (await getGrant(deps.store.db, id))!;
}

/**
 * Applies an approved extension request to the grant it extends: the target first (so the
 * store never promises more than the target allows), then the store, then the gateway.
 * The new end is the old end plus the approved duration.
 */
export async function applyExtension(deps: AccessDeps, request: RequestRow): Promise<GrantRow> {
  const grant = await getGrant(deps.store.db, request.extends_grant_id ?? '');
  if (!grant || grant.status !== 'active' || grant.expires_at === null) {
    throw conflict(`the grant this request extends is ${grant?.status ?? 'gone'}; request a new grant instead`);
  }
  if (grant.user_id !== request.requester_id || grant.holder_binding !== request.holder_binding) {
    throw conflict(`grant ${grant.id} is not held by the requester of ${request.id}`);
  }
  const newExpires = grant.expires_at + request.duration_s * 1000;
  const provider = deps.providers.get(grant.resource);
  if (!provider) throw new AppError('target_unavailable', `resource ${grant.resource} is not in the policy`);
  try {
    await provider.extend(grant.principal, new Date(newExpires));
  } catch (err) {
    throw new AppError('target_unavailable', `could not extend on ${grant.resource}: ${err instanceof ProviderError ? err.message : 'target error'}`);
  }
  const nowMs = deps.clock.now().getTime();
  const row = await inTx(deps, async (tx, audit) => {
    const updated = await tx.updateTable('grants')
      .set({ expires_at: newExpires, due_at: newExpires, duration_s: grant.duration_s + request.duration_s, updated_at: nowMs })
      .where('id', '=', grant.id).where('status', '=', 'active').where('expires_at', '>', nowMs)
      .returningAll().executeTakeFirst();
    if (!updated) return undefined;
    audit({ type: 'grant.extended', actor: 'system', grantId: grant.id, requestId: request.id, at: nowMs, data: {
      resource: grant.resource, role: grant.role, previousExpiresAt: grant.expires_at, expiresAt: newExpires, bySeconds: request.duration_s,
    } });
    return updated;
  });
  if (!row) throw conflict(`grant ${grant.id} ended before the extension could be applied`);
  await deps.events.publish({ type: 'extended', grantId: row.id, resource: row.resource, expiresAt: newExpires });
  deps.wake(newExpires);
  return row;
}

/** Admin closes a break-glass review item. */
export async function closeReview(deps: AccessDeps, admin: Principal, reviewId: string, note: string): Promise<void> {
  if (!admin.isAdmin) throw new AppError('forbidden', 'only an admin can close a review');
  const nowMs = deps.clock.now().getTime();
  await inTx(deps, async (tx, audit) => {
    const r = await tx.updateTable('reviews').set({ status: 'closed', closed_at: nowMs, closed_by: admin.id, note })
      .where('id', '=', reviewId).where('status', '=', 'open').returningAll().executeTakeFirst();
    if (!r) {
      const exists = await tx.selectFrom('reviews').select('status').where('id', '=', reviewId).executeTakeFirst();
      throw exists ? conflict(`review ${reviewId} is already closed`) : notFound(`no review ${reviewId}`);
    }
    audit({ type: 'review.closed', actor: admin.name, requestId: r.request_id, grantId: r.grant_id ?? undefined, at: nowMs, data: { reviewId, note } });
  });
}


